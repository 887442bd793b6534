// The privacy review page (it works without this script: every button is a form).
// - Decisions and added spans are sent with fetch; the server answers with the row card, rendered and
//   escaped on the server, which replaces the old one. Row text is never put into HTML here.
// - Keyboard: j/k next/previous finding, x redact, s keep as is (a and r, the old keys, still work), t change kind, n add the selected text,
//   ? or h help, Esc close.
// - Selecting text in a field shows a bar to add it as a finding. Offsets are counted in code points of
//   the original text (as Python counts), from the data-start of the segment the selection ends in:
//   JavaScript strings count UTF-16 units, so an emoji would otherwise shift every offset after it.
(function () {
  "use strict";

  var main = document.getElementById("review-main");
  if (!main) { return; }
  var statusBox = document.getElementById("review-status");
  var addbar = document.getElementById("addbar");
  var addForm = document.getElementById("add-form");
  var addQuote = document.getElementById("add-quote");
  var help = document.getElementById("help-overlay");
  var current = null; // id of the finding with the keyboard focus

  // --- messages and fresh fragments --------------------------------------------------------------

  var say = function (message, isError) {
    statusBox.textContent = message || "";
    statusBox.classList.toggle("is-error", Boolean(isError));
  };

  var fragment = function (html) {
    // Server-rendered, escaped HTML; parsed inertly, then adopted into the page.
    var doc = new DOMParser().parseFromString(html, "text/html");
    var node = doc.body.firstElementChild;
    return node ? document.importNode(node, true) : null;
  };

  var swap = function (data) {
    if (data.card) {
      var card = fragment(data.card);
      var old = card && document.getElementById(card.id);
      if (old) { old.replaceWith(card); }
    }
    if (data.left) {
      var left = fragment(data.left);
      var oldLeft = document.getElementById("review-left");
      if (left && oldLeft) { oldLeft.replaceWith(left); }
    }
  };

  // --- findings and the keyboard focus -----------------------------------------------------------

  var findings = function () { return Array.prototype.slice.call(main.querySelectorAll(".rv-finding")); };
  var itemOf = function (id) { return document.getElementById("finding-" + id); };

  var focusFinding = function (id, scroll) {
    main.querySelectorAll(".is-current").forEach(function (el) { el.classList.remove("is-current"); });
    current = id;
    var item = id && itemOf(id);
    if (!item) { current = null; return; }
    item.classList.add("is-current");
    main.querySelectorAll("mark[data-findings]").forEach(function (mark) {
      if (mark.dataset.findings.split(" ").indexOf(String(id)) !== -1) { mark.classList.add("is-current"); }
    });
    item.focus({ preventScroll: true });
    if (scroll !== false) { item.scrollIntoView({ block: "center", behavior: "smooth" }); }
  };

  var step = function (delta) {
    var items = findings();
    if (!items.length) { return; }
    var index = items.findIndex(function (item) { return item.dataset.finding === String(current); });
    if (index === -1) {
      var pending = items.findIndex(function (item) { return item.classList.contains("is-pending"); });
      index = delta > 0 ? (pending === -1 ? 0 : pending) : items.length - 1;
    } else {
      index = Math.min(items.length - 1, Math.max(0, index + delta));
    }
    focusFinding(items[index].dataset.finding);
  };

  var afterDecision = function (id) {
    // Move on to the next finding not yet reviewed after this one (or simply the next one).
    var items = findings();
    var index = items.findIndex(function (item) { return item.dataset.finding === String(id); });
    var rest = items.slice(index + 1);
    var next = rest.find(function (item) { return item.classList.contains("is-pending"); }) || rest[0];
    focusFinding(next ? next.dataset.finding : id);
  };

  main.addEventListener("click", function (event) {
    var mark = event.target.closest("mark[data-findings]");
    if (mark && window.getSelection().isCollapsed) { focusFinding(mark.dataset.findings.split(" ")[0]); }
  });

  // --- sending forms -----------------------------------------------------------------------------

  var enable = function (form) {
    form.querySelectorAll("button").forEach(function (button) { button.disabled = false; });
  };

  var send = function (form, submitter) {
    var body = new FormData(form, submitter || undefined);
    var item = form.closest(".rv-finding");
    var id = item ? item.dataset.finding : null;
    form.querySelectorAll("button").forEach(function (button) { button.disabled = true; });
    return fetch(form.action, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (response) {
        var json = (response.headers.get("Content-Type") || "").indexOf("application/json") === 0;
        if (!json) { throw new Error("HTTP " + response.status); }
        return response.json().then(function (data) { return { status: response.status, data: data }; });
      })
      .then(function (answer) {
        enable(form);
        swap(answer.data);
        say(answer.data.message, !answer.data.ok);
        if (form === addForm) {
          hideAddbar();
          window.getSelection().removeAllRanges();
        }
        if (answer.data.ok && id) {
          afterDecision(id);
        } else if (id) {
          focusFinding(id, false);
        }
      })
      .catch(function (error) {
        var why = /^HTTP/.test(error.message) ? "the server answered " + error.message : "the server could not be reached";
        say("Nothing was saved: " + why + ". Reload the page and try again.", true);
        enable(form);
      });
  };

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form === addForm || form.matches(".rv-decide, .rv-retype, .rv-manual form")) {
      event.preventDefault();
      send(form, event.submitter);
    }
  });

  // Enter in a kind list sends its form (arrow keys only choose).
  document.addEventListener("keydown", function (event) {
    var select = event.target;
    if (event.key === "Enter" && select.tagName === "SELECT" && (select.dataset.action === "type" || select.id === "add-kind")) {
      event.preventDefault();
      select.form.requestSubmit();
    }
  });

  // --- adding a selected span ----------------------------------------------------------------------

  var offsetIn = function (box, node, offset) {
    var element = node.nodeType === Node.ELEMENT_NODE ? node : node.parentElement;
    var segment = element && element.closest("[data-start]");
    var range = document.createRange();
    if (segment && box.contains(segment)) {
      range.selectNodeContents(segment);
      range.setEnd(node, offset);
      return Number(segment.dataset.start) + Array.from(range.toString()).length;
    }
    // A point between segments, on the field itself.
    range.selectNodeContents(box);
    range.setEnd(node, offset);
    return Array.from(range.toString()).length;
  };

  var chosen = null; // {box, start, end, text}

  var readSelection = function () {
    var selection = window.getSelection();
    if (!selection.rangeCount || selection.isCollapsed) { return null; }
    var range = selection.getRangeAt(0);
    var startBox = (range.startContainer.nodeType === Node.ELEMENT_NODE ? range.startContainer : range.startContainer.parentElement).closest(".rv-text");
    var endBox = (range.endContainer.nodeType === Node.ELEMENT_NODE ? range.endContainer : range.endContainer.parentElement).closest(".rv-text");
    if (!startBox || startBox !== endBox) { return startBox || endBox ? { error: "Select text inside one field." } : null; }
    var characters = Array.from(startBox.textContent);
    if (characters.length !== Number(startBox.dataset.length)) {
      return { error: "This text cannot be selected reliably here; add the span by its position below the row." };
    }
    var start = offsetIn(startBox, range.startContainer, range.startOffset);
    var end = offsetIn(startBox, range.endContainer, range.endOffset);
    // Leave out spaces picked up at either end of the selection.
    while (start < end && /\s/.test(characters[start])) { start += 1; }
    while (end > start && /\s/.test(characters[end - 1])) { end -= 1; }
    if (start >= end) { return null; }
    return { box: startBox, start: start, end: end, text: characters.slice(start, end).join("") };
  };

  var hideAddbar = function () {
    if (addbar) { addbar.hidden = true; }
    chosen = null;
  };

  var showAddbar = function (focusKind) {
    var found = readSelection();
    if (!found) {
      hideAddbar();
      if (focusKind) { say("Select the missed text with the mouse first, then press n.", true); }
      return false;
    }
    if (found.error) { say(found.error, true); hideAddbar(); return false; }
    chosen = found;
    addForm.elements.example.value = found.box.dataset.example;
    addForm.elements.field.value = found.box.dataset.field;
    addForm.elements.start.value = found.start;
    addForm.elements.end.value = found.end;
    addQuote.textContent = found.text;
    addbar.hidden = false;
    if (focusKind) { document.getElementById("add-kind").focus(); }
    return true;
  };

  if (addbar) {
    document.addEventListener("mouseup", function (event) {
      if (addbar.contains(event.target)) { return; }
      setTimeout(function () { showAddbar(false); }, 0);
    });
    document.addEventListener("keyup", function (event) {
      if (event.shiftKey && event.key.indexOf("Arrow") === 0) { showAddbar(false); }
    });
    document.getElementById("add-cancel").addEventListener("click", hideAddbar);
  }

  // --- help and shortcuts --------------------------------------------------------------------------

  var toggleHelp = function (show) {
    help.hidden = show === undefined ? !help.hidden : !show;
    if (!help.hidden) { document.getElementById("help-close").focus(); }
  };
  document.getElementById("help-close").addEventListener("click", function () { toggleHelp(false); });
  help.addEventListener("click", function (event) { if (event.target === help) { toggleHelp(false); } });

  var typing = function (element) {
    return element && (element.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(element.tagName));
  };

  var press = function (action) {
    var item = current && itemOf(current);
    if (!item) { step(1); item = current && itemOf(current); }
    var control = item && item.querySelector('[data-action="' + action + '"]');
    if (!control) { return; }
    if (action === "type") { control.focus(); } else { control.click(); }
  };

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      if (!help.hidden) { toggleHelp(false); return; }
      if (addbar && !addbar.hidden) { hideAddbar(); return; }
      if (typing(event.target)) { event.target.blur(); }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
    var key = event.key;
    if (key === "?" || key === "h") { toggleHelp(); event.preventDefault(); return; }
    if (!help.hidden) { return; }
    var actions = {
      j: function () { step(1); },
      k: function () { step(-1); },
      x: function () { press("accept"); },
      s: function () { press("reject"); },
      a: function () { press("accept"); },
      r: function () { press("reject"); },
      t: function () { press("type"); },
      n: function () { if (addbar) { showAddbar(true); } }, // choose the kind in the bar, Enter adds it
    };
    if (actions[key]) {
      event.preventDefault();
      actions[key]();
    }
  });

  if (/^#finding-\d+$/.test(window.location.hash)) {
    focusFinding(window.location.hash.slice("#finding-".length));
  }
})();
