// Grid mode: click toggles a crop, shift-click selects the range from the last click,
// "Select all" takes a group; z undoes the last label. Without JS the checkboxes still work.
(function () {
  "use strict";
  var form = document.getElementById("grid-form");
  var undo = document.getElementById("undo-form");
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    // Checkboxes (crops, attributes) keep the hotkeys working; text fields do not.
    if (target && /INPUT|TEXTAREA|SELECT/.test(target.tagName) &&
        !(target.tagName === "INPUT" && target.type === "checkbox")) { return; }
    var key = event.key.toLowerCase();
    if (key === "z" && undo) {
      event.preventDefault();
      undo.querySelector("button").click();
      return;
    }
    var toggle = form && form.querySelector('input[data-attribute-key="' + CSS.escape(key) + '"]');
    if (toggle) {
      event.preventDefault();
      toggle.checked = !toggle.checked;
    }
  });
  if (!form) { return; }
  // The seconds from showing the grid to the answer (the server shares them among the crops).
  var shownAt = performance.now();
  var seconds = document.getElementById("grid-seconds");
  form.addEventListener("submit", function () {
    if (seconds) {
      seconds.value = Math.min(3600, Math.max(0, (performance.now() - shownAt) / 1000)).toFixed(2);
    }
  });
  var boxes = Array.prototype.slice.call(form.querySelectorAll('input[name="crop_ids"]'));
  var count = document.getElementById("selected-count");
  var last = null;

  function refresh() {
    var n = 0;
    boxes.forEach(function (box) {
      box.closest(".tile").classList.toggle("selected", box.checked);
      if (box.checked) { n += 1; }
    });
    count.textContent = n + " selected";
  }

  boxes.forEach(function (box, index) {
    box.closest(".tile").addEventListener("click", function (event) {
      // The label wraps the checkbox: handle the click once, here.
      event.preventDefault();
      if (event.shiftKey && last !== null) {
        var from = Math.min(last, index), to = Math.max(last, index);
        var state = !box.checked;
        for (var i = from; i <= to; i += 1) { boxes[i].checked = state; }
      } else {
        box.checked = !box.checked;
      }
      last = index;
      refresh();
    });
  });

  Array.prototype.forEach.call(form.querySelectorAll(".select-group"), function (button) {
    button.addEventListener("click", function () {
      var group = button.closest(".grid-group");
      var inGroup = Array.prototype.slice.call(group.querySelectorAll('input[name="crop_ids"]'));
      var all = inGroup.every(function (b) { return b.checked; });
      inGroup.forEach(function (b) { b.checked = !all; });
      refresh();
    });
  });

  document.getElementById("clear-selection").addEventListener("click", function () {
    boxes.forEach(function (b) { b.checked = false; });
    last = null;
    refresh();
  });

  form.addEventListener("submit", function (event) {
    if (!boxes.some(function (b) { return b.checked; })) {
      event.preventDefault();
      count.textContent = "Select at least one crop first";
    }
  });
  refresh();
})();
