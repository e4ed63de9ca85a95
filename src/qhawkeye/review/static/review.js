// The qhawkeye review page: asks one reviewer, pair after pair, "can you see a difference?".
//
// Every answer is POSTed at once (the server commits it before replying), then the page moves to the
// reviewer's next unjudged pair. Actions run one after another through a queue, so fast key presses apply
// in order. The reviewer's name comes from ?reviewer=, else from localStorage (typed once), else from the
// server's default, else the page asks. Both images share one zoom and pan (wheel, drag, +/-, 0).
"use strict";

const STORAGE_KEY = "qhawkeye.review.reviewer";
const LABELS = {
  perceptible: "yes, I can see a difference",
  imperceptible: "no, they look the same",
};
const ZOOM_MIN = 0.25;
const ZOOM_MAX = 64;
const ZOOM_STEP = 1.5;

const $ = (id) => document.getElementById(id);
const state = {
  reviewer: null,
  pairs: [],
  index: 0,
  progress: { reviewed: 0, total: 0 },
  queue: Promise.resolve(),
  view: { zoom: 1, panX: 0, panY: 0 }, // zoom relative to "fit"; pan in CSS px from the centred position
  loadToken: 0,
};

// ------------------------------------------------------------------------------------------ server

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail || data);
    throw new Error(`${response.status}: ${detail}`);
  }
  return data;
}

function enqueue(task) {
  state.queue = state.queue.then(task).catch((err) => setStatus(`not saved: ${err.message}`, true));
  return state.queue;
}

// ------------------------------------------------------------------------------------------ reviewer

function showLogin(message = "") {
  $("review").hidden = true;
  $("who").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("reviewer-input").value = state.reviewer || "";
  $("reviewer-input").focus();
}

async function login(name) {
  let data;
  try {
    data = await api(`/api/pairs?reviewer=${encodeURIComponent(name)}`);
  } catch (err) {
    showLogin(err.message);
    return false;
  }
  state.reviewer = data.reviewer;
  state.pairs = data.pairs;
  state.progress = data.progress;
  $("reviewer-name").textContent = data.reviewer;
  $("who").hidden = false;
  $("login").hidden = true;
  if (state.pairs.length === 0) {
    $("empty").hidden = false;
    renderProgress();
    return true;
  }
  $("review").hidden = false;
  const resume = nextUndecided(0);
  goTo(resume === -1 ? 0 : resume);
  if (resume === -1) setStatus(allDoneMessage());
  return true;
}

async function onLoginSubmit(event) {
  event.preventDefault();
  const name = $("reviewer-input").value.trim();
  if (await login(name)) {
    document.activeElement.blur(); // the keys belong to the review now, not to the hidden name field
    localStorage.setItem(STORAGE_KEY, state.reviewer);
    const url = new URL(location.href);
    url.searchParams.delete("reviewer"); // the typed name wins from now on, reload included
    history.replaceState(null, "", url);
  }
}

// ------------------------------------------------------------------------------------------ pairs

function nextUndecided(from) {
  const n = state.pairs.length;
  for (let k = 0; k < n; k++) {
    const i = (from + k) % n;
    if (!state.pairs[i].decision) return i;
  }
  return -1;
}

function allDoneMessage() {
  return `All ${state.pairs.length} pairs judged. Use ← → to revisit an answer.`;
}

function goTo(index) {
  state.index = Math.max(0, Math.min(index, state.pairs.length - 1));
  state.view = { zoom: 1, panX: 0, panY: 0 };
  const pair = state.pairs[state.index];
  $("position").textContent = `${state.index + 1} of ${state.pairs.length}`;
  $("pair-id").textContent = pair.id;
  $("degradation").textContent = pair.degradation || "unknown";
  loadImages(pair);
  renderDecision();
  renderProgress();
  setStatus("");
}

function renderDecision() {
  const decision = state.pairs[state.index].decision;
  const label = $("current-decision");
  label.textContent = decision ? LABELS[decision] : "not judged yet";
  label.dataset.decision = decision || "";
  for (const button of document.querySelectorAll("#answers button")) {
    button.classList.toggle("chosen", button.dataset.decision === decision);
  }
}

