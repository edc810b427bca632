// One batch: live progress by polling with If-None-Match (a 304 costs the server almost
// nothing), the slides with their counts, a chart, failed slides with a retry, reports, and
// deleting the batch.
import { apiAllItems, apiDownload, apiFetch, apiJson, retryAfterMs, urls } from "./api.js";
import { countsChart } from "./charts.js";
import {
  classColours, classNames, clear, el, formatCount, setStatus, showMessage, slideName, statusBadge,
} from "./dom.js";
import { startPage } from "./layout.js";

const FINISHED = new Set(["done", "done_with_errors", "failed"]);
const POLL_MS = 2000;
// The table and the chart show this many slides at a time: a batch may hold a thousand,
// and only the page shown (plus the failed slides) is fetched when the progress changes,
// so that a lab watching large batches stays far below its key's rate limit.
const SLIDES_PER_PAGE = 50;
// The API's largest page: fewer requests to fetch a large batch's failed slides.
const FETCH_PER_PAGE = 200;

const batchId = document.body.dataset.batchId;
const statusNode = document.getElementById("batch-status");
const bar = document.getElementById("batch-progress");
const progressNode = document.getElementById("progress-text");
const totalsNode = document.getElementById("totals");
const frameTotalsNode = document.getElementById("frame-totals");
const slidesBody = document.getElementById("slides-body");
const chartNode = document.getElementById("counts-chart");
const failedBox = document.getElementById("failed");
const failedList = document.getElementById("failed-list");
const retryButton = document.getElementById("retry");
const slidesPager = document.getElementById("slides-pager");
const slidesPrev = document.getElementById("slides-prev");
const slidesNext = document.getElementById("slides-next");
const slidesPageInfo = document.getElementById("slides-page-info");

let etag = null;
let shownState = null;
let timer = null;
let slideTotal = 0;
let deleted = false; // after a delete, a poll still in flight must not report the 404
let slidePage = 1;
let failedTotal = 0; // failed slides of the batch, from its progress
let trouble = null; // the message saying the server cannot be reached, while it is so

/** Say the server is not answering; the message goes once it answers again. */
function showTrouble(text) {
  trouble = showMessage(text, "error");
}

function troubleOver() {
  if (trouble?.isConnected) trouble.remove();
  trouble = null;
}

/**
 * Re-render the rows of ``containers`` without losing the keyboard focus: a poll
 * re-renders them every few seconds while the batch runs, and the link someone has
 * tabbed to must stay focused, not fall back to the top of the page.
 */
function keepingFocus(containers, render) {
  const active = document.activeElement;
  const holder = containers.find((node) => node.contains(active));
  const href = holder && active.getAttribute("href");
  render();
  if (!href) return;
  const again = [...holder.querySelectorAll("a[href]")].find((a) => a.getAttribute("href") === href);
  (again || document.getElementById("main")).focus({ preventScroll: true });
}

function renderBatch(batch) {
  document.getElementById("batch-reference").textContent = batch.reference || batch.id.slice(0, 8);
  document.title = `Batch ${batch.reference || batch.id.slice(0, 8)} · bloodcount`;
  setStatus(statusNode, batch.status);
  const { total = 0, done = 0, failed = 0 } = batch.progress || {};
  slideTotal = total;
  bar.max = Math.max(1, total);
  bar.value = done + failed;
  const warned = batch.slides_with_warnings || 0;
  progressNode.textContent = `${done + failed} of ${total} slides finished` + (failed ? ` (${failed} failed)` : "")
    + (warned ? `; ${warned} counted with warnings: see their notes` : "");
  clear(totalsNode);
  const totals = batch.totals || {};
  for (const name of classNames) {
    totalsNode.append(el("div", { class: `class-${name}` }, el("dt", {}, `${name} total`), el("dd", {}, formatCount(totals[name]))));
  }
  // Null while a finished slide lacks frame counts (analysed before they were recorded):
  // dashes, not a sum that leaves slides out.
  clear(frameTotalsNode);
  const frame = batch.frame_totals || {};
  for (const name of classNames) {
    frameTotalsNode.append(el("div", { class: `class-${name}` }, el("dt", {}, name), el("dd", {}, formatCount(frame[name]))));
  }
}

