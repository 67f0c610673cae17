// rollcall for Cloudflare Workers (workerd): the Wasm module is imported, then instantiated
// synchronously, as workerd allows no fetch of it at run time.

import wasm from '../pkg/client/rollcall_client_bg.wasm';
import { initSync, ClientCore } from '../pkg/client/rollcall_client.js';
import { BaseRealtime, ErrorInfo } from './realtime.js';

export { ErrorInfo, EventEmitter, PresenceMessage } from './realtime.js';

initSync({ module: wasm });

const platform = {
  ClientCore,
  WebSocket: globalThis.WebSocket,
  isBrowser: false,
  // As ably-js in a browser: an ArrayBuffer (each decoded array has one of its own).
  binary: (bytes) => bytes.buffer,
};

export class Realtime extends BaseRealtime {
  constructor(options) {
    super(options, platform);
  }
}

export default { Realtime, ErrorInfo };
