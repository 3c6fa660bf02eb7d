// The gallery: a page over the public image API, nothing else. Uploads go create ->
// presigned PUT (XMLHttpRequest, for progress events) -> confirm.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "images.token";
const state = { cursor: null, loading: false, done: false, filters: {} };

class ApiError extends Error {
  constructor(status, detail) {
    super(Array.isArray(detail)
      ? detail.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ")
      : detail || `HTTP ${status}`);
    this.status = status;
  }
}

function token() { return localStorage.getItem(TOKEN_KEY); }

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path.replace(/^\//, ""), {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) {
    if (response.status === 401) signOut("Your token was refused or has expired.");
    throw new ApiError(response.status, payload.detail);
  }
  return payload;
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
  showSignedIn(true);
  resetGallery();
}

function signOut(message) {
  localStorage.removeItem(TOKEN_KEY);
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
    request.onload = () => (request.status < 300 ? resolve()
      : reject(new Error(`Storage refused the upload (HTTP ${request.status})`)));
    request.onerror = () => reject(new Error("Storage could not be reached (network or CORS)"));
    request.send(file);
  });
}

async function uploadFile(file) {
  const item = document.createElement("li");
  const name = document.createElement("span");
  const progress = document.createElement("progress");
  const status = document.createElement("span");
  name.textContent = file.name;
  progress.max = 1;
  progress.value = 0;
  status.className = "state";
  status.textContent = "Preparing…";
  item.append(name, progress, status);
  $("uploads").prepend(item);
  try {
    const created = await api("POST", "/images", {
      filename: file.name, content_type: file.type, size: file.size,
    });
    status.textContent = "Uploading…";
    await putWithProgress(created.upload, file, progress);
    status.textContent = "Checking…";
    await api("POST", `/images/${created.image.id}/confirm`);
    progress.value = 1;
    status.textContent = "Done";
    item.className = "done";
    return true;
  } catch (error) {
    status.textContent = error.message;
    item.className = "failed";
    return false;
  }
}

async function uploadFiles(files) {
  const results = await Promise.all([...files].map(uploadFile));
  if (results.some(Boolean)) resetGallery();
}

// --- Gallery -------------------------------------------------------------------------

function resetGallery() {
  state.cursor = null;
  state.done = false;
  $("grid").replaceChildren();
  $("gallery-status").textContent = "";
  loadMore();
}

async function loadMore() {
  if (state.loading || state.done || token() === null) return;
  state.loading = true;
  const query = new URLSearchParams({ limit: "24", ...state.filters });
  if (state.cursor) query.set("cursor", state.cursor);
  try {
    const page = await api("GET", `/images?${query}`);
    for (const image of page.items) $("grid").append(await tile(image));
    state.cursor = page.next_cursor;
    state.done = !page.next_cursor;
    $("gallery-error").textContent = "";
    $("gallery-status").textContent = state.done
      ? ($("grid").children.length ? "" : "No images yet.") : "";
  } catch (error) {
    $("gallery-error").textContent = error.message;
  } finally {
    state.loading = false;
  }
  if (!state.done && isVisible($("more"))) loadMore();
}

function isVisible(element) {
  const box = element.getBoundingClientRect();
  return box.top < window.innerHeight;
}

async function tile(image) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  const img = document.createElement("img");
  const caption = document.createElement("span");
  button.type = "button";
  button.setAttribute("aria-label", `Open ${image.title || image.filename}`);
  img.alt = image.title || image.filename;
  img.loading = "lazy";
  img.src = (await api("GET", `/images/${image.id}/download`)).url;
  caption.textContent = image.title || image.filename;
  button.append(img, caption);
  button.addEventListener("click", () => openDetail(image, img.src, item));
  item.append(button);
  return item;
}

// --- Detail --------------------------------------------------------------------------

function openDetail(image, url, item) {
  $("detail-image").src = url;
  $("detail-image").alt = image.title || image.filename;
  $("detail-title").textContent = image.title || image.filename;
  $("detail-description").textContent = image.description || "";
  $("detail-filename").textContent = image.filename;
  $("detail-size").textContent = `${image.size.toLocaleString()} bytes`;
  $("detail-dimensions").textContent = `${image.width} × ${image.height}`;
  $("detail-tags").textContent = image.tags.join(", ") || "–";
  $("detail-uploaded").textContent = new Date(image.uploaded_at).toLocaleString();
  $("detail-download").href = url;
  $("detail-error").textContent = "";
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
