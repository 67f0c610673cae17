// Keys and tokens end to end on the Node host: authUrl and authCallback, renewal in place with
// no member lost, identity bound by the token, capabilities, refusals with Ably's codes, and the
// same tokens accepted from the ably client.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';

import * as Ably from 'ably';

import { createToken } from '../../js/auth.js';
import { Realtime } from '../../js/node.js';
import { startHub, waitFor } from './helpers.mjs';

const KEY = 'app.server:s3cret-server';
let hub;
let tokenServer;
let tokenUrl;
let issued = 0;
const clients = [];

before(async () => {
  hub = await startHub({ port: 0, keys: KEY });
  // An app server's token endpoint: short-lived tokens for whoever asks.
  tokenServer = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    issued += 1;
    res.writeHead(200, { 'content-type': 'application/jwt' });
    res.end(createToken({ key: KEY, clientId: url.searchParams.get('clientId'), ttl: 4000 }));
  });
  await new Promise((r) => tokenServer.listen(0, '127.0.0.1', r));
  tokenUrl = `http://127.0.0.1:${tokenServer.address().port}/token`;
});

after(async () => {
  for (const c of clients) c.close();
  await waitFor(() => clients.every((c) => ['closed', 'failed'].includes(c.connection.state)), { what: 'closed' });
  tokenServer.close();
  await hub.close();
});

const url = () => `ws://127.0.0.1:${hub.port}`;
const client = (options) => {
  const c = new Realtime({ url: url(), ...options });
  clients.push(c);
  return c;
};

test('authUrl tokens are renewed before they expire, in place: no leave and no enter', async () => {
  const watcher = client({ key: KEY, clientId: 'watcher' });
  const events = [];
  await watcher.channels.get('room').presence.subscribe((m) => events.push([m.action, m.clientId]));
  const before = issued;
  const alice = client({ clientId: 'alice', authUrl: tokenUrl });
  await alice.channels.get('room').presence.enter({ device: 'laptop' });
  const id = alice.connection.id;
  await waitFor(() => events.length === 1);
  // Tokens live 4 s: wait for two renewals.
  await waitFor(() => issued - before >= 3, { ms: 15000, what: 'two renewals' });
  await waitFor(() => alice.auth.tokenDetails.expires > Date.now() + 1000, { what: 'a fresh token in use' });
  assert.equal(alice.connection.state, 'connected');
  assert.equal(alice.connection.id, id, 'the same connection throughout');
  await alice.channels.get('room').presence.update({ device: 'laptop', renewed: true });
  await waitFor(() => events.length === 2);
  assert.deepEqual(events, [['enter', 'alice'], ['update', 'alice']]);
});

test('a token binds its clientId: enterClient as someone else and a contradicting clientId are refused', async () => {
  const token = createToken({ key: KEY, clientId: 'alice' });
  const alice = client({ authCallback: async () => token });
  await alice.channels.get('bound').presence.enter();
  await assert.rejects(alice.channels.get('bound').presence.enterClient('bob'), (e) => e.code === 40012);
  const impostor = client({ clientId: 'mallory', token });
  await waitFor(() => impostor.connection.state === 'failed');
  assert.equal(impostor.connection.errorReason.code, 40102);
});

test('the clientId a token binds is the client\'s once connected', async () => {
  const bob = client({ token: createToken({ key: KEY, clientId: 'bob' }) });
  assert.equal(bob.clientId, undefined, 'not known before the hub says');
  await bob.connection.whenState('connected');
  assert.equal(bob.clientId, 'bob');
  assert.equal(bob.auth.clientId, 'bob');
  assert.equal(bob.auth.tokenDetails.clientId, 'bob');
  await bob.channels.get('bound-id').presence.enter();
  assert.equal(bob.channels.get('bound-id').presence.isOnline(bob.clientId), true);
});

