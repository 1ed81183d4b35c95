// The live monitor: the page is a full server-rendered snapshot; the websocket sends batched row updates
// (at most one message a second, whatever the number of events) and a full snapshot now and then. Both carry
// the rows and the summary as HTML, rendered by the page's own template partials: this script only places them.
(function () {
  "use strict";
  const table = document.getElementById("monitor");
  if (!table) return;
  const body = table.querySelector("tbody");
  const summary = document.getElementById("summary");
  const state = document.getElementById("monitor-state");
  const proto = window.location.protocol === "https:" ? "wss://" : "ws://";
  let backoff = 500;

  function parse(html) {
    const template = document.createElement("template");
    template.innerHTML = html;  // server-rendered, autoescaped markup
    return template.content;
  }

  function upsert(rows) {
    const fresh = rows.querySelectorAll("tr[data-id]");
    const empty = body.querySelector("tr.empty");
    if (empty && fresh.length) empty.remove();
    fresh.forEach(function (tr) {
      const old = body.querySelector('tr[data-id="' + tr.dataset.id + '"]');
      if (old) old.replaceWith(tr); else body.appendChild(tr);
    });
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
      if (data.type === "snapshot") body.replaceChildren(parse(data.rows)); else upsert(parse(data.rows));
      summary.replaceChildren(parse(data.summary));
      tick();
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
