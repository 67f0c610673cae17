// A hub that traps on the edge host (a bug in its Wasm) does not wedge its Durable Object: the
// object resets, its clients reconnect to a fresh one restored from storage and resume, and
// nobody sees a leave or an enter. A frame that made it trap twice is kept out of the next
// hub, so that the client resending it cannot reset the object again and again: that client
// fails, alone. The trap is made on demand by a test Worker (fixtures/trapping-worker.js).
// (Its own file: one Miniflare per test process.)

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { startEdgeHub } from '../../js/hub/edge.js';
import { Realtime } from '../../js/node.js';
import { waitFor } from './helpers.mjs';

const script = fileURLToPath(new URL('./fixtures/trapping-worker.js', import.meta.url));

test('a hub that traps resets its object; its clients resume; a frame that traps twice is kept out', async () => {
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
    const refused = mallory.channels.get('room').presence.update('trap-now').then(
      () => null,
      (error) => error,
    );

    await waitFor(() => states.includes('disconnected') && watcher.connection.state === 'connected', {
      ms: 20000,
      what: 'the watcher to lose its connection and resume',
    });
    await waitFor(() => alice.connection.state === 'connected', { ms: 20000, what: 'alice back' });
    assert.deepEqual([watcher.connection.id, alice.connection.id], ids, 'both resumed their connections');

    // Mallory resends her update as she resumes: it traps the next hub too (a trap may depend
    // on the hub's state rather than the frame, so one is not enough to blame it), and then
    // it is kept out. Mallory's connection fails, alone, and she stops trying.
    const error = await refused;
    assert.equal(error?.code, 50000, `${error?.message}`);
    await waitFor(() => mallory.connection.state === 'failed', { ms: 20000, what: 'mallory failed' });
    await waitFor(() => events.includes('leave:mallory'), { ms: 10000, what: 'mallory gone' });
    await waitFor(() => watcher.connection.state === 'connected' && alice.connection.state === 'connected', {
      ms: 20000,
      what: 'the others back',
    });
    assert.deepEqual([watcher.connection.id, alice.connection.id], ids, 'both resumed their connections again');
    const resets = await boots();
    assert.equal(resets, 3, 'reset twice, and then no more');
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(await boots(), resets, 'no more resets');

    // The object works: a newcomer is heard, and alice was never gone.
    await client('bob').channels.get('room').presence.enter('new');
    await waitFor(() => events.includes('enter:bob'), { ms: 10000, what: 'bob heard' });
    assert.deepEqual(events, ['enter:alice', 'enter:mallory', 'leave:mallory', 'enter:bob']);
    const members = await watcher.channels.get('room').presence.get();
    assert.deepEqual(members.map((m) => m.clientId).sort(), ['alice', 'bob']);

    // A REST read that traps the hub twice is kept out of it from then on (500, 50000), and
    // resets the object no more.
    // Each read that resets the object is told so as an Ably error, not the platform's page.
    const read = () => fetch(`${edge.url}/channels/trap-rest/presence`).then(async (r) => `${r.status} ${(await r.json().catch(() => ({}))).error?.code}`, () => 'failed');
    assert.equal(await read(), '500 50000');
    await waitFor(async () => (await boots()) === resets + 1, { ms: 20000, what: 'the first reset by a read' });
    assert.equal(await read(), '500 50000');
    await waitFor(async () => (await boots()) === resets + 2, { ms: 20000, what: 'the second reset by a read' });
    const third = await fetch(`${edge.url}/channels/trap-rest/presence`);
    assert.equal(third.status, 500);
    assert.equal((await third.json()).error.code, 50000);
    assert.equal(await boots(), resets + 2, 'kept out: no third reset');
    await waitFor(() => watcher.connection.state === 'connected' && alice.connection.state === 'connected', {
      ms: 20000,
      what: 'the others back after the reads',
    });
  } finally {
    for (const c of clients) c.close();
    await edge.close();
  }
});
