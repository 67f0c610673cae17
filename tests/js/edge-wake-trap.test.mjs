// A bug that stored records bring out, making the hub trap each time its Durable Object wakes,
// does not keep the shard down for good: after two such wakes in a row the object leaves out
// the stored history, then the members, then everything, until it starts. Clients resume, and
// enter their members again; a member whose client never comes back is not left in their views
// (the hub cannot vouch for a view once it has left members out: it sends a SYNC). The trap is made by a test Worker (fixtures/trapping-worker.js).
// (Its own file: one Miniflare per test process.)

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { WebSocket } from 'ws';

import { startEdgeHub } from '../../js/hub/edge.js';
import { Realtime } from '../../js/node.js';
import { waitFor } from './helpers.mjs';

const script = fileURLToPath(new URL('./fixtures/trapping-worker.js', import.meta.url));

test('an object whose stored records make its hub trap on every wake starts without them', async () => {
  const persist = mkdtempSync(join(tmpdir(), 'rollcall-wake-trap-'));
  const first = await startEdgeHub({ port: 0, script, persist });
  const port = first.port;
  const url = `ws://127.0.0.1:${port}`;
  const client = (clientId) => new Realtime({ clientId, url, transportParams: { remainPresentFor: 60000 }, disconnectedRetryTimeout: 300 });
  const [alice, carol] = [client('alice'), client('carol')];
  let second;
  try {
    await alice.channels.get('room').presence.enter('trap-on-wake');
    await carol.channels.get('room').presence.enter('fine');
    // Dave's client goes with the runtime and never comes back.
    const dave = new WebSocket(`${url}/?v=6&format=json&clientId=dave&remainPresentFor=60000`);
    dave.on('open', () => {
      dave.send(JSON.stringify({ action: 10, channel: 'room' }));
      dave.send(JSON.stringify({ action: 14, channel: 'room', msgSerial: 0, presence: [{ action: 2, data: 'gone soon' }] }));
    });
    dave.on('error', () => {});
    await waitFor(async () => (await carol.channels.get('room').presence.get()).length === 3, { what: "dave's enter" });
    const ids = [alice.connection.id, carol.connection.id];
    // The runtime restarts on its storage (a deploy): the object wakes from what it stored.
    await first.close();
    second = await startEdgeHub({ port, script, persist });
    const state = async () => (await fetch(`${second.url}/_rollcall/state`)).json();
    await waitFor(() => alice.connection.state === 'connected' && carol.connection.state === 'connected', {
      ms: 30000,
      what: 'both clients back',
    });
    const now = await state();
    assert.ok(now.leftOut?.records >= 2, JSON.stringify(now));
    // The connections were kept (only members and history were left out): both resumed, and
    // their clients entered their members again.
    assert.deepEqual([alice.connection.id, carol.connection.id], ids);
    const names = async () => (await carol.channels.get('room').presence.get()).map((m) => m.clientId).sort();
    await waitFor(async () => (await names()).join() === 'alice,carol', { ms: 10000, what: `both members back, dave gone: ${await names()}` });
  } finally {
    alice.close();
    carol.close();
    await second?.close();
    rmSync(persist, { recursive: true, force: true });
  }
});
