// The client's states and refusals, as Ably's API has them: against a hub scripted frame by frame
// (a `ws` server speaking just enough of the protocol) for states a real hub reaches only under
// faults, and against the Node hub.

import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import { test } from 'node:test';

import { WebSocketServer } from 'ws';

import { ErrorInfo, Realtime } from '../../js/node.js';
import { startHub, waitFor } from './helpers.mjs';

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
    /** Sends every client a frame. */
    send: (frame) => sockets.forEach((ws) => ws.send(JSON.stringify(frame))),
    /** Sends every client a channel ERROR: the channel fails. */
    failChannel: (channel) =>
      sockets.forEach((ws) => ws.send(JSON.stringify({ action: 9, channel, error: { code: 90000, statusCode: 400, message: 'gone' } }))),
    close: () => new Promise((resolve) => { sockets.forEach((ws) => ws.terminate()); server.close(resolve); }),
  };
}

test('get({ waitForSync: undefined }) does not wait for the SYNC, as Ably\'s', async () => {
  const hub = await halfwayHub();
  const client = new Realtime({ clientId: 'me', url: hub.url });
  try {
    const channel = client.channels.get('room');
    await channel.attach();
    // The SYNC never ends: a get that waited would never settle.
    assert.deepEqual((await channel.presence.get({ waitForSync: undefined })).map((m) => m.clientId), ['x']);
  } finally {
    client.close();
    await hub.close();
  }
});

test("Ably's finer points: attach() resolves with the change, listeners' this.event, once() once, enterClient rejects, release() keeps its channel until detached, subscribeClients as subscribe", async () => {
  const hub = await startHub({ port: 0 });
  const url = `ws://127.0.0.1:${hub.port}`;
  const alice = new Realtime({ clientId: 'alice', url });
  const bob = new Realtime({ clientId: 'bob', url });
  try {
    const channel = alice.channels.get('fine');
    const change = await channel.attach();
    assert.equal(change?.current, 'attached');
    assert.equal(change.previous, 'attaching');
    assert.equal(await channel.attach(), null, 'null when attached already');

    // A listener's `this` names the event (Ably's emitter).
    const named = [];
    alice.connection.on(function () {
      named.push(this.event);
    });
    // `once` fires once, even when the event comes again from a listener that runs first.
    let again = 0;
    let onced = 0;
    channel.on('custom', () => again++ === 0 && channel.emit('custom'));
    channel.once('custom', () => onced++);
    channel.emit('custom');
    assert.equal(onced, 1);

    // A bad clientId is a rejection, not a throw.
    const rejected = channel.presence.enterClient('');
    assert.ok(rejected instanceof Promise);
    await assert.rejects(rejected, { code: 40000 });

    // subscribeClients follows attachOnSubscribe, as subscribe does; its devices are messages.
    const quiet = bob.channels.get('quiet', { attachOnSubscribe: false });
    await quiet.presence.subscribeClients('online', () => {});
    assert.equal(quiet.state, 'initialized');
    const watched = bob.channels.get('fine');
    const online = [];
    await watched.presence.subscribeClients('online', (c) => online.push(c));
    await channel.presence.enter('here');
    await waitFor(() => online.length === 1);
    assert.equal(online[0].devices[0].constructor.name, 'PresenceMessage');
    assert.equal(online[0].devices[0].data, 'here');

    // release(): the channel detaches, and its changes reach it, not a new one; once detached,
    // get() makes a new one. (A get() while it detaches takes it back: see below.)
    const released = alice.channels.get('fine');
    assert.equal(released.state, 'attached');
    alice.channels.release('fine');
    await waitFor(() => released.state === 'detached', { what: 'the released channel detached' });
    const fresh = alice.channels.get('fine');
    assert.notEqual(fresh, released);
    assert.equal(fresh.state, 'initialized');
    // An app's off() cannot take the library's own wait with it: the attach still settles.
    const cleared = alice.channels.get('cleared');
    const attaching = cleared.attach();
    cleared.off();
    let settled;
    attaching.then((change) => (settled = change));
    await waitFor(() => settled, { what: 'the attach settled after off()' });
    assert.equal(settled.current, 'attached');

    alice.connection.close();
    await waitFor(() => named.includes('closed'), { what: 'a named event' });
    assert.ok(named.includes('closing'), `${named}`);

    // A failed attach leaves no listener behind (an app retrying would gather them).
    for (let i = 0; i < 3; i++) await assert.rejects(fresh.attach(), { code: 80017 });
    assert.equal(fresh.listeners('attached').length, 0);
  } finally {
    alice.close();
    bob.close();
    await hub.close();
  }
});

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

