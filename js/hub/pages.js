// What both hosts ask of a request in development mode (no keys): whether it comes from a page
// on another site, open in a browser on this machine. Loopback is all that keeps such a hub to
// this machine, and the browser is on it.

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
