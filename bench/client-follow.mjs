// How much a client pays to follow a crowded channel: one observer attaches to a channel that
// N members have entered (SYNC), then watches N more enter and all 2N leave, live. The observer
// is rollcall's client (Wasm) or the `ably` npm client (the baseline, same hub, same run); the
// members are raw protocol connections driven from this process.
//
//   node bench/client-follow.mjs [--n 1000] [--runs 3]
//
// Prints the observer's time for each phase, medians of the runs, and the ratio to `ably`;
// appends a JSON line to bench/results/client-follow.jsonl. Process CPU is this whole process
// (hub and members included), the same for both clients.

import { appendFileSync, mkdirSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { WebSocket } from 'ws';
import * as Ably from 'ably';

import { Realtime } from '../js/node.js';
import { startHub } from '../js/hub/node.js';

const { values: args } = parseArgs({
  options: { n: { type: 'string', default: '1000' }, runs: { type: 'string', default: '3' } },
});
const N = Number(args.n);
const RUNS = Number(args.runs);

const waitFor = async (check, ms = 120000) => {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setImmediate(r));
  }
};

/**
 * A member: one raw connection, attached to one channel, that enters when told. `enter()`
 * settles when the hub has acknowledged the entry.
 */
function member(port, channel, id) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/?clientId=${id}&v=6&format=json`, { perMessageDeflate: false });
  let acked = null;
  return new Promise((resolve, reject) => {
    ws.on('error', reject);
    ws.on('message', (data) => {
      const m = JSON.parse(data);
      if (m.action === 4) ws.send(JSON.stringify({ action: 10, channel, flags: 1 << 16 | 1 << 17 }));
      else if (m.action === 1 && m.msgSerial === 0) acked?.();
      else if (m.action === 11) {
        resolve({
          enter: () => {
            const done = new Promise((r) => (acked = r));
            ws.send(JSON.stringify({ action: 14, channel, msgSerial: 0, presence: [{ action: 2, data: `{"n":"${id}"}`, encoding: 'json' }] }));
            return done;
          },
          leave: () => ws.send(JSON.stringify({ action: 14, channel, msgSerial: 1, presence: [{ action: 3 }] })),
          close: () => ws.terminate(),
        });
      }
    });
  });
}

/** `count` members, connected and attached in waves of 100. */
async function connect(port, channelName, from, count) {
  const members = [];
  for (let i = from; i < from + count; i += 100) {
    const wave = [];
    for (let j = i; j < Math.min(from + count, i + 100); j++) wave.push(member(port, channelName, `m${j}`));
    members.push(...(await Promise.all(wave)));
  }
  return members;
}

async function run(kind, port, channelName) {
  const members = await connect(port, channelName, 0, N);
  await Promise.all(members.map((m) => m.enter()));
  // The second N are connected and attached before the clock starts: the enters phase times
  // the observer hearing N entries, not N connections being made.
  const later = await connect(port, channelName, N, N);
  const url = `ws://127.0.0.1:${port}`;
  const client =
    kind === 'rollcall'
      ? new Realtime({ clientId: 'observer', url })
      : new Ably.Realtime({ key: 'app.key:secret', clientId: 'observer', endpoint: '127.0.0.1', port, tls: false, useBinaryProtocol: false, logLevel: 0 });
  const channel = client.channels.get(channelName);
  let count = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await channel.presence.subscribe((m) => (m.action === 'leave' ? count-- : m.action === 'enter' ? count++ : 0));
  const synced = (await channel.presence.get()).length;
  if (synced !== N) throw new Error(`${kind}: synced ${synced} of ${N}`);
  const t1 = performance.now();
  for (const m of later) m.enter();
  members.push(...later);
  await waitFor(() => count === N);
  const t2 = performance.now();
  for (const m of members) m.leave();
  await waitFor(() => count === -N);
  const t3 = performance.now();
  const cpu = process.cpuUsage(cpu0);
  client.close();
  for (const m of members) m.close();
  return { sync: t1 - t0, enters: t2 - t1, leaves: t3 - t2, cpu: (cpu.user + cpu.system) / 1000 };
}

const hub = await startHub({ port: 0 });
const results = { rollcall: [], ably: [] };
try {
  for (let r = 0; r < RUNS; r++) {
    for (const kind of ['rollcall', 'ably']) {
      results[kind].push(await run(kind, hub.port, `follow-${kind}-${r}`));
      console.error(kind, r + 1, JSON.stringify(results[kind].at(-1)));
    }
  }
} finally {
  await hub.close();
}
const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`N = ${N} (then 2N live), medians of ${RUNS}, ms`);
console.log('| client | sync N | N enters | 2N leaves | process CPU |');
console.log('|---|---|---|---|---|');
for (const kind of ['rollcall', 'ably']) {
  const cell = (k) => {
    const v = median(results[kind].map((x) => x[k]));
    const base = median(results.ably.map((x) => x[k]));
    return `${Math.round(v)} (${(v / base).toFixed(2)}×)`;
  };
  console.log(`| ${kind} | ${cell('sync')} | ${cell('enters')} | ${cell('leaves')} | ${cell('cpu')} |`);
}

mkdirSync(new URL('results/', import.meta.url), { recursive: true });
appendFileSync(
  new URL('results/client-follow.jsonl', import.meta.url),
  JSON.stringify({ at: new Date().toISOString(), n: N, runs: RUNS, node: process.version, results }) + '\n',
);
