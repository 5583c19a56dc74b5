// Object URLs of thumbnails: shared while shown, revoked when the last card showing one goes.
import assert from "node:assert/strict";
import test from "node:test";

import { ObjectUrls } from "../../search_api/web/thumbnails.js";
import { turn } from "./fake-server.mjs";

function setup() {
  const live = new Set();
  const fetched = [];
  const signals = [];
  let made = 0;
  const urls = {
    createObjectURL: (blob) => { const url = `blob:${blob}#${++made}`; live.add(url); return url; },
    revokeObjectURL: (url) => { assert.ok(live.delete(url), `revoked twice or never made: ${url}`); },
  };
  const fetchBlob = async (src, signal) => {
    fetched.push(src);
    signals.push(signal);
    await turn();
    if (src.includes("missing")) throw new Error("HTTP 404");
    return src;
  };
  return { cache: new ObjectUrls(fetchBlob, urls), live, fetched, signals };
}

test("one object URL per image while shown, revoked with its last holder", async () => {
  const { cache, live, fetched } = setup();
  const grid = cache.acquire("a", "/images/a/thumbnail");
  const similar = cache.acquire("a", "/images/a/thumbnail"); // the same image in the image view
  assert.equal(await grid.url, await similar.url);
  assert.deepEqual(fetched, ["/images/a/thumbnail"]);
  grid.release();
  grid.release(); // a second release of the same holder counts once
  assert.equal(live.size, 1);
  similar.release();
  assert.equal(live.size, 0);
  assert.equal(cache.size, 0);
  const again = cache.acquire("a", "/images/a/thumbnail"); // shown anew: fetched anew
  assert.match(await again.url, /#2$/);
  again.release();
  assert.equal(live.size, 0);
});

test("released before it loaded: the fetch is aborted and no URL is made", async () => {
  const { cache, live, signals } = setup();
  const handle = cache.acquire("b", "/images/b/thumbnail");
  handle.release();
  assert.equal(signals[0].aborted, true);
  assert.equal(await handle.url, null);
  assert.equal(live.size, 0);
  assert.equal(cache.size, 0);
});

test("a failed fetch is not kept: the next card tries again", async () => {
  const { cache, fetched } = setup();
  const failed = cache.acquire("c", "/missing");
  await assert.rejects(failed.url, /404/);
  assert.equal(cache.size, 0);
  failed.release();
  const retry = cache.acquire("c", "/images/c/thumbnail");
  assert.ok(await retry.url);
  assert.deepEqual(fetched, ["/missing", "/images/c/thumbnail"]);
  retry.release();
  assert.equal(cache.size, 0);
});
