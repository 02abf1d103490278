// Live log of one job: follows /api/jobs/{id}/events over Server-Sent Events (the session cookie
// authenticates the GET), appends each event, and reloads once the job has finished. On a node's page
// (data-node-id) each burst of events also refreshes the node's status badge and stage timeline from
// /api/nodes/{id}, so the page says "provisioning" while it provisions, not the "pending" it loaded with.
(function () {
  "use strict";
  var log = document.getElementById("job-events");
  if (!log || log.dataset.finished === "true" || !window.EventSource) { return; }
  var jobId = log.dataset.jobId;
  var after = log.dataset.after || "0";
  var terminal = ["succeeded", "failed", "canceled"];
  var source = new EventSource("/api/jobs/" + jobId + "/events?after=" + after);
  var empty = document.getElementById("job-events-empty");

  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  var nodeId = log.dataset.nodeId;
  var badge = nodeId ? document.querySelector('[data-testid="node-status"]') : null;
  var refreshing = null;

  function refreshNode() {
    refreshing = null;
    fetch("/api/nodes/" + nodeId, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (node) {
        badge.textContent = node.status;
        badge.className = "state state-" + node.status;
        var stages = Array.prototype.slice.call(document.querySelectorAll("ol.timeline li[data-stage]"));
        var at = stages.map(function (li) { return li.dataset.stage; }).indexOf(node.stage);
        if (node.status === "ready") { at = stages.length; }
        if (at === -1) { return; }
        stages.forEach(function (li, index) {
          if (index < at) { li.className = "stage-done"; }
          else if (index === at) { li.className = node.status === "failed" ? "stage-failed" : "stage-current"; }
        });
      })
      .catch(function () { /* the next event tries again */ });
  }

  function append(event) {
    var item = JSON.parse(event.data);
    if (empty) { empty.remove(); empty = null; }
    var row = document.createElement("tr");
    row.className = "level-" + item.level;
    row.appendChild(cell(String(item.seq)));
    var at = document.createElement("td");
    var time = document.createElement("time");
    time.dateTime = item.at;
    time.title = item.at.replace("T", " ").slice(0, 19) + " UTC";
    time.textContent = "just now";
    at.appendChild(time);
    row.appendChild(at);
    row.appendChild(cell(item.type));
    row.appendChild(cell(item.message));
    log.querySelector("tbody").appendChild(row);
    if (badge && !refreshing) { refreshing = window.setTimeout(refreshNode, 200); }
    if (item.type === "state" && item.data && terminal.indexOf(item.data.state) !== -1) {
      source.close();
      window.setTimeout(function () { window.location.reload(); }, 300);
    }
  }

  ["state", "step", "log", "message"].forEach(function (type) { source.addEventListener(type, append); });
  // The server closed the stream because the session ended (signed out elsewhere, expired): stop
  // here instead of reconnecting; reloading shows the sign-in page.
  source.addEventListener("end", function () {
    source.close();
    window.location.reload();
  });
})();
