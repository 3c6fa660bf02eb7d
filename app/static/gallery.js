// The gallery: a page over the public image API, nothing else. Uploads go create ->
// presigned PUT (XMLHttpRequest, for progress events) -> confirm.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "images.token";
// Uploads in flight at once: an album of any size goes through a few at a time.
const PARALLEL_UPLOADS = 4;
const ATTEMPTS = 5;
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
// `query` is the page request in flight: a new query aborts it, so a page of the old
// filter can never land in the new grid.
const state = { cursor: null, query: null, done: false, filters: {} };
const MiB = 1024 * 1024;
const TAG = /^[A-Za-z0-9_-]{1,50}$/;
const MAX_TAGS = 20;

// Every error the service answers carries a stable `code` (the page branches on it) and
// a `detail` for people (it shows that).
class ApiError extends Error {
  constructor(status, { detail, code } = {}) {
    super(Array.isArray(detail)
      ? detail.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ")
      : detail || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}
// Refusals worth waiting out: the service is busy, or too many uploads are unconfirmed.
const RETRIED = new Set(["unavailable", "rate_limited"]);

function token() { return localStorage.getItem(TOKEN_KEY); }

// Every call the page makes is safe to repeat (creates carry an Idempotency-Key), so
// it retries what the service says to retry: 503, 429 with Retry-After, lost connections.
// An aborted call (`signal`) is never retried: whoever aborted it wants none of it.
async function api(method, path, { body, headers = {}, signal } = {}) {
  const all = { Authorization: `Bearer ${token()}`, ...headers };
  if (body !== undefined) all["Content-Type"] = "application/json";
  for (let attempt = 1; ; attempt += 1) {
    let response;
    try {
      response = await fetch(path.replace(/^\//, ""), {
        method, headers: all, signal, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      if (attempt >= ATTEMPTS) throw new Error("The service could not be reached");
      await sleep(500 * 2 ** attempt);
      continue;
    }
    if (response.status === 204) return null;
    const payload = await response.json().catch(() => ({}));
    if (response.ok) return payload;
    const wait = Number(response.headers.get("Retry-After"));
    if (RETRIED.has(payload.code) && attempt < ATTEMPTS && !signal?.aborted) {
      await sleep(1000 * (wait || 2 ** attempt));
      continue;
    }
    if (payload.code === "unauthorized") {
      signOut("Your token was refused or has expired: sign in again.");
    }
    throw new ApiError(response.status, payload);
  }
}

// --- Sign in -------------------------------------------------------------------------

function showSignedIn(signedIn) {
  $("sign-in").hidden = signedIn;
  $("app").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
}

async function signIn(value) {
  localStorage.setItem(TOKEN_KEY, value.trim());
  try {
    await api("GET", "/images?limit=1");
  } catch (error) {
    $("sign-in-error").textContent = error.message;
    return;
  }
  $("sign-in-error").textContent = "";
  await signCookies();
  showSignedIn(true);
  resetGallery();
}

// Behind a CDN that shares the page's domain, the service offers signed cookies for the
// signed-in user's own objects: images are then fetched by their bare URLs, which stay
// the same for good (browsers keep them cached), and the cookies are renewed at half
// their life. Without (or if the offer fails), the signed URLs images carry.
const cookies = { seconds: Number(document.querySelector('meta[name="cdn-cookies"]')?.content),
                  active: false, renewal: null };
async function signCookies() {
  if (!cookies.seconds) return;
  clearTimeout(cookies.renewal);
  try {
    await api("POST", "/cdn-cookies");
    cookies.active = true;
    cookies.renewal = setTimeout(signCookies, cookies.seconds * 500);
  } catch (error) {
    cookies.active = false;
  }
}

function signOut(message) {
  localStorage.removeItem(TOKEN_KEY);
  clearTimeout(cookies.renewal);
  cookies.active = false;
  if (state.query) state.query.abort();
  showSignedIn(false);
  $("sign-in-error").textContent = message || "";
}

// --- Upload --------------------------------------------------------------------------

function putWithProgress(upload, file, progress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open(upload.method, upload.url);
    for (const [name, value] of Object.entries(upload.headers)) {
      // Browsers set Content-Length themselves (and refuse to be told); it is still signed.
      if (name.toLowerCase() !== "content-length") request.setRequestHeader(name, value);
    }
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) progress.value = event.loaded / event.total;
    };
    // 412: the URL takes one upload only, and our own earlier attempt already landed.
    request.onload = () => (request.status < 300 || request.status === 412 ? resolve()
      : reject(new Error(`Storage refused the upload (HTTP ${request.status})`)));
    request.onerror = () => reject(new Error("Storage could not be reached (network or CORS)"));
    request.send(file);
  });
}

