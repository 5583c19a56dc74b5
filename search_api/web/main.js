// clipsearch web page: plain ES modules over the JSON API. No framework, no CDN. This module wires the
// parts together: api.js (the client), upload.js (the upload engine) and the views (header, collections,
// upload-view, results, classes).

import { onUnauthorized } from "./api.js";
import { setupClasses, addExample, refreshClassSets } from "./classes.js";
import { refreshCollections, selectCollection, setupCollections } from "./collections.js";
import { clearFacets, refreshFacets, setupFacets } from "./facets.js";
import { openKeyDialog, refreshHealth, setupKey } from "./header.js";
import { clearResults, refilter, runSearch, searched, setupSearch, showNewest } from "./results.js";
import { setupUpload } from "./upload-view.js";

const HEALTH_EVERY_MS = 15000;

// The collections again, then the newest images unless a search is shown, and the photo pickers' counts.
function refreshGrid() {
  return refreshCollections().then(() => { if (!searched()) showNewest(); refreshFacets(); });
}

function refreshAll() {
  refreshHealth();
  refreshGrid();
  refreshClassSets();
}

// The link that `clipsearch up --demo` prints (/?collection=demo&q=...) opens that collection and runs
// that search; returns whether it started one.
function applyUrlParams() {
  const params = new URLSearchParams(window.location.search);
  const collection = params.get("collection");
  if (collection) selectCollection(collection);
  const query = (params.get("q") || "").trim();
  if (!query) return false;
  document.querySelector("#query").value = query;
  runSearch({ kind: "text", query });
  return true;
}

onUnauthorized(() => openKeyDialog("This server needs an API key."));
setupKey(refreshAll);
setupCollections({
  onPicked: () => { clearResults(); clearFacets(); showNewest(); refreshFacets(); },
  onCreated: clearResults,
});
setupUpload(refreshGrid, refreshGrid); // the grid also grows while a job indexes
setupSearch({ onExample: addExample });
setupFacets({ onChange: refilter });
setupClasses({ onJobEnded: refreshCollections });
refreshHealth();
refreshCollections().then(() => { if (!applyUrlParams() && !searched()) showNewest(); refreshFacets(); });
refreshClassSets();
setInterval(refreshHealth, HEALTH_EVERY_MS);
// Let drops outside the zones do nothing rather than open the file in the tab.
window.addEventListener("dragover", (e) => e.preventDefault());
window.addEventListener("drop", (e) => e.preventDefault());
