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

async function refreshCollections() {
  let data;
  try {
    data = await api("/collections");
  } catch (err) {
    setStatus("collections: " + err.message, true);
    return;
  }
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
      setStatus(`Created ${created.name}.`);
    } catch (err) {
      setStatus("create: " + err.message, true);
    }
  });
}

// -- upload and job progress --------------------------------------------------------------------------
let chosenFiles = [];

function choose(files) {
  // HEIC, AVIF, JPEG XL and camera RAW files often come with no type, or application/octet-stream.
  const imageName = /\.(heic|heif|avif|jxl|dng|cr2|cr3|nef|arw|raf|orf)$/i;
  chosenFiles = Array.from(files).filter((f) => f.type.startsWith("image/") || !f.type || imageName.test(f.name));
  $("#upload-chosen").textContent = chosenFiles.length ? `${chosenFiles.length} file(s) ready` : "";
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
  setupDrop($("#upload-drop"), choose);
  $("#upload-files").addEventListener("change", (e) => choose(e.target.files));
  $("#upload-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const collection = currentCollection();
    if (!collection) return setStatus("Pick or create a collection first.", true);
    if (!chosenFiles.length) return setStatus("Choose or drop some images first.", true);
    const form = new FormData();
    for (const file of chosenFiles) form.append("files", file, file.name);
    const tags = $("#upload-tags").value.trim();
    if (tags) form.append("tags", tags);
    try {
      const job = await api(`/collections/${encodeURIComponent(collection)}/images`, { method: "POST", form });
      chosenFiles = [];
      $("#upload-chosen").textContent = "";
      $("#upload-files").value = "";
      trackJob(job);
    } catch (err) {
      const rejected = (err.details && err.details.rejected) || [];
      setStatus("upload: " + err.message + rejected.map((r) => ` · ${r.file}: ${r.reason}`).join(""), true);
    }
  });
}

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

// -- search -------------------------------------------------------------------------------------------
function searchOptions() {
  const options = { collection: currentCollection(), limit: 48 };
  const minScore = $("#min-score").value;
  if (minScore !== "") options.min_score = Number(minScore);
  const filters = {};
  if (state.filters.labels.size) filters.labels = [...state.filters.labels];
  if (state.filters.tags.size) filters.tags = [...state.filters.tags];
  if (Object.keys(filters).length) options.filters = filters;
  return options;
}

async function runSearch(search) {
  const collection = currentCollection();
  if (!collection) return setStatus("Pick or create a collection first.", true);
  state.last = search;
  const options = searchOptions();
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

function clearResults() {
  $("#results").replaceChildren();
  $("#filters").replaceChildren();
  state.filters.labels.clear();
  state.filters.tags.clear();
  state.last = null;
}

function describe(search) {
  if (search.kind === "text") return `“${search.query}”`;
  if (search.kind === "image") return `image ${search.file.name || ""}`.trim();
  return `images similar to ${search.filename || search.imageId}`;
}

function renderResults(data, search) {
  const grid = $("#results");
  grid.replaceChildren();
  const took = data.took_ms !== undefined ? ` in ${Math.round(data.took_ms)} ms` : "";
  setStatus(`${data.results.length} result(s) for ${describe(search)}${took}`);
  for (const hit of data.results) {
    const img = el("img", { alt: hit.filename, loading: "lazy" });
    loadThumb(img, hit.id, hit.thumbnail_url || `/images/${hit.id}/thumbnail`);
    const chips = el("div", { class: "chips small" });
    for (const label of hit.labels || []) chips.append(el("span", { class: "chip label", text: label }));
    for (const tag of hit.tags || []) chips.append(el("span", { class: "chip tag", text: "#" + tag }));
    const card = el("figure", {
      class: "card",
      tabindex: "0",
      title: "click for similar images",
      "data-id": hit.id,
      "data-filename": hit.filename,
      "data-score": String(hit.score),
      onclick: () => runSearch({ kind: "similar", imageId: hit.id, filename: hit.filename }),
      onkeydown: (e) => { if (e.key === "Enter") runSearch({ kind: "similar", imageId: hit.id, filename: hit.filename }); },
    }, img, el("figcaption", {},
      el("span", { class: "score", text: hit.score.toFixed(3) }),
      el("span", { class: "filename", text: hit.filename })), chips);
    grid.append(card);
  }
  renderFilters(data.results);
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

function setupSearch() {
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = $("#query").value.trim();
    if (query) runSearch({ kind: "text", query });
  });
  const byImage = (files) => { if (files.length) runSearch({ kind: "image", file: files[0] }); };
  setupDrop($("#search-drop"), byImage);
  $("#search-file").addEventListener("change", (e) => byImage(e.target.files));
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
function refreshAll() {
  refreshHealth();
  refreshCollections();
  refreshClassSets();
}

document.addEventListener("DOMContentLoaded", () => {
  setupKey();
  setupCollections();
  setupUpload();
  setupSearch();
  setupClassify();
  refreshAll();
  setInterval(refreshHealth, 15000);
  // Let drops outside the zones do nothing rather than open the file in the tab.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
});
