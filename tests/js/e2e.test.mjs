// End-to-end tests of a running hub, written once and run against each host: the Node host and
// the edge host (Worker + Durable Object on workerd). Only the hub's URL differs.
//
//   ROLLCALL_TARGETS=node,edge (default both)

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import * as Ably from 'ably';

import { startEdgeHub } from '../../js/hub/edge.js';
import { Realtime } from '../../js/node.js';
import { runDemoScenario } from './demo-scenario.mjs';
import { startHub, waitFor } from './helpers.mjs';

const targets = {
  node: () => startHub({ port: 0 }),
  edge: () => startEdgeHub({ port: 0 }),
};
const chosen = (process.env.ROLLCALL_TARGETS ?? 'node,edge').split(',').filter((t) => t in targets);

for (const name of chosen) {
  describe(`${name} host`, () => {
    let hub;
    const clients = [];
    before(async () => {
      hub = await targets[name]();
    });
    after(async () => {
      for (const c of clients) c.close();
      await waitFor(() => clients.every((c) => ['closed', 'failed'].includes(c.connection.state)), { what: 'clients closed' });
      await hub.close();
    });
    const ws = () => hub.url.replace(/^http/, 'ws');
    const client = (clientId, extra = {}) => {
      const c = new Realtime({ clientId, url: ws(), ...extra });
      clients.push(c);
      return c;
    };
    let n = 0;
    const fresh = () => `e2e-${name}-${++n}-${Date.now()}`;

    test('a user on two devices, a leave with a reason, a drop held for its grace window', async () => {
      const channel = fresh();
      const agent = client('weather-agent');
      const presence = agent.channels.get(channel).presence;
      await presence.enter({ model: 'gpt-4' });
      const changes = [];
      const leaves = [];
      await presence.subscribeClients((c) => c.clientId === 'user-123' && changes.push(c.action));
      await presence.subscribe('leave', (m) => leaves.push([m.data?.reason ?? m.extras?.reason, m.connectionId]));

      const desktop = client('user-123');
      const mobile = client('user-123', { transportParams: { remainPresentFor: 1500 } });
      await desktop.channels.get(channel).presence.enter({ device: 'desktop' });
      await mobile.channels.get(channel).presence.enter({ device: 'mobile' });
      await waitFor(async () => (await presence.get({ clientId: 'user-123' })).length === 2);
      const entries = await presence.get({ clientId: 'user-123' });
      assert.equal(new Set(entries.map((m) => m.connectionId)).size, 2, 'two members, one clientId');

      await desktop.channels.get(channel).presence.leave({ reason: 'session-completed' });
      await waitFor(() => leaves.length === 1);
      assert.deepEqual(leaves[0], ['session-completed', desktop.connection.id]);
      assert.deepEqual(changes, ['online'], 'one device left: still online');

      const droppedAt = Date.now();
      mobile.connection.simulateDrop();
      await waitFor(() => leaves.length === 2, { ms: 10000 });
      const held = Date.now() - droppedAt;
      assert.ok(held >= 1400, `present for remainPresentFor after the drop, left after ${held} ms`);
      assert.deepEqual(leaves[1][0], 'timeout');
      assert.deepEqual(changes, ['online', 'connectionLost', 'offline'], 'the drop is visible, then offline on all devices');
      assert.deepEqual((await presence.get()).map((m) => m.clientId), ['weather-agent']);
    });

    test('a resume inside the grace window: same connection, no leave and no enter for anyone', async () => {
      const channel = fresh();
      const watcher = client('watcher');
      const events = [];
      await watcher.channels.get(channel).presence.subscribe((m) => events.push([m.action, m.clientId]));
      const alice = client('alice', { transportParams: { remainPresentFor: 5000 } });
      await alice.channels.get(channel).presence.enter('here');
      await waitFor(() => events.length === 1);
      const id = alice.connection.id;
      const dropped = alice.connection.whenState('disconnected');
      alice.connection.simulateDrop(300);
      assert.equal((await dropped).retryIn, 300, 'the state change says when it tries again');
      await waitFor(() => alice.connection.state === 'connected', { ms: 8000 });
      assert.equal(alice.connection.id, id, 'resumed');
      await waitFor(() => alice.channels.get(channel).state === 'attached');
      await alice.channels.get(channel).presence.update('still here');
      await waitFor(() => events.length === 2);
      assert.deepEqual(events, [
        ['enter', 'alice'],
        ['update', 'alice'],
      ]);
    });

    test('history through the REST read', async () => {
      const channel = fresh();
      const alice = client('alice');
      const p = alice.channels.get(channel).presence;
      await p.enter({ step: 1 });
      await p.update({ step: 2 });
      await p.leave({ step: 3 });
      const page = await p.history({ direction: 'forwards' });
      assert.deepEqual(page.items.map((m) => [m.action, m.data.step]), [['enter', 1], ['update', 2], ['leave', 3]]);
    });

    for (const binary of [false, true]) {
      test(`the ably client (${binary ? 'msgpack' : 'JSON'}) and rollcall share a channel`, async () => {
        const channel = fresh();
        const url = new URL(hub.url);
        const ably = new Ably.Realtime({
          key: 'app.key:secret',
          clientId: 'ably-user',
          endpoint: url.hostname,
          port: Number(url.port),
          tls: false,
          useBinaryProtocol: binary,
          logLevel: 0,
        });
        try {
          const rc = client('rc-user');
          await ably.channels.get(channel).presence.enter({ via: 'ably' });
          await rc.channels.get(channel).presence.enter({ via: 'rollcall' });
          await waitFor(async () => (await ably.channels.get(channel).presence.get()).length === 2);
          const seen = (await rc.channels.get(channel).presence.get()).map((m) => [m.clientId, m.data.via]).sort();
          assert.deepEqual(seen, [['ably-user', 'ably'], ['rc-user', 'rollcall']]);
        } finally {
          ably.close();
        }
      });
    }

    test('the demo page: tabs as devices, prompt close, grace window', async () => {
      await runDemoScenario(hub.url, name);
    });
  });
}
