// Search and its results: text, a dropped image and "similar" searches, the newest images before any
// search, the cards, filter chips, paging, and the image view.

import { api, fetchBlob } from "./api.js";
import { currentCollection } from "./collections.js";
import { $, el, setStatus, setupDrop } from "./dom.js";
import { pickedFilters, pickedText, searchMode } from "./facets.js";
import { formatBytes, splitName } from "./format.js";
import { ObjectUrls, ThumbSlot } from "./thumbnails.js";

const PAGE = 48;

const state = {
  last: null, // {kind: "text"|"image"|"similar", query, file, imageId}
  view: null, // {kind: "newest"|"search", offset, more}
  filters: { labels: new Set(), tags: new Set() },
};
const hooks = { example: () => {} };

const objectUrls = new ObjectUrls(fetchBlob);
const gridThumbs = new ThumbSlot(objectUrls); // the cards in #results
const viewThumbs = new ThumbSlot(objectUrls); // the original and the similar cards in the image view

/** Whether a search is what the grid shows (rather than the newest images). */
export function searched() { return state.last !== null; }

function searchOptions(offset = 0, mode = "vector") {
  const options = { collection: currentCollection(), limit: PAGE, offset };
  const minScore = $("#min-score").value;
  if (minScore !== "" && mode === "vector") options.min_score = Number(minScore); // a cosine cut-off
  const filters = pickedFilters();
  if (state.filters.labels.size) filters.labels = [...state.filters.labels];
  if (state.filters.tags.size) filters.tags = [...state.filters.tags];
  if (Object.keys(filters).length) options.filters = filters;
  return options;
}

