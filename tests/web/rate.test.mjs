// The windowed rate behind the upload's bytes per second (search_api/web/rate.js).
import assert from "node:assert/strict";
import test from "node:test";

import { RateWindow } from "../../search_api/web/rate.js";

test("no rate until two points in time", () => {
  const rate = new RateWindow(5000);
  assert.equal(rate.rate(0), null);
  rate.add(0, 0);
  assert.equal(rate.rate(0), null);
  assert.equal(rate.rate(2000), 0); // nothing moved in two seconds
});

test("the rate follows the recent window, not the average since the start", () => {
  const rate = new RateWindow(5000);
  for (let s = 0; s <= 10; s++) rate.add(s * 1000, s * 1000_000); // 1 MB/s for ten seconds
  for (let s = 11; s <= 20; s++) rate.add(s * 1000, 10_000_000 + (s - 10) * 100_000); // then 100 KB/s
  assert.equal(rate.rate(20_000), 100_000); // the average since the start would be 550 KB/s
});

test("a stall brings the rate down while bytes are still due", () => {
  const rate = new RateWindow(5000);
  for (let s = 0; s <= 5; s++) rate.add(s * 1000, s * 1000);
  assert.equal(rate.rate(5000), 1000);
  assert.equal(rate.rate(10_000, true), 0); // five seconds without a byte, and more to send
});

test("once nothing is left to move, the rate is the one the bytes moved at, however long after", () => {
  const rate = new RateWindow(5000);
  for (let s = 0; s <= 4; s++) rate.add(s * 1000, s * 25_000_000); // 25 MB/s, then the last byte
  const atEnd = rate.rate(4000, false);
  assert.equal(atEnd, 25_000_000);
  assert.equal(rate.rate(60_000, false), atEnd);
  assert.equal(rate.rate(600_000, false), atEnd);
});
