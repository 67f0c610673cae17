// Connection recovery (RTN16): a restarted process or a reloaded page takes over the connection
// of the one before it with `recover`, so that its members neither leave nor enter again. Both
// rollcall's client and the `ably` client, from each other's keys.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';

import { WebSocket } from 'ws';
import { fileURLToPath } from 'node:url';

import * as Ably from 'ably';

import { Realtime } from '../../js/node.js';
import { BaseRealtime } from '../../js/realtime.js';
import { ClientCore } from '../../pkg/client/rollcall_client.js';
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
 * connection id and recovery key, and is then killed (no CLOSE). `after`: data it updates to
 * after it printed its key. */
async function processThatDies(channel, clientId, data, { ably = false, after } = {}) {
  const [from, make] = ably
    ? [`import * as Ably from 'ably';`, `new Ably.Realtime({ key: 'app.key:secret', endpoint: '127.0.0.1', port: ${hub.port}, tls: false, logLevel: 0, clientId: ${JSON.stringify(clientId)}, transportParams: { remainPresentFor: ${GRACE} } })`]
    : [`import { Realtime } from './js/node.js';`, `new Realtime({ url: ${JSON.stringify(url)}, clientId: ${JSON.stringify(clientId)}, transportParams: { remainPresentFor: ${GRACE} } })`];
  const script = `
    ${from}
    const c = ${make};
    const presence = c.channels.get(${JSON.stringify(channel)}).presence;
    await presence.enter(${JSON.stringify(data)});
    await presence.enter(${JSON.stringify(data)}); // unchanged: no event, but a msgSerial
    const line = JSON.stringify({ id: c.connection.id, key: c.connection.createRecoveryKey() });
    ${after === undefined ? '' : `await presence.update(${JSON.stringify(after)});`}
    console.log(line);
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

test('a key kept before the last message still carries the messages after it', async () => {
  const channel = fresh();
  const { events } = await watch(channel);
  // The process kept its key once, early, and said more before it died.
  const before = await processThatDies(channel, 'agent-3', 'v1', { after: 'v2' });
  await waitFor(() => events.length === 2, { what: 'the enter and the update' });
  const after = client({ clientId: 'agent-3', recover: before.key });
  await after.channels.get(channel).presence.update('v3');
  await waitFor(() => events.length === 3, { what: 'the update after the restart' });
  assert.equal(events[2], 'update:agent-3:"v3"');
  assert.equal(after.connection.id, before.id);
});

test('a client still running when its connection is recovered elsewhere gets a connection of its own', async () => {
  const channel = fresh();
  const { watcher } = await watch(channel);
  const first = client({ clientId: 'agent-5' });
  await first.channels.get(channel).presence.enter('first');
  const id = first.connection.id;
  const second = client({ clientId: 'agent-5', recover: first.connection.createRecoveryKey() });
  await second.channels.get(channel).presence.enter('second');
  assert.equal(second.connection.id, id);
  await waitFor(() => first.connection.state === 'connected' && first.connection.id !== id, { what: 'the first on a new connection' });
  const firstId = first.connection.id;
  // Each keeps its own from then on: they do not take the connection from each other.
  await waitFor(
    async () => {
      const members = await watcher.channels.get(channel).presence.get();
      return members.filter((m) => m.clientId === 'agent-5').length === 2;
    },
    { what: 'two devices' },
  );
  await new Promise((r) => setTimeout(r, 1500));
  assert.deepEqual([first.connection.id, second.connection.id], [firstId, id]);
  const members = await watcher.channels.get(channel).presence.get();
  assert.deepEqual(
    members.filter((m) => m.clientId === 'agent-5').map((m) => [m.connectionId, m.data]).sort(),
    [[firstId, 'first'], [id, 'second']].sort(),
  );
});

/** A Node client with a browser's recovery hooks: `last` is what the page before left. */
function pageClient(options, last) {
  const platform = {
    ClientCore,
    WebSocket,
    isBrowser: true,
    binary: (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    onUnload: () => (platform.closesOnUnload = true),
    persistOnUnload: () => (platform.persists = true),
    takeRecovery: () => ((platform.taken = true), last),
  };
  const c = new BaseRealtime({ url, transportParams: { remainPresentFor: GRACE }, ...options }, platform);
  clients.push(c);
  return { c, platform };
}

test('recover as a function: connecting waits for its answer; with closeOnUnload it is dropped', async () => {
  const channel = fresh();
  const before = await processThatDies(channel, 'page', 'tab');
  const last = { recoveryKey: before.key, disconnectedAt: Date.now(), location: { href: 'http://x/' }, clientId: 'page' };
  const asked = [];
  const { c, platform } = pageClient(
    {
      clientId: 'page',
      autoConnect: false,
      recover: (details, callback) => {
        asked.push(details.location.href);
        setTimeout(() => callback(true), 50);
      },
    },
    last,
  );
  assert.equal(platform.persists, true, 'the key is left for the next page');
  assert.equal(platform.closesOnUnload, undefined, 'and the page does not close as it goes');
  c.connect(); // before the answer
  await c.connection.whenState('connected');
  assert.deepEqual(asked, ['http://x/']);
  assert.equal(c.connection.id, before.id, 'recovered');

  const { c: closing, platform: closingPlatform } = pageClient(
    { clientId: 'page', closeOnUnload: true, recover: (_, callback) => callback(true) },
    last,
  );
  await closing.connection.whenState('connected');
  assert.equal(closingPlatform.taken, undefined, 'the key is not even looked at');
  assert.equal(closingPlatform.closesOnUnload, true);
});

test('a recovery key is only for a connection there is to recover (RTN16g2)', async () => {
  const c = client({ clientId: 'k', autoConnect: false, recover: JSON.stringify({ connectionKey: 'someone!else', msgSerial: 0 }) });
  assert.equal(c.connection.createRecoveryKey(), null, 'not connected yet');
  assert.equal(c.connection.key, undefined);
  c.connect();
  await c.connection.whenState('connected');
  const key = JSON.parse(c.connection.createRecoveryKey());
  assert.equal(key.connectionKey, c.connection.key);
  c.close();
  await c.connection.whenState('closed');
  assert.equal(c.connection.createRecoveryKey(), null, 'closed');
});
