// The Wasm hub's own memory per idle connection, in process: 10 000 connections open, attach to
// rooms of 100 and enter, as in the idle run of bench/load.mjs, fed to the hub directly (no
// sockets). Prints how much the Wasm memory grew per connection at each step; the host's and
// the sockets' share is what bench/load.mjs adds on top.
//
//   node bench/hub-memory.mjs        (after `npm run build`)
//
// The hub drains every 100 inputs, as a host does once per turn of its event loop.

import { readFileSync } from 'node:fs';

import { initSync, Hub } from '../pkg/hub/rollcall_hub.js';

const wasm = initSync({ module: readFileSync(new URL('../pkg/hub/rollcall_hub_bg.wasm', import.meta.url)) });
const hub = new Hub('{}');
const n = 10000;
const size = () => wasm.memory.buffer.byteLength;
const encoder = new TextEncoder();
const now = Date.now();
const room = (i) => `idle${Math.floor((i - 1) / 100)}`;

function step(each) {
  const before = size();
  for (let i = 1; i <= n; i++) {
    each(i);
    if (i % 100 === 0) hub.drain();
  }
  hub.drain();
  return (size() - before) / n;
}

const open = step((i) => {
  const entropy = new Uint8Array(24);
  for (let k = 0; k < 24; k++) entropy[k] = (i * 31 + k * 7) & 255;
  hub.open(now, i, `clientId=c${i}&v=6&format=json&heartbeats=true`, entropy);
});
const attach = step((i) => hub.frame(now, i, encoder.encode(JSON.stringify({ action: 10, channel: room(i) })), false));
const enter = step((i) =>
  hub.frame(
    now,
    i,
    encoder.encode(
      JSON.stringify({ action: 14, channel: room(i), msgSerial: 0, presence: [{ action: 2, data: '{"device":"laptop"}', encoding: 'json' }] }),
    ),
    false,
  ),
);
const [connections, , channels, members] = hub.stats();
if (connections !== n || members !== n || channels !== n / 100) throw new Error(`the hub holds ${hub.stats()}`);
const f = (x) => `${Math.round(x)} B`;
console.log(`Wasm hub memory growth per connection (${n} connections, rooms of 100):`);
console.log(`  open ${f(open)} + attach ${f(attach)} + enter ${f(enter)} = ${f(open + attach + enter)}`);
