// rollcall for Node 20+: the same Wasm client, with the `ws` package for WebSockets (Node 20
// has no global WebSocket).

import { readFileSync } from 'node:fs';

import { WebSocket } from 'ws';

import { initSync, ClientCore } from '../pkg/client/rollcall_client.js';
import { BaseRealtime, ErrorInfo } from './realtime.js';

export { ErrorInfo, EventEmitter, PresenceMessage } from './realtime.js';

initSync({ module: readFileSync(new URL('../pkg/client/rollcall_client_bg.wasm', import.meta.url)) });

const platform = {
  ClientCore,
  WebSocket,
  isBrowser: false,
  binary: (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
};

export class Realtime extends BaseRealtime {
  constructor(options) {
    super(options, platform);
  }
}

export default { Realtime, ErrorInfo };
