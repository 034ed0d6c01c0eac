// The box page: drag on the image to draw a box; it fills the form's numbers (fractions of
// the image), which "Save box" sends. "Box is wrong: redraw" makes the next box replace one.
// No inline script or style (the Content-Security-Policy refuses them): SVG attributes only.
(function () {
  "use strict";
  const area = document.getElementById("draw-area");
  const image = document.getElementById("box-image");
  const rect = document.getElementById("draw-rect");
  if (!area || !image || !rect) return;
  const field = (name) => document.getElementById("box-" + name);
  const replaces = document.getElementById("box-replaces");
  const title = document.getElementById("draw-title");
  const cancel = document.getElementById("box-cancel");
  const addTitle = title.textContent;
  let start = null;

  function fraction(event) {
    const r = image.getBoundingClientRect();
    const fx = (event.clientX - r.left) / r.width;
    const fy = (event.clientY - r.top) / r.height;
    return [Math.min(1, Math.max(0, fx)), Math.min(1, Math.max(0, fy))];
  }

  function show(a, b) {
    const x = Math.min(a[0], b[0]);
    const y = Math.min(a[1], b[1]);
    const w = Math.abs(a[0] - b[0]);
    const h = Math.abs(a[1] - b[1]);
    rect.setAttribute("x", (x * 100).toFixed(3));
    rect.setAttribute("y", (y * 100).toFixed(3));
    rect.setAttribute("width", (w * 100).toFixed(3));
    rect.setAttribute("height", (h * 100).toFixed(3));
    return [x, y, w, h];
  }

  area.addEventListener("pointerdown", function (event) {
    if (event.button !== 0) return;
    event.preventDefault();
    start = fraction(event);
    area.setPointerCapture(event.pointerId);
    show(start, start);
  });
  area.addEventListener("pointermove", function (event) {
    if (start) show(start, fraction(event));
  });
  area.addEventListener("pointerup", function (event) {
    if (!start) return;
    const box = show(start, fraction(event));
    start = null;
    ["x", "y", "w", "h"].forEach(function (name, i) {
      field(name).value = box[i].toFixed(5);
    });
    document.getElementById("box-save").focus();
  });

  document.querySelectorAll(".box-redraw").forEach(function (button) {
    button.addEventListener("click", function () {
      replaces.value = button.dataset.replaces;
      title.textContent = "Redraw " + button.dataset.name + ": drag its new box";
      cancel.hidden = false;
      image.scrollIntoView({ block: "nearest" });
    });
  });
  cancel.addEventListener("click", function () {
    replaces.value = "";
    title.textContent = addTitle;
    cancel.hidden = true;
  });
})();
