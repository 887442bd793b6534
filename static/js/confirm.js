// Confirmation before actions that cannot be undone, for every page (loaded from base.html).
// A form (or one of its submit buttons) with data-confirm="A plain sentence." asks in an in-page <dialog>
// ("Yes, <action>" / "Cancel") before it is sent; never window.confirm. Optional attributes:
// - data-confirm-yes: the words of the yes button (default: "Yes, " and the submit button's words);
// - data-confirm-if="<checkbox name>" on the form: ask only when that box is ticked ("also finish the project").
// It listens in the capture phase, so a page's own script (which may send the form with fetch) sees the
// submission only once the person said yes.
(function () {
  "use strict";

  var dialog = null;
  var sentence = null;
  var yes = null;
  var pending = null; // {form, submitter} waiting for an answer

  var build = function () {
    dialog = document.createElement("dialog");
    dialog.className = "confirm-dialog";
    dialog.id = "confirm-dialog";
    dialog.setAttribute("aria-labelledby", "confirm-dialog-text");
    sentence = document.createElement("p");
    sentence.id = "confirm-dialog-text";
    var actions = document.createElement("div");
    actions.className = "form-actions";
    yes = document.createElement("button");
    yes.type = "button";
    yes.className = "button danger";
    yes.id = "confirm-yes";
    var no = document.createElement("button");
    no.type = "button";
    no.className = "button";
    no.id = "confirm-cancel";
    no.textContent = "Cancel";
    actions.append(yes, no);
    dialog.append(sentence, actions);
    document.body.append(dialog);
    yes.addEventListener("click", function () {
      var answer = pending;
      pending = null;
      dialog.close();
      if (!answer) { return; }
      answer.form.dataset.confirmed = "yes";
      answer.form.requestSubmit(answer.submitter || undefined);
    });
    no.addEventListener("click", function () { dialog.close(); });
    dialog.addEventListener("close", function () {
      if (pending && pending.submitter) { pending.submitter.focus(); }
      pending = null;
    });
  };

  var wordsOf = function (button) {
    var text = button ? button.textContent.trim().replace(/\s+/g, " ") : "";
    return text ? "Yes, " + text.charAt(0).toLowerCase() + text.slice(1) : "Yes, go ahead";
  };

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var submitter = event.submitter && event.submitter !== form ? event.submitter : null;
    var text = (submitter && submitter.dataset.confirm) || form.dataset.confirm;
    if (!text) { return; }
    var only = form.dataset.confirmIf;
    if (only && !(form.elements[only] && form.elements[only].checked)) { return; }
    if (form.dataset.confirmed === "yes") { // the person said yes: let it go
      delete form.dataset.confirmed;
      return;
    }
    event.preventDefault();
    event.stopPropagation();
    if (!dialog) { build(); }
    pending = {form: form, submitter: submitter};
    sentence.textContent = text;
    yes.textContent = (submitter && submitter.dataset.confirmYes) || form.dataset.confirmYes || wordsOf(submitter);
    dialog.showModal();
    dialog.querySelector("#confirm-cancel").focus();
  }, true);
})();
