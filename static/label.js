// Hotkeys for the labelling page: each choice button carries its key in data-key.
(function () {
  "use strict";
  var form = document.getElementById("label-form");
  if (!form) { return; }
  var sent = false;
  document.addEventListener("keydown", function (event) {
    if (sent || event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (event.target && /INPUT|TEXTAREA|SELECT/.test(event.target.tagName)) { return; }
    var key = event.key.toLowerCase();
    var button = form.querySelector('button[data-key="' + CSS.escape(key) + '"]');
    if (!button) { return; }
    event.preventDefault();
    sent = true;  // one label per page, even when a key repeats
    button.click();
  });
})();
