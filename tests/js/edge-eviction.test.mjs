// The edge host's Durable Object is rebuilt from what it stored. The local runtime evicts an
// idle object after about 10 s while its hibernated sockets stay open, so an idle wait is a real
// eviction: members that were present are still present afterwards, nobody sees them leave and
// re-enter, presence history is still there, the rebuilt hub still reaches the sockets that
// stayed open, and a client that then loses its socket resumes with its view kept (no SYNC).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';

import { startEdgeHub } from '../../js/hub/edge.js';
import { Realtime } from '../../js/node.js';
import { spyProxy, waitFor } from './helpers.mjs';

/** A WebSocket that never answers a close: the upgrade by hand, and nothing read after it. */
async function deafSocket(port, query) {
  const socket = connect(port, '127.0.0.1');
  socket.write(
    `GET /?${query} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  let head = '';
  await new Promise((resolve, reject) => {
    socket.on('error', reject);
    socket.on('data', (chunk) => {
      head += chunk;
      if (head.includes('\r\n\r\n')) resolve();
    });
  });
  assert.match(head, /^HTTP\/1\.1 101/);
  return socket;
}

/** A WebSocket text frame as a client sends it (masked). */
function maskedText(text) {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, payload.map((b, i) => b ^ mask[i % 4])]);
}

test('an evicted Durable Object comes back with every member and no spurious events', async () => {
  const edge = await startEdgeHub({ port: 0 });
  const url = edge.url.replace(/^http/, 'ws');
  const proxy = await spyProxy(new URL(edge.url).port);
  // Long heartbeats: no alarm wakes the object during the idle wait.
  const quiet = { heartbeatInterval: 60000, remainPresentFor: 15000 };
  const watcher = new Realtime({ clientId: 'watcher', url, transportParams: quiet });
  // Through a proxy that records what reaches it, and attached once both members are in.
  const late = new Realtime({
    clientId: 'late',
    url: `ws://127.0.0.1:${proxy.port}`,
    transportParams: quiet,
    disconnectedRetryTimeout: 300,
  });
  const alice = new Realtime({ clientId: 'alice', url, transportParams: quiet });
  const bob = new Realtime({ clientId: 'bob', url, transportParams: quiet });
  const state = async () => (await fetch(`${edge.url}/_rollcall/state`)).json();
  try {
    const events = [];
    const presence = watcher.channels.get('room').presence;
    await presence.subscribe((m) => events.push([m.action, m.clientId, m.data]));
    await alice.channels.get('room').presence.enter({ device: 'laptop' });
    await bob.channels.get('room').presence.enter({ device: 'phone' });
    await waitFor(() => events.length === 2);
    const lateEvents = [];
    const latePresence = late.channels.get('room').presence;
    await latePresence.subscribe((m) => m.action !== 'present' && lateEvents.push(`${m.action}:${m.clientId}`));
    assert.deepEqual((await latePresence.get()).map((m) => m.clientId).sort(), ['alice', 'bob']);
    // A connection the hub closes (it sends a frame that is not a message) whose peer never
    // finishes the close: the object stops using its socket, and after the eviction does not
    // take it for a transport. (One refused as it opens goes on a socket of its own, which the
    // object never holds.)
    const deaf = await deafSocket(new URL(edge.url).port, 'clientId=deaf&v=6');
    deaf.write(maskedText('hello'));
    await waitFor(async () => (await state()).closing === 1, { what: 'the closed socket closing' });
    const before = await state();
    assert.equal(before.members, 2);
    assert.equal(before.sockets, 4);

    // Nothing to poll: a request would keep the object alive. The runtime evicts after about
    // 10 s idle; look after 13 s, and again (up to three times) on a slow machine.
    let after;
    for (let look = 0; look < 3; look++) {
      await sleep(13_000);
      after = await state();
      if (after.boots > before.boots) break;
    }

    assert.ok(after.boots > before.boots, `the object was rebuilt (boots ${before.boots} → ${after.boots})`);
    assert.equal(after.members, 2, 'every member is still present');
    assert.equal(after.liveConnections, 4, 'every socket is still known');
    assert.equal(after.sockets, 4, 'the socket the object closed is not a transport again');
    deaf.destroy();
    assert.deepEqual(events.length, 2, 'nobody saw a leave or an enter');
    assert.deepEqual((await presence.get()).map((m) => m.clientId).sort(), ['alice', 'bob']);
    const history = await presence.history({ direction: 'forwards' });
    assert.deepEqual(
      history.items.map((m) => [m.action, m.clientId]),
      [
        ['enter', 'alice'],
        ['enter', 'bob'],
      ],
      'presence history survived the eviction',
    );

    // The rebuilt hub reaches the sockets that stayed open, both ways.
    await alice.channels.get('room').presence.update({ device: 'laptop', status: 'back' });
    await waitFor(() => events.length === 3);
    assert.deepEqual(events[2], ['update', 'alice', { device: 'laptop', status: 'back' }]);
    bob.close();
    await waitFor(() => events.length === 4);
    assert.deepEqual(events[3].slice(0, 2), ['leave', 'bob']);

    // The object numbered on from where it was (two enters, then the update and the leave),
    // and what it knows of the late client's view survived too: after a drop, its resume is
    // vouched for, and no SYNC crosses the wire.
    await waitFor(() => lateEvents.length === 2, { what: 'the late client heard both' });
    // Numbered from where the late client attached (after the two enters).
    const [attachedAt, ...numbered] = proxy.serials.map((s) => BigInt(s.split(':').pop()));
    assert.deepEqual(numbered, [attachedAt + 1n, attachedAt + 2n], 'the serials go on after the wake');
    const resumed = [];
    late.channels.get('room').on('attached', (change) => resumed.push(change.resumed));
    const id = late.connection.id;
    const [ATTACHED, SYNC] = [11, 16];
    proxy.down.length = 0;
    late.connection.simulateDrop();
    late.connect();
    await waitFor(() => resumed.length === 1, { ms: 10000, what: 're-attached' });
    assert.equal(late.connection.id, id, 'the connection resumed');
    assert.deepEqual(resumed, [true]);
    // One more event: any SYNC sent with the ATTACHED would reach the proxy before it.
    await alice.channels.get('room').presence.update({ device: 'laptop', status: 'later' });
    await waitFor(() => lateEvents.length === 3, { what: 'the event after the resume' });
    assert.ok(proxy.down.includes(ATTACHED), `frames after the resume: ${proxy.down}`);
    assert.ok(!proxy.down.includes(SYNC), `no SYNC after the resume: ${proxy.down}`);
    assert.deepEqual((await latePresence.get()).map((m) => m.clientId), ['alice']);
  } finally {
    for (const c of [watcher, late, alice, bob]) c.close();
    await sleep(100);
    await proxy.close();
    await edge.close();
  }
});
