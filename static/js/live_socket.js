// The one websocket a page keeps open while it is shown: the chat of an assisted item (chat.js), a judge's live
// debate (judge.js). The server is the source of truth: on every (re)connect the page says hello and is sent the
// whole history, then live frames; a dropped connection is opened again with backoff. A close with code 4404
// means there is nothing live for this page (the page as rendered is all there is).
(function () {
  "use strict";

  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  // `on`: frame(data) for every frame; open() after each hello; lost() before a reconnect; unavailable() on 4404.
  function liveSocket(path, on) {
    const url = (window.location.protocol === "https:" ? "wss://" : "ws://") + window.location.host + path;
    let socket = null;
    let connectedBefore = false;
    let backoff = 500;

    function send(payload) {
      if (socket && socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify(payload));
        return true;
      }
      return false;
    }

    function connect() {
      socket = new WebSocket(url);
      socket.addEventListener("open", function () {
        backoff = 500;
        send({ type: "hello", reconnect: connectedBefore });
        connectedBefore = true;
        if (on.open) on.open();
      });
      socket.addEventListener("message", function (ev) { on.frame(JSON.parse(ev.data)); });
      socket.addEventListener("close", function (ev) {
        if (ev.code === 4404) {
          if (on.unavailable) on.unavailable();
          return;
        }
        if (on.lost) on.lost();
        setTimeout(connect, backoff);
        backoff = Math.min(backoff * 2, 5000);
      });
    }

    connect();
    return { send: send };
  }

  window.liveSocket = liveSocket;
  window.liveSocket.newId = newId;
})();
