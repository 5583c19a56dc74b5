// An in-memory stand-in for the API calls the upload engine makes (api.js: uploadClient), recording
// what it was asked. Each request settles on a later turn of the event loop, as a real one would.

import { ApiError } from "../../search_api/web/api.js";

export const turn = () => new Promise((resolve) => setImmediate(resolve));

/** Waits (event-loop turns, no clock) until `condition()` holds; fails after `turns` of them. */
export async function until(condition, what, turns = 10000) {
  for (let i = 0; i < turns; i++) {
    if (condition()) return;
    await turn();
  }
  throw new Error(`never happened: ${what}`);
}

export const LIMITS = {
  max_hash_lookup: 100, max_request_bytes: 4096, max_files_per_request: 4, parallel_requests: 2,
};

/** `n` image entries of `size` bytes; each file's sha256 is its `sha` (the fake hash reads it). */
export function entries(n, { size = 500, prefix = "img", sha = (i) => `sha-${prefix}-${i}` } = {}) {
  return Array.from({ length: n }, (_, i) => ({
    file: { size, type: "image/jpeg", sha: sha(i) },
    path: `${prefix}/${i}.jpg`,
  }));
}

export const fakeHash = async (file) => {
  await turn();
  if (file.unreadable) throw new Error("permission denied");
  return file.sha;
};

export function memoryStore() {
  let value = null;
  const store = { get: () => value, set: (v) => { value = v; store.history.push(v); }, remove: () => { value = null; }, history: [] };
  return store;
}

/**
 * `stored`: hashes the collection already holds. `sendFiles(batch, call)` may override what a files
 * request answers (throw to fail it); `call` has the request's signal and onProgress.
 */
export function fakeServer({ limits = {}, stored = [], sendFiles = null } = {}) {
  const server = {
    limits: { ...LIMITS, ...limits },
    stored: new Set(stored),
    jobs: new Map(),
    requests: [], // [{job, files: [path]}] that reached the server
    attempts: 0, // files requests tried, including failed ones
    knownAsked: [],
    inFlight: 0,
    maxInFlight: 0,
    signals: [],
    cancelled: [],
    closed: [],
  };
  server.client = {
    limits: async () => { await turn(); return server.limits; },
    known: async (collection, sha256) => {
      await turn();
      server.knownAsked.push(sha256);
      return { known: sha256.filter((h) => server.stored.has(h)) };
    },
    openUpload: async (collection, tags) => {
      await turn();
      const jobId = `job-${server.jobs.size + 1}`;
      server.jobs.set(jobId, { collection, tags, state: "open", files: [] });
      return { job_id: jobId, files_url: `/jobs/${jobId}/files` };
    },
    sendFiles: async (job, batch, { signal, onProgress }) => {
      server.attempts += 1;
      server.signals.push(signal);
      server.inFlight += 1;
      server.maxInFlight = Math.max(server.maxInFlight, server.inFlight);
      try {
        await turn();
        if (sendFiles) await sendFiles(batch, { signal, onProgress });
        if (signal.aborted) throw new DOMException("cancelled", "AbortError");
        const record = server.jobs.get(job.job_id);
        if (record.state !== "open") throw new ApiError(409, { error: { message: "job ended" } });
        record.files.push(...batch.map((e) => e.path));
        server.requests.push({ job: job.job_id, files: batch.map((e) => e.path) });
        return { accepted: batch.length, rejected: [] };
      } finally {
        server.inFlight -= 1;
      }
    },
    job: async (jobId) => {
      await turn();
      const record = server.jobs.get(jobId);
      const n = record.files.length;
      return { state: record.state === "closed" ? "completed" : record.state, total: n, processed: n, done: n, failed: 0, duplicates: 0, errors: [] };
    },
    close: async (jobId) => {
      await turn();
      server.closed.push(jobId);
      const record = server.jobs.get(jobId);
      if (record && record.state === "open") record.state = "closed";
      return { job_id: jobId };
    },
    cancel: async (jobId) => {
      await turn();
      server.cancelled.push(jobId);
      server.jobs.get(jobId).state = "cancelled";
    },
  };
  return server;
}

/** An engine's options for `server`, with a sleep that records what it was asked and takes one turn. */
export function options(server, extra = {}) {
  const sleeps = [];
  return {
    sleeps,
    collection: "photos",
    tags: ["t"],
    client: server.client,
    hash: fakeHash,
    store: memoryStore(),
    sleep: (ms) => { sleeps.push(ms); return turn(); },
    random: () => 0.5,
    ...extra,
  };
}
