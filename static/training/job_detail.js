// Job page: draw the loss and learning-rate curves (Chart.js) from the job's JSON address and, while the job is
// active, refresh the progress, figures, log and attempts every two seconds. When the job ends the page reloads
// once, so its final state is rendered by the server. The page works without this script, minus the curves.
(function () {
  "use strict";

  var root = document.getElementById("job-live");
  var lossBox = document.getElementById("loss-chart");
  var lrBox = document.getElementById("lr-chart");
  if (!root || !root.dataset.url || !lossBox) { return; }  // a job that never ran has nothing to draw
  var wasActive = root.dataset.active === "true";
  var part = function (name) { return root.querySelector('[data-part="' + name + '"]'); };

  var axis = function (title, extra) {
    return Object.assign({ title: { display: true, text: title }, grid: { color: "#e8ecf1" } }, extra || {});
  };
  var makeChart = function (box, datasets, yTitle, yExtra) {
    if (!window.Chart) { return null; }
    return new window.Chart(box.querySelector("canvas"), {
      type: "line",
      data: { datasets: datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        parsing: false,
        normalized: true,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: { x: axis("Step", { type: "linear", min: 0 }), y: axis(yTitle, yExtra) },
        plugins: { legend: { position: "bottom", labels: { usePointStyle: true, pointStyle: "line" } } },
      },
    });
  };
  var line = function (label, colour, dashed) {
    return {
      label: label,
      data: [],
      borderColor: colour,
      backgroundColor: colour,
      borderWidth: 2,
      borderDash: dashed ? [6, 4] : [],
      pointRadius: dashed ? 3 : 0,
      tension: 0.2,
    };
  };
  var lossChart = makeChart(lossBox, [line("Training loss", "#2459a6"), line("Evaluation loss", "#c2410c", true)], "Loss");
  var lrChart = makeChart(lrBox, [line("Learning rate", "#1e7a46")], "Learning rate", {
    beginAtZero: true,
    ticks: { callback: function (value) { return Number(value).toExponential(1); } },
  });

  // Points already drawn, per curve: the newest step of each, so a point sent twice is drawn once.
  var series = {
    train: { chart: lossChart, index: 0, key: "loss", last: -1 },
    eval: { chart: lossChart, index: 1, key: "loss", last: -1 },
    learning_rate: { chart: lrChart, index: 0, key: "value", last: -1 },
  };
  var newest = -1;
  var addPoints = function (curves) {
    Object.keys(series).forEach(function (name) {
      var s = series[name];
      (curves[name] || []).forEach(function (point) {
        if (point.step <= s.last) { return; }
        s.last = point.step;
        newest = Math.max(newest, point.step);
        if (s.chart) { s.chart.data.datasets[s.index].data.push({ x: point.step, y: point[s.key] }); }
      });
    });
    var count = function (chart) {
      return chart ? chart.data.datasets.reduce(function (n, d) { return n + d.data.length; }, 0) : 0;
    };
    lossBox.dataset.points = String(count(lossChart));
    lrBox.dataset.points = String(count(lrChart));
    if (lossChart) { lossChart.update("none"); }
    if (lrChart) { lrChart.update("none"); }
    part("no-curves").hidden = newest >= 0;
    part("charts").hidden = newest < 0;
  };

  var text = function (name, value) { part(name).textContent = value; };
  var number = function (value, format) { return value === null || value === undefined ? "—" : format(value); };
  var pad = function (n) { return String(n).padStart(2, "0"); };
  var when = function (iso) {
    if (!iso) { return "—"; }
    var d = new Date(iso);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  };

  var showAttempts = function (attempts) {
    var body = document.getElementById("attempts");
    if (!body || !attempts.length) { return; }
    body.replaceChildren();
    attempts.forEach(function (a) {
      var row = document.createElement("tr");
      [
        [String(a.number), "num"],
        [a.worker || "—", "code"],
        [a.outcome_display, ""],
        [a.resumed_from_step ? String(a.resumed_from_step) : "—", "num"],
        [when(a.started_at), "nowrap"],
        [when(a.finished_at), "nowrap"],
        [a.error, "text"],
      ].forEach(function (cell) {
        var td = document.createElement("td");
        if (cell[1] === "code") {
          var code = document.createElement("code");
          code.textContent = cell[0];
          td.appendChild(code);
        } else {
          td.textContent = cell[0];
          if (cell[1]) { td.className = cell[1]; }
        }
        row.appendChild(td);
      });
      body.appendChild(row);
    });
  };

  var setMaxStep = function (maxSteps) {
    [lossChart, lrChart].forEach(function (chart) {
      if (chart && maxSteps && chart.options.scales.x.max !== maxSteps) {
        chart.options.scales.x.max = maxSteps;
        chart.update("none");
      }
    });
  };

  var show = function (data) {
    var queued = document.getElementById("queued-notice");
    if (queued) { queued.hidden = data.status !== "queued"; }
    var status = document.getElementById("job-status");
    status.textContent = data.status_display;
    status.className = "status status-job-" + data.status;
    var percent = Math.round((data.progress || 0) * 100);
    var bar = root.querySelector("#job-progress progress");
    bar.value = percent;
    bar.textContent = percent + "%";
    text("percent", percent + "%");
    text("steps", data.max_steps ? " · step " + data.step + " of " + data.max_steps : "");
    text("phase", data.phase_display ? " · " + data.phase_display : "");
    text("eta", data.eta_text ? " · " + data.eta_text : "");
    text("loss", number(data.loss, function (v) { return v.toFixed(4); }));
    text("eval_loss", number(data.eval_loss, function (v) { return v.toFixed(4); }));
    text("learning_rate", number(data.learning_rate, function (v) { return v.toExponential(2); }));
    text("tokens_per_second", number(data.tokens_per_second, function (v) { return Math.round(v).toLocaleString(); }));
    text("memory_mb", data.memory_mb ? Math.round(data.memory_mb).toLocaleString() + " MB" : "—");
    var log = document.getElementById("log-tail");
    var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    log.textContent = data.log_tail || "Nothing logged yet.";
    if (atBottom) { log.scrollTop = log.scrollHeight; }
    showAttempts(data.attempts || []);
  };

  var failures = 0;
  var poll = function () {
    // One step back: an evaluation point is stored a moment after the training point of the same step.
    fetch(root.dataset.url + "?since=" + Math.max(newest - 1, -1), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        failures = 0;
        setMaxStep(data.max_steps);
        addPoints(data.curves || {});
        if (!wasActive) { return; }
        show(data);
        if (data.is_active) {
          setTimeout(poll, 2000);
        } else {
          window.location.reload();
        }
      })
      .catch(function () {
        failures += 1;
        if (wasActive) {
          text("eta", " · cannot reach the server, trying again…");
          setTimeout(poll, Math.min(30000, 2000 * failures));
        }
      });
  };
  poll();
})();
