// The client against a hub scripted frame by frame (a `ws` server speaking just enough of the
// protocol): what the API does when the hub leaves it halfway, in states a real hub reaches
// only under faults.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { WebSocketServer } from 'ws';

import { Realtime } from '../../js/node.js';
import { waitFor } from './helpers.mjs';

/** A hub that connects, answers an ATTACH with presence whose SYNC never completes,
 * acknowledges presence, and detaches when asked. */
async function halfwayHub() {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => server.once('listening', resolve));
  const sockets = [];
  server.on('connection', (ws) => {
    sockets.push(ws);
    const send = (m) => ws.send(JSON.stringify(m));
    send({ action: 4, connectionId: 'c1', connectionDetails: { connectionKey: 'k1', maxIdleInterval: 15000, connectionStateTtl: 120000 } });
    ws.on('message', (raw) => {
      const m = JSON.parse(raw);
      if (m.action === 10) {
        send({ action: 11, channel: m.channel, flags: 1 | (1 << 16) | (1 << 19), channelSerial: 'a:1' });
        const member = { action: 1, clientId: 'x', connectionId: 'c9', id: 'c9:0:0', timestamp: Date.now() };
        send({ action: 16, channel: m.channel, channelSerial: 's1:more', presence: [member] });
      } else if (m.action === 14) {
        send({ action: 1, msgSerial: m.msgSerial, count: 1 });
      } else if (m.action === 12) {
        send({ action: 13, channel: m.channel });
      }
    });
  });
  return {
    url: `ws://127.0.0.1:${server.address().port}`,
    /** Sends every client a channel ERROR: the channel fails. */
    failChannel: (channel) =>
      sockets.forEach((ws) => ws.send(JSON.stringify({ action: 9, channel, error: { code: 90000, statusCode: 400, message: 'gone' } }))),
    close: () => new Promise((resolve) => { sockets.forEach((ws) => ws.terminate()); server.close(resolve); }),
  };
}

test('a get() waiting for a SYNC fails when the channel fails, rather than waiting forever', async () => {
  const hub = await halfwayHub();
  const client = new Realtime({ clientId: 'me', url: hub.url });
  try {
    const channel = client.channels.get('room');
    const waiting = channel.presence.get();
    let settled = false;
    waiting.then(() => (settled = true), () => (settled = true));
    await waitFor(() => channel.state === 'attached');
    assert.equal(settled, false, 'still waiting for the SYNC to end');
    hub.failChannel('room');
    await assert.rejects(waiting, (e) => e.code === 90001 && /failed/.test(e.message));
    assert.deepEqual(await channel.presence.get({ waitForSync: false }).catch((e) => e.code), 90001);
  } finally {
    client.close();
    await hub.close();
  }
});

test('members entered on a channel since detached or failed are not re-entered by a page restore', async () => {
  const hub = await halfwayHub();
  const client = new Realtime({ clientId: 'me', url: hub.url });
  try {
    const [room, lobby, hall] = ['room', 'lobby', 'hall'].map((name) => client.channels.get(name));
    for (const channel of [room, lobby, hall]) await channel.presence.enter(channel.name);
    // What a page restored from the back-forward cache would enter again.
    const restored = () => client._presentOn().map((p) => p.channel).sort();
    assert.deepEqual(restored(), ['hall', 'lobby', 'room']);
    hub.failChannel('room');
    await waitFor(() => room.state === 'failed');
    await lobby.detach();
    assert.deepEqual(restored(), ['hall']);
  } finally {
    client.close();
    await hub.close();
  }
});