function renderSlides(pageData, failed) {
  keepingFocus([slidesBody, failedList], () => renderSlidePage(pageData, failed));
}

function renderSlidePage(pageData, failed) {
  const shown = pageData.items || [];
  const total = pageData.total ?? shown.length;
  const pages = Math.max(1, Math.ceil(total / SLIDES_PER_PAGE));
  const first = (slidePage - 1) * SLIDES_PER_PAGE;
  clear(slidesBody);
  for (const slide of shown) {
    const counts = slide.counts || {};
    slidesBody.append(el("tr", {},
      el("td", {}, el("a", { href: urls.slide(slide.id) }, slideName(slide))),
      el("td", {}, statusBadge(slide.status)),
      ...classNames.map((c) => el("td", { class: "num" }, formatCount(counts[c]))),
      el("td", {}, slide.error || (slide.warnings || []).map((w) => w.message).join("; ")),
    ));
  }
  if (!shown.length) slidesBody.append(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No slides.")));
  slidesPager.hidden = pages <= 1;
  slidesPageInfo.textContent = `Slides ${first + 1}–${first + shown.length} of ${total}`;
  for (const [button, disabled, other] of [[slidesPrev, slidePage <= 1, slidesNext], [slidesNext, slidePage >= pages, slidesPrev]]) {
    // A button that goes disabled under the keyboard focus hands it to its neighbour.
    if (disabled && document.activeElement === button) other.focus();
    button.disabled = disabled;
  }

  // The chart draws the slides of the table's page, one row each.
  const finished = shown.filter((s) => s.status === "done");
  clear(chartNode);
  if (finished.length) chartNode.append(countsChart(finished, classNames, classColours));
  else chartNode.append(el("p", { class: "muted" }, "The chart appears as slides finish."));

  clear(failedList);
  for (const slide of failed) {
    failedList.append(el("li", {}, el("a", { href: urls.slide(slide.id) }, slideName(slide)), `: ${slide.error || "no reason recorded"}`));
  }
  failedBox.hidden = failed.length === 0;
}

async function showSlidePage(number) {
  slidePage = number;
  await loadSlides();
}

/** Fetch and show the table's page and the failed slides; false (and a message) when
 * they could not be fetched. */
async function loadSlides() {
  const base = `/batches/${encodeURIComponent(batchId)}/slides`;
  try {
    let pageData = await apiJson(`${base}?page=${slidePage}&per_page=${SLIDES_PER_PAGE}`);
    const pages = Math.max(1, Math.ceil((pageData.total || 0) / SLIDES_PER_PAGE));
    if (slidePage > pages) { // past the end (retried slides move nothing, but be safe)
      slidePage = pages;
      pageData = await apiJson(`${base}?page=${slidePage}&per_page=${SLIDES_PER_PAGE}`);
    }
    const failed = failedTotal ? await apiAllItems(`${base}?status=failed`, FETCH_PER_PAGE) : [];
    renderSlides(pageData, failed);
    return true;
  } catch (err) {
    showTrouble(`Could not load the slides (${err.message}); trying again.`);
    return false;
  }
}

async function poll() {
  clearTimeout(timer);
  if (deleted) return;
  let delay = POLL_MS;
  let finished = false;
  try {
    const response = await apiFetch(`/batches/${encodeURIComponent(batchId)}`, {
      headers: etag ? { "If-None-Match": etag } : {},
    });
    delay = retryAfterMs(response) ?? POLL_MS;
    if (response.status === 304) {
      finished = FINISHED.has(shownState?.status);
    } else {
      etag = response.headers.get("ETag");
      const batch = await response.json();
      renderBatch(batch);
      failedTotal = batch.progress?.failed || 0;
      const state = { status: batch.status, ...batch.progress };
      // Slides change only when the progress does; do not refetch them on every poll.
      const changed = JSON.stringify(state) !== JSON.stringify(shownState);
      if (!changed || await loadSlides()) {
        troubleOver();
        shownState = state;
        finished = FINISHED.has(batch.status);
      } else {
        // The slides did not come: ask again in full (not a 304) until they do, even
        // for a finished batch, or the table would stay empty or out of date.
        etag = null;
        delay = 5000;
      }
    }
    if (response.status === 304) troubleOver();
  } catch (err) {
    if (deleted) return;
    if (err.status === 404) {
      showMessage("This batch does not exist, or it belongs to another lab.", "error");
      return;
    }
    const busy = err.status === 429 || err.status === 503;
    showTrouble(busy
      ? `The server is busy (${err.message}); trying again shortly.`
      : `Lost contact with the server (${err.message}); trying again.`);
    delay = err.retryAfterMs ?? (busy ? 10000 : 5000);
  }
  // A hidden tab polls gently; it catches up as soon as it is shown again.
  if (!finished) timer = setTimeout(poll, document.hidden ? Math.max(delay, 15000) : delay);
}

async function retry() {
  retryButton.disabled = true;
  try {
    const response = await apiFetch(`/batches/${encodeURIComponent(batchId)}/retry`, { method: "POST" });
    const count = (await response.json()).slide_ids?.length ?? 0;
    showMessage(
      count ? `${count} failed slide${count === 1 ? " is" : "s are"} queued again.` : "There was no failed slide to retry.",
      "ok",
    );
    // The batch is running again from now on (its other slides are finished, so the server
    // derives "processing"): say so at once, or the finished status stays on screen until
    // the next poll answers, and anyone watching it takes the old result for the new one.
    if (count) setStatus(statusNode, "processing");
    etag = null;
    shownState = null;
    poll();
  } catch (err) {
    showMessage(`Could not retry: ${err.message}`, "error");
  } finally {
    retryButton.disabled = false;
  }
}

async function deleteBatch() {
  const name = document.getElementById("batch-reference").textContent || batchId.slice(0, 8);
  const question = `Delete batch ${name} with its ${slideTotal} slide${slideTotal === 1 ? "" : "s"}, their counts and their images? This cannot be undone.`;
  if (!window.confirm(question)) return;
  const button = document.getElementById("delete-batch");
  button.disabled = true;
  try {
    const response = await apiFetch(`/batches/${encodeURIComponent(batchId)}`, { method: "DELETE" });
    const outcome = await response.json();
    deleted = true;
    clearTimeout(timer);
    const left = outcome.objects_left ? ` ${outcome.objects_left} images the store could not delete yet will be removed by the next clean-up.` : "";
    // Nothing of the batch is left to show: keep the message box, replace the rest.
    const main = document.querySelector("main");
    for (const node of [...main.children]) if (node.id !== "messages") node.remove();
    main.append(
      el("h1", {}, `Batch ${name} deleted`),
      el("p", {}, el("a", { href: urls.batches }, "Back to the batches")),
    );
    document.title = `Batch ${name} deleted · bloodcount`;
    showMessage(
      `${outcome.slides_deleted} slide${outcome.slides_deleted === 1 ? "" : "s"} and ${outcome.objects_deleted} images deleted.${left}`,
      "ok",
    );
  } catch (err) {
    showMessage(`Could not delete the batch: ${err.message}`, "error");
    button.disabled = false;
  }
}

async function download(format) {
  try {
    const name = await apiDownload(`/batches/${encodeURIComponent(batchId)}/report.${format}`, `batch-${batchId}.${format}`);
    showMessage(`Downloaded ${name}.`, "ok");
  } catch (err) {
    showMessage(`Could not download the report: ${err.message}`, "error");
  }
}

if (startPage()) {
  retryButton.addEventListener("click", retry);
  slidesPrev.addEventListener("click", () => showSlidePage(Math.max(1, slidePage - 1)));
  slidesNext.addEventListener("click", () => showSlidePage(slidePage + 1));
  document.getElementById("delete-batch").addEventListener("click", deleteBatch);
  document.getElementById("download-csv").addEventListener("click", () => download("csv"));
  document.getElementById("download-json").addEventListener("click", () => download("json"));
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && !FINISHED.has(shownState?.status)) poll();
  });
  poll();
}