// What the page was served with (app/http/pages.py, from the service's own tables).
const served = (name) => JSON.parse(document.querySelector(`meta[name="${name}"]`).content);
// Browsers outside Apple's leave HEIC and HEIF untyped: the extension says what it is.
const contentType = (file) =>
  file.type || served("formats")[file.name.split(".").pop().toLowerCase()] || "";

// The service's own bounds, from its schema (once): a file too big is refused here, with
// its size, before any request.
let limits = null;
function uploadLimits() {
  limits ??= fetch("openapi.json")
    .then((response) => response.json())
    .then((schema) => ({
      size: schema.components.schemas.CreateImageRequest.properties.size.maximum,
    }))
    .catch(() => { limits = null; return { size: Infinity }; });
  return limits;
}

const megabytes = (bytes) => `${(bytes / MiB).toFixed(1)} MB`;

// What the upload area says about every file of this batch, or why it cannot.
function batchDetails() {
  const title = $("upload-title-field").value.trim();
  const tags = $("upload-tags-field").value.split(/[\s,]+/).filter(Boolean);
  const bad = tags.find((tag) => !TAG.test(tag));
  if (bad !== undefined) {
    throw new Error(`"${bad}" is not a tag: use letters, digits, - and _ (up to 50)`);
  }
  if (tags.length > MAX_TAGS) throw new Error(`At most ${MAX_TAGS} tags`);
  return { ...(title ? { title } : {}), tags };
}

function queueEntry(file) {
  const item = document.createElement("li");
  const name = document.createElement("span");
  const progress = document.createElement("progress");
  const status = document.createElement("span");
  name.textContent = file.name;
  progress.max = 1;
  progress.value = 0;
  status.className = "state";
  status.textContent = "Queued";
  item.append(name, progress, status);
  $("uploads").prepend(item);
  return { file, item, progress, status };
}

function fail({ item, status }, message) {
  status.textContent = message;
  item.className = "failed";
  return false;
}

async function uploadFile(entry, details, { size }) {
  const { file, item, progress, status } = entry;
  if (file.size > size) {
    return fail(entry, `Too big: ${megabytes(file.size)}; the largest upload is ${megabytes(size)}`);
  }
  if (token() === null) return fail(entry, "Not uploaded: signed out");
  // One key per file: however often the create is retried, it makes one image.
  const key = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
  try {
    status.textContent = "Preparing…";
    const created = await api("POST", "/images", {
      body: { filename: file.name, content_type: contentType(file), size: file.size, ...details },
      headers: { "Idempotency-Key": key },
    });
    status.textContent = "Uploading…";
    for (let attempt = 1; ; attempt += 1) {
      try {
        await putWithProgress(created.upload, file, progress);
        break;
      } catch (error) {
        if (attempt >= ATTEMPTS) throw error;
        await sleep(500 * 2 ** attempt);
      }
    }
    status.textContent = "Checking…";
    await api("POST", `/images/${created.image.id}/confirm`);
    progress.value = 1;
    status.textContent = "Done";
    item.className = "done";
    return true;
  } catch (error) {
    return fail(entry, error.message);
  }
}

async function uploadFiles(files) {
  let details;
  try {
    details = batchDetails();
  } catch (error) {
    $("upload-error").textContent = error.message;
    return;
  }
  $("upload-error").textContent = "";
  const queue = [...files].map(queueEntry);
  const bounds = await uploadLimits();
  let uploaded = 0;
  async function worker() {
    while (queue.length) {
      if (await uploadFile(queue.shift(), details, bounds)) uploaded += 1;
    }
  }
  await Promise.all(Array.from({ length: Math.min(PARALLEL_UPLOADS, queue.length) }, worker));
  if (uploaded) resetGallery();
}

// --- Gallery -------------------------------------------------------------------------

function resetGallery() {
  if (state.query) state.query.abort();
  state.query = null;
  state.cursor = null;
  state.done = false;
  $("grid").replaceChildren();
  $("gallery-status").textContent = "";
  loadMore();
}

