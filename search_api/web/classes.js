// Class sets: the list (select one, label a collection with it), a new class set from prompt lines and
// example images, classifying a dropped image, and the progress of label jobs.

import { api } from "./api.js";
import { currentCollection } from "./collections.js";
import { $, el, setStatus, setupDrop } from "./dom.js";
import { JOB_FINAL_STATES } from "./upload.js";

let classSet = null; // the selected class set's name
const examples = new Map(); // class name -> [{id, filename}]
const hooks = { jobEnded: () => {} };

export async function refreshClassSets() {
  const list = $("#class-sets");
  let data;
  try {
    data = await api("/class-sets");
  } catch (err) {
    const text = err.status === 404 ? "Classification is not available on this server." : err.message;
    list.replaceChildren(el("li", { class: "hint", text }));
    return;
  }
  const sets = data.class_sets || [];
  if (classSet && !sets.some((set) => set.name === classSet)) classSet = null;
  if (!classSet && sets.length) classSet = sets[0].name;
  list.replaceChildren();
  if (!sets.length) list.append(el("li", { class: "hint", text: "No class set yet." }));
  for (const set of sets) {
    const classes = (set.classes || []).map((c) => c.name).join(", ");
    const label = el("button", {
      type: "button", class: "small", title: `label every image of ${set.collection} with this class set`,
      onclick: (event) => { event.stopPropagation(); labelCollection(set.name); },
    });
    label.textContent = "label images";
    list.append(el("li", {
      "data-name": set.name, class: set.name === classSet ? "selected" : "", tabindex: "0",
      title: "classify dropped images with this class set",
      onclick: () => { classSet = set.name; refreshClassSets(); },
    }, el("strong", { text: set.name }), el("span", { class: "hint", text: ` ${set.collection} · ${classes}` }), " ", label));
  }
}

/** An example image of class `name` for the new class set (picked in the image view). */
export function addExample(name, id, filename) {
  const list = examples.get(name) || [];
  if (!list.some((e) => e.id === id)) list.push({ id, filename });
  examples.set(name, list);
  renderExamples();
  $("#class-create").open = true;
  setStatus(`${filename} is an example of “${name}” in the new class set.`);
}

function renderExamples() {
  const box = $("#class-examples");
  box.replaceChildren();
  for (const [name, list] of examples) {
    for (const e of list) {
      box.append(el("button", { type: "button", class: "chip label", title: "remove", text: `${name} ← ${e.filename} ✕`, onclick: () => {
        examples.set(name, examples.get(name).filter((x) => x.id !== e.id));
        if (!examples.get(name).length) examples.delete(name);
        renderExamples();
      } }));
    }
  }
}

// One class per line, "name: prompt, prompt", plus the classes of the example images.
function classesFromForm() {
  const classes = {};
  for (const line of $("#class-lines").value.split("\n")) {
    const [head, ...rest] = line.split(":");
    const name = head.trim();
    if (!name) continue;
    const prompts = rest.join(":").split(",").map((p) => p.trim()).filter(Boolean);
    classes[name] = { prompts: prompts.length ? prompts : [name] };
  }
  for (const [name, list] of examples) {
    classes[name] = classes[name] || { prompts: [] };
    classes[name].image_ids = list.map((e) => e.id);
  }
  return classes;
}

async function labelCollection(name) {
  try {
    const job = await api(`/class-sets/${encodeURIComponent(name)}/label`, { method: "POST", json: {} });
    trackJob({ job_id: job.job_id, status_url: job.status_url, accepted: job.total, rejected: [] });
  } catch (err) {
    setStatus("label: " + err.message, true);
  }
}

// A label job's card in #jobs, polled until the job ends.
function trackJob(accepted) {
  const bar = el("progress", { max: String(Math.max(accepted.accepted, 1)), value: "0" });
  const line = el("span", { class: "job-state", text: "queued" });
  const errors = el("ul", { class: "errors" });
  for (const r of accepted.rejected || []) errors.append(el("li", { text: `${r.file}: ${r.reason}` }));
  const card = el("div", { class: "job", "data-job": accepted.job_id, "data-state": "queued" },
    el("div", { class: "job-head", text: `job ${accepted.job_id.slice(0, 8)}` }), bar, line, errors);
  $("#jobs").prepend(card);
  const poll = async () => {
    let job;
    try {
      job = await api(accepted.status_url || `/jobs/${accepted.job_id}`);
    } catch (err) {
      line.textContent = "status: " + err.message;
      setTimeout(poll, 2000);
      return;
    }
    const processed = job.done + job.failed + job.duplicates;
    bar.max = Math.max(job.total, 1);
    bar.value = processed;
    let text = `${job.state} · ${processed}/${job.total} · indexed ${job.done}`;
    if (job.duplicates) text += ` · duplicates ${job.duplicates}`;
    if (job.failed) text += ` · failed ${job.failed}`;
    if (job.images_per_s) text += ` · ${job.images_per_s} img/s`;
    if (job.eta_s && !JOB_FINAL_STATES.has(job.state)) text += ` · ETA ${Math.ceil(job.eta_s)} s`;
    line.textContent = text;
    card.dataset.state = job.state;
    errors.replaceChildren(...(job.errors || []).map((e) => el("li", { text: `${e.file}: ${e.reason}` })));
    if (JOB_FINAL_STATES.has(job.state)) {
      hooks.jobEnded();
      return;
    }
    setTimeout(poll, 400);
  };
  poll();
}

function renderClassification(data) {
  const box = $("#classify-result");
  box.replaceChildren();
  for (const prediction of data.predictions || []) {
    const head = el("p", { class: "prediction" }, el("strong", { text: prediction.label }),
      ` ${prediction.score.toFixed(3)}` + (prediction.is_other ? " (below the threshold)" : ""));
    const list = el("ol", { class: "scores" });
    for (const row of prediction.ranked || []) {
      list.append(el("li", { text: `${row.name} · score ${row.score.toFixed(3)} · p ${row.probability.toFixed(2)}` }));
    }
    box.append(head, list);
  }
}

/** Wires the class-set form and the classify drop; `onJobEnded` runs when a label job ends. */
export function setupClasses({ onJobEnded }) {
  hooks.jobEnded = onJobEnded;
  $("#class-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const collection = currentCollection();
    if (!collection) return setStatus("Pick or create a collection first.", true);
    const classes = classesFromForm();
    if (Object.keys(classes).length < 1) return setStatus("Add at least one class: a line, or an example image.", true);
    const name = $("#class-name").value.trim();
    try {
      await api("/class-sets", { method: "POST", json: { name, collection, classes } });
      classSet = name;
      examples.clear();
      renderExamples();
      $("#class-form").reset();
      $("#class-create").open = false;
      await refreshClassSets();
      setStatus(`Created class set ${name} with ${Object.keys(classes).length} class(es).`);
    } catch (err) {
      setStatus("class set: " + err.message, true);
    }
  });
  const classify = async (files) => {
    if (!files.length) return;
    if (!classSet) return setStatus("No class set to classify with.", true);
    const form = new FormData();
    form.append("image", files[0], files[0].name || "image");
    form.append("class_set", classSet);
    try {
      renderClassification(await api("/classify", { method: "POST", form }));
    } catch (err) {
      $("#classify-result").replaceChildren(el("p", { class: "error", text: "classify: " + err.message }));
    }
  };
  setupDrop($("#classify-drop"), classify);
  $("#classify-file").addEventListener("change", (e) => classify(e.target.files));
}
