// Follow a running attempt's log: poll its /tasks/{id}/results/{attempt}/log while it is not finished.
(function () {
  "use strict";
  function follow(pre) {
    if (pre.dataset.following === "1") { return; }
    pre.dataset.following = "1";
    var box = pre.closest(".th-attempt-log");
    function atBottom() { return pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24; }
    function tick() {
      if (pre.dataset.live !== "1") { return; }
      if (document.hidden) { window.setTimeout(tick, 1500); return; }
      fetch(pre.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (data) {
          var stick = atBottom();
          if (data.text) { pre.textContent = data.text; }
          if (stick) { pre.scrollTop = pre.scrollHeight; }
          var count = box && box.querySelector(".th-log-count");
          if (count) { count.textContent = data.lines + (data.lines === 1 ? " line" : " lines"); }
          var badge = box && box.querySelector(".th-log-status");
          if (badge) { badge.textContent = data.status; badge.dataset.status = data.status; }
          if (data.finished) {
            pre.dataset.live = "0";
            if (!data.text) { pre.textContent = "(nothing logged)"; }
            var following = box && box.querySelector(".th-log-following");
            if (following) { following.textContent = "finished"; }
            return;
          }
          window.setTimeout(tick, 1500);
        })
        .catch(function () { window.setTimeout(tick, 5000); });
    }
    pre.scrollTop = pre.scrollHeight;
    window.setTimeout(tick, 1000);
  }
  function start() { document.querySelectorAll("pre.th-log").forEach(follow); }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
