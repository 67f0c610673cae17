// The real `ably` npm client against a rollcall hub, on the Node host and the edge host, in JSON
// and in msgpack: connect, attach, presence, SYNC, resume after a dropped transport, close,
// history, and a channel shared with rollcall's own client.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import * as Ably from 'ably';

import { Realtime as RollcallRealtime } from '../../js/node.js';
import { startEdgeHub } from '../../js/hub/edge.js';
import { spyProxy, startHub, waitFor } from './helpers.mjs';

/** The hub on each host: `port` to reach it at, and `disconnectAll()` to cut every socket (on
 * the edge host, through a proxy in front of it). */
const HOSTS = {
  node: async () => {
    const node = await startHub({ port: 0 });
    return { port: node.port, disconnectAll: () => node.disconnectAll(), close: () => node.close() };
  },
  edge: async () => {
    const edge = await startEdgeHub({ port: 0 });
    const proxy = await spyProxy(edge.port);
    return {
      port: proxy.port,
      disconnectAll: () => proxy.cut(),
      close: async () => {
        await proxy.close();
        await edge.close();
      },
    };
  },
};

let n = 0;
const fresh = () => `interop-${++n}-${Date.now()}`;

for (const [host, format] of Object.keys(HOSTS).flatMap((h) => [[h, 'json'], [h, 'msgpack']])) {
  describe(`ably ${format}, ${host} host`, () => {
    let hub;
    const clients = [];
    before(async () => {
      hub = await HOSTS[host]();
    });
    after(async () => {
      for (const c of clients) c.close();
      await hub.close();
    });
    const ably = (extra = {}) => {
      const client = new Ably.Realtime({
        key: 'app.key:secret',
        endpoint: '127.0.0.1',
        port: hub.port,
        tls: false,
        useBinaryProtocol: format === 'msgpack',
        logLevel: 0,
        ...extra,
      });
      clients.push(client);
      return client;
    };
    const connected = async (client) => {
      await client.connection.once('connected');
      return client;
    };

    test('connects, attaches, enters with data, gets and subscribes', async () => {
      const alice = await connected(ably({ clientId: 'alice' }));
      assert.ok(alice.connection.id, 'a connection id');
      const name = fresh();
      const channel = alice.channels.get(name);
      await channel.attach();
      assert.equal(channel.state, 'attached');
      const all = [];
      const enters = [];
      await channel.presence.subscribe((m) => all.push(m.action));
      await channel.presence.subscribe('enter', (m) => enters.push([m.clientId, m.data]));
      await channel.presence.enter({ device: 'laptop' });
      await waitFor(() => enters.length === 1);
      assert.deepEqual(enters[0], ['alice', { device: 'laptop' }]);
      const members = await channel.presence.get();
      assert.deepEqual(members.map((m) => [m.clientId, m.connectionId, m.data]), [['alice', alice.connection.id, { device: 'laptop' }]]);
      assert.deepEqual(all, ['enter']);
    });

    test('one clientId on two connections is two members; a late joiner syncs; update and leave arrive', async () => {
      const name = fresh();
      const desktop = ably({ clientId: 'user-123' });
      const mobile = ably({ clientId: 'user-123' });
      await desktop.channels.get(name).presence.enter({ device: 'desktop' });
      await mobile.channels.get(name).presence.enter({ device: 'mobile' });
      const agent = ably({ clientId: 'agent' });
      const seen = [];
      const presence = agent.channels.get(name).presence;
      await presence.subscribe((m) => seen.push([m.action, m.data]));
      const members = await presence.get();
      assert.equal(members.length, 2);
      assert.equal(new Set(members.map((m) => m.connectionId)).size, 2);
      assert.ok(presence.syncComplete);
      await waitFor(() => seen.length === 2);
      assert.deepEqual(seen.map((s) => s[0]), ['present', 'present']);
      await desktop.channels.get(name).presence.update({ device: 'desktop', status: 'typing' });
      await waitFor(() => seen.length === 3);
      assert.deepEqual(seen[2], ['update', { device: 'desktop', status: 'typing' }]);
      await desktop.channels.get(name).presence.leave({ reason: 'session-completed' });
      await waitFor(() => seen.length === 4);
      assert.deepEqual(seen[3], ['leave', { reason: 'session-completed' }]);
    });

    test('enterClient on a connection made with a key and no clientId', async () => {
      const server = await connected(ably());
      const name = fresh();
      const presence = server.channels.get(name).presence;
      await presence.enterClient('bob', 'hello');
      await presence.enterClient('carol', { role: 'admin' });
      const members = await presence.get();
      assert.deepEqual(members.map((m) => m.clientId).sort(), ['bob', 'carol']);
      await presence.leaveClient('bob');
      await waitFor(async () => (await presence.get()).length === 1);
      await assert.rejects(presence.enter(), (e) => e.code === 40012);
    });

    test('a dropped transport resumes with the same connection id and nobody sees a leave', async () => {
      const name = fresh();
      const watcher = ably({ clientId: 'watcher' });
      const events = [];
      await watcher.channels.get(name).presence.subscribe((m) => events.push([m.action, m.clientId]));
      const alice = await connected(ably({ clientId: 'alice' }));
      await alice.channels.get(name).presence.enter('here');
      await waitFor(() => events.length === 1);
      const id = alice.connection.id;
      hub.disconnectAll();
      await alice.connection.once('disconnected');
      await alice.connection.once('connected');
      assert.equal(alice.connection.id, id, 'resumed');
      await waitFor(() => watcher.connection.state === 'connected' && alice.channels.get(name).state === 'attached');
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(events, [['enter', 'alice']], 'no leave, no re-enter');
      const members = await watcher.channels.get(name).presence.get();
      assert.deepEqual(members.map((m) => m.connectionId), [id]);
    });

    test('presence data over the 1 MiB the hub reads fails the connection with 40009, not a resend loop', async () => {
      const name = fresh();
      const watcher = ably({ clientId: 'watcher' });
      const events = [];
      await watcher.channels.get(name).presence.subscribe((m) => events.push([m.action, m.clientId]));
      const big = await connected(ably({ clientId: 'big' }));
      const channel = big.channels.get(name);
      await channel.presence.enter('small');
      await waitFor(() => events.length === 1);
      // ably-js does not hold presence to maxMessageSize: the frame is cut off at the socket,
      // and the client resends it when it resumes.
      let error;
      channel.presence.enter('x'.repeat(1.5 * 1024 * 1024)).then(() => (error = 'entered'), (e) => (error = e));
      await waitFor(() => error !== undefined, { ms: 10_000, what: 'enter() settled' });
      assert.equal(error?.code, 40009, String(error));
      assert.match(error.message, /1048576 bytes/);
      await waitFor(() => big.connection.state === 'failed', { what: 'failed' });
      await waitFor(() => events.length === 2, { what: 'its member gone' });
      assert.deepEqual(events[1], ['leave', 'big']);
      // A new connection carries on (the channel failed with it, and is attached again).
      big.connect();
      await big.connection.once('connected');
      await channel.attach();
      await channel.presence.enter('again');
      await waitFor(() => events.length === 3);
      assert.deepEqual(events[2], ['enter', 'big']);
    });

    test('close() makes members leave at once; history pages through events with their data', async () => {
      const name = fresh();
      const watcher = ably({ clientId: 'watcher' });
      const leaves = [];
      await watcher.channels.get(name).presence.subscribe('leave', (m) => leaves.push(m.clientId));
      const alice = ably({ clientId: 'alice' });
      const p = alice.channels.get(name).presence;
      await p.enter({ step: 1 });
      await p.update({ step: 2 });
      await p.update({ step: 3 });
      alice.close();
      await waitFor(() => leaves.length === 1, { ms: 3000 });
      const page = await watcher.channels.get(name).presence.history({ limit: 2 });
      assert.deepEqual(page.items.map((m) => m.action), ['leave', 'update']);
      assert.deepEqual(page.items[1].data, { step: 3 });
      assert.ok(page.hasNext());
      const next = await page.next();
      assert.deepEqual(next.items.map((m) => [m.action, m.data.step]), [['update', 2], ['enter', 1]]);
      assert.ok(!next.hasNext());
      const forwards = await watcher.channels.get(name).presence.history({ direction: 'forwards', limit: 10 });
      assert.equal(forwards.items[0].action, 'enter');
    });

    test('a leave whose echo went with the transport is not entered again on a later new connection', async () => {
      const name = fresh();
      const other = `${name}-other`;
      const proxy = await spyProxy(hub.port);
      try {
        const seen = [];
        const watcher = ably({ clientId: 'watcher' });
        await watcher.channels.get(name).presence.subscribe((m) => seen.push(`${m.action}:${m.clientId}`));
        await watcher.channels.get(other).presence.subscribe('enter', (m) => seen.push(`marker:${m.clientId}`));
        const alice = ably({ clientId: 'alice', port: proxy.port, disconnectedRetryTimeout: 100 });
        const p = alice.channels.get(name).presence;
        await p.enter('x');
        await waitFor(() => seen.length === 1);
        // The hub applies the leave; its echo and ACK are lost with the transport.
        proxy.muted = true;
        const left = p.leave();
        await waitFor(() => seen.length === 2, { what: 'the leave applied' });
        proxy.cut();
        proxy.muted = false;
        await left;
        // Later the connection cannot be resumed: the client enters again what it holds as its
        // own. Its enter on another channel, sent after, marks when that would have been heard.
        await waitFor(() => alice.connection.state === 'connected' && alice.channels.get(name).state === 'attached');
        const before = alice.connection.id;
        proxy.forgetResumes = true;
        proxy.cut();
        await waitFor(() => alice.connection.state === 'connected' && alice.connection.id !== before, { what: 'a new connection' });
        await alice.channels.get(other).presence.enter('marker');
        await waitFor(() => seen.includes('marker:alice'));
        assert.deepEqual(seen, ['enter:alice', 'leave:alice', 'marker:alice']);
        assert.deepEqual(await watcher.channels.get(name).presence.get(), []);
      } finally {
        await proxy.close();
      }
    });

    test('binary data stays binary, whoever reads it', async () => {
      const name = fresh();
      const bytes = Buffer.from([0, 1, 2, 254, 255]);
      await ably({ clientId: 'sender' }).channels.get(name).presence.enter(bytes);
      const readers = {
        'ably json': ably({ clientId: 'r1', useBinaryProtocol: false }),
        'ably msgpack': ably({ clientId: 'r2', useBinaryProtocol: true }),
        rollcall: new RollcallRealtime({ clientId: 'r3', url: `ws://127.0.0.1:${hub.port}` }),
      };
      clients.push(readers.rollcall);
      for (const [who, reader] of Object.entries(readers)) {
        const [member] = await reader.channels.get(name).presence.get();
        assert.ok(member.data instanceof Uint8Array, `${who} got ${typeof member.data}`);
        assert.deepEqual([...member.data], [...bytes], who);
      }
    });

    test('the REST client reads time, members and history', async () => {
      const name = fresh();
      const alice = ably({ clientId: 'alice' });
      await alice.channels.get(name).presence.enter({ n: 1 });
      await alice.channels.get(name).presence.update({ n: 2 });
      const rest = new Ably.Rest({
        key: 'app.key:secret',
        endpoint: '127.0.0.1',
        port: hub.port,
        tls: false,
        useBinaryProtocol: format === 'msgpack',
        logLevel: 0,
      });
      const time = await rest.time();
      assert.ok(Math.abs(time - Date.now()) < 5000);
      const members = await rest.channels.get(name).presence.get();
      assert.deepEqual(members.items.map((m) => [m.clientId, m.data]), [['alice', { n: 2 }]]);
      const history = await rest.channels.get(name).presence.history({ direction: 'forwards' });
      assert.deepEqual(history.items.map((m) => [m.action, m.data.n]), [['enter', 1], ['update', 2]]);
      // Batch presence: each channel's members at once (the body as the hub wrote it, as
      // ably-js gives it: data still encoded).
      const batch = await rest.batchPresence([name, `${name}-empty`]);
      assert.equal(batch.successCount, 2);
      assert.deepEqual(batch.results.map((r) => [r.channel, r.presence.map((m) => m.clientId)]), [[name, ['alice']], [`${name}-empty`, []]]);
    });

    test('a channel shared with rollcall clients: each sees the others identically', async () => {
      const name = fresh();
      const rollcall = new RollcallRealtime({ clientId: 'rc-user', url: `ws://127.0.0.1:${hub.port}` });
      clients.push(rollcall);
      const fromAbly = [];
      const fromRollcall = [];
      const abClient = ably({ clientId: 'ably-user' });
      await abClient.channels.get(name).presence.subscribe((m) => fromAbly.push([m.action, m.clientId, m.data]));
      await rollcall.channels.get(name).presence.subscribe((m) => fromRollcall.push([m.action, m.clientId, m.data]));
      await abClient.channels.get(name).presence.enter({ from: 'ably', binary: false });
      await rollcall.channels.get(name).presence.enter({ from: 'rollcall' });
      await rollcall.channels.get(name).presence.update('plain text');
      await waitFor(() => fromAbly.length === 3 && fromRollcall.length === 3);
      assert.deepEqual(fromAbly, fromRollcall);
      const viaAbly = (await abClient.channels.get(name).presence.get()).map((m) => [m.clientId, m.connectionId, m.data]);
      const viaRollcall = (await rollcall.channels.get(name).presence.get()).map((m) => [m.clientId, m.connectionId, m.data]);
      const sort = (a) => a.sort((x, y) => x[0].localeCompare(y[0]));
      assert.deepEqual(sort(viaAbly), sort(viaRollcall));
    });
  });
}

