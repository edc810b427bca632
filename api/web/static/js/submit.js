// Submit a batch: choose or drop images and zips, check them here, upload with progress.
import { ApiError, apiUpload, setFlash, urls } from "./api.js";
import { clear, clearMessages, el, formatBytes, showMessage } from "./dom.js";
import { startPage } from "./layout.js";

const ACCEPTED = ["jpg", "jpeg", "png", "tif", "tiff", "bmp", "zip"];

const form = document.getElementById("submit-form");
const input = document.getElementById("files");
const zone = document.getElementById("drop-zone");
const selectedBox = document.getElementById("selected");
const selectedList = document.getElementById("selected-list");
const rejectedBox = document.getElementById("rejected");
const rejectedList = document.getElementById("rejected-list");
const reference = document.getElementById("reference");
const button = document.getElementById("submit-button");
const progressRow = document.getElementById("upload-progress");
const bar = document.getElementById("upload-bar");
const progressText = document.getElementById("upload-text");
const maxFiles = Number(form.dataset.maxFiles);
const maxBytes = Number(form.dataset.maxBytes);

let chosen = [];
let rejected = [];
let idempotencyKey = null;
let uploading = false;

function extension(name) {
  const dot = name.lastIndexOf(".");
  return dot < 0 ? "" : name.slice(dot + 1).toLowerCase();
}

/** Why a file cannot go in the batch, or null when it can. */
function rejectionReason(file) {
  if (!ACCEPTED.includes(extension(file.name))) {
    return "not an image or a zip: only JPEG, PNG, TIFF, BMP and zip files are accepted";
  }
  if (file.size === 0) return "the file is empty";
  if (chosen.some((f) => f.name === file.name && f.size === file.size)) return "already selected";
  if (chosen.length >= maxFiles) return `a batch holds at most ${maxFiles} files; submit the rest as another batch`;
  const total = chosen.reduce((sum, f) => sum + f.size, 0) + file.size;
  if (total > maxBytes) return `the batch would exceed ${formatBytes(maxBytes)}; submit it as another batch`;
  return null;
}

function addFiles(files) {
  for (const file of files) {
    const reason = rejectionReason(file);
    if (reason) rejected.push({ name: file.name, reason });
    else chosen.push(file);
  }
  // A new selection is a new request: it needs a new idempotency key.
  idempotencyKey = null;
  render();
}

function render() {
  clear(selectedList);
  for (const file of chosen) {
    selectedList.append(el("li", {}, el("span", {}, file.name), el("span", { class: "size" }, formatBytes(file.size))));
  }
  selectedBox.hidden = chosen.length === 0;
  clear(rejectedList);
  for (const item of rejected) {
    rejectedList.append(el("li", {}, el("span", {}, item.name), el("span", {}, item.reason)));
  }
  rejectedBox.hidden = rejected.length === 0;
  const total = chosen.reduce((sum, f) => sum + f.size, 0);
  button.disabled = uploading || chosen.length === 0;
  button.textContent = chosen.length
    ? `Submit ${chosen.length} file${chosen.length === 1 ? "" : "s"} (${formatBytes(total)})`
    : "Submit batch";
}

function newIdempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // randomUUID needs a secure context; plain http on a LAN address is not one.
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

function showProgress(loaded, total) {
  const percent = total ? Math.round((loaded / total) * 100) : 0;
  bar.value = percent;
  progressText.textContent = `${formatBytes(loaded)} of ${formatBytes(total)} (${percent}%)`;
}

/** The files the server refused: the problem document names one in ``file`` (the API
 * refuses the whole batch at the first bad file), or lists several in ``errors``. */
function serverRejections(problem) {
  if (typeof problem.file === "string") {
    return [{ name: problem.file, reason: problem.detail || "rejected by the server" }];
  }
  const list = problem.errors || [];
  return Array.isArray(list)
    ? list.map((item) => ({
        name: item.file || item.filename || item.name || "(file)",
        reason: item.detail || item.reason || item.error || "rejected by the server",
      }))
    : [];
}

function explain(err) {
  if (err.status === 413) return `The batch is too large: ${err.message}`;
  if (err.status === 429) return "Too many requests from your lab right now. Wait a minute and submit again.";
  return `The batch was not accepted: ${err.message}`;
}

async function upload(event) {
  event.preventDefault();
  if (!chosen.length || uploading) return;
  clearMessages();
  uploading = true;
  render();
  idempotencyKey ||= newIdempotencyKey();
  const body = new FormData();
  body.append("reference", reference.value.trim());
  for (const file of chosen) body.append("files", file, file.name);
  progressRow.hidden = false;
  showProgress(0, chosen.reduce((sum, f) => sum + f.size, 0));
  try {
    const { data } = await apiUpload("/batches", body, {
      headers: { "Idempotency-Key": idempotencyKey },
      onProgress: showProgress,
    });
    bar.value = 100;
    progressText.textContent = "Uploaded. Opening the batch…";
    const count = data.slide_ids?.length ?? data.progress?.total ?? chosen.length;
    setFlash(`Batch submitted: ${count} slide${count === 1 ? "" : "s"} queued for analysis.`, "ok");
    location.assign(urls.batch(data.id));
  } catch (err) {
    uploading = false;
    progressRow.hidden = true;
    if (err instanceof ApiError) {
      const refused = serverRejections(err.problem);
      if (refused.length) {
        // Take the refused files out of the selection, so "Submit" sends the rest.
        rejected.push(...refused);
        const names = new Set(refused.map((r) => r.name));
        chosen = chosen.filter((f) => !names.has(f.name));
        idempotencyKey = null;
      }
      // A server error or a dropped connection keeps the key: resubmitting cannot
      // create the batch twice.
      showMessage(explain(err), "error");
    } else {
      showMessage(`The batch was not submitted: ${err.message}`, "error");
    }
    render();
  }
}

if (startPage()) {
  input.addEventListener("change", () => {
    addFiles(input.files);
    input.value = "";
  });
  reference.addEventListener("input", () => {
    idempotencyKey = null;
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    addFiles(event.dataTransfer.files);
  });
  // A file dropped beside the zone must not make the browser navigate away to it.
  for (const name of ["dragover", "drop"]) document.addEventListener(name, (event) => event.preventDefault());
  document.getElementById("clear-files").addEventListener("click", () => {
    chosen = [];
    rejected = [];
    idempotencyKey = null;
    render();
    input.focus();
  });
  form.addEventListener("submit", upload);
  render();
}
