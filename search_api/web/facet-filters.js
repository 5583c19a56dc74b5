// The photo facets as pickers and filters, without the DOM: the options a picker offers (each with its
// count) from GET /collections/<c>/facets, and the search filters that the picked values mean.

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** "2019-06" -> "Jun 2019". */
export function monthLabel(month) {
  const [year, number] = month.split("-");
  return `${MONTHS[Number(number) - 1] || number} ${year}`;
}

/** The month after "2019-12": "2020-01". */
export function nextMonth(month) {
  const [year, number] = month.split("-").map(Number);
  return number === 12 ? `${year + 1}-01` : `${year}-${String(number + 1).padStart(2, "0")}`;
}

/** Picker options {value, label, count} of each facet: months in order, the others most common first. */
export function pickerOptions(facets) {
  const counted = (entries, prefix = "") =>
    entries.map(([name, count]) => ({ value: prefix + name, label: name, count }));
  const months = Object.entries(facets.months || {}).sort(([a], [b]) => a.localeCompare(b));
  return {
    months: months.map(([month, count]) => ({ value: month, label: monthLabel(month), count })),
    countries: counted(Object.entries(facets.countries || {}), "country:"),
    cities: counted(Object.entries(facets.cities || {}), "city:"),
    cameras: counted(Object.entries(facets.cameras || {})),
  };
}

/** An option's text: "Paris · 12". */
export function optionText(option) { return `${option.label} · ${option.count}`; }

/**
 * The search filters of the picked values: {from, to} months (either may be ""), a place ("country:X" or
 * "city:Y"), a camera. From the first day of `from` to the end of `to` (UTC; photos without an offset
 * compare their wall-clock time).
 */
export function facetFilters({ from = "", to = "", place = "", camera = "" } = {}) {
  const filters = {};
  if (from && to && from > to) [from, to] = [to, from];
  if (from) filters.taken_after = `${from}-01T00:00:00Z`;
  if (to) filters.taken_before = `${nextMonth(to)}-01T00:00:00Z`;
  if (place.startsWith("country:")) filters.country = place.slice(8);
  else if (place.startsWith("city:")) filters.city = place.slice(5);
  if (camera) filters.camera = camera;
  return filters;
}

/** A short account of the picked values for the status line: "Jun 2019 – Jul 2019 · Paris". */
export function describePicked({ from = "", to = "", place = "", camera = "" } = {}) {
  const parts = [];
  if (from || to) parts.push(`${from ? monthLabel(from) : "…"} – ${to ? monthLabel(to) : "…"}`);
  if (place) parts.push(place.slice(place.indexOf(":") + 1));
  if (camera) parts.push(camera);
  return parts.join(" · ");
}
