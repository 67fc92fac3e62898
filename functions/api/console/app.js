// The Subconscious web console: sign in, quote, accept, watch, gallery, download, market.
// Plain ES modules, no build step. Views are chosen by the URL's fragment (#quote, #orders,
// #order/<id>, #market); no key or other secret ever goes into a URL.

import { api, ApiError, apiKey, setApiKey } from "./api.js";
import { drawChart } from "./chart.js";
import { zipStore } from "./zip.js";

const $ = (selector) => document.querySelector(selector);
const ORDERS_KEY = "subconscious.orders"; // orders placed in this tab, when GET /v1/orders is absent
const OPEN = new Set(["quoted", "accepted", "rendering"]);
const POLL_MS = 1500;
const GALLERY_MS = 5000;
const GALLERY_PAGE = 48;

const state = {
  quote: null, timer: null, generation: 0, orderId: null,
  gallery: new Map(), galleryDone: -1, galleryAt: 0, galleryFull: false,
};

// ---------- formatting ----------

// Dollars: `digits` places where given (totals, charges: cents), else a price as precise as it
// is, at least cents and at most micro-dollars ($0.03, $0.0123, $0.000036).
function usd(value, digits) {
  if (value === null || value === undefined) return "—";
  const n = Number(value);
  if (digits !== undefined) return `$${n.toFixed(digits)}`;
  return `$${n.toFixed(6).replace(/0{1,4}$/, "")}`;
}

