// The upload engine: files and folders, packed into requests, a few in flight, retried, resumable.
// No DOM access: it talks to the server through an injected client (api.js: uploadClient), hashes with
// an injected function, and reports through callbacks; tests/web/upload.test.mjs drives it in Node.
//
// Nothing is read until it is needed: a batch of files is hashed, the server says which hashes the
// collection already holds, and only the missing files are sent, in requests of at most N files and M
// bytes (GET /uploads/limits), `parallel_requests` in flight, all appended to one open job
// (POST /collections/<c>/uploads, /jobs/<id>/files, /jobs/<id>/close).

import { ApiError, RetryableError } from "./api.js";
import { formatBytes } from "./format.js";
import { RateWindow } from "./rate.js";

export const IMAGE_NAME = /\.(jpe?g|png|gif|webp|bmp|tiff?|heic|heif|avif|jxl|dng|cr2|cr3|nef|arw|raf|orf)$/i;
export const HASH_BATCH_BYTES = 64 * 1024 * 1024; // read at most this much for one batch of hashes
export const MAX_RETRIES = 5;
export const JOB_FINAL_STATES = new Set(["completed", "failed", "cancelled"]);
const REQUEST_SLACK_BYTES = 1024; // the multipart framing beyond the parts
const POLL_MS = 500;
const POLL_RETRY_MS = 2000;

/** Whether a chosen file is an image the server may take. */
export function isImage(file, path) {
  // HEIC, AVIF, JPEG XL and camera RAW files often come with no type, or application/octet-stream.
  return file.type.startsWith("image/") || IMAGE_NAME.test(path);
}

/** An approximate multipart size: the bytes plus each part's headers (the name twice, percent-encoded). */
export function partBytes(entry) {
  return entry.file.size + 200 + 3 * new TextEncoder().encode(entry.path).length;
}

/** The most bytes of parts that one request may carry. */
export function requestBudget(limits) {
  return limits.max_request_bytes - REQUEST_SLACK_BYTES;
}

/**
 * The entries from `start` that are hashed together: at most `max_hash_lookup` of them and about
 * HASH_BATCH_BYTES (always at least one). An entry that no request could carry is set aside in `tooLarge`.
 * Returns {batch, tooLarge, next}, `next` being the index to continue from.
 */
export function nextHashBatch(entries, start, limits, batchBytes = HASH_BATCH_BYTES) {
  const batch = [];
  const tooLarge = [];
  const budget = requestBudget(limits);
  let bytes = 0;
  let index = start;
  while (index < entries.length && batch.length < limits.max_hash_lookup && (bytes < batchBytes || !batch.length)) {
    const entry = entries[index++];
    if (partBytes(entry) > budget) { tooLarge.push(entry); continue; }
    batch.push(entry);
    bytes += entry.file.size;
  }
  return { batch, tooLarge, next: index };
}

/** Takes one request's files off the front of the queue: at most `max_files_per_request`, within the budget. */
export function takeRequest(queue, limits) {
  const budget = requestBudget(limits);
  const batch = [];
  let bytes = 0;
  while (queue.length && batch.length < limits.max_files_per_request && bytes + partBytes(queue[0]) <= budget) {
    const entry = queue.shift();
    batch.push(entry);
    bytes += partBytes(entry);
  }
  return batch;
}

/** Whether the queue holds a full request's worth (a sender waits for one until hashing is over). */
export function holdsFullRequest(queue, limits) {
  return queue.length >= limits.max_files_per_request
    || queue.reduce((n, e) => n + partBytes(e), 0) >= limits.max_request_bytes / 2;
}

/** Whether a failed attempt is worth another: a network failure, a 429 or a 5xx. */
export function isRetryable(err) {
  return err instanceof RetryableError || err instanceof TypeError
    || (err instanceof ApiError && (err.status === 429 || err.status >= 500));
}

/** The wait before retry `attempt` (0-based): Retry-After, or 1, 2, 4, 8, 16 s with ±20% jitter. */
export function backoffMs(attempt, retryAfterS, random = Math.random) {
  return retryAfterS ? retryAfterS * 1000 : 1000 * 2 ** attempt * (0.8 + 0.4 * random());
}

/**
 * Calls `attempt` until it succeeds, retrying what isRetryable at most `maxRetries` times after a backoff.
 * Stops with an error "cancelled" once `cancelled()` says so.
 */
