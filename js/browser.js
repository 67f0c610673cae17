// rollcall for browsers: an ES module that works from a bundler or a plain
// <script type="module"> (the hub serves it at /rollcall/js/browser.js).

import init, { ClientCore } from '../pkg/client/rollcall_client.js';
import { BaseRealtime, ErrorInfo } from './realtime.js';

export { ErrorInfo, EventEmitter, PresenceMessage } from './realtime.js';

await init();

const platform = {
  ClientCore,
  WebSocket: globalThis.WebSocket,
  isBrowser: typeof window !== 'undefined',
  // As ably-js in a browser: an ArrayBuffer (each decoded array has one of its own).
  binary: (bytes) => bytes.buffer,
  defaultHost: () => globalThis.location?.hostname || 'localhost',
  defaultTls: () => globalThis.location?.protocol === 'https:',
  defaultPort: () =>
    globalThis.location?.port ? Number(globalThis.location.port) : globalThis.location?.protocol === 'https:' ? 443 : 80,
  onUnload: closeOnUnload,
  followNetwork,
  persistOnUnload,
  takeRecovery,
};

/** As Ably's (RTN20): the browser going `offline` drops the connection at once, rather than
 * when heartbeats stop; coming back `online` connects at once, rather than at the next retry,
 * which may be 15 s away. A device back inside `remainPresentFor` then resumes, and no one sees
 * it leave. A client the app holds offline (`simulateDrop()`) stays so. */
function followNetwork(realtime) {
  listen(realtime, 'offline', (r) => r.connection.state === 'connected' && r.connection.simulateDrop(0));
  listen(realtime, 'online', (r) => /disconnected|suspended/.test(r.connection.state) && !r._heldOffline && r.connect());
}

/** Listens to the page's `type` events for `realtime` without keeping it: a client the app let
 * go (closed, say) is collected, and its listener goes with the next event. */
function listen(realtime, type, handle) {
  if (typeof addEventListener !== 'function') return;
  const ref = new WeakRef(realtime);
  addEventListener(type, function listener(event) {
    const r = ref.deref();
    if (r) handle(r, event);
    else removeEventListener(type, listener);
  });
}

/** With `recover` as a function: the page leaves its recovery key for the next page of this
 * tab, and does not close, so that a reload keeps its members present (Ably's way). The next
 * page's `recover` sees where this one was (`location.href`), to recover only a reload. */
function persistOnUnload(realtime, name) {
  listen(realtime, 'pagehide', (realtime, event) => {
    // A page kept in the back-forward cache may come back to its connection: not handed on.
    const recoveryKey = !event.persisted && realtime.connection.createRecoveryKey();
    if (!recoveryKey) return;
    const details = { recoveryKey, disconnectedAt: Date.now(), location: { href: globalThis.location.href }, clientId: realtime.clientId };
    try {
      sessionStorage.setItem(name, JSON.stringify(details));
    } catch {
      // No sessionStorage (a sandboxed frame, storage full): the next page connects anew.
    }
  });
}

/** The details the page before left, if any; taken once, so that a tab duplicated later does
 * not take the same connection over. */
function takeRecovery(name) {
  try {
    const details = JSON.parse(sessionStorage.getItem(name));
    sessionStorage.removeItem(name);
    return typeof details?.recoveryKey === 'string' ? details : null;
  } catch {
    return null;
  }
}

/**
 * A closing tab sends CLOSE so that its members leave at once. Browsers do not always fire
 * `beforeunload` (a tab closed by automation fires only `pagehide` and `unload`), so this
 * listens to `pagehide`. A page restored from the back-forward cache reconnects and enters
 * again where it was present.
 */
function closeOnUnload(realtime) {
  let restore = null;
  // Held while a restore is owed: closed, nothing else may hold the client (an app that kept no
  // reference to it), and a page restored from the back-forward cache must find it.
  let kept = null;
  listen(realtime, 'pagehide', (realtime) => {
    if (realtime.connection.state === 'closed' || realtime.connection.state === 'failed') return;
    restore = realtime._presentOn();
    kept = realtime;
    realtime.close();
  });
  listen(realtime, 'pageshow', (realtime, event) => {
    if (!event.persisted || !restore) return;
    const entries = restore;
    restore = null;
    kept = null;
    realtime.connect();
    for (const { channel, clientId, data } of entries) {
      const presence = realtime.channels.get(channel).presence;
      (clientId === undefined ? presence.enter(data) : presence.enterClient(clientId, data)).catch(() => {});
    }
  });
}

export class Realtime extends BaseRealtime {
  constructor(options) {
    super(options, platform);
  }
}

export default { Realtime, ErrorInfo };
