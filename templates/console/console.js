// Keyboard shortcuts for the reviewers' console: progressive enhancement
// only, every action is also a plain link or form. j/k move, Enter opens,
// a approves as proposed, d and i jump to the deny and ask forms.
(function () {
  "use strict";
  var page = document.body.getAttribute("data-page");
  var rows = Array.prototype.slice.call(document.querySelectorAll("[data-case-row]"));
  var current = 0;
  function select(n) {
    if (!rows.length) { return; }
    current = Math.max(0, Math.min(rows.length - 1, n));
    rows.forEach(function (row, k) { row.classList.toggle("selected", k === current); });
    rows[current].scrollIntoView({ block: "nearest" });
  }
  if (page === "queue") { select(0); }
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.tagName === "BUTTON" || t.tagName === "A")) { return; }
    if (page === "queue") {
      if (e.key === "j") { select(current + 1); }
      else if (e.key === "k") { select(current - 1); }
      else if (e.key === "Enter" && rows.length) { window.location.href = rows[current].getAttribute("data-href"); }
      else { return; }
      e.preventDefault();
    } else if (page === "case") {
      var link = document.querySelector('[data-key="' + e.key + '"]');
      var field = document.querySelector('[data-key-focus="' + e.key + '"]');
      var nav = document.querySelector('[data-nav="' + e.key + '"]');
      if (link) { window.location.href = link.getAttribute("href"); }
      else if (field) { field.focus(); }
      else if (nav) { window.location.href = nav.getAttribute("href"); }
      else { return; }
      e.preventDefault();
    }
  });
})();
