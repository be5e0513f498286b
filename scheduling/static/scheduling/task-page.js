// TaskHub task page: live attempts panel, cron preview while typing, handler help. No external resources.
"use strict";
(function () {
  function config() {
    var node = document.getElementById("th-config");
    return node ? JSON.parse(node.textContent) : {};
  }

  // Put a box under a field's widget row (not inside Django's flex row, which would squeeze the widget).
  function below(input, box) {
    var row = input.closest(".flex-container") || input.parentNode;
    row.insertAdjacentElement("afterend", box);
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  // --- live attempts: poll while the task is waiting, queued or running -------------------------------
  function startLive() {
    var panel = document.getElementById("th-live");
    if (!panel || panel.dataset.active !== "1") { return; }
    var fastest = 1500, slowest = 10000, delay = fastest, lastHtml = null;
    function later() { window.setTimeout(tick, delay); }
    function tick() {
      if (document.hidden) { later(); return; }  // a background tab does not poll
      fetch(panel.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (data) {
          // Poll fast while things change, back off while a task just waits (e.g. on its dependencies).
          delay = data.html === lastHtml ? Math.min(delay * 1.5, slowest) : fastest;
          lastHtml = data.html;
          panel.innerHTML = data.html;
          panel.dataset.status = data.status;
          var tools = document.querySelector(".object-tools");
          if (tools && data.actions_html !== undefined) {
            tools.querySelectorAll("li.th-action-item").forEach(function (li) { li.remove(); });
            tools.insertAdjacentHTML("afterbegin", data.actions_html);
          }
          var graph = document.getElementById("th-graph-body");
          if (graph && data.graph_html !== undefined) { graph.innerHTML = data.graph_html; }
          var status = document.querySelector(".field-status .readonly");
          if (status && data.status_label) { status.textContent = data.status_label; }
          panel.dataset.active = data.active ? "1" : "0";
          if (data.active) { later(); }
        })
        .catch(function () { delay = slowest; later(); });  // a blip: slow down, keep trying
    }
    later();
  }

  // --- cron preview -------------------------------------------------------------------------------------
  function startCronPreview() {
    var url = config().cronPreviewUrl;
    var expr = document.getElementById("id_cron_expr");
    if (!url || !expr) { return; }
    var zone = document.getElementById("id_timezone");
    var box = el("div", { "class": "th-cron-preview", id: "th-cron-preview", "aria-live": "polite" });
    below(expr, box);
    var timer = null;
    var asked = 0;

    function render(data) {
      box.innerHTML = "";
      box.classList.toggle("th-bad", !data.ok && !!data.error);
      if (!data.ok) {
        box.style.display = data.error ? "" : "none";
        if (data.error) { box.appendChild(el("span", { "class": "th-cron-error" }, data.error)); }
        return;
      }
      box.style.display = "";
      box.appendChild(el("strong", { "class": "th-cron-description" }, data.description));
      box.appendChild(el("div", { "class": "th-muted" }, "Next fires (" + data.timezone + "):"));
      var list = el("ol", { "class": "th-cron-fires" });
      data.fires.forEach(function (fire) {
        var item = el("li", { "data-utc": fire.utc }, fire.local);
        if (fire.note) { item.appendChild(el("span", { "class": "th-dst" }, " ⚠ " + fire.note)); }
        list.appendChild(item);
      });
      box.appendChild(list);
    }

    function refresh() {
      var number = ++asked;
      var query = "?expr=" + encodeURIComponent(expr.value) + "&tz=" + encodeURIComponent(zone ? zone.value : "UTC");
      fetch(url + query, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.json(); })
        .then(function (data) { if (number === asked) { render(data); } })  // drop answers to older keystrokes
        .catch(function () {});
    }

    function soon() {
      window.clearTimeout(timer);
      timer = window.setTimeout(refresh, 250);
    }
    expr.addEventListener("input", soon);
    if (zone) { zone.addEventListener("input", soon); zone.addEventListener("change", soon); }
    refresh();
  }

  // --- schedule fields only for SCHEDULED tasks --------------------------------------------------------
  function startTypeFields() {
    var type = document.getElementById("id_task_type");
    if (!type) { return; }
    var rows = ["cron_expr", "timezone", "cron_description", "next_fire_at", "overlap_policy"];
    function apply() {
      var scheduled = type.value === "SCHEDULED";
      rows.forEach(function (name) {
        document.querySelectorAll(".form-row.field-" + name).forEach(function (row) { row.hidden = !scheduled; });
      });
    }
    type.addEventListener("change", apply);
    apply();
  }

  // --- handler help: description, parameter schema and a parameters skeleton of the chosen handler -----
  function startHandlerHelp() {
    var select = document.getElementById("id_handler_tag");
    var specsNode = document.getElementById("th-handlers");
    if (!select || !specsNode) { return; }
    var specs = JSON.parse(specsNode.textContent);
    var params = document.getElementById("id_parameters");
    var tags = document.getElementById("id_tag_names");
    var box = el("div", { "class": "th-handler-help", id: "th-handler-help" });
    below(select, box);
    var offered = null;  // the skeleton last written into the box, replaced freely until someone edits it

    function chosen() {
      if (specs[select.value]) { return select.value; }
      var typed = tags ? tags.value.split(",").map(function (t) { return t.trim(); }) : [];
      return typed.filter(function (t) { return specs[t]; })[0] || "";
    }

    function offerSkeleton(spec) {
      if (!params || !spec || spec.skeleton === null || spec.skeleton === undefined) { return; }
      var current = params.value.trim();
      if (current !== "" && current !== "{}" && current !== offered) { return; }  // never overwrite typed input
      offered = JSON.stringify(spec.skeleton, null, 2);
      params.value = offered;
    }

    function show(event) {
      box.innerHTML = "";
      var spec = specs[chosen()];
      if (!spec) { return; }
      // On a saved task's page the stored parameters stay as they are until the handler is changed.
      if (event || !document.getElementById("th-live")) { offerSkeleton(spec); }
      if (spec.description) { box.appendChild(el("div", {}, spec.description)); }
      var details = el("details");
      details.appendChild(el("summary", {}, "Parameters schema"));
      details.appendChild(el("pre", {}, JSON.stringify(spec.schema, null, 2)));
      box.appendChild(details);
    }
    select.addEventListener("change", show);
    if (tags) { tags.addEventListener("change", show); }
    show();
  }

  document.addEventListener("DOMContentLoaded", function () {
    startLive();
    startCronPreview();
    startHandlerHelp();
    startTypeFields();
  });
})();
