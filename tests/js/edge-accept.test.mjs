// A socket the edge runtime will not accept (no room for another hibernatable socket, a
// limit that sockets closing unanswered count against) is refused with 503 and 50004, and the
// new connection the hub opened for it goes with it: it does not stay live with no socket, held
// until its heartbeats were missed, nor held for a resume its client cannot make. A client refused so retries and gets in; nobody else notices.
// The refusal is made by a test Worker (fixtures/roomless-worker.js).
// (Its own file: one Miniflare per test process.)

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { WebSocket } from 'ws';

import { startEdgeHub } from '../../js/hub/edge.js';
import { Realtime } from '../../js/node.js';
import { waitFor } from './helpers.mjs';

const script = fileURLToPath(new URL('./fixtures/roomless-worker.js', import.meta.url));

/** The answer to an upgrade the edge did not take: `{ status, body }`. */
function refusedUpgrade(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on('open', () => {
      ws.close();
      reject(new Error('the socket was accepted'));
    });
    ws.on('unexpected-response', (request, response) => {
      let body = '';
      response.on('data', (chunk) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode, body }));
    });
    ws.on('error', () => {});
  });
}

test('a socket the runtime does not accept is refused (503, 50004) with its connection; a client retries and gets in', async () => {
  const edge = await startEdgeHub({ port: 0, script });
  const url = edge.url.replace(/^http/, 'ws');
  const clients = [];
  const client = (clientId) => {
    const c = new Realtime({ clientId, url, disconnectedRetryTimeout: 500 });
    clients.push(c);
    return c;
  };
  const state = async () => (await fetch(`${edge.url}/_rollcall/state`)).json();
  try {
    const watcher = client('watcher');
    const events = [];
    await watcher.channels.get('room').presence.subscribe((m) => events.push(`${m.action}:${m.clientId}`));
    const alice = client('alice');
    await alice.channels.get('room').presence.enter('here');
    await waitFor(() => events.length === 1, { what: "alice's enter" });
    assert.equal((await state()).liveConnections, 2);

    const refused = await refusedUpgrade(`${url}/?v=6&format=json&clientId=no-room-raw`);
    assert.equal(refused.status, 503);
    assert.equal(JSON.parse(refused.body).error?.code, 50004, refused.body);
    // The hub opened a connection for it before the runtime refused the socket: it is closed.
    const after = await state();
    assert.equal(after.liveConnections, 2, 'no connection left live without its socket');
    // Nor held for a resume its client cannot make (it never heard the connection's key).
    assert.equal(after.connections, 2, 'the new connection went at once');
    // So does one that a resume of an unknown (expired) connection made.
    const resumed = await refusedUpgrade(`${url}/?v=6&format=json&clientId=no-room-resume&resume=expired-key`);
    assert.equal(resumed.status, 503);
    assert.equal((await state()).connections, 2, 'the connection a failed resume made went at once');

    // A client refused so is disconnected, retries, and gets in.
    const late = client('no-room-client');
    const states = [];
    late.connection.on((change) => states.push(change.current));
    await late.channels.get('room').presence.enter('at last');
    assert.ok(states.includes('disconnected'), `refused once first: ${states}`);
    await waitFor(() => events.includes('enter:no-room-client'), { what: 'the late enter' });
    assert.deepEqual(events, ['enter:alice', 'enter:no-room-client'], 'nobody else saw anything');
    assert.deepEqual([watcher.connection.state, alice.connection.state], ['connected', 'connected']);
    assert.deepEqual([(await state()).liveConnections, (await state()).connections], [3, 3]);
  } finally {
    for (const c of clients) c.close();
    await waitFor(() => clients.every((c) => ['closed', 'failed'].includes(c.connection.state)), { what: 'closed' });
    await edge.close();
  }
});