// Ably's client sends each frame as the app asks for it, unpaced. An agent that sweeps rooms
// with it, awaiting each attach and detach, went past the hub's budget for control frames
// within a second and was closed for good (42920); it is slowed to the rate instead.
for (const host of ['node', 'edge']) {
  test(`ably on the ${host} host: an agent sweeping rooms faster than the rate is slowed, not cut off`, async () => {
    // One presence message a second: control frames at twenty a second, 65 at once (a burst of
    // 45 and 20 on credit). The sweep is 100 frames.
    const hub = { maxInboundRate: 1, maxChannelsPerConnection: 5 };
    const server = host === 'node' ? await startHub({ port: 0, hub }) : await startEdgeHub({ port: 0, hub });
    const agent = new Ably.Realtime({ key: 'app.key:secret', clientId: 'agent', endpoint: '127.0.0.1', port: server.port, tls: false, useBinaryProtocol: false, logLevel: 0 });
    const failures = [];
    agent.connection.on(['failed', 'disconnected', 'suspended'], (change) => failures.push(change.reason?.code ?? change.current));
    try {
      await agent.connection.once('connected');
      const seen = [];
      for (let i = 0; i < 50; i++) {
        const channel = agent.channels.get(`sweep-${i}`);
        await channel.attach();
        seen.push(channel.state);
        await channel.detach();
      }
      assert.deepEqual(seen, Array(50).fill('attached'));
      assert.equal(agent.connection.state, 'connected');
      assert.deepEqual(failures, []);
    } finally {
      agent.close();
      await server.close();
    }
  });
}

