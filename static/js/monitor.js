// The live monitor: the page is a full server-rendered snapshot; the websocket sends batched row updates
// (at most one message a second, whatever the number of events) and a full snapshot now and then.
(function () {
  "use strict";
  const table = document.getElementById("monitor");
  if (!table) return;
  const body = table.querySelector("tbody");
  const state = document.getElementById("monitor-state");
  const blind = table.dataset.blind === "1";
  const transcriptBase = table.dataset.transcriptBase.replace(/0\/$/, "");
  const proto = window.location.protocol === "https:" ? "wss://" : "ws://";
  let backoff = 500;

  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (text instanceof Node) td.appendChild(text); else td.textContent = text;
    return td;
  }

  function rowFor(r) {
    const tr = document.createElement("tr");
    tr.dataset.id = r.id;
    if (r.idle) tr.className = "idle";
    const link = document.createElement("a");
    link.href = transcriptBase + r.id + "/";
    link.textContent = r.label;
    const who = document.createElement("span");
    who.appendChild(link);
    if (r.pilot) { const t = document.createElement("span"); t.className = "tag"; t.textContent = "pilot"; who.append(" ", t); }
    tr.appendChild(cell(who));
    tr.appendChild(cell(r.status_label));
    tr.appendChild(cell(r.done + "/" + r.total));
    tr.appendChild(cell(r.item ? "#" + r.item + " · " + r.condition : "—"));
    const clock = cell("—", "clock");
    clock.dataset.deadline = r.deadline || "";
    tr.appendChild(clock);
    const gen = document.createElement("span");
    if (r.generating) { gen.className = "generating"; gen.textContent = "● replying"; } else gen.textContent = "—";
    tr.appendChild(cell(gen));
    tr.appendChild(cell(String(r.messages)));
    if (!blind) {
      const parts = Object.keys(r.accuracy).map(function (k) { return k + " " + Math.round(r.accuracy[k] * 100) + "%"; });
      tr.appendChild(cell(parts.length ? parts.join(" · ") : "—"));
    }
    tr.appendChild(cell(r.last_activity.slice(11, 19) + (r.idle ? " (idle)" : "")));
    return tr;
  }

  function upsert(rows) {
    const empty = body.querySelector("tr.empty");
    if (empty && rows.length) empty.remove();
    rows.forEach(function (r) {
      const old = body.querySelector('tr[data-id="' + r.id + '"]');
      const fresh = rowFor(r);
      if (old) old.replaceWith(fresh); else body.appendChild(fresh);
    });
    tick();
  }

  function summary(s) {
    const statusTable = document.getElementById("summary-status");
    if (statusTable) {
      statusTable.textContent = "";
      Object.keys(s.by_status).forEach(function (label) {
        const tr = document.createElement("tr");
        tr.appendChild(cell(label));
        const count = cell(String(s.by_status[label]));
        count.dataset.status = label;  // as the server-rendered table has it
        tr.appendChild(count);
        statusTable.appendChild(tr);
      });
    }
    const acc = document.getElementById("summary-accuracy");
    if (acc && s.accuracy) {
      acc.textContent = "";
      Object.keys(s.accuracy).forEach(function (name) {
        const a = s.accuracy[name];
        const tr = document.createElement("tr");
        tr.appendChild(cell(name));
        tr.appendChild(cell((a.accuracy === null ? "—" : Math.round(a.accuracy * 100) + "%") + " (n=" + a.n + ")"));
        acc.appendChild(tr);
      });
    }
  }

  function tick() {
    const now = Date.now();
    body.querySelectorAll("td.clock").forEach(function (td) {
      if (!td.dataset.deadline) { td.textContent = "—"; return; }
      const left = Math.max(0, Math.round((Date.parse(td.dataset.deadline) - now) / 1000));
      td.textContent = left + " s";
    });
  }
  setInterval(tick, 1000);
  tick();

  function connect() {
    const ws = new WebSocket(proto + window.location.host + table.dataset.wsPath);
    ws.addEventListener("open", function () { backoff = 500; state.textContent = "Live"; });
    ws.addEventListener("message", function (ev) {
      const data = JSON.parse(ev.data);
      if (data.type === "snapshot") { body.textContent = ""; }
      upsert(data.rows);
      summary(data.summary);
      table.dataset.updates = String(parseInt(table.dataset.updates || "0", 10) + 1);
    });
    ws.addEventListener("close", function (ev) {
      if (ev.code === 4403) { state.textContent = "Not allowed"; return; }
      state.textContent = "Reconnecting…";
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    });
  }
  connect();
})();
