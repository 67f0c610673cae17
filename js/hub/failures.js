// What both hosts keep of a frame that made the hub fail (a trap in its Wasm): a name for its
// bytes, and how long one that did so twice is refused to its connection.

/** How long a frame that made the hub fail is remembered, and one that did so twice refused. */
export const FAILED_KEPT_MS = 24 * 60 * 60 * 1000;

/** Whether a frame with this record (`{ times, at }`, or none) is refused now: one failure is
 * not enough to blame it, as a failure may depend on the hub's state rather than the frame. */
export const refused = (record, now) => Boolean(record && record.times > 1 && now - record.at < FAILED_KEPT_MS);

/** A name for a frame's bytes, to know it again: its length and a 32-bit FNV-1a hash. */
export function frameKey(bytes) {
  let hash = 0x811c9dc5;
  for (const byte of bytes) hash = Math.imul(hash ^ byte, 0x01000193);
  return `${bytes.length}:${(hash >>> 0).toString(16)}`;
}
