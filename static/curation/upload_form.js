// Upload page: say at once when a file is over the size limit, instead of after sending it all.
(function () {
  "use strict";
  var input = document.querySelector("input[type=file][data-max-bytes]");
  if (!input) { return; }
  var limit = Number(input.dataset.maxBytes);
  var message = document.createElement("p");
  message.className = "error";
  message.hidden = true;
  input.insertAdjacentElement("afterend", message);
  input.addEventListener("change", function () {
    var file = input.files && input.files[0];
    var tooLarge = Boolean(file && file.size > limit);
    input.setCustomValidity(tooLarge ? input.dataset.tooLarge : "");
    message.textContent = tooLarge ? input.dataset.tooLarge : "";
    message.hidden = !tooLarge;
  });
  input.form.addEventListener("submit", function (event) {
    if (!input.checkValidity()) {
      event.preventDefault();
      input.focus();
    }
  });
})();