test('online and offline name the devices as of the event, and the last leave only when it made the change', async () => {
  const hub = await halfwayHub();
  const client = new Realtime({ clientId: 'me', url: hub.url });
  try {
    const channel = client.channels.get('room');
    const changes = [];
    await channel.presence.subscribeClients((c) => changes.push(c));
    await waitFor(() => changes.length === 1, { what: 'x, from the SYNC' });
    const member = (action, connectionId, serial) =>
      ({ action, clientId: 'bob', connectionId, id: `${connectionId}:${serial}:0`, timestamp: Date.now() });
    // In one frame: bob comes on one device and leaves it, then comes on two and leaves one.
    hub.send({ action: 14, channel: 'room', presence: [member(2, 'c7', 0), member(3, 'c7', 1)] });
    hub.send({ action: 14, channel: 'room', presence: [member(2, 'c8', 0), member(2, 'c6', 0), member(3, 'c6', 1)] });
    await waitFor(() => changes.length === 4, { what: 'bob online, offline, online' });
    const summary = changes.map((c) => [c.clientId, c.action, c.devices.map((d) => `${d.connectionId} ${d.action}`), c.reason]);
    assert.deepEqual(summary, [
      ['x', 'online', ['c9 present'], undefined],
      ['bob', 'online', ['c7 present'], undefined],
      ['bob', 'offline', [], 'left'],
      ['bob', 'online', ['c8 present'], undefined],
    ]);
    // Detached, the view is dropped: both go offline, and bob's leave of c6 is not why.
    await channel.detach();
    await waitFor(() => changes.length === 6, { what: 'offline on detach' });
    assert.deepEqual(
      changes.slice(4).map((c) => [c.clientId, c.action, c.devices.length, c.reason, c.leave]).sort(),
      [['bob', 'offline', 0, undefined, undefined], ['x', 'offline', 0, undefined, undefined]],
    );
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
    // enterClient() and leaveClient() with its own id are its enter() and leave(): one member.
    await hall.presence.enterClient('me', 'again');
    assert.deepEqual(client._presentOn(), [{ channel: 'hall', clientId: undefined, data: 'again' }]);
    await hall.presence.leaveClient('me');
    assert.deepEqual(restored(), []);
  } finally {
    client.close();
    await hub.close();
  }
});

test('autoConnect false: nothing connects until connect(), and closing fails what waited with 80017', async () => {
  const hub = await startHub({ port: 0 });
  const url = `ws://127.0.0.1:${hub.port}`;
  try {
    const idle = new Realtime({ clientId: 'idle', url, autoConnect: false });
    const channel = idle.channels.get('room');
    let entered = false;
    const entering = channel.presence.enter('hi').then(() => (entered = true));
    await new Promise((resolve) => setTimeout(resolve, 200)); // nothing to wait for: it must not happen
    assert.equal(idle.connection.state, 'initialized');
    assert.equal(entered, false);
    idle.connect();
    await entering;
    assert.equal(idle.connection.state, 'connected');
    idle.close();

    const closing = new Realtime({ clientId: 'closing', url, autoConnect: false });
    const pending = closing.channels.get('room').presence.enter('never');
    closing.close();
    await assert.rejects(pending, (e) => e.code === 80017);
  } finally {
    await hub.close();
  }
});

test('a listener added just after construction hears connecting, from initialized', async () => {
  const hub = await startHub({ port: 0 });
  const client = new Realtime({ clientId: 'early', url: `ws://127.0.0.1:${hub.port}` });
  try {
    const changes = [];
    client.connection.on((change) => changes.push(`${change.previous}>${change.current}`));
    await waitFor(() => client.connection.state === 'connected');
    assert.deepEqual(changes, ['initialized>connecting', 'connecting>connected']);
  } finally {
    client.close();
    await hub.close();
  }
});

test('data the hub would refuse, or that would arrive as something else, is refused at once', async () => {
  const hub = await startHub({ port: 0 });
  const client = new Realtime({ clientId: 'agent', url: `ws://127.0.0.1:${hub.port}` });
  try {
    const presence = client.channels.get('room').presence;
    for (const data of [new Map([['a', 1]]), new Set([1]), new Date()]) {
      await assert.rejects(presence.enter(data), (e) => e.code === 40013 && e.statusCode === 400 && /Map|Set|Date/.test(e.message));
    }
    // An instance of a class is an object, as ably-js takes it: its own fields travel.
    await presence.enter(new (class Context { constructor() { this.topic = 'maps'; } })());
    assert.deepEqual((await presence.get()).map((m) => m.data), [{ topic: 'maps' }]);
    // Larger than the hub's maxMessageSize: 40009, and the connection carries on (sent, a frame
    // over the hub's limit would close the socket on every resend).
    await assert.rejects(presence.enter({ context: 'x'.repeat(2_000_000) }), (e) => e.code === 40009);
    await presence.enter({ context: 'small' });
    assert.equal(client.connection.state, 'connected');
    assert.deepEqual((await presence.get()).map((m) => m.data), [{ context: 'small' }]);
    // Binary counts as its bytes (TO3l8), though it travels as base64 text 4/3 its size.
    await presence.update(new Uint8Array(60_000).fill(7));
    assert.equal((await presence.get())[0].data.byteLength, 60_000);
    await assert.rejects(presence.update(new Uint8Array(66_000)), (e) => e.code === 40009);
  } finally {
    client.close();
    await hub.close();
  }
});

