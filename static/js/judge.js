// A live protocol transcript on its judge's page (templates/participant/judge.html). The page is rendered with the
// transcript as stored; on every (re)connect the server sends the whole of it again (`history`, with the text so
// far of a turn being written), then frames: `message` (a turn, new or final), `delta` (a streaming turn's public
// text from an offset: overlap with the snapshot is dropped, a gap asks for the history again), `state` (rounds,
// whether the judge may question or end, in words rendered by the server) and `error` (a refused action).
// The judgement itself is the ordinary answer form (trial.js): the server's clock, selections, auto-submit.
(function () {
  "use strict";
  const pane = document.getElementById("transcript-pane");
  if (!pane || !pane.dataset.wsPath) return;
  const list = pane.querySelector("ol.turns");
  const stateLine = document.getElementById("debate-state");
  const errorBox = document.getElementById("judge-error");
  const questionForm = document.getElementById("judge-question-form");
  const questionInput = document.getElementById("judge-question");
  const continueButton = document.getElementById("judge-continue");
  const endButton = document.getElementById("end-debate");
  const stateData = document.getElementById("debate-state-data");

  let live = null; // live_socket.js: hello on every (re)connect, reconnects with backoff
  let closed = false; // the question's time is up: no more actions
  let turns = []; // the turn payloads, in server order (seq)

  function showError(text) {
    errorBox.textContent = text || "";
    errorBox.hidden = !text;
  }

  function send(payload) {
    return live ? live.send(payload) : false;
  }

  const newId = window.liveSocket.newId;

  // One turn as the partial protocols/_transcript.html renders it.
  function turnElement(turn) {
    const li = document.createElement("li");
    li.className = "turn turn-" + turn.role;
    li.id = turn.id;
    li.dataset.status = turn.status;
    li.dataset.round = turn.round;
    li.dataset.seq = turn.seq;
    const speaker = document.createElement("p");
    speaker.className = "speaker";
    speaker.textContent = turn.speaker;
    li.appendChild(speaker);
    const body = document.createElement("div");
    body.className = "body";
    if (turn.html !== undefined) body.innerHTML = turn.html; // sanitised on the server (assistant/render.py)
    else body.textContent = turn.text || "";
    li.appendChild(body);
    if (turn.truncated) li.appendChild(note("Cut at the word limit."));
    if (turn.notice) li.appendChild(note(turn.notice));
    return li;
  }

  function note(text) {
    const p = document.createElement("p");
    p.className = "notice";
    p.textContent = text;
    return p;
  }

  function render() {
    list.textContent = "";
    let round = null;
    turns.forEach(function (turn) {
      if (turn.role === "judge" && !turn.text) return; // "go on without a question"
      if (turn.round !== round) {
        const marker = document.createElement("li");
        marker.className = "round";
        marker.setAttribute("aria-hidden", "true");
        marker.textContent = "Round " + turn.round;
        list.appendChild(marker);
        round = turn.round;
      }
      list.appendChild(turnElement(turn));
    });
    if (!list.children.length) {
      const empty = document.createElement("li");
      empty.className = "empty";
      empty.textContent = "Nothing has been said yet.";
      list.appendChild(empty);
    }
  }

  function upsert(turn) {
    const at = turns.findIndex(function (t) { return t.id === turn.id; });
    if (at >= 0) {
      // A streaming turn's text so far is kept if the payload has less of it (a frame from before the delta).
      const known = turns[at];
      if (turn.status === "streaming" && known.status === "streaming" && (known.text || "").length > (turn.text || "").length) {
        turn = Object.assign({}, turn, { text: known.text });
      }
      turns[at] = turn;
    } else {
      turns.push(turn);
      turns.sort(function (a, b) { return a.seq - b.seq; });
    }
    render();
  }

  function applyDelta(frame) {
    const turn = turns.find(function (t) { return t.id === frame.id; });
    if (!turn || turn.status !== "streaming") return;
    const have = (turn.text || "").length;
    if (frame.offset > have) { send({ type: "hello", reconnect: false }); return; } // a gap: resync
    turn.text = (turn.text || "") + frame.text.slice(have - frame.offset);
    const body = document.querySelector("#" + CSS.escape(frame.id) + " .body");
    if (body) body.textContent = turn.text;
  }

  function applyState(state, text) {
    if (text) stateLine.textContent = text;
    questionForm.hidden = closed || !state.may_question;
    endButton.hidden = closed || !state.may_end;
    if (!questionForm.hidden && document.activeElement === document.body) questionInput.focus();
  }

  function onFrame(data) {
    if (data.type === "history") {
      turns = data.transcript.turns.slice();
      render();
      applyState(data.transcript.state, data.state_text);
      showError("");
    } else if (data.type === "message") {
      upsert(data.message);
    } else if (data.type === "delta") {
      applyDelta(data);
    } else if (data.type === "state") {
      applyState(data.state, data.text);
    } else if (data.type === "error") {
      showError(data.message);
    }
  }

  questionForm.addEventListener("submit", function (ev) {
    ev.preventDefault();
    const text = questionInput.value.trim();
    if (!text) { showError("Type a question, or go on without one."); return; }
    if (send({ type: "question", text: text, client_id: newId() })) {
      questionInput.value = "";
      questionForm.hidden = true;
      showError("");
    }
  });
  questionInput.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); questionForm.requestSubmit(); }
  });
  continueButton.addEventListener("click", function () {
    if (send({ type: "continue", client_id: newId() })) questionForm.hidden = true;
  });
  endButton.addEventListener("click", function () {
    if (send({ type: "end" })) endButton.disabled = true;
  });

  // When the question's time is up the debate ends (the server ends it too); the answer form submits itself.
  const answerForm = document.getElementById("answer-form");
  if (answerForm && answerForm.dataset.secondsLeft !== undefined) {
    setTimeout(function () { closed = true; questionForm.hidden = true; endButton.hidden = true; },
               parseFloat(answerForm.dataset.secondsLeft) * 1000);
  }
  if (stateData) applyState(JSON.parse(stateData.textContent), "");
  live = window.liveSocket(pane.dataset.wsPath, {
    frame: onFrame,
    lost: function () { showError("Connection lost — reconnecting… Your answer is safe; you can still submit it."); },
  });
})();
