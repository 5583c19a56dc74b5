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
