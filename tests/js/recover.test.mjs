// Connection recovery (RTN16): a restarted process or a reloaded page takes over the connection
// of the one before it with `recover`, so that its members neither leave nor enter again. Both
// rollcall's client and the `ably` client, from each other's keys.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as Ably from 'ably';

import { Realtime } from '../../js/node.js';
import { startHub, waitFor } from './helpers.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const GRACE = 1000;

let hub;
let url;
const clients = [];
before(async () => {
  hub = await startHub({ port: 0 });
  url = `ws://127.0.0.1:${hub.port}`;
});
after(async () => {
  for (const c of clients) c.close();
  await hub.close();
});

const client = (options) => {
  const c = new Realtime({ url, transportParams: { remainPresentFor: GRACE }, ...options });
  clients.push(c);
  return c;
};

let n = 0;
const fresh = () => `recover-${++n}-${Date.now()}`;

/** A process that enters `channel` with rollcall's client or the `ably` client, prints its
 * connection id and recovery key, and is then killed (no CLOSE). */
async function processThatDies(channel, clientId, data, { ably = false } = {}) {
  const [from, make] = ably
    ? [`import * as Ably from 'ably';`, `new Ably.Realtime({ key: 'app.key:secret', endpoint: '127.0.0.1', port: ${hub.port}, tls: false, logLevel: 0, clientId: ${JSON.stringify(clientId)}, transportParams: { remainPresentFor: ${GRACE} } })`]
    : [`import { Realtime } from './js/node.js';`, `new Realtime({ url: ${JSON.stringify(url)}, clientId: ${JSON.stringify(clientId)}, transportParams: { remainPresentFor: ${GRACE} } })`];
  const script = `
    ${from}
    const c = ${make};
    const presence = c.channels.get(${JSON.stringify(channel)}).presence;
    await presence.enter(${JSON.stringify(data)});
    await presence.enter(${JSON.stringify(data)}); // unchanged: no event, but a msgSerial
    console.log(JSON.stringify({ id: c.connection.id, key: c.connection.createRecoveryKey() }));
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const exited = new Promise((r) => child.on('exit', r));
  try {
    const line = await waitFor(() => out.split('\n').find((l) => l.startsWith('{')), { ms: 10000, what: 'the process to enter' });
    return JSON.parse(line);
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
}

/** A watcher on `channel` that records every presence event. */
async function watch(channel) {
  const watcher = client({ clientId: 'watcher' });
  const events = [];
  await watcher.channels.get(channel).presence.subscribe((m) => events.push(`${m.action}:${m.clientId}:${JSON.stringify(m.data)}`));
  return { watcher, events };
}

test('a restarted process recovers its connection: its member neither leaves nor enters again', async () => {
  const channel = fresh();
  const { watcher, events } = await watch(channel);
  const before = await processThatDies(channel, 'agent-7', { task: 'indexing' });
  await waitFor(() => events.length === 1, { what: 'the enter' });
  const key = JSON.parse(before.key);
  assert.equal(key.msgSerial, 2, 'the key holds the next msgSerial');
  assert.equal(typeof key.connectionKey, 'string');

  const after = client({ clientId: 'agent-7', recover: before.key });
  await after.connection.whenState('connected');
  assert.equal(after.connection.id, before.id, 'the same connection');
  assert.equal(after.connection.errorReason, null);
  await after.channels.get(channel).presence.enter({ task: 'indexing' });
  // Past the grace window the dead process would have had: still one member, no events.
  await new Promise((r) => setTimeout(r, GRACE * 2.5));
  assert.deepEqual(events, ['enter:agent-7:{"task":"indexing"}']);
  const members = await watcher.channels.get(channel).presence.get();
  assert.deepEqual(members.map((m) => [m.clientId, m.connectionId]), [['agent-7', before.id]]);

  // Its messages continue from the key's serial: a change is applied, not taken for a resend.
  await after.channels.get(channel).presence.update({ task: 'summarising' });
  await waitFor(() => events.length === 2, { what: 'the update' });
  assert.equal(events[1], 'update:agent-7:{"task":"summarising"}');
});

test('a key the hub does not hold gives a new connection, with 80008 as the reason', async () => {
  const channel = fresh();
  const { events } = await watch(channel);
  const key = JSON.stringify({ connectionKey: 'no-such!key', msgSerial: 5, channelSerials: {} });
  const c = client({ clientId: 'late', recover: key });
  const change = await c.connection.whenState('connected');
  assert.equal(change.reason?.code, 80008);
  assert.ok(c.connection.id);
  await c.channels.get(channel).presence.enter('hello');
  await waitFor(() => events.length === 1, { what: 'the enter' });
  assert.equal(events[0], 'enter:late:"hello"');
  // A key that is not one connects afresh, without an error.
  const plain = client({ clientId: 'plain', recover: 'not json' });
  const fine = await plain.connection.whenState('connected');
  assert.equal(fine.reason, undefined);
});

for (const [dies, recovers] of [['rollcall', 'ably'], ['ably', 'rollcall']]) {
  test(`the ${recovers} client recovers a connection from the ${dies} client's key`, async () => {
    const channel = fresh();
    const { events } = await watch(channel);
    const before = await processThatDies(channel, 'agent-9', 'busy', { ably: dies === 'ably' });
    await waitFor(() => events.length === 1, { what: 'the enter' });
    assert.equal(JSON.parse(before.key).msgSerial, 2);

    const options = { clientId: 'agent-9', recover: before.key, transportParams: { remainPresentFor: GRACE } };
    let after;
    if (recovers === 'ably') {
      after = new Ably.Realtime({ key: 'app.key:secret', endpoint: '127.0.0.1', port: hub.port, tls: false, logLevel: 0, ...options });
      clients.push(after);
      await after.connection.once('connected');
    } else {
      after = client(options);
      await after.connection.whenState('connected');
    }
    assert.equal(after.connection.id, before.id, 'the same connection');
    const presence = after.channels.get(channel).presence;
    await presence.enter('busy');
    await new Promise((r) => setTimeout(r, GRACE * 2.5));
    assert.deepEqual(events, ['enter:agent-9:"busy"'], 'no leave and no enter');
    await presence.update('done');
    await waitFor(() => events.length === 2, { what: 'the update' });
    assert.equal(events[1], 'update:agent-9:"done"');
  });
}
