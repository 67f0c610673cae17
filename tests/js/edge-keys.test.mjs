// The edge host's gate: development mode (no keys) serves localhost only, decided by the keys
// it parses (a settings value such as "," names none), and a shard's state needs a key once
// keys are set. And the deployment's other settings, as `npm run edge` passes them on.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

import { WebSocket } from 'ws';

import { startEdgeHub } from '../../js/hub/edge.js';
import { waitFor } from './helpers.mjs';

const KEY = 'app.ops:s3cret';
const edges = [];
after(async () => {
  for (const edge of edges) await edge.close();
});

/** GET `path` from the edge as if addressed to `host`. */
function get(edge, path, { host, authorization, origin, extra } = {}) {
  return new Promise((resolve, reject) => {
    const headers = { host: host ?? `localhost:${edge.port}`, ...extra };
    if (authorization) headers.authorization = authorization;
    if (origin) headers.origin = origin;
    const req = http.get({ host: '127.0.0.1', port: edge.port, path, headers }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
  });
}

test('keys that name no key are development mode: other hosts are refused', async () => {
  const edge = await startEdgeHub({ port: 0, keys: ' , ' });
  edges.push(edge);
  const remote = await get(edge, '/channels/room/presence', { host: 'presence.example.com' });
  assert.equal(remote.status, 403);
  assert.match(remote.body, /no keys configured/);
  assert.equal((await get(edge, '/channels/room/presence')).status, 200, 'localhost is served');
  // Nor through a proxy on this machine that names localhost (a tunnel): it says it forwarded.
  for (const extra of [{ 'x-forwarded-for': '203.0.113.9' }, { forwarded: 'for=203.0.113.9' }, { 'x-real-ip': '203.0.113.9' }]) {
    const proxied = await get(edge, '/channels/room/presence', { extra });
    assert.deepEqual([proxied.status, JSON.parse(proxied.body).error.code], [403, 40300], Object.keys(extra)[0]);
  }
  // A page from another site, open in a browser on this machine, is not.
  const page = await get(edge, '/channels/room/presence', { origin: 'https://evil.example' });
  assert.equal(page.status, 403);
  assert.match(page.body, /pages on this machine only/);
  // Errors as the hub's own, for clients to report.
  for (const answer of [remote, page]) assert.deepEqual([JSON.parse(answer.body).error.code, JSON.parse(answer.body).error.statusCode], [40300, 403]);
  assert.equal((await get(edge, '/channels/room/presence', { origin: 'http://localhost:5173' })).status, 200);
});

test('keys the hub cannot read are said so, without their secret, rather than failing every shard', async () => {
  const edge = await startEdgeHub({ port: 0, keys: `${KEY},app.typo` });
  edges.push(edge);
  for (const path of ['/channels/room/presence', '/time']) {
    const answer = await get(edge, path);
    assert.equal(answer.status, 500, path);
    assert.equal(JSON.parse(answer.body).error.code, 50000);
    assert.match(answer.body, /ROLLCALL_KEYS cannot be read: .*entry 2/);
    assert.doesNotMatch(answer.body, /s3cret/);
  }
  assert.equal((await get(edge, '/')).status, 200, 'the static files are still served');
});

test('without keys the edge hub listens on loopback only', async () => {
  // Nor with keys that name none, in either form.
  for (const keys of ['', ',', '[]', '[{}]']) {
    await assert.rejects(startEdgeHub({ port: 0, host: '0.0.0.0', keys }), /refusing to listen on 0\.0\.0\.0 without keys/, keys);
  }
});

test('with keys, a shard\'s state needs one', async () => {
  const edge = await startEdgeHub({ port: 0, keys: KEY });
  edges.push(edge);
  assert.equal((await get(edge, '/_rollcall/state')).status, 401);
  const wrong = await get(edge, '/_rollcall/state', { authorization: `Basic ${btoa('app.ops:guess')}` });
  assert.equal(wrong.status, 401);
  const right = await get(edge, '/_rollcall/state', { authorization: `Basic ${btoa(KEY)}` });
  assert.equal(right.status, 200);
  assert.equal(typeof JSON.parse(right.body).connections, 'number');
  // The scheme's name in any case, as the hub reads it.
  assert.equal((await get(edge, '/_rollcall/state', { authorization: `basic  ${btoa(KEY)}` })).status, 200);
});

test('requests without credentials for shards no one uses leave nothing stored', async () => {
  const { Realtime } = await import('../../js/node.js');
  const edge = await startEdgeHub({ port: 0, keys: KEY });
  edges.push(edge);
  const key = { authorization: `Basic ${btoa(KEY)}` };
  const state = async (shard) => JSON.parse((await get(edge, `/_rollcall/state?shard=${shard}`, key)).body);
  // REST without credentials, and a WebSocket with a wrong key, each on a shard of its own.
  assert.equal((await get(edge, '/channels/room/presence?shard=junk-rest')).status, 401);
  const intruder = new Realtime({ key: 'app.ops:guess', clientId: 'x', url: `ws://127.0.0.1:${edge.port}`, transportParams: { shard: 'junk-ws' } });
  const failed = await intruder.connection.whenState('failed');
  assert.equal(failed.reason.code, 40101);
  for (const shard of ['junk-rest', 'junk-ws']) assert.equal((await state(shard)).saved, false, shard);
  // Nor do they reach a shard: the time, a preflight, a wrong method, a bad query, without
  // credentials, are answered before any object is (each would otherwise make or wake one).
  assert.equal((await state('quiet')).served, 1);
  const asks = [
    ['GET', '/time?shard=quiet', 200],
    ['OPTIONS', '/channels/room/presence?shard=quiet', 204],
    ['PUT', '/channels/room/presence?shard=quiet', 405],
    ['GET', '/channels/room/presence?limit=zz&shard=quiet', 401],
    ['GET', '/channels/room/nothing?shard=quiet', 401],
    // In an envelope, where every answer is a 200: the refusal is in it, and no shard is woken.
    ['GET', '/presence?channels=room&envelope=json&shard=quiet', 200],
    ['GET', '/stats?envelope=json&shard=quiet', 200],
  ];
  for (const [method, path, status] of asks) {
    const response = await fetch(`${edge.url}${path}`, { method, headers: { origin: 'https://app.example' } });
    assert.equal(response.status, status, `${method} ${path}`);
    if (path.includes('envelope')) assert.equal((await response.json()).response.error.code, 40101, path);
    else if (status >= 400) assert.ok((await response.json()).error.code > 0, `${method} ${path}: an Ably error`);
  }
  assert.equal((await state('quiet')).served, 2, 'only the state reads reached the shard');
  // A shard in use stores what it holds.
  const alice = new Realtime({ key: KEY, clientId: 'alice', url: `ws://127.0.0.1:${edge.port}`, transportParams: { shard: 'used' } });
  try {
    await alice.channels.get('room').presence.enter('here');
    assert.equal((await state('used')).saved, true);
  } finally {
    alice.close();
  }
});

test('credentials are checked before a shard is reached: refused sockets that never close take none of its places', async () => {
  const edge = await startEdgeHub({ port: 0, keys: KEY });
  edges.push(edge);
  // Peers that ask with a wrong key, read the refusal, and never answer its close.
  const deaf = [];
  for (let i = 0; i < 20; i++) {
    const socket = net.connect(edge.port, '127.0.0.1');
    let heard = '';
    socket.on('data', (d) => (heard += d.toString('latin1')));
    socket.on('error', () => {});
    socket.write(
      `GET /?key=app.ops:guess&v=6&shard=victim HTTP/1.1\r\nHost: localhost:${edge.port}\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`,
    );
    deaf.push({ socket, heard: () => heard });
  }
  try {
    await waitFor(() => deaf.every((d) => /40101/.test(d.heard())), { what: 'every peer refused with 40101' });
    const state = JSON.parse((await get(edge, '/_rollcall/state?shard=victim', { authorization: `Basic ${btoa(KEY)}` })).body);
    assert.deepEqual([state.sockets, state.closing, state.connections, state.saved], [0, 0, 0, false]);
  } finally {
    for (const d of deaf) d.socket.destroy();
  }
  // A forged TokenRequest is refused as one, without reaching the shard that exchanges them.
  const forged = { keyName: 'app.ops', timestamp: Date.now(), nonce: 'n'.repeat(16), mac: 'AAAA', ttl: 60000, capability: '{"*":["*"]}' };
  const answer = await fetch(`${edge.url}/keys/app.ops/requestToken`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(forged) });
  assert.deepEqual([answer.status, (await answer.json()).error.code], [401, 40101]);
  // In an envelope if it asked for one, as the Node host answers.
  const wrapped = await fetch(`${edge.url}/keys/app.ops/requestToken?envelope=json`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(forged) });
  const inside = await wrapped.json();
  assert.deepEqual([wrapped.status, inside.statusCode, inside.response?.error?.code], [200, 401, 40101]);
});

