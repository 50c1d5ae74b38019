// The page's "Inside the network": one photo explained at one layer (its grid of cells, its
// neuron groups, the top classes), a cell's strongest channels, and a channel's unit with
// examples from this session's photos.  Uses app.js's $, api, withToken, say, options, upload.
"use strict";

const panels = new Map(); // explanation job id -> its panel
const unitShown = new Map(); // explanation job id -> the number of the unit job its panel shows
const rendered = new Set(); // job ids whose files are on the page already

function setupInside() {
  for (const layer of options.layers) {
    $("#explain-layer").append(new Option(layer, layer, false, layer === options.default_layer));
  }
  addFields($("#explain-fields"), options.explain);
  addFields($("#unit-fields"), options.units);
  $("#explain").addEventListener("click", explainChosen);
}

function addFields(box, fields) {
  for (const field of fields) {
    const label = document.createElement("label");
    let input;
    if (field.kind === "choice") {
      input = document.createElement("select");
      for (const choice of field.choices) input.append(new Option(choice, choice, false, choice === field.default));
    } else {
      input = document.createElement("input");
      if (field.kind === "bool") {
        input.type = "checkbox";
        input.checked = field.default;
      } else {
        input.type = "number";
        input.step = "1";
        input.min = "0";
        if (field.high !== null) input.max = field.high;
        input.value = field.default;
      }
    }
    input.name = field.name;
    label.append(field.name.replace("_", " "), input);
    box.append(label);
  }
}

// The values that differ from the defaults: the server builds the options from these alone.
function changed(box, fields) {
  const out = {};
  for (const field of fields) {
    const input = box.querySelector(`[name="${field.name}"]`);
    let value = input.value;
    if (field.kind === "bool") value = input.checked;
    else if (field.kind === "int") {
      if (value.trim() === "") continue;
      value = Number(value);
    }
    if (value !== field.default) out[field.name] = value;
  }
  return out;
}

async function explainChosen() {
  if (!upload) return say("Upload a photo or use the sample first.");
  const request = { upload: upload.id, layer: $("#explain-layer").value, options: changed($("#explain-fields"), options.explain) };
  say("");
  try {
    show(await api("/api/explanations", { method: "POST", body: JSON.stringify(request) }));
  } catch (error) {
    say(error.message);
  }
}

const fileOf = (job, name) => withToken(`/api/jobs/${job.id}/files/${encodeURIComponent(name)}`);
const cancelJob = (job) => api(`/api/jobs/${job.id}/cancel`, { method: "POST" }).catch((e) => say(e.message));

function showInside(job) {
  if (job.kind === "explain") showExplanation(job);
  else if (job.kind === "unit") showUnit(job);
}

function progressOf(job) {
  if (job.state === "done") return 1;
  return job.stage === "pictures" && job.total ? job.done / job.total : 0;
}

function insideStatus(job) {
  const notes = job.notes.length ? ` (${job.notes.join("; ")})` : "";
  if (job.state === "queued") return `waiting for ${waitingBefore(job)} job(s) before it`;
  if (job.state === "running") {
    if (!job.stage) return `starting…${notes}`;
    const left = job.left === null ? "" : `, about ${duration(job.left)} left`;
    return `${job.stage} ${job.done} of ${job.total}${left}${notes}`;
  }
  if (job.state === "done") return `done in ${job.seconds} s${notes}`;
  if (job.state === "failed") return job.error;
  return "cancelled";
}

function duration(seconds) {
  return seconds >= 90 ? `${Math.round(seconds / 60)} min` : `${Math.max(1, Math.round(seconds))} s`;
}

function showExplanation(job) {
  let panel = panels.get(job.id);
  if (!panel) {
    panel = $("#explanation").content.firstElementChild.cloneNode(true);
    panel.dataset.job = job.id;
    $(".cancel", panel).addEventListener("click", () => cancelJob(job));
    $(".fade", panel).addEventListener("input", (event) => $(".cells", panel).style.setProperty("--shown", event.target.value));
    $("#explanations").prepend(panel);
    panels.set(job.id, panel);
  }
  panel.dataset.state = job.state;
  $(".label", panel).textContent = `Inside ${job.label}`;
  $(".state", panel).textContent = job.state;
  $(".command", panel).textContent = job.command;
  $("progress", panel).value = progressOf(job);
  $(".status", panel).textContent = insideStatus(job);
  $(".cancel", panel).hidden = !(job.state === "queued" || job.state === "running");
  const poster = $(".download", panel);
  poster.hidden = job.state !== "done";
  if (job.state === "done") {
    poster.href = fileOf(job, "poster.png");
    poster.download = job.download;
  }
  if (job.state === "done" && !rendered.has(job.id)) {
    rendered.add(job.id);
    api(`/api/jobs/${job.id}/files/explanation.json`)
      .then((data) => drawExplanation(panel, job, data))
      .catch((error) => ($(".status", panel).textContent = error.message));
  }
}

