// The upload engine end to end against an in-memory server: one job, resume (already stored content is
// not sent), parallel senders, cancel, progress accounting and the one registry of requests in flight.
import assert from "node:assert/strict";
import test, { afterEach } from "node:test";

import { ApiError } from "../../search_api/web/api.js";
import { InFlight, Upload, closeLeftover } from "../../search_api/web/upload.js";
import { entries, fakeServer, memoryStore, options, turn, until } from "./fake-server.mjs";

const started = [];

// A test that fails mid-way leaves its upload polling: cancel it, so that the run ends.
afterEach(async () => {
  for (const upload of started.splice(0)) await upload.cancel();
});

function run(server, list, extra = {}) {
  const states = [];
  const upload = new Upload({
    ...options(server), entries: list, ...extra,
    onChange: (u) => { if (states.at(-1) !== u.state) states.push(u.state); },
  });
  started.push(upload);
  return { upload, states, done: upload.start() };
}

test("every file is sent once, in requests within the limits, to one job that is closed and completes", async () => {
  const server = fakeServer();
  const list = entries(10);
  const { upload, states, done } = run(server, list);
  const outcome = await done;
  assert.equal(outcome.state, "completed");
  assert.equal(outcome.report.done, 10);
  assert.deepEqual(states, ["hashing", "uploading", "indexing", "completed"]);
  assert.equal(server.jobs.size, 1);
  assert.deepEqual(server.jobs.get("job-1").tags, ["t"]);
  assert.deepEqual([...server.jobs.get("job-1").files].sort(), list.map((e) => e.path).sort());
  assert.ok(server.requests.every((r) => r.files.length <= server.limits.max_files_per_request));
  assert.ok(server.requests.every((r) => r.files.length * (500 + 200 + 3 * 9) <= 4096 - 1024));
  assert.deepEqual(server.closed, ["job-1"]);
  assert.equal(upload.requests, server.requests.length);
  assert.deepEqual([upload.toSend, upload.sentFiles, upload.sentBytes], [10, 10, 5000]);
  assert.equal(upload.inFlight.size, 0);
});

test("files whose bytes are already stored are not sent, and the same bytes twice are sent once", async () => {
  const server = fakeServer({ stored: ["sha-img-0", "sha-img-1", "sha-img-2"] });
  const list = [...entries(6), ...entries(2, { prefix: "copy", sha: (i) => `sha-img-${4 + i}` })];
  const { upload, done } = run(server, list);
  assert.equal((await done).state, "completed");
  assert.deepEqual([upload.skipped, upload.skippedBytes, upload.repeats], [3, 1500, 2]);
  assert.deepEqual([...server.jobs.get("job-1").files].sort(), ["img/3.jpg", "img/4.jpg", "img/5.jpg"]);
  assert.deepEqual(server.knownAsked, [list.map((e) => e.file.sha).filter((h, i, all) => all.indexOf(h) === i)]);
});

test("when everything is stored, nothing is sent and no job is opened", async () => {
  const list = entries(5);
  const server = fakeServer({ stored: list.map((e) => e.file.sha) });
  const { upload, done } = run(server, list);
  assert.deepEqual(await done, { state: "nothing-to-send" });
  assert.equal(upload.skipped, 5);
  assert.deepEqual([server.jobs.size, server.attempts], [0, 0]);
});

test("the open job is kept for a reload to close, and forgotten once closed", async () => {
  const server = fakeServer();
  const store = memoryStore();
  const { done } = run(server, entries(3), { store });
  await done;
  assert.deepEqual(store.history, ["job-1"]);
  assert.equal(store.get(), null);

  // A reload finds a job id left behind: it is closed (its files get indexed) and forgotten.
  server.jobs.set("job-left", { state: "open", files: ["a.jpg"] });
  store.set("job-left");
  await closeLeftover(server.client, store);
  assert.equal(server.jobs.get("job-left").state, "closed");
  assert.equal(store.get(), null);
});

test("without a hash (no secure context) every file is sent and nothing is asked", async () => {
  const server = fakeServer({ stored: ["sha-img-0"] });
  const { upload, done } = run(server, entries(5), { hash: null });
  assert.equal((await done).state, "completed");
  assert.deepEqual([upload.hashed, upload.sentFiles, server.knownAsked.length], [5, 5, 0]);
});

test("unreadable and too-large files are refused with their reason; the others are sent", async () => {
  const server = fakeServer();
  const list = entries(4);
  list[1].file.unreadable = true;
  list[2].file.size = 10_000;
  const refused = [];
  const { upload, done } = run(server, list, { onRefused: (file, reason) => refused.push(`${file}: ${reason}`) });
  assert.equal((await done).state, "completed");
  assert.deepEqual(refused, [
    "img/2.jpg: 9.8 KB: larger than the server takes in one request (4.0 KB)",
    "img/1.jpg: cannot read: permission denied",
  ]);
  assert.equal(upload.refused, 2);
  assert.deepEqual([...server.jobs.get("job-1").files].sort(), ["img/0.jpg", "img/3.jpg"]);
});