test("Ably's calls as ported code makes them: whenState, release, attachOnSubscribe, time, get with empty filters, errorReason after a reconnect", async () => {
  const hub = await startHub({ port: 0 });
  const url = `ws://127.0.0.1:${hub.port}`;
  const alice = new Realtime({ clientId: 'alice', url });
  const watcher = new Realtime({ clientId: 'w', url });
  try {
    const channel = alice.channels.get('room');
    await channel.presence.enter('hi');
    assert.equal(await channel.whenState('attached'), null, 'null when already there');
    assert.equal(await alice.connection.whenState('connected'), null);
    const seen = watcher.channels.get('room');
    for (const params of [undefined, null, { clientId: null }, { clientId: '' }, { connectionId: null }, { waitForSync: true, clientId: undefined }]) {
      assert.deepEqual((await seen.presence.get(params)).map((m) => m.clientId), ['alice'], JSON.stringify(params));
    }
    // connection.ping(), as Ably's: the round trip in ms; refused when not connected.
    const rtt = await alice.connection.ping();
    assert.ok(Number.isFinite(rtt) && rtt >= 0 && rtt < 10_000, `${rtt}`);
    const idle = new Realtime({ clientId: 'idle', url, autoConnect: false });
    await assert.rejects(idle.connection.ping(), (e) => e.code === 40000);
    const time = await alice.time();
    assert.ok(Math.abs(time - Date.now()) < 60_000, `${time}`);

    // A REST failure is an ErrorInfo, as Ably's: a hub that cannot be reached, or that refuses.
    const nowhere = new Realtime({ clientId: 'n', url: 'ws://127.0.0.1:1', autoConnect: false });
    await assert.rejects(nowhere.time(), (e) => e instanceof ErrorInfo && e.code === 80000);
    await assert.rejects(nowhere.channels.get('room').presence.history(), (e) => e instanceof ErrorInfo && e.code === 80000);
    // Each message says whether its member's connection made it (RTP2b1), and its id's parts.
    const [mine] = await seen.presence.get();
    assert.equal(mine.isSynthesized(), false);
    assert.deepEqual(mine.parseId(), { connectionId: alice.connection.id, msgSerial: 0, index: 0 });

    // A ping in flight when the transport drops fails then, rather than keeping a timer.
    const pinging = alice.connection.ping();
    const dropping = alice.connection.whenState('disconnected');
    hub.disconnectAll();
    await assert.rejects(pinging, { code: 80003 });
    const dropped = await dropping;
    assert.ok(dropped.reason && alice.connection.errorReason, 'the drop has a reason');
    await alice.connection.whenState('connected');
    assert.equal(alice.connection.errorReason, null, 'connected again: the problem is over');

    // subscribe() with no listener only attaches; history(null) is history().
    const bare = alice.channels.get('bare');
    await bare.presence.subscribe();
    assert.equal(bare.state, 'attached');
    const unset = alice.channels.get('unset');
    await unset.presence.subscribe(undefined);
    assert.equal(unset.state, 'attached', 'an undefined listener is no listener');
    assert.deepEqual((await channel.presence.history(null)).items.map((m) => `${m.action}:${m.clientId}`), ['enter:alice']);

    const quiet = alice.channels.get('quiet', { attachOnSubscribe: false });
    await quiet.presence.subscribe(() => {});
    assert.equal(quiet.state, 'initialized', 'attachOnSubscribe: false');
    assert.equal(alice.channels.get('quiet'), quiet);

    // Released, a channel is detached (alice's member there leaves), and the next get() once
    // it is is a new channel that hears what happens.
    const other = alice.channels.get('other');
    await other.presence.enter('there');
    const elsewhere = [];
    await watcher.channels.get('other').presence.subscribe((m) => elsewhere.push(`${m.action}:${m.clientId}`));
    alice.channels.release('other');
    await waitFor(() => elsewhere.includes('leave:alice'), { what: 'the released channel detached' });
    await waitFor(() => other.state === 'detached');
    const again = alice.channels.get('other');
    assert.notEqual(again, other);
    const heard = [];
    await again.presence.subscribe((m) => heard.push(m.action));
    await watcher.channels.get('other').presence.enter('back');
    await waitFor(() => heard.includes('enter'), { what: 'the new channel hears' });
  } finally {
    alice.close();
    watcher.close();
    await hub.close();
  }
});

