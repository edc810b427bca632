// Small DOM helpers: elements are built node by node, never parsed from HTML strings, so API text cannot become markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "on") for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: el("td", {class: "num"}, "12"). */
export function el(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, same calling style as el(). */
export function svg(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

/** Replace the page's messages with one message; errors are announced at once. */
export function showMessage(text, kind = "info") {
  const box = document.getElementById("messages");
  const message = el("p", { class: `message ${kind}`, role: kind === "error" ? "alert" : null }, text);
  box.replaceChildren(message);
  return message;
}

export function clearMessages() {
  clear(document.getElementById("messages"));
}

export function formatDateTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} kB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

export function formatCount(value) {
  return value === null || value === undefined ? "–" : String(value);
}

export function statusLabel(status) {
  return (status || "").replaceAll("_", " ");
}

/** Put a status badge's text and colour class on ``node``. */
export function setStatus(node, status) {
  node.className = `status status-${status}`;
  node.textContent = statusLabel(status);
}

export function statusBadge(status) {
  const badge = el("span");
  setStatus(badge, status);
  return badge;
}

/** The class colours the server passed in (CLASS_COLOURS in bloodcount/vision/draw.py). */
export const classColours = JSON.parse(document.body.dataset.classColours || "{}");
export const classNames = Object.keys(classColours);

/** A slide's file name: the API says ``file`` (as the analysis contract does). */
export function slideName(slide) {
  return slide.file ?? slide.filename ?? slide.id;
}
