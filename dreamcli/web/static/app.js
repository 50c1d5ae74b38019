// The page of `dream serve`: plain JavaScript, no build step, nothing from elsewhere.
"use strict";

const token = new URLSearchParams(location.search).get("token") || "";
const tiles = new Map(); // job id -> its tile element
const jobs = new Map(); // job id -> the job as the server last told it
const timings = (window.dreamTimings = { clicked: null, firstOctave: {} });
let options = null;
let upload = null;

const $ = (selector, root = document) => root.querySelector(selector);
const withToken = (path, extra = "") => `${path}?token=${encodeURIComponent(token)}${extra}`;

async function api(path, init = {}) {
  const headers = { "X-Dream-Token": token, ...(init.headers || {}) };
  const response = await fetch(path, { ...init, headers });
  const data = await response.json().catch(() => ({ error: `the server answered ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
  return data;
}

function say(text) {
  $("#message").textContent = text;
}

async function start() {
  try {
    options = await api("/api/options");
  } catch (error) {
    $("#machine").textContent = error.message;
    return;
  }
  $("#machine").textContent = `${options.model} on ${options.device} (${options.precision})`;
  for (const preset of options.presets) {
    const label = document.createElement("label");
    label.title = preset.description;
    label.innerHTML = '<input type="checkbox"> ';
    label.firstChild.value = preset.name;
    label.append(preset.name);
    $("#presets").append(label);
  }
  for (const layer of options.layers) {
    const option = new Option(layer, layer);
    $("#layers").append(option);
  }
  setupInside(); // inside.js: the explanation's layer and settings
  $("#file").addEventListener("change", () => sendPhoto($("#file").files[0]));
  $("#sample").addEventListener("click", useSample);
  $("#dream").addEventListener("click", dreamChosen);
  listen();
}

async function sendPhoto(file) {
  if (!file) return;
  say(`Uploading ${file.name}…`);
  try {
    const body = await file.arrayBuffer();
    upload = await api("/api/uploads", {
      method: "POST",
      body,
      // A header carries only ASCII: the name goes percent-encoded (Cyrillic, CJK, emoji, U+202F).
      headers: { "Content-Type": "application/octet-stream", "X-Filename": encodeURIComponent(file.name) },
    });
  } catch (error) {
    say(error.message);
    return;
  }
  showPhoto(URL.createObjectURL(file));
}

function useSample() {
  upload = { id: "sample", name: "sample.jpg" };
  showPhoto("/static/sample.jpg");
}

function showPhoto(src) {
  $("#photo").src = src;
  $("#photo").hidden = false;
  $("#photo-name").textContent = upload.width ? `${upload.name}, ${upload.width}×${upload.height}` : upload.name;
  $("#dream").disabled = false;
  $("#explain").disabled = false;
  say("Pick presets and layers, then Dream; or a layer to explain.");
}

async function dreamChosen() {
  const presets = [...document.querySelectorAll("#presets input:checked")].map((box) => box.value);
  const layers = [...$("#layers").selectedOptions].map((option) => option.value);
  if (!upload) return say("Upload a photo or use the sample first.");
  if (!presets.length && !layers.length) return say("Pick at least one preset or layer.");
  timings.clicked = performance.now();
  const requests = [
    ...presets.map((preset) => ({ upload: upload.id, preset })),
    ...layers.map((layer) => ({ upload: upload.id, layers: [layer] })),
  ];
  say("");
  for (const request of requests) await submit(request);
}

async function submit(request) {
  try {
    show(await api("/api/jobs", { method: "POST", body: JSON.stringify(request) }));
  } catch (error) {
    say(error.message);
  }
}

function listen() {
  const source = new EventSource(withToken("/api/events"));
  source.addEventListener("jobs", (event) => {
    for (const job of JSON.parse(event.data).jobs) show(job);
  });
  source.addEventListener("job", (event) => show(JSON.parse(event.data)));
  source.onerror = () => say("Lost the server; trying again…");
  source.onopen = () => say("");
}

function tileFor(job) {
  let tile = tiles.get(job.id);
  if (!tile && job.replaces && tiles.has(job.replaces)) {
    tile = tiles.get(job.replaces);
    tiles.delete(job.replaces);
    tile.dataset.preview = "0";
  }
  if (!tile) {
    tile = $("#tile").content.firstElementChild.cloneNode(true);
    $(".cancel", tile).addEventListener("click", () => api(`/api/jobs/${tile.dataset.job}/cancel`, { method: "POST" }).catch((e) => say(e.message)));
    $(".edit", tile).addEventListener("click", () => edit(tile));
    $(".settings", tile).addEventListener("submit", (event) => rerun(event, tile));
    $(".picture img", tile).addEventListener("load", () => {
      const id = tile.dataset.job;
      if (timings.firstOctave[id] === undefined) timings.firstOctave[id] = performance.now();
    });
    $("#tiles").append(tile);
  }
  tiles.set(job.id, tile);
  tile.dataset.job = job.id;
  return tile;
}

// A job only moves forward: queued, running, then one of the final states.
const ORDER = { queued: 0, running: 1, done: 2, failed: 2, cancelled: 2 };

function show(job) {
  const known = jobs.get(job.id);
  // The answer to a POST can arrive after the events of the job it made: an older state
  // (or the same final one again) never replaces a newer one.
  if (known && (ORDER[job.state] < ORDER[known.state] || (ORDER[known.state] === 2 && known.state === job.state))) return;
  jobs.set(job.id, job);
  if (job.kind !== "dream") {
    showInside(job); // inside.js: an explanation or a unit
    updateQueue();
    return;
  }
  const tile = tileFor(job);
  tile.dataset.state = job.state;
  $(".label", tile).textContent = `${job.label} · ${job.upload.name}`;
  $(".state", tile).textContent = job.state;
  $(".command", tile).textContent = job.command;
  const progress = job.octaves ? (job.octave - 1 + job.iteration / Math.max(1, job.iterations)) / job.octaves : 0;
  $("progress", tile).value = job.state === "done" ? 1 : Math.max(0, progress);
  $(".status", tile).textContent = status(job);
  $(".cancel", tile).hidden = !(job.state === "queued" || job.state === "running");
  const img = $(".picture img", tile);
  if (job.state === "done") {
    const url = withToken(`/api/jobs/${job.id}/result.png`);
    img.src = url;
    const link = $(".download", tile);
    link.href = url;
    link.download = job.download;
    link.hidden = false;
  } else {
    $(".download", tile).hidden = true;
    if (job.preview > Number(tile.dataset.preview || 0)) {
      tile.dataset.preview = String(job.preview);
      img.src = withToken(`/api/jobs/${job.id}/preview.png`, `&octave=${job.preview}`);
    } else if (!job.preview) {
      img.removeAttribute("src");
    }
  }
  updateQueue();
}

function status(job) {
  const notes = job.notes.length ? ` (${job.notes.join("; ")})` : "";
  if (job.state === "queued") return `waiting for ${waitingBefore(job)} job(s) before it`;
  if (job.state === "running") {
    return job.octaves ? `octave ${job.octave} of ${job.octaves}, step ${job.iteration} of ${job.iterations}${notes}` : "starting…";
  }
  if (job.state === "done") return `done in ${job.seconds} s${notes}`;
  if (job.state === "failed") return job.error;
  return "cancelled";
}

function waitingBefore(job) {
  return [...jobs.values()].filter((other) => other.number < job.number && (other.state === "queued" || other.state === "running")).length;
}

function updateQueue() {
  const all = [...jobs.values()];
  const running = all.filter((job) => job.state === "running").length;
  const queued = all.filter((job) => job.state === "queued").length;
  $("#queue").textContent = running || queued ? `${running} running, ${queued} queued` : "idle";
}

function edit(tile) {
  const form = $(".settings", tile);
  const job = jobs.get(tile.dataset.job);
  if (!form.hidden) {
    form.hidden = true;
    return;
  }
  const fields = $(".fields", form);
  fields.textContent = "";
  for (const field of options.fields) {
    const label = document.createElement("label");
    label.title = field.help;
    const input = document.createElement("input");
    input.name = field.name;
    const value = job.settings[field.name];
    if (field.kind === "bool") {
      input.type = "checkbox";
      input.checked = Boolean(value);
    } else {
      input.type = "number";
      input.step = field.kind === "int" ? "1" : "any";
      if (field.low !== null) input.min = field.low;
      if (field.high !== null) input.max = field.high;
      input.value = value === null ? "" : value;
    }
    label.append(field.name.replace("_", " "), input);
    fields.append(label);
  }
  form.elements.layers.value = job.settings.layers.join(" ");
  form.hidden = false;
}

async function rerun(event, tile) {
  event.preventDefault();
  const form = event.target;
  const job = jobs.get(tile.dataset.job);
  const settings = {};
  for (const field of options.fields) {
    const input = form.elements[field.name];
    if (field.kind === "bool") settings[field.name] = input.checked;
    else if (input.value === "") settings[field.name] = null;
    else settings[field.name] = field.kind === "int" ? parseInt(input.value, 10) : parseFloat(input.value);
  }
  const layers = form.elements.layers.value.trim().split(/\s+/).filter(Boolean);
  const request = { upload: job.upload.id, preset: job.preset, layers, settings, replaces: job.id };
  if (job.state === "queued" || job.state === "running") {
    await api(`/api/jobs/${job.id}/cancel`, { method: "POST" }).catch(() => {});
  }
  form.hidden = true;
  await submit(request);
}

start();
