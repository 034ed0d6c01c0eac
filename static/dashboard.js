// The admin's project pages (overview, rounds), live: every 3 s it asks status.json for the pipeline counts, the
// open round's progress and the background jobs, and updates the page in place. The page is
// complete without it (progressive enhancement); no framework.
(function () {
  "use strict";

  var POLL_MS = 3000;
  // The overview and the rounds page carry the address (the admin's only).
  var source = document.querySelector("[data-status-url]");
  var url = source && source.getAttribute("data-status-url");
  if (!url || !window.fetch) {
    return;
  }
  var timer = null;
  var failures = 0;

  function setText(element, text) {
    if (element && element.textContent !== String(text)) {
      element.textContent = String(text);
    }
  }

  function updateCounts(counts) {
    var cells = document.querySelectorAll("[data-count]");
    for (var i = 0; i < cells.length; i++) {
      var key = cells[i].getAttribute("data-count");
      if (Object.prototype.hasOwnProperty.call(counts, key) && counts[key] !== null) {
        setText(cells[i], counts[key]);
      }
    }
  }

  function updateRound(round) {
    var open = document.getElementById("round-open");
    var none = document.getElementById("round-none");
    if (!open || !none) {
      return;
    }
    if (!round) {
      // The round was finished (or never opened): say so; its number stays in the rounds table.
      open.hidden = true;
      none.hidden = false;
      return;
    }
    setText(document.getElementById("round-number"), round.number);
    setText(document.getElementById("round-strategy"), round.strategy);
    setText(document.getElementById("round-count"), round.done + " / " + round.total);
    var bar = document.getElementById("round-bar");
    if (bar) {
      bar.max = Math.max(round.total, 1);
      bar.value = round.done;
    }
    open.hidden = false;
    none.hidden = true;
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  // The same markup as templates/annotator/_jobs.html.
  function jobItem(job, finished) {
    var item = element("li", "job job-" + job.status);
    item.setAttribute("data-job", job.id);
    item.appendChild(element("b", "", job.label));
    item.appendChild(document.createTextNode(" "));
    item.appendChild(element("span", "badge", job.status));
    item.appendChild(document.createTextNode(" "));
    var count = job.done + " / " + job.total;
    if (!finished && job.percent !== null) {
      count += " (" + Math.round(job.percent) + "%)";
    }
    item.appendChild(element("span", "job-count", count));
    if (!finished && job.rate) {
      item.appendChild(document.createTextNode(" "));
      item.appendChild(element("span", "job-rate", job.rate.toFixed(1) + " per s"));
    }
    if (!finished && job.time_left) {
      item.appendChild(document.createTextNode(" "));
      item.appendChild(element("span", "job-left", job.time_left));
    }
    if (job.worker) {
      item.appendChild(document.createTextNode(" "));
      item.appendChild(element("span", "muted job-worker", "on " + job.worker));
    }
    if (!finished && job.stalled) {
      item.appendChild(document.createTextNode(" "));
      item.appendChild(
        element("span", "job-stalled", "no news for a while: the worker may have stopped")
      );
    }
    if (!finished && job.total) {
      var bar = element("progress");
      bar.max = job.total;
      bar.value = job.done;
      item.appendChild(bar);
    }
    if (job.detail) {
      item.appendChild(element("div", "muted job-detail", job.detail));
    }
    if (job.error) {
      item.appendChild(element("div", "message error job-error", job.error));
    }
    var problems = job.problems || [];
    if (problems.length) {
      var details = element("details", "job-problems");
      details.appendChild(
        element("summary", "", problems.length + " problem" + (problems.length === 1 ? "" : "s"))
      );
      var list = element("ul");
      for (var p = 0; p < problems.length; p++) {
        list.appendChild(element("li", "", problems[p][0] + ": " + problems[p][1]));
      }
      details.appendChild(list);
      item.appendChild(details);
    }
    return item;
  }

  function updateJobs(listId, jobs, finished, emptyText) {
    var list = document.getElementById(listId);
    if (!list) {
      return;
    }
    var items = [];
    for (var i = 0; i < jobs.length; i++) {
      items.push(jobItem(jobs[i], finished));
    }
    if (!items.length) {
      items.push(element("li", "muted job-none", emptyText));
    }
    list.replaceChildren.apply(list, items);
  }

  function apply(data) {
    updateCounts(data.pipeline || {});
    updateRound(data.round);
    updateJobs("jobs", data.jobs || [], false, "Nothing is running.");
    updateJobs("recent-jobs", data.recent_jobs || [], true, "No finished jobs yet.");
  }

  function poll() {
    timer = null;
    if (document.hidden) {
      return; // resumed by the visibilitychange listener
    }
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        failures = 0;
        apply(data);
      })
      .catch(function () {
        failures += 1; // the server restarting, a lost connection: try again, less often
      })
      .then(schedule);
  }

  function schedule() {
    if (timer === null && !document.hidden) {
      timer = window.setTimeout(poll, POLL_MS * Math.min(1 + failures, 10));
    }
  }

  document.addEventListener("visibilitychange", schedule);
  schedule();
})();

// The round form: the species list matters only for the species strategy, so it is shown only
// then (without JavaScript it is always shown, and the server checks the pair).
(function () {
  "use strict";

  var strategy = document.querySelector("#round-start select[name=strategy]");
  var target = document.getElementById("round-target-species");
  if (!strategy || !target) {
    return;
  }
  function sync() {
    target.hidden = strategy.value !== "species";
  }
  strategy.addEventListener("change", sync);
  sync();
})();