async function loadMore() {
  if (state.query || state.done || token() === null) return;
  const query = new AbortController();
  state.query = query;
  const params = new URLSearchParams({ limit: "24", ...state.filters });
  if (state.cursor) params.set("cursor", state.cursor);
  try {
    // One call per page: each image carries its placeholder and its thumb's URL.
    const page = await api("GET", `/images?${params}`, { signal: query.signal });
    if (query.signal.aborted) return; // answered just as a new query began: not ours
    for (const image of page.items) $("grid").append(tile(image));
    state.cursor = page.next_cursor;
    state.done = !page.next_cursor;
    $("gallery-error").textContent = "";
    $("gallery-status").textContent = state.done
      ? ($("grid").children.length ? "" : "No images yet.") : "";
  } catch (error) {
    if (!query.signal.aborted) $("gallery-error").textContent = error.message;
    return; // scrolling (the observer) asks again; no loop on a failing service
  } finally {
    if (state.query === query) state.query = null;
  }
  if (!state.done && isVisible($("more"))) loadMore();
}

function isVisible(element) {
  const box = element.getBoundingClientRect();
  return box.top < window.innerHeight;
}

// --- Placeholders: BlurHash (https://blurha.sh), decoded to a tiny picture -------------

const BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";
const base83 = (text) => [...text].reduce((value, c) => value * 83 + BASE83.indexOf(c), 0);
const toLinear = (v) => (v / 255 <= 0.04045 ? v / 255 / 12.92 : ((v / 255 + 0.055) / 1.055) ** 2.4);
const toSrgb = (v) => {
  const c = Math.max(0, Math.min(1, v));
  return Math.trunc(c <= 0.0031308 ? c * 12.92 * 255 + 0.5 : (1.055 * c ** (1 / 2.4) - 0.055) * 255 + 0.5);
};

function blurhashPixels(hash, width, height) {
  const size = base83(hash[0]);
  const nx = (size % 9) + 1;
  const ny = Math.floor(size / 9) + 1;
  const maximum = (base83(hash[1]) + 1) / 166;
  const colors = [];
  for (let i = 0; i < nx * ny; i += 1) {
    if (i === 0) {
      const v = base83(hash.slice(2, 6));
      colors.push([toLinear(v >> 16), toLinear((v >> 8) & 255), toLinear(v & 255)]);
    } else {
      const v = base83(hash.slice(4 + i * 2, 6 + i * 2));
      colors.push([Math.floor(v / 361), Math.floor(v / 19) % 19, v % 19]
        .map((q) => Math.sign(q - 9) * ((q - 9) / 9) ** 2 * maximum));
    }
  }
  const pixels = new Uint8ClampedArray(width * height * 4);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      let r = 0; let g = 0; let b = 0;
      for (let j = 0; j < ny; j += 1) {
        for (let i = 0; i < nx; i += 1) {
          const basis = Math.cos((Math.PI * x * i) / width) * Math.cos((Math.PI * y * j) / height);
          const color = colors[i + j * nx];
          r += color[0] * basis; g += color[1] * basis; b += color[2] * basis;
        }
      }
      pixels.set([toSrgb(r), toSrgb(g), toSrgb(b), 255], (y * width + x) * 4);
    }
  }
  return pixels;
}

function placeholderUrl(image) {
  if (!image.placeholder || !image.width || !image.height) return null;
  const width = 32;
  const height = Math.max(1, Math.round((32 * image.height) / image.width));
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d").putImageData(
    new ImageData(blurhashPixels(image.placeholder, width, height), width, height), 0, 0);
  return canvas.toDataURL();
}

// --- Tiles ---------------------------------------------------------------------------

// Its bytes are being checked for malware: nothing of it is served until they are clean.
const checking = (image) => image.scan.status === "pending";
const unscannable = (image) => image.scan.status === "failed" || image.scan.status === "infected";
const processing = (image) => image.variants.thumb.status === "pending" && !unscannable(image);
const url = (image, name) => {
  const signed = image.variants[name]?.url;
  return signed && cookies.active ? signed.split("?")[0] : signed;
};

function tile(image) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  const img = document.createElement("img");
  const caption = document.createElement("span");
  button.type = "button";
  button.setAttribute("aria-label", `Open ${image.title || image.filename}`);
  img.alt = image.title || image.filename;
  img.loading = "lazy";
  caption.textContent = image.title || image.filename;
  button.append(img, caption);
  item.append(button);
  item.dataset.id = image.id;
  show(item, image);
  button.addEventListener("click", () => openDetail(item.image, item));
  if (processing(image)) watch(item);
  return item;
}