function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  const sameDay = d.toDateString() === new Date().toDateString();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return sameDay ? `today ${time}` : `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

function inWords(iso) {
  if (!iso) return "";
  const s = Math.round((Date.parse(iso) - Date.now()) / 1000);
  const a = Math.abs(s);
  const span = a < 90 ? `${a} s` : a < 5400 ? `${Math.round(a / 60)} min` : `${(a / 3600).toFixed(1)} h`;
  return s >= 0 ? `in ${span}` : `${span} ago`;
}

function cell(row, content, className) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content);
  else td.textContent = content ?? "";
  if (className) td.className = className;
  row.append(td);
  return td;
}

function tag(text, className) {
  const span = document.createElement("span");
  span.className = `tag ${className || ""}`.trim();
  span.textContent = text;
  return span;
}

function stateTag(order) {
  return tag(order.state.replace("_", " "), `state-${order.state}`);
}

function showError(error) {
  const banner = $("#banner");
  banner.textContent = error instanceof ApiError ? `${error.message} (${error.code})` : String(error.message || error);
  banner.hidden = false;
  if (error instanceof ApiError && error.status === 401) signOut("That key was refused; sign in again.");
}

function clearError() {
  $("#banner").hidden = true;
}

// ---------- confirm dialog ----------

function confirmDialog(title, text, yes) {
  const dialog = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-yes").textContent = yes;
  return new Promise((resolve) => {
    const done = (answer) => {
      $("#confirm-yes").onclick = $("#confirm-no").onclick = dialog.oncancel = null;
      dialog.close();
      resolve(answer);
    };
    $("#confirm-yes").onclick = () => done(true);
    $("#confirm-no").onclick = () => done(false);
    dialog.oncancel = () => done(false);
    dialog.showModal();
  });
}

// ---------- views ----------

function show(view) {
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.view === view || (view === "order" && link.dataset.view === "orders"));
  }
}

function stopPolling() {
  clearTimeout(state.timer);
  state.timer = null;
  state.generation += 1; // a tick still awaiting its answer does not schedule another
}

function poll(fn) {
  stopPolling();
  const generation = state.generation;
  const tick = async () => {
    let again = false;
    try {
      again = await fn();
    } catch (error) {
      showError(error);
      again = !(error instanceof ApiError && error.status === 401);
    }
    if (again && generation === state.generation) state.timer = setTimeout(tick, POLL_MS);
  };
  state.timer = setTimeout(tick, 0);
}

async function route() {
  stopPolling();
  clearError();
  if (!apiKey()) {
    $("#nav").hidden = true;
    show("signin");
    $("#api-key").focus();
    return;
  }
  $("#nav").hidden = false;
  const [view, id] = location.hash.replace(/^#/, "").split("/");
  if (view === "order" && /^o-[0-9a-f]{32}$/.test(id || "")) return openOrder(id);
  if (view === "orders") return openOrders();
  if (view === "market") return openMarket();
  show("quote");
}

function signOut(message) {
  setApiKey(null);
  state.quote = null;
  stopPolling();
  if (location.hash !== "") history.replaceState(null, "", location.pathname);
  route();
  if (message) {
    $("#banner").textContent = message;
    $("#banner").hidden = false;
  }
}

// ---------- sign in ----------

async function signIn(event) {
  event.preventDefault();
  const key = $("#api-key").value.trim();
  if (!key) return;
  setApiKey(key);
  $("#signin-button").disabled = true;
  try {
    await api("GET", "v1/market"); // any authenticated call: a refused key is a 401
    $("#api-key").value = "";
    location.hash = "#quote";
    await route();
  } catch (error) {
    setApiKey(null);
    showError(error);
  } finally {
    $("#signin-button").disabled = false;
  }
}

// ---------- quote ----------

function localInputValue(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function setDeadline(kind) {
  const now = new Date();
  let at = null;
  if (kind === "eod") {
    at = new Date(now);
    at.setHours(23, 59, 0, 0);
    if (at - now < 2 * 3600e3) at.setDate(at.getDate() + 1); // under two hours left: tomorrow's
  } else if (kind === "2h") {
    at = new Date(now.getTime() + 2 * 3600e3);
  } else if (kind === "tomorrow") {
    at = new Date(now);
    at.setDate(at.getDate() + 1);
    at.setHours(9, 0, 0, 0);
  }
  $("#deadline").value = at ? localInputValue(at) : "";
}

function prompts() {
  return $("#prompts").value.split("\n").map((line) => line.trim()).filter(Boolean);
}

function perPromptCounts(total, n) {
  const base = Math.floor(total / n);
  return Array.from({ length: n }, (_, i) => base + (i < total % n ? 1 : 0));
}

function updatePerPrompt() {
  const n = prompts().length;
  const total = Number($("#images").value) || 0;
  const counts = n ? perPromptCounts(total, n) : [];
  $("#per-prompt").textContent = !n ? "" : total < n ? "at least one image per prompt"
    : counts[0] === counts[n - 1] ? `${counts[0]} per prompt × ${n} prompts` : `${counts[n - 1]}–${counts[0]} per prompt × ${n} prompts`;
}

async function requestQuote(event) {
  event.preventDefault();
  clearError();
  const texts = prompts();
  const total = Number($("#images").value);
  if (!texts.length) return showError(new Error("write at least one prompt"));
  if (total < texts.length) return showError(new Error(`${texts.length} prompts need at least ${texts.length} images`));
  const size = Number($("#size").value);
  const job = {
    prompts: perPromptCounts(total, texts.length).map((count, i) => ({ text: texts[i], count })),
    model_family: $("#family").value,
    width: size,
    height: size,
    steps: Number($("#steps").value) || 20,
  };
  const constraints = {};
  if ($("#deadline").value) constraints.deadline = new Date($("#deadline").value).toISOString();
  if ($("#budget").value) constraints.max_price_per_image_usd = $("#budget").value;
  $("#quote-button").disabled = true;
  try {
    state.quote = await api("POST", "v1/quotes", { body: { job, constraints } });
    renderQuote();
  } catch (error) {
    showError(error);
  } finally {
    $("#quote-button").disabled = false;
  }
}

function termsText(option) {
  const misses = [];
  if (!option.meets_deadline) misses.push("late");
  if (!option.meets_budget) misses.push("over price");
  return misses.length ? misses.join(", ") : "meets both";
}

function renderQuote() {
  const quote = state.quote;
  const c = quote.constraints;
  const total = quote.job.prompts.reduce((sum, p) => sum + p.count, 0);
  $("#quote-result").hidden = false;
  $("#quote-summary").textContent = `${total} images from ${quote.job.prompts.length} prompts`
    + (c.deadline ? `, by ${when(c.deadline)}` : "")
    + (c.max_price_per_image_usd ? `, at most ${usd(c.max_price_per_image_usd)} an image` : "")
    + (quote.feasible_as_requested ? ": options below meet your terms." : ": no option meets all your terms; see the closest below.")
    + ` Quote valid until ${when(quote.expires_at)}.`;
  const budget = c.max_price_per_image_usd ? Number(c.max_price_per_image_usd) : null;
  drawChart($("#chart"), quote.options, {
    deadline: c.deadline, budget, onPick: (option) => highlight(option.option_id),
  });
  const body = $("#options tbody");
  body.replaceChildren();
  for (const option of quote.options) {
    const row = document.createElement("tr");
    row.dataset.option = option.option_id;
    const ok = option.meets_deadline && option.meets_budget;
    cell(row, tag(option.label, ok ? "ok" : "outside"));
    cell(row, `${option.gpu} · ${option.provider}${option.interruptible ? " · spot" : ""}`);
    cell(row, String(option.machines), "num");
    cell(row, when(option.start_at));
    const done = cell(row, when(option.completes_at));
    if (option.expected_completion_at && option.expected_completion_at !== option.completes_at) {
      const expected = document.createElement("div");
      expected.className = "hint";
      expected.textContent = `expected ${when(option.expected_completion_at)}`;
      done.append(expected);
    }
    cell(row, usd(option.price_per_image_usd), "num");
    cell(row, usd(option.total_usd, 2), "num");
    cell(row, tag(termsText(option), ok ? "ok" : "outside"));
    const accept = document.createElement("button");
    accept.type = "button";
    accept.textContent = "Accept";
    accept.className = ok ? "" : "secondary";
    accept.addEventListener("click", () => acceptOption(option));
    cell(row, accept);
    body.append(row);
  }
}

function highlight(optionId) {
  for (const row of document.querySelectorAll("#options tbody tr")) {
    row.classList.toggle("picked", row.dataset.option === optionId);
  }
}

function outsideTermsText(option) {
  const c = state.quote.constraints;
  const parts = [];
  if (!option.meets_budget) parts.push(`${usd(option.price_per_image_usd)} an image is over your maximum of ${usd(c.max_price_per_image_usd)}`);
  if (!option.meets_deadline) parts.push(`it completes ${when(option.completes_at)}, after your deadline ${when(c.deadline)}`);
  return `Option "${option.label}" is outside your terms: ${parts.join("; ")}. Accept it anyway?`;
}

async function acceptOption(option) {
  clearError();
  const outside = !(option.meets_deadline && option.meets_budget);
  if (outside && !(await confirmDialog("Outside your terms", outsideTermsText(option), "Accept anyway"))) return;
  const body = { quote_id: state.quote.quote_id, option_id: option.option_id };
  if (outside) body.accept_outside_terms = true;
  const headers = { "Idempotency-Key": crypto.randomUUID() };
  try {
    const order = await api("POST", "v1/orders", { body, headers });
    rememberOrder(order.order_id);
    location.hash = `#order/${order.order_id}`;
  } catch (error) {
    showError(error);
  }
}

