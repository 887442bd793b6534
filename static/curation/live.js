// Live parts of the upload and deduplication pages (the pages work without this script):
// - the preview table follows the column mapping as it changes;
// - a progress bar polls its JSON address and reloads the page when the work is finished.
(function () {
  "use strict";

  var form = document.getElementById("mapping-form");
  var preview = document.getElementById("preview");
  if (form && preview && form.dataset.previewUrl) {
    var timer = null;
    var latest = 0;
    var refresh = function () {
      var params = new URLSearchParams(new FormData(form));
      params.delete("csrfmiddlewaretoken");
      params.delete("action");
      var request = ++latest;
      preview.setAttribute("aria-busy", "true");
      fetch(form.dataset.previewUrl + "?" + params.toString(), { credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.text();
        })
        .then(function (html) {
          // The server renders and escapes this fragment; only the newest answer is shown.
          if (request === latest) { preview.innerHTML = html; }
        })
        .catch(function () {
          if (request === latest) {
            preview.insertAdjacentHTML("afterbegin",
              '<p class="notice">The preview could not be refreshed. Use the Preview button.</p>');
          }
        })
        .finally(function () { preview.removeAttribute("aria-busy"); });
    };
    // A column chosen for a role above is not also offered as metadata.
    var syncMetadata = function () {
      var used = {};
      form.querySelectorAll("select").forEach(function (select) {
        if (select.value) { used[select.value] = true; }
      });
      form.querySelectorAll('input[name="metadata"]').forEach(function (box) {
        box.disabled = Boolean(used[box.value]);
        box.title = box.disabled ? "Used above" : "";
      });
    };
    syncMetadata();
    form.addEventListener("change", function () {
      syncMetadata();
      clearTimeout(timer);
      timer = setTimeout(refresh, 150);
    });
  }

  var box = document.getElementById("progress");
  if (box && box.dataset.url && box.dataset.finished !== "true") {
    var bar = box.querySelector("progress");
    var part = function (name) { return box.querySelector('[data-part="' + name + '"]'); };
    var describeEta = function (seconds) {
      if (seconds === null || seconds === undefined) { return ""; }
      if (seconds < 60) { return " · less than a minute left"; }
      var minutes = Math.round(seconds / 60);
      if (minutes < 90) { return " · about " + minutes + " minute" + (minutes === 1 ? "" : "s") + " left"; }
      return " · about " + Math.round(minutes / 60) + " hours left";
    };
    var failures = 0;
    var poll = function () {
      fetch(box.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (data) {
          failures = 0;
          var percent = Math.round((data.fraction || 0) * 100);
          bar.value = percent;
          bar.textContent = percent + "%";
          part("label").textContent = data.label;
          part("percent").textContent = percent + "%";
          part("rows").textContent = data.rows ? " · " + data.rows.toLocaleString() + " rows so far" : "";
          part("eta").textContent = describeEta(data.eta_seconds);
          if (data.finished) {
            window.location.reload();
          } else {
            setTimeout(poll, 1000);
          }
        })
        .catch(function () {
          failures += 1;
          part("eta").textContent = " · cannot reach the server, trying again…";
          setTimeout(poll, Math.min(30000, 2000 * failures));
        });
    };
    setTimeout(poll, 500);
  }
})();
