// Labelling page: keyboard shortcuts, autosave of the draft, the clock of visible seconds, and Submit without a
// page load (the answer is sent with fetch; the server answers with the next example's page, rendered and escaped
// there, whose #label-page replaces this one).
// The page works without this script (every action is a button of a form); nothing here builds HTML from data:
// example text and labels only ever go through value, checked and textContent.
(function () {
  "use strict";

  var form = document.getElementById("label-form");
  var status = document.getElementById("label-status");
  var saveStatus = document.getElementById("save-status");
  var submitting = false;

  var click = function (id) {
    var button = document.getElementById(id);
    if (!button || button.disabled) { return false; }
    submitting = true;
    button.click();
    return true;
  };

  var say = function (message, isError) {
    if (!status) { return; }
    status.textContent = message || "";
    status.classList.toggle("is-error", Boolean(isError));
  };

  var isTextEntry = function (element) {
    if (!element || !element.tagName) { return false; }
    var tag = element.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT" || element.isContentEditable) { return true; }
    return tag === "INPUT" && !/^(radio|checkbox|button|submit|hidden)$/i.test(element.type);
  };

  // --- the clock: seconds while the tab is visible --------------------------------------------------------------

  var secondsInput = document.getElementById("active-seconds");
  var timer = document.getElementById("timer");
  var base = form ? parseFloat(form.dataset.seconds) || 0 : 0;
  var since = document.hidden ? null : performance.now();
  var seconds = function () { return base + (since === null ? 0 : (performance.now() - since) / 1000); };
  var startClock = function () {
    // A new example: its own count, from what the server has for it (a draft's time carries over).
    base = parseFloat(form.dataset.seconds) || 0;
    since = document.hidden ? null : performance.now();
    showTime();
  };
  var showTime = function () {
    if (!timer) { return; }
    var total = Math.floor(seconds());
    timer.textContent = total < 60 ? total + " s" : Math.floor(total / 60) + " min " + (total % 60) + " s";
  };
  if (form) {
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) {
        base = seconds();
        since = null;
      } else if (since === null) {
        since = performance.now();
      }
    });
    window.setInterval(function () { if (timer) { showTime(); } }, 1000);
  }

  // --- autosave -----------------------------------------------------------------------------------------------------

  var revision = document.getElementById("revision");
  var pending = null;
  var inFlight = false;
  var again = false;

  var answerInputs = function () {
    return form.querySelectorAll('[name^="answer-"]');
  };

  var applyDraft = function (draft) {
    answerInputs().forEach(function (input) {
      var name = input.name.slice("answer-".length);
      var value = Object.prototype.hasOwnProperty.call(draft, name) ? draft[name] : null;
      if (input.tagName === "TEXTAREA") {
        input.value = value === null ? "" : String(value);
      } else {
        var wanted = Array.isArray(value) ? value.map(String) : (value === null ? [] : [String(value)]);
        input.checked = wanted.indexOf(input.value) !== -1;
      }
    });
  };

  var setSaved = function (text, isError) {
    if (!saveStatus) { return; }
    saveStatus.textContent = text;
    saveStatus.classList.toggle("is-error", Boolean(isError));
  };

  // POST a form's fields; resolves to {status, data} when the server answers JSON, else fails with "HTTP <status>".
  var postForm = function (url, body) {
    return fetch(url, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    }).then(function (response) {
      var json = (response.headers.get("Content-Type") || "").indexOf("application/json") === 0;
      if (!json) { throw new Error("HTTP " + response.status); }
      return response.json().then(function (data) { return { status: response.status, data: data }; });
    });
  };

  var failure = function (error) {
    return /^HTTP/.test(error.message) ? "the server answered " + error.message : "the server could not be reached";
  };

  var save = function () {
    pending = null;
    if (submitting) { return; }
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    secondsInput.value = seconds().toFixed(1);
    setSaved("Saving…", false);
    var sentFrom = form; // after a submit, the page holds another example: this answer is no longer about it
    var body = new FormData(form);
    postForm(form.dataset.draftUrl, body)
      .then(function (answer) {
        var data = answer.data;
        if (form !== sentFrom) { return; }
        if (data.ok) {
          revision.value = String(data.revision);
          setSaved("Saved " + data.saved_at, false);
          return;
        }
        if (answer.status === 409 && data.draft) {
          // Another tab saved a newer draft: show it, and save from here on top of it.
          applyDraft(data.draft);
          revision.value = String(data.revision);
          setSaved("Newer draft loaded", true);
        } else {
          setSaved("Not saved", true);
        }
        say(data.message, true);
      })
      .catch(function (error) {
        if (form !== sentFrom) { return; }
        setSaved("Not saved", true);
        say("The draft was not saved: " + failure(error) + ". Your answer is still on this page.", true);
      })
      .then(function () {
        inFlight = false;
        if (again && form === sentFrom) { schedule(); }
        again = false;
      });
  };

  var schedule = function () {
    if (pending !== null) { window.clearTimeout(pending); }
    setSaved("Changes not saved yet", false);
    pending = window.setTimeout(save, 1000);
  };

  // --- submitting without a page load ------------------------------------------------------------------------------

  var fragment = function (html) {
    // Server-rendered, escaped HTML of the whole page; parsed inertly, its #label-page adopted into this one.
    var doc = new DOMParser().parseFromString(html, "text/html");
    var node = doc.getElementById("label-page");
    return node ? { node: document.importNode(node, true), title: doc.title } : null;
  };

  var send = function () {
    var body = new FormData(form);
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (button) { button.disabled = true; });
    say("Sending your answer…", false);
    return postForm(form.action, body)
      .then(function (answer) {
        var data = answer.data;
        if (data.redirect) {
          window.location.assign(data.redirect);
          return;
        }
        var next = data.html && fragment(data.html);
        var old = document.getElementById("label-page");
        if (!next || !old) { throw new Error("an unreadable answer"); }
        old.replaceWith(next.node);
        if (next.title) { document.title = next.title; }
        bind();
        say(data.message, !data.ok);
        window.scrollTo(0, 0);
      })
      .catch(function (error) {
        buttons.forEach(function (button) { button.disabled = false; });
        submitting = false;
        say("Your answer was not sent: " + failure(error) + ". It is still on this page; try again.", true);
      });
  };

  // --- keys -----------------------------------------------------------------------------------------------------------

  var keyed = {};

  // (Re)attach to the form of the example shown: at load, and after each in-place swap.
  var bind = function () {
    form = document.getElementById("label-form");
    status = document.getElementById("label-status");
    saveStatus = document.getElementById("save-status");
    submitting = false;
    keyed = {};
    if (!form) { return; }
    secondsInput = document.getElementById("active-seconds");
    timer = document.getElementById("timer");
    revision = document.getElementById("revision");
    startClock();
    form.querySelectorAll("input[data-key]").forEach(function (input) { keyed[input.dataset.key] = input; });
    form.addEventListener("input", function (event) {
      if (event.target.name && event.target.name.indexOf("answer-") === 0) { schedule(); }
    });
    form.addEventListener("change", function (event) {
      if (event.target.name && event.target.name.indexOf("answer-") === 0 && event.target.tagName !== "TEXTAREA") {
        schedule();
      }
    });
    form.addEventListener("submit", function (event) {
      submitting = true;
      if (pending !== null) { window.clearTimeout(pending); }
      secondsInput.value = seconds().toFixed(1);
      // Skip and Undo go their own way (formaction); Submit stays on this page.
      var submitter = event.submitter;
      if (!submitter || submitter.id === "submit-button") {
        event.preventDefault();
        send();
      }
    });
  };
  bind();

  var choose = function (input) {
    if (input.type === "checkbox") {
      input.checked = !input.checked;
    } else {
      input.checked = true;
    }
    input.dispatchEvent(new Event("change", { bubbles: true }));
    var option = input.closest(".an-option");
    if (option) {
      option.classList.remove("is-flash");
      void option.offsetWidth;  // restart the short highlight
      option.classList.add("is-flash");
    }
  };

  document.addEventListener("keydown", function (event) {
    if (submitting || event.defaultPrevented) { return; }
    var target = event.target;
    if (isTextEntry(target)) {
      if (event.key === "Escape") {
        target.blur();
        event.preventDefault();
      } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && form && form.contains(target)) {
        event.preventDefault();
        click("submit-button");
      }
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey) { return; }
    var tag = target && target.tagName;
    if (event.key === "Enter") {
      // Buttons, links and the "response as it is now" toggle keep their own Enter.
      if (tag === "BUTTON" || tag === "A" || tag === "SUMMARY") { return; }
      event.preventDefault();
      if (!click("submit-button")) { click("next-button"); }
      return;
    }
    var key = event.key.length === 1 ? event.key.toLowerCase() : "";
    if (!key) { return; }
    if (Object.prototype.hasOwnProperty.call(keyed, key)) {
      event.preventDefault();
      choose(keyed[key]);
    } else if (key === "c" && form && form.querySelector("textarea")) {
      event.preventDefault();
      // The cursor goes after the text, ready to add to it or correct its end.
      var box = form.querySelector("textarea");
      box.focus();
      box.setSelectionRange(box.value.length, box.value.length);
      box.scrollTop = box.scrollHeight;
    } else if (key === "s") {
      event.preventDefault();
      click("skip-button");
    } else if (key === "u") {
      event.preventDefault();
      click("undo-button");
    }
  });
})();
