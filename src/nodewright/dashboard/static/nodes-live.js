// Live status and health of the node list: /nodes/live sends the nodes whose status or health changed (one shared
// change feed per server process), and each row is updated in place. A node the page does not show yet
// (created elsewhere: the API, the CLI, another browser) gets its row from /nodes/rows, rendered by the server
// with the page's own filters, so a filtered list stays filtered.
(function () {
  "use strict";
  var table = document.getElementById("nodes-table");
  if (!table || !window.EventSource) { return; }
  var body = table.querySelector("tbody");
  var asked = {};  // node id -> the status it had when its row was last asked for
  var pending = {};
  var timer = null;

  function update(row, node) {
    var status = row.querySelector('[data-field="status"]');
    status.textContent = node.status;
    status.className = "state state-" + node.status;
    var done = node.status === "ready" || node.status === "released";
    row.querySelector('[data-field="stage"]').textContent = done ? "" : (node.stage || "");
    row.querySelector('[data-field="error"]').textContent = node.error || "";
    row.querySelector('[data-field="address"]').textContent = node.address || "";
    // Health: text and title only (never HTML: details come from the node and are hostile).
    var health = row.querySelector('[data-field="health"]');
    if (health && node.health) {
      health.textContent = node.health.state;
      health.title = node.health.title;
      health.className = "health health-" + node.health.state;
      var paused = row.querySelector('[data-field="paused"]');
      paused.hidden = !node.health.paused;
      paused.title = node.health.pause;
    }
  }

  function fetchRows() {
    timer = null;
    var ids = Object.keys(pending);
    pending = {};
    // A few hundred ids per request keep the URL short (a first snapshot lists every node).
    for (var start = 0; start < ids.length; start += 200) { fetchSome(ids.slice(start, start + 200)); }
  }

  function fetchSome(ids) {
    var query = table.dataset.query ? "&" + table.dataset.query : "";
    fetch(table.dataset.rows + "?ids=" + ids.join(",") + query, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        // Rows rendered by the server from its own template (escaped there): parsed, never run.
        var holder = document.createElement("tbody");
        holder.innerHTML = html;
        var rows = Array.prototype.slice.call(holder.querySelectorAll("tr[data-node-id]"));
        if (!rows.length) { return; }
        var empty = document.getElementById("nodes-empty");
        if (empty) { empty.remove(); }
        rows.reverse().forEach(function (row) {
          if (table.querySelector('tr[data-node-id="' + row.dataset.nodeId + '"]')) { return; }
          // Newest first, as the server orders the list.
          var after = null;
          Array.prototype.some.call(body.querySelectorAll("tr[data-node-id]"), function (other) {
            if (Number(other.dataset.nodeId) < Number(row.dataset.nodeId)) { after = other; return true; }
            return false;
          });
          body.insertBefore(row, after);
        });
      })
      .catch(function () { /* the next change asks again */ });
  }

  var source = new EventSource(table.dataset.live);
  source.addEventListener("nodes", function (event) {
    JSON.parse(event.data).forEach(function (node) {
      var row = table.querySelector('tr[data-node-id="' + node.id + '"]');
      if (row) { update(row, node); return; }
      // Not on the page: ask once per status (a new status may make it match the filters).
      if (asked[node.id] === node.status) { return; }
      asked[node.id] = node.status;
      pending[node.id] = true;
    });
    if (Object.keys(pending).length && !timer) { timer = window.setTimeout(fetchRows, 150); }
  });
  source.addEventListener("fleet", function (event) {
    // The fleet's monthly cost and counts, as text (never HTML).
    var fleet = JSON.parse(event.data);
    ["monthly", "detail"].forEach(function (name) {
      var field = document.querySelector('[data-fleet="' + name + '"]');
      if (field && typeof fleet[name] === "string") { field.textContent = fleet[name]; }
    });
  });
  source.addEventListener("end", function () { source.close(); window.location.reload(); });
})();