test('options as Ably takes them: clientId null or empty is anonymous, tokenDetails is a token, cipher is refused', () => {
  const made = (options) => new Realtime({ endpoint: '127.0.0.1', autoConnect: false, ...options });
  for (const clientId of [null, '']) assert.equal(made({ clientId }).clientId, undefined);
  assert.throws(() => made({ clientId: '*' }), (e) => e.code === 40012);
  assert.throws(() => made({ clientId: 7 }), (e) => e.code === 40012);
  const token = 'eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.sig';
  assert.equal(made({ tokenDetails: { token } }).auth.tokenDetails.token, token);
  // Refused rather than ignored: the data would otherwise go unencrypted.
  assert.throws(() => made({}).channels.get('room', { cipher: { key: 'k' } }), (e) => e.code === 40000);
});

test('endpoint options as Ably takes them: tls without a port, tlsPort; ErrorInfo on the default export', async () => {
  const at = (options) => new Realtime({ key: 'a.b:c', endpoint: '127.0.0.1', autoConnect: false, ...options }).restUrl;
  assert.equal(at({ tls: true }), 'https://127.0.0.1');
  assert.equal(at({ tls: true, tlsPort: 8443 }), 'https://127.0.0.1:8443');
  assert.equal(at({ tls: false }), 'http://127.0.0.1');
  assert.equal(at({ tls: false, port: 8080, tlsPort: 8443 }), 'http://127.0.0.1:8080');
  // A key is sent under TLS only, unless to this machine (40103, as Ably's).
  assert.throws(() => at({ tls: false, endpoint: 'hub.example.com' }), (e) => e.code === 40103 && e.statusCode === 401);
  assert.throws(() => new Realtime({ key: 'a.b:c', url: 'ws://10.0.0.7:8080', autoConnect: false }), (e) => e.code === 40103);
  for (const endpoint of ['localhost', '127.0.0.1', '::1']) assert.ok(at({ tls: false, endpoint }), endpoint);
  // A name under localhost is looked up like any other outside a browser: not this machine.
  assert.throws(() => at({ tls: false, endpoint: 'evil.localhost' }), (e) => e.code === 40103);
  assert.equal(at({ tls: true, endpoint: 'hub.example.com' }), 'https://hub.example.com');
  assert.ok(new Realtime({ token: 'a.b.c', url: 'ws://10.0.0.7:8080', autoConnect: false }).restUrl, 'a token may go without TLS');
  // Without `tls`, TLS as Ably's, unless to this machine: a token does not go in the clear unasked.
  const by = (endpoint) => new Realtime({ token: 'a.b.c', endpoint, autoConnect: false }).restUrl;
  assert.equal(by('hub.example.com'), 'https://hub.example.com');
  assert.equal(by('10.0.0.7'), 'https://10.0.0.7');
  for (const endpoint of ['localhost', '127.0.0.1', '::1']) assert.match(by(endpoint), /^http:/, endpoint);
  // Ably's older names for the host, as ported code gives them.
  assert.equal(at({ tls: true, realtimeHost: 'hub.example.com', endpoint: undefined }), 'https://hub.example.com');
  assert.equal(at({ tls: true, restHost: 'hub.example.com', endpoint: undefined, port: 8443 }), 'https://hub.example.com:8443');
  const Ably = (await import('../../js/node.js')).default;
  assert.equal(typeof Ably.ErrorInfo, 'function');
  assert.ok(new Ably.ErrorInfo('x', 40000, 400) instanceof Error);
});

test('authMethod POST sends authParams as a form in the body, as Ably does', async () => {
  const requests = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, body, type: req.headers['content-type'] });
      res.writeHead(503).end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = new Realtime({
    clientId: 'alice',
    url: 'ws://127.0.0.1:1',
    authUrl: `http://127.0.0.1:${server.address().port}/token`,
    authMethod: 'POST',
    authParams: { user: 'alice', scope: 'room' },
  });
  try {
    await waitFor(() => requests.length > 0, { what: 'a token request' });
    const [first] = requests;
    assert.equal(first.method, 'POST');
    assert.equal(first.url, '/token');
    assert.match(first.type, /application\/x-www-form-urlencoded/);
    assert.deepEqual(Object.fromEntries(new URLSearchParams(first.body)), { user: 'alice', scope: 'room', clientId: 'alice' });
  } finally {
    client.close();
    await new Promise((resolve) => server.close(resolve));
  }
});

test('a ping the hub does not answer fails after realtimeRequestTimeout, as Ably\'s', async () => {
  // This scripted hub answers no HEARTBEAT.
  const hub = await halfwayHub();
  const client = new Realtime({ clientId: 'me', url: hub.url, realtimeRequestTimeout: 300 });
  try {
    await client.connection.whenState('connected');
    await assert.rejects(client.connection.ping(), (e) => e.code === 50000);
  } finally {
    client.close();
    await hub.close();
  }
});

