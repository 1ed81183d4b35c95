// The assisted trial's chat pane. The server is the source of truth: on every (re)connect it sends the whole
// history, including the text so far of a reply still being generated, and then live frames. Frames carry the
// offset of their text, so overlap between the snapshot and the stream is dropped, never duplicated.
// What a participant types is never lost: it stays in the box until the server has stored it (the server echoes
// it back with its client_id), and a message sent while a reply streams is queued on the server and sent when
// that reply ends, so it survives a refresh.
(function () {
  "use strict";
  const pane = document.getElementById("chat");
  if (!pane) return;
  const log = document.getElementById("chat-log");
  const form = document.getElementById("chat-form");
  const input = document.getElementById("chat-input");
  const sendButton = document.getElementById("chat-send");
  const resetButton = document.getElementById("chat-reset");
  const stopButton = document.getElementById("chat-stop");
  const errorBox = document.getElementById("chat-error");
  let live = null; // live_socket.js: hello on every (re)connect, reconnects with backoff
  let open = true;
  let generating = false;
  let inflight = null; // the message sent and not yet stored: it stays in the box until the server echoes it
  const unconfirmed = {}; // client_id -> text of every message sent and not yet seen stored
  const pending = []; // messages typed while the socket was down: resent with the same client_id
  const idlePlaceholder = input.placeholder;

  function showError(text, kind) {
    errorBox.textContent = text || "";
    errorBox.hidden = !text;
    errorBox.classList.toggle("info", kind === "info");
  }

  function updateControls() {
    input.disabled = !open;
    input.readOnly = !!inflight;
    sendButton.disabled = !open || !!inflight;
    resetButton.disabled = !open || generating;
    stopButton.hidden = !generating;
    stopButton.disabled = !generating;
    if (!open) input.placeholder = "The chat is closed for this question.";
    else if (generating) input.placeholder = "Type your next message: it is sent when the reply ends.";
    else input.placeholder = idlePlaceholder;
  }

  // The server has stored the message being sent: only now may the box be emptied.
  function stored(message) {
    if (message.role !== "user" || !(message.client_id in unconfirmed)) return;
    if (input.value.trim() === unconfirmed[message.client_id]) input.value = "";
    delete unconfirmed[message.client_id];
    if (inflight && inflight.client_id === message.client_id) inflight = null;
  }

  function element(message) {
    let el = log.querySelector('[data-id="' + message.id + '"]');
    if (!el) {
      el = document.createElement("div");
      el.dataset.id = message.id;
      el.dataset.seq = message.seq;
      // Keep the log in server order even if frames arrive out of order.
      const later = Array.from(log.children).find(function (c) {
        return c.dataset.seq && parseInt(c.dataset.seq, 10) > message.seq;
      });
      log.insertBefore(el, later || null);
    }
    return el;
  }

  function render(message) {
    const el = element(message);
    el.className = "";
    el.textContent = "";
    if (message.role === "reset") {
      el.className = "reset-marker";
      el.textContent = "Conversation reset — the assistant no longer sees the messages above";
      return;
    }
    el.classList.add("msg", message.role, message.status);
    const speaker = document.createElement("div");
    speaker.className = "speaker";
    speaker.textContent = message.role === "user" ? "You" : "Assistant";
    if (message.status === "queued") {
      const note = document.createElement("span");
      note.className = "queued-note";
      note.textContent = " · queued: sent when the reply ends";
      speaker.appendChild(note);
    }
    el.appendChild(speaker);
    const body = document.createElement("div");
    body.className = "body";
    if (message.html !== undefined) {
      body.innerHTML = message.html; // sanitised on the server (markdown-it + nh3)
    } else {
      body.textContent = message.text || "";
    }
    el.appendChild(body);
    el.dataset.length = (message.text || "").length;
    if (message.notice) {
      const notice = document.createElement("div");
      notice.className = "notice";
      notice.textContent = message.notice + " ";
      if (message.retry) {
        const retry = document.createElement("button");
        retry.type = "button";
        retry.className = "secondary small retry";
        retry.textContent = "Retry";
        retry.addEventListener("click", function () { send({ type: "retry" }); });
        notice.appendChild(retry);
      }
      el.appendChild(notice);
    }
    // Only a failed reply that is still the last message can be retried (as services.chat_retry requires):
    // once a retry, a new message or a reset follows it, its button goes.
    log.querySelectorAll(".retry").forEach(function (b) {
      b.hidden = b.closest("[data-id]") !== log.lastElementChild;
    });
  }

  function applyDelta(frame) {
    const el = log.querySelector('[data-id="' + frame.id + '"]');
    if (!el || !el.classList.contains("streaming")) return;
    const body = el.querySelector(".body");
    const have = body.textContent.length;
    if (frame.offset > have) { send({ type: "hello", reconnect: false }); return; } // a gap: resync
    body.textContent += frame.text.slice(have - frame.offset);
    log.scrollTop = log.scrollHeight;
  }

  function refreshGenerating() {
    const was = generating;
    generating = !!log.querySelector(".msg.assistant.streaming");
    // A "please wait" refusal (or any other) is out of date once the reply it was about has ended.
    if (was && !generating && !errorBox.classList.contains("info")) showError("");
    updateControls();
    if (!generating && open && log.querySelector(".msg.user.queued")) settleSoon();
  }

  // Messages still queued with no reply streaming: the reply they waited for ended where nobody could send
  // them on (its process died). A hello makes the server send them; normally the next reply starts first.
  let settleTimer = null;
  function settleSoon() {
    if (settleTimer) return;
    settleTimer = setTimeout(function () {
      settleTimer = null;
      if (!generating && open && log.querySelector(".msg.user.queued")) send({ type: "hello", reconnect: false });
    }, 1500);
  }

  function send(payload) {
    return live ? live.send(payload) : false;
  }

  function onFrame(data) {
    if (data.type === "history") {
      log.textContent = "";
      data.messages.forEach(render);
      data.messages.forEach(stored);
      open = data.open;
      showError("");
    } else if (data.type === "message") {
      render(data.message);
      stored(data.message);
    } else if (data.type === "delta") {
      applyDelta(data);
    } else if (data.type === "error") {
      inflight = null; // refused: the text stays in the box to be changed and sent again
      showError(data.message);
    } else if (data.type === "notice") {
      showError(data.message, "info");
    }
    refreshGenerating();
    log.scrollTop = log.scrollHeight;
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text || !open || inflight) return;
    const payload = { type: "send", text: text, client_id: window.liveSocket.newId() };
    inflight = payload;
    unconfirmed[payload.client_id] = text;
    if (!send(payload)) pending.push(payload);
    showError("");
    updateControls();
  });
  input.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); form.requestSubmit(); }
  });
  resetButton.addEventListener("click", function () { send({ type: "reset" }); });
  stopButton.addEventListener("click", function () { stopButton.disabled = true; send({ type: "stop" }); });

  // A verified quote scrolls the story to the quoted passage and highlights it.
  log.addEventListener("click", function (ev) {
    const mark = ev.target.closest("mark.quote.verified");
    if (!mark || mark.dataset.start === undefined) return;
    highlight(parseInt(mark.dataset.start, 10), parseInt(mark.dataset.end, 10));
  });

  function highlight(start, end) {
    const passage = document.getElementById("passage");
    if (!passage) return;
    passage.querySelectorAll("mark.hit").forEach(function (m) { m.replaceWith(document.createTextNode(m.textContent)); });
    passage.normalize();
    const para = Array.from(passage.querySelectorAll("p[data-start]")).find(function (p) {
      const s = parseInt(p.dataset.start, 10);
      return start >= s && start < s + p.textContent.length;
    });
    if (!para) return;
    const s = parseInt(para.dataset.start, 10);
    const node = para.firstChild;
    const range = document.createRange();
    range.setStart(node, start - s);
    range.setEnd(node, Math.min(end - s, node.textContent.length));
    const mark = document.createElement("mark");
    mark.className = "hit";
    range.surroundContents(mark);
    mark.scrollIntoView({ behavior: "smooth", block: "center" });
  }

  // When the question's time is up the chat becomes read-only (the server enforces it too).
  const answerForm = document.getElementById("answer-form");
  if (answerForm && answerForm.dataset.secondsLeft !== undefined) {
    setTimeout(function () { open = false; updateControls(); },
               parseFloat(answerForm.dataset.secondsLeft) * 1000);
  }
  live = window.liveSocket(pane.dataset.wsPath, {
    frame: onFrame,
    open: function () { while (pending.length) send(pending.shift()); },
    unavailable: function () { showError("The assistant is not available for this question."); },
    lost: function () { showError("Connection lost — reconnecting… Your answer is safe; you can still submit it."); },
  });
})();
