// The upload page of `unfreeze serve`: send the chosen images to /predict, draw each one's top-k as bars.
"use strict";

const token = new URLSearchParams(location.hash.slice(1)).get("token");
const headers = token ? { Authorization: `Bearer ${token}` } : {};
const statusLine = document.getElementById("status");
const results = document.getElementById("results");
let classCount = 0;  // from /health: "not one of the N classes"

function percent(probability) {
  return `${(100 * probability).toFixed(1)}%`;
}

// The server's JSON answer; a proxy's or crashed server's error page (HTML, plain text) is named by its status.
async function answerOf(response) {
  try {
    return await response.json();
  } catch (error) {
    return { detail: `the server answered ${response.status}` };
  }
}

async function describeModel() {
  const response = await fetch("/health", { headers });
  const info = document.getElementById("model-info");
  const health = await answerOf(response);
  if (!response.ok || !health.classes) {
    info.textContent = health.detail;
    return;
  }
  document.getElementById("title").textContent = health.model;
  document.title = `unfreeze: ${health.model}`;
  classCount = health.classes.length;
  const kind = { regression: "regression", multi_label: "multi-label" }[health.task] || "single-label";
  const count = health.classes.length;
  // A regression model predicts numbers: its "classes" are its outputs.
  const names = health.task === "regression" ? (count === 1 ? "output" : "outputs") : (count === 1 ? "class" : "classes");
  info.textContent = `${health.arch}, ${kind}, ${count} ${names}: ${health.classes.join(", ")}`;
}

// One card per file; a request's cards keep the order the files were chosen in (the newest request on top).
function predictionCard(prediction, file) {
  const card = document.getElementById("result-template").content.firstElementChild.cloneNode(true);
  // The name as the user chose it: the form upload sends a '"' in it as %22, which the server's answer keeps.
  card.querySelector(".file").textContent = file.name;
  const image = card.querySelector("img");
  image.src = URL.createObjectURL(file);
  image.alt = file.name;
  const label = card.querySelector(".label");
  if (prediction.error) {
    card.classList.add("error");
    label.textContent = prediction.status ? `${prediction.status}: ${prediction.error}` : prediction.error;
    card.dataset.status = String(prediction.status || "");
    image.remove();
  } else {
    const names = Array.isArray(prediction.label) ? prediction.label.join(", ") || "(no class)" : prediction.label;
    // A list for a multi-label model (the bars show each); null for a regression model's numbers.
    const probability = typeof prediction.probability === "number" ? ` (${percent(prediction.probability)})` : "";
    label.textContent = `${names}${probability}`;
    if (prediction.unknown) {  // unlike the training images: say so instead of a confident class
      card.classList.add("unknown");
      const none = classCount === 1 ? "not the model's one class" : `not one of the ${classCount || "model's"} classes`;
      label.textContent = `${none} (closest: ${names}${probability})`;
    }
    const bars = card.querySelector(".bars");
    for (const entry of prediction.top_k) {
      const item = document.createElement("li");
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = percent(entry.probability);
      const text = document.createElement("span");
      text.className = "bar-text";
      text.textContent = `${entry.label} ${percent(entry.probability)}`;
      item.append(bar, text);
      bars.append(item);
    }
  }
  return card;
}

// The server takes at most 64 files per request; the page sends any number, a few per request.
const FILES_PER_REQUEST = 16;

async function predict(files) {
  if (!files.length) return;
  const earlier = results.firstChild;  // this choice's cards go above the earlier ones, in the order chosen
  let problem = "";
  for (let start = 0; start < files.length; start += FILES_PER_REQUEST) {
    const part = files.slice(start, start + FILES_PER_REQUEST);
    const form = new FormData();
    for (const file of part) form.append("file", file, file.name);
    statusLine.textContent = `predicting ${files.length} image(s)…`;
    statusLine.classList.remove("error-text");
    try {
      const response = await fetch("/predict", { method: "POST", body: form, headers });
      const answer = await answerOf(response);
      for (const [index, prediction] of (answer.predictions || []).entries()) {
        results.insertBefore(predictionCard(prediction, part[index]), earlier);
      }
      if (!response.ok) problem = answer.detail;
    } catch (error) {
      problem = `the server did not answer (${error})`;
    }
  }
  statusLine.textContent = problem;
  statusLine.classList.toggle("error-text", problem !== "");
}

const input = document.getElementById("files");
input.addEventListener("change", () => {
  predict(Array.from(input.files));
  input.value = "";
});
const drop = document.getElementById("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  predict(Array.from(event.dataTransfer.files));
});
describeModel();
