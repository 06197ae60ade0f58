// mailsac inbox viewer: progressive enhancement only (live list, client-side tabs).
// Everything works without this file. It talks to this origin only.
(function () {
  "use strict";

  function liveList(section) {
    var listUrl = section.getAttribute("data-list-url");
    var eventsUrl = section.getAttribute("data-events-url");
    var target = document.getElementById("message-list");
    var status = document.getElementById("live-status");
    if (!listUrl || !eventsUrl || !target) return;
    var busy = false, again = false, queued = null, timer = null, source = null;

    function say(text) { if (status) status.textContent = text; }

    function refresh(announce) {
      if (busy) {  // once this fetch is done; its announcement is kept for then
        again = true;
        if (announce) queued = announce;
        return;
      }
      busy = true;
      fetch(listUrl, { credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (response.status === 403 || response.status === 404) stop();
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (html) {
          target.innerHTML = html;
          if (announce) say(announce);
        })
        .catch(function () { /* keep the current list; the next signal retries */ })
        .then(function () {
          busy = false;
          if (again) {
            var next = queued;
            again = false;
            queued = null;
            refresh(next);
          }
        });
    }

    function stop() {
      if (timer !== null) window.clearInterval(timer);
      timer = -1;
      if (source) source.close();
      section.setAttribute("data-live", "off");
      say("This inbox can no longer be shown here: reload the page.");
    }

    function poll() {
      if (timer !== null) return;
      if (source) source.close();
      section.setAttribute("data-live", "poll");
      say("Checking for new mail every 5 seconds.");
      refresh();
      timer = window.setInterval(function () { refresh(); }, 5000);
    }

    if (typeof window.EventSource !== "function") { poll(); return; }
    source = new EventSource(eventsUrl);
    source.addEventListener("open", function () {
      section.setAttribute("data-live", "sse");
      say("Live: new mail appears here by itself.");
      refresh();  // anything that arrived before the stream opened
    });
    source.addEventListener("message", function () { refresh("New message arrived."); });
    source.addEventListener("changed", function () { refresh(); });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) poll();
      else section.setAttribute("data-live", "reconnecting");
    });
  }

  function tabs(nav) {
    var links = nav.querySelectorAll("a[data-tab]");

    function show(name) {
      Array.prototype.forEach.call(links, function (link) {
        var on = link.getAttribute("data-tab") === name;
        var panel = document.getElementById("panel-" + link.getAttribute("data-tab"));
        if (on) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
        if (panel) panel.hidden = !on;
      });
      var panel = document.getElementById("panel-" + name);
      var pending = panel && panel.querySelector("[data-pending]");
      if (pending && panel.getAttribute("data-src")) {
        pending.removeAttribute("data-pending");
        pending.textContent = "Loading…";
        fetch(panel.getAttribute("data-src"), { credentials: "same-origin", cache: "no-store" })
          .then(function (response) {
            if (!response.ok) throw new Error("HTTP " + response.status);
            return response.text();
          })
          .then(function (text) { pending.textContent = text; })
          .catch(function () { pending.textContent = "Could not load the raw source."; });
      }
    }

    Array.prototype.forEach.call(links, function (link) {
      link.addEventListener("click", function (event) {
        if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
        var name = link.getAttribute("data-tab");
        if (!document.getElementById("panel-" + name)) return;
        event.preventDefault();
        show(name);
        window.history.replaceState(null, "", link.href);
      });
    });
  }

  var section = document.getElementById("messages");
  if (section) liveList(section);
  var nav = document.querySelector("nav[data-tabs]");
  if (nav) tabs(nav);
})();
