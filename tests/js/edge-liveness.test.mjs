// The edge host notices a client that went silent, though its Durable Object sleeps between
// the client's heartbeats: the local runtime evicts an idle object after about 10 s, sooner
// than the default 15 s heartbeat interval, and a woken object learns from each socket's
// attachment when it last heard from it. (Its own file: one Miniflare per test process.)

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';

import { WebSocket } from 'ws';

import { startEdgeHub } from '../../js/hub/edge.js';
import { Realtime } from '../../js/node.js';
import { waitFor } from './helpers.mjs';

test('a client gone silent is noticed though the object sleeps between its heartbeats', async () => {
  const edge = await startEdgeHub({ port: 0 });
  const url = edge.url.replace(/^http/, 'ws');
  const watcher = new Realtime({ clientId: 'watcher', url, transportParams: { heartbeatInterval: 60000 } });
  // A rollcall client (its agent says so) that enters, then sends nothing, not even heartbeats:
  // with the default 15 s interval, the object is evicted (after ~10 s idle) before it is due.
  const frozen = new WebSocket(`${url}/?v=6&format=json&clientId=frozen&agent=rollcall-test&remainPresentFor=1000`);
  const opened = new Promise((resolve, reject) => {
    frozen.once('open', resolve);
    frozen.once('error', reject);
  });
  try {
    const leaves = [];
    await watcher.channels.get('room').presence.subscribe('leave', (m) => leaves.push({ clientId: m.clientId, at: Date.now() }));
    await opened;
    frozen.send(JSON.stringify({ action: 10, channel: 'room' }));
    frozen.send(JSON.stringify({ action: 14, channel: 'room', msgSerial: 0, presence: [{ action: 2 }] }));
    const silentFrom = Date.now();
    // 15 s interval, 7.5 s margin, 1 s grace: gone within about 24 s of its last frame.
    await waitFor(() => leaves.some((l) => l.clientId === 'frozen'), { ms: 45_000, every: 250, what: 'the silent client leaving' });
    const took = leaves.find((l) => l.clientId === 'frozen').at - silentFrom;
    assert.ok(took >= 22_000 && took < 40_000, `left ${took} ms after its last frame`);
  } finally {
    frozen.terminate();
    watcher.close();
    await sleep(100);
    await edge.close();
  }
});