function renderProgress() {
  const { reviewed, total } = state.progress;
  $("progress").max = Math.max(total, 1);
  $("progress").value = reviewed;
  $("progress-text").textContent = `${reviewed} of ${total} reviewed`;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function decide(decision) {
  return enqueue(async () => {
    const pair = state.pairs[state.index];
    const data = await api("/api/decision", { pair_id: pair.id, reviewer: state.reviewer, decision });
    pair.decision = decision;
    state.progress = data.progress;
    const next = nextUndecided(state.index + 1);
    goTo(next === -1 ? state.index + 1 : next);
    if (next === -1) setStatus(allDoneMessage());
  });
}

function undo() {
  return enqueue(async () => {
    const data = await api("/api/undo", { reviewer: state.reviewer });
    state.progress = data.progress;
    if (!data.undone) {
      renderProgress();
      setStatus("nothing to undo");
      return;
    }
    const index = state.pairs.findIndex((p) => p.id === data.undone.pair_id);
    if (index !== -1) {
      state.pairs[index].decision = data.undone.decision;
      goTo(index);
    }
    setStatus(`undid your answer on ${data.undone.pair_id}`);
  });
}

function move(step) {
  return enqueue(async () => goTo(state.index + step));
}

// ------------------------------------------------------------------------------------------ zoom and pan

function loadImages(pair) {
  const token = ++state.loadToken;
  const id = encodeURIComponent(pair.id);
  for (const side of ["original", "degraded"]) {
    const img = $(`img-${side}`);
    img.style.visibility = "hidden";
    img.onload = () => token === state.loadToken && renderView();
    img.onerror = () => token === state.loadToken && setStatus(`the ${side} image could not be loaded`, true);
    img.src = `/image/${id}/${side}`;
  }
}

function geometry() {
  const original = $("img-original");
  const box = $("viewport-original");
  const w = original.naturalWidth;
  const h = original.naturalHeight;
  const vw = box.clientWidth;
  const vh = box.clientHeight;
  if (!w || !h || !vw || !vh) return null;
  const scale = Math.min(vw / w, vh / h) * state.view.zoom;
  const x = (vw - w * scale) / 2 + state.view.panX;
  const y = (vh - h * scale) / 2 + state.view.panY;
  return { w, h, vw, vh, scale, x, y };
}

function renderView() {
  const g = geometry();
  if (!g) return;
  // The degraded copy is drawn at the original's size, so the two line up pixel for pixel.
  for (const side of ["original", "degraded"]) {
    const img = $(`img-${side}`);
    img.style.width = `${g.w}px`;
    img.style.height = `${g.h}px`;
    img.style.transform = `translate(${g.x}px, ${g.y}px) scale(${g.scale})`;
    if (img.complete && img.naturalWidth) img.style.visibility = "visible";
  }
  $("viewers").classList.toggle("pixelated", g.scale >= 2);
  $("zoom-level").textContent = state.view.zoom === 1 ? "fit" : `${Math.round(g.scale * 100)}%`;
}

function zoomAt(factor, cx, cy) {
  const g = geometry();
  if (!g) return;
  const zoom = Math.min(ZOOM_MAX, Math.max(ZOOM_MIN, state.view.zoom * factor));
  const ratio = zoom / state.view.zoom;
  // Keep the image point under (cx, cy) where it is: x' = cx - (cx - x) * ratio.
  const x = cx - (cx - g.x) * ratio;
  const y = cy - (cy - g.y) * ratio;
  const scale = g.scale * ratio;
  state.view = { zoom, panX: x - (g.vw - g.w * scale) / 2, panY: y - (g.vh - g.h * scale) / 2 };
  renderView();
}

function zoomCentre(factor) {
  const box = $("viewport-original");
  zoomAt(factor, box.clientWidth / 2, box.clientHeight / 2);
}

function fit() {
  state.view = { zoom: 1, panX: 0, panY: 0 };
  renderView();
}

function bindViewport(box) {
  box.addEventListener("wheel", (event) => {
    event.preventDefault();
    const rect = box.getBoundingClientRect();
    const factor = Math.pow(1.0015, -Math.max(-300, Math.min(300, event.deltaY)));
    zoomAt(factor, event.clientX - rect.left, event.clientY - rect.top);
  }, { passive: false });
  let last = null;
  box.addEventListener("pointerdown", (event) => {
    last = { x: event.clientX, y: event.clientY };
    box.setPointerCapture(event.pointerId);
    box.classList.add("panning");
  });
  box.addEventListener("pointermove", (event) => {
    if (!last) return;
    state.view.panX += event.clientX - last.x;
    state.view.panY += event.clientY - last.y;
    last = { x: event.clientX, y: event.clientY };
    renderView();
  });
  const stop = () => {
    last = null;
    box.classList.remove("panning");
  };
  box.addEventListener("pointerup", stop);
  box.addEventListener("pointercancel", stop);
}

// ------------------------------------------------------------------------------------------ controls

const KEYS = {
  y: () => decide("perceptible"),
  1: () => decide("perceptible"),
  n: () => decide("imperceptible"),
  2: () => decide("imperceptible"),
  u: undo,
  ArrowRight: () => move(1),
  ArrowLeft: () => move(-1),
  "+": () => zoomCentre(ZOOM_STEP),
  "=": () => zoomCentre(ZOOM_STEP),
  "-": () => zoomCentre(1 / ZOOM_STEP),
  0: fit,
};

function onKey(event) {
  if ($("review").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest("input, textarea, select")) return;
  const action = KEYS[event.key.length === 1 ? event.key.toLowerCase() : event.key];
  if (!action) return;
  event.preventDefault();
  action();
}

function bindControls() {
  document.addEventListener("keydown", onKey);
  $("login-form").addEventListener("submit", onLoginSubmit);
  $("change-reviewer").addEventListener("click", () => showLogin());
  $("answer-perceptible").addEventListener("click", () => decide("perceptible"));
  $("answer-imperceptible").addEventListener("click", () => decide("imperceptible"));
  $("undo").addEventListener("click", undo);
  $("prev").addEventListener("click", () => move(-1));
  $("next").addEventListener("click", () => move(1));
  $("zoom-in").addEventListener("click", () => zoomCentre(ZOOM_STEP));
  $("zoom-out").addEventListener("click", () => zoomCentre(1 / ZOOM_STEP));
  $("zoom-fit").addEventListener("click", fit);
  bindViewport($("viewport-original"));
  bindViewport($("viewport-degraded"));
  window.addEventListener("resize", renderView);
}

async function start() {
  bindControls();
  try {
    const info = await api("/api/info");
    const name = new URLSearchParams(location.search).get("reviewer")
      || localStorage.getItem(STORAGE_KEY) || info.reviewer_default;
    if (name) await login(name);
    else showLogin();
  } catch (err) {
    $("fatal").textContent = `The review server did not answer: ${err.message}`;
    $("fatal").hidden = false;
  }
}

start();