export async function runSearch(search, offset = 0) {
  const collection = currentCollection();
  if (!collection) return setStatus("Pick or create a collection first.", true);
  state.last = search;
  const mode = search.kind === "text" ? searchMode() : "vector";
  const options = searchOptions(offset, mode);
  setStatus("Searching…");
  try {
    let data;
    if (search.kind === "text") {
      const body = { ...options, query: search.query };
      if (mode !== "vector") body.mode = mode;
      data = await api("/search/text", { method: "POST", json: body });
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

/** What the page shows before any search: the collection's newest images, or, with photo pickers set,
 * the images that match them, latest taken first. */
export async function showNewest(offset = 0) {
  const collection = currentCollection();
  if (!collection) return;
  const filters = pickedFilters();
  const picked = Object.keys(filters).length > 0;
  const path = `/collections/${encodeURIComponent(collection)}/images`;
  try {
    const data = picked
      ? await api(`${path}/filter`, { method: "POST", json: { filters, sort_by: "-taken_at", limit: PAGE, offset } })
      : await api(`${path}?limit=${PAGE}&offset=${offset}`);
    state.last = null;
    state.view = { kind: "newest", offset, more: offset + data.images.length < data.total };
    renderCards(data.images, false);
    $("#filters").replaceChildren();
    const shown = data.images.length ? `${offset + 1}–${offset + data.images.length} of ${data.total}` : "none";
    setStatus(picked ? `Images in ${collection} · ${pickedText()}: ${shown}` : `Newest images in ${collection}: ${shown === "none" ? "none yet" : shown}`);
    renderPager();
  } catch (err) {
    setStatus("images: " + err.message, true);
  }
}

export function clearResults() {
  shownCards = "";
  $("#results").replaceChildren();
  gridThumbs.clear();
  $("#filters").replaceChildren();
  state.filters.labels.clear();
  state.filters.tags.clear();
  state.last = null;
  state.view = null;
  renderPager();
}

/** Run the shown search again with the picked photo filters; before any search, one for the query box's
 * text, or, when it is empty, the images that the pickers match (no query: latest taken first). */
export function refilter() {
  if (state.last) return runSearch(state.last);
  const query = $("#query").value.trim();
  return query ? runSearch({ kind: "text", query }) : showNewest();
}

function describe(search) {
  const picked = pickedText();
  const text = describeSearch(search);
  return picked ? `${text} · ${picked}` : text;
}

function describeSearch(search) {
  if (search.kind === "text") return `“${search.query}”`;
  if (search.kind === "image") return `image ${search.file.name || ""}`.trim();
  return `images similar to ${search.filename || search.imageId}`;
}

/** The name with its end kept: the folder prefix shrinks (an ellipsis), the base name shows. */
function fileName(name) {
  const [head, tail] = splitName(name);
  return el("span", { class: "filename", title: name },
    el("span", { class: "head", text: head }), el("span", { class: "tail", text: tail }));
}

function card(hit, withScore, slot) {
  const img = el("img", { alt: hit.filename, loading: "lazy" });
  slot.load(img, hit.id, hit.thumbnail_url || `/images/${hit.id}/thumbnail`);
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
    fileName(hit.filename)), chips);
}

let shownCards = ""; // what the grid shows now: the same answer again (a refresh while a job runs) keeps its cards

function renderCards(hits, withScore) {
  const key = JSON.stringify([withScore, hits]);
  if (key === shownCards && $("#results").childElementCount === hits.length) return;
  shownCards = key;
  gridThumbs.swap(() => $("#results").replaceChildren(...hits.map((hit) => card(hit, withScore, gridThumbs))));
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

// What the photo says about itself (EXIF) and where it was taken.
function photoRows(record) {
  const rows = [];
  if (record.taken_at) {
    // the wall-clock time where it was taken: shifted by the photo's own offset, or kept as the camera said
    const [sign, hours, minutes] = (record.taken_at_offset.match(/^([+-])(\d\d):(\d\d)$/) || []).slice(1);
    const shift = sign ? (sign === "-" ? -1 : 1) * (Number(hours) * 60 + Number(minutes)) * 60000 : 0;
    const wall = new Date(Date.parse(record.taken_at) + shift).toISOString().slice(0, 19).replace("T", " ");
    const zone = sign ? ` (UTC${record.taken_at_offset})` : record.taken_at_local ? " (camera's local time)" : " (UTC)";
    const when = wall + zone;
    rows.push(["taken", when + (record.taken_at_source === "mtime" ? " · file time" : "")]);
  }
  const exposure = record.exposure_s ? (record.exposure_s < 1 ? `1/${Math.round(1 / record.exposure_s)} s` : `${record.exposure_s} s`) : "";
  const settings = [record.focal_length_mm ? `${record.focal_length_mm} mm` : "", exposure, record.iso ? `ISO ${record.iso}` : ""];
  rows.push(["camera", [record.camera, record.lens].filter(Boolean).join(" · ")], ["exposure", settings.filter(Boolean).join(" · ")]);
  rows.push(["place", [record.city, record.region, record.country].filter(Boolean).join(", ")]);
  if (record.location) rows.push(["GPS", `${record.location.latitude.toFixed(5)}, ${record.location.longitude.toFixed(5)}`]);
  return rows;
}

let opened = 0; // the newest image view asked for: an older, slower answer is not shown

// The image view: the original, its stored details and labels, and its nearest images.
async function openImage(id) {
  const mine = ++opened;
  const dialog = $("#image-view");
  const body = $("#image-body");
  body.replaceChildren(el("p", { class: "hint", text: "loading…" }));
  viewThumbs.clear();
  if (!dialog.open) dialog.showModal();
  let record;
  try {
    record = await api(`/images/${id}`);
  } catch (err) {
    if (mine === opened) body.replaceChildren(el("p", { class: "error", text: err.message }));
    return;
  }
  if (mine !== opened) return;
  dialog.dataset.id = id;
  const original = el("img", { class: "original", alt: record.filename });
  viewThumbs.load(original, "file:" + id, record.file_url || `/images/${id}/file`);
  const rows = [
    ["file", record.filename], ["size", `${record.width} × ${record.height} · ${record.format} · ${formatBytes(record.bytes || 0)}`],
    ["added", new Date(record.ingested_at).toLocaleString()], ["source", record.source],
    ["sha256", record.sha256], ["tags", (record.tags || []).join(", ")],
    ...photoRows(record),
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
    if (name) hooks.example(name, id, record.filename);
    e.target.reset();
  } }, el("input", { name: "klass", placeholder: "class name", "aria-label": "class name" }),
  el("button", { type: "submit", class: "secondary-ok", text: "Use as a class example" }));
  body.replaceChildren(el("div", { class: "image-top" }, original, el("div", {}, el("h3", { text: record.filename }), table,
    el("h4", { text: "Labels" }), labels, more, example)), el("h4", { text: "Similar images" }), similar);
  try {
    const data = await api("/search/image", { method: "POST", json: { collection: record.collection, image_id: id, limit: 13 } });
    if (mine !== opened) return;
    const others = data.results.filter((hit) => hit.id !== id).slice(0, 12);
    similar.replaceChildren(...others.map((hit) => card(hit, true, viewThumbs)));
  } catch (err) {
    if (mine === opened) similar.replaceChildren(el("p", { class: "error", text: "similar: " + err.message }));
  }
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

/** Wires the search form, the image drop, paging and the image view; `onExample(class, id, filename)`
 * runs when the image view's "Use as a class example" is pressed. */
export function setupSearch({ onExample }) {
  hooks.example = onExample;
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
  // Its images are let go once it is closed (the event comes as a task: the view may be open again).
  $("#image-view").addEventListener("close", (e) => { if (!e.target.open) viewThumbs.clear(); });
}
