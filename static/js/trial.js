// The trial page: a countdown driven by the server's remaining time, selection changes reported as they
// happen (so a closed browser still has its last choice recorded), auto-submit at zero, visibility events.
(function () {
  "use strict";
  const form = document.getElementById("answer-form");
  if (!form) return;
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const timer = document.getElementById("timer");
  let submitted = false;

  // Seconds the server asked us to wait (503 + Retry-After: its request gate is full; oversight/ops/gate.py).
  function retryAfter(value) {
    const s = parseFloat(value);
    return (isFinite(s) && s > 0 ? Math.min(s, 30) : 2) * 1000;
  }

  function post(url, data, attempt) {
    const body = new URLSearchParams(data);
    body.set("csrfmiddlewaretoken", csrf);
    return fetch(url, { method: "POST", body: body, credentials: "same-origin",
                        headers: { "X-CSRFToken": csrf, "Accept": "application/json" } })
      .then(function (r) {
        // A busy server: send the same selection again when it says, rather than lose it.
        if (r.status === 503 && (attempt || 0) < 20) {
          return new Promise(function (resolve) {
            setTimeout(function () { resolve(post(url, data, (attempt || 0) + 1)); },
                       retryAfter(r.headers.get("Retry-After")));
          });
        }
        return r;
      });
  }

  // An answer sent with htmx that the server was too busy to take (503): nothing is swapped in, and the same
  // form is submitted again after Retry-After, so the answer is never lost and the page never shows an error.
  document.body.addEventListener("htmx:beforeSwap", function (ev) {
    const xhr = ev.detail.xhr;
    if (!xhr || xhr.status !== 503) return;
    ev.detail.shouldSwap = false;
    ev.detail.isError = false;
    const source = ev.detail.requestConfig && ev.detail.requestConfig.elt;
    const again = source && source.tagName === "FORM" ? source : form;
    setTimeout(function () {
      if (document.body.contains(again)) again.requestSubmit();
    }, retryAfter(xhr.getResponseHeader("Retry-After")));
  });

  // Report every change of option or confidence.
  form.addEventListener("change", function (ev) {
    const t = ev.target;
    if (!t.name) return;
    const data = {};
    const choice = form.querySelector("input[name=choice]:checked");
    if (choice) data.choice = choice.value;
    const conf = form.querySelector("[name=confidence]:checked, input[type=range][name=confidence]");
    if (conf) data.confidence = conf.value;
    form.querySelectorAll("input[type=number][name^=p]").forEach(function (el) { data[el.name] = el.value; });
    post(form.dataset.selectUrl, data).catch(function () { /* retried on the next change or at submit */ });
  });

  const slider = document.getElementById("conf-slider");
  if (slider) slider.addEventListener("input", function () {
    document.getElementById("conf-out").textContent = slider.value;
  });

  form.addEventListener("submit", function () { submitted = true; });

  // Countdown. The deadline is the server's: we count down from the remaining seconds it rendered,
  // against the monotonic clock, and re-sync when the tab becomes visible again.
  if (form.dataset.secondsLeft !== undefined && timer) {
    let deadline = performance.now() + parseFloat(form.dataset.secondsLeft) * 1000;
    const tick = function () {
      const left = Math.max(0, (deadline - performance.now()) / 1000);
      timer.textContent = Math.ceil(left) + " s";
      timer.classList.toggle("urgent", left <= 30);
      if (left <= 0.25 && !submitted) {
        submitted = true;
        document.getElementById("auto-flag").value = "1";
        form.querySelectorAll("input[required]").forEach(function (el) { el.required = false; });
        // Not form.submit(): the button with id="submit" shadows that method on the form element.
        HTMLFormElement.prototype.submit.call(form);
        return;
      }
      setTimeout(tick, 200);
    };
    tick();
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState !== "visible") return;
      fetch(form.dataset.stateUrl, { credentials: "same-origin" }).then(function (r) { return r.json(); })
        .then(function (s) {
          if (s.status !== "shown") { window.location.reload(); return; }
          if (s.seconds_left !== null) deadline = performance.now() + s.seconds_left * 1000;
        }).catch(function () {});
    });
  }

  document.addEventListener("visibilitychange", function () {
    const data = new FormData();
    data.set("csrfmiddlewaretoken", csrf);
    data.set("kind", document.visibilityState === "visible" ? "visible" : "hidden");
    data.set("position", form.dataset.position);
    navigator.sendBeacon(form.dataset.eventUrl, data);
  });
})();