test('presence history over REST with tokens: given, from authCallback, from the ably client; capabilities hold', async () => {
  const channel = 'team:history';
  const alice = client({ clientId: 'alice', authCallback: (params) => createToken({ key: KEY, clientId: params.clientId }) });
  await alice.channels.get(channel).presence.enter('here');
  const page = await alice.channels.get(channel).presence.history();
  assert.deepEqual(page.items.map((m) => [m.action, m.clientId, m.data]), [['enter', 'alice', 'here']]);

  const given = client({ token: createToken({ key: KEY, clientId: 'viewer' }) });
  assert.equal((await given.channels.get(channel).presence.history()).items.length, 1);

  // A token that may watch but not read history is refused, as Ably does.
  const watcherOnly = client({ token: createToken({ key: KEY, clientId: 'w', capability: { 'team:*': ['subscribe'] } }) });
  await assert.rejects(watcherOnly.channels.get(channel).presence.history(), (e) => e.code === 40160 && e.statusCode === 401);

  const ably = new Ably.Realtime({
    authCallback: (_params, callback) => callback(null, createToken({ key: KEY, clientId: 'ably-reader' })),
    endpoint: '127.0.0.1',
    port: hub.port,
    tls: false,
    logLevel: 0,
  });
  try {
    const history = await ably.channels.get(channel).presence.history();
    assert.deepEqual(history.items.map((m) => m.clientId), ['alice']);
  } finally {
    ably.close();
  }
});

test('an expired token on a REST read is renewed and the read tried once more', async () => {
  let calls = 0;
  const expired = createToken({ key: KEY, clientId: 'late', ttl: 1000, now: Date.now() - 5000 });
  const late = client({
    clientId: 'late',
    autoConnect: false,
    authCallback: (params) => (++calls === 1 ? expired : createToken({ key: KEY, clientId: params.clientId })),
  });
  const page = await late.channels.get('team:history').presence.history();
  assert.ok(Array.isArray(page.items));
  assert.ok(calls >= 2, 'the expired token, then a fresh one');
});

