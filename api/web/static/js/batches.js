// The lab's batches, newest first, a page at a time; refreshed while any is still running.
import { apiJson, hasNextPage, urls } from "./api.js";
import { classNames, clear, el, formatCount, formatDateTime, showMessage, statusBadge } from "./dom.js";
import { startPage } from "./layout.js";

const PER_PAGE = 25;
const RUNNING = new Set(["uploading", "queued", "processing"]);

const body = document.getElementById("batches-body");
const filter = document.getElementById("status-filter");
const prev = document.getElementById("prev-page");
const next = document.getElementById("next-page");
const info = document.getElementById("page-info");

let page = 1;
let timer = null;
let trouble = null; // the message saying the list could not be loaded, while it is so

function progressText(progress = {}) {
  const { total = 0, done = 0, failed = 0 } = progress;
  return failed ? `${done} of ${total} done, ${failed} failed` : `${done} of ${total} done`;
}

function row(batch) {
  const totals = batch.totals || {};
  const name = batch.reference || `(no reference) ${batch.id.slice(0, 8)}`;
  return el("tr", {},
    el("td", {}, el("a", { href: urls.batch(batch.id) }, name)),
    el("td", {}, statusBadge(batch.status)),
    el("td", {}, progressText(batch.progress)),
    ...classNames.map((c) => el("td", { class: "num" }, formatCount(totals[c]))),
    el("td", {}, el("time", { datetime: batch.created_at }, formatDateTime(batch.created_at))),
  );
}

async function load() {
  clearTimeout(timer);
  const status = filter.value ? `&status=${encodeURIComponent(filter.value)}` : "";
  let data;
  try {
    data = await apiJson(`/batches?page=${page}&per_page=${PER_PAGE}${status}`);
  } catch (err) {
    // Keep trying (a restart, a moment over the rate limit): the list must not stop
    // following running batches for good, nor need a reload to come back.
    trouble = showMessage(`Could not load the batches (${err.message}); trying again.`, "error");
    timer = setTimeout(load, err.retryAfterMs ?? 10000);
    return;
  }
  if (trouble?.isConnected) trouble.remove();
  trouble = null;
  const items = data.items || [];
  clear(body);
  if (!items.length) {
    body.append(el("tr", {}, el("td", { colspan: 7, class: "muted" },
      page === 1 ? "No batches yet. Submit one to get started." : "No more batches.")));
  }
  body.append(...items.map(row));
  prev.disabled = page <= 1;
  next.disabled = !hasNextPage(data, page, items.length, PER_PAGE);
  const total = typeof data.total === "number" ? ` · ${data.total} batch${data.total === 1 ? "" : "es"}` : "";
  info.textContent = `Page ${page}${total}`;
  if (items.some((b) => RUNNING.has(b.status))) timer = setTimeout(load, 5000);
}

if (startPage()) {
  filter.addEventListener("change", () => {
    page = 1;
    load();
  });
  document.getElementById("refresh").addEventListener("click", load);
  prev.addEventListener("click", () => {
    page = Math.max(1, page - 1);
    load();
  });
  next.addEventListener("click", () => {
    page += 1;
    load();
  });
  load();
}