function attributed(attribution) {
  return Object.entries(attribution)
    .map(([name, value]) => `${name.split(",")[0]} ${value >= 0 ? "+" : ""}${value.toPrecision(3)}`)
    .join(", ");
}

function drawExplanation(panel, job, data) {
  const [rows, cols] = data.explain.grid;
  const classes = data.classes.map((c) => `${c.name.split(",")[0]} (${c.probability.toFixed(2)})`).join(", ");
  $(".classes", panel).textContent = classes ? `Top classes: ${classes}.` : "No classes (this layer has no head after it).";
  $(".photo", panel).src = fileOf(job, "photo.png");
  const cells = $(".cells", panel);
  cells.style.gridTemplateColumns = `repeat(${cols}, 1fr)`;
  cells.style.gridTemplateRows = `repeat(${rows}, 1fr)`;
  cells.textContent = "";
  data.cells.forEach((cell, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "cell";
    button.title = `cell ${cell.row},${cell.col}: ${attributed(cell.attribution)}`;
    const img = document.createElement("img");
    img.alt = `cell ${cell.row},${cell.col}`;
    img.src = fileOf(job, `cell${i}.png`);
    button.append(img);
    button.addEventListener("click", () => chooseCell(panel, job, data, i));
    cells.append(button);
  });
  const sizes = data.groups.list.map((g) => g.size);
  const total = sizes.reduce((a, b) => a + b, 0) || 1;
  $(".groups-title", panel).textContent = `${data.groups.list.length} neuron groups (together ${(100 * data.groups.share).toFixed(0)}% of the activation)`;
  const groups = $(".groups", panel);
  groups.textContent = "";
  data.groups.list.forEach((group, k) => {
    const figure = document.createElement("figure");
    figure.className = "group";
    for (const [name, alt] of [[`group${k}_map.png`, "where it is"], [`group${k}.png`, "what it is"]]) {
      const img = document.createElement("img");
      img.src = fileOf(job, name);
      img.alt = `group ${group.group}: ${alt}`;
      figure.append(img);
    }
    const caption = document.createElement("figcaption");
    caption.className = "small";
    caption.textContent = `${group.group}: ${((100 * group.size) / total).toFixed(0)}% of the groups' activation; attribution: ${attributed(group.attribution)}. Channels: `;
    for (const channel of group.channels) caption.append(channelLink(panel, job, channel), " ");
    figure.append(caption);
    groups.append(figure);
  });
  $(".result", panel).hidden = false;
  chooseCell(panel, job, data, data.cell.row * cols + data.cell.col);
}

function channelLink(panel, job, channel) {
  const link = document.createElement("button");
  link.type = "button";
  link.className = "link";
  link.textContent = String(channel);
  link.addEventListener("click", () => askUnit(panel, job, channel));
  return link;
}

function chooseCell(panel, job, data, i) {
  const cell = data.cells[i];
  [...$(".cells", panel).children].forEach((button, j) => button.classList.toggle("chosen", j === i));
  $(".cell-title", panel).textContent = `Cell ${cell.row},${cell.col}`;
  $(".cell-picture", panel).src = fileOf(job, `cell${i}.png`);
  const attribution = attributed(cell.attribution);
  $(".cell-text", panel).textContent = `Activation ${cell.norm.toPrecision(3)} (its picture reaches cosine ${cell.cosine.toFixed(2)})${attribution ? `; attribution: ${attribution}` : ""}.`;
  const hinton = $(".hinton", panel);
  hinton.textContent = "";
  const most = Math.max(...cell.channels.map((c) => Math.abs(c.value)), 1e-12);
  for (const c of cell.channels) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "channel";
    button.dataset.channel = c.channel;
    button.title = `channel ${c.channel}: ${c.value >= 0 ? "+" : ""}${c.value.toPrecision(4)}`;
    const square = document.createElement("span");
    square.className = c.value >= 0 ? "square positive" : "square negative";
    const side = Math.max(3, 34 * Math.sqrt(Math.abs(c.value) / most)); // area by magnitude
    square.style.width = square.style.height = `${side}px`;
    const number = document.createElement("span");
    number.className = "small";
    number.textContent = String(c.channel);
    button.append(square, number);
    button.addEventListener("click", () => askUnit(panel, job, c.channel));
    hinton.append(button);
  }
}

