// The photo facets' pickers and the filters they mean (search_api/web/facet-filters.js).
import assert from "node:assert/strict";
import test from "node:test";

import {
  describePicked, facetFilters, monthLabel, nextMonth, optionText, pickerOptions,
} from "../../search_api/web/facet-filters.js";

const FACETS = {
  collection: "c", total: 7, years: { 2019: 2, 2021: 1 },
  months: { "2021-12": 1, "2019-07": 1, "2019-06": 1 },
  cameras: { "Canon EOS R5": 3, "NIKON Z 6": 1 },
  lenses: {}, countries: { France: 2, Japan: 1 }, regions: {}, cities: { Paris: 1, Tokyo: 1 },
};

test("months in order, others most common first, each with its count", () => {
  const options = pickerOptions(FACETS);
  assert.deepEqual(options.months.map((o) => o.value), ["2019-06", "2019-07", "2021-12"]);
  assert.equal(optionText(options.months[0]), "Jun 2019 · 1");
  assert.deepEqual(options.countries[0], { value: "country:France", label: "France", count: 2 });
  assert.deepEqual(options.cities.map((o) => o.value), ["city:Paris", "city:Tokyo"]);
  assert.equal(optionText(options.cameras[0]), "Canon EOS R5 · 3");
  assert.deepEqual(pickerOptions({}), { months: [], countries: [], cities: [], cameras: [] });
});

test("a month range covers whole months, in either order", () => {
  assert.deepEqual(facetFilters({ from: "2019-06", to: "2019-07" }), {
    taken_after: "2019-06-01T00:00:00Z", taken_before: "2019-08-01T00:00:00Z",
  });
  assert.deepEqual(facetFilters({ from: "2019-12", to: "2019-06" }), {
    taken_after: "2019-06-01T00:00:00Z", taken_before: "2020-01-01T00:00:00Z",
  });
  assert.deepEqual(facetFilters({ to: "2019-12" }), { taken_before: "2020-01-01T00:00:00Z" });
  assert.equal(nextMonth("2019-12"), "2020-01");
  assert.equal(nextMonth("2019-09"), "2019-10");
  assert.equal(monthLabel("2021-12"), "Dec 2021");
});

test("a place is a country or a city; a camera is itself; nothing picked, no filter", () => {
  assert.deepEqual(facetFilters({ place: "country:France", camera: "NIKON Z 6" }), { country: "France", camera: "NIKON Z 6" });
  assert.deepEqual(facetFilters({ place: "city:New York City" }), { city: "New York City" });
  assert.deepEqual(facetFilters({}), {});
  assert.equal(describePicked({ from: "2019-06", place: "city:Paris" }), "Jun 2019 – … · Paris");
  assert.equal(describePicked({}), "");
});
