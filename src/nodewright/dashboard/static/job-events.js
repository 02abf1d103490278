// Live log of one job: follows /api/jobs/{id}/events over Server-Sent Events (the session cookie
// authenticates the GET), appends each event, and reloads once the job has finished.
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

  function append(event) {
    var item = JSON.parse(event.data);
    if (empty) { empty.remove(); empty = null; }
    var row = document.createElement("tr");
    row.className = "level-" + item.level;
    row.appendChild(cell(String(item.seq)));
    row.appendChild(cell(item.at.replace("T", " ").slice(0, 19)));
    row.appendChild(cell(item.type));
    row.appendChild(cell(item.message));
    log.querySelector("tbody").appendChild(row);
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
