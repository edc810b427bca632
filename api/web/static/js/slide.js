// One slide: the image with every cell's box in its class colour, class toggles, cells to
// review marked; a selected cell shows its crop and its class probabilities.
import { apiJson, apiObjectUrl, urls } from "./api.js";
import { barChart } from "./charts.js";
import {
  classColours, classNames, clear, el, formatCount, setStatus, showMessage, slideName, svg,
} from "./dom.js";
import { startPage } from "./layout.js";

const slideId = document.body.dataset.slideId;
const figure = document.getElementById("figure");
const crop = document.getElementById("cell-crop");
const percent = (v) => `${(v * 100).toFixed(1)}%`;

let image = null;
let selected = null;

function facts(node, pairs) {
  clear(node);
  for (const [term, value] of pairs) node.append(el("dt", {}, term), el("dd", {}, value));
}

function cellName(cell, index) {
  const flags = [cell.review ? "flagged for review" : "", cell.edge ? "touches the border" : ""].filter(Boolean);
  return `Cell ${index + 1}: ${cell.label}, ${percent(cell.confidence)}${flags.length ? `, ${flags.join(", ")}` : ""}`;
}

/** Draw the cell, with a margin of its surroundings, scaled to fit the crop canvas. */
function drawCrop(cell) {
  const [x0, y0, x1, y1] = cell.box;
  const margin = Math.round(Math.max(x1 - x0, y1 - y0) * 0.15);
  const sx = Math.max(0, x0 - margin);
  const sy = Math.max(0, y0 - margin);
  const sw = Math.min(image.naturalWidth, x1 + margin) - sx;
  const sh = Math.min(image.naturalHeight, y1 + margin) - sy;
  const scale = Math.min(crop.width / sw, crop.height / sh);
  const dx = (crop.width - sw * scale) / 2;
  const dy = (crop.height - sh * scale) / 2;
  const ctx = crop.getContext("2d");
  ctx.clearRect(0, 0, crop.width, crop.height);
  ctx.drawImage(image, sx, sy, sw, sh, dx, dy, sw * scale, sh * scale);
  ctx.strokeStyle = classColours[cell.label];
  ctx.lineWidth = 2;
  ctx.strokeRect(dx + (x0 - sx) * scale, dy + (y0 - sy) * scale, (x1 - x0) * scale, (y1 - y0) * scale);
  crop.setAttribute("aria-label", `Crop of the selected cell (${cell.label})`);
}

function selectCell(cell, index, box) {
  selected?.classList.remove("selected");
  selected?.setAttribute("aria-pressed", "false");
  selected = box;
  box.classList.add("selected");
  box.setAttribute("aria-pressed", "true");
  document.getElementById("cell-empty").hidden = true;
  document.getElementById("cell-detail").hidden = false;
  document.getElementById("cell-heading").textContent = `Cell ${index + 1}: ${cell.label}`;
  if (image) drawCrop(cell);
  facts(document.getElementById("cell-facts"), [
    ["Class", cell.label],
    ["Confidence", percent(cell.confidence)],
    ["Box", cell.box.map((v) => Math.round(v)).join(", ")],
    ["Review", cell.review ? "yes: its class is uncertain" : "no"],
    ["At border", cell.edge ? "yes: the cell may be cut off" : "no"],
  ]);
  const rows = classNames.map((c) => ({ label: c, value: cell.probabilities?.[c] ?? 0, colour: classColours[c] }));
  document.getElementById("cell-chart").replaceChildren(
    barChart(rows, { max: 1, format: percent, title: `Class probabilities of cell ${index + 1}` }),
  );
}

function drawFigure(slide, imageUrl) {
  const width = slide.width || image.naturalWidth;
  const height = slide.height || image.naturalHeight;
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    role: "group",
    "aria-label": `${slideName(slide)} with ${slide.cells.length} detected cells`,
  });
  root.append(svg("image", { href: imageUrl, x: 0, y: 0, width, height }));
  const area = ({ box: [x0, y0, x1, y1] }) => (x1 - x0) * (y1 - y0);
  // Largest first, so a small cell overlapping a big one is drawn on top and stays clickable.
  const order = slide.cells.map((cell, index) => ({ cell, index })).sort((a, b) => area(b.cell) - area(a.cell));
  for (const { cell, index } of order) {
    const [x0, y0, x1, y1] = cell.box;
    const box = svg("rect", {
      class: "cell-box",
      x: x0, y: y0, width: x1 - x0, height: y1 - y0,
      tabindex: 0,
      role: "button",
      "aria-pressed": "false",
      "aria-label": cellName(cell, index),
      "data-index": index,
      "data-review": cell.review ? "true" : "false",
    }, svg("title", {}, cellName(cell, index)));
    const choose = () => selectCell(cell, index, box);
    box.addEventListener("click", choose);
    box.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        choose();
      }
    });
    const group = svg("g", { class: `cell class-${cell.label}`, "data-class": cell.label }, box);
    if (cell.review) {
      const inset = Math.min(4, (x1 - x0) / 4, (y1 - y0) / 4);
      group.append(svg("rect", {
        class: "review-mark", x: x0 + inset, y: y0 + inset,
        width: Math.max(1, x1 - x0 - 2 * inset), height: Math.max(1, y1 - y0 - 2 * inset),
      }));
    }
    root.append(group);
  }
  figure.replaceChildren(root);

  for (const toggle of document.querySelectorAll(".class-toggle")) {
    // A hidden class is display:none by CSS, which also takes its boxes out of the Tab order.
    toggle.addEventListener("change", () => root.classList.toggle(`hide-${toggle.value}`, !toggle.checked));
  }
  document.getElementById("review-toggle").addEventListener("change", (event) => {
    root.classList.toggle("hide-review", !event.target.checked);
  });
}

