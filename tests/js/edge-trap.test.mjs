// A hub that traps on the edge host (a bug in its Wasm) does not wedge its Durable Object: the
// object resets, its clients reconnect to a fresh one restored from storage and resume, and
// nobody sees a leave or an enter. The trap is made on demand by a test Worker
// (fixtures/trapping-worker.js). (Its own file: one Miniflare per test process.)

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { WebSocket } from 'ws';

import { startEdgeHub } from '../../js/hub/edge.js';
import { Realtime } from '../../js/node.js';
import { waitFor } from './helpers.mjs';

const script = fileURLToPath(new URL('./fixtures/trapping-worker.js', import.meta.url));

test('a hub that traps resets its object, and its clients resume with their members', async () => {
  const edge = await startEdgeHub({ port: 0, script });
  const url = edge.url.replace(/^http/, 'ws');
  const clients = [];
  const client = (clientId) => {
    const c = new Realtime({ clientId, url, transportParams: { remainPresentFor: 10000 } });
    clients.push(c);
    return c;
  };
  try {
    const watcher = client('watcher');
    const events = [];
    await watcher.channels.get('room').presence.subscribe((m) => events.push(`${m.action}:${m.clientId}`));
    const alice = client('alice');
    await alice.channels.get('room').presence.enter('here');
    await waitFor(() => events.length === 1, { what: 'the enter' });
    const ids = [watcher.connection.id, alice.connection.id];
    const states = [];
    watcher.connection.on((change) => states.push(change.current));

    const culprit = new WebSocket(`${url}/?v=6&format=json&clientId=culprit`);
    await new Promise((resolve, reject) => {
      culprit.once('message', resolve);
      culprit.once('error', reject);
    });
    culprit.send(JSON.stringify({ action: 10, channel: 'trap-now' }));

    await waitFor(() => states.includes('disconnected') && watcher.connection.state === 'connected', {
      ms: 20000,
      what: 'the watcher to lose its connection and resume',
    });
    await waitFor(() => alice.connection.state === 'connected', { ms: 20000, what: 'alice back' });
    assert.deepEqual([watcher.connection.id, alice.connection.id], ids, 'both resumed their connections');
    const state = await (await fetch(`${edge.url}/_rollcall/state`)).json();
    assert.equal(state.boots, 2, 'a fresh object, restored from storage');

    // The fresh object works: a newcomer is heard, and alice was never gone.
    await client('bob').channels.get('room').presence.enter('new');
    await waitFor(() => events.includes('enter:bob'), { ms: 10000, what: 'bob heard' });
    assert.deepEqual(events, ['enter:alice', 'enter:bob']);
    const members = await watcher.channels.get('room').presence.get();
    assert.deepEqual(members.map((m) => m.clientId).sort(), ['alice', 'bob']);
    culprit.terminate();
  } finally {
    for (const c of clients) c.close();
    await edge.close();
  }
});
