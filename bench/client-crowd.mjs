// How the client's own work grows with a crowd: rollcall's client (its JavaScript and its Wasm
// core) is fed the frames a hub sends when N members are listed (SYNC), all drop at once (a
// frame of N grace statuses), come back, drop again, and time out (a frame of N leaves). No
// socket and no hub: what is timed is the client alone. It runs at N and at 3N in one run; the
// figure that counts is how much longer 3N takes than N: 3 for work that grows linearly, 9 for
// work that grows with the square.
//
//   node bench/client-crowd.mjs [--n 1000] [--runs 3]
//
// Appends a JSON line to bench/results/client-crowd.jsonl.

import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { initSync, ClientCore } from '../pkg/client/rollcall_client.js';
import { BaseRealtime } from '../js/realtime.js';

initSync({ module: readFileSync(new URL('../pkg/client/rollcall_client_bg.wasm', import.meta.url)) });

const { values: args } = parseArgs({
  options: { n: { type: 'string', default: '1000' }, runs: { type: 'string', default: '3' } },
});
const N = Number(args.n);
const RUNS = Number(args.runs);

/** One run at `n` members: the milliseconds each phase took. */
async function run(n) {
  let socket;
  class FakeSocket {
    constructor() {
      socket = this;
      setImmediate(() => this.onopen?.());
    }
    send() {}
    close() {}
  }
  const platform = { ClientCore, WebSocket: FakeSocket, isBrowser: false, binary: (b) => Buffer.from(b) };
  const tick = () => new Promise((r) => setImmediate(r));
  const feed = (m) => socket.onmessage({ data: JSON.stringify(m) });
  const timed = (f) => {
    const start = process.hrtime.bigint();
    f();
    return Number(process.hrtime.bigint() - start) / 1e6;
  };
  const realtime = new BaseRealtime({ clientId: 'me', endpoint: 'localhost', port: 1, tls: false }, platform);
  await tick();
  await tick();
  feed({ action: 4, connectionId: 'me', connectionDetails: { clientId: 'me', connectionKey: 'k', maxMessageSize: 65536, connectionStateTtl: 120000, maxIdleInterval: 15000 } });
  await tick();
  const channel = realtime.channels.get('room');
  // A page that follows who is online and whose connection is lost, as the demo does.
  let heard = 0;
  await Promise.race([channel.presence.subscribeClients(() => heard++), tick()]);
  channel.presence.subscribe(() => heard++);
  // Connection ids in another order than the members' (they are sorted by client id).
  const connection = (i) => `c${String((i * 7919) % n).padStart(6, '0')}`;
  const member = (i, action = 1) => ({ id: `${connection(i)}:0:0`, action, clientId: `user${i}`, connectionId: connection(i), timestamp: 1, data: 'x' });
  const all = (f) => Array.from({ length: n }, (_, i) => f(i));
  feed({ action: 11, channel: 'room', flags: 1 | (0xf << 16), channelSerial: 'hub:1' });
  const phases = {};
  phases.sync = timed(() => {
    for (let p = 0; p < n; p += 200) {
      const items = all(member).slice(p, p + 200);
      feed({ action: 16, channel: 'room', channelSerial: p + 200 >= n ? 's:' : `s:${p}`, presence: items });
    }
  });
  await tick();
  const lost = all((i) => ({ action: 0, connectionId: connection(i) }));
  phases.lost = timed(() => feed({ action: 100, channel: 'room', presence: lost }));
  await tick();
  phases.restored = timed(() => feed({ action: 100, channel: 'room', presence: lost.map((s) => ({ ...s, action: 1 })) }));
  await tick();
  feed({ action: 100, channel: 'room', presence: lost });
  await tick();
  const leaves = all((i) => ({ ...member(i, 3), id: `!hub:${i}:0`, timestamp: 5, extras: { reason: 'timeout' } }));
  phases.timeouts = timed(() => feed({ action: 14, channel: 'room', channelSerial: 'hub:2', presence: leaves }));
  await tick();
  if ((await channel.presence.get()).length !== 0 || heard < 4 * n) throw new Error(`the client did not follow: heard ${heard}`);
  realtime.close();
  return phases;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = { [N]: [], [3 * N]: [] };
for (let i = 0; i < RUNS; i++) {
  // Interleaved, so that drift of the machine hits both sizes alike.
  results[N].push(await run(N));
  results[3 * N].push(await run(3 * N));
}
const phases = Object.keys(results[N][0]);
const at = (n, phase) => median(results[n].map((r) => r[phase]));
const line = { bench: 'client-crowd', n: N, runs: RUNS, at: new Date().toISOString(), ms: {}, growth: {} };
console.log(`the client's work for a crowd, medians of ${RUNS} (3N / N: 3 is linear, 9 quadratic)`);
for (const phase of phases) {
  line.ms[phase] = { [N]: Number(at(N, phase).toFixed(1)), [3 * N]: Number(at(3 * N, phase).toFixed(1)) };
  line.growth[phase] = Number((at(3 * N, phase) / at(N, phase)).toFixed(1));
  console.log(`  ${phase.padEnd(9)} N=${N}: ${at(N, phase).toFixed(1)} ms  3N=${3 * N}: ${at(3 * N, phase).toFixed(1)} ms  ×${line.growth[phase]}`);
}
mkdirSync(new URL('results/', import.meta.url), { recursive: true });
appendFileSync(new URL('results/client-crowd.jsonl', import.meta.url), `${JSON.stringify(line)}\n`);
process.exit(0);
