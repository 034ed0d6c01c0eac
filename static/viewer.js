// Brightness and contrast of the pictures marked "adjustable", for dark infrared frames.
// The buttons of #image-controls carry their keys in data-key ([ ] brightness, , . contrast,
// = reset). The filter is set from this script (element.style is allowed by the
// Content-Security-Policy, a style attribute in the page is not); the levels last for the tab,
// so a run of night frames keeps them.
(function () {
  "use strict";
  var controls = document.getElementById("image-controls");
  if (!controls) { return; }
  var status = document.getElementById("image-levels");
  var KEY = "trapwise.image-levels";
  var MIN = 0.25, MAX = 4;
  var levels = { brightness: 1, contrast: 1 };
  try {
    var saved = JSON.parse(window.sessionStorage.getItem(KEY) || "null");
    if (saved && isFinite(saved.brightness) && isFinite(saved.contrast)) {
      levels.brightness = clamp(saved.brightness);
      levels.contrast = clamp(saved.contrast);
    }
  } catch (e) { /* no storage: start at 100% */ }

  function clamp(value) { return Math.min(MAX, Math.max(MIN, Number(value))); }

  function apply() {
    var filter = (levels.brightness === 1 && levels.contrast === 1) ? "" :
      "brightness(" + levels.brightness + ") contrast(" + levels.contrast + ")";
    Array.prototype.forEach.call(document.querySelectorAll("img.adjustable"), function (img) {
      img.style.filter = filter;
    });
    if (status) {
      status.textContent = "Brightness " + Math.round(levels.brightness * 100) +
        "% · contrast " + Math.round(levels.contrast * 100) + "%";
    }
    try { window.sessionStorage.setItem(KEY, JSON.stringify(levels)); } catch (e) { /* ignore */ }
  }

  function adjust(button) {
    var what = button.getAttribute("data-adjust");
    if (what === "reset") {
      levels.brightness = 1;
      levels.contrast = 1;
    } else {
      // Rounded so that steps up and down come back to exactly 100%.
      levels[what] = Math.round(clamp(levels[what] + Number(button.getAttribute("data-step"))) * 100) / 100;
    }
    apply();
  }

  controls.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-adjust]");
    if (button) { adjust(button); }
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    if (target && /INPUT|TEXTAREA|SELECT/.test(target.tagName) &&
        !(target.tagName === "INPUT" && target.type === "checkbox")) { return; }
    var button = controls.querySelector('button[data-key="' + CSS.escape(event.key) + '"]');
    if (!button) { return; }
    event.preventDefault();
    adjust(button);
  });

  apply();
})();
