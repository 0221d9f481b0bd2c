// Attune console: live updates only; every page works without this script.
"use strict";
(function () {
  // The executions list: its rows are fetched again every two seconds.
  var rows = document.querySelector("[data-live-rows]");
  if (rows) {
    setInterval(function () {
      if (document.hidden) return;
      fetch(rows.getAttribute("data-live-rows"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) rows.innerHTML = html; })
        .catch(function () {});
    }, 2000);
  }
  // An execution's page: its status badge is fetched again every two seconds.
  var badge = document.querySelector("[data-live-status]");
  if (badge) {
    setInterval(function () {
      if (document.hidden) return;
      fetch(badge.getAttribute("data-live-status"), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) badge.innerHTML = html; })
        .catch(function () {});
    }, 2000);
  }
  // The run form: one more environment variable row per press.
  var add = document.getElementById("add-env");
  if (add) {
    add.hidden = false;
    add.addEventListener("click", function () {
      var rows = document.querySelectorAll(".env-row");
      var last = rows[rows.length - 1];
      var n = rows.length;
      var row = last.cloneNode(true);
      var labels = row.querySelectorAll("label");
      var inputs = row.querySelectorAll("input");
      ["name", "value"].forEach(function (kind, i) {
        var id = "env-" + kind + "-" + n;
        labels[i].setAttribute("for", id);
        labels[i].textContent = "Variable " + (n + 1) + " " + kind;
        inputs[i].id = id;
        inputs[i].value = "";
      });
      last.parentNode.insertBefore(row, last.nextSibling);
      inputs[0].focus();
    });
  }
  // An execution that runs: its (masked) output as it comes, then the page again.
  var out = document.querySelector("[data-live-output]");
  if (out && window.fetch && window.TextDecoder) {
    follow(out);
  }
  function follow(pre) {
    fetch(pre.getAttribute("data-live-output"), { credentials: "same-origin" }).then(function (r) {
      if (!r.ok || !r.body) return;
      var reader = r.body.getReader();
      var decoder = new TextDecoder();
      var buf = "";
      var started = false;
      function line(text) {
        if (!text) return;
        var m;
        try { m = JSON.parse(text); } catch (e) { return; }
        if (m.stream !== undefined && m.data !== undefined) {
          if (!started) { pre.textContent = ""; started = true; }
          var span = document.createElement("span");
          span.className = m.stream;
          span.textContent = m.data;
          pre.appendChild(span);
        } else if (m.status) {
          window.location.reload();
        }
      }
      function pump() {
        return reader.read().then(function (step) {
          if (step.done) { line(buf); return; }
          buf += decoder.decode(step.value, { stream: true });
          var i;
          while ((i = buf.indexOf("\n")) >= 0) {
            line(buf.slice(0, i));
            buf = buf.slice(i + 1);
          }
          return pump();
        });
      }
      return pump();
    }).catch(function () {});
  }
})();