// ---------- orders ----------

function rememberOrder(orderId) {
  const ids = JSON.parse(sessionStorage.getItem(ORDERS_KEY) || "[]").filter((id) => id !== orderId);
  sessionStorage.setItem(ORDERS_KEY, JSON.stringify([orderId, ...ids].slice(0, 100)));
}

async function listOrders() {
  try {
    const page = await api("GET", "v1/orders", { query: { limit: 50 } });
    return { orders: page.orders, source: "Your orders, newest first." };
  } catch (error) {
    if (!(error instanceof ApiError && (error.status === 404 || error.status === 405))) throw error;
  }
  const ids = JSON.parse(sessionStorage.getItem(ORDERS_KEY) || "[]");
  const orders = await Promise.all(ids.map((id) => api("GET", `v1/orders/${id}`)));
  return { orders, source: "Orders placed from this browser tab (this API cannot list orders)." };
}

function progressCell(order) {
  const wrap = document.createElement("div");
  wrap.className = "progress-cell";
  const bar = document.createElement("progress");
  bar.max = order.images_total || 1;
  bar.value = order.images_done;
  const text = document.createElement("span");
  text.textContent = `${order.images_done}/${order.images_total}`;
  wrap.append(bar, text);
  return wrap;
}

async function openOrders() {
  show("orders");
  poll(async () => {
    const { orders, source } = await listOrders();
    $("#orders-source").textContent = orders.length ? source : "No orders yet: ask for a quote.";
    const body = $("#orders tbody");
    body.replaceChildren();
    for (const order of orders) {
      const row = document.createElement("tr");
      const link = document.createElement("a");
      link.href = `#order/${order.order_id}`;
      link.textContent = order.order_id.slice(0, 12);
      link.className = "mono";
      cell(row, link);
      cell(row, when(order.created_at));
      cell(row, stateTag(order));
      cell(row, progressCell(order));
      cell(row, OPEN.has(order.state) ? when(order.eta) : "—");
      cell(row, usd(order.price_per_image_usd), "num");
      cell(row, usd(order.charge_usd, 2), "num");
      cell(row, order.end_reason ? order.end_reason.replaceAll("_", " ") : "");
      body.append(row);
    }
    return orders.some((o) => OPEN.has(o.state));
  });
}

// ---------- one order ----------

