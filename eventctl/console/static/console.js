// The console's only script, and optional: pages work without it. It refreshes the parts marked
// data-live (their URL serves that part alone), asks before a form marked data-confirm is sent, and adds a
// "select all on this page" box to tables marked data-selectable.
"use strict";
document.querySelectorAll("[data-live]").forEach((part) => {
  const every = Number(part.dataset.every || 2000);
  const refresh = async () => {
    if (document.visibilityState === "visible") {
      try {
        const response = await fetch(part.dataset.live, { credentials: "same-origin" });
        if (response.redirected) {
          window.location.reload(); // the session ended: the page itself goes to the login form
          return;
        }
        if (response.ok) part.innerHTML = await response.text();
      } catch (error) {
        // the server is away for a moment: keep what is shown, try again on the next tick
      }
    }
    setTimeout(refresh, every);
  };
  setTimeout(refresh, every);
});
document.querySelectorAll("form[data-confirm]").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
});
document.querySelectorAll("table[data-selectable]").forEach((table) => {
  const boxes = table.querySelectorAll("tbody input[type=checkbox]");
  const header = table.querySelector("thead th");
  if (!boxes.length || !header) return;
  const all = document.createElement("input");
  all.type = "checkbox";
  all.setAttribute("aria-label", "Select every event on this page");
  all.addEventListener("change", () => boxes.forEach((box) => { box.checked = all.checked; }));
  header.replaceChildren(all);
});
