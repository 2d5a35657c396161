// Every page's script (a file: the Content-Security-Policy runs scripts from this server only).
// Times are written in UTC, which every operator of a shared deployment reads the same way; the
// operator's own local time is added as the element's tooltip. "Select all" ticks every order
// on the page, for the bulk actions. The overview reloads itself while its "Refresh" box is
// ticked: a box, not a <meta> refresh, so that a reader can stop it (WCAG 2.2.1), and the choice
// is remembered in this browser.
"use strict";

for (const time of document.querySelectorAll("time[datetime]")) {
  const at = new Date(time.getAttribute("datetime"));
  if (!Number.isNaN(at.getTime())) {
    time.title = "your time: " + at.toLocaleString();
  }
}

const all = document.getElementById("select-all");
if (all) {
  all.addEventListener("change", () => {
    for (const box of document.querySelectorAll("input[name=ref]")) box.checked = all.checked;
  });
}

const refresh = document.getElementById("auto-refresh");
if (refresh) {
  refresh.checked = localStorage.getItem("orchestrator.autoRefresh") !== "off";
  let timer = null;
  const plan = () => {
    clearTimeout(timer);
    if (refresh.checked) timer = setTimeout(() => location.reload(), 1000 * Number(refresh.dataset.seconds));
  };
  refresh.addEventListener("change", () => {
    localStorage.setItem("orchestrator.autoRefresh", refresh.checked ? "on" : "off");
    plan();
  });
  plan();
}