test("parallel_requests senders run at once, never more", async () => {
  for (const parallel of [1, 3]) {
    let release;
    const gate = new Promise((resolve) => { release = resolve; });
    const server = fakeServer({ limits: { parallel_requests: parallel }, sendFiles: () => gate });
    const { done } = run(server, entries(24));
    await until(() => server.inFlight === parallel, `${parallel} requests in flight`);
    for (let i = 0; i < 20; i++) await turn(); // room for a sender too many to start
    assert.equal(server.maxInFlight, parallel);
    release();
    assert.equal((await done).state, "completed");
    assert.equal(server.maxInFlight, parallel);
    assert.equal(server.jobs.get("job-1").files.length, 24);
  }
});

test("bytes in flight count as sent while their request runs", async () => {
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  const server = fakeServer({
    limits: { parallel_requests: 1 },
    sendFiles: async (batch, { onProgress }) => { onProgress(700); await gate; },
  });
  let now = 1000;
  const { upload, done } = run(server, entries(8), { now: () => now });
  await until(() => upload.inFlight.loadedBytes() === 700, "the first request's progress");
  now = 3000; // two seconds after the job opened
  const during = upload.progress();
  assert.equal(during.sent, 700);
  assert.equal(during.toSendBytes, 4000);
  assert.equal(during.bytesPerS, 350);
  assert.equal(during.bytesEtaS, (4000 - 700) / 350);
  release();
  await done;
  const after = upload.progress();
  assert.deepEqual([after.sent, after.total, after.processed, after.done, after.bytesEtaS], [4000, 8, 8, 8, null]);
});

test("cancel aborts every request in flight, deletes the job and sends nothing more", async () => {
  const server = fakeServer({
    limits: { parallel_requests: 2 },
    sendFiles: (batch, { signal }) => new Promise((resolve, reject) => { // answers only an abort
      const abort = () => reject(new DOMException("cancelled", "AbortError"));
      if (signal.aborted) abort(); else signal.addEventListener("abort", abort);
    }),
  });
  const store = memoryStore();
  const { upload, done } = run(server, entries(40), { store });
  await until(() => server.inFlight === 2, "two requests in flight");
  const attempts = server.attempts;
  await upload.cancel();
  assert.deepEqual(await done, { state: "cancelled" });
  assert.ok(server.signals.every((s) => s.aborted));
  assert.deepEqual(server.cancelled, ["job-1"]);
  assert.equal(store.get(), null);
  assert.equal(upload.inFlight.size, 0);
  assert.equal(server.attempts, attempts);
  assert.equal(upload.active, false);
  await upload.cancel(); // a second press does nothing
  assert.deepEqual(server.cancelled, ["job-1"]);
});

test("a job ended elsewhere (409) stops the upload as cancelled", async () => {
  const server = fakeServer({
    limits: { parallel_requests: 1 },
    sendFiles: async () => { throw new ApiError(409, { error: { message: "job is cancelled" } }); },
  });
  const { upload, done } = run(server, entries(12));
  const outcome = await done;
  assert.equal(outcome.state, "cancelled");
  assert.equal(outcome.error.message, "job is cancelled");
  assert.equal(server.attempts, 1);
  assert.equal(upload.cancelled, true);
});

test("a failure outside the files requests fails the upload and closes its job", async () => {
  const server = fakeServer();
  server.client.known = async () => { throw new Error("known: 400 bad hash"); };
  const { done } = run(server, entries(3));
  const outcome = await done;
  assert.equal(outcome.state, "failed");
  assert.match(outcome.error.message, /bad hash/);
  assert.equal(server.jobs.size, 0);
});

test("the registry aborts what it holds, except a request kept to its end", async () => {
  const inFlight = new InFlight();
  const signals = {};
  const pending = (name) => inFlight.run((signal, progress) => new Promise((resolve, reject) => {
    signals[name] = signal;
    progress(name === "a" ? 10 : 5);
    signal.addEventListener("abort", () => reject(new Error(`${name} aborted`)));
    setImmediate(() => { if (!signal.aborted) resolve(name); });
  }), { keep: name === "kept" });
  const a = pending("a");
  const kept = pending("kept");
  assert.equal(inFlight.size, 2);
  assert.equal(inFlight.loadedBytes(), 15);
  inFlight.abortAll();
  await assert.rejects(a, /a aborted/);
  assert.equal(await kept, "kept");
  assert.equal(signals.kept.aborted, false);
  assert.deepEqual([inFlight.size, inFlight.loadedBytes()], [0, 0]);
});

test("the engine touches no DOM: no document, window, storage or XMLHttpRequest", async () => {
  const { readFile } = await import("node:fs/promises");
  for (const module of ["upload.js", "rate.js"]) {
    const source = await readFile(new URL(`../../search_api/web/${module}`, import.meta.url), "utf8");
    const code = source.replace(/\/\/.*$/gm, "").replace(/\/\*[\s\S]*?\*\//g, "");
    assert.deepEqual(code.match(/\b(document|window|localStorage|sessionStorage|XMLHttpRequest|HTMLElement)\b/g), null);
    const imports = [...code.matchAll(/from "\.\/([\w.-]+)"/g)].map((m) => m[1]).sort();
    assert.deepEqual(imports, module === "upload.js" ? ["api.js", "format.js", "rate.js"] : []);
  }
});
