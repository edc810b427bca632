// The JSON API, called with the lab's key. The key lives in sessionStorage only: it is
// sent in the Authorization header, never in a URL, so it stays out of server logs,
// history and Referer headers, and it goes when the tab closes or the user signs out.

const KEY_ITEM = "bloodcount.apiKey";
const NEXT_ITEM = "bloodcount.next";
const FLASH_ITEM = "bloodcount.flash";
const page = document.body.dataset;

export const apiBase = page.apiBase;

export const urls = {
  signin: page.signinUrl,
  submit: page.submitUrl,
  batches: page.batchesUrl,
  batch: (id) => page.batchUrl.replace("__id__", encodeURIComponent(id)),
  slide: (id) => page.slideUrl.replace("__id__", encodeURIComponent(id)),
};

export function getKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

export function setKey(key) {
  sessionStorage.setItem(KEY_ITEM, key);
}

/** A message to show on the next page (after a redirect). */
export function setFlash(text, kind = "info") {
  sessionStorage.setItem(FLASH_ITEM, JSON.stringify({ text, kind }));
}

export function takeFlash() {
  const raw = sessionStorage.getItem(FLASH_ITEM);
  sessionStorage.removeItem(FLASH_ITEM);
  try {
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

/** Where to go after signing in: the page that sent us to the sign-in page. */
export function takeNext() {
  const next = sessionStorage.getItem(NEXT_ITEM);
  sessionStorage.removeItem(NEXT_ITEM);
  // Only a path on this site, so a crafted value cannot send the user elsewhere.
  return next && next.startsWith("/") && !next.startsWith("//") ? next : urls.batches;
}

export function signOut() {
  sessionStorage.removeItem(KEY_ITEM);
  sessionStorage.removeItem(NEXT_ITEM);
  setFlash("You are signed out.");
  location.assign(urls.signin);
}

/** Send an unsigned-in visitor to the sign-in page; returns false when it did. */
export function requireKey() {
  if (getKey()) return true;
  sessionStorage.setItem(NEXT_ITEM, location.pathname + location.search);
  location.replace(urls.signin);
  return false;
}

/** An API answer that is not a success: status and the RFC 9457 problem document. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `The server answered ${status}.`);
    this.status = status;
    this.problem = problem;
  }
}

async function errorFrom(response) {
  let problem = {};
  try {
    problem = await response.json();
  } catch {
    // Not JSON (a proxy's error page, say): keep the status line.
  }
  const error = new ApiError(response.status, { title: response.statusText, ...problem });
  // A 429 or 503 says when to come back; a poll waits that long rather than its own guess.
  error.retryAfterMs = retryAfterMs(response);
  return error;
}

function keyRejected() {
  sessionStorage.removeItem(KEY_ITEM);
  sessionStorage.setItem(NEXT_ITEM, location.pathname + location.search);
  setFlash("Your API key was not accepted (revoked or replaced?). Please sign in again.", "error");
  location.assign(urls.signin);
}

function authHeaders(extra, key = getKey()) {
  const headers = new Headers(extra || {});
  headers.set("Authorization", `Bearer ${key}`);
  return headers;
}

/**
 * fetch() under the API base with the key. Resolves with the Response for 2xx and 304,
 * throws ApiError otherwise; a 401 also signs the user out.
 */
export async function apiFetch(path, { method = "GET", headers, body, key } = {}) {
  let response;
  try {
    response = await fetch(apiBase + path, {
      method,
      body,
      headers: authHeaders(headers, key ?? getKey()),
      // The page does its own conditional requests (ETag); the browser cache must not
      // answer for it, and no cookie is involved.
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    throw new ApiError(0, { title: "The server could not be reached. Check the connection and try again." });
  }
  if (response.ok || response.status === 304) return response;
  if (response.status === 401 && key === undefined) keyRejected();
  throw await errorFrom(response);
}

export async function apiJson(path, options) {
  const response = await apiFetch(path, options);
  return response.json();
}

/** Fetch every page of a paginated list and return all its items. */
export async function apiAllItems(path, perPage = 100) {
  const items = [];
  const sep = path.includes("?") ? "&" : "?";
  for (let number = 1; number < 10000; number += 1) {
    const data = await apiJson(`${path}${sep}page=${number}&per_page=${perPage}`);
    const pageItems = data.items || [];
    items.push(...pageItems);
    if (!hasNextPage(data, number, pageItems.length, perPage)) break;
  }
  return items;
}

/** Whether a list answer has a page after ``number``, whatever pagination fields it uses. */
export function hasNextPage(data, number, count, perPage) {
  if (typeof data.pages === "number") return number < data.pages;
  if (typeof data.total === "number") return number * (data.per_page || perPage) < data.total;
  if ("next" in data) return Boolean(data.next);
  return count >= perPage;
}

/**
 * POST a FormData with XMLHttpRequest, because fetch() has no upload progress events.
 * onProgress(loaded, total) is called as the body goes out.
 */
export function apiUpload(path, formData, { headers = {}, onProgress } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", apiBase + path);
    authHeaders(headers).forEach((value, name) => xhr.setRequestHeader(name, value));
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      if (onProgress && event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener("load", () => {
      const data = xhr.response || {};
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve({ status: xhr.status, data });
      } else {
        if (xhr.status === 401) keyRejected();
        reject(new ApiError(xhr.status, { title: xhr.statusText, ...data }));
      }
    });
    const failed = () =>
      reject(new ApiError(0, { title: "The upload was interrupted. Check the connection and submit again." }));
    xhr.addEventListener("error", failed);
    xhr.addEventListener("abort", failed);
    xhr.send(formData);
  });
}

/** Object URL of a binary resource (an image), fetched with the key. */
export async function apiObjectUrl(path) {
  const response = await apiFetch(path);
  return URL.createObjectURL(await response.blob());
}

/** Download a file (a report) fetched with the key, under the server's file name. */
export async function apiDownload(path, fallbackName) {
  const response = await apiFetch(path);
  const blob = await response.blob();
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
  const name = match ? decodeURIComponent(match[1]) : fallbackName;
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  // Revoke later: the download may still be reading from the URL.
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  return name;
}

/** Milliseconds from a Retry-After header (seconds or an HTTP date), or null. */
export function retryAfterMs(response) {
  const value = response.headers.get("Retry-After");
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - Date.now());
}
