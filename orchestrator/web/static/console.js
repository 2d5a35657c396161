// Every page's script (a file: the Content-Security-Policy runs scripts from this server only).
// Times are written in UTC, which every operator of a shared deployment reads the same way; the
// operator's own local time is added as the element's tooltip. "Select all" ticks every order
// on the page, for the bulk actions.
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
