// The page the server answers when it is too busy to take a form right now (503, oversight/ops/gate.py): the
// form holds what was sent; send it again after the server's Retry-After. Without JS its button does the same.
(function () {
  "use strict";
  const form = document.getElementById("resend");
  if (!form) return;
  const wait = parseFloat(form.dataset.retryAfter || "2") * 1000;
  setTimeout(function () { HTMLFormElement.prototype.submit.call(form); }, wait);
})();