async function openOrder(orderId) {
  show("order");
  if (state.orderId !== orderId) {
    state.orderId = orderId;
    state.gallery = new Map();
    state.galleryDone = -1;
    state.galleryAt = 0;
    state.galleryFull = false;
    $("#gallery").replaceChildren();
  }
  $("#order-id").textContent = orderId;
  $("#download-status").textContent = "";
  poll(async () => {
    const order = await api("GET", `v1/orders/${orderId}`);
    renderOrder(order);
    const open = OPEN.has(order.state);
    // the whole list is presigned anew on each read: while rendering, at most every few seconds
    // (an order may count its last image a tick before it reads as ended: the full listing
    // is owed once it has ended, whatever the count)
    const stale = order.images_done !== state.galleryDone || (!open && !state.galleryFull);
    if (stale && (!open || Date.now() - state.galleryAt >= GALLERY_MS)) {
      await refreshGallery(order);
      state.galleryDone = order.images_done;
      state.galleryAt = Date.now();
      state.galleryFull = !open;
    }
    return open;
  });
}

function renderOrder(order) {
  const open = OPEN.has(order.state);
  $("#order-state").replaceChildren(stateTag(order));
  const settled = order.images_done + order.images_failed;
  $("#order-count").textContent = `${order.images_done} of ${order.images_total} delivered`
    + (order.images_failed ? `, ${order.images_failed} failed` : "")
    + (order.images_released ? `, ${order.images_released} not rendered` : "");
  $("#order-progress").max = order.images_total || 1;
  $("#order-progress").value = settled;
  $("#order-eta").textContent = open ? (order.eta ? `${when(order.eta)} (${inWords(order.eta)})` : "estimating…") : `ended ${when(order.ended_at)}`;
  $("#order-promised").textContent = when(order.promised_at);
  $("#order-price").textContent = usd(order.price_per_image_usd);
  $("#order-charge").textContent = `${usd(order.charge_usd, 2)} of ${usd(order.total_usd, 2)}`;
  const held = open && order.held_until;
  $("#order-held-row").hidden = !held;
  if (held) $("#order-held").textContent = `starts about ${when(order.held_until)}${order.held_reason ? `: ${order.held_reason}` : ""}`;
  $("#order-reason-row").hidden = !order.end_reason;
  $("#order-reason").textContent = order.end_reason ? order.end_reason.replaceAll("_", " ") : "";
  $("#cancel-order").hidden = !open;
}

// Every image of the order (every page), or only the first page of `limit`.
async function listImages(orderId, { firstPageOnly = false, limit = 1000 } = {}) {
  const images = [];
  let token = null;
  do {
    const page = await api("GET", `v1/orders/${orderId}/images`, { query: { limit, next_token: token } });
    images.push(...page.images);
    token = firstPageOnly ? null : page.next_token;
  } while (token);
  return images;
}

const allImages = (orderId) => listImages(orderId);

function imageKey(image) {
  return `${image.prompt_index}-${image.seed}`;
}

function fileName(image) {
  return `${String(image.prompt_index).padStart(3, "0")}-${image.seed}.png`;
}

