// The upload panel: what is chosen or dropped (files, folders), the progress of the running upload, and
// the refused files. The work itself is the upload engine's (upload.js).

import { uploadClient } from "./api.js";
import { currentCollection } from "./collections.js";
import { $, el, setStatus, setupDropZone } from "./dom.js";
import { formatBytes, formatEta, uploadStateText } from "./format.js";
import { Upload, closeLeftover, isImage } from "./upload.js";

const OPEN_UPLOAD_STORE = "clipsearch.openUpload";
const openUploadStore = {
  get: () => localStorage.getItem(OPEN_UPLOAD_STORE),
  set: (jobId) => localStorage.setItem(OPEN_UPLOAD_STORE, jobId),
  remove: () => localStorage.removeItem(OPEN_UPLOAD_STORE),
};

let chosen = []; // [{file, path}]
let upload = null; // the running or last upload
let runs = 0; // the uploads of this page
let serverErrors = 0; // the job's errors listed so far
const LIVE_REFRESH_MS = 3000; // while a job indexes, the collection's count and grid are read this often

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

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256Of(file) {
  return hex(await crypto.subtle.digest("SHA-256", await file.arrayBuffer()));
}

/**
 * Wires the upload form; `onFinished` runs when an upload ends, `onIndexed` (a promise) every few seconds
 * while its job has indexed more images, so the count and grid grow as they arrive. Closes a job a reload
 * left open.
 */
export function setupUpload(onFinished, onIndexed = onFinished) {
  setupDropZone($("#upload-drop"), (data) => entriesOf(data).then(choose, (err) => setStatus("drop: " + err.message, true)));
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
    startUpload(collection, entries, tags, onFinished, onIndexed);
  });
  closeLeftover(uploadClient, openUploadStore);
}

function startUpload(collection, entries, tags, onFinished, onIndexed) {
  $("#upload-progress").hidden = false;
  $("#upload-refused").replaceChildren();
  runs += 1;
  serverErrors = 0;
  const secure = window.crypto && crypto.subtle; // Web Crypto needs a secure context
  if (!secure) setStatus("This page is not in a secure context (https or localhost): files are sent without the already-stored check.");
  const u = new Upload({
    collection, entries, tags,
    client: uploadClient,
    hash: secure ? sha256Of : null,
    store: openUploadStore,
    onChange: render,
    onRefused: (file, reason) => $("#upload-refused").append(el("li", { text: `${file}: ${reason}` })),
  });
  upload = u;
  render(u);
  refreshWhileIndexing(u, onIndexed);
  u.start().then((outcome) => {
    $("#upload-note").textContent = note(u, outcome);
    $("#upload-cancel").hidden = true;
    onFinished();
  });
}

/** One refresh at a time, every LIVE_REFRESH_MS, only when the job has indexed more since the last. */
async function refreshWhileIndexing(u, refresh) {
  let shown = 0;
  while (u.active) {
    await new Promise((resolve) => setTimeout(resolve, LIVE_REFRESH_MS));
    const processed = u.report ? u.report.processed : 0;
    if (!u.active || processed === shown) continue;
    shown = processed;
    try { await refresh(); } catch (_) { /* the next round tries again */ }
  }
}

/** The plain news of an upload that needed (almost) nothing sent: "3000 already stored — 106 MB not sent". */
function summary(u) {
  if (!u.skipped) return "";
  const all = u.skipped === u.files;
  const head = all ? `All ${u.skipped} images are already stored` : `${u.skipped} of ${u.files} images already stored`;
  return `${head} — ${formatBytes(u.skippedBytes)} not sent`;
}

function note(u, outcome) {
  const r = outcome.report;
  if (r) {
    let text = `${uploadStateText(r.state)}: indexed ${r.done}`;
    if (r.duplicates) text += ` · duplicates ${r.duplicates}`;
    if (r.failed) text += ` · failed ${r.failed}`;
    if (u.skipped) text += ` · ${u.skipped} already stored, not sent`;
    return text;
  }
  if (outcome.state === "nothing-to-send") {
    return u.skipped ? `nothing to send: every image is already in ${u.collection}` : "nothing to send";
  }
  if (outcome.state === "failed") return "upload: " + outcome.error.message;
  if (outcome.error) return "upload stopped: " + outcome.error.message; // the job ended elsewhere
  return "cancelled: nothing more is sent";
}

function render(u) {
  if (u !== upload) return;
  const p = u.progress();
  // Both bars run against the whole drop, known from the walk: what needs no upload counts at once.
  const bytesBar = $("#bytes-bar");
  bytesBar.max = Math.max(p.totalBytes, 1);
  bytesBar.value = p.settledBytes;
  let bytesText = `${formatBytes(p.sent)} sent`;
  if (u.skippedBytes) bytesText += ` + ${formatBytes(u.skippedBytes)} already stored`;
  bytesText += ` of ${formatBytes(p.totalBytes)}`;
  if (p.bytesPerS !== null) bytesText += ` · ${formatBytes(p.bytesPerS)}/s` + (p.bytesEtaS !== null ? formatEta(p.bytesEtaS) : "");
  if (!u.hashingDone) bytesText += ` · checked ${u.hashed} of ${u.files}`;
  if (u.repeats) bytesText += ` · ${u.repeats} repeated in this drop`;
  if (u.retries) bytesText += ` · ${u.retries} retries`;
  $("#bytes-text").textContent = bytesText;

  const indexBar = $("#index-bar");
  indexBar.max = Math.max(p.totalImages, 1);
  indexBar.value = p.settledImages;
  let indexText = `${p.done} indexed`;
  if (u.skipped) indexText += ` + ${u.skipped} already stored`;
  indexText += ` of ${p.totalImages}`;
  if (p.failed) indexText += ` · failed ${p.failed}`;
  if (p.duplicates) indexText += ` · duplicates ${p.duplicates}`;
  if (p.imagesPerS !== null) indexText += ` · ${p.imagesPerS} img/s` + (p.imagesEtaS !== null ? formatEta(p.imagesEtaS) : "");
  $("#index-text").textContent = indexText;
  $("#upload-summary").textContent = summary(u);

  // Files the workers failed (undecodable, too many pixels...), listed as they come beside the refusals.
  const errors = (u.report && u.report.errors) || [];
  for (const e of errors.slice(serverErrors)) $("#upload-refused").append(el("li", { text: `${e.file}: ${e.reason}` }));
  serverErrors = Math.max(serverErrors, errors.length);

  const box = $("#upload-progress");
  box.dataset.state = u.state;
  box.dataset.requests = String(u.requests);
  box.dataset.sent = String(u.sentFiles);
  box.dataset.skipped = String(u.skipped);
  box.dataset.run = String(runs);
  box.dataset.job = u.job ? u.job.job_id : "";
  $("#upload-cancel").hidden = !u.active;
  $("#upload-head").textContent = `${uploadStateText(u.state)} · ${u.files} image(s), ${formatBytes(u.totalBytes)} → ${u.collection}` + (u.job ? ` · job ${u.job.job_id.slice(0, 8)}` : "");
}
