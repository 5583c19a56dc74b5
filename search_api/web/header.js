// The header: the health pill and the API key dialog.

import { health, keyStore } from "./api.js";
import { $, setStatus } from "./dom.js";

export async function refreshHealth() {
  const pill = $("#health");
  try {
    const body = await health();
    pill.textContent = body.status === "ok" ? "healthy" : "degraded";
    const down = Object.entries(body.parts || {}).filter(([, p]) => !p.ready).map(([n]) => n);
    pill.title = down.length ? "down: " + down.join(", ") : "all parts ready";
    pill.className = "pill " + (body.status === "ok" ? "ok" : "bad");
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
