// vigil portal: theme toggle and live alert rows (Server-Sent Events).
(function () {
  "use strict";

  function currentTheme() {
    var t = document.documentElement.getAttribute("data-theme");
    if (t) return t;
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  function setupTheme() {
    var b = document.getElementById("theme-toggle");
    if (!b) return;
    function label() {
      var dark = currentTheme() === "dark";
      b.textContent = dark ? "Light theme" : "Dark theme";
      b.setAttribute("aria-pressed", dark ? "true" : "false");
    }
    label();
    b.addEventListener("click", function () {
      var next = currentTheme() === "dark" ? "light" : "dark";
      document.documentElement.setAttribute("data-theme", next);
      try { localStorage.setItem("vigil-theme", next); } catch (e) { /* not stored */ }
      label();
    });
  }

  function cell(tr, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function span(cls, text) {
    var s = document.createElement("span");
    s.className = cls;
    s.textContent = text;
    return s;
  }

  function link(href, text, cls) {
    var a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    if (cls) a.className = cls;
    return a;
  }

  function row(a) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-id", a.id);
    tr.className = "new";
    cell(tr).appendChild(span("sev sev-" + a.severity.toLowerCase(), a.severity));
    cell(tr).appendChild(link(a.url, a.displayName, "alert-link"));
    var res = cell(tr, "resource");
    res.appendChild(link(a.clusterUrl, a.cluster));
    var rest = "";
    if (a.namespace) rest += " / " + a.namespace;
    if (a.pod) rest += " / " + a.pod;
    if (rest) res.appendChild(document.createTextNode(rest));
    cell(tr).appendChild(span("status status-" + a.status.toLowerCase(), a.status));
    cell(tr, "num").textContent = String(a.count);
    cell(tr, "time").textContent = a.firstSeen;
    cell(tr, "time").textContent = a.lastSeen;
    return tr;
  }

  function setupLive() {
    var table = document.getElementById("alerts-table");
    if (!table || !window.EventSource) return;
    var url = table.getAttribute("data-events");
    if (!url) return;
    var body = document.getElementById("alerts-body");
    var status = document.getElementById("live-status");
    var es = new EventSource(url);
    es.addEventListener("alert", function (ev) {
      var a;
      try { a = JSON.parse(ev.data); } catch (e) { return; }
      var old = body.querySelector('tr[data-id="' + CSS.escape(a.id) + '"]');
      if (old) old.remove();
      body.insertBefore(row(a), body.firstChild);
      var empty = document.getElementById("no-alerts");
      if (empty) empty.remove();
      if (status) status.textContent = "New alert: " + a.severity + " " + a.displayName;
    });
    window.addEventListener("pagehide", function () { es.close(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupTheme();
    setupLive();
  });
})();
