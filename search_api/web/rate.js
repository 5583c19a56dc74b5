// A rate over a recent window, for the upload's bytes per second. No DOM access.
//
// The rate is the growth over about the last `windowMs`, not the total over all the time elapsed: it
// follows the link as it speeds up or stalls. Once nothing is left to move, the window ends at the last
// change, so the rate shown after the last byte is the rate the bytes moved at, not one that keeps falling.

export const RATE_WINDOW_MS = 5000;

export class RateWindow {
  #samples = []; // [t, value], oldest first; a value that did not move adds no sample
  #windowMs;

  constructor(windowMs = RATE_WINDOW_MS) { this.#windowMs = windowMs; }

  /** Records that the count stood at `value` at time `t` (ms). */
  add(t, value) {
    const last = this.#samples.at(-1);
    if (last && value === last[1]) return;
    this.#samples.push([t, value]);
    // Keep one sample at or before the window's start (the anchor), and all those after it.
    while (this.#samples.length > 2 && this.#samples[1][0] <= t - this.#windowMs) this.#samples.shift();
  }

  /**
   * Units per second over the window ending at `t` while the count is `moving`, or ending at its last
   * change once it is not; null until there are two points in time to compare.
   */
  rate(t, moving = true) {
    if (!this.#samples.length) return null;
    const [lastT, lastV] = this.#samples.at(-1);
    const end = moving ? Math.max(t, lastT) : lastT;
    let anchor = this.#samples[0];
    for (const sample of this.#samples) {
      if (sample[0] <= end - this.#windowMs) anchor = sample; else break;
    }
    const seconds = (end - anchor[0]) / 1000;
    return seconds > 0 ? (lastV - anchor[1]) / seconds : null;
  }
}
