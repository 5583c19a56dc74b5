// The upload engine's packing: which files are hashed together, and which go in one request.
import assert from "node:assert/strict";
import test from "node:test";

import { holdsFullRequest, isImage, nextHashBatch, partBytes, requestBudget, takeRequest } from "../../search_api/web/upload.js";
import { LIMITS, entries } from "./fake-server.mjs";

const paths = (batch) => batch.map((e) => e.path);

test("a request takes at most max_files_per_request files, in order, and leaves the rest queued", () => {
  const queue = entries(10, { size: 10 });
  const batch = takeRequest(queue, LIMITS);
  assert.deepEqual(paths(batch), ["img/0.jpg", "img/1.jpg", "img/2.jpg", "img/3.jpg"]);
  assert.equal(queue.length, 6);
  assert.equal(queue[0].path, "img/4.jpg");
});

test("a request's parts stay within max_request_bytes less the framing", () => {
  const queue = entries(4, { size: 1500 });
  const budget = requestBudget(LIMITS);
  assert.equal(budget, 4096 - 1024);
  const batch = takeRequest(queue, LIMITS);
  assert.equal(batch.length, 1); // two parts of 1500 bytes and their headers pass 3072
  assert.ok(batch.reduce((n, e) => n + partBytes(e), 0) <= budget);
  const drained = [];
  while (queue.length) drained.push(takeRequest(queue, LIMITS).length);
  assert.deepEqual(drained, [1, 1, 1]);
});

test("a part counts its name, percent-encoded, beside its bytes", () => {
  const ascii = { file: { size: 100 }, path: "a.jpg" };
  const wide = { file: { size: 100 }, path: "ä.jpg" }; // two bytes in UTF-8
  assert.equal(partBytes(ascii), 100 + 200 + 3 * 5);
  assert.equal(partBytes(wide) - partBytes(ascii), 3);
});

test("a hash batch holds at most max_hash_lookup files and about batchBytes, never none", () => {
  const list = entries(7, { size: 100 });
  const first = nextHashBatch(list, 0, { ...LIMITS, max_hash_lookup: 3 });
  assert.deepEqual([first.batch.length, first.next], [3, 3]);
  const bySize = nextHashBatch(list, 3, LIMITS, 250);
  assert.deepEqual(paths(bySize.batch), ["img/3.jpg", "img/4.jpg", "img/5.jpg"]); // stops once 250 is reached
  const one = nextHashBatch(list, 6, LIMITS, 10); // larger than the batch bytes alone: still taken
  assert.deepEqual([one.batch.length, one.next], [1, 7]);
});

test("a file that no request could carry is set aside, not hashed", () => {
  const list = [...entries(1, { size: 100 }), ...entries(1, { size: 5000, prefix: "big" }), ...entries(1, { size: 100, prefix: "z" })];
  const { batch, tooLarge, next } = nextHashBatch(list, 0, LIMITS);
  assert.deepEqual(paths(batch), ["img/0.jpg", "z/0.jpg"]);
  assert.deepEqual(paths(tooLarge), ["big/0.jpg"]);
  assert.equal(next, 3);
});

test("a sender waits for a full request: max files, or half the request bytes", () => {
  assert.equal(holdsFullRequest(entries(3, { size: 10 }), LIMITS), false);
  assert.equal(holdsFullRequest(entries(4, { size: 10 }), LIMITS), true);
  assert.equal(holdsFullRequest(entries(1, { size: 2048 }), LIMITS), true);
});

test("images are told by type or, without one, by name", () => {
  assert.ok(isImage({ type: "image/png" }, "x.bin"));
  assert.ok(isImage({ type: "" }, "raw/IMG_1.CR3"));
  assert.ok(isImage({ type: "application/octet-stream" }, "a.heic"));
  assert.ok(!isImage({ type: "text/plain" }, "notes.txt"));
});
