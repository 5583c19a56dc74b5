// Numbers as the page shows them. No DOM access.

/** 1536 -> "1.5 KB". */
export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let i = -1;
  do { n /= 1024; i += 1; } while (n >= 1024 && i < units.length - 1);
  return `${n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

/** A remaining time as " · ETA 12 s" (empty when unknown). */
export function formatEta(seconds) {
  if (!isFinite(seconds) || seconds < 0) return "";
  if (seconds < 60) return ` · ETA ${Math.ceil(seconds)} s`;
  return ` · ETA ${Math.floor(seconds / 60)} min ${Math.ceil(seconds % 60)} s`;
}

/** An upload's state as the page says it (the engine's words are "hashing", "nothing-to-send", ...). */
export const UPLOAD_STATE_TEXT = {
  hashing: "Checking which images are new",
  uploading: "Uploading",
  indexing: "Indexing",
  completed: "Done",
  "nothing-to-send": "Nothing new to send",
  failed: "Failed",
  cancelled: "Cancelled",
  queued: "Queued",
  running: "Indexing",
};

export function uploadStateText(state) {
  return UPLOAD_STATE_TEXT[state] || String(state).replace(/[-_]+/g, " ");
}

/**
 * A file name cut for a narrow card keeps its end (what differs between "trip/2019/paris/IMG_2041.jpg"
 * and its neighbours): returns [head, tail], the tail being the base name, or the last `tailChars`
 * characters of a long one; the page lets the head shrink with an ellipsis and never the tail.
 */
export function splitName(name, tailChars = 24) {
  const text = String(name || "");
  const slash = text.lastIndexOf("/");
  let cut = slash >= 0 ? slash + 1 : 0;
  if (text.length - cut > tailChars) cut = text.length - tailChars;
  return [text.slice(0, cut), text.slice(cut)];
}
