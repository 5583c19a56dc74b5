// The collections panel: the selected collection (kept in localStorage), the list with counts, creation.

import { api } from "./api.js";
import { $, el, setStatus } from "./dom.js";

const COLLECTION_STORE = "clipsearch.collection";

export function currentCollection() { return $("#collection").value; }

/** Selects `name` if the list holds it; returns whether it did. */
export function selectCollection(name) {
  if (![...$("#collection").options].some((o) => o.value === name)) return false;
  $("#collection").value = name;
  localStorage.setItem(COLLECTION_STORE, name);
  return true;
}

let asked = 0; // only the newest answer is shown: an older, slower one may lack a new collection

export async function refreshCollections() {
  const mine = ++asked;
  let data;
  try {
    data = await api("/collections");
  } catch (err) {
    if (mine === asked) setStatus("collections: " + err.message, true);
    return;
  }
  if (mine !== asked) return;
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

/** Wires the select and the create form: `onPicked` runs when another is picked, `onCreated` after one is made. */
export function setupCollections({ onPicked, onCreated }) {
  $("#collection").addEventListener("change", () => {
    localStorage.setItem(COLLECTION_STORE, currentCollection());
    onPicked();
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
      onCreated();
      setStatus(`Created ${created.name}.`);
    } catch (err) {
      setStatus("create: " + err.message, true);
    }
  });
}