export async function withRetries(attempt, {
  cancelled = () => false, sleep = defaultSleep, random = Math.random, onRetry = () => {}, maxRetries = MAX_RETRIES,
} = {}) {
  for (let n = 0; ; n++) {
    if (cancelled()) throw new Error("cancelled");
    try {
      return await attempt();
    } catch (err) {
      if (!isRetryable(err) || n >= maxRetries) throw err;
      onRetry(err);
      await sleep(backoffMs(n, err.retryAfterS, random));
    }
  }
}

function defaultSleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

/**
 * The one registry of an upload's requests in flight: each has an AbortController and the bytes it has
 * sent so far. `abortAll` stops them (a request run with {keep: true} is left to finish).
 */
export class InFlight {
  #requests = new Map(); // AbortController -> {loaded, keep}

  async run(call, { keep = false } = {}) {
    const controller = new AbortController();
    const request = { loaded: 0, keep };
    this.#requests.set(controller, request);
    try {
      return await call(controller.signal, (loaded) => { request.loaded = loaded; });
    } finally {
      this.#requests.delete(controller);
    }
  }

  get size() { return this.#requests.size; }

  loadedBytes() {
    let n = 0;
    for (const request of this.#requests.values()) n += request.loaded;
    return n;
  }

  abortAll() {
    for (const [controller, request] of this.#requests) if (!request.keep) controller.abort();
  }
}

/** Closes a job that a reload or a closed tab left open, so that what it received is indexed. */
export async function closeLeftover(client, store) {
  const jobId = store.get();
  if (!jobId) return;
  try { await client.close(jobId); } catch (_) { /* gone or ended */ }
  store.remove();
}

/**
 * One upload of `entries` ([{file, path}]) into `collection`. `start()` runs it; `done` resolves with its
 * outcome {state, report?, error?} once it ends: the job's final state, "nothing-to-send", "failed", or
 * "cancelled". `onChange(upload)` is called whenever a count or the state changes, `onRefused(file, reason)`
 * for each file that is not sent. `store` keeps the open job's id across reloads ({get, set, remove}).
 */
export class Upload {
  #deps;
  #queue = []; // hashed files waiting for a sender
  #waiting = []; // senders waiting for files or for the end of hashing
  #jobPromise = null;
  #resolveDone;
  #rate = new RateWindow(); // bytes sent, over a recent window
  #sentShown = 0; // bytes sent as shown: a retried request's bytes are not taken back

  constructor({
    collection, entries, tags = [], client, hash = null, store = null,
    sleep = defaultSleep, random = Math.random, now = () => performance.now(),
    onChange = () => {}, onRefused = () => {},
  }) {
    this.collection = collection;
    this.entries = entries;
    this.tags = tags;
    this.#deps = { client, hash, store, sleep, random, now, onChange, onRefused };
    this.state = "hashing";
    this.active = true;
    this.cancelled = false;
    this.limits = null;
    this.job = null;
    this.report = null;
    this.files = entries.length;
    // The whole drop's size is known from the walk: the bars' totals never move while hashing goes on.
    this.totalBytes = entries.reduce((n, e) => n + e.file.size, 0);
    this.hashed = 0;
    this.skipped = 0;
    this.skippedBytes = 0;
    this.repeats = 0;
    this.repeatBytes = 0;
    this.toSend = 0;
    this.toSendBytes = 0;
    this.sentFiles = 0;
    this.sentBytes = 0;
    this.requests = 0;
    this.retries = 0;
    this.refused = 0;
    this.unsent = 0; // refused before reaching the server (unreadable, too large, a request that failed)
    this.unsentBytes = 0;
    this.startedSending = 0;
    this.hashingDone = false;
    this.inFlight = new InFlight();
    this.done = new Promise((resolve) => { this.#resolveDone = resolve; });
  }

  /** Runs the upload; returns `done`. */
  start() {
    this.#run().catch((err) => {
      if (this.cancelled) return;
      this.#stop(); // what reached the server is indexed once the job is closed
      if (this.job) this.inFlight.run((signal) => this.#deps.client.close(this.job.job_id, signal)).catch(() => {});
      this.#forgetJob();
      this.#finish({ state: "failed", error: err });
    });
    return this.done;
  }

  /** Stops sending and cancels the job. */
  async cancel() {
    if (!this.active) return;
    this.#stop();
    if (this.#jobPromise) {
      try {
        const job = await this.#jobPromise;
        await this.inFlight.run(() => this.#deps.client.cancel(job.job_id));
      } catch (_) { /* already ended */ }
    }
    this.#forgetJob();
    this.#finish({ state: "cancelled" });
  }

  /**
   * Bytes and images: what the progress bars show. Both bars run against the whole drop (`totalBytes`,
   * `files`), and what needs no upload (already stored, repeated in the drop, refused) counts as settled
   * at once, so neither bar moves backwards while hashing goes on. Rates are null until there is one.
   */
  progress() {
    const { now } = this.#deps;
    this.#sentShown = Math.max(this.#sentShown, this.sentBytes + this.inFlight.loadedBytes());
    const sent = this.#sentShown;
    const r = this.report;
    const total = Math.max(this.toSend, r ? r.total : 0);
    const processed = r ? r.processed : 0;
    const bytesLeft = this.toSendBytes - sent;
    const moving = this.active && !(this.hashingDone && bytesLeft <= 0);
    const bytesPerS = this.startedSending && sent ? this.#rate.rate(now(), moving) : null;
    const imagesPerS = r && r.images_per_s ? r.images_per_s : null;
    const imagesLeft = total - processed;
    const notSent = this.skippedBytes + this.repeatBytes + this.unsentBytes;
    const settledImages = processed + this.skipped + this.repeats + this.unsent;
    return {
      sent, toSendBytes: this.toSendBytes, bytesPerS,
      bytesEtaS: bytesPerS && this.hashingDone && bytesLeft > 0 ? bytesLeft / bytesPerS : null,
      totalBytes: this.totalBytes, settledBytes: Math.min(this.totalBytes, sent + notSent),
      totalImages: this.files, settledImages: Math.min(this.files, settledImages),
      total, processed, done: r ? r.done : 0, failed: r ? r.failed : 0, duplicates: r ? r.duplicates : 0,
      imagesPerS, imagesEtaS: imagesPerS && this.hashingDone && imagesLeft > 0 ? imagesLeft / imagesPerS : null,
    };
  }

  #sample() {
    this.#rate.add(this.#deps.now(), this.sentBytes + this.inFlight.loadedBytes());
  }

  async #run() {
    const { client } = this.#deps;
    this.limits = await this.inFlight.run((signal) => client.limits(signal));
    const senders = [];
    for (let i = 0; i < this.limits.parallel_requests; i++) senders.push(this.#sender());
    await this.#hashAndQueue();
    await Promise.all(senders);
    if (this.cancelled) return;
    if (!this.job) return this.#finish({ state: "nothing-to-send" });
    this.#setState("indexing");
    await this.inFlight.run((signal) => client.close(this.job.job_id, signal));
    this.#forgetJob();
  }

  async #hashAndQueue() {
    const { hash } = this.#deps;
    const seen = new Set();
    let index = 0;
    while (index < this.entries.length && !this.cancelled) {
      const { batch, tooLarge, next } = nextHashBatch(this.entries, index, this.limits);
      index = next;
      for (const entry of tooLarge) {
        this.#refuse(entry, `${formatBytes(entry.file.size)}: larger than the server takes in one request (${formatBytes(this.limits.max_request_bytes)})`);
      }
      if (!hash) {
        for (const entry of batch) { this.hashed += 1; this.#enqueue(entry); }
        this.#deps.onChange(this);
        continue;
      }
      const hashes = new Map(); // entry -> sha256, for the readable ones
      for (const entry of batch) { // one file in memory at a time
        if (this.cancelled) return;
        try { hashes.set(entry, await hash(entry.file)); } catch (err) { this.#refuse(entry, "cannot read: " + err.message); }
        this.hashed += 1;
        this.#deps.onChange(this);
      }
      const known = await this.#known([...new Set(hashes.values())]);
      for (const [entry, sha256] of hashes) {
        if (known.has(sha256)) { this.skipped += 1; this.skippedBytes += entry.file.size; continue; }
        if (seen.has(sha256)) { this.repeats += 1; this.repeatBytes += entry.file.size; continue; } // the same bytes twice in this drop
        seen.add(sha256);
        this.#enqueue(entry);
      }
      this.#deps.onChange(this);
    }
    this.hashingDone = true;
    this.#wakeSenders();
  }

  async #known(hashes) {
    if (!hashes.length) return new Set();
    const answer = await this.#retried(() => this.inFlight.run((signal) => this.#deps.client.known(this.collection, hashes, signal)));
    return new Set(answer.known);
  }

  #enqueue(entry) {
    this.#queue.push(entry);
    this.toSend += 1;
    this.toSendBytes += entry.file.size;
    this.#wakeSenders();
  }

  #wakeSenders() {
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const wake of waiting) wake();
  }

  async #sender() {
    for (;;) {
      if (this.cancelled) return;
      // Wait for a full request's worth, unless hashing is over (then send what is left).
      if (!this.#queue.length || (!this.hashingDone && !holdsFullRequest(this.#queue, this.limits))) {
        if (this.hashingDone && !this.#queue.length) return;
        await new Promise((resolve) => this.#waiting.push(resolve));
        continue;
      }
      const batch = takeRequest(this.#queue, this.limits);
      if (!batch.length) continue;
      await this.#openJob();
      if (this.cancelled) return;
      if (this.state === "hashing") this.#setState("uploading");
      await this.#sendBatch(batch);
    }
  }

  #openJob() {
    const { client, store, now } = this.#deps;
    if (!this.#jobPromise) {
      // {keep: true}: a cancel waits for the job's id (to delete the job) rather than abort its creation.
      this.#jobPromise = this.#retried(() => this.inFlight.run((signal) => client.openUpload(this.collection, this.tags, signal), { keep: true }))
        .then((job) => {
          this.job = job;
          this.startedSending = now();
          this.#sample();
          if (store) store.set(job.job_id);
          this.#poll();
          return job;
        });
    }
    return this.#jobPromise;
  }

  async #sendBatch(batch) {
    const { client, onChange } = this.#deps;
    let answer;
    try {
      answer = await this.#retried(() => this.inFlight.run((signal, progress) => client.sendFiles(this.job, batch, {
        signal, onProgress: (loaded) => { progress(loaded); this.#sample(); onChange(this); },
      })));
    } catch (err) {
      if (this.cancelled) return;
      if (err instanceof ApiError && err.status === 413 && batch.length > 1) { // split and try the halves
        const half = Math.ceil(batch.length / 2);
        await this.#sendBatch(batch.slice(0, half));
        return this.#sendBatch(batch.slice(half));
      }
      if (err instanceof ApiError && err.status === 409) { // the job ended (cancelled elsewhere)
        this.#stop();
        return this.#finish({ state: "cancelled", error: err });
      }
      for (const entry of batch) this.#refuse(entry, err.message);
      return;
    }
    this.requests += 1;
    this.sentFiles += batch.length;
    this.sentBytes += batch.reduce((n, e) => n + e.file.size, 0);
    this.#sample();
    // Refused by the server: the job counts them among its failed items.
    for (const r of (answer && answer.rejected) || []) this.#refuse(null, r.reason, r.file);
    onChange(this);
  }

  async #poll() {
    const { client, sleep } = this.#deps;
    while (!this.cancelled && this.job) {
      try {
        this.report = await this.inFlight.run((signal) => client.job(this.job.job_id, signal));
      } catch (_) {
        await sleep(POLL_RETRY_MS);
        continue;
      }
      this.#deps.onChange(this);
      if (JOB_FINAL_STATES.has(this.report.state)) return this.#finish({ state: this.report.state, report: this.report });
      await sleep(POLL_MS);
    }
  }

  #retried(attempt) {
    return withRetries(attempt, {
      cancelled: () => this.cancelled,
      sleep: this.#deps.sleep,
      random: this.#deps.random,
      onRetry: () => { this.retries += 1; this.#deps.onChange(this); },
    });
  }

  /** A file not indexed: `entry` when it never reached the server, else null and the server's name. */
  #refuse(entry, reason, name = entry && entry.path) {
    this.refused += 1;
    if (entry) { this.unsent += 1; this.unsentBytes += entry.file.size; }
    this.#deps.onRefused(name, reason);
  }

  #setState(state) {
    this.state = state;
    this.#deps.onChange(this);
  }

  #stop() {
    this.cancelled = true;
    this.inFlight.abortAll();
    this.#wakeSenders();
  }

  #forgetJob() {
    if (this.#deps.store) this.#deps.store.remove();
  }

  #finish(outcome) {
    if (!this.active) return;
    this.active = false;
    this.outcome = outcome;
    this.#setState(outcome.state);
    this.#resolveDone(outcome);
  }
}
