// The API page's "try it" forms. A file, not inline code: the console's Content-Security-Policy
// runs scripts from this server only, so an injected inline script could not run.
"use strict";

async function tryIt(method, path, body) {
  const headers = {"Authorization": "Bearer " + document.getElementById("token").value};
  if (body) headers["Content-Type"] = "application/json";
  const answer = await fetch(path, {method, headers, body: body || undefined});
  document.getElementById("answer").textContent =
    answer.status + " " + answer.statusText + "\n" + await answer.text();
}

document.getElementById("openapi").addEventListener("click", (event) => {
  event.preventDefault();
  tryIt("GET", "/api/openapi.json", "");
});

for (const form of document.querySelectorAll("form.try")) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    tryIt(form.dataset.method, form.elements.path.value, form.elements.body.value);
  });
}