// A detach the hub answers without an error: Ably's client reports 90001 "Channel detached" as
// the reason (and the channel's errorReason); code ported from it may read that reason.
test('a detach gives the same reason on both clients', async () => {
  const hub = await startHub({ port: 0 });
  const ably = new Ably.Realtime({ key: 'app.key:secret', clientId: 'a', endpoint: '127.0.0.1', port: hub.port, tls: false, useBinaryProtocol: false, logLevel: 0 });
  const ours = new RollcallRealtime({ clientId: 'b', url: `ws://127.0.0.1:${hub.port}` });
  try {
    const reasons = [];
    for (const client of [ably, ours]) {
      const channel = client.channels.get('room');
      await channel.attach();
      const detached = new Promise((resolve) => channel.once('detached', resolve));
      await channel.detach();
      const { reason } = await detached;
      reasons.push({
        reason: { code: reason?.code, statusCode: reason?.statusCode, message: reason?.message },
        errorReason: channel.errorReason?.code,
      });
    }
    assert.deepEqual(reasons[0], { reason: { code: 90001, statusCode: 404, message: 'Channel detached' }, errorReason: 90001 });
    assert.deepEqual(reasons[1], reasons[0]);
  } finally {
    ably.close();
    ours.close();
    await hub.close();
  }
});

