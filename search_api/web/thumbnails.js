// Thumbnails and originals as object URLs: an <img src> cannot send the Authorization header, so the
// page fetches them as blobs. Each object URL is counted by the cards that show it and revoked when the
// last of them is replaced or removed; a fetch that nobody waits for any more is aborted.

/** Object URLs by key (image id), shared while any holder keeps one. No DOM access. */
export class ObjectUrls {
  #entries = new Map(); // key -> {count, url, controller, promise}

  constructor(fetchBlob, urls = URL) {
    this.fetchBlob = fetchBlob; // (src, signal) -> Promise<Blob>
    this.urls = urls; // createObjectURL / revokeObjectURL
  }

  /** Holds `key`'s object URL: returns {url: Promise<string|null>, release()}; null once released early. */
  acquire(key, src) {
    let entry = this.#entries.get(key);
    if (!entry) {
      const made = { count: 0, url: null, controller: new AbortController() };
      made.promise = this.fetchBlob(src, made.controller.signal).then((blob) => {
        if (made.count === 0) return null; // every holder let go while it loaded
        made.url = this.urls.createObjectURL(blob);
        return made.url;
      });
      made.promise.catch(() => { if (this.#entries.get(key) === made) this.#entries.delete(key); });
      this.#entries.set(key, made);
      entry = made;
    }
    entry.count += 1;
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      this.#release(key, entry);
    };
    return { url: entry.promise, release };
  }

  /** How many keys hold an object URL or a fetch for one. */
  get size() { return this.#entries.size; }

  #release(key, entry) {
    entry.count -= 1;
    if (entry.count > 0) return;
    if (this.#entries.get(key) === entry) this.#entries.delete(key);
    if (entry.url) this.urls.revokeObjectURL(entry.url);
    else entry.controller.abort();
  }
}

/** The images that one part of the page shows (the grid, the image view): released together. */
export class ThumbSlot {
  #held = [];

  constructor(urls) { this.urls = urls; }

  /** Shows `key`'s image (fetched from `src`) in `img`, held by this slot. */
  load(img, key, src) {
    const handle = this.urls.acquire(key, src);
    this.#held.push(handle);
    handle.url.then(
      (url) => { if (url && this.#held.includes(handle)) img.src = url; },
      () => { img.alt = "thumbnail unavailable"; img.classList.add("broken"); },
    );
  }

  /** Renders anew: what `render` loads is held, then what was held before is released. */
  swap(render) {
    const before = this.#held;
    this.#held = [];
    try {
      return render();
    } finally {
      for (const handle of before) handle.release();
    }
  }

  /** Releases everything (the cards are gone). */
  clear() { this.swap(() => {}); }
}
