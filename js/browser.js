// rollcall for browsers: an ES module that works from a bundler or a plain
// <script type="module"> (the hub serves it at /rollcall/js/browser.js).

import init, { ClientCore } from '../pkg/client/rollcall_client.js';
import { BaseRealtime } from './realtime.js';

export { ErrorInfo, EventEmitter, PresenceMessage } from './realtime.js';

await init();

const platform = {
  ClientCore,
  WebSocket: globalThis.WebSocket,
  isBrowser: typeof window !== 'undefined',
  binary: (bytes) => bytes,
  defaultHost: () => globalThis.location?.hostname || 'localhost',
  defaultTls: () => globalThis.location?.protocol === 'https:',
  defaultPort: () =>
    globalThis.location?.port ? Number(globalThis.location.port) : globalThis.location?.protocol === 'https:' ? 443 : 80,
  onUnload: closeOnUnload,
};

/**
 * A closing tab sends CLOSE so that its members leave at once. Browsers do not always fire
 * `beforeunload` (a tab closed by automation fires only `pagehide` and `unload`), so this
 * listens to `pagehide`. A page restored from the back-forward cache reconnects and enters
 * again where it was present.
 */
function closeOnUnload(realtime) {
  if (typeof addEventListener !== 'function') return;
  let restore = null;
  addEventListener('pagehide', () => {
    if (realtime.connection.state === 'closed' || realtime.connection.state === 'failed') return;
    restore = realtime._presentOn();
    realtime.close();
  });
  addEventListener('pageshow', (event) => {
    if (!event.persisted || !restore) return;
    const entries = restore;
    restore = null;
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

export default { Realtime };
