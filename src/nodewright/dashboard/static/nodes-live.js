// Live status and health of the node list: /nodes/live sends the nodes whose status or health changed (one shared
// change feed per server process), and each row is updated in place.
(function () {
  "use strict";
  var table = document.getElementById("nodes-table");
  if (!table || !window.EventSource) { return; }
  var source = new EventSource(table.dataset.live);
  source.addEventListener("nodes", function (event) {
    JSON.parse(event.data).forEach(function (node) {
      var row = table.querySelector('tr[data-node-id="' + node.id + '"]');
      if (!row) { return; }
      var status = row.querySelector('[data-field="status"]');
      status.textContent = node.status;
      status.className = "state state-" + node.status;
      row.querySelector('[data-field="stage"]').textContent = node.status === "ready" ? "" : (node.stage || "");
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
    });
  });
  source.addEventListener("end", function () { source.close(); window.location.reload(); });
})();