test("channel modes as Ably's: ['PRESENCE'] enters without hearing the others, and get() cannot change them once attached", async () => {
  const hub = await startHub({ port: 0 });
  const url = `ws://127.0.0.1:${hub.port}`;
  const alice = new Realtime({ clientId: 'alice', url });
  const bob = new Realtime({ clientId: 'bob', url });
  const agent = new Realtime({ clientId: 'agent', url });
  try {
    const seen = [];
    await alice.channels.get('room').presence.subscribe((m) => seen.push(`${m.action}:${m.clientId}`));
    await bob.channels.get('room').presence.enter();
    await waitFor(() => seen.length === 1);

    assert.throws(() => agent.channels.get('room', { modes: ['PRESENCE', 'CHAT'] }), { code: 40000, message: /invalid channel mode: CHAT/ });
    const quiet = agent.channels.get('room', { modes: ['presence'] });
    const heard = [];
    // The enter attaches the channel (nothing else did), with its modes.
    await quiet.presence.enter({ role: 'assistant' });
    await quiet.presence.subscribe((m) => heard.push(`${m.action}:${m.clientId}`));
    await waitFor(() => seen.includes('enter:agent'), { what: 'the others see the agent' });
    await quiet.presence.update({ role: 'assistant', busy: true });
    await bob.channels.get('room').presence.update({ status: 'typing' });
    await waitFor(() => seen.includes('update:bob'));
    // Its own update only: not bob, not bob's update.
    await waitFor(() => heard.length === 1, { what: 'the agent hears itself' });
    assert.deepEqual(heard, ['update:agent']);
    assert.deepEqual((await quiet.presence.get()).map((m) => m.clientId), ['agent']);
    // Back from a dropped transport, it still holds its member, and shows no one leaving.
    const reattached = quiet.whenState('attaching').then(() => quiet.whenState('attached'));
    agent.connection.simulateDrop();
    agent.connect();
    await reattached;
    await waitFor(async () => (await quiet.presence.get()).length === 1, { what: 'its member after the re-attach' });
    assert.deepEqual((await quiet.presence.get()).map((m) => m.clientId), ['agent']);
    assert.deepEqual(heard, ['update:agent']);
    assert.ok(!seen.includes('leave:agent'), `${seen}`);
    assert.throws(() => agent.channels.get('room', { modes: ['PRESENCE', 'PRESENCE_SUBSCRIBE'] }), { code: 40000 });
    // The same modes again, or other options, are fine.
    assert.equal(agent.channels.get('room', { modes: ['PRESENCE'] }), quiet);
    assert.equal(agent.channels.get('room', { attachOnSubscribe: false }), quiet);
    // setOptions() changes them, as Ably's: attached again, it hears the others, its member kept.
    await quiet.setOptions({ modes: ['PRESENCE', 'PRESENCE_SUBSCRIBE'] });
    assert.equal(quiet.state, 'attached');
    await waitFor(async () => (await quiet.presence.get()).some((m) => m.clientId === 'bob'), { what: 'the others heard after setOptions' });
    assert.deepEqual((await quiet.presence.get()).map((m) => m.clientId).sort(), ['agent', 'bob']);
    await bob.channels.get('room').presence.update({ status: 'back' });
    await waitFor(() => heard.includes('update:bob'), { what: "bob's update heard" });
    assert.ok(!seen.includes('leave:agent'), `${seen}`);
  } finally {
    for (const c of [alice, bob, agent]) c.close();
    await hub.close();
  }
});

test('a get() made as the connection comes back settles once the channel is attached again, also when the hub vouches for the view (no SYNC)', async () => {
  const hub = await startHub({ port: 0 });
  const watcher = new Realtime({ clientId: 'watcher', url: `ws://127.0.0.1:${hub.port}` });
  const alice = new Realtime({ clientId: 'alice', url: `ws://127.0.0.1:${hub.port}` });
  try {
    const presence = watcher.channels.get('room').presence;
    await alice.channels.get('room').presence.enter('here');
    await presence.enter('watching');
    await waitFor(async () => (await presence.get()).length === 2, { what: 'alice seen' });
    const got = [];
    // As the demo page redraws: on `connected`, before its channels are attached again.
    watcher.connection.on('connected', () => {
      presence.get().then((members) => got.push(members.map((m) => m.clientId)), (e) => got.push(e));
    });
    watcher.connection.simulateDrop();
    // Back once the hub has seen it go, so that it comes back by a resume.
    await waitFor(() => hub.stats().liveConnections === 1, { what: 'the hub saw the drop' });
    watcher.connect();
    await waitFor(() => got.length === 1, { what: 'the get() made at the reconnect to settle' });
    assert.deepEqual(got[0].sort(), ['alice', 'watcher']);
    assert.equal(watcher.channels.get('room').state, 'attached');
  } finally {
    watcher.close();
    alice.close();
    await hub.close();
  }
});

