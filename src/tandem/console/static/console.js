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
  document.addEventListener("htmx:sseClose", function (event) {
    if (event.detail && event.detail.type === "message") { window.location.assign("/ui/login"); }
  });
  // A form's answer replaced it: give the keyboard back to its first field in error, or to the form.
  document.addEventListener("htmx:afterSwap", function () {
    var invalid = document.querySelector("form [aria-invalid=true]");
    if (invalid) { invalid.focus(); }
  });
})();