function show(item, image) {
  item.image = image;
  const img = item.querySelector("img");
  const blur = placeholderUrl(image);
  // The placeholder paints at once; the thumb replaces it when it arrives.
  img.style.backgroundImage = blur ? `url(${blur})` : "";
  if (url(image, "thumb")) img.src = url(image, "thumb");
  else img.removeAttribute("src");
  // Cookies set but not reaching the CDN (another domain, blocked): the signed URL then.
  const signed = image.variants.thumb?.url;
  img.onerror = signed && img.src !== signed ? () => { img.onerror = null; img.src = signed; } : null;
  item.classList.toggle("processing", processing(image) && !checking(image));
  item.classList.toggle("checking", checking(image));
  const failed = image.variants.thumb.status === "failed" || unscannable(image);
  item.classList.toggle("no-preview", failed);
  item.title = unscannable(image) ? image.scan.reason || image.reason || ""
    : failed ? image.variants.thumb.reason : "";
}

// Images still being processed: ask again until their variants are made (or failed).
async function watch(item) {
  for (let attempt = 0; attempt < 60; attempt += 1) {
    await sleep(attempt < 10 ? 500 : 2000);
    if (!item.isConnected) return; // filtered, reloaded or deleted meanwhile
    try {
      const image = await api("GET", `/images/${item.dataset.id}`);
      if (!processing(image)) { show(item, image); return; }
    } catch (error) {
      return;
    }
  }
}

// --- Detail --------------------------------------------------------------------------

function openDetail(image, item) {
  $("detail-image").src = url(image, "preview") || url(image, "thumb") || "";
  $("detail-image").alt = image.title || image.filename;
  $("detail-title").textContent = image.title || image.filename;
  $("detail-description").textContent = image.description || "";
  $("detail-filename").textContent = image.filename;
  $("detail-size").textContent = `${image.size.toLocaleString()} bytes`;
  $("detail-dimensions").textContent = `${image.width} × ${image.height}`;
  $("detail-tags").textContent = image.tags.join(", ") || "–";
  $("detail-uploaded").textContent = new Date(image.uploaded_at).toLocaleString();
  $("detail-download").removeAttribute("href");
  $("detail-error").textContent = "";
  // The original, as a short-lived link fetched only when someone may want it.
  api("GET", `/images/${image.id}/download`)
    .then((link) => { $("detail-download").href = link.url; })
    .catch((error) => { $("detail-error").textContent = error.message; });
  // Every variant the service is configured to make, each as its own link once made.
  $("detail-variants").replaceChildren(...served("variants").map((name) => {
    const variant = image.variants[name];
    const entry = document.createElement(variant?.url ? "a" : "span");
    entry.textContent = name;
    entry.dataset.variant = name;
    if (variant?.url) {
      entry.href = variant.url;
      entry.title = `${variant.width} × ${variant.height}, ${variant.bytes.toLocaleString()} bytes`;
    } else {
      entry.title = variant ? `${variant.status}${variant.reason ? `: ${variant.reason}` : ""}` : "";
    }
    return entry;
  }));
  $("detail-delete").onclick = async () => {
    if (!window.confirm(`Delete ${image.filename}? This cannot be undone.`)) return;
    try {
      await api("DELETE", `/images/${image.id}`);
      item.remove();
      $("detail").close();
    } catch (error) {
      $("detail-error").textContent = error.message;
    }
  };
  $("detail").showModal();
}

// --- Wiring --------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  const demo = document.querySelector('meta[name="demo-token"]');
  if (demo) {
    $("use-demo").hidden = false;
    $("use-demo").addEventListener("click", () => signIn(demo.content));
  }
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("token").value);
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("files").addEventListener("change", (event) => {
    uploadFiles(event.target.files);
    event.target.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    uploadFiles(event.dataTransfer.files);
  });
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    state.filters = {};
    if ($("filter-type").value) state.filters.content_type = $("filter-type").value;
    if ($("filter-tag").value) state.filters.tag = $("filter-tag").value;
    resetGallery();
  });
  new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadMore();
  }).observe($("more"));
  if (token()) signIn(token()); else showSignedIn(false);
});