test('release() then get() of the same name in one turn (a remount) keeps one working channel', async () => {
  const hub = await startHub({ port: 0 });
  const bob = new Realtime({ clientId: 'bob', url: `ws://127.0.0.1:${hub.port}` });
  const client = new Realtime({ clientId: 'alice', url: `ws://127.0.0.1:${hub.port}` });
  try {
    await bob.channels.get('room').presence.enter('hi');
    await client.connection.whenState('connected');
    const seen = [];
    client.channels.get('room').presence.subscribe((m) => seen.push(['first', m.action]));
    client.channels.release('room');
    const again = client.channels.get('room');
    let subscribed = false;
    again.presence.subscribe((m) => seen.push(['again', m.action])).then(() => (subscribed = true));
    await waitFor(() => subscribed, { what: 'subscribe() on the channel got again' });
    assert.equal(client.channels.get('room'), again, 'the same channel: its attach superseded the release');
    assert.deepEqual((await again.presence.get()).map((m) => m.clientId), ['bob']);
    await bob.channels.get('room').presence.update('changed');
    await waitFor(() => seen.some(([who, action]) => who === 'again' && action === 'update'), { what: 'the update heard' });
  } finally {
    client.close();
    bob.close();
    await hub.close();
  }
});

test('get() while a release() detaches takes the channel back: attached only after the detach, it still works', async () => {
  const hub = await startHub({ port: 0 });
  const bob = new Realtime({ clientId: 'bob', url: `ws://127.0.0.1:${hub.port}` });
  const client = new Realtime({ clientId: 'alice', url: `ws://127.0.0.1:${hub.port}` });
  try {
    await bob.channels.get('room').presence.enter('hi');
    const first = client.channels.get('room');
    await first.attach();
    client.channels.release('room');
    const again = client.channels.get('room');
    assert.equal(again, first, 'still detaching: the same channel');
    await again.whenState('detached');
    // The release's own wait for the detach settles after the state change: a turn later.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(client.channels.get('room'), again, 'kept once the detach settled');
    const seen = [];
    await again.presence.subscribe((m) => seen.push(m.action));
    assert.equal(again.state, 'attached');
    assert.deepEqual((await again.presence.get()).map((m) => m.clientId), ['bob']);
    await bob.channels.get('room').presence.update('changed');
    await waitFor(() => seen.includes('update'), { what: 'the update heard' });
    // Released, attached again and released again in one turn: the last release drops it.
    const twice = client.channels.get('twice');
    await twice.attach();
    client.channels.release('twice');
    twice.attach().catch(() => {});
    client.channels.release('twice');
    // (Looked at without get(), which would take it back.)
    await waitFor(() => client.channels._existing('twice') === undefined, { what: 'the channel released twice dropped' });
  } finally {
    client.close();
    bob.close();
    await hub.close();
  }
});

test('an agent that checks room after room, each awaited, stays within the hub\'s inbound rate; a REST read with no answer is given up', async () => {
  const hub = await startHub({ port: 0 });
  const agent = new Realtime({ clientId: 'agent', url: `ws://127.0.0.1:${hub.port}` });
  const silent = net.createServer(() => {});
  await new Promise((r) => silent.listen(0, '127.0.0.1', r));
  try {
    // 300 rooms: 600 ATTACHes and DETACHes, as fast as the hub answers. Past the hub's
    // budget for them (a burst of 400 and 100 a second), it ended the connection (42920).
    for (let i = 0; i < 300; i++) {
      const channel = agent.channels.get(`room-${i}`);
      await channel.attach();
      await channel.detach();
      agent.channels.release(`room-${i}`);
    }
    assert.equal(agent.connection.state, 'connected', agent.connection.errorReason?.message);
    // A hub that takes the request and never answers: given up after httpRequestTimeout.
    const stuck = new Realtime({ url: `ws://127.0.0.1:${silent.address().port}`, autoConnect: false, httpRequestTimeout: 300 });
    await assert.rejects(stuck.time(), (e) => e.code === 80000);
  } finally {
    agent.close();
    silent.close();
    await hub.close();
  }
});

