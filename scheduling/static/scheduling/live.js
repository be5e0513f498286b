// TaskHub live counters and graphs: poll small JSON endpoints every few seconds, pausable. No external resources.
//   <div data-th-counts="URL"> ... <span data-th-count="tasks.DONE">3</span> ... </div>  numbers from {"tasks": {...}}
//   <div data-th-live-html="URL">...</div>  replaced by the "html" of the answer when it changes
//   <button class="th-live-pause">  pauses and resumes every poller on the page (remembered in localStorage)
"use strict";
(function () {
  var EVERY_MS = 5000, KEY = "taskhub-live-paused";

  function paused() {
    try { return window.localStorage.getItem(KEY) === "1"; } catch (e) { return false; }
  }

  function setPaused(value) {
    try { window.localStorage.setItem(KEY, value ? "1" : "0"); } catch (e) { /* private mode: this page only */ }
    document.documentElement.dataset.thLivePaused = value ? "1" : "0";
    document.querySelectorAll(".th-live-pause").forEach(function (button) {
      button.textContent = value ? "Resume live updates" : "Pause live updates";
      button.setAttribute("aria-pressed", value ? "true" : "false");
    });
    document.querySelectorAll(".th-live-state").forEach(function (span) {
      span.textContent = value ? "Live updates paused." : "Updates every few seconds.";
    });
  }

  function isPaused() { return document.documentElement.dataset.thLivePaused === "1"; }

  function getJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    });
  }

  function lookup(data, path) {
    return path.split(".").reduce(function (value, key) {
      return value !== null && value !== undefined ? value[key] : undefined;
    }, data);
  }

  function poll(node, apply) {
    var url = node.dataset.thCounts || node.dataset.thLiveHtml;
    function later() { window.setTimeout(tick, EVERY_MS); }
    function tick() {
      if (document.hidden || isPaused() || !node.isConnected) { later(); return; }
      getJson(url).then(function (data) { apply(node, data); node.dataset.thUpdated = String(Date.now()); })
        .catch(function () { /* a blip: try again next time */ })
        .then(later);
    }
    later();
  }

  function applyCounts(node, data) {
    node.querySelectorAll("[data-th-count]").forEach(function (span) {
      var value = lookup(data, span.dataset.thCount);
      if (value !== undefined && String(value) !== span.textContent) {
        span.textContent = String(value);
      }
    });
    node.querySelectorAll("meter[data-th-count-value]").forEach(function (meter) {
      var value = lookup(data, meter.dataset.thCountValue);
      if (value !== undefined) { meter.value = value; }
    });
  }

  function applyHtml(node, data) {
    if (typeof data.html === "string" && data.html !== node.dataset.thLast) {
      node.dataset.thLast = data.html;
      node.innerHTML = data.html;
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    setPaused(paused());
    document.querySelectorAll(".th-live-pause").forEach(function (button) {
      button.addEventListener("click", function () { setPaused(!isPaused()); });
    });
    document.querySelectorAll("[data-th-counts]").forEach(function (node) { poll(node, applyCounts); });
    document.querySelectorAll("[data-th-live-html]").forEach(function (node) { poll(node, applyHtml); });
  });
})();
