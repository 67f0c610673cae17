// A hub that traps on the edge host (a bug in its Wasm) does not wedge its Durable Object: the
// object resets, its clients reconnect to a fresh one restored from storage and resume, and
// nobody sees a leave or an enter. The frame that made it trap is kept out of the fresh hub,
// so that the client resending it cannot reset the object again and again. The trap is made
// on demand by a test Worker (fixtures/trapping-worker.js). (Its own file: one Miniflare per
// test process.)

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { startEdgeHub } from '../../js/hub/edge.js';
import { Realtime } from '../../js/node.js';
import { waitFor } from './helpers.mjs';

const script = fileURLToPath(new URL('./fixtures/trapping-worker.js', import.meta.url));

test('a hub that traps resets its object once; its clients resume, and the frame is kept out', async () => {
  const edge = await startEdgeHub({ port: 0, script });
  const url = edge.url.replace(/^http/, 'ws');
  const clients = [];
  const client = (clientId) => {
    const c = new Realtime({ clientId, url, transportParams: { remainPresentFor: 10000 }, disconnectedRetryTimeout: 500 });
    clients.push(c);
    return c;
  };
  const boots = async () => (await (await fetch(`${edge.url}/_rollcall/state`)).json()).boots;
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

    // Mallory's update is a poison frame: the hub traps on it.
    const mallory = client('mallory');
    await mallory.channels.get('room').presence.enter('fine');
    await waitFor(() => events.length === 2, { what: "mallory's enter" });
    mallory.channels.get('room').presence.update('trap-now').catch(() => {});

    await waitFor(() => states.includes('disconnected') && watcher.connection.state === 'connected', {
      ms: 20000,
      what: 'the watcher to lose its connection and resume',
    });
    await waitFor(() => alice.connection.state === 'connected', { ms: 20000, what: 'alice back' });
    assert.deepEqual([watcher.connection.id, alice.connection.id], ids, 'both resumed their connections');
    assert.equal(await boots(), 2, 'a fresh object, restored from storage');

    // Mallory resends her update as she resumes, more than once: it never reaches the hub
    // again, and the object is not reset again.
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(await boots(), 2, 'reset once only');
    assert.deepEqual(states.filter((s) => s === 'disconnected').length, 1, 'the watcher dropped once');

    // The fresh object works: a newcomer is heard, and alice was never gone.
    await client('bob').channels.get('room').presence.enter('new');
    await waitFor(() => events.includes('enter:bob'), { ms: 10000, what: 'bob heard' });
    assert.deepEqual(events, ['enter:alice', 'enter:mallory', 'enter:bob']);
    const members = await watcher.channels.get('room').presence.get();
    assert.deepEqual(members.map((m) => m.clientId).sort(), ['alice', 'bob', 'mallory']);
  } finally {
    for (const c of clients) c.close();
    await edge.close();
  }
});
