// The upload engine's retries: what is retried, how long it waits, when it gives up.
import assert from "node:assert/strict";
import test from "node:test";

import { ApiError, RetryableError } from "../../search_api/web/api.js";
import { MAX_RETRIES, Upload, backoffMs, isRetryable, withRetries } from "../../search_api/web/upload.js";
import { entries, fakeServer, options } from "./fake-server.mjs";

function failing(errors, result = "ok") {
  const attempt = async () => {
    attempt.calls += 1;
    if (errors.length) throw errors.shift();
    return result;
  };
  attempt.calls = 0;
  return attempt;
}

test("network failures, 429 and 5xx are retried; other answers are not", () => {
  assert.ok(isRetryable(new RetryableError("network error")));
  assert.ok(isRetryable(new TypeError("Failed to fetch")));
  assert.ok(isRetryable(new ApiError(429, null)));
  assert.ok(isRetryable(new ApiError(503, null)));
  assert.ok(!isRetryable(new ApiError(400, null)));
  assert.ok(!isRetryable(new ApiError(413, null)));
  assert.ok(!isRetryable(new DOMException("cancelled", "AbortError")));
});

test("the backoff doubles from 1 s with ±20% jitter, and Retry-After wins", () => {
  assert.deepEqual([0, 1, 2, 3, 4].map((n) => backoffMs(n, 0, () => 0.5)), [1000, 2000, 4000, 8000, 16000]);
  assert.equal(backoffMs(2, 0, () => 0), 3200);
  assert.equal(Math.round(backoffMs(2, 0, () => 1)), 4800);
  assert.equal(backoffMs(4, 7, () => 0.5), 7000);
});

test("a retried call succeeds after its failures, waiting the backoff between them", async () => {
  const sleeps = [];
  const retried = [];
  const attempt = failing([new ApiError(503, null), new RetryableError("HTTP 429", 3)]);
  const result = await withRetries(attempt, {
    sleep: async (ms) => { sleeps.push(ms); }, random: () => 0.5, onRetry: (err) => retried.push(err.message),
  });
  assert.equal(result, "ok");
  assert.equal(attempt.calls, 3);
  assert.deepEqual(sleeps, [1000, 3000]);
  assert.deepEqual(retried, ["HTTP 503", "HTTP 429"]);
});

test("it gives up after MAX_RETRIES retries with the last error", async () => {
  const errors = Array.from({ length: MAX_RETRIES + 3 }, (_, i) => new ApiError(500 + i, null));
  const attempt = failing(errors);
  await assert.rejects(withRetries(attempt, { sleep: async () => {} }), (err) => err.status === 500 + MAX_RETRIES);
  assert.equal(attempt.calls, MAX_RETRIES + 1);
});

test("an answer that is not retryable fails at once", async () => {
  const attempt = failing([new ApiError(400, { error: { message: "bad tags" } })]);
  await assert.rejects(withRetries(attempt, { sleep: async () => { throw new Error("slept"); } }), /bad tags/);
  assert.equal(attempt.calls, 1);
});

test("no attempt is made once the upload is cancelled", async () => {
  let cancelled = false;
  const attempt = failing([new ApiError(503, null)]);
  const run = withRetries(attempt, { cancelled: () => cancelled, sleep: async () => { cancelled = true; } });
  await assert.rejects(run, /cancelled/);
  assert.equal(attempt.calls, 1);
});

test("a files request that fails twice is sent again, and its files reach the server once", async () => {
  let failures = 2;
  const server = fakeServer({
    sendFiles: async () => { if (failures > 0) { failures -= 1; throw new RetryableError("HTTP 502"); } },
  });
  const opts = options(server);
  const upload = new Upload({ ...opts, entries: entries(3) });
  const outcome = await upload.start();
  assert.equal(outcome.state, "completed");
  assert.equal(upload.retries, 2);
  assert.equal(server.attempts, 3);
  assert.deepEqual(server.requests.map((r) => r.files.length), [3]);
  assert.ok(opts.sleeps.includes(1000) && opts.sleeps.includes(2000), opts.sleeps);
});

test("a request the server finds too large (413) is split until its halves pass", async () => {
  const server = fakeServer({
    limits: { max_files_per_request: 8, max_request_bytes: 64 * 1024 },
    sendFiles: async (batch) => { if (batch.length > 2) throw new ApiError(413, { error: { message: "too large" } }); },
  });
  const upload = new Upload({ ...options(server), entries: entries(8, { size: 100 }) });
  assert.equal((await upload.start()).state, "completed");
  assert.deepEqual(server.requests.map((r) => r.files.length), [2, 2, 2, 2]);
  assert.equal(server.jobs.get("job-1").files.length, 8);
  assert.equal(upload.refused, 0);
});

test("a request refused for good lists its files as refused and the upload goes on", async () => {
  const server = fakeServer({
    sendFiles: async (batch) => {
      if (batch.some((e) => e.path === "img/0.jpg")) throw new ApiError(422, { error: { message: "bad part" } });
    },
  });
  const refused = [];
  const upload = new Upload({ ...options(server), entries: entries(6), onRefused: (file, reason) => refused.push(`${file}: ${reason}`) });
  assert.equal((await upload.start()).state, "completed");
  assert.deepEqual(refused, ["img/0.jpg: bad part", "img/1.jpg: bad part", "img/2.jpg: bad part", "img/3.jpg: bad part"]);
  assert.deepEqual(server.jobs.get("job-1").files, ["img/4.jpg", "img/5.jpg"]);
});
