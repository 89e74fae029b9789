// The inspector works without JavaScript; this only makes the activity feed live: it asks
// for entries after the page's cursor every two seconds and appends them.
(function () {
  "use strict";
  var table = document.querySelector("table[data-feed]");
  if (!table) return;
  var body = document.getElementById("feed");
  var live = document.getElementById("live");
  var cursor = table.getAttribute("data-cursor") || "";
  var url = table.getAttribute("data-feed");
  live.textContent = "Following new changes live.";
  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }
  function poll() {
    var query = cursor ? "?since=" + encodeURIComponent(cursor) : "";
    fetch(url + query, { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (page) {
        if (!page) return;
        page.changes.forEach(function (change) {
          var row = document.createElement("tr");
          row.className = change.kind + " fresh";
          var when = document.createElement("td");
          var time = document.createElement("time");
          time.setAttribute("datetime", change.at_iso);
          time.textContent = change.at;
          when.appendChild(time);
          row.appendChild(when);
          cell(row, change.kind);
          var memory = document.createElement("td");
          if (change.href) {
            var link = document.createElement("a");
            link.href = change.href;
            link.textContent = change.text;
            memory.appendChild(link);
          } else {
            var code = document.createElement("code");
            code.textContent = change.memory_id;
            memory.appendChild(code);
          }
          row.appendChild(memory);
          body.appendChild(row);
        });
        if (page.changes.length) {
          live.textContent = page.changes.length + " new change(s).";
        }
        if (page.next_cursor) cursor = page.next_cursor;
      })
      .catch(function () { /* the next poll retries */ })
      .then(function () { setTimeout(poll, 2000); });
  }
  setTimeout(poll, 2000);
})();
