// What both hosts ask of a request, and how they refuse one themselves. In development mode (no
// keys): whether it comes from a page on another site, open in a browser on this machine.
// Loopback is all that keeps such a hub to this machine, and the browser is on it.

const THIS_MACHINE = new Set(['localhost', '127.0.0.1', '[::1]']);

/** Whether an `Origin` header (absent for programs: `undefined` or `null`) names a page that is
 * not on this machine. `null` as a value (a sandboxed page, a file) is foreign. */
export function foreignPage(origin) {
  if (origin === undefined || origin === null) return false;
  try {
    return !THIS_MACHINE.has(new URL(origin).hostname);
  } catch {
    return true;
  }
}

/** Whether a request was made to this machine by name: its `Host` (absent: yes) names
 * loopback. A page on a name that was made to point here (DNS rebinding) sends its own, with no
 * `Origin` on a read of its own site. */
export function toThisMachine(host) {
  if (!host) return true;
  try {
    return THIS_MACHINE.has(new URL(`http://${host}`).hostname);
  } catch {
    return false;
  }
}

/** Whether a request came through a proxy, which says so: one in front of a hub in development
 * mode would serve it to whoever reaches the proxy. */
export function forwarded(headers) {
  // Node's headers are an object, a Worker's a `Headers`.
  const get = typeof headers.get === 'function' ? (name) => headers.get(name) : (name) => headers[name];
  return Boolean(get('forwarded') || get('x-forwarded-for') || get('x-real-ip'));
}

/** The largest request body a host reads: a TokenRequest (the hub's MAX_REQUEST_BODY). */
export const MAX_BODY = 64 * 1024;

/** What both hosts say when they refuse a request themselves. */
export const REFUSED = {
  foreignPage: 'a hub in development mode (no keys) serves pages on this machine only',
  elsewhere:
    'a hub in development mode (no keys) answers requests made to this machine only: name the origin it is reached by in ROLLCALL_ALLOWED_ORIGINS, or run with keys',
  trapped: 'this request made the hub fail; it is refused',
  tooLarge: `a request body may hold ${MAX_BODY} bytes`,
};

/** A refusal as the hub's own errors are: `{ status, headers, body }`, the body Ably's
 * `{ error: { code, statusCode, message } }` and the code in `x-ably-errorcode`. */
export function refusal(statusCode, code, message) {
  return {
    status: statusCode,
    headers: { 'content-type': 'application/json', 'x-ably-errorcode': String(code) },
    body: JSON.stringify({ error: { code, statusCode, message } }),
  };
}
