// The header: the health pill and the API key dialog.

import { health, keyStore } from "./api.js";
import { $, setStatus } from "./dom.js";

// The bundled tiny model has random weights: everything works, but results mean nothing. Said plainly.
export const TEST_MODEL_TEXT = "test model — results are not semantic";

export async function refreshHealth() {
  const pill = $("#health");
  try {
    const body = await health();
    const model = (body.parts && body.parts.model) || {};
    const down = Object.entries(body.parts || {}).filter(([, p]) => !p.ready).map(([n]) => n);
    const ok = body.status === "ok";
    pill.textContent = !ok ? "degraded" : model.is_test_model ? TEST_MODEL_TEXT : "healthy";
    pill.title = down.length ? "down: " + down.join(", ")
      : model.is_test_model ? "The service runs on the bundled tiny test model (random weights): install a real model for meaningful search (clipsearch models pull)."
        : "all parts ready";
    pill.className = "pill " + (!ok ? "bad" : model.is_test_model ? "warn" : "ok");
    pill.dataset.testModel = model.is_test_model ? "true" : "false";
  } catch (_) {
    pill.textContent = "offline";
    pill.className = "pill bad";
  }
}

export function openKeyDialog(reason) {
  const dialog = $("#key-dialog");
  if (dialog.open) return;
  $("#key-input").value = keyStore.get();
  if (reason) setStatus(reason, true);
  dialog.showModal();
}

function updateKeyButton() {
  $("#key-button").textContent = keyStore.get() ? "API key ✓" : "API key";
}

/** Wires the key button and dialog; `onKeyChanged` runs after a key is saved or forgotten. */
export function setupKey(onKeyChanged) {
  $("#key-button").addEventListener("click", () => openKeyDialog());
  $("#key-dialog").addEventListener("close", () => {
    const action = $("#key-dialog").returnValue;
    if (action === "save") keyStore.set($("#key-input").value.trim());
    if (action === "clear") keyStore.clear();
    updateKeyButton();
    if (action === "save" || action === "clear") onKeyChanged();
  });
  updateKeyButton();
}