/** Why the counts may not hold (the slide is counted all the same). */
function renderWarnings(warnings) {
  const list = document.getElementById("slide-warnings-list");
  clear(list);
  for (const warning of warnings) list.append(el("li", { "data-code": warning.code }, warning.message));
  document.getElementById("slide-warnings").hidden = warnings.length === 0;
}

function renderSide(slide) {
  const counts = slide.counts || {};
  const list = document.getElementById("slide-counts");
  clear(list);
  for (const name of classNames) {
    list.append(el("div", { class: `class-${name}` }, el("dt", {}, name), el("dd", {}, formatCount(counts[name]))));
  }
  const review = slide.cells.filter((c) => c.review).length;
  list.append(el("div", {}, el("dt", {}, "To review"), el("dd", {}, String(review))));
  // Null for slides analysed before the frame was recorded: shown as a dash, not as zero.
  const frame = slide.frame_counts || {};
  const framed = document.getElementById("slide-frame-counts");
  clear(framed);
  for (const name of classNames) {
    framed.append(el("div", { class: `class-${name}` }, el("dt", {}, name), el("dd", {}, formatCount(frame[name]))));
  }
  const model = slide.model || {};
  const sha = model.sha256 ? el("span", { title: model.sha256 }, `${model.sha256.slice(0, 12)}…`) : "–";
  facts(document.getElementById("slide-model"), [
    ["Name", model.name || "–"],
    ["Version", model.version || "–"],
    ["SHA-256", sha],
    ["Image", slide.width ? `${slide.width} × ${slide.height} px` : "–"],
  ]);
}

/** The breadcrumb names the slide's batch by its reference (a second, small request). */
async function showBatchLink(batchId) {
  const link = document.getElementById("batch-link");
  link.href = urls.batch(batchId);
  try {
    const batch = await apiJson(`/batches/${encodeURIComponent(batchId)}`);
    link.textContent = `Batch ${batch.reference || batchId.slice(0, 8)}`;
  } catch {
    // The link still works; only its label stays generic.
  }
}

async function load() {
  let slide;
  try {
    slide = await apiJson(`/slides/${encodeURIComponent(slideId)}`);
  } catch (err) {
    showMessage(err.status === 404 ? "This slide does not exist, or it belongs to another lab." : `Could not load the slide: ${err.message}`, "error");
    return;
  }
  slide.cells ||= [];
  document.getElementById("slide-title").textContent = slideName(slide);
  document.title = `${slideName(slide)} · bloodcount`;
  setStatus(document.getElementById("slide-status"), slide.status);
  if (slide.batch_id) showBatchLink(slide.batch_id);
  if (slide.error) showMessage(`This slide could not be analysed: ${slide.error}`, "error");
  renderWarnings(slide.warnings || []);
  renderSide(slide);
  if (!slide.has_display) {
    // A TIFF (which browsers cannot show) gets a JPEG of itself when it is analysed: not a
    // fault while it waits, only when its analysis failed.
    const failed = slide.status === "failed";
    figure.replaceChildren(el("p", { class: failed ? "message error" : "muted" }, failed
      ? "The image cannot be shown: browsers cannot show this file's format, and the slide was not analysed, which is when a copy the browser can show is made."
      : "The image appears here once the slide is analysed: browsers cannot show this file's format, so a copy they can show is made then. Reload this page when the slide is done."));
    return;
  }
  try {
    // The display image: the original, or for a TIFF a JPEG of the slide as analysed;
    // either way in the pixel coordinates of the cells' boxes.
    const imageUrl = await apiObjectUrl(`/slides/${encodeURIComponent(slideId)}/display`);
    image = new Image();
    image.src = imageUrl;
    await image.decode();
    drawFigure(slide, imageUrl);
  } catch (err) {
    figure.replaceChildren(el("p", { class: "message error" }, `The image could not be shown: ${err.message}`));
  }
}

if (startPage()) load();