// On close, Ably's client detaches its channels (80017) before its connection says `closing`:
// code ported from it may read the channels' state in those listeners.
test('on close, both clients detach their channels before the connection says closing', async () => {
  const hub = await startHub({ port: 0 });
  const ably = new Ably.Realtime({ key: 'app.key:secret', clientId: 'a', endpoint: '127.0.0.1', port: hub.port, tls: false, useBinaryProtocol: false, logLevel: 0 });
  const ours = new RollcallRealtime({ clientId: 'b', url: `ws://127.0.0.1:${hub.port}` });
  try {
    const seen = [];
    for (const client of [ably, ours]) {
      const channel = client.channels.get('room');
      await channel.presence.enter('here');
      const log = [];
      channel.on('detached', (change) => log.push(`detached ${change.reason?.code}`));
      client.connection.on('closing', () => log.push(`closing: channel ${channel.state}`));
      const closed = new Promise((resolve) => client.connection.once('closed', () => {
        log.push(`closed: channel ${channel.state}`);
        resolve();
      }));
      client.close();
      await closed;
      seen.push(log);
    }
    assert.deepEqual(seen[0], ['detached 80017', 'closing: channel detached', 'closed: channel detached']);
    assert.deepEqual(seen[1], seen[0]);
  } finally {
    ably.close();
    ours.close();
    await hub.close();
  }
});