async function askUnit(panel, job, channel) {
  const request = { layer: job.about.layer, channel, explanation: job.id, options: changed($("#unit-fields"), options.units) };
  const area = $(".unit", panel);
  area.hidden = false;
  $(".unit-label", panel).textContent = `${job.about.layer} unit ${channel}`;
  $(".unit-status", panel).textContent = "asking…";
  try {
    show(await api("/api/units", { method: "POST", body: JSON.stringify(request) }));
  } catch (error) {
    $(".unit-status", panel).textContent = error.message;
  }
}

function showUnit(job) {
  const panel = panels.get(job.about.explanation);
  if (!panel || (unitShown.get(panel.dataset.job) || 0) > job.number) return; // a newer unit is shown there
  unitShown.set(panel.dataset.job, job.number);
  const area = $(".unit", panel);
  if (area.dataset.job !== job.id) {
    area.dataset.job = job.id;
    $(".unit-pictures", area).textContent = "";
    $(".examples", area).textContent = "";
    $(".unit-about", area).textContent = "";
    $(".unit-cancel", area).onclick = () => cancelJob(job);
  }
  area.hidden = false;
  area.dataset.state = job.state;
  $(".unit-label", area).textContent = job.label;
  $(".unit-state", area).textContent = job.state;
  $("progress", area).value = progressOf(job);
  $(".unit-status", area).textContent = insideStatus(job);
  $(".unit-command", area).textContent = job.command;
  $(".unit-cancel", area).hidden = !(job.state === "queued" || job.state === "running");
  if (job.state === "done" && !rendered.has(job.id)) {
    rendered.add(job.id);
    api(`/api/jobs/${job.id}/files/unit.json`)
      .then((unit) => area.dataset.job === job.id && drawUnit(area, job, unit))
      .catch((error) => ($(".unit-status", area).textContent = error.message));
  }
}

function figure(src, caption, side) {
  const box = document.createElement("figure");
  const img = document.createElement("img");
  img.src = src;
  img.alt = caption;
  img.width = img.height = side;
  const text = document.createElement("figcaption");
  text.className = "small";
  text.textContent = caption;
  box.append(img, text);
  return box;
}

function drawUnit(area, job, unit) {
  const pictures = $(".unit-pictures", area);
  const mean = (name) => unit.values[name].mean.toPrecision(3);
  pictures.append(figure(fileOf(job, unit.pictures.feature), `feature picture (mean ${mean("feature")})`, 160));
  for (const name of Object.keys(unit.pictures).filter((n) => n.startsWith("diverse")).sort()) {
    pictures.append(figure(fileOf(job, unit.pictures[name]), `diverse ${name.slice(7)} (mean ${mean(name)})`, 112));
  }
  pictures.append(figure(fileOf(job, unit.pictures.negative), `negative (mean ${mean("negative")})`, 112));
  const made = unit.cached ? "pictured earlier in this session (no new picture)" : "pictured now";
  $(".unit-about", area).textContent = `Channel ${unit.channel} of ${unit.channels}, ${made}. Its strongest examples in ${unit.photos} photo(s) of this session (${unit.views} views: each photo and its corners), with its map over the photo:`;
  const table = $(".examples", area);
  const head = table.insertRow();
  for (const title of ["#", "crop", "map", "activation", "photo"]) head.append(Object.assign(document.createElement("th"), { textContent: title }));
  unit.examples.forEach((example, i) => {
    const row = table.insertRow();
    row.className = "example";
    row.insertCell().textContent = String(i + 1);
    for (const name of [example.crop, example.map]) {
      const img = document.createElement("img");
      img.src = fileOf(job, name);
      img.alt = `example ${i + 1} from ${example.photo}`;
      row.insertCell().append(img);
    }
    row.insertCell().textContent = example.value.toPrecision(4);
    const where = row.insertCell();
    where.append(example.photo, Object.assign(document.createElement("div"), { className: "small", textContent: example.view }));
  });
}
