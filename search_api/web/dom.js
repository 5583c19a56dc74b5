// Small DOM helpers shared by the page's views.

export const $ = (sel) => document.querySelector(sel);

/** An element with attributes (`class`, `text`, `on<event>` handlers, others as attributes) and children. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

/** The status line under the search form. */
export function setStatus(message, isError = false) {
  const status = $("#status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

/** A drop zone that hands each drop's DataTransfer to `onDrop`, lit while something is dragged over it. */
export function setupDropZone(zone, onDrop) {
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer) onDrop(e.dataTransfer);
  });
}

/** A drop zone that hands the dropped files to `onFiles`. */
export function setupDrop(zone, onFiles) {
  setupDropZone(zone, (data) => { if (data.files.length) onFiles(data.files); });
}