async function refreshGallery(order) {
  // while it renders, a first look (one page: each listing presigns every link it returns);
  // once it has ended, every image
  const open = OPEN.has(order.state);
  const images = await listImages(order.order_id, open ? { firstPageOnly: true, limit: GALLERY_PAGE } : {});
  const gallery = $("#gallery");
  for (const image of images) {
    const key = imageKey(image);
    const known = state.gallery.get(key);
    state.gallery.set(key, image); // the newest link: older ones expire
    if (known) continue;
    const figure = document.createElement("figure");
    figure.className = "thumb";
    const img = document.createElement("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.referrerPolicy = "no-referrer";
    img.width = 160;
    img.height = Math.round((160 * image.height) / image.width);
    img.alt = image.prompt;
    img.src = image.url;
    const caption = document.createElement("figcaption");
    const prompt = document.createElement("span");
    prompt.className = "prompt";
    prompt.textContent = image.prompt;
    const seed = document.createElement("span");
    seed.className = "seed mono";
    seed.textContent = `seed ${image.seed}`;
    caption.append(prompt, seed);
    figure.append(img, caption);
    gallery.append(figure);
  }
  const shown = `${state.gallery.size} image${state.gallery.size === 1 ? "" : "s"}`;
  $("#gallery-count").textContent = open && order.images_done > state.gallery.size
    ? `${shown} shown of ${order.images_done} so far; all of them once the order ends` : shown;
}

function manifestLines(orderId, images) {
  return images.map((image) => JSON.stringify({
    file: fileName(image), order_id: orderId, prompt_index: image.prompt_index,
    prompt: image.prompt, seed: image.seed, width: image.width, height: image.height,
  })).join("\n") + "\n";
}

function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

async function downloadManifest() {
  clearError();
  try {
    const images = await allImages(state.orderId);
    save(new Blob([manifestLines(state.orderId, images)], { type: "application/x-ndjson" }), `${state.orderId}-manifest.jsonl`);
    $("#download-status").textContent = `manifest of ${images.length} images saved`;
  } catch (error) {
    showError(error);
  }
}

async function downloadZip() {
  clearError();
  const status = $("#download-status");
  $("#download-zip").disabled = true;
  try {
    const images = await allImages(state.orderId);
    const files = [];
    let next = 0;
    const worker = async () => {
      while (next < images.length) {
        const image = images[next++];
        const response = await fetch(image.url, { credentials: "omit", referrerPolicy: "no-referrer" });
        if (!response.ok) throw new Error(`${fileName(image)}: storage answered ${response.status}`);
        files.push({ name: fileName(image), data: new Uint8Array(await response.arrayBuffer()) });
        status.textContent = `zip: ${files.length}/${images.length} images fetched`;
      }
    };
    await Promise.all(Array.from({ length: 6 }, worker));
    files.sort((a, b) => a.name.localeCompare(b.name));
    files.push({ name: "manifest.jsonl", data: new TextEncoder().encode(manifestLines(state.orderId, images)) });
    save(zipStore(files), `${state.orderId}.zip`);
    status.textContent = `zip of ${images.length} images saved`;
  } catch (error) {
    showError(error);
  } finally {
    $("#download-zip").disabled = false;
  }
}

async function cancelOrder() {
  const ok = await confirmDialog("Cancel this order?", "Images not yet rendered will not be; you pay only for those delivered.", "Cancel order");
  if (!ok) return;
  try {
    renderOrder(await api("DELETE", `v1/orders/${state.orderId}`));
  } catch (error) {
    showError(error);
  }
}

// ---------- market ----------

function minOf(values) {
  const numbers = values.filter((v) => v !== null && v !== undefined).map(Number);
  return numbers.length ? Math.min(...numbers) : null;
}

async function openMarket() {
  show("market");
  try {
    const market = await api("GET", "v1/market");
    $("#market-asof").textContent = `Offers as of ${new Date(market.as_of).toLocaleString()}; the cost of an image is at 512², 20 steps (SD 1.5) and 1024², 20 steps (SDXL).`;
    const groups = [...market.gpus].sort((a, b) => minOf(a.offers.map((o) => o.usd_per_image_sd15)) - minOf(b.offers.map((o) => o.usd_per_image_sd15)));
    const body = $("#market-gpus tbody");
    body.replaceChildren();
    for (const group of groups) {
      const row = document.createElement("tr");
      cell(row, group.gpu);
      cell(row, String(group.offers.length), "num");
      cell(row, usd(minOf(group.offers.map((o) => o.usd_per_hour)), 3), "num");
      cell(row, usd(minOf(group.offers.map((o) => o.usd_per_image_sd15)), 6), "num");
      cell(row, usd(minOf(group.offers.map((o) => o.usd_per_image_sdxl)), 6), "num");
      cell(row, [...new Set(group.offers.map((o) => o.provider))].sort().join(", "));
      body.append(row);
    }
    const providers = $("#market-providers tbody");
    providers.replaceChildren();
    for (const p of market.providers) {
      const row = document.createElement("tr");
      cell(row, p.provider);
      cell(row, p.fetched_at ? `${when(p.fetched_at)} (${inWords(p.fetched_at)})` : "never");
      cell(row, tag(p.ok && !p.stale ? "fresh" : p.stale ? "stale" : p.error || "failing", p.ok && !p.stale ? "ok" : "outside"));
      providers.append(row);
    }
  } catch (error) {
    showError(error);
  }
}

// ---------- wiring ----------

function start() {
  $("#zone").textContent = `(${Intl.DateTimeFormat().resolvedOptions().timeZone})`;
  $("#signin-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", () => signOut());
  $("#quote-form").addEventListener("submit", requestQuote);
  $("#prompts").addEventListener("input", updatePerPrompt);
  $("#images").addEventListener("input", updatePerPrompt);
  for (const chip of document.querySelectorAll("[data-deadline]")) {
    chip.addEventListener("click", () => setDeadline(chip.dataset.deadline));
  }
  $("#cancel-order").addEventListener("click", cancelOrder);
  $("#download-manifest").addEventListener("click", downloadManifest);
  $("#download-zip").addEventListener("click", downloadZip);
  setDeadline("eod");
  window.addEventListener("hashchange", route);
  route();
}

start();
