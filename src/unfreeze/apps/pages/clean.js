// The cleaning page of `unfreeze clean`: list items by loss, collect marks, apply them or undo the last apply.
"use strict";

const marks = new Map();  // item id → new label (multi-label: the new list of classes), or null to remove
let classes = [];
let multiLabel = false;
const statusLine = document.getElementById("status");
const applyButton = document.getElementById("apply");

function say(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error-text", isError);
}

function refreshApplyButton() {
  applyButton.disabled = marks.size === 0;
  applyButton.textContent = `Apply ${marks.size} change${marks.size === 1 ? "" : "s"}`;
}

function option(value, text) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = text;
  return element;
}

function tile(item) {
  const element = document.getElementById("tile-template").content.firstElementChild.cloneNode(true);
  element.dataset.item = item.id;
  const image = element.querySelector("img");
  image.src = item.image;
  image.alt = item.name;
  element.querySelector(".name").textContent = item.name;
  element.querySelector(".facts").textContent =
    `${item.split} · label ${item.label} · guess ${item.predicted} (${item.probability.toFixed(2)}) · loss ${item.loss.toFixed(2)}`;
  const select = element.querySelector("select");
  select.append(option("keep", "keep"), option("remove", "remove"));
  const mark = marks.get(item.id);
  if (multiLabel) {
    multiLabelMark(element, item, select);
  } else {
    for (const name of classes) {
      if (name !== item.label) select.append(option(`relabel:${name}`, `relabel as ${name}`));
    }
    if (marks.has(item.id)) select.value = mark === null ? "remove" : `relabel:${mark}`;
    select.addEventListener("change", () => {
      if (select.value === "keep") marks.delete(item.id);
      else marks.set(item.id, select.value === "remove" ? null : select.value.slice("relabel:".length));
      paint(element, select.value === "remove", select.value.startsWith("relabel:"));
    });
  }
  paint(element, marks.has(item.id) && mark === null, marks.has(item.id) && mark !== null);
  return element;
}

function paint(element, removed, relabelled) {
  element.classList.toggle("removed", removed);
  element.classList.toggle("marked", relabelled);
  refreshApplyButton();
}

// A multi-label item: one checkbox per class sets its new label set; "remove" takes it out.
function multiLabelMark(element, item, select) {
  const fieldset = element.querySelector(".classes");
  fieldset.hidden = false;
  const original = [...item.classes].sort().join("\n");
  const current = marks.has(item.id) && marks.get(item.id) !== null ? marks.get(item.id) : item.classes;
  const boxes = classes.map((name) => {
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = name;
    box.checked = current.includes(name);
    const label = document.createElement("label");
    label.append(box, ` ${name}`);
    fieldset.append(label);
    return box;
  });
  if (marks.has(item.id) && marks.get(item.id) === null) select.value = "remove";
  const update = () => {
    const chosen = boxes.filter((box) => box.checked).map((box) => box.value);
    const removed = select.value === "remove";
    for (const box of boxes) box.disabled = removed;
    if (removed) marks.set(item.id, null);
    else if ([...chosen].sort().join("\n") === original) marks.delete(item.id);
    else marks.set(item.id, chosen);
    paint(element, removed, marks.has(item.id) && !removed);
  };
  select.addEventListener("change", update);
  for (const box of boxes) box.addEventListener("change", update);
  for (const box of boxes) box.disabled = select.value === "remove";
}

// Loads can overlap (Apply reloads while the user picks another filter): only the latest one's answer
// is shown, so a slower, older answer never replaces the grid of the filter now chosen.
let latestLoad = 0;

async function load() {
  const ticket = ++latestLoad;
  const query = new URLSearchParams();
  const split = document.getElementById("split").value;
  const label = document.getElementById("label").value;
  if (split) query.set("split", split);
  if (label) query.set("label", label);
  let response, answer;
  try {  // a stopped server or a proxy's HTML error page: said in the status line, not an uncaught error
    response = await fetch(`/api/items?${query}`);
    answer = await response.json();
  } catch (error) {
    if (ticket === latestLoad) say(`cannot load the images: ${error.message}. Is 'unfreeze clean' still running?`, true);
    return;
  }
  if (ticket !== latestLoad) return;
  if (!response.ok) {
    say(answer.detail, true);
    return;
  }
  document.getElementById("title").textContent = `Clean the data of ${answer.run} (${answer.kind} dataset)`;
  if (classes.length === 0) {
    classes = answer.classes;
    multiLabel = answer.multi_label;
    const labelSelect = document.getElementById("label");
    for (const name of classes) labelSelect.append(option(name, name));
  }
  const grid = document.getElementById("grid");
  grid.replaceChildren(...answer.items.map(tile));
}

// The server refuses a change without the session token it put into this page (no other site has it).
const sessionToken = document.querySelector('meta[name="unfreeze-token"]').content;

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Unfreeze-Token": sessionToken },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({ detail: `the server answered ${response.status}` }));
  if (!response.ok) throw new Error(answer.detail);
  return answer;
}

applyButton.addEventListener("click", async () => {
  const changes = Array.from(marks, ([item, newLabel]) => ({ item, new_label: newLabel }));
  try {
    const done = await post("/api/apply", { changes });
    marks.clear();
    refreshApplyButton();
    say(`applied: ${done.relabelled} relabelled, ${done.removed} removed (log: ${done.log})`);
    await load();
  } catch (error) {
    say(error.message, true);
  }
});

document.getElementById("undo").addEventListener("click", async () => {
  try {
    const done = await post("/api/undo");
    const renamed = done.renamed.length ? `; renamed to avoid a clash: ${done.renamed.join(", ")}` : "";
    say(`undone: ${done.restored} change(s) reversed${renamed}`);
    await load();
  } catch (error) {
    say(error.message, true);
  }
});

document.getElementById("split").addEventListener("change", load);
document.getElementById("label").addEventListener("change", load);
load();
