// The JSON API client: the kept API key, the typed errors, JSON and multipart requests, blobs, and the
// file upload with progress (XMLHttpRequest: fetch reports no upload progress). No DOM access; a 401
// calls the hook that main.js sets (it opens the key dialog).

const KEY_STORE = "clipsearch.apiKey";

export const keyStore = {
  get: () => localStorage.getItem(KEY_STORE) || "",
  set: (key) => localStorage.setItem(KEY_STORE, key),
  clear: () => localStorage.removeItem(KEY_STORE),
};

const hooks = { unauthorized: () => {} };

/** Called on every 401 answer (main.js opens the key dialog). */
export function onUnauthorized(handler) { hooks.unauthorized = handler; }

/** An error answer of the API: its status and the `{"error": {code, message, details}}` body. */
export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || "http_" + status;
    this.details = err.details;
  }
}

/** A failure worth retrying (network error, 429, 5xx), with the server's Retry-After when it sent one. */
export class RetryableError extends Error {
  constructor(message, retryAfterS = 0) { super(message); this.retryAfterS = retryAfterS; }
}

function authHeaders() {
  const key = keyStore.get();
  return key ? { Authorization: "Bearer " + key } : {};
}

/** One API call: `json` or `form` as the body; the parsed JSON answer, or the Response when `raw`. */
export async function api(path, { method = "GET", json, form, raw = false, signal } = {}) {
  const headers = authHeaders();
  let body;
  if (json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
  if (form !== undefined) body = form;
  const response = await fetch(path, { method, headers, body, signal });
  if (response.status === 401) hooks.unauthorized();
  if (raw) {
    if (!response.ok) throw new ApiError(response.status, null);
    return response;
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** A protected file (thumbnail, original) as a Blob: an <img src> cannot send the Authorization header. */
export async function fetchBlob(url, signal) {
  const response = await api(url, { raw: true, signal });
  return response.blob();
}

/** The service's health, without the key (public). */
export async function health() {
  const response = await fetch("/health");
  return response.json();
}

// POST multipart files with upload progress. Resolves with the 202 body; rejects with a RetryableError
// (network, 429, 5xx), an ApiError (any other status) or an AbortError when `signal` aborts.
function postFiles(url, batch, { signal, onProgress }) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) return reject(new DOMException("cancelled", "AbortError"));
    const form = new FormData();
    for (const entry of batch) form.append("files", entry.file, entry.path);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    const abort = () => xhr.abort();
    if (signal) signal.addEventListener("abort", abort, { once: true });
    xhr.addEventListener("loadend", () => { if (signal) signal.removeEventListener("abort", abort); });
    xhr.upload.onprogress = (e) => { if (onProgress) onProgress(e.loaded); };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { body = null; }
      if (xhr.status === 202) return resolve(body);
      if (xhr.status === 429 || xhr.status >= 500) {
        return reject(new RetryableError(`HTTP ${xhr.status}`, Number(xhr.getResponseHeader("Retry-After")) || 0));
      }
      if (xhr.status === 401) hooks.unauthorized();
      reject(new ApiError(xhr.status, body));
    };
    xhr.onerror = () => reject(new RetryableError("network error"));
    xhr.ontimeout = xhr.onerror;
    xhr.onabort = () => reject(new DOMException("cancelled", "AbortError"));
    xhr.send(form);
  });
}

/** What the upload engine (upload.js) asks of the server, each call taking an AbortSignal. */
export const uploadClient = {
  limits: (signal) => api("/uploads/limits", { signal }),
  known: (collection, sha256, signal) =>
    api(`/collections/${encodeURIComponent(collection)}/known`, { method: "POST", json: { sha256 }, signal }),
  openUpload: (collection, tags, signal) =>
    api(`/collections/${encodeURIComponent(collection)}/uploads`, { method: "POST", json: { tags }, signal }),
  sendFiles: (job, batch, options) => postFiles(job.files_url || `/jobs/${job.job_id}/files`, batch, options),
  job: (jobId, signal) => api(`/jobs/${jobId}`, { signal }),
  close: (jobId, signal) => api(`/jobs/${jobId}/close`, { method: "POST", signal }),
  cancel: (jobId) => api(`/jobs/${jobId}`, { method: "DELETE" }),
};
