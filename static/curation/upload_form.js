// Upload page: say at once, next to the file box, when no file is chosen or the file is over the size limit,
// instead of doing nothing (the form is novalidate, so the browser shows no bubble) or sending it all first.
(function () {
  "use strict";
  var input = document.querySelector("input[type=file][data-max-bytes]");
  if (!input) { return; }
  var limit = Number(input.dataset.maxBytes);
  var message = document.createElement("p");
  message.className = "error";
  message.id = "file-problem";
  message.setAttribute("role", "alert");
  message.hidden = true;
  input.insertAdjacentElement("afterend", message);

  function problem() {
    var file = input.files && input.files[0];
    if (!file) { return "Choose a file to upload."; }
    if (file.size > limit) { return input.dataset.tooLarge; }
    return "";
  }

  function show(text) {
    input.setCustomValidity(text);
    message.textContent = text;
    message.hidden = !text;
    var ids = (input.getAttribute("aria-describedby") || "").split(" ").filter(function (id) {
      return id && id !== message.id;
    });
    if (text) { ids.push(message.id); }
    input.setAttribute("aria-describedby", ids.join(" "));
  }

  input.addEventListener("change", function () {
    show(input.files && input.files[0] ? problem() : "");
  });
  input.form.addEventListener("submit", function (event) {
    var text = problem();
    show(text);
    if (text) {
      event.preventDefault();
      input.focus();
    }
  });
})();
