// The cleaning page of `unfreeze clean`: list items by loss, collect marks (mouse or keyboard), apply them
// or undo the last apply.
"use strict";

const marks = new Map();  // item id → new label (multi-label: the new list of classes), or null to remove
let classes = [];
let multiLabel = false;
let current = 0;  // the tile the keyboard acts on
const statusLine = document.getElementById("status");
const applyButton = document.getElementById("apply");
const grid = document.getElementById("grid");

function say(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error-text", isError);
}

function refreshApplyButton() {
  applyButton.disabled = marks.size === 0;
  applyButton.textContent = `Apply ${marks.size} change${marks.size === 1 ? "" : "s"}`;
  applyButton.title = marks.size === 0 ? "mark an image first" : "move, relabel and log the marked images";
}

function option(value, text) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = text;
  return element;
}

function sameSet(first, second) {
  return [...first].sort().join("\n") === [...second].sort().join("\n");
}

function tile(item) {
  const element = document.getElementById("tile-template").content.firstElementChild.cloneNode(true);
  element.dataset.item = item.id;
  const image = element.querySelector("img");
  image.src = item.image;
  image.alt = item.name;
  const name = element.querySelector(".name");
  name.textContent = item.name;
  name.title = item.path;
  element.querySelector(".now").textContent = item.label || "(no class)";
  const guess = item.guess.length ? item.guess : [item.predicted];
  element.querySelector(".guess").textContent = `guess ${guess.join(", ") || "(none)"} ${item.probability.toFixed(2)}`;
  element.querySelector(".facts").textContent = `${item.split} · loss ${item.loss.toFixed(2)}`;
  const select = element.querySelector("select");
  select.append(option("keep", "keep"), option("remove", "remove"));
  const accept = element.querySelector(".accept");
  const guessIsLabel = multiLabel ? sameSet(guess, item.classes) : guess[0] === item.label;
  accept.disabled = guessIsLabel || guess.length === 0 || (!multiLabel && !classes.includes(guess[0]));
  accept.title = accept.disabled ? "the label is already the model's guess" : `relabel as ${guess.join(", ")}`;
  element.actions = multiLabel ? multiLabelMark(element, item, select, guess) : singleLabelMark(element, item, select,
                                                                                               guess);
  accept.addEventListener("click", () => element.actions.accept());
  element.addEventListener("click", () => focusTile(tiles().indexOf(element), false));
  return element;
}

// A single-label item: keep, remove, or "relabel as" one of the other classes.
function singleLabelMark(element, item, select, guess) {
  const group = document.createElement("optgroup");
  group.label = "relabel as";
  for (const name of classes) {
    if (name !== item.label) group.append(option(`relabel:${name}`, `→ ${name}`));
  }
  if (group.children.length) select.append(group);
  const mark = marks.get(item.id);
  if (marks.has(item.id)) select.value = mark === null ? "remove" : `relabel:${mark}`;
  const update = () => {
    if (select.value === "keep") marks.delete(item.id);
    else marks.set(item.id, select.value === "remove" ? null : select.value.slice("relabel:".length));
    paint(element, select.value === "remove", select.value.startsWith("relabel:"));
  };
  const choose = (value) => {
    select.value = value;
    update();
  };
  select.addEventListener("change", update);
  paint(element, marks.has(item.id) && mark === null, marks.has(item.id) && mark !== null);
  return {
    keep: () => choose("keep"),
    remove: () => choose("remove"),
    accept: () => { if (guess[0] !== item.label && classes.includes(guess[0])) choose(`relabel:${guess[0]}`); },
    digit: (name) => choose(name === item.label ? "keep" : `relabel:${name}`),
    advances: true,
  };
}

// A multi-label item: one checkbox per class sets its new label set; "remove" takes it out.
function multiLabelMark(element, item, select, guess) {
  const fieldset = element.querySelector(".classes");
  fieldset.hidden = false;
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
    else if (sameSet(chosen, item.classes)) marks.delete(item.id);
    else marks.set(item.id, chosen);
    paint(element, removed, marks.has(item.id) && !removed);
  };
  const check = (wanted) => {
    select.value = "keep";
    for (const box of boxes) box.checked = wanted.includes(box.value);
    update();
  };
  select.addEventListener("change", update);
  for (const box of boxes) box.addEventListener("change", update);
  update();
  return {
    keep: () => check(item.classes),
    remove: () => { select.value = "remove"; update(); },
    accept: () => check(guess),
    digit: (name) => {
      const box = boxes.find((candidate) => candidate.value === name);
      select.value = "keep";
      box.checked = !box.checked;
      update();
    },
    advances: false,  // a set is edited one class at a time: stay on the image
  };
}

function paint(element, removed, relabelled) {
  element.classList.toggle("removed", removed);
  element.classList.toggle("marked", relabelled);
  refreshApplyButton();
}

function tiles() {
  return Array.from(grid.children);
}

function focusTile(index, scroll = true) {
  const all = tiles();
  if (all.length === 0) return;
  current = Math.max(0, Math.min(index, all.length - 1));
  all.forEach((element, position) => element.classList.toggle("current", position === current));
  if (scroll) all[current].focus({ preventScroll: true });
  if (scroll) all[current].scrollIntoView({ block: "nearest" });
}

// Keys act on the current tile; a select, checkbox or button with the focus keeps its own keys.
document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    if (!applyButton.disabled) applyButton.click();
    return;
  }
  const target = event.target;
  const ownKeys = [HTMLSelectElement, HTMLInputElement, HTMLButtonElement, HTMLTextAreaElement];
  if (event.altKey || event.ctrlKey || event.metaKey || ownKeys.some((kind) => target instanceof kind)) return;
  const element = tiles()[current];
  if (!element) return;
  const act = (action) => {
    event.preventDefault();
    action();
    if (element.actions.advances) focusTile(current + 1);
  };
  if (event.key === "ArrowRight" || event.key === "j") { event.preventDefault(); focusTile(current + 1); }
  else if (event.key === "ArrowLeft" || event.key === "k") { event.preventDefault(); focusTile(current - 1); }
  else if (event.key === " ") act(element.actions.keep);
  else if (event.key === "x" || event.key === "Delete") act(element.actions.remove);
  else if (event.key === "a") act(element.actions.accept);
  else if (/^[1-9]$/.test(event.key) && Number(event.key) <= classes.length) {
    act(() => element.actions.digit(classes[Number(event.key) - 1]));
  }
});

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
  try {  // a stopped server: said in the status line, not an uncaught error
    response = await fetch(`/api/items?${query}`);
    // A proxy's HTML error page (a 502) is no JSON: its status says more than the parser's error.
    answer = await response.json().catch(() => ({ detail: `the server answered ${response.status}` }));
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
    document.getElementById("digit-classes").textContent =
      classes.slice(0, 9).map((name, index) => `${index + 1} ${name}`).join(", ");
  }
  grid.replaceChildren(...answer.items.map(tile));
  document.getElementById("empty").hidden = answer.items.length > 0;  // a blank grid looked like a failed load
  grid.dataset.loaded = String(ticket);  // tests and scripts can tell a reload from the grid before it
  focusTile(current, false);
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
    current = 0;
    await load();  // re-sorted: a relabelled image's loss is the one under its new label
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

document.getElementById("split").addEventListener("change", () => { current = 0; load(); });
document.getElementById("label").addEventListener("change", () => { current = 0; load(); });
load();
