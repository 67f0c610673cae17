// End-to-end tests of a running hub, written once and run against each host: the Node host and
// the edge host (Worker + Durable Object on workerd). Only the hub's URL differs.
//
//   ROLLCALL_TARGETS=node,edge (default both)

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import * as Ably from 'ably';

import { startEdgeHub } from '../../js/hub/edge.js';
import { Realtime } from '../../js/node.js';
import { launchBrowser } from './browser.mjs';
import { runDemoScenario, runKeyedDemoCheck } from './demo-scenario.mjs';
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
      // The hub is stopped whatever the wait says.
      try {
        await waitFor(() => clients.every((c) => ['closed', 'failed'].includes(c.connection.state)), { what: 'clients closed' });
      } finally {
        await hub.close();
      }
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

    test('a page that recovers: a reload keeps its member with no leave or enter; closing it is a drop', async () => {
      const GRACE = 1500;
      const channel = fresh();
      const watcher = client('watcher');
      const events = [];
      await watcher.channels.get(channel).presence.subscribe((m) => events.push([m.action, m.clientId, m.connectionId]));
      // A page of an app that opts in as Ably's do: recover the connection the page before had.
      const page_ = `<!doctype html><script type="module">
        import { Realtime } from '/rollcall/js/browser.js';
        const realtime = new Realtime({ clientId: 'alice', transportParams: { remainPresentFor: ${GRACE} },
          recover: (last, callback) => { window.last = last; callback(last.location.href === location.href); } });
        window.realtime = realtime;
        window.entered = realtime.channels.get(${JSON.stringify(channel)}).presence.enter('tab').then(() => realtime.connection.id);
      </script>`;
      // A page served by the test (not by the hub) has no address, so Chromium would take it for
      // a public one that may not reach a loopback hub.
      const browser = await launchBrowser(['--disable-features=LocalNetworkAccessChecks']);
      try {
        const page = await browser.newPage();
        await page.route('**/recovering.html', (route) => route.fulfill({ contentType: 'text/html', body: page_ }));
        await page.goto(`${hub.url}/recovering.html`);
        // The module runs after `load` (its Wasm is awaited at the top level).
        const entered = () => page.waitForFunction(() => window.entered).then(() => page.evaluate(() => window.entered));
        const id = await entered();
        await waitFor(() => events.length === 1, { what: 'the enter' });
        await page.reload();
        assert.equal(await entered(), id, 'the reloaded page has the same connection');
        assert.equal(await page.evaluate(() => window.last?.clientId), 'alice', 'from what the page before left');
        // Past the grace window the page before would have had: nobody heard a thing.
        await new Promise((r) => setTimeout(r, GRACE * 2));
        assert.deepEqual(events, [['enter', 'alice', id]]);
        assert.deepEqual((await watcher.channels.get(channel).presence.get()).map((m) => m.connectionId), [id]);
        // The key was taken once: a page opened after it does not take the connection over.
        assert.equal(await page.evaluate(() => sessionStorage.length), 0);

        // Closing the page looks like a drop (it could be a reload): the member leaves once
        // its grace window is over.
        const closedAt = Date.now();
        await page.close();
        await waitFor(() => events.length === 2, { ms: GRACE + 8000, what: 'the leave' });
        assert.deepEqual(events[1], ['leave', 'alice', id]);
        assert.ok(Date.now() - closedAt >= GRACE - 100, 'after the grace window');
      } finally {
        await browser.close();
      }
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

    test('history({ untilAttach }) ends where the channel attached, for rollcall and ably clients', async () => {
      const channel = fresh();
      const p = client('alice').channels.get(channel).presence;
      await p.enter({ step: 1 });
      await p.update({ step: 2 });
      const watcher = client('watcher').channels.get(channel);
      await assert.rejects(watcher.presence.history({ untilAttach: true }), (e) => e.code === 40000 && e.statusCode === 400);
      const url = new URL(hub.url);
      const ably = new Ably.Realtime({ key: 'app.key:secret', endpoint: url.hostname, port: Number(url.port), tls: false, logLevel: 0 });
      try {
        await watcher.attach();
        await ably.channels.get(channel).attach();
        await p.update({ step: 3 });
        await p.leave({ step: 4 });
        const steps = (page) => page.items.map((m) => m.data.step);
        assert.deepEqual(steps(await watcher.presence.history({ direction: 'forwards' })), [1, 2, 3, 4]);
        assert.deepEqual(steps(await watcher.presence.history({ untilAttach: true, direction: 'forwards' })), [1, 2]);
        // The first page ends at the attach, and so does the next.
        const first = await watcher.presence.history({ untilAttach: true, limit: 1 });
        assert.deepEqual([steps(first), steps(await first.next())], [[2], [1]]);
        assert.deepEqual(steps(await ably.channels.get(channel).presence.history({ untilAttach: true })), [2, 1]);
      } finally {
        ably.close();
      }
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

test('a page follows the browser\'s network: offline drops the connection at once, online connects at once, and a resume keeps the member', async () => {
  const hub = await startHub({ port: 0 });
  const watcher = new Realtime({ clientId: 'watcher', url: `ws://127.0.0.1:${hub.port}` });
  const browser = await launchBrowser();
  try {
    const events = [];
    await watcher.channels.get('net').presence.subscribe((m) => events.push([m.action, m.clientId]));
    const page = await browser.newPage();
    await page.goto(`${hub.url}/rollcall/js/browser.js`);
    // A long grace window and heartbeat: only the network events can explain a quick change.
    const id = await page.evaluate(async () => {
      const { Realtime } = await import('/rollcall/js/browser.js');
      const realtime = new Realtime({ clientId: 'alice', transportParams: { remainPresentFor: 60000, heartbeatInterval: 60000 } });
      window.realtime = realtime;
      window.states = [];
      realtime.connection.on((change) => window.states.push(change.current));
      await realtime.channels.get('net').presence.enter('laptop');
      return realtime.connection.id;
    });
    await waitFor(() => events.length === 1, { what: 'the enter' });
    const state = () => page.evaluate(() => window.realtime.connection.state);

    // Offline: disconnected now (the socket itself still works: nothing else would notice).
    await page.evaluate(() => dispatchEvent(new Event('offline')));
    assert.ok((await page.evaluate(() => window.states)).includes('disconnected'), 'disconnected when the browser says offline');
    await waitFor(async () => (await state()) === 'connected', { what: 'connected again' });

    // Online: a connection waiting for its next retry connects at once. Dropped twice in a row,
    // the second drop finds the first retry not yet made: the next is 12 to 15 s away.
    await page.evaluate(() => {
      window.realtime.connection.simulateDrop(0);
      window.realtime.connection.simulateDrop(0);
    });
    assert.equal(await state(), 'disconnected');
    await page.evaluate(() => dispatchEvent(new Event('online')));
    await waitFor(async () => (await state()) === 'connected', { ms: 3000, what: 'connected at once when online' });
    assert.equal(await page.evaluate(() => window.realtime.connection.id), id, 'resumed');
    // Nobody saw the device go, or come back.
    const present = await watcher.channels.get('net').presence.get();
    assert.deepEqual(present.map((m) => m.connectionId), [id]);
    assert.deepEqual(events, [['enter', 'alice']]);

    // A client the app holds offline stays so, however it said "until connect()".
    for (const ms of [NaN, -1, Infinity]) {
      await page.evaluate((ms) => window.realtime.connection.simulateDrop(ms), ms);
      await page.evaluate(() => dispatchEvent(new Event('online')));
      assert.equal(await state(), 'disconnected', `held offline by simulateDrop(${ms})`);
      await page.evaluate(() => window.realtime.connect());
      await waitFor(async () => (await state()) === 'connected', { what: `connected after simulateDrop(${ms})` });
    }
    await page.evaluate(() => window.realtime.connection.simulateDrop());
    await page.evaluate(() => dispatchEvent(new Event('online')));
    assert.equal(await state(), 'disconnected', 'held offline by simulateDrop()');
  } finally {
    await browser.close();
    watcher.close();
    await hub.close();
  }
});

test('the demo page on a hub with keys says it needs credentials, and refuses names the client would', async () => {
  const hub = await startHub({ port: 0, keys: 'app.demo:s3cret' });
  try {
    await runKeyedDemoCheck(hub.url);
  } finally {
    await hub.close();
  }
});

test('the demo page keeps the latest 20 users gone offline, not everyone it ever saw', async () => {
  const hub = await startHub({ port: 0 });
  const server = new Realtime({ key: 'app.any:thing', url: `ws://127.0.0.1:${hub.port}` });
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    await page.goto(`${hub.url}/?clientId=viewer&channel=passing`);
    const rows = (status) => page.$$(`[data-client-id][data-status='${status}']`).then((r) => r.length);
    await waitFor(async () => (await rows('online')) === 1, { ms: 20000, what: 'the page entered' });
    const passing = server.channels.get('passing').presence;
    const ids = Array.from({ length: 25 }, (_, i) => `visitor-${String(i).padStart(2, '0')}`);
    await Promise.all(ids.map((id) => passing.enterClient(id, { device: 'bot' })));
    await waitFor(async () => (await rows('online')) === 26, { ms: 20000, what: 'all listed' });
    // They go in this order, together (the page may hear them all in one frame): the five who
    // went first are the five no longer listed.
    await Promise.all(ids.map((id) => passing.leaveClient(id)));
    await waitFor(async () => (await rows('offline')) === 20 && (await rows('online')) === 1, { ms: 20000, what: '20 offline listed' });
    const listed = await page.$$eval("[data-status='offline']", (els) => els.map((e) => e.dataset.clientId).sort());
    assert.deepEqual(listed, ids.slice(5));
  } finally {
    await browser.close();
    server.close();
    await hub.close();
  }
});

test('the demo page draws whatever data another client gives its member', async () => {
  const hub = await startHub({ port: 0 });
  const server = new Realtime({ key: 'app.any:thing', url: `ws://127.0.0.1:${hub.port}` });
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    await page.goto(`${hub.url}/?clientId=viewer&channel=odd`);
    const online = () => page.$$eval("[data-status='online']", (els) => els.map((e) => e.dataset.clientId).sort());
    await waitFor(async () => (await online()).length === 1, { ms: 20000, what: 'the page entered' });
    const odd = server.channels.get('odd').presence;
    // An object whose toString cannot be called, where the page expects text.
    await odd.enterClient('mallory', { device: { toString: 0 }, model: [1], status: { toString: 0 } });
    await odd.enterClient('bob', { device: 'laptop' });
    await waitFor(async () => (await online()).length === 3, { ms: 20000, what: 'everyone listed, after the odd member too' });
    assert.deepEqual(await online(), ['bob', 'mallory', 'viewer']);
    const chip = await page.$eval("[data-client-id='mallory'] .device-name", (e) => e.textContent);
    assert.equal(chip, 'device');
    // Another's change replaces that row only: bob's stays the node it was (a screen reader
    // reading it keeps its place).
    await page.$eval("[data-client-id='bob']", (row) => (row.kept = true));
    await odd.updateClient('mallory', { device: 'phone' });
    await waitFor(async () => (await page.$eval("[data-client-id='mallory'] .device-name", (e) => e.textContent)) === 'phone', {
      what: "mallory's new device shown",
    });
    assert.equal(await page.$eval("[data-client-id='bob']", (row) => row.kept), true);
  } finally {
    await browser.close();
    server.close();
    await hub.close();
  }
});

test('the demo page draws a crowd once it has it, not once per member', async () => {
  const { launchBrowser } = await import('./browser.mjs');
  const { Realtime } = await import('../../js/node.js');
  const hub = await startHub({ port: 0 });
  const server = new Realtime({ key: 'app.any:thing', url: `ws://127.0.0.1:${hub.port}` });
  const browser = await launchBrowser();
  try {
    const crowd = server.channels.get('crowd');
    await Promise.all(Array.from({ length: 300 }, (_, i) => crowd.presence.enterClient(`user-${i}`, { device: 'bot' })));
    const page = await browser.newPage();
    await page.goto(`${hub.url}/?clientId=viewer&channel=crowd`);
    await waitFor(async () => (await page.$$('[data-client-id]')).length === 301, { ms: 20000, what: 'the crowd shown' });
    const draws = await page.evaluate(() => window.rollcall.draws);
    // 600 events (300 present, 300 online) arrive; a draw per event would be 600 redraws of
    // up to 300 rows.
    assert.ok(draws < 30, `${draws} draws for a crowd of 300`);
  } finally {
    await browser.close();
    server.close();
    await hub.close();
  }
});
