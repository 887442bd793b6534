// Business results page: for each KPI, a line per model over the periods and each model's average with its 95%
// interval. The data comes from the dashboard's JSON address (the same filters as the page); the table under the
// charts, rendered by the server, holds the same figures in words, so the page works without this script.
(function () {
  "use strict";

  var root = document.getElementById("kpi-dashboard");
  if (!root || !root.dataset.url || !window.Chart) { return; }

  var PALETTE = ["#2459a6", "#c2410c", "#1e7a46", "#7e22ce", "#0e7490", "#a16207", "#be185d", "#475569"];
  var GRID = "#e8ecf1";

  var formatter = function (kpi) {
    if (kpi.kind === "proportion") {
      return function (v) { return (v * 100).toFixed(1) + " %"; };
    }
    return function (v) {
      var size = Math.abs(v);
      return size >= 100 ? Math.round(v).toLocaleString() : v.toFixed(size >= 10 ? 1 : 2);
    };
  };

  // One colour per model, the same in every chart of the page.
  var colours = {};
  var colourOf = function (model) {
    if (!(model in colours)) { colours[model] = PALETTE[Object.keys(colours).length % PALETTE.length]; }
    return colours[model];
  };

  var trendChart = function (figure, item, format) {
    var periods = [];
    item.series.forEach(function (s) {
      s.points.forEach(function (p) { if (periods.indexOf(p.period) < 0) { periods.push(p.period); } });
    });
    periods.sort();
    var datasets = item.series.map(function (s) {
      var byPeriod = {};
      s.points.forEach(function (p) { byPeriod[p.period] = p; });
      var colour = colourOf(s.model);
      return {
        label: s.model + (s.model === item.reference ? " (reference)" : ""),
        data: periods.map(function (period) { return byPeriod[period] ? byPeriod[period].value : null; }),
        sizes: periods.map(function (period) { return byPeriod[period] ? byPeriod[period].n : null; }),
        borderColor: colour,
        backgroundColor: colour,
        borderWidth: 2,
        pointRadius: 3,
        spanGaps: true,
        tension: 0.2,
      };
    });
    return new window.Chart(figure.querySelector("canvas"), {
      type: "line",
      data: { labels: periods, datasets: datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { title: { display: true, text: "Period starting" }, grid: { color: GRID } },
          y: { title: { display: true, text: item.kpi.name }, grid: { color: GRID }, ticks: { callback: format } },
        },
        plugins: {
          legend: { position: "bottom", labels: { usePointStyle: true, pointStyle: "line" } },
          tooltip: {
            callbacks: {
              label: function (ctx) {
                var n = ctx.dataset.sizes[ctx.dataIndex];
                return ctx.dataset.label + ": " + format(ctx.parsed.y) + (n ? " (" + n.toLocaleString() + " cases)" : "");
              },
            },
          },
        },
      },
    });
  };

  // Draws on top of the interval bars: a dot for each average and a dashed line at the reference's average.
  var meanMarks = {
    id: "meanMarks",
    afterDatasetsDraw: function (chart, args, options) {
      var ctx = chart.ctx;
      var x = chart.scales.x;
      var y = chart.scales.y;
      ctx.save();
      if (options.reference !== null && options.reference !== undefined) {
        var level = y.getPixelForValue(options.reference);
        ctx.strokeStyle = "#5f6b7a";
        ctx.lineWidth = 1;
        ctx.setLineDash([5, 4]);
        ctx.beginPath();
        ctx.moveTo(chart.chartArea.left, level);
        ctx.lineTo(chart.chartArea.right, level);
        ctx.stroke();
        ctx.setLineDash([]);
      }
      options.means.forEach(function (mean, index) {
        var cx = x.getPixelForValue(index);
        var cy = y.getPixelForValue(mean);
        ctx.fillStyle = options.colours[index];
        ctx.strokeStyle = "#ffffff";
        ctx.lineWidth = 2;
        ctx.beginPath();
        ctx.arc(cx, cy, 6, 0, 2 * Math.PI);
        ctx.fill();
        ctx.stroke();
      });
      ctx.restore();
    },
  };

  var intervalChart = function (figure, item, format) {
    var bars = item.bars;
    var means = bars.map(function (b) { return b.mean; });
    var lows = bars.map(function (b) { return b.low === null ? b.mean : b.low; });
    var highs = bars.map(function (b) { return b.high === null ? b.mean : b.high; });
    var least = Math.min.apply(null, lows);
    var most = Math.max.apply(null, highs);
    var pad = (most - least) * 0.25 || Math.abs(most) * 0.05 || 0.05;
    var reference = bars.filter(function (b) { return b.is_reference; })[0];
    var barColours = bars.map(function (b) { return colourOf(b.model); });
    return new window.Chart(figure.querySelector("canvas"), {
      type: "bar",
      data: {
        labels: bars.map(function (b) { return twoLines(b.model); }),
        datasets: [{
          label: "95% interval",
          // Floating bars from the low to the high end of the interval; a model without one gets a sliver.
          data: bars.map(function (b, i) { return [lows[i], highs[i] === lows[i] ? highs[i] + pad * 0.02 : highs[i]]; }),
          backgroundColor: barColours.map(function (c) { return c + "40"; }),
          borderColor: barColours,
          borderWidth: 1.5,
          borderSkipped: false,
          barPercentage: 0.4,
          categoryPercentage: 0.8,
        }],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: {
          x: { grid: { display: false } },
          y: {
            // Shares start at 0 %; an average (a 1–5 score, hours) is drawn around its values so the intervals
            // stay visible. Suggested, not fixed, limits: the axis still ends on round ticks.
            beginAtZero: item.kpi.kind === "proportion",
            suggestedMin: kpiMin(item.kpi, least - pad),
            suggestedMax: kpiMax(item.kpi, most + pad),
            grid: { color: GRID },
            title: { display: true, text: item.kpi.name },
            ticks: { callback: format },
          },
        },
        plugins: {
          legend: { display: false },
          meanMarks: { means: means, colours: barColours, reference: reference && bars.length > 1 ? reference.mean : null },
          tooltip: {
            callbacks: {
              label: function (ctx) {
                var b = bars[ctx.dataIndex];
                var text = "Average " + format(b.mean);
                if (b.low !== null && b.high !== null) { text += ", 95% interval " + format(b.low) + " to " + format(b.high); }
                return text + " (" + b.n.toLocaleString() + " cases)";
              },
            },
          },
        },
      },
      plugins: [meanMarks],
    });
  };

  // A long model name on two lines, split at the hyphen or underscore nearest its middle.
  function twoLines(name) {
    if (name.length <= 18) { return name; }
    var best = -1;
    for (var i = 1; i < name.length - 1; i++) {
      if ((name[i] === "-" || name[i] === "_") && Math.abs(i - name.length / 2) < Math.abs(best - name.length / 2)) {
        best = i;
      }
    }
    return best < 0 ? name : [name.slice(0, best + 1), name.slice(best + 1)];
  }

  // Shares stay within 0..100 %; other KPIs are not clipped.
  function kpiMin(kpi, value) { return kpi.kind === "proportion" ? Math.max(0, value) : value; }
  function kpiMax(kpi, value) { return kpi.kind === "proportion" ? Math.min(1, value) : value; }

  fetch(root.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    })
    .then(function (data) {
      data.kpis.forEach(function (item) {
        item.series.forEach(function (s) { colourOf(s.model); });
      });
      data.kpis.forEach(function (item) {
        var card = root.querySelector('[data-kpi="' + item.kpi.slug + '"]');
        if (!card) { return; }
        var format = formatter(item.kpi);
        var trend = card.querySelector('[data-chart="trend"]');
        var interval = card.querySelector('[data-chart="interval"]');
        trendChart(trend, item, format);
        intervalChart(interval, item, format);
        trend.dataset.rendered = "true";
        interval.dataset.rendered = "true";
        interval.dataset.intervals = String(item.bars.filter(function (b) { return b.low !== null; }).length);
      });
    })
    .catch(function () {
      root.querySelectorAll(".eval-chart figcaption").forEach(function (caption) {
        caption.textContent = "The chart could not be loaded; the table below has the same figures.";
      });
    });
})();
