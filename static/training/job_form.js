// Launch form: show the chosen preset's values in the empty advanced fields, and ask the server for an estimate
// of memory and time whenever the form changes. The form works without this script.
(function () {
  "use strict";

  var form = document.getElementById("job-form");
  var source = document.getElementById("preset-values");
  if (!form || !source) { return; }
  var data = JSON.parse(source.textContent);
  var box = document.getElementById("estimate");
  var part = function (name) { return box.querySelector('[data-part="' + name + '"]'); };

  var checkedPreset = function () {
    var radio = form.querySelector('input[name="preset"]:checked');
    return radio ? radio.value : "quick";
  };
  var task = function () { return data.versions[form.elements.dataset_version.value] || "sft"; };
  var shown = function (value) {
    if (value === null || value === undefined) { return "automatic"; }
    if (Array.isArray(value)) { return value.join(", "); }
    return String(value);
  };

  var showPreset = function () {
    var values = (data.presets[checkedPreset()] || {})[task()] || {};
    data.fields.forEach(function (name) {
      var input = form.elements[name];
      if (!input || !(name in values)) { return; }
      if (input.tagName === "SELECT") {
        input.options[0].textContent = "As in the preset (" + shown(values[name]) + ")";
      } else {
        input.placeholder = shown(values[name]);
      }
    });
  };

  var setLines = function (element, lines) {
    element.replaceChildren();
    lines.forEach(function (line) {
      var p = document.createElement("p");
      p.textContent = line;
      element.appendChild(p);
    });
    element.hidden = lines.length === 0;
  };

  // Messages of a refused estimate next to their field (as a refused launch shows them), cleared on the next answer.
  var showFieldErrors = function (fields) {
    form.querySelectorAll("[data-estimate-error]").forEach(function (p) {
      var field = p.parentNode;
      p.remove();
      if (!field.querySelector(".error")) { field.classList.remove("has-error"); }
    });
    Object.keys(fields || {}).forEach(function (name) {
      var field = document.getElementById("field-" + name);
      if (!field) { return; }
      field.classList.add("has-error");
      fields[name].forEach(function (message) {
        var p = document.createElement("p");
        p.className = "error";
        p.setAttribute("data-estimate-error", "");
        p.textContent = message;
        field.appendChild(p);
      });
    });
  };

  var latest = 0;
  var estimate = function () {
    if (!form.elements.dataset_version.value || !form.elements.base_model.value) {
      part("empty").hidden = false;
      part("result").hidden = true;
      part("errors").hidden = true;
      showFieldErrors({});
      return;
    }
    var request = ++latest;
    box.setAttribute("aria-busy", "true");
    fetch(form.dataset.estimateUrl, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (result) {
        if (request !== latest) { return; }
        part("empty").hidden = true;
        showFieldErrors(result.ok ? {} : result.field_errors);
        if (!result.ok) {
          part("result").hidden = true;
          setLines(part("errors"), ["No estimate until these are fixed:"].concat(result.errors));
          return;
        }
        part("errors").hidden = true;
        part("result").hidden = false;
        part("memory").textContent = result.memory_text;
        part("time").textContent = result.time.replace(/^about /, "~");
        part("time").title = result.time;
        part("device").textContent = "Worked out for " + result.device + ", " + result.time + " of training.";
        setLines(part("warnings"), result.warnings);
        setLines(part("notes"), result.notes);
      })
      .catch(function () {
        if (request !== latest) { return; }
        setLines(part("errors"), ["The estimate could not be worked out just now. You can still start the job."]);
      })
      .finally(function () { box.removeAttribute("aria-busy"); });
  };

  var timer = null;
  var changed = function () {
    showPreset();
    clearTimeout(timer);
    timer = setTimeout(estimate, 300);
  };
  form.addEventListener("change", changed);
  form.addEventListener("input", changed);
  showPreset();
  estimate();
})();
