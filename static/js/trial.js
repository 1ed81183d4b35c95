// Every participant page. Two jobs:
// 1. The trial page: a countdown driven by the server's remaining time, selection changes reported as they
//    happen (so a closed browser still has its last choice recorded), auto-submit at zero, visibility events,
//    and the slider confidence, which starts untouched and must be moved.
// 2. One round trip per step: forms and links in `.step` are boosted by htmx (templates/participant/base.html);
//    the server answers with the next step's page, whose <main> replaces this one. So a page is set up when it
//    loads and again each time htmx swaps a new <main> in; whatever belonged to the old page stops with it.
(function () {
  "use strict";

  if (window.htmx) {
    // The server decides where a participant is: back and forward reload the page from it, never from a
    // snapshot (which would show an answered item again, and keep item pages in sessionStorage).
    htmx.config.historyCacheSize = 0;
    htmx.config.refreshOnHistoryMiss = true;
    // A refused answer or a closed study is a page of the server's too: swap it in like any other.
    htmx.config.responseHandling = [{ code: "204", swap: false }, { code: ".*", swap: true }];
  }

  let current = null; // the trial page on screen, if any: { form, submitted, ... }

  function csrfOf(form) {
    const input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  // Seconds the server asked us to wait (503 + Retry-After: its request gate is full; oversight/ops/gate.py).
  function retryAfter(value) {
    const s = parseFloat(value);
    return (isFinite(s) && s > 0 ? Math.min(s, 30) : 2) * 1000;
  }

  function post(form, url, body, attempt) {
    body.set("csrfmiddlewaretoken", csrfOf(form));
    return fetch(url, { method: "POST", body: body, credentials: "same-origin",
                        headers: { "X-CSRFToken": csrfOf(form), "Accept": "application/json" } })
      .then(function (r) {
        // A busy server: send the same selection again when it says, rather than lose it.
        if (r.status === 503 && (attempt || 0) < 20) {
          return new Promise(function (resolve) {
            setTimeout(function () { resolve(post(form, url, body, (attempt || 0) + 1)); },
                       retryAfter(r.headers.get("Retry-After")));
          });
        }
        return r;
      });
  }

  function submitNow(form) {
    // At zero: whatever is selected goes, without the browser's own checks (a half-filled distribution).
    current.submitted = true;
    form.querySelector("#auto-flag").value = "1";
    form.noValidate = true;
    if (form.requestSubmit) form.requestSubmit();
    // Not form.submit(): the button with id="submit" shadows that method on the form element.
    else HTMLFormElement.prototype.submit.call(form);
  }

  function setupTrial(form) {
    const page = { form: form, submitted: false };
    current = page;
    const timer = document.getElementById("timer");

    // Report every change of option or confidence.
    form.addEventListener("change", function (ev) {
      if (!ev.target.name && !ev.target.hasAttribute("data-confidence-slider") &&
          !ev.target.hasAttribute("data-judge-slider")) return;
      const data = new URLSearchParams(new FormData(form));
      data.delete("auto");
      post(form, form.dataset.selectUrl, data).catch(function () { /* retried on the next change or at submit */ });
    });

    const slider = form.querySelector("[data-confidence-slider]");
    if (slider) {
      slider.addEventListener("input", function () {
        document.getElementById("conf-value").value = slider.value;
        document.getElementById("conf-out").textContent = slider.value + "%";
        document.getElementById("conf-fieldset").classList.remove("untouched");
        const error = document.getElementById("form-error");
        if (error && error.dataset.slider) error.remove();
      });
    }

    // A protocol judge's slider: the probability of answer A (B gets the rest), untouched until moved.
    const judge = form.querySelector("[data-judge-slider]");
    if (judge) {
      judge.addEventListener("input", function () {
        const a = parseInt(judge.value, 10);
        document.getElementById("p-first").value = a;
        document.getElementById("p-a").textContent = "A: " + a + "%";
        document.getElementById("p-b").textContent = "B: " + (100 - a) + "%";
        const hint = document.getElementById("judge-hint");
        if (hint) hint.remove();
        document.getElementById("judge-fieldset").classList.remove("untouched");
        const error = document.getElementById("form-error");
        if (error && error.dataset.slider) error.remove();
      });
    }

    form.addEventListener("submit", function () { page.submitted = true; });

    // Countdown. The deadline is the server's: we count down from the remaining seconds it rendered, against
    // the monotonic clock, and re-sync when the tab becomes visible again.
    if (form.dataset.secondsLeft !== undefined && timer) {
      page.deadline = performance.now() + parseFloat(form.dataset.secondsLeft) * 1000;
      const tick = function () {
        if (!form.isConnected) return; // the page was swapped out: its clock stops with it
        const left = Math.max(0, (page.deadline - performance.now()) / 1000);
        timer.textContent = Math.ceil(left) + " s";
        timer.classList.toggle("urgent", left <= 30);
        if (left <= 0.25 && !page.submitted) {
          submitNow(form);
          return;
        }
        setTimeout(tick, 200);
      };
      tick();
    }
  }

  // An untouched slider is refused here, before a round trip (the server refuses it too).
  document.addEventListener("submit", function (ev) {
    const form = ev.target;
    if (form.id !== "answer-form" || form.querySelector("#auto-flag").value === "1") return;
    const value = form.querySelector("#conf-value") || form.querySelector("#p-first");
    if (value && !value.value) {
      ev.preventDefault();
      ev.stopPropagation(); // htmx listens on the form: the request is not sent
      let error = document.getElementById("form-error");
      if (!error) {
        error = document.createElement("p");
        error.id = "form-error";
        error.className = "form-error";
        error.setAttribute("role", "alert");
        form.querySelector("#question").before(error);
      }
      error.dataset.slider = "1";
      error.textContent = value.id === "p-first" ? "Please move the slider to say which answer is more likely."
                                                 : "Please move the slider to say how confident you are.";
      if (current) current.submitted = false;
    }
  }, true);

  document.addEventListener("visibilitychange", function () {
    if (!current || !current.form.isConnected) return;
    const form = current.form;
    const data = new FormData();
    data.set("csrfmiddlewaretoken", csrfOf(form));
    data.set("kind", document.visibilityState === "visible" ? "visible" : "hidden");
    data.set("position", form.dataset.position);
    navigator.sendBeacon(form.dataset.eventUrl, data);
    if (document.visibilityState !== "visible" || current.deadline === undefined) return;
    const page = current;
    fetch(form.dataset.stateUrl, { credentials: "same-origin" }).then(function (r) { return r.json(); })
      .then(function (s) {
        if (!page.form.isConnected) return;
        if (s.status !== "shown") { window.location.reload(); return; }
        if (s.seconds_left !== null) page.deadline = performance.now() + s.seconds_left * 1000;
      }).catch(function () {});
  });

  function setup(swapped) {
    current = null;
    const form = document.getElementById("answer-form");
    if (form) setupTrial(form);
    const heading = document.querySelector("main h1");
    if (swapped && heading) {
      // The button that was pressed went with the old page: a keyboard or screen reader user starts again at
      // the new page's heading, as after a page load.
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: true });
    }
  }

  document.addEventListener("htmx:beforeSwap", function (ev) {
    const xhr = ev.detail.xhr;
    // A step (an answer) the server was too busy to take (503): nothing is swapped in, and the same form is sent
    // again after Retry-After, so the answer is never lost and the page never shows an error.
    if (xhr && xhr.status === 503) {
      ev.detail.shouldSwap = false;
      ev.detail.isError = false;
      const source = ev.detail.requestConfig && ev.detail.requestConfig.elt;
      setTimeout(function () {
        if (source && source.isConnected && source.tagName === "FORM") source.requestSubmit();
        else window.location.reload();
      }, retryAfter(xhr.getResponseHeader("Retry-After")));
      return;
    }
    // Only a page of ours has a <main> to swap in; anything else (a proxy's error page) would leave none.
    if (ev.detail.shouldSwap && !/<main[\s>]/.test(xhr.responseText || "")) {
      ev.detail.shouldSwap = false;
      trouble();
    }
  });
  document.addEventListener("htmx:sendError", trouble);
  document.addEventListener("htmx:load", function (ev) {
    if (ev.detail.elt && ev.detail.elt.tagName === "MAIN") setup(true);
  });

  function trouble() {
    // The server could not be reached or did not answer with a page: go to where it says the participant is,
    // by an ordinary page load (it retries as a browser does). Nothing is lost: the server has every answer
    // it acknowledged, and the deadline is kept by the server's clock.
    const step = document.getElementById("step");
    const next = step && step.dataset.nextUrl;
    const box = document.getElementById("form-error") || document.createElement("p");
    box.className = "form-error";
    box.setAttribute("role", "alert");
    box.textContent = "The connection to the server was interrupted. Reconnecting…";
    if (!box.isConnected) {
      const main = document.querySelector("main .step-page, main .question-pane");
      if (main) main.prepend(box);
    }
    setTimeout(function () { if (next) window.location.assign(next); else window.location.reload(); }, 2000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", function () { setup(false); });
  else setup(false);
})();
