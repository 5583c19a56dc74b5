// clipsearch web page: plain JS over the JSON API. No framework, no CDN.
"use strict";

const KEY_STORE = "clipsearch.apiKey";
const COLLECTION_STORE = "clipsearch.collection";
const FINAL = new Set(["completed", "failed", "cancelled"]);
const $ = (sel) => document.querySelector(sel);

const state = {
  last: null, // {kind: "text"|"image"|"similar", query, file, imageId}
  filters: { labels: new Set(), tags: new Set() },
  thumbs: new Map(), // image id -> object URL
};

// -- HTTP ---------------------------------------------------------------------------------------------
function apiKey() { return localStorage.getItem(KEY_STORE) || ""; }

class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || "http_" + status;
    this.details = err.details;
  }
}

async function api(path, { method = "GET", json, form, raw = false } = {}) {
  const headers = {};
  const key = apiKey();
  if (key) headers["Authorization"] = "Bearer " + key;
  let body;
  if (json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
  if (form !== undefined) body = form;
  const response = await fetch(path, { method, headers, body });
  if (response.status === 401) openKeyDialog("This server needs an API key.");
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

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function setStatus(message, isError = false) {
  const status = $("#status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

// Thumbnails need the Authorization header, which an <img src> cannot send: fetch them as blobs.
async function loadThumb(img, id, url) {
  if (state.thumbs.has(id)) { img.src = state.thumbs.get(id); return; }
  try {
    const response = await api(url, { raw: true });
    const objectUrl = URL.createObjectURL(await response.blob());
    state.thumbs.set(id, objectUrl);
    img.src = objectUrl;
  } catch (_) {
    img.alt = "thumbnail unavailable";
    img.classList.add("broken");
  }
}

// -- API key ------------------------------------------------------------------------------------------
function openKeyDialog(reason) {
  const dialog = $("#key-dialog");
  if (dialog.open) return;
  $("#key-input").value = apiKey();
  if (reason) setStatus(reason, true);
  dialog.showModal();
}

function setupKey() {
  $("#key-button").addEventListener("click", () => openKeyDialog());
  $("#key-dialog").addEventListener("close", () => {
    const action = $("#key-dialog").returnValue;
    if (action === "save") localStorage.setItem(KEY_STORE, $("#key-input").value.trim());
    if (action === "clear") localStorage.removeItem(KEY_STORE);
    updateKeyButton();
    if (action === "save" || action === "clear") refreshAll();
  });
  updateKeyButton();
}

function updateKeyButton() {
  $("#key-button").textContent = apiKey() ? "API key ✓" : "API key";
}

// -- health -------------------------------------------------------------------------------------------
async function refreshHealth() {
  const pill = $("#health");
  try {
    const response = await fetch("/health");
    const body = await response.json();
    pill.textContent = body.status === "ok" ? "healthy" : "degraded";
    const down = Object.entries(body.parts || {}).filter(([, p]) => !p.ready).map(([n]) => n);
    pill.title = down.length ? "down: " + down.join(", ") : "all parts ready";
    pill.className = "pill " + (body.status === "ok" ? "ok" : "bad");
  } catch (_) {
    pill.textContent = "offline";
    pill.className = "pill bad";
  }
}

// -- collections --------------------------------------------------------------------------------------
function currentCollection() { return $("#collection").value; }

let collectionsAsked = 0; // only the newest answer is shown: an older, slower one may lack a new collection

async function refreshCollections() {
  const asked = ++collectionsAsked;
  let data;
  try {
    data = await api("/collections");
  } catch (err) {
    if (asked === collectionsAsked) setStatus("collections: " + err.message, true);
    return;
  }
  if (asked !== collectionsAsked) return;
  const select = $("#collection");
  const list = $("#collection-list");
  const wanted = select.value || localStorage.getItem(COLLECTION_STORE);
  select.replaceChildren();
  list.replaceChildren();
  for (const c of data.collections) {
    select.append(el("option", { value: c.name, text: c.name }));
    const count = c.count === null || c.count === undefined ? "" : ` · ${c.count}`;
    list.append(el("li", { "data-name": c.name, text: `${c.name}${count}`, title: c.model_id }));
  }
  if (wanted && data.collections.some((c) => c.name === wanted)) select.value = wanted;
  if (!data.collections.length) setStatus("No collection yet: create one, then upload images.");
}

function setupCollections() {
  $("#collection").addEventListener("change", () => {
    localStorage.setItem(COLLECTION_STORE, currentCollection());
    clearResults();
    showNewest();
  });
  $("#create-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("#new-collection").value.trim();
    if (!name) return;
    try {
      const created = await api("/collections", { method: "POST", json: { name } });
      localStorage.setItem(COLLECTION_STORE, created.name);
      $("#collection").value = "";
      $("#new-collection").value = "";
      await refreshCollections();
      clearResults();
      setStatus(`Created ${created.name}.`);
    } catch (err) {
      setStatus("create: " + err.message, true);
    }
  });
}

// -- upload: files and folders, chunked, resumable -----------------------------------------------------
// A drop or a pick gives a list of {file, path}. Nothing is read until it is needed: a batch of files is
// hashed (Web Crypto), the server says which hashes the collection already holds, and only the missing
// files are sent, in requests of at most N files and M bytes (GET /uploads/limits), a few in flight,
// all appended to one open job (POST /collections/<c>/uploads, /jobs/<id>/files, /jobs/<id>/close).
const OPEN_UPLOAD_STORE = "clipsearch.openUpload";
const IMAGE_NAME = /\.(jpe?g|png|gif|webp|bmp|tiff?|heic|heif|avif|jxl|dng|cr2|cr3|nef|arw|raf|orf)$/i;
const HASH_BATCH_BYTES = 64 * 1024 * 1024; // read at most this much for one batch of hashes
const MAX_RETRIES = 5;
let chosen = []; // [{file, path}]
let upload = null; // the running upload, see startUpload

function isImage(file, path) {
  // HEIC, AVIF, JPEG XL and camera RAW files often come with no type, or application/octet-stream.
  return file.type.startsWith("image/") || IMAGE_NAME.test(path);
}

function choose(entries) {
  chosen = entries.filter((e) => isImage(e.file, e.path));
  const skipped = entries.length - chosen.length;
  const bytes = chosen.reduce((n, e) => n + e.file.size, 0);
  $("#upload-chosen").textContent = chosen.length
    ? `${chosen.length} image(s), ${formatBytes(bytes)} ready` + (skipped ? ` · ${skipped} other file(s) left out` : "")
    : (skipped ? `no images among ${skipped} file(s)` : "");
}

function fromFileList(files) {
  return Array.from(files, (file) => ({ file, path: file.webkitRelativePath || file.name }));
}

// Walk dropped folders: the entries must be taken synchronously in the drop handler, then read.
function entriesOf(dataTransfer) {
  const roots = [];
  for (const item of dataTransfer.items || []) {
    const entry = item.kind === "file" && item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
    if (entry) roots.push(entry);
  }
  if (!roots.length) return Promise.resolve(fromFileList(dataTransfer.files || []));
  return walkEntries(roots);
}

async function walkEntries(roots) {
  const out = [];
  const stack = [...roots];
  while (stack.length) {
    const entry = stack.pop();
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      out.push({ file, path: entry.fullPath.replace(/^\/+/, "") || file.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) { // readEntries answers in pieces (100 at a time in Chromium) until an empty one
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        stack.push(...batch);
      }
    }
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let i = -1;
  do { n /= 1024; i += 1; } while (n >= 1024 && i < units.length - 1);
  return `${n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

function formatEta(seconds) {
  if (!isFinite(seconds) || seconds < 0) return "";
  if (seconds < 60) return ` · ETA ${Math.ceil(seconds)} s`;
  return ` · ETA ${Math.floor(seconds / 60)} min ${Math.ceil(seconds % 60)} s`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256Of(file) {
  return hex(await crypto.subtle.digest("SHA-256", await file.arrayBuffer()));
}

// An approximate multipart size: the bytes plus each part's headers (the name twice, percent-encoded).
function partBytes(entry) {
  return entry.file.size + 200 + 3 * new TextEncoder().encode(entry.path).length;
}

function setupDrop(zone, onFiles) {
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) onFiles(e.dataTransfer.files);
  });
}

function setupUpload() {
  const zone = $("#upload-drop");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer) entriesOf(e.dataTransfer).then(choose, (err) => setStatus("drop: " + err.message, true));
  });
  $("#upload-files").addEventListener("change", (e) => choose(fromFileList(e.target.files)));
  $("#upload-folder").addEventListener("change", (e) => choose(fromFileList(e.target.files)));
  $("#upload-cancel").addEventListener("click", () => { if (upload) upload.cancel(); });
  $("#upload-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const collection = currentCollection();
    if (!collection) return setStatus("Pick or create a collection first.", true);
    if (!chosen.length) return setStatus("Choose or drop some images or a folder first.", true);
    if (upload && upload.active) return setStatus("An upload is running: wait for it, or cancel it.", true);
    const tags = $("#upload-tags").value.split(",").map((t) => t.trim()).filter(Boolean);
    const entries = chosen;
    chosen = [];
    $("#upload-chosen").textContent = "";
    $("#upload-files").value = "";
    $("#upload-folder").value = "";
    startUpload(collection, entries, tags);
  });
  closeLeftoverUpload();
}

// A job left open by a reload or a closed tab: close it, so that what it received is indexed and the
// job completes (a re-drop of the same folder then skips those files).
async function closeLeftoverUpload() {
  const jobId = localStorage.getItem(OPEN_UPLOAD_STORE);
  if (!jobId) return;
  try { await api(`/jobs/${jobId}/close`, { method: "POST" }); } catch (_) { /* gone or ended */ }
  localStorage.removeItem(OPEN_UPLOAD_STORE);
}

function startUpload(collection, entries, tags) {
  const box = $("#upload-progress");
  box.hidden = false;
  $("#upload-refused").replaceChildren();
  const u = {
    run: (upload ? upload.run : 0) + 1, // counts the uploads of this page
    collection, tags, entries,
    active: true, cancelled: false, state: "hashing",
    limits: null, job: null, jobPromise: null,
    queue: [], hashingDone: false, wake: null,
    files: entries.length, hashed: 0, skipped: 0, skippedBytes: 0, repeats: 0,
    toSend: 0, toSendBytes: 0, sentFiles: 0, sentBytes: 0, inFlight: new Map(), requests: 0, retries: 0,
    refused: 0, startedSending: 0, report: null,
  };
  u.cancel = () => cancelUpload(u);
  upload = u;
  renderUpload(u);
  runUpload(u).catch((err) => {
    if (u.cancelled) return;
    u.cancelled = true; // stop the senders; what reached the server is indexed once the job is closed
    for (const xhr of u.xhrs || []) xhr.abort();
    wakeSenders(u);
    if (u.job) api(`/jobs/${u.job.job_id}/close`, { method: "POST" }).catch(() => {});
    localStorage.removeItem(OPEN_UPLOAD_STORE);
    finishUpload(u, "failed", "upload: " + err.message);
  });
}

function setUploadState(u, state) {
  u.state = state;
  $("#upload-progress").dataset.state = state;
  renderUpload(u);
}

function refuse(u, file, reason) {
  u.refused += 1;
  $("#upload-refused").append(el("li", { text: `${file}: ${reason}` }));
}

async function runUpload(u) {
  u.limits = await api("/uploads/limits");
  const sha = window.crypto && crypto.subtle ? sha256Of : null; // Web Crypto needs a secure context
  if (!sha) setStatus("This page is not in a secure context (https or localhost): files are sent without the already-stored check.");
  const senders = [];
  for (let i = 0; i < u.limits.parallel_requests; i++) senders.push(sender(u));
  await hashAndQueue(u, sha);
  await Promise.all(senders);
  if (u.cancelled) return;
  if (!u.job) {
    const note = u.skipped ? `all ${u.skipped} image(s) are already in ${u.collection}: nothing to send` : "nothing to send";
    return finishUpload(u, "nothing-to-send", note);
  }
  setUploadState(u, "indexing");
  await api(`/jobs/${u.job.job_id}/close`, { method: "POST" });
  localStorage.removeItem(OPEN_UPLOAD_STORE);
}

async function hashAndQueue(u, sha) {
  const seen = new Set();
  const maxBatch = u.limits.max_hash_lookup;
  const maxRequest = u.limits.max_request_bytes - 1024;
  let index = 0;
  while (index < u.entries.length && !u.cancelled) {
    const batch = [];
    let bytes = 0;
    while (index < u.entries.length && batch.length < maxBatch && (bytes < HASH_BATCH_BYTES || !batch.length)) {
      const entry = u.entries[index++];
      if (partBytes(entry) > maxRequest) {
        refuse(u, entry.path, `${formatBytes(entry.file.size)}: larger than the server takes in one request (${formatBytes(u.limits.max_request_bytes)})`);
        continue;
      }
      batch.push(entry);
      bytes += entry.file.size;
    }
    if (sha) {
      for (const entry of batch) { // one file in memory at a time
        if (u.cancelled) return;
        try { entry.sha256 = await sha(entry.file); } catch (err) { refuse(u, entry.path, "cannot read: " + err.message); entry.unreadable = true; }
        u.hashed += 1;
        renderUpload(u);
      }
      const hashes = [...new Set(batch.filter((e) => e.sha256).map((e) => e.sha256))];
      const known = new Set(hashes.length ? (await withRetries(u, () => api(`/collections/${encodeURIComponent(u.collection)}/known`, { method: "POST", json: { sha256: hashes } }))).known : []);
      for (const entry of batch) {
        if (entry.unreadable) continue;
        if (known.has(entry.sha256)) { u.skipped += 1; u.skippedBytes += entry.file.size; continue; }
        if (seen.has(entry.sha256)) { u.repeats += 1; continue; } // the same bytes twice in this drop
        seen.add(entry.sha256);
        enqueue(u, entry);
      }
    } else {
      for (const entry of batch) { u.hashed += 1; enqueue(u, entry); }
    }
    renderUpload(u);
  }
  u.hashingDone = true;
  wakeSenders(u);
}

function enqueue(u, entry) {
  u.queue.push(entry);
  u.toSend += 1;
  u.toSendBytes += entry.file.size;
  wakeSenders(u);
}

function wakeSenders(u) {
  if (u.wake) { const wake = u.wake; u.wake = null; wake(); }
}

function nextRequest(u) {
  const maxFiles = u.limits.max_files_per_request;
  const maxBytes = u.limits.max_request_bytes - 1024;
  const batch = [];
  let bytes = 0;
  while (u.queue.length && batch.length < maxFiles && bytes + partBytes(u.queue[0]) <= maxBytes) {
    const entry = u.queue.shift();
    batch.push(entry);
    bytes += partBytes(entry);
  }
  return batch;
}

async function sender(u) {
  for (;;) {
    if (u.cancelled) return;
    // Wait for a full request's worth, unless hashing is over (then send what is left).
    const enough = u.queue.length >= u.limits.max_files_per_request
      || u.queue.reduce((n, e) => n + partBytes(e), 0) >= u.limits.max_request_bytes / 2;
    if (!u.queue.length || (!enough && !u.hashingDone)) {
      if (u.hashingDone && !u.queue.length) return;
      await new Promise((resolve) => { const prev = u.wake; u.wake = () => { if (prev) prev(); resolve(); }; });
      continue;
    }
    const batch = nextRequest(u);
    if (!batch.length) continue;
    await openJob(u);
    if (u.cancelled) return;
    if (u.state === "hashing") setUploadState(u, "uploading");
    await sendBatch(u, batch);
  }
}

function openJob(u) {
  if (!u.jobPromise) {
    u.jobPromise = withRetries(u, () => api(`/collections/${encodeURIComponent(u.collection)}/uploads`, { method: "POST", json: { tags: u.tags } }))
      .then((job) => {
        u.job = job;
        u.startedSending = performance.now();
        localStorage.setItem(OPEN_UPLOAD_STORE, job.job_id);
        pollUploadJob(u);
        return job;
      });
  }
  return u.jobPromise;
}

class RetryableError extends Error {
  constructor(message, retryAfterS) { super(message); this.retryAfterS = retryAfterS; }
}

// Retries a network failure, 429 or 5xx with exponential backoff (1, 2, 4, 8, 16 s, or Retry-After).
async function withRetries(u, attempt) {
  for (let n = 0; ; n++) {
    if (u.cancelled) throw new Error("cancelled");
    try {
      return await attempt();
    } catch (err) {
      const retryable = err instanceof RetryableError || err instanceof TypeError
        || (err instanceof ApiError && (err.status === 429 || err.status >= 500));
      if (!retryable || n >= MAX_RETRIES) throw err;
      u.retries += 1;
      renderUpload(u);
      await sleep(err.retryAfterS ? err.retryAfterS * 1000 : 1000 * 2 ** n * (0.8 + 0.4 * Math.random()));
    }
  }
}

function postFiles(u, batch) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const entry of batch) form.append("files", entry.file, entry.path);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", u.job.files_url || `/jobs/${u.job.job_id}/files`);
    const key = apiKey();
    if (key) xhr.setRequestHeader("Authorization", "Bearer " + key);
    u.inFlight.set(xhr, 0);
    xhr.upload.onprogress = (e) => { u.inFlight.set(xhr, e.loaded); renderUpload(u); };
    const done = () => u.inFlight.delete(xhr);
    xhr.onload = () => {
      done();
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { body = null; }
      if (xhr.status === 202) return resolve(body);
      if (xhr.status === 429 || xhr.status >= 500) {
        return reject(new RetryableError(`HTTP ${xhr.status}`, Number(xhr.getResponseHeader("Retry-After")) || 0));
      }
      if (xhr.status === 401) openKeyDialog("This server needs an API key.");
      reject(new ApiError(xhr.status, body));
    };
    xhr.onerror = () => { done(); reject(new RetryableError("network error")); };
    xhr.ontimeout = xhr.onerror;
    xhr.onabort = () => { done(); reject(new Error("cancelled")); };
    u.xhrs = u.xhrs || new Set();
    u.xhrs.add(xhr);
    xhr.addEventListener("loadend", () => u.xhrs.delete(xhr));
    xhr.send(form);
  });
}

async function sendBatch(u, batch) {
  let answer;
  try {
    answer = await withRetries(u, () => postFiles(u, batch));
  } catch (err) {
    if (u.cancelled) return;
    if (err instanceof ApiError && err.status === 413 && batch.length > 1) { // split and try the halves
      const half = Math.ceil(batch.length / 2);
      await sendBatch(u, batch.slice(0, half));
      return sendBatch(u, batch.slice(half));
    }
    if (err instanceof ApiError && err.status === 409) { // the job ended (cancelled elsewhere)
      u.cancelled = true;
      return finishUpload(u, "cancelled", "upload stopped: " + err.message);
    }
    for (const entry of batch) refuse(u, entry.path, err.message);
    return;
  }
  u.requests += 1;
  u.sentFiles += batch.length;
  u.sentBytes += batch.reduce((n, e) => n + e.file.size, 0);
  for (const r of answer.rejected || []) refuse(u, r.file, r.reason);
  renderUpload(u);
}

async function pollUploadJob(u) {
  while (!u.cancelled && u.job) {
    try {
      u.report = await api(`/jobs/${u.job.job_id}`);
    } catch (_) {
      await sleep(2000);
      continue;
    }
    renderUpload(u);
    renderServerErrors(u);
    if (FINAL.has(u.report.state)) {
      const r = u.report;
      let note = `${r.state}: indexed ${r.done}`;
      if (r.duplicates) note += ` · duplicates ${r.duplicates}`;
      if (r.failed) note += ` · failed ${r.failed}`;
      if (u.skipped) note += ` · ${u.skipped} already stored, not sent`;
      return finishUpload(u, r.state, note);
    }
    await sleep(500);
  }
}

// Files the workers failed (undecodable, too many pixels...), listed as they come beside the refusals.
function renderServerErrors(u) {
  const errors = (u.report && u.report.errors) || [];
  const list = $("#upload-refused");
  for (const e of errors.slice(u.serverErrors || 0)) list.append(el("li", { text: `${e.file}: ${e.reason}` }));
  u.serverErrors = errors.length;
}

async function cancelUpload(u) {
  if (!u.active) return;
  u.cancelled = true;
  for (const xhr of u.xhrs || []) xhr.abort();
  wakeSenders(u);
  if (u.jobPromise) {
    try {
      const job = await u.jobPromise;
      await api(`/jobs/${job.job_id}`, { method: "DELETE" });
    } catch (_) { /* already ended */ }
  }
  localStorage.removeItem(OPEN_UPLOAD_STORE);
  finishUpload(u, "cancelled", "cancelled: nothing more is sent");
}

function finishUpload(u, final, note) {
  if (!u.active) return;
  u.active = false;
  setUploadState(u, final);
  $("#upload-note").textContent = note;
  $("#upload-cancel").hidden = true;
  refreshCollections().then(() => { if (!state.last) showNewest(); });
}

function renderUpload(u) {
  const now = performance.now();
  const inFlight = [...u.inFlight.values()].reduce((n, v) => n + v, 0);
  const sent = u.sentBytes + inFlight;
  const bytesBar = $("#bytes-bar");
  bytesBar.max = Math.max(u.toSendBytes, 1);
  bytesBar.value = Math.min(sent, u.toSendBytes);
  let bytesText = `${formatBytes(sent)} of ${formatBytes(u.toSendBytes)} sent`;
  if (u.startedSending && sent) {
    const rate = sent / ((now - u.startedSending) / 1000);
    const left = u.toSendBytes - sent;
    bytesText += ` · ${formatBytes(rate)}/s` + (u.hashingDone && left > 0 ? formatEta(left / rate) : "");
  }
  if (!u.hashingDone) bytesText += ` · checked ${u.hashed}/${u.files}`;
  if (u.skipped) bytesText += ` · ${u.skipped} already stored (${formatBytes(u.skippedBytes)} not sent)`;
  if (u.repeats) bytesText += ` · ${u.repeats} repeated`;
  if (u.retries) bytesText += ` · ${u.retries} retries`;
  $("#bytes-text").textContent = bytesText;

  const r = u.report;
  const total = Math.max(u.toSend, r ? r.total : 0);
  const processed = r ? r.processed : 0;
  const indexBar = $("#index-bar");
  indexBar.max = Math.max(total, 1);
  indexBar.value = processed;
  let indexText = `${r ? r.done : 0} of ${total} indexed`;
  if (r && r.failed) indexText += ` · failed ${r.failed}`;
  if (r && r.duplicates) indexText += ` · duplicates ${r.duplicates}`;
  if (r && r.images_per_s) {
    const left = total - processed;
    indexText += ` · ${r.images_per_s} img/s` + (u.hashingDone && left > 0 ? formatEta(left / r.images_per_s) : "");
  }
  $("#index-text").textContent = indexText;

  const box = $("#upload-progress");
  box.dataset.state = u.state;
  box.dataset.requests = String(u.requests);
  box.dataset.sent = String(u.sentFiles);
  box.dataset.skipped = String(u.skipped);
  box.dataset.run = String(u.run);
  box.dataset.job = u.job ? u.job.job_id : "";
  $("#upload-cancel").hidden = !u.active;
  $("#upload-head").textContent = `${u.state} · ${u.files} image(s) → ${u.collection}` + (u.job ? ` · job ${u.job.job_id.slice(0, 8)}` : "");
}

// -- job progress (label jobs) ------------------------------------------------------------------------
function trackJob(accepted) {
  const bar = el("progress", { max: String(Math.max(accepted.accepted, 1)), value: "0" });
  const line = el("span", { class: "job-state", text: "queued" });
  const errors = el("ul", { class: "errors" });
  for (const r of accepted.rejected || []) errors.append(el("li", { text: `${r.file}: ${r.reason}` }));
  const card = el("div", { class: "job", "data-job": accepted.job_id, "data-state": "queued" },
    el("div", { class: "job-head", text: `job ${accepted.job_id.slice(0, 8)}` }), bar, line, errors);
  $("#jobs").prepend(card);
  const poll = async () => {
    let job;
    try {
      job = await api(accepted.status_url || `/jobs/${accepted.job_id}`);
    } catch (err) {
      line.textContent = "status: " + err.message;
      setTimeout(poll, 2000);
      return;
    }
    const processed = job.done + job.failed + job.duplicates;
    bar.max = Math.max(job.total, 1);
    bar.value = processed;
    let text = `${job.state} · ${processed}/${job.total} · indexed ${job.done}`;
    if (job.duplicates) text += ` · duplicates ${job.duplicates}`;
    if (job.failed) text += ` · failed ${job.failed}`;
    if (job.images_per_s) text += ` · ${job.images_per_s} img/s`;
    if (job.eta_s && !FINAL.has(job.state)) text += ` · ETA ${Math.ceil(job.eta_s)} s`;
    line.textContent = text;
    card.dataset.state = job.state;
    errors.replaceChildren(...(job.errors || []).map((e) => el("li", { text: `${e.file}: ${e.reason}` })));
    if (FINAL.has(job.state)) {
      refreshCollections();
      return;
    }
    setTimeout(poll, 400);
  };
  poll();
}

// -- search, the newest images, paging and the image view ---------------------------------------------
const PAGE = 48;

function searchOptions(offset = 0) {
  const options = { collection: currentCollection(), limit: PAGE, offset };
  const minScore = $("#min-score").value;
  if (minScore !== "") options.min_score = Number(minScore);
  const filters = {};
  if (state.filters.labels.size) filters.labels = [...state.filters.labels];
  if (state.filters.tags.size) filters.tags = [...state.filters.tags];
  if (Object.keys(filters).length) options.filters = filters;
  return options;
}

async function runSearch(search, offset = 0) {
  const collection = currentCollection();
  if (!collection) return setStatus("Pick or create a collection first.", true);
  state.last = search;
  const options = searchOptions(offset);
  setStatus("Searching…");
  try {
    let data;
    if (search.kind === "text") {
      data = await api("/search/text", { method: "POST", json: { ...options, query: search.query } });
    } else if (search.kind === "image") {
      const form = new FormData();
      form.append("image", search.file, search.file.name || "image");
      for (const [name, value] of Object.entries(options)) {
        form.append(name, typeof value === "object" ? JSON.stringify(value) : String(value));
      }
      data = await api("/search/image", { method: "POST", form });
    } else {
      data = await api("/search/image", { method: "POST", json: { ...options, image_id: search.imageId } });
    }
    renderResults(data, search);
  } catch (err) {
    setStatus("search: " + err.message, true);
  }
}

// The collection's newest images: what the page shows before any search.
async function showNewest(offset = 0) {
  const collection = currentCollection();
  if (!collection) return;
  try {
    const data = await api(`/collections/${encodeURIComponent(collection)}/images?limit=${PAGE}&offset=${offset}`);
    state.last = null;
    state.view = { kind: "newest", offset, more: offset + data.images.length < data.total };
    renderCards(data.images, false);
    $("#filters").replaceChildren();
    const shown = data.images.length ? `${offset + 1}–${offset + data.images.length} of ${data.total}` : "none yet";
    setStatus(`Newest images in ${collection}: ${shown}`);
    renderPager();
  } catch (err) {
    setStatus("images: " + err.message, true);
  }
}

function clearResults() {
  $("#results").replaceChildren();
  $("#filters").replaceChildren();
  state.filters.labels.clear();
  state.filters.tags.clear();
  state.last = null;
  state.view = null;
  renderPager();
}

function describe(search) {
  if (search.kind === "text") return `“${search.query}”`;
  if (search.kind === "image") return `image ${search.file.name || ""}`.trim();
  return `images similar to ${search.filename || search.imageId}`;
}

function card(hit, withScore) {
  const img = el("img", { alt: hit.filename, loading: "lazy" });
  loadThumb(img, hit.id, hit.thumbnail_url || `/images/${hit.id}/thumbnail`);
  const chips = el("div", { class: "chips small" });
  for (const label of hit.labels || []) chips.append(el("span", { class: "chip label", text: label }));
  for (const tag of hit.tags || []) chips.append(el("span", { class: "chip tag", text: "#" + tag }));
  const open = () => openImage(hit.id);
  return el("figure", {
    class: "card",
    tabindex: "0",
    title: "open: the original, its details and similar images",
    "data-id": hit.id,
    "data-filename": hit.filename,
    "data-score": withScore ? String(hit.score) : undefined,
    onclick: open,
    onkeydown: (e) => { if (e.key === "Enter") open(); },
  }, img, el("figcaption", {},
    withScore ? el("span", { class: "score", text: hit.score.toFixed(3) }) : null,
    el("span", { class: "filename", text: hit.filename })), chips);
}

function renderCards(hits, withScore) {
  $("#results").replaceChildren(...hits.map((hit) => card(hit, withScore)));
}

function renderResults(data, search) {
  renderCards(data.results, true);
  const took = data.took_ms !== undefined ? ` in ${Math.round(data.took_ms)} ms` : "";
  const range = data.offset ? ` (from ${data.offset + 1})` : "";
  setStatus(`${data.results.length} result(s) for ${describe(search)}${range}${took}`);
  state.view = { kind: "search", offset: data.offset || 0, more: data.results.length === data.limit };
  renderFilters(data.results);
  renderPager();
}

function renderPager() {
  const view = state.view;
  $("#pager").hidden = !view || (!view.offset && !view.more);
  $("#prev-page").disabled = !view || !view.offset;
  $("#next-page").disabled = !view || !view.more;
  $("#page-info").textContent = view ? `page ${Math.floor(view.offset / PAGE) + 1}` : "";
}

function turnPage(step) {
  const view = state.view;
  if (!view) return;
  const offset = Math.max(0, view.offset + step * PAGE);
  if (view.kind === "newest") showNewest(offset); else if (state.last) runSearch(state.last, offset);
}

// The image view: the original, its stored details and labels, and its nearest images.
async function openImage(id) {
  const dialog = $("#image-view");
  const body = $("#image-body");
  body.replaceChildren(el("p", { class: "hint", text: "loading…" }));
  if (!dialog.open) dialog.showModal();
  let record;
  try {
    record = await api(`/images/${id}`);
  } catch (err) {
    body.replaceChildren(el("p", { class: "error", text: err.message }));
    return;
  }
  dialog.dataset.id = id;
  const original = el("img", { class: "original", alt: record.filename });
  loadThumb(original, "file:" + id, record.file_url || `/images/${id}/file`);
  const rows = [
    ["file", record.filename], ["size", `${record.width} × ${record.height} · ${record.format} · ${formatBytes(record.bytes || 0)}`],
    ["added", new Date(record.ingested_at).toLocaleString()], ["source", record.source],
    ["sha256", record.sha256], ["tags", (record.tags || []).join(", ")],
  ];
  for (const [key, value] of Object.entries(record.metadata || {})) rows.push([key, typeof value === "object" ? JSON.stringify(value) : String(value)]);
  const table = el("table", { class: "meta" }, ...rows.filter(([, v]) => v).map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { text: v }))));
  const labels = el("div", { class: "chips", id: "image-labels" });
  for (const label of record.labels || []) {
    const score = (record.label_scores || {})[label];
    labels.append(el("span", { class: "chip label", text: score === undefined ? label : `${label} ${score.toFixed(2)}` }));
  }
  if (!(record.labels || []).length) labels.append(el("span", { class: "hint", text: "no labels" }));
  const similar = el("div", { class: "grid small", id: "image-similar" });
  const more = el("button", { type: "button", text: "More like this", onclick: () => {
    dialog.close();
    runSearch({ kind: "similar", imageId: id, filename: record.filename });
  } });
  const example = el("form", { class: "row", id: "example-form", onsubmit: (e) => {
    e.preventDefault();
    const name = e.target.elements.klass.value.trim();
    if (name) addExample(name, id, record.filename);
    e.target.reset();
  } }, el("input", { name: "klass", placeholder: "class name", "aria-label": "class name" }),
  el("button", { type: "submit", class: "secondary-ok", text: "Use as a class example" }));
  body.replaceChildren(el("div", { class: "image-top" }, original, el("div", {}, el("h3", { text: record.filename }), table,
    el("h4", { text: "Labels" }), labels, more, example)), el("h4", { text: "Similar images" }), similar);
  try {
    const data = await api("/search/image", { method: "POST", json: { collection: record.collection, image_id: id, limit: 13 } });
    const others = data.results.filter((hit) => hit.id !== id).slice(0, 12);
    similar.replaceChildren(...others.map((hit) => card(hit, true)));
  } catch (err) {
    similar.replaceChildren(el("p", { class: "error", text: "similar: " + err.message }));
  }
}

function setupSearch() {
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = $("#query").value.trim();
    if (query) runSearch({ kind: "text", query }); else showNewest();
  });
  const byImage = (files) => { if (files.length) runSearch({ kind: "image", file: files[0] }); };
  setupDrop($("#search-drop"), byImage);
  $("#search-file").addEventListener("change", (e) => byImage(e.target.files));
  $("#prev-page").addEventListener("click", () => turnPage(-1));
  $("#next-page").addEventListener("click", () => turnPage(1));
  $("#image-close").addEventListener("click", () => $("#image-view").close());
}

function renderFilters(results) {
  const box = $("#filters");
  box.replaceChildren();
  const labels = new Set(state.filters.labels);
  const tags = new Set(state.filters.tags);
  for (const hit of results) {
    for (const label of hit.labels || []) labels.add(label);
    for (const tag of hit.tags || []) tags.add(tag);
  }
  const chip = (kind, value, text) => {
    const active = state.filters[kind].has(value);
    return el("button", {
      type: "button",
      class: `chip ${kind === "labels" ? "label" : "tag"}${active ? " active" : ""}`,
      "aria-pressed": String(active),
      text,
      onclick: () => {
        if (active) state.filters[kind].delete(value); else state.filters[kind].add(value);
        if (state.last) runSearch(state.last);
      },
    });
  };
  if (labels.size || tags.size) box.append(el("span", { class: "hint", text: "filter:" }));
  for (const label of [...labels].sort()) box.append(chip("labels", label, label));
  for (const tag of [...tags].sort()) box.append(chip("tags", tag, "#" + tag));
}

// -- class sets and classification --------------------------------------------------------------------
let classSet = null;

async function refreshClassSets() {
  const list = $("#class-sets");
  let data;
  try {
    data = await api("/class-sets");
  } catch (err) {
    const text = err.status === 404 ? "Classification is not available on this server." : err.message;
    list.replaceChildren(el("li", { class: "hint", text }));
    return;
  }
  const sets = data.class_sets || [];
  if (classSet && !sets.some((set) => set.name === classSet)) classSet = null;
  if (!classSet && sets.length) classSet = sets[0].name;
  list.replaceChildren();
  if (!sets.length) list.append(el("li", { class: "hint", text: "No class set yet." }));
  for (const set of sets) {
    const classes = (set.classes || []).map((c) => c.name).join(", ");
    const label = el("button", {
      type: "button", class: "small", title: `label every image of ${set.collection} with this class set`,
      onclick: (event) => { event.stopPropagation(); labelCollection(set.name); },
    });
    label.textContent = "label images";
    list.append(el("li", {
      "data-name": set.name, class: set.name === classSet ? "selected" : "", tabindex: "0",
      title: "classify dropped images with this class set",
      onclick: () => { classSet = set.name; refreshClassSets(); },
    }, el("strong", { text: set.name }), el("span", { class: "hint", text: ` ${set.collection} · ${classes}` }), " ", label));
  }
}

// A new class set from the page: classes with prompts (one per line, "name: prompt, prompt") and
// example images (picked in the image view).
const examples = new Map(); // class name -> [{id, filename}]

function addExample(name, id, filename) {
  const list = examples.get(name) || [];
  if (!list.some((e) => e.id === id)) list.push({ id, filename });
  examples.set(name, list);
  renderExamples();
  $("#class-create").open = true;
  setStatus(`${filename} is an example of “${name}” in the new class set.`);
}

function renderExamples() {
  const box = $("#class-examples");
  box.replaceChildren();
  for (const [name, list] of examples) {
    for (const e of list) {
      box.append(el("button", { type: "button", class: "chip label", title: "remove", text: `${name} ← ${e.filename} ✕`, onclick: () => {
        examples.set(name, examples.get(name).filter((x) => x.id !== e.id));
        if (!examples.get(name).length) examples.delete(name);
        renderExamples();
      } }));
    }
  }
}

function classesFromForm() {
  const classes = {};
  for (const line of $("#class-lines").value.split("\n")) {
    const [head, ...rest] = line.split(":");
    const name = head.trim();
    if (!name) continue;
    const prompts = rest.join(":").split(",").map((p) => p.trim()).filter(Boolean);
    classes[name] = { prompts: prompts.length ? prompts : [name] };
  }
  for (const [name, list] of examples) {
    classes[name] = classes[name] || { prompts: [] };
    classes[name].image_ids = list.map((e) => e.id);
  }
  return classes;
}

function setupClassCreate() {
  $("#class-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const collection = currentCollection();
    if (!collection) return setStatus("Pick or create a collection first.", true);
    const classes = classesFromForm();
    if (Object.keys(classes).length < 1) return setStatus("Add at least one class: a line, or an example image.", true);
    const name = $("#class-name").value.trim();
    try {
      await api("/class-sets", { method: "POST", json: { name, collection, classes } });
      classSet = name;
      examples.clear();
      renderExamples();
      $("#class-form").reset();
      $("#class-create").open = false;
      await refreshClassSets();
      setStatus(`Created class set ${name} with ${Object.keys(classes).length} class(es).`);
    } catch (err) {
      setStatus("class set: " + err.message, true);
    }
  });
}

async function labelCollection(name) {
  try {
    const job = await api(`/class-sets/${encodeURIComponent(name)}/label`, { method: "POST", json: {} });
    trackJob({ job_id: job.job_id, status_url: job.status_url, accepted: job.total, rejected: [] });
  } catch (err) {
    setStatus("label: " + err.message, true);
  }
}

function renderClassification(data) {
  const box = $("#classify-result");
  box.replaceChildren();
  for (const prediction of data.predictions || []) {
    const head = el("p", { class: "prediction" }, el("strong", { text: prediction.label }),
      ` ${prediction.score.toFixed(3)}` + (prediction.is_other ? " (below the threshold)" : ""));
    const list = el("ol", { class: "scores" });
    for (const row of prediction.ranked || []) {
      list.append(el("li", { text: `${row.name} · score ${row.score.toFixed(3)} · p ${row.probability.toFixed(2)}` }));
    }
    box.append(head, list);
  }
}

function setupClassify() {
  const classify = async (files) => {
    if (!files.length) return;
    if (!classSet) return setStatus("No class set to classify with.", true);
    const form = new FormData();
    form.append("image", files[0], files[0].name || "image");
    form.append("class_set", classSet);
    try {
      renderClassification(await api("/classify", { method: "POST", form }));
    } catch (err) {
      $("#classify-result").replaceChildren(el("p", { class: "error", text: "classify: " + err.message }));
    }
  };
  setupDrop($("#classify-drop"), classify);
  $("#classify-file").addEventListener("change", (e) => classify(e.target.files));
}

// -- start --------------------------------------------------------------------------------------------
// The link that `clipsearch up --demo` prints (/?collection=demo&q=...) opens that collection and runs
// that search; returns whether it started one.
function applyUrlParams() {
  const params = new URLSearchParams(window.location.search);
  const collection = params.get("collection");
  if (collection && [...$("#collection").options].some((o) => o.value === collection)) {
    $("#collection").value = collection;
    localStorage.setItem(COLLECTION_STORE, collection);
  }
  const query = (params.get("q") || "").trim();
  if (!query) return false;
  $("#query").value = query;
  runSearch({ kind: "text", query });
  return true;
}

function refreshAll() {
  refreshHealth();
  refreshCollections().then(() => { if (!state.last) showNewest(); });
  refreshClassSets();
}

document.addEventListener("DOMContentLoaded", () => {
  setupKey();
  setupCollections();
  setupUpload();
  setupSearch();
  setupClassify();
  setupClassCreate();
  refreshHealth();
  refreshCollections().then(() => { if (!applyUrlParams() && !state.last) showNewest(); });
  refreshClassSets();
  setInterval(refreshHealth, 15000);
  // Let drops outside the zones do nothing rather than open the file in the tab.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
});
