// What the page says: upload states in words, and file names cut so that their end shows.
import assert from "node:assert/strict";
import test from "node:test";

import { splitName, uploadStateText } from "../../search_api/web/format.js";

test("upload states are words for people, not the engine's", () => {
  assert.equal(uploadStateText("hashing"), "Checking which images are new");
  assert.equal(uploadStateText("nothing-to-send"), "Nothing new to send");
  assert.equal(uploadStateText("some_new-state"), "some new state");
});

test("a file name keeps its base name whole; the folder prefix is what gets cut", () => {
  assert.deepEqual(splitName("holiday/2019/paris/IMG_2041.jpg"), ["holiday/2019/paris/", "IMG_2041.jpg"]);
  assert.deepEqual(splitName("IMG_2041.jpg"), ["", "IMG_2041.jpg"]);
  assert.deepEqual(splitName(""), ["", ""]);
});

test("a long base name keeps its last characters, where names differ", () => {
  const name = "dir/a-very-long-export-name-from-the-camera-app-0001.jpg";
  const [head, tail] = splitName(name, 12);
  assert.equal(head + tail, name);
  assert.equal(tail, "app-0001.jpg");
});
