// The JSON API, called from the page: the key travels in the x-api-key header only (never in a
// URL), read from this tab's sessionStorage. Relative URLs: the page is served at <api>/console,
// so "v1/..." resolves against the API's own base, stage prefix and all.

const KEY = "subconscious.apiKey";
export const BASE = new URL(".", document.baseURI);

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || [];
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export async function api(method, path, { body, query, headers } = {}) {
  const url = new URL(path, BASE);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const init = {
    method,
    headers: { "x-api-key": apiKey() || "", Accept: "application/json", ...(headers || {}) },
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    throw new ApiError(0, "network", `could not reach the API at ${url.origin}${url.pathname}: ${error.message}`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || `${method} ${url.pathname} answered ${response.status}`,
      error.details,
    );
  }
  return data;
}
