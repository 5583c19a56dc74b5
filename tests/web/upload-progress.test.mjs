// The upload engine's accounting for the progress bars: totals known from the walk, values that never go
// back, a repeat drop settled at once, and the windowed byte rate after the last byte.
import assert from "node:assert/strict";
import test, { afterEach } from "node:test";

import { Upload } from "../../search_api/web/upload.js";
import { entries, fakeServer, options } from "./fake-server.mjs";

const started = [];
afterEach(async () => { for (const upload of started.splice(0)) await upload.cancel(); });

/** Runs an upload and records its progress() at every change. */
function run(server, list, extra = {}) {
  const seen = [];
  const upload = new Upload({ ...options(server), entries: list, ...extra, onChange: (u) => seen.push(u.progress()) });
  started.push(upload);
  return { upload, seen, done: upload.start() };
}

function nonDecreasing(values) {
  return values.every((v, i) => i === 0 || v >= values[i - 1]);
}

test("both bars run against the whole drop from the first change, and never go back while hashing goes on", async () => {
  // Half the drop is already stored, spread through it: the old totals (files to send) grew as hashing went.
  const list = entries(40);
  const server = fakeServer({ stored: list.filter((_, i) => i % 2).map((e) => e.file.sha), limits: { max_hash_lookup: 8 } });
  const { seen, done } = run(server, list);
  assert.equal((await done).state, "completed");
  assert.ok(seen.length > 10);
  assert.ok(seen.every((p) => p.totalBytes === 40 * 500 && p.totalImages === 40));
  assert.ok(nonDecreasing(seen.map((p) => p.settledBytes)), "the bytes bar went back");
  assert.ok(nonDecreasing(seen.map((p) => p.settledImages)), "the images bar went back");
  const last = seen.at(-1);
  assert.deepEqual([last.settledBytes, last.settledImages, last.sent], [20_000, 40, 10_000]);
});

test("a repeat drop settles both bars at once: everything already stored, nothing sent", async () => {
  const list = entries(30);
  const server = fakeServer({ stored: list.map((e) => e.file.sha) });
  const { upload, seen, done } = run(server, list);
  assert.deepEqual(await done, { state: "nothing-to-send" });
  const last = seen.at(-1);
  assert.deepEqual([last.settledBytes, last.totalBytes, last.settledImages, last.totalImages], [15_000, 15_000, 30, 30]);
  assert.deepEqual([last.sent, upload.skipped, upload.skippedBytes], [0, 30, 15_000]);
});

test("the byte rate is the rate the bytes moved at, and stops falling after the last byte", async () => {
  let now = 1000;
  const server = fakeServer({
    limits: { parallel_requests: 1 },
    // Each request of four 500-byte files takes one second: 2000 B/s.
    sendFiles: async (batch, { onProgress }) => { now += 1000; onProgress(batch.length * 500); },
  });
  const { upload, done } = run(server, entries(12), { now: () => now });
  assert.equal((await done).state, "completed");
  const atEnd = upload.progress();
  assert.deepEqual([atEnd.sent, atEnd.bytesPerS], [6000, 2000]);
  now += 60_000; // a minute after the last byte: the average since the start would be 6000 / 63 s
  assert.equal(upload.progress().bytesPerS, 2000);
});