test('frames go within the hub\'s default rates: presence messages at 100 a second (bursts of 360, under its 400), other frames at 2 000, each in order', async (t) => {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => server.once('listening', resolve));
  const heard = [];
  const counted = new Map();
  server.on('connection', (ws) => {
    const send = (m) => ws.send(JSON.stringify(m));
    send({ action: 4, connectionId: 'me', connectionDetails: { connectionKey: 'k', maxIdleInterval: 15000, connectionStateTtl: 120000 } });
    ws.on('message', (raw) => {
      const m = JSON.parse(raw);
      heard.push(m.action === 14 ? `enter ${m.channel}` : m.action === 10 ? `attach ${m.channel}` : m.action === 12 ? `detach ${m.channel}` : `${m.action}`);
      counted.get(heard.length)?.();
      if (m.action === 10) send({ action: 11, channel: m.channel, flags: 1 | (1 << 16) | (1 << 17), channelSerial: 'a:1' });
    });
  });
  // Bounded by a timer of its own: the test stops the others.
  const realTimeout = setTimeout;
  const heardAll = (n) =>
    new Promise((resolve, reject) => {
      if (heard.length >= n) return resolve();
      counted.set(n, resolve);
      realTimeout(() => reject(new Error(`${heard.length} frames heard, not ${n}`)), 10_000).unref();
    });
  const client = new Realtime({ clientId: 'me', url: `ws://127.0.0.1:${server.address().port}` });
  try {
    await new Promise((resolve) => client.connection.once('connected', resolve));
    // From here no timer fires and the clock stands still: what the pace holds back stays
    // held, whatever the machine's speed.
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: Date.now() });
    const rooms = Array.from({ length: 500 }, (_, i) => client.channels.get(`room-${i}`));
    for (const room of rooms) room.presence.enter('hi').catch(() => {});
    // 500 ATTACHes at once (within 4 000), then, as each is attached, its ENTER: 360 of them
    // (the hub's burst of 400, less a margin for frames that reach it together).
    await heardAll(860);
    rooms[0].detach().catch(() => {});
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(heard.filter((h) => h.startsWith('attach')).length, 500);
    assert.equal(heard.filter((h) => h.startsWith('enter')).length, 360);
    assert.equal(heard.length, 860, 'the DETACH waits behind the ENTERs held back');
    // 1.4 s later, the rest, in order.
    t.mock.timers.tick(1500);
    await heardAll(1001);
    assert.deepEqual(heard.slice(860), [...rooms.slice(360).map((r) => `enter ${r.name}`), 'detach room-0']);
  } finally {
    t.mock.timers.reset();
    client.close();
    for (const ws of server.clients) ws.terminate();
    await new Promise((resolve) => server.close(resolve));
  }
});

test('connectionLost and connectionRestored name the client and its devices as of their frame, however many come at once', async () => {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => server.once('listening', resolve));
  let socket;
  server.on('connection', (ws) => {
    socket = ws;
    const send = (m) => ws.send(JSON.stringify(m));
    send({ action: 4, connectionId: 'me', connectionDetails: { connectionKey: 'k', maxIdleInterval: 15000, connectionStateTtl: 120000 } });
    ws.on('message', (raw) => {
      const m = JSON.parse(raw);
      if (m.action !== 10) return;
      send({ action: 11, channel: m.channel, flags: 1 | (1 << 16) | (1 << 19), channelSerial: 'a:1' });
      const member = (clientId, connectionId) => ({ action: 1, clientId, connectionId, id: `${connectionId}:0:0`, timestamp: Date.now() });
      send({ action: 16, channel: m.channel, channelSerial: 's1:', presence: [member('alice', 'c1'), member('alice', 'c2'), member('bob', 'c3')] });
    });
  });
  const client = new Realtime({ clientId: 'me', url: `ws://127.0.0.1:${server.address().port}` });
  try {
    const presence = client.channels.get('room').presence;
    const seen = [];
    await presence.subscribeClients(['connectionLost', 'connectionRestored'], (c) =>
      seen.push([c.action, c.clientId, c.connectionId, c.devices.map((d) => `${d.connectionId}${d.connectionLost ? ' lost' : ''}`).sort().join(',')]),
    );
    await presence.get();
    // Frames sent together arrive in one read: each is told as of its own frame.
    const status = (connectionId, action) => socket.send(JSON.stringify({ action: 100, channel: 'room', presence: [{ action, connectionId }] }));
    status('c1', 0);
    status('c3', 0);
    status('c1', 1);
    await waitFor(() => seen.length === 3, { what: 'three status events' });
    assert.deepEqual(seen, [
      ['connectionLost', 'alice', 'c1', 'c1 lost,c2'],
      ['connectionLost', 'bob', 'c3', 'c3 lost'],
      ['connectionRestored', 'alice', 'c1', 'c1,c2'],
    ]);
  } finally {
    client.close();
    await new Promise((resolve) => server.close(resolve));
  }
});