test('a TokenRequest signed with a key is exchanged by the edge hub for a token', async () => {
  const { Realtime } = await import('../../js/node.js');
  const Ably = await import('ably');
  const edge = await startEdgeHub({ port: 0, keys: KEY });
  edges.push(edge);
  const server = new Ably.Rest({ key: KEY, logLevel: 0 });
  const bob = new Realtime({
    clientId: 'bob',
    url: `ws://127.0.0.1:${edge.port}`,
    authCallback: (params) => server.auth.createTokenRequest({ clientId: params.clientId }),
  });
  try {
    await bob.channels.get('room').presence.enter('here');
    assert.deepEqual((await bob.channels.get('room').presence.get()).map((m) => m.clientId), ['bob']);
    assert.ok(bob.auth.tokenDetails.token.split('.').length === 3, 'a JWT');
    // Exchanged once, whichever shard a request names: one shard remembers them all.
    const request = await server.auth.createTokenRequest({ clientId: 'carol' });
    const exchange = (shard, body = JSON.stringify(request)) =>
      fetch(`${edge.url}/keys/${request.keyName}/requestToken?shard=${shard}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    assert.equal((await exchange('a')).status, 200);
    const again = await exchange('b');
    assert.deepEqual([again.status, (await again.json()).error.code], [401, 40105]);
    // A body is read for a TokenRequest only, and only as long as one may be.
    const big = await exchange('a', 'x'.repeat(100 * 1024));
    assert.deepEqual([big.status, (await big.json()).error.code], [413, 40009]);
    const elsewhere = await fetch(`${edge.url}/channels/room/presence`, { method: 'POST', body: 'x' });
    assert.deepEqual([elsewhere.status, (await elsewhere.json()).error.code], [405, 40500]);
    // Nor one that does not say its length (chunked), whatever it holds.
    const chunks = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(JSON.stringify(request)));
        controller.close();
      },
    });
    const unsaid = await fetch(`${edge.url}/keys/${request.keyName}/requestToken`, { method: 'POST', body: chunks, duplex: 'half' });
    assert.deepEqual([unsaid.status, (await unsaid.json()).error.code], [413, 40009]);
    // The token shard is the host's own: no one else's sockets or members go there.
    const reserved = await fetch(`${edge.url}/channels/room/presence?shard=rollcall:tokens`, { headers: { authorization: `Basic ${btoa(KEY)}` } });
    assert.deepEqual([reserved.status, (await reserved.json()).error.code], [400, 40000]);
    // Every name is an object: names beyond a sensible form are refused before one is made.
    for (const shard of ['s'.repeat(257), 'a%00b']) {
      const odd = await fetch(`${edge.url}/channels/room/presence?shard=${shard}`, { headers: { authorization: `Basic ${btoa(KEY)}` } });
      assert.deepEqual([odd.status, (await odd.json()).error.code], [400, 40000], shard.slice(0, 8));
    }
  } finally {
    bob.close();
  }
});

test('a TokenRequest exchanged before a restart is not exchanged again after it', async () => {
  const Ably = await import('ably');
  const persist = mkdtempSync(join(tmpdir(), 'rollcall-nonces-'));
  try {
    const request = await new Ably.Rest({ key: KEY, logLevel: 0 }).auth.createTokenRequest({ clientId: 'carol' });
    const exchange = (edge) =>
      fetch(`${edge.url}/keys/${request.keyName}/requestToken`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request) });
    const first = await startEdgeHub({ port: 0, keys: KEY, persist });
    assert.equal((await exchange(first)).status, 200);
    await first.close();
    // The runtime restarted on its storage, as in a deploy (or the object evicted, idle).
    const second = await startEdgeHub({ port: 0, keys: KEY, persist });
    try {
      const again = await exchange(second);
      assert.deepEqual([again.status, (await again.json()).error.code], [401, 40105]);
    } finally {
      await second.close();
    }
  } finally {
    rmSync(persist, { recursive: true, force: true });
  }
});

test('keys given as a JSON list carry their capabilities, as the Node host\'s config file does', async () => {
  const { Realtime } = await import('../../js/node.js');
  const keys = JSON.stringify([{ key: KEY, capability: { room: ['presence', 'subscribe'] } }, { key: 'app.admin:0ther' }]);
  const edge = await startEdgeHub({ port: 0, keys });
  edges.push(edge);
  const alice = new Realtime({ key: KEY, clientId: 'alice', url: `ws://127.0.0.1:${edge.port}` });
  try {
    await alice.channels.get('room').presence.enter('here');
    const refused = await alice.channels.get('elsewhere').attach().catch((error) => error);
    assert.equal(refused.code, 40160, 'a channel its capability does not name');
    // Either key reads a shard's state; none is development mode.
    assert.equal((await get(edge, '/_rollcall/state', { authorization: `Basic ${btoa('app.admin:0ther')}` })).status, 200);
    assert.equal((await get(edge, '/channels/room/presence', { host: 'presence.example.com' })).status, 401);
  } finally {
    alice.close();
  }
  // A list that is not JSON is said so, without the text around the mistake.
  const broken = await startEdgeHub({ port: 0, keys: `[{ "key": "${KEY}" },]` });
  edges.push(broken);
  const answer = await get(broken, '/channels/room/presence');
  assert.equal(answer.status, 500);
  assert.match(answer.body, /ROLLCALL_KEYS cannot be read: a list of keys that is not JSON/);
  assert.doesNotMatch(answer.body, /s3cret/);
});

test('hub settings come from ROLLCALL_HUB, checked as the keys are', async () => {
  const { Realtime } = await import('../../js/node.js');
  const edge = await startEdgeHub({ port: 0, hub: { maxMembersPerChannel: 1 } });
  edges.push(edge);
  const client = (clientId) => new Realtime({ key: 'app.any:any', clientId, url: `ws://127.0.0.1:${edge.port}` });
  const [alice, bob] = [client('alice'), client('bob')];
  try {
    await alice.channels.get('room').presence.enter('here');
    const refused = await bob.channels.get('room').presence.enter('here').catch((error) => error);
    assert.equal(refused.code, 91003, 'the channel holds one member');
  } finally {
    alice.close();
    bob.close();
  }
  // Settings the hub refuses, or that are the host's own, are said so on every request.
  for (const [hub, said] of [
    ['{"remainPresentFor": "soon"}', /ROLLCALL_HUB cannot be read: .*invalid type/],
    ['[1]', /ROLLCALL_HUB cannot be read: it is not a JSON object/],
    ['{"persistence": false}', /ROLLCALL_HUB cannot be read: persistence is the host's to set/],
    ['{"maxConnections": 40000}', /maxConnections is at most 30000 on the edge/],
    ['{"maxChannelsPerConnection": 5000}', /maxChannelsPerConnection is at most 800 on the edge/],
    ['{"maxConections": 10}', /ROLLCALL_HUB cannot be read: unknown field `maxConections`/],
  ]) {
    const broken = await startEdgeHub({ port: 0, hub });
    edges.push(broken);
    const answer = await get(broken, '/channels/room/presence');
    assert.equal(answer.status, 500, hub);
    assert.match(JSON.parse(answer.body).error.message, said, hub);
  }
});

test("the deployment's default shard and server id are the edge's", async () => {
  const edge = await startEdgeHub({ port: 0, vars: { ROLLCALL_DEFAULT_SHARD: 'tenant-1', ROLLCALL_SERVER_ID: 'edge-test' } });
  edges.push(edge);
  const ws = new WebSocket(`ws://127.0.0.1:${edge.port}/?v=6&format=json&clientId=bob`);
  const heard = [];
  ws.on('message', (data) => heard.push(JSON.parse(data)));
  try {
    await waitFor(() => heard.some((m) => m.action === 4), { what: 'CONNECTED' });
    assert.equal(heard.find((m) => m.action === 4).connectionDetails.serverId, 'edge-test');
    ws.send(JSON.stringify({ action: 10, channel: 'room' }));
    await waitFor(() => heard.some((m) => m.action === 11), { what: 'ATTACHED' });
    ws.send(JSON.stringify({ action: 14, channel: 'room', msgSerial: 0, presence: [{ action: 2 }] }));
    await waitFor(() => heard.some((m) => m.action === 1), { what: 'the ACK' });
    // A connection that names no shard is on the deployment's default.
    const on = async (shard) => JSON.parse((await get(edge, `/channels/room/presence${shard ? `?shard=${shard}` : ''}`)).body).map((m) => m.clientId);
    assert.deepEqual(await on('tenant-1'), ['bob']);
    assert.deepEqual(await on(''), ['bob'], 'a read that names no shard too');
    assert.deepEqual(await on('default'), []);
  } finally {
    ws.close();
  }
});
