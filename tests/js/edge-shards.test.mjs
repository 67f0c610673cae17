// Shards on the edge host: each is its own hub. A channel of one shard shares nothing with the
// channel of the same name on another, over WebSockets and over REST (history, and the links
// that page through it).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { startEdgeHub } from '../../js/hub/edge.js';
import { Realtime } from '../../js/node.js';
import { waitFor } from './helpers.mjs';

let edge;
const clients = [];
before(async () => {
  edge = await startEdgeHub({ port: 0 });
});
after(async () => {
  for (const c of clients) c.close();
  await waitFor(() => clients.every((c) => ['closed', 'failed'].includes(c.connection.state)), { what: 'closed' });
  await edge.close();
});

const client = (clientId, shard) => {
  const c = new Realtime({ clientId, url: edge.url, ...(shard ? { transportParams: { shard } } : {}) });
  clients.push(c);
  return c;
};

test('a channel name on two shards is two channels: members and history', async () => {
  const channel = `shared-name-${Date.now()}`;
  const a = client('a', 'room-7');
  const b = client('b', 'room-7');
  const other = client('other-tenant');
  await a.channels.get(channel).presence.enter();
  await b.channels.get(channel).presence.enter();
  await other.channels.get(channel).presence.enter();

  const ids = (members) => members.map((m) => m.clientId).sort();
  await waitFor(async () => (await a.channels.get(channel).presence.get()).length === 2, { what: 'both on room-7' });
  assert.deepEqual(ids(await a.channels.get(channel).presence.get()), ['a', 'b']);
  assert.deepEqual(ids(await other.channels.get(channel).presence.get()), ['other-tenant']);

  assert.deepEqual(ids((await a.channels.get(channel).presence.history()).items), ['a', 'b']);
  assert.deepEqual(ids((await other.channels.get(channel).presence.history()).items), ['other-tenant']);

  // Paging through a shard's history stays on that shard.
  const first = await a.channels.get(channel).presence.history({ limit: 1 });
  assert.equal(first.items.length, 1);
  const second = await first.next();
  assert.equal(second.items.length, 1);
  assert.deepEqual(ids([...first.items, ...second.items]), ['a', 'b']);
});
