// What an observer's page pays when a crowd drops at once: N members' connections are cut, the
// hub marks them lost (connectionLost), and one rollcall client that watches the channel hears
// it. Measured twice in one run: with a `connectionLost` listener (as the demo and apps that
// show "connection lost" have), and with an `online` listener only (the baseline: the status
// events are then ignored). The figure is the CPU time of this process (hub, members and
// observer alike) from the cut until the observer has heard it all, and its ratio to the
// baseline: what the listener adds.
//
//   node bench/crowd-drop.mjs [--n 1000] [--runs 3]
//
// Appends a JSON line to bench/results/crowd-drop.jsonl.

import { appendFileSync, mkdirSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { WebSocket } from 'ws';

import { Realtime } from '../js/node.js';
import { startHub } from '../js/hub/node.js';

const { values: args } = parseArgs({
  options: { n: { type: 'string', default: '1000' }, runs: { type: 'string', default: '3' } },
});
const N = Number(args.n);
const RUNS = Number(args.runs);
// The hub tells of a lost connection after half of its grace: short, so that a run is quick.
const GRACE = 2000;

const waitFor = async (check, ms = 60000) => {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
};

/** A member: a raw connection that has entered `channel`; resolves once the hub acknowledged. */
function member(port, channel, id) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/?clientId=${id}&v=6&format=json&remainPresentFor=${GRACE}`, { perMessageDeflate: false });
  return new Promise((resolve, reject) => {
    ws.on('error', reject);
    ws.on('message', (data) => {
      const m = JSON.parse(data);
      if (m.action === 4) {
        ws.send(JSON.stringify({ action: 10, channel, flags: 1 << 16 }));
        ws.send(JSON.stringify({ action: 14, channel, msgSerial: 0, presence: [{ action: 2, data: id }] }));
      } else if (m.action === 1) resolve(ws);
    });
  });
}

/** One run: the longest block of the observer's event loop while N members drop. */
async function run(listen) {
  const hub = await startHub({ port: 0, hub: { maxConnectionsPerClient: N + 10 } });
  const port = new URL(hub.url).port;
  const observer = new Realtime({ url: `ws://127.0.0.1:${port}`, clientId: 'observer' });
  try {
    const channel = `crowd-${listen}`;
    const members = [];
    for (let i = 0; i < N; i += 100) members.push(...(await Promise.all(Array.from({ length: Math.min(100, N - i) }, (_, j) => member(port, channel, `m${i + j}`)))));
    const presence = observer.channels.get(channel).presence;
    let lost = 0;
    await presence.subscribeClients(listen, () => lost++);
    await waitFor(async () => (await presence.get()).length === N);
    const cpu = process.cpuUsage();
    for (const ws of members) ws.terminate();
    // Every member marked lost in the observer's view (and, with the listener, told).
    await waitFor(async () => (await presence.get()).every((m) => m.connectionLost));
    await waitFor(() => listen !== 'connectionLost' || lost === N);
    const { user, system } = process.cpuUsage(cpu);
    return (user + system) / 1000;
  } finally {
    observer.close();
    await hub.close();
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const withListener = [];
const baseline = [];
for (let i = 0; i < RUNS; i++) {
  // Interleaved, so that drift of the machine hits both alike.
  withListener.push(await run('connectionLost'));
  baseline.push(await run('online'));
}
const result = {
  bench: 'crowd-drop',
  n: N,
  runs: RUNS,
  at: new Date().toISOString(),
  cpuMs: { connectionLost: Math.round(median(withListener)), onlineOnly: Math.round(median(baseline)) },
  ratio: Number((median(withListener) / Math.max(1, median(baseline))).toFixed(2)),
};
console.log(`N = ${N}: CPU from the cut until the observer heard it all, medians of ${RUNS}`);
console.log(`  with a connectionLost listener  ${result.cpuMs.connectionLost} ms`);
console.log(`  with an online listener only    ${result.cpuMs.onlineOnly} ms`);
console.log(`  ratio                           ${result.ratio}`);
mkdirSync(new URL('results/', import.meta.url), { recursive: true });
appendFileSync(new URL('results/crowd-drop.jsonl', import.meta.url), `${JSON.stringify(result)}\n`);
process.exit(0);
