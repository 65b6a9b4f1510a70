// Tandem's console: what htmx does not do for it. Shows whether the page is live, notes when its
// stream first opened (performance mark "tandem-live", read by the benchmark: from then on every change
// is sent), and goes to the sign-in page when the session has ended. No inline script anywhere: the page's CSP forbids it.
(function () {
  "use strict";
  var live = false;
  function state(text, isLive) {
    document.body.dataset.live = isLive ? "true" : "false";
    var shown = document.getElementById("live-state");
    if (shown) { shown.textContent = text; shown.className = "live-state" + (isLive ? " on" : ""); }
  }
  document.addEventListener("htmx:sseOpen", function () {
    state("live", true);
    if (!live) {
      live = true;
      performance.mark("tandem-live");
      document.body.dataset.liveAt = String(performance.now());
    }
  });
  document.addEventListener("htmx:sseError", function () { state("reconnecting…", false); });
  // An action the device did not answer: say so where actions answer (every answer of the device, errors
  // included, is swapped in where it says).
  document.addEventListener("htmx:sendError", function () {
    var flash = document.getElementById("flash");
    if (!flash) { return; }
    var message = document.createElement("div");
    message.className = "flash error";
    message.setAttribute("role", "alert");
    message.textContent = "The device did not answer: the action may not have been carried out. Check the page before trying again.";
    flash.replaceChildren(message);
  });
  document.addEventListener("htmx:sseClose", function (event) {
    if (event.detail && event.detail.type === "message") { window.location.assign("/ui/login"); }
  });
  // A form's answer replaced it: give the keyboard to its first field in error (only after the user's own
  // request: a live update never moves the focus).
  document.addEventListener("htmx:afterSwap", function (event) {
    var form = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (!form || form.tagName !== "FORM") { return; }
    var invalid = document.querySelector("form [aria-invalid=true]");
    if (invalid) { invalid.focus(); }
  });
})();
