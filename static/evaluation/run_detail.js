// Evaluation page while the run waits or generates: refresh the progress bar every two seconds from the run's JSON
// address, and reload the page once when the run ends, so the server renders the scores.
(function () {
  "use strict";

  var root = document.getElementById("run-live");
  if (!root || !root.dataset.url) { return; }
  var part = function (name) { return root.querySelector('[data-part="' + name + '"]'); };
  var status = document.getElementById("run-status");
  var bar = root.querySelector("progress");
  var failures = 0;

  var show = function (data) {
    status.textContent = data.status_display;
    status.className = "status status-eval-" + data.status;
    bar.value = data.percent;
    bar.textContent = data.percent + "%";
    part("percent").textContent = data.percent + "%";
    part("rows").textContent = data.total
      ? " · " + data.done.toLocaleString() + " of " + data.total.toLocaleString() + " rows answered"
      : "";
    part("note").textContent = data.status === "queued" ? " · waiting for a worker" : "";
  };

  var poll = function () {
    fetch(root.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        failures = 0;
        show(data);
        if (data.is_active) {
          setTimeout(poll, 2000);
        } else {
          window.location.reload();
        }
      })
      .catch(function () {
        failures += 1;
        part("note").textContent = " · cannot reach the server, trying again…";
        setTimeout(poll, Math.min(30000, 2000 * failures));
      });
  };
  setTimeout(poll, 2000);
})();