test('a grace window seen to begin is told live, one learned on attaching is initial', async () => {
  const hub = await startHub({ port: 0 });
  const url = hub.url.replace('http', 'ws');
  const clients = [];
  const client = (clientId, extra = {}) => {
    const made = new Realtime({ url, clientId, ...extra });
    clients.push(made);
    return made;
  };
  try {
    const told = (realtime) => {
      const seen = [];
      return [seen, realtime.channels.get('room').presence.subscribeClients('connectionLost', (c) => seen.push([c.clientId, c.initial]))];
    };
    const [early, subscribed] = told(client('early'));
    await subscribed;
    const alice = client('alice', { transportParams: { remainPresentFor: 4000 } });
    await alice.channels.get('room').presence.enter('here');
    alice.connection.simulateDrop();
    await waitFor(() => early.length === 1, { what: 'the drop told' });
    assert.deepEqual(early, [['alice', false]]);
    const [late, attached] = told(client('late'));
    await attached;
    await waitFor(() => late.length === 1, { what: 'the grace window told on attaching' });
    assert.deepEqual(late, [['alice', true]]);
  } finally {
    for (const c of clients) c.close();
    await hub.close();
  }
});

test('a client the app lets go after close() is collected, with its Wasm core', async () => {
  const v8 = await import('node:v8');
  const vm = await import('node:vm');
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  const hub = await startHub({ port: 0 });
  let collected = 0;
  const registry = new FinalizationRegistry(() => collected++);
  const N = 20;
  try {
    // Each one connected, attached and present, then closed: what a component that mounts and
    // unmounts does, or an agent that makes a new client after a failure.
    for (let i = 0; i < N; i++) {
      const client = new Realtime({ clientId: `c${i}`, url: `ws://127.0.0.1:${hub.port}` });
      await client.channels.get('room').presence.enter({ i });
      client.close();
      await waitFor(() => client.connection.state === 'closed', { what: `client ${i} closed` });
      registry.register(client, i);
    }
    await waitFor(
      async () => {
        gc();
        await new Promise((resolve) => setImmediate(resolve));
        return collected >= N - 1;
      },
      { what: `closed clients collected (${collected} of ${N})` },
    );
  } finally {
    await hub.close();
  }
});

test('clients pick their retry jitter from different seeds', async () => {
  // A port that refuses: every attempt fails, and each says when the next comes.
  const server = http.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  const random = Math.random;
  const waits = async (r) => {
    Math.random = () => r;
    let client;
    try {
      client = new Realtime({ clientId: 'x', url: `ws://127.0.0.1:${port}`, disconnectedRetryTimeout: 300 });
    } finally {
      Math.random = random;
    }
    const retries = [];
    client.connection.on('disconnected', (change) => retries.push(change.retryIn));
    try {
      await waitFor(() => retries.length >= 4, { what: 'four retries' });
    } finally {
      client.close();
    }
    return retries.slice(1, 4);
  };
  // Seeds from the upper half of the range were all one seed.
  const [a, b] = [await waits(0.6), await waits(0.9)];
  assert.notDeepEqual(a, b, `retry waits ${a} and ${b}`);
});

test("connection.remainPresentFor is the hub's grace window once connected: its setting, or what was asked within its bounds", async () => {
  const hub = await startHub({ port: 0, hub: { remainPresentFor: 4000 } });
  const clients = [];
  try {
    const plain = new Realtime({ clientId: 'a', url: hub.url, autoConnect: false });
    const asked = new Realtime({ clientId: 'b', url: hub.url, autoConnect: false, transportParams: { remainPresentFor: 250 } });
    const none = new Realtime({ clientId: 'c', url: hub.url, autoConnect: false, transportParams: { remainPresentFor: 0 } });
    clients.push(plain, asked);
    // Before connecting, what was asked (held as the hub holds it), or the hub's usual default.
    assert.deepEqual([plain.connection.remainPresentFor, asked.connection.remainPresentFor, none.connection.remainPresentFor], [15000, 1000, 1000]);
    none.close();
    plain.connect();
    asked.connect();
    await Promise.all(clients.map((c) => c.connection.whenState('connected')));
    assert.deepEqual([plain.connection.remainPresentFor, asked.connection.remainPresentFor], [4000, 1000]);
  } finally {
    for (const c of clients) c.close();
    await hub.close();
  }
});

test('a client that never reached a hub says it could not connect, not that a connection was lost', async () => {
  // A port where nothing listens (one just freed).
  const probe = net.createServer();
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  const client = new Realtime({ clientId: 'a', url: `ws://127.0.0.1:${port}` });
  try {
    const change = await client.connection.once('disconnected');
    assert.deepEqual([change.reason.code, change.reason.message], [80003, 'unable to connect to the hub']);
  } finally {
    client.close();
  }
  // Once connected, a drop is a lost connection.
  const hub = await startHub({ port: 0 });
  const user = new Realtime({ clientId: 'b', url: hub.url });
  try {
    await user.connection.whenState('connected');
    const dropped = user.connection.once('disconnected');
    hub.disconnectAll();
    assert.equal((await dropped).reason.message, 'connection to the hub lost');
  } finally {
    user.close();
    await hub.close();
  }
});
