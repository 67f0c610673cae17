// A storage write that fails resets the Durable Object, as a trap does: what its hub held and
// what is stored would differ from then on, and a later wake would undo what clients heard.
// The object starts again from storage, its clients resume, and every view agrees with the
// hub's. The failure is made by a test Worker (fixtures/failing-storage-worker.js).
// (Its own file: one Miniflare per test process.)

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { startEdgeHub } from '../../js/hub/edge.js';
import { Realtime } from '../../js/node.js';
import { waitFor } from './helpers.mjs';

const script = fileURLToPath(new URL('./fixtures/failing-storage-worker.js', import.meta.url));

test('a failed storage write resets the object; its clients resume and agree with the hub', async () => {
  const edge = await startEdgeHub({ port: 0, script });
  const url = edge.url.replace(/^http/, 'ws');
  const clients = [];
  const client = (clientId) => {
    const c = new Realtime({ clientId, url, transportParams: { remainPresentFor: 10000 }, disconnectedRetryTimeout: 300 });
    clients.push(c);
    return c;
  };
  const state = async () => (await fetch(`${edge.url}/_rollcall/state`)).json();
  try {
    const watcher = client('watcher');
    await watcher.channels.get('room').presence.subscribe(() => {});
    const alice = client('alice');
    await alice.channels.get('room').presence.enter('fine');
    const boots = (await state()).boots;
    const mallory = client('mallory');
    mallory.channels.get('room').presence.enter('fail-once').catch(() => {});
    await waitFor(async () => (await state()).boots > boots, { ms: 20000, what: 'the object to reset' });
    const names = async (c) => (await c.channels.get('room').presence.get()).map((m) => m.clientId).sort().join();
    const held = async () => (await (await fetch(`${edge.url}/channels/room/presence`)).json()).map((m) => m.clientId).sort().join();
    await waitFor(async () => (await held()) === 'alice,mallory' && (await names(watcher)) === 'alice,mallory', {
      ms: 20000,
      what: 'the views and the hub to agree',
    });
  } finally {
    for (const c of clients) c.close();
    await waitFor(() => clients.every((c) => ['closed', 'failed'].includes(c.connection.state)), { what: 'closed' });
    await edge.close();
  }
});
