// The photo pickers above the results: a date range (from and to month), a place (country or city) and a
// camera, each option with its count from GET /collections/<c>/facets; and the search mode (by picture,
// picture and name, name). The filters they mean come from facet-filters.js.

import { api } from "./api.js";
import { currentCollection } from "./collections.js";
import { $, el } from "./dom.js";
import { describePicked, facetFilters, optionText, pickerOptions } from "./facet-filters.js";

const PICKERS = { from: "#facet-from", to: "#facet-to", place: "#facet-place", camera: "#facet-camera" };
const picked = { from: "", to: "", place: "", camera: "" };
let asked = 0; // only the newest answer is shown

/** The search filters of the picked values ({} when none). */
export function pickedFilters() { return facetFilters(picked); }

/** The picked values in words, for the status line ("" when none). */
export function pickedText() { return describePicked(picked); }

/** vector | hybrid | keyword, as the search form's mode picker says. */
export function searchMode() { return $("#search-mode").value || "vector"; }

function options(list) {
  return list.map((o) => el("option", { value: o.value, text: optionText(o), "data-count": String(o.count) }));
}

// A picker's options (a blank first, groups as <optgroup>), keeping the picked value when it is offered.
function fill(select, blank, groups) {
  const children = [el("option", { value: "", text: blank })];
  for (const [label, list] of groups) {
    if (!list.length) continue;
    if (label) children.push(el("optgroup", { label }, ...options(list)));
    else children.push(...options(list));
  }
  select.replaceChildren(...children);
  const key = Object.keys(PICKERS).find((k) => $(PICKERS[k]) === select);
  const offered = [...select.options].some((o) => o.value === picked[key]);
  if (!offered) picked[key] = "";
  select.value = picked[key];
}

/** The current collection's facets into the pickers; the pickers hide when the collection has none. */
export async function refreshFacets() {
  const mine = ++asked;
  const collection = currentCollection();
  let data = null;
  if (collection) {
    try {
      data = await api(`/collections/${encodeURIComponent(collection)}/facets`);
    } catch (_) {
      data = null; // an older server, or the collection just went: no pickers
    }
  }
  if (mine !== asked) return;
  const found = pickerOptions(data || {});
  fill($(PICKERS.from), "from any month", [["", found.months]]);
  fill($(PICKERS.to), "to any month", [["", found.months]]);
  fill($(PICKERS.place), "any place", [["Countries", found.countries], ["Cities", found.cities]]);
  fill($(PICKERS.camera), "any camera", [["", found.cameras]]);
  $("#facets").hidden = !(found.months.length || found.countries.length || found.cameras.length);
  $("#facet-clear").hidden = !Object.values(picked).some(Boolean);
}

/** Forget the picked values (another collection). */
export function clearFacets() {
  for (const [key, css] of Object.entries(PICKERS)) { picked[key] = ""; $(css).value = ""; }
  $("#facet-clear").hidden = true;
}

/** Wires the pickers; `onChange()` runs when a picked value changes (the search runs again). */
export function setupFacets({ onChange }) {
  for (const [key, css] of Object.entries(PICKERS)) {
    $(css).addEventListener("change", (e) => {
      picked[key] = e.target.value;
      $("#facet-clear").hidden = !Object.values(picked).some(Boolean);
      onChange();
    });
  }
  $("#facet-clear").addEventListener("click", () => { clearFacets(); onChange(); });
  $("#search-mode").addEventListener("change", () => { $("#min-score").disabled = searchMode() !== "vector"; });
}
