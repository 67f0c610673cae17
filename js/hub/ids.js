// Transport ids, shared by the hosts.

/** The largest transport id: the hub's binding takes them as u32. */
const LAST = 0xffffffff;

/**
 * The id for a new transport, from `next` on, skipping those `open` still has (a Map or Set
 * of ids): ids wrap after 2³² − 1 transports, and a socket open that long keeps its own.
 * Returns `[id, next]`.
 */
export function transportId(next, open) {
  let id = next >= 1 && next <= LAST ? next : 1;
  while (open.has(id)) id = (id % LAST) + 1;
  return [id, (id % LAST) + 1];
}
