// The search page: plain DOM and fetch, no build step and nothing from outside this server.
"use strict";

const $ = (id) => document.getElementById(id);
let queryFile = null; // the File dropped or chosen as query: an image or a sound
let queryIsSound = false;

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

// With an API key set, a 401 asks for the key once: POST /login sets an HttpOnly session
// cookie (which the thumbnails' <img> requests carry too), then the request is retried.
let loggingIn = null;

function askForKey() {
  if (loggingIn) return loggingIn;
  loggingIn = new Promise((resolve) => {
    const form = $("login");
    form.hidden = false;
    $("key").focus();
    form.onsubmit = async (event) => {
      event.preventDefault();
      const response = await fetch("/login", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ key: $("key").value }),
      });
      if (!response.ok) {
        $("login-message").textContent = response.status === 401 ? "wrong key" : response.statusText;
        return;
      }
      $("key").value = "";
      $("login-message").textContent = "";
      form.hidden = true;
      loggingIn = null;
      resolve();
    };
  });
  return loggingIn;
}

async function call(url, options) {
  let response = await fetch(url, options);
  if (response.status === 401) {
    say("log in to search", true);
    await askForKey();
    say("");
    response = await fetch(url, options);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(body.detail)
      ? body.detail.map((d) => d.msg).join("; ")
      : body.detail || response.statusText;
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

// 75.5 -> "1:15.5"
function clock(seconds) {
  const m = Math.floor(seconds / 60);
  const digits = Number.isInteger(seconds) ? 0 : 1;
  const s = (seconds - 60 * m).toFixed(digits).padStart(digits ? 4 : 2, "0");
  return `${m}:${s}`;
}

// What a hit shows in place of a thumbnail: a picture (in a link to the file), a text's
// opening words, a player for a sound, or a video that starts at the segment.
function preview(hit) {
  if (hit.type === "audio") {
    const box = document.createElement("div");
    box.className = "sound";
    const player = document.createElement("audio");
    player.controls = true;
    player.preload = "none"; // nothing is fetched until it is played
    player.src = hit.file;
    box.append(player);
    return box;
  }
  if (hit.type === "video") {
    const player = document.createElement("video");
    player.controls = true;
    player.preload = "metadata";
    if (hit.thumbnail) player.poster = hit.thumbnail;
    // A media fragment: the browser seeks to the segment and pauses at its end.
    const range = hit.start != null ? `#t=${hit.start},${hit.end ?? ""}` : "";
    player.src = hit.file + range;
    return player;
  }
  const link = document.createElement("a");
  link.href = hit.file;
  link.target = "_blank";
  if (hit.type === "text") {
    // A text item has no picture: its opening words stand in for the thumbnail.
    const body = document.createElement("div");
    body.className = "text-item";
    body.textContent = hit.text || hit.path;
    link.append(body);
  } else {
    const img = document.createElement("img");
    img.src = hit.thumbnail;
    img.alt = hit.text || hit.path;
    img.loading = "lazy";
    link.append(img);
  }
  return link;
}

function show(results) {
  const grid = $("results");
  grid.replaceChildren();
  for (const hit of results) {
    const card = document.createElement("figure");
    card.className = "hit";
    card.dataset.id = hit.id;
    card.dataset.path = hit.path;
    card.dataset.type = hit.type;
    const meta = document.createElement("figcaption");
    meta.className = "meta";
    const path = document.createElement("div");
    path.className = "path";
    path.title = path.textContent = hit.path;
    meta.append(path);
    if (hit.start != null) {
      const range = document.createElement("div");
      range.className = "range";
      range.textContent = `${clock(hit.start)}–${clock(hit.end ?? hit.start)}`;
      meta.append(range);
    }
    if (hit.transcript) {
      const said = document.createElement("q");
      said.className = "transcript";
      said.textContent = hit.transcript;
      meta.append(said);
    }
    const score = document.createElement("div");
    score.className = "score";
    score.textContent = `score ${hit.score.toFixed(3)}`;
    meta.append(score);
    const more = document.createElement("button");
    more.className = "secondary more";
    more.type = "button";
    more.textContent = "more like this";
    more.addEventListener("click", () => search({ like: hit.id }));
    card.append(preview(hit), meta, more);
    grid.append(card);
  }
  say(results.length ? `${results.length} results` : "no results");
}

async function search({ like } = {}) {
  const text = $("q").value.trim();
  if (!text && !queryFile && like === undefined) {
    say("type a query or drop an image or a sound", true);
    return;
  }
  say("searching…");
  try {
    let body;
    if (queryFile || like !== undefined) {
      const form = new FormData();
      if (text) form.append("text", text);
      if (queryFile) form.append(queryIsSound ? "audio" : "file", queryFile);
      if (like !== undefined) form.append("like", like);
      form.append("k", "24");
      body = await call("/search", { method: "POST", body: form });
    } else {
      body = await call(`/search?k=24&q=${encodeURIComponent(text)}`);
    }
    show(body.results);
  } catch (error) {
    say(error.message, true);
  }
}

// The declared type only picks the preview and the form field; the server reads the bytes.
function setQueryFile(file) {
  const sound = Boolean(file) && /^(audio|video)\//.test(file.type);
  if (!file || !(sound || file.type.startsWith("image/"))) {
    say("that is neither an image nor a sound file", true);
    return;
  }
  clearQueryFile();
  queryFile = file;
  queryIsSound = sound;
  const preview = $(sound ? "query-audio" : "query-image");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("clear-image").hidden = false;
  $("drop-text").hidden = true;
  search();
}

function clearQueryFile() {
  queryFile = null;
  queryIsSound = false;
  for (const id of ["query-image", "query-audio"]) {
    const preview = $(id);
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.removeAttribute("src");
    preview.hidden = true;
  }
  $("clear-image").hidden = true;
  $("drop-text").hidden = false;
}

async function classify(event) {
  event.preventDefault();
  const out = $("labels-out");
  out.replaceChildren();
  if (!queryFile) {
    say("drop or choose an image or a sound to classify first", true);
    return;
  }
  const form = new FormData();
  form.append("file", queryFile);
  form.append("labels", $("labels").value);
  try {
    const body = await call("/classify", { method: "POST", body: form });
    for (const { label, probability } of body.labels) {
      const li = document.createElement("li");
      li.textContent = `${label} — ${(100 * probability).toFixed(1)}%`;
      out.append(li);
    }
  } catch (error) {
    say(error.message, true);
  }
}

async function status() {
  try {
    const h = await call("/healthz");
    $("status").textContent = `${h.items} items · model ${h.model}`;
  } catch (error) {
    $("status").textContent = "server not reachable";
  }
}

$("search").addEventListener("submit", (e) => {
  e.preventDefault();
  search();
});
$("file").addEventListener("change", (e) => setQueryFile(e.target.files[0]));
$("clear-image").addEventListener("click", clearQueryFile);
$("classify").addEventListener("submit", classify);
const drop = $("drop");
drop.addEventListener("dragover", (e) => {
  e.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  setQueryFile(e.dataTransfer.files[0]);
});
drop.addEventListener("keydown", (e) => {
  if (e.key === "Enter" || e.key === " ") $("file").click();
});
status();