test('authorize(tokenParams) hands them to authCallback and authUrl, and keeps them for later renewals', async () => {
  const asked = [];
  const dana = client({
    clientId: 'dana',
    defaultTokenParams: { ttl: 45_000 },
    authCallback: (params) => {
      asked.push(params);
      return createToken({ key: KEY, clientId: params.clientId, ttl: params.ttl ?? 60_000 });
    },
  });
  await dana.connection.whenState('connected');
  assert.deepEqual(asked, [{ clientId: 'dana', ttl: 45_000 }], 'defaultTokenParams, as Ably');
  const changes = [];
  dana.connection.on((change) => changes.push(change));
  const details = await dana.auth.authorize({ ttl: 30_000, capability: { 'params:*': ['presence'] } });
  // Settled once the hub confirmed the connection with the new token: an `update`, not a new
  // `connected` (RTN24).
  assert.deepEqual(changes.map((c) => [c.event, c.previous, c.current]), [['update', 'connected', 'connected']]);
  assert.equal(details.token, dana.auth.tokenDetails.token);
  assert.deepEqual(asked[1], { clientId: 'dana', ttl: 30_000, capability: { 'params:*': ['presence'] } });
  await dana.auth.authorize();
  assert.deepEqual(asked[2], asked[1], 'kept for the next renewal (RSA10j)');
  assert.equal(dana.connection.state, 'connected');

  // A token the hub refuses fails the authorize, with the connection (here: another identity).
  let as = 'frank';
  const frank = client({ clientId: 'frank', authCallback: () => createToken({ key: KEY, clientId: as }) });
  await frank.connection.whenState('connected');
  as = 'mallory';
  await assert.rejects(frank.auth.authorize(), { code: 40102 });
  assert.equal(frank.connection.state, 'failed');
  // Not connected, it connects, and settles once connected.
  const idle = client({ clientId: 'gina', autoConnect: false, authCallback: (params) => createToken({ key: KEY, clientId: params.clientId }) });
  await idle.auth.authorize();
  assert.equal(idle.connection.state, 'connected');

  // authUrl: in the query, a capability as its JSON (RSA8c1a).
  const queries = [];
  const server = http.createServer((req, res) => {
    const query = new URL(req.url, 'http://x').searchParams;
    queries.push(Object.fromEntries(query));
    res.writeHead(200, { 'content-type': 'application/jwt' });
    res.end(createToken({ key: KEY, clientId: query.get('clientId'), ttl: 60_000 }));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  try {
    const erin = client({ clientId: 'erin', authUrl: `http://127.0.0.1:${server.address().port}/token`, authParams: { app: 'demo' } });
    await erin.connection.whenState('connected');
    await erin.auth.authorize({ capability: { 'params:*': ['presence'] } });
    assert.deepEqual(queries.at(-1), { app: 'demo', clientId: 'erin', capability: '{"params:*":["presence"]}' });
  } finally {
    server.close();
  }
});

test('authorize() and renewals stop with close(): no connection reopened, no token asked for again', async () => {
  // A token source slow to answer: close() comes first.
  let answer;
  let asked = 0;
  const slow = client({
    clientId: 'hana',
    disconnectedRetryTimeout: 50,
    authCallback: (params) => {
      asked++;
      return asked === 1 ? createToken({ key: KEY, clientId: params.clientId }) : new Promise((resolve) => (answer = resolve));
    },
  });
  await slow.connection.whenState('connected');
  const authorizing = slow.auth.authorize();
  await waitFor(() => answer, { what: 'the token asked for' });
  slow.close();
  answer(createToken({ key: KEY, clientId: 'hana' }));
  await assert.rejects(authorizing, { code: 80017 });
  assert.ok(['closing', 'closed'].includes(slow.connection.state), slow.connection.state);
  await slow.connection.whenState('closed');

  // A renewal under way when close() comes fails as closed, and arms no retry: the source is not
  // asked again.
  let calls = 0;
  let fail;
  const failing = client({
    clientId: 'ivan',
    disconnectedRetryTimeout: 50,
    authCallback: (params) => (++calls === 1 ? createToken({ key: KEY, clientId: params.clientId }) : new Promise((_, reject) => (fail = reject))),
  });
  await failing.connection.whenState('connected');
  const renewal = failing.auth.authorize().catch((e) => e);
  await waitFor(() => fail, { what: 'the renewal asked for' });
  failing.close();
  fail(new Error('the auth server is down'));
  assert.equal((await renewal).code, 80017);
  // Ten retry intervals: none comes.
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(calls, 2, 'asked again after close()');
});

test('createToken: a token lives its ttl at least, and an empty clientId is refused', () => {
  const now = 1_700_000_000_100;
  const claims = (token) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
  for (const ttl of [800, 1900, 3_600_000]) assert.ok(claims(createToken({ key: KEY, clientId: 'a', ttl, now })).exp * 1000 >= now + ttl, `ttl ${ttl}`);
  assert.throws(() => createToken({ key: KEY, clientId: '' }), /clientId must be a non-empty string/);
});

test('authUrl: a page that is not a token, or an answer too large, fails with 40170; a request not answered in time is cancelled', async () => {
  const open = new Set();
  let asked = 0;
  const server = http.createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (path === '/login') {
      // A login page where the token was expected.
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><form>sign in</form>');
    } else if (path === '/huge') {
      // A megabyte of text, in chunks with no length said.
      res.writeHead(200, { 'content-type': 'text/plain' });
      const chunk = 'x'.repeat(64 * 1024);
      for (let i = 0; i < 16; i++) res.write(chunk);
      res.end();
    } else {
      // Never answered.
      asked += 1;
      open.add(req);
      req.on('close', () => open.delete(req));
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const at = (path) => `http://127.0.0.1:${server.address().port}${path}`;
  try {
    for (const [path, why] of [
      ['/login', /authUrl answered text\/html, not a token/],
      ['/huge', /more than 128 KiB/],
    ]) {
      const c = client({ clientId: 'kim', authUrl: at(path), disconnectedRetryTimeout: 60_000 });
      const change = await new Promise((resolve) => c.connection.once('disconnected', resolve));
      assert.equal(change.reason.code, 80019, path);
      assert.equal(change.reason.cause.code, 40170, path);
      assert.match(change.reason.message, why);
      c.close();
    }
    const c = client({ clientId: 'lee', authUrl: at('/never'), realtimeRequestTimeout: 300, disconnectedRetryTimeout: 60_000 });
    await c.connection.whenState('disconnected');
    await waitFor(() => asked > 0 && open.size === 0, { what: 'the unanswered request cancelled' });
    c.close();
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test('a renewal that takes subscribe away is told as a channel update with 40160', async () => {
  let capability = { 'narrowing:*': ['presence', 'subscribe'] };
  const carol = client({ clientId: 'carol', authCallback: (params) => createToken({ key: KEY, clientId: params.clientId, capability }) });
  const channel = carol.channels.get('narrowing:a');
  await channel.presence.enter();
  const updates = [];
  channel.on('update', (change) => updates.push(change));
  capability = { 'narrowing:*': ['presence'] };
  const details = await carol.auth.authorize();
  assert.equal(details.token, carol.auth.tokenDetails.token, 'resolves to the new token, as Ably');
  assert.equal(details.clientId, 'carol');
  await waitFor(() => updates.length === 1, { what: 'the update' });
  assert.equal(updates[0].reason.code, 40160);
  assert.equal(channel.state, 'attached');
});

test('refusals carry Ably codes: a token refused with no means to renew it 40171, unknown key or wrong secret 40101', async () => {
  // A token the hub refuses (expired 40142, badly signed 40144) with nothing to get another
  // from fails with 40171, as Ably's client does, saying what the hub said.
  const cases = [
    [{ token: createToken({ key: KEY, clientId: 'x', ttl: -60_000 }) }, 40171, 403, /expired.*no means to renew/],
    [{ token: createToken({ key: 'app.server:not-the-secret', clientId: 'x' }) }, 40171, 403, /signature.*no means to renew/],
    [{ token: createToken({ key: 'app.other:s3cret-server', clientId: 'x' }) }, 40101, 401, /unknown key/],
    [{ key: 'app.server:wrong' }, 40101, 401, /./],
  ];
  for (const [options, code, statusCode, message] of cases) {
    const c = client(options);
    await waitFor(() => c.connection.state === 'failed', { what: `refusal ${code}` });
    assert.equal(c.connection.errorReason.code, code);
    assert.equal(c.connection.errorReason.statusCode, statusCode);
    assert.match(c.connection.errorReason.message, message);
  }
});

test('a token given as it is fails with 40171 when it expires on a live connection, rather than reconnecting with it', async () => {
  const alice = client({ clientId: 'alice', token: createToken({ key: KEY, clientId: 'alice', ttl: 2000 }) });
  await alice.channels.get('static').presence.enter('here');
  const changes = [];
  alice.connection.on((c) => changes.push(c.current));
  const failed = await alice.connection.whenState('failed');
  assert.equal(failed.reason.code, 40171);
  assert.deepEqual(changes, ['failed'], 'no reconnect with a token known to be expired');
});

test('capabilities: presence refused on a channel the token only lets it watch, attach refused elsewhere', async () => {
  const token = createToken({ key: KEY, clientId: 'carol', capability: { 'public:*': ['subscribe'], 'team:*': ['presence', 'subscribe'] } });
  const carol = client({ token });
  await assert.rejects(carol.channels.get('public:lobby').presence.enter(), (e) => e.code === 40160);
  await assert.rejects(carol.channels.get('secret').attach(), (e) => e.code === 40160);
  await carol.channels.get('team:a').presence.enter();
  const members = await carol.channels.get('team:a').presence.get();
  assert.deepEqual(members.map((m) => m.clientId), ['carol']);
});

test('TokenRequests from the ably SDK\'s createTokenRequest() are exchanged by the hub, for both clients', async () => {
  // An app server as Ably advises: it signs TokenRequests with its key and hands them out.
  const server = new Ably.Rest({ key: KEY, logLevel: 0 });
  const tokenRequest = (clientId) => server.auth.createTokenRequest({ clientId, capability: { 'tr:*': ['presence', 'subscribe'] } });
  const requests = http.createServer(async (req, res) => {
    const clientId = new URL(req.url, 'http://x').searchParams.get('clientId');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(await tokenRequest(clientId)));
  });
  await new Promise((r) => requests.listen(0, '127.0.0.1', r));
  const ably = new Ably.Realtime({
    authCallback: (params, callback) => tokenRequest('ably-user').then((r) => callback(null, r), callback),
    endpoint: '127.0.0.1',
    port: hub.port,
    tls: false,
    logLevel: 0,
  });
  try {
    const viaCallback = client({ clientId: 'cb-user', authCallback: (params) => tokenRequest(params.clientId) });
    const viaUrl = client({ clientId: 'url-user', authUrl: `http://127.0.0.1:${requests.address().port}/token` });
    for (const c of [viaCallback, viaUrl]) await c.channels.get('tr:room').presence.enter();
    await ably.channels.get('tr:room').presence.enter();
    await waitFor(async () => (await viaCallback.channels.get('tr:room').presence.get()).length === 3, { what: 'all three' });
    assert.deepEqual((await viaCallback.channels.get('tr:room').presence.get()).map((m) => m.clientId).sort(), ['ably-user', 'cb-user', 'url-user']);
    // The token is the capability asked for, within the key's: elsewhere is refused.
    await assert.rejects(viaCallback.channels.get('elsewhere').attach(), (e) => e.code === 40160);
    // A TokenRequest signed with a wrong secret: the connection cannot get a token (80019, with the hub's 40101).
    const forged = new Ably.Rest({ key: 'app.server:wrong', logLevel: 0 });
    const refused = client({ clientId: 'mallory', authCallback: () => forged.auth.createTokenRequest({ clientId: 'mallory' }) });
    const change = await refused.connection.once('disconnected');
    assert.equal(change.reason.code, 80019);
    assert.equal(change.reason.cause.code, 40101);
    refused.close();
  } finally {
    ably.close();
    requests.close();
  }
});

test('the ably client connects with the same tokens', async () => {
  const ably = new Ably.Realtime({
    authCallback: (_params, callback) => callback(null, createToken({ key: KEY, clientId: 'ably-user' })),
    endpoint: '127.0.0.1',
    port: hub.port,
    tls: false,
    logLevel: 0,
  });
  try {
    await ably.channels.get('mixed').presence.enter('hi');
    const members = await ably.channels.get('mixed').presence.get();
    assert.deepEqual(members.map((m) => m.clientId), ['ably-user']);
  } finally {
    ably.close();
  }
});

test('a token that cannot be had while connecting: disconnected with 80019 and retryIn, then connected once it can', async () => {
  let down = true;
  let asked = 0;
  const changes = [];
  const alice = client({
    clientId: 'alice',
    disconnectedRetryTimeout: 300,
    authCallback: async (params) => {
      asked += 1;
      if (down) throw new Error('auth server down');
      return createToken({ key: KEY, clientId: params.clientId });
    },
  });
  alice.connection.on((change) => changes.push(change));
  const disconnected = await alice.connection.whenState('disconnected');
  assert.equal(disconnected.reason?.code, 80019);
  assert.equal(disconnected.reason?.statusCode, 401);
  assert.match(disconnected.reason.message, /auth server down/);
  assert.equal(typeof disconnected.retryIn, 'number');
  // It asks again on the schedule, and each failure is a `disconnected` with when it tries next.
  await waitFor(() => asked >= 3, { what: 'two more asks' });
  assert.ok(changes.filter((c) => c.current === 'disconnected').every((c) => typeof c.retryIn === 'number'));
  down = false;
  await waitFor(() => alice.connection.state === 'connected', { ms: 8000, what: 'connected once a token comes' });
  await alice.channels.get('auth-down').presence.enter('back');
});

test('a token source that never answers is given up after realtimeRequestTimeout: disconnected with 80019, then connected', { timeout: 20000 }, async () => {
  let asked = 0;
  const alice = client({
    clientId: 'alice',
    realtimeRequestTimeout: 300,
    disconnectedRetryTimeout: 300,
    // The first ask hangs for good (an auth server that took the request and went silent).
    authCallback: (params) => (++asked === 1 ? new Promise(() => {}) : createToken({ key: KEY, clientId: params.clientId })),
  });
  const disconnected = await alice.connection.whenState('disconnected');
  assert.equal(disconnected.reason?.code, 80019);
  assert.match(disconnected.reason.message, /no token within 300 ms/);
  await waitFor(() => alice.connection.state === 'connected', { ms: 8000, what: 'connected with the second answer' });
});

test('an authCallback that answers late with no token: disconnected with 80019, nothing thrown into the app, and a retry that can succeed', async () => {
  const thrown = [];
  const onError = (e) => thrown.push(e);
  process.on('uncaughtException', onError);
  let asked = 0;
  const alice = client({
    clientId: 'alice',
    disconnectedRetryTimeout: 300,
    authCallback: (params, callback) => {
      asked += 1;
      // As an app that fetches first and answers later: at first, with nothing usable.
      setTimeout(() => callback(null, asked === 1 ? { nonce: 'not a token' } : createToken({ key: KEY, clientId: params.clientId })), 20);
    },
  });
  try {
    const disconnected = await alice.connection.whenState('disconnected');
    assert.equal(disconnected.reason?.code, 80019);
    await waitFor(() => alice.connection.state === 'connected', { ms: 8000, what: 'connected with the second answer' });
    assert.deepEqual(thrown, []);
  } finally {
    process.off('uncaughtException', onError);
  }
});

test('close() while an authUrl request is under way cancels it: nothing keeps the program running, and the client says nothing after closed', async () => {
  let cancelled = false;
  const asked = [];
  const endpoint = http.createServer((req) => {
    asked.push(req.url);
    req.on('close', () => (cancelled = true));
  });
  await new Promise((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
  const client = new Realtime({
    clientId: 'a',
    url: `ws://127.0.0.1:${hub.port}`,
    authUrl: `http://127.0.0.1:${endpoint.address().port}/token`,
    // Longer than the test waits: the request must go because of the close, not the timeout.
    realtimeRequestTimeout: 60_000,
  });
  const changes = [];
  client.connection.on((change) => changes.push(`${change.current} ${change.reason?.code ?? ''}`.trim()));
  try {
    await waitFor(() => asked.length === 1, { what: 'the token asked for' });
    client.close();
    await waitFor(() => cancelled, { what: 'the request cancelled' });
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(changes, ['connecting', 'closed 80017']);
    assert.equal(client.connection.errorReason?.code, 80017);
  } finally {
    endpoint.closeAllConnections();
    endpoint.close();
  }
});

test('close() while a TokenRequest is being exchanged leaves no token behind: REST reads do not go without credentials', async () => {
  let answering;
  const hubLike = http.createServer((req, res) => {
    // The exchange answered in part, and never finished.
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"tok');
    answering = true;
  });
  await new Promise((resolve) => hubLike.listen(0, '127.0.0.1', resolve));
  const client = new Realtime({
    url: `ws://127.0.0.1:${hubLike.address().port}`,
    authCallback: (_params, callback) => callback(null, { keyName: 'app.k', mac: 'm', timestamp: Date.now(), nonce: 'n' }),
    autoConnect: false,
  });
  try {
    const authorizing = client.auth.authorize().catch((e) => e);
    await waitFor(() => answering, { what: 'the exchange under way' });
    client.close();
    assert.equal((await authorizing).code, 80017);
    assert.equal(client.auth.tokenDetails, undefined);
  } finally {
    hubLike.closeAllConnections();
    hubLike.close();
  }
});
