// Packhouse UI: progressive enhancement only. Pages work without it; this adds copy buttons and
// filter-as-you-type on the project list. Text goes into the page via textContent, never as HTML.
"use strict";

function announce(text) {
  const live = document.getElementById("live");
  if (live) { live.textContent = ""; window.setTimeout(() => { live.textContent = text; }, 50); }
}

function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  // Plain-http servers beyond localhost have no Clipboard API: fall back to a hidden selection.
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "vh";
  document.body.appendChild(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  return ok ? Promise.resolve() : Promise.reject(new Error("copy failed"));
}

function addHashButtons() {
  // One per file row, made here rather than sent 200 times in the HTML (page weight).
  for (const code of document.querySelectorAll("table.files td > code")) {
    const button = el("button", "copy", "Copy");
    button.type = "button";
    const file = code.closest("tr").querySelector("a");
    button.dataset.label = "SHA256 of " + (file ? file.textContent : "this file");
    button.hidden = true;
    code.after(" ", button);
  }
}

function setUpCopyButtons() {
  addHashButtons();
  for (const button of document.querySelectorAll("button.copy")) {
    const source = button.dataset.copy ? document.getElementById(button.dataset.copy) : button.previousElementSibling;
    if (!source) continue;
    button.hidden = false;
    button.setAttribute("aria-label", "Copy " + (button.dataset.label || source.textContent.trim().slice(0, 60)));
    button.addEventListener("click", () => {
      copyText(source.textContent.trim()).then(() => {
        button.textContent = "Copied";
        announce("Copied to the clipboard");
        window.setTimeout(() => { button.textContent = "Copy"; }, 1500);
      }, () => announce("Could not copy; select the text instead"));
    });
  }
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function renderResults(data, container) {
  const count = container.querySelector("#count");
  const plural = data.total === 1 ? "" : "s";
  let text = data.total + " project" + plural + (data.query ? " matching “" + data.query + "”" : "");
  if (data.pages > 1) text += " · page " + data.page + " of " + data.pages;
  count.textContent = text;
  const list = el("ol", "results");
  list.id = "list";
  for (const hit of data.results) {
    const item = el("li");
    const link = el("a");
    link.href = hit.url;
    link.append(el("span", "name", hit.name), " ", el("span", "ver", hit.version));
    item.append(link);
    if (hit.status && hit.status !== "active") {  // PEP 792, as the server renders it
      const label = hit.status.charAt(0).toUpperCase() + hit.status.slice(1);
      item.append(" ", el("span", hit.status === "deprecated" ? "badge" : "badge yank", label));
    }
    if (hit.summary) item.append(el("p", null, hit.summary));
    const time = el("time", null, hit.updated.slice(0, 10));
    time.dateTime = hit.updated;
    item.append(time);
    list.append(item);
  }
  container.querySelector("#list").replaceWith(list);
  announce(text);
}

function setUpLiveSearch() {
  const form = document.querySelector("form[data-live]");
  const container = document.getElementById("results");
  if (!form || !container) return;
  const input = form.querySelector("input[name=q]");
  const sort = form.querySelector("select[name=sort]");
  let timer = 0;
  let seq = 0;
  async function refresh() {
    const params = new URLSearchParams({ q: input.value.trim(), sort: sort.value });
    const mine = ++seq;
    const response = await fetch(form.dataset.live + "?" + params, { headers: { Accept: "application/json" } });
    if (!response.ok || mine !== seq) return;
    const data = await response.json();
    if (mine !== seq) return;
    renderResults(data, container);
    const pager = container.querySelector(".pager");
    if (pager) pager.remove();  // the server renders paging links for the full-page view
    if (data.pages > 1) {
      const nav = el("nav", "pager");
      nav.setAttribute("aria-label", "Pages");
      const next = el("a", null, "Next →");
      next.rel = "next";
      next.href = "?" + params + "&page=2";
      nav.append(el("span", null, "Page 1 of " + data.pages), next);
      container.append(nav);
    }
    window.history.replaceState(null, "", "?" + params);
    document.title = (data.query ? "“" + data.query + "” — " : "") + "Projects — Packhouse";
  }
  input.addEventListener("input", () => { window.clearTimeout(timer); timer = window.setTimeout(refresh, 150); });
  sort.addEventListener("change", refresh);
}

document.addEventListener("DOMContentLoaded", () => {
  setUpCopyButtons();
  setUpLiveSearch();
});
