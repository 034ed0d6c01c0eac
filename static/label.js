// The labelling page: hotkeys, the species type-ahead and the zoom on the box.
// Each choice button carries its key in data-key; the page works without this script.
(function () {
  "use strict";
  var form = document.getElementById("label-form");
  var undo = document.getElementById("undo-form");
  var search = document.getElementById("species-search");
  var list = document.getElementById("species-list");
  var zoom = document.getElementById("zoom-frame");
  var sent = false;  // one action per page, even when a key repeats
  var rank = document.getElementById("suggestion-rank");
  var seconds = document.getElementById("label-seconds");
  var crop = document.getElementById("crop-image");
  var SECONDS_MAX = 3600;  // the server's cap (activelearn.services.labels.SECONDS_MAX)
  // The time the crop was shown: when its picture loaded (now, if it already has).
  var shownAt = performance.now();
  if (crop && !crop.complete) {
    crop.addEventListener("load", function () { shownAt = performance.now(); }, { once: true });
  }

  // Keys typed into a text field are text; a focused checkbox (a clicked toggle) is not.
  function typing(target) {
    if (!target || !/INPUT|TEXTAREA|SELECT/.test(target.tagName)) { return false; }
    return !(target.tagName === "INPUT" && target.type === "checkbox");
  }

  function send(button) {
    if (sent) { return; }
    sent = true;
    button.click();
  }

  function visibleSpecies() {
    if (!list) { return []; }
    return Array.prototype.filter.call(list.querySelectorAll("button"), function (b) {
      return !b.hidden;
    });
  }

  function filterSpecies() {
    var query = search.value.trim().toLowerCase();
    Array.prototype.forEach.call(list.querySelectorAll("button"), function (b) {
      var name = b.getAttribute("data-name") || "";
      // A match at the start of any word, so "deer" finds "white-tailed deer".
      var words = name.split(/[\s\-_(),.]+/);
      b.hidden = query !== "" && name.indexOf(query) !== 0 && !words.some(function (w) {
        return w.indexOf(query) === 0;
      });
    });
    var first = visibleSpecies()[0];
    Array.prototype.forEach.call(list.querySelectorAll("button"), function (b) {
      b.classList.toggle("first-match", query !== "" && b === first);
    });
  }

  if (search && list) {
    search.addEventListener("input", filterSpecies);
    search.addEventListener("keydown", function (event) {
      if (event.key === "Enter") {
        event.preventDefault();
        var first = visibleSpecies()[0];
        if (first && search.value.trim() !== "") { send(first); }
      } else if (event.key === "Escape") {
        search.value = "";
        filterSpecies();
        search.blur();
      }
    });
  }

  if (form) {
    // What the page showed goes with the answer: the place of the suggestion used (none for
    // the other buttons) and the seconds since the crop was shown.
    form.addEventListener("submit", function (event) {
      var button = event.submitter;
      if (rank) { rank.value = (button && button.getAttribute("data-rank")) || ""; }
      if (seconds) {
        var spent = Math.max(0, (performance.now() - shownAt) / 1000);
        seconds.value = Math.min(SECONDS_MAX, spent).toFixed(2);
      }
    });
  }

  if (zoom) {
    // The zoom's centre, the box's, from data attributes: a style attribute in the page would
    // be refused by the Content-Security-Policy; setting the style from a script is allowed.
    zoom.style.setProperty("--cx", zoom.getAttribute("data-cx") + "%");
    zoom.style.setProperty("--cy", zoom.getAttribute("data-cy") + "%");
    zoom.addEventListener("click", function () { zoom.classList.toggle("zoomed"); });
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (typing(event.target)) { return; }
    var key = event.key.toLowerCase();
    if (key === "/" && search) {
      event.preventDefault();
      search.focus();
      return;
    }
    if (key === "x" && zoom) {
      zoom.classList.toggle("zoomed");
      return;
    }
    if (key === "z" && undo) {
      event.preventDefault();
      send(undo.querySelector("button"));
      return;
    }
    if (!form) { return; }
    // An attribute's key toggles its checkbox; the label is sent with the species key.
    var toggle = form.querySelector('input[data-attribute-key="' + CSS.escape(key) + '"]');
    if (toggle) {
      event.preventDefault();
      toggle.checked = !toggle.checked;
      return;
    }
    var button = form.querySelector('button[data-key="' + CSS.escape(key) + '"]');
    if (!button) { return; }
    event.preventDefault();
    send(button);
  });
})();
