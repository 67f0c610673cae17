// The edge host as clients meet it. Shards: each is its own hub, and a channel of one shares
// nothing with the channel of the same name on another, over WebSockets and over REST
// (history, and the links that page through it). Sockets: closing handshakes answered, and
// frames over 1 MiB refused, and the resume that would resend one, as on the Node host.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { WebSocket } from 'ws';

import { startEdgeHub } from '../../js/hub/edge.js';
import { Realtime } from '../../js/node.js';
import { attachBurst, waitFor } from './helpers.mjs';

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

/** A raw socket to the edge, what it heard and how it closed: `{ ws, heard, opened, closed }`
 * (closed: `{ code, at }`). */
function raw(query = '') {
  const ws = new WebSocket(`${edge.url.replace(/^http/, 'ws')}/?clientId=raw&v=6&format=json${query}`);
  const heard = [];
  ws.on('message', (data) => heard.push(JSON.parse(data)));
  const opened = new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const closed = new Promise((resolve) => ws.once('close', (code) => resolve({ code, at: Date.now() })));
  return { ws, heard, opened, closed };
}

test('a close the client starts is answered; a frame over 1 MiB closes the socket with 1009', async () => {
  const polite = raw();
  await polite.opened;
  const asked = Date.now();
  polite.ws.close(1000, 'bye');
  const { code, at } = await polite.closed;
  assert.equal(code, 1000);
  // ws gives up on an unanswered close after 30 s and reports 1006.
  assert.ok(at - asked < 10_000, `answered after ${at - asked} ms`);

  const big = raw();
  await big.opened;
  await waitFor(() => big.heard.length > 0, { what: 'CONNECTED' });
  const key = big.heard[0].connectionDetails.connectionKey;
  big.ws.send(JSON.stringify({ action: 10, channel: 'big', params: { pad: 'x'.repeat(2 * 1024 * 1024) } }));
  assert.equal((await big.closed).code, 1009);
  // A client resumes to send again what was not answered: refused with why, not cut off again.
  const again = raw(`&resume=${encodeURIComponent(key)}`);
  await waitFor(() => again.heard.length > 0, { what: 'an answer to the resume' });
  assert.equal(again.heard[0].action, 9, JSON.stringify(again.heard));
  await again.closed;
  assert.equal(again.heard[0].error.code, 40009);
  assert.match(again.heard[0].error.message, /1048576 bytes/);

  // Under 1 Mi UTF-16 units, over 1 MiB in UTF-8: judged by its bytes all the same.
  const wide = raw();
  await wide.opened;
  await waitFor(() => wide.heard.length > 0, { what: 'CONNECTED' });
  wide.ws.send(JSON.stringify({ action: 10, channel: 'big', params: { pad: 'é'.repeat(600_000) } }));
  assert.equal((await wide.closed).code, 1009);
});

test('many clients attaching a big channel at once do not hold all their SYNCs in the Wasm memory; another shard does not share it', async () => {
  const memory = async (shard = 'default') => (await (await fetch(`${edge.url}/_rollcall/state?shard=${shard}`)).json()).wasmMemoryBytes;
  const grown = await attachBurst(edge.url, memory);
  // 60 SYNCs of 2 MB held until the flush would be 120 MB; drained every 4 MB, a few SYNCs' worth.
  assert.ok(grown < 40 * 1024 * 1024, `the Wasm memory grew ${(grown / 1048576).toFixed(1)} MB`);
  // Each object has a Wasm instance of its own: a shard with nothing holds none of that memory
  // (nor would it share a trapped instance).
  const [busy, idle] = [await memory(), await memory('quiet')];
  assert.ok(busy - idle > 2 * 1024 * 1024, `${busy} B beside ${idle} B`);
});

test('the package is served to pages of any origin, as the Node host serves it; the demo page as it is', async () => {
  const module = await fetch(`${edge.url}/rollcall/js/browser.js`, { headers: { origin: 'https://app.example' } });
  assert.equal(module.status, 200);
  assert.equal(module.headers.get('access-control-allow-origin'), '*');
  assert.match(await module.text(), /export/);
  const wasm = await fetch(`${edge.url}/rollcall/pkg/client/rollcall_client_bg.wasm`);
  assert.equal(wasm.headers.get('access-control-allow-origin'), '*');
  assert.equal(wasm.headers.get('content-type'), 'application/wasm');
  const page = await fetch(`${edge.url}/`);
  assert.equal(page.status, 200);
  assert.equal(page.headers.get('access-control-allow-origin'), null);
});
