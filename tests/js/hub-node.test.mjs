// The Node host over real sockets: raw protocol frames, the seed's scenario, liveness, bad
// input, REST, static files and the process itself.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { WebSocket } from 'ws';

import { staticKept } from '../../js/hub/node.js';
import { Realtime } from '../../js/node.js';
import { transportId } from '../../js/hub/ids.js';

import { RawClient, attachBurst, startHub, waitFor } from './helpers.mjs';

const ROOM = 'job-map-new';

async function withHub(options, fn) {
  const hub = await startHub({ port: 0, ...options });
  const clients = [];
  const connect = async (query, wsOptions) => {
    const client = await RawClient.connect(hub.url, query, wsOptions);
    clients.push(client);
    await client.next((m) => m.action === 4 || m.action === 9);
    return client;
  };
  try {
    await fn({ hub, connect });
  } finally {
    for (const c of clients) c.close();
    await hub.close();
  }
}

test('the seed scenario: two devices, a leave with a reason, a drop, offline everywhere', async () => {
  await withHub({}, async ({ connect }) => {
    const agent = await connect('clientId=weather-agent&v=6&format=json');
    await agent.attach(ROOM);
    await agent.presence(ROOM, 0, { action: 2, data: '{"model":"gpt-4"}', encoding: 'json' });

    const desktop = await connect('clientId=user-123&v=6');
    const mobile = await connect('clientId=user-123&v=6&remainPresentFor=1000');
    await desktop.attach(ROOM);
    await mobile.attach(ROOM);
    assert.equal((await desktop.presence(ROOM, 0, { action: 2, data: '{"device":"desktop"}', encoding: 'json' })).action, 1);
    assert.equal((await mobile.presence(ROOM, 0, { action: 2, data: '{"device":"mobile"}', encoding: 'json' })).action, 1);

    const userEntries = () => agent.events().filter((e) => e.clientId === 'user-123' && e.action === 2);
    const entries = await waitFor(() => userEntries().length === 2 && userEntries());
    assert.notEqual(entries[0].connectionId, entries[1].connectionId, 'two members, one clientId');
    assert.equal(entries[0].connectionId, desktop.received[0].connectionId);

    await desktop.presence(ROOM, 1, { action: 3, data: '{"reason":"session-completed"}', encoding: 'json' });
    const leave = await waitFor(() => agent.events().find((e) => e.action === 3));
    assert.equal(leave.data, '{"reason":"session-completed"}');
    assert.equal(leave.connectionId, entries[0].connectionId);

    const droppedAt = Date.now();
    mobile.close(); // abrupt: no CLOSE frame
    const gone = await waitFor(() => agent.events().filter((e) => e.action === 3)[1], { ms: 5000 });
    assert.ok(Date.now() - droppedAt >= 1000, 'stays for remainPresentFor');
    assert.equal(gone.connectionId, entries[1].connectionId);
    assert.equal(gone.data, '{"device":"mobile"}', 'a leave the hub makes carries the last data');

    const rest = await fetch(`${agent.ws.url.replace('ws', 'http').split('/?')[0]}/channels/${ROOM}/presence`);
    const members = await rest.json();
    assert.deepEqual(members.map((m) => m.clientId), ['weather-agent'], 'user-123 is offline on all devices');
  });
});

test('a client that goes silent is noticed within heartbeatInterval plus the margin, then leaves', async () => {
  await withHub({}, async ({ connect }) => {
    const watcher = await connect('clientId=watcher&heartbeatInterval=60000');
    await watcher.attach(ROOM);
    // autoPong off: the socket stays open but nothing answers the hub's pings.
    const silent = await connect('clientId=silent&heartbeatInterval=1000&remainPresentFor=1000', { autoPong: false });
    await silent.attach(ROOM);
    // Taken before its last frame goes: the hub heard it no earlier.
    const lastActivity = Date.now();
    await silent.presence(ROOM, 0, { action: 2 });
    await silent.waitClosed(10000);
    const noticedAfter = silent.closedAt - lastActivity;
    // interval 1000 + margin max(500, 1000) = 2000 ms; allow for a loaded machine.
    assert.ok(noticedAfter >= 1900, `noticed after ${noticedAfter} ms, not before the deadline`);
    assert.ok(noticedAfter < 7000, `noticed after ${noticedAfter} ms: by its 1 s interval, not the default 15 s`);
    assert.ok(!watcher.events().some((e) => e.action === 3), 'still present during the grace window');
    const leave = await waitFor(() => watcher.events().find((e) => e.action === 3 && e.clientId === 'silent'));
    // Noticed at its deadline (2000 ms), then 1000 ms of grace, both counted from its last frame.
    const leftAfter = Date.now() - lastActivity;
    assert.ok(leftAfter >= 2900, `left ${leftAfter} ms after its last frame: not before its deadline and grace`);
    assert.ok(leave.id && !leave.id.startsWith(leave.connectionId), 'the hub made this leave');
  });
});

test('heartbeats reach browsers that asked for them', async () => {
  await withHub({}, async ({ connect }) => {
    const browser = await connect('clientId=b&heartbeats=true&heartbeatInterval=1000');
    assert.equal(browser.received[0].connectionDetails.maxIdleInterval, 1000);
    await browser.next((m) => m.action === 0, { ms: 3000 });
    assert.equal(browser.closed, false);
  });
});

test('a burst larger than a drain batch: every event and every ack, in order', async () => {
  // Small batches, so that a turn that brings several frames is drained in its middle.
  await withHub({ batch: 7, hub: { maxInboundRate: 100000 } }, async ({ hub, connect }) => {
    const watcher = await connect('clientId=watcher&v=6');
    await watcher.attach(ROOM);
    const writer = await connect('clientId=writer&v=6');
    await writer.attach(ROOM);
    // Written at once, the frames arrive together: the host drains in the middle of turns.
    const n = 1500;
    for (let i = 0; i < n; i++) {
      writer.send({ action: 14, channel: ROOM, msgSerial: i, presence: [{ action: i ? 4 : 2, data: String(i) }] });
    }
    const acks = () => writer.received.filter((m) => m.action === 1);
    await waitFor(() => acks().reduce((sum, m) => sum + m.count, 0) >= n, { ms: 20000, what: 'every ack' });
    let expected = 0;
    for (const ack of acks()) {
      assert.equal(ack.msgSerial, expected, 'acks are contiguous and in order');
      expected += ack.count;
    }
    assert.equal(expected, n);
    const heard = () => watcher.events().filter((e) => e.clientId === 'writer');
    await waitFor(() => heard().length >= n, { ms: 20000, what: 'every event' });
    assert.deepEqual(heard().map((e) => Number(e.data)), [...Array(n).keys()], 'every event once, in order');
    assert.equal(hub.stats().members, 1, 'the writer, once');
  });
});

test('the member data budget is a hub setting: beyond it an enter is refused with 91003', async () => {
  await withHub({ hub: { maxMemberBytes: 20000 } }, async ({ hub, connect }) => {
    const first = await connect('clientId=first');
    await first.attach(ROOM);
    assert.equal((await first.presence(ROOM, 0, { action: 2, data: 'x'.repeat(15000) })).action, 1);
    const second = await connect('clientId=second');
    await second.attach(ROOM);
    const refused = await second.presence(ROOM, 0, { action: 2, data: 'x'.repeat(15000) });
    assert.deepEqual([refused.action, refused.error?.code], [2, 91003]);
    assert.equal((await second.presence(ROOM, 1, { action: 2, data: 'small' })).action, 1);
    assert.equal(hub.stats().members, 2);
    assert.ok(hub.stats().memberBytes <= 20000, `${hub.stats().memberBytes}`);
  });
});

test('bad input gets Ably errors and leaves everyone else alone', async () => {
  await withHub({}, async ({ connect }) => {
    const watcher = await connect('clientId=watcher');
    await watcher.attach(ROOM);
    const good = await connect('clientId=good');
    await good.attach(ROOM);
    await good.presence(ROOM, 0, { action: 2, data: 'fine' });

    const bad = await connect('clientId=bad');
    await bad.attach(ROOM);
    const nack = await bad.presence('unattached', 0, { action: 2 });
    assert.deepEqual([nack.action, nack.error.code, nack.error.statusCode], [2, 90001, 400]);
    const big = await bad.presence(ROOM, 1, { action: 2, data: 'x'.repeat(70000) });
    assert.deepEqual([big.action, big.error.code], [2, 40009]);
    const spoof = await bad.presence(ROOM, 2, { action: 2, clientId: 'good' });
    assert.deepEqual([spoof.action, spoof.error.code], [2, 40012]);
    bad.send('{"action": 14, "garbage');
    const error = await bad.next((m) => m.action === 9);
    assert.equal(error.error.code, 40000);
    await bad.waitClosed();

    const anonymous = await connect('key=app.k:s');
    await anonymous.attach(ROOM);
    const noClient = await anonymous.presence(ROOM, 0, { action: 2 });
    assert.deepEqual([noClient.action, noClient.error.code], [2, 40012]);

    await good.presence(ROOM, 1, { action: 4, data: 'still fine' });
    await waitFor(() => watcher.events().find((e) => e.action === 4 && e.data === 'still fine'));
    assert.ok(!watcher.events().some((e) => e.clientId === 'bad'));
    assert.equal(good.closed, false);
  });
});

test('REST reads, CORS and the static files', async () => {
  await withHub({}, async ({ hub, connect }) => {
    const alice = await connect('clientId=alice');
    await alice.attach('room');
    await alice.presence('room', 0, { action: 2, data: 'a' });
    await alice.presence('room', 1, { action: 4, data: 'b' });

    const time = await (await fetch(`${hub.url}/time`)).json();
    assert.ok(Math.abs(time[0] - Date.now()) < 5000);

    const history = await fetch(`${hub.url}/channels/room/presence/history?limit=1`);
    assert.equal(history.headers.get('access-control-allow-origin'), '*');
    assert.match(history.headers.get('link'), /rel="next"/);
    assert.deepEqual((await history.json()).map((m) => m.data), ['b']);

    const preflight = await fetch(`${hub.url}/channels/room/presence`, { method: 'OPTIONS' });
    assert.equal(preflight.status, 204);
    // In development mode, a page from another site (open in the developer's browser) is
    // refused, over REST and WebSocket; pages on this machine are served.
    const foreign = await fetch(`${hub.url}/channels/room/presence`, { headers: { origin: 'https://evil.example' } });
    assert.equal(foreign.status, 403);
    assert.equal((await foreign.json()).error.code, 40300);
    const socket = new WebSocket(`${hub.url.replace('http', 'ws')}/?clientId=x`, { headers: { origin: 'https://evil.example' } });
    await assert.rejects(new Promise((resolve, reject) => (socket.once('open', resolve), socket.once('error', reject))));
    // One named as allowed (a forwarded port) is served.
    const forwarded = await startHub({ port: 0, allowedOrigins: ['https://space-8080.example.dev'] });
    try {
      const allowed = await fetch(`${forwarded.url}/channels/room/presence`, { headers: { origin: 'https://space-8080.example.dev' } });
      assert.equal(allowed.status, 200);
    } finally {
      await forwarded.close();
    }
    // A page on localhost (the demo, a dev server) on another port (Ably's client sends credentialed requests): named, credentials allowed.
    const cross = await fetch(`${hub.url}/channels/room/presence`, { headers: { origin: 'http://localhost:5173' } });
    assert.equal(cross.headers.get('access-control-allow-origin'), 'http://localhost:5173');
    assert.equal(cross.headers.get('access-control-allow-credentials'), 'true');

    const page = await fetch(`${hub.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type'), /text\/html/);
    const outside = await fetch(`${hub.url}/%2e%2e/Cargo.toml`);
    assert.equal(outside.status, 404);
    const missing = await fetch(`${hub.url}/nothing-here.js`);
    assert.equal(missing.status, 404);
  });
});

test('in development mode, a request made to another name for this machine, or passed on by a proxy, is refused (403, 40300)', async () => {
  const hub = await startHub({ port: 0 });
  // Written with a path, as origins often are: taken as the origin browsers send.
  const tunnelled = await startHub({ port: 0, allowedOrigins: ['https://space-8080.example.dev/'] });
  for (const typo of ['space-8080', 'localhost:3000', 'space.app.github.dev:443']) {
    await assert.rejects(startHub({ port: 0, allowedOrigins: [typo] }), new RegExp(`allowedOrigins: "${typo}" is not an origin`));
  }
  // An extension's origin is taken as it is.
  await (await startHub({ port: 0, allowedOrigins: ['chrome-extension://abcdefgh'] })).close();
  // node:http, as fetch does not let a request name its Host.
  const get = (url, headers) =>
    new Promise((resolve, reject) => {
      http
        .get(`${url}/channels/room/presence`, { headers }, (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode, body }));
        })
        .on('error', reject);
    });
  try {
    const { port } = new URL(hub.url);
    // A name made to point here (DNS rebinding) and each header a proxy adds.
    for (const headers of [{ host: `attacker.example:${port}` }, { 'x-forwarded-for': '203.0.113.9' }, { forwarded: 'for=203.0.113.9' }, { 'x-real-ip': '203.0.113.9' }]) {
      const answer = await get(hub.url, headers);
      assert.equal(answer.status, 403, JSON.stringify(headers));
      assert.equal(JSON.parse(answer.body).error.code, 40300);
    }
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`]) assert.equal((await get(hub.url, { host })).status, 200, host);
    // A WebSocket is told why over HTTP, as the edge host tells it, rather than reset.
    const socket = new WebSocket(`${hub.url.replace('http', 'ws')}/?clientId=x`, { headers: { 'x-forwarded-for': '203.0.113.9' } });
    const refused = await new Promise((resolve, reject) => {
      socket.once('open', () => reject(new Error('opened')));
      socket.once('unexpected-response', (req, res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode, body }, req.destroy()));
      });
    });
    assert.deepEqual([refused.status, JSON.parse(refused.body).error.code], [403, 40300]);
    // A tunnel named by its origin: what it passes on is served, other names are not.
    assert.equal((await get(tunnelled.url, { host: 'space-8080.example.dev', 'x-forwarded-for': '203.0.113.9' })).status, 200);
    assert.equal((await get(tunnelled.url, { host: 'attacker.example' })).status, 403);
    const page = { host: 'space-8080.example.dev', origin: 'https://space-8080.example.dev', 'x-forwarded-for': '203.0.113.9' };
    assert.equal((await get(tunnelled.url, page)).status, 200, 'a page of the tunnel');
  } finally {
    await hub.close();
    await tunnelled.close();
  }
});

test('with keys configured, connections must present one', async () => {
  await withHub({ keys: 'app.k1:secret' }, async ({ connect }) => {
    const refused = await connect('key=app.k1:wrong&clientId=a');
    assert.deepEqual([refused.received[0].action, refused.received[0].error.code], [9, 40101]);
    await refused.waitClosed();
    const admitted = await connect('key=app.k1:secret&clientId=a');
    assert.equal(admitted.received[0].action, 4);
  });
});

function run(env, args = []) {
  const child = spawn(process.execPath, ['js/hub/node.js', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = { text: '' };
  child.stdout.on('data', (d) => (output.text += d));
  child.stderr.on('data', (d) => (output.text += d));
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
  return { child, output, exited };
}

test('the program refuses a non-loopback bind without keys, before binding', async () => {
  // "," and " , " name no key: refused as such, whatever the address, rather than taken for
  // development mode.
  for (const [keys, why] of [
    ['', /refusing to listen on 0\.0\.0\.0 without keys/],
    [',', /the keys given name no key/],
    [' , ', /the keys given name no key/],
  ]) {
    const { child, output, exited } = run({ HOST: '0.0.0.0', PORT: '0', ROLLCALL_KEYS: keys });
    // A hub that did not refuse would listen on every interface: it is not left running.
    const late = setTimeout(() => child.kill('SIGKILL'), 10_000);
    const { code } = await exited;
    clearTimeout(late);
    assert.equal(code, 1, `ROLLCALL_KEYS=${JSON.stringify(keys)}`);
    assert.match(output.text, why);
  }
});

test('the program refuses settings it cannot read, naming them, rather than run on defaults', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rollcall-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({ hub: { remainPresentFro: 3000 } }));
  const files = (name, content) => {
    writeFileSync(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
    return join(dir, name);
  };
  const cases = [
    [{ ROLLCALL_CONFIG: config }, /unknown field `remainPresentFro`/],
    // Each of these would have run the hub with no keys: development mode.
    [{ ROLLCALL_CONFIG: files('top.json', { Keys: 'app.k:s' }) }, /unknown setting "Keys"/],
    [{ ROLLCALL_CONFIG: files('nested.json', { hub: { keys: 'app.k:s' } }) }, /keys go in the keys option/],
    // A misspelt capability would have left the key every right.
    [{ ROLLCALL_CONFIG: files('cap.json', { keys: [{ key: 'app.k:s', capabilty: { '*': ['subscribe'] } }] }) }, /keys\[0\]: unknown field `capabilty`/],
    // A key given as a string in the list: said without the secret.
    [{ ROLLCALL_CONFIG: files('plain.json', { keys: ['app.k:Sup3rS3cret'] }) }, /keys\[0\]: an entry is \{ "key": "appId\.keyId:secret", "capability" \}, not a string(?![\s\S]*Sup3rS3cret)/],
    // A file that is not JSON: where, without the text around it.
    [{ ROLLCALL_CONFIG: files('broken.json', '{ "keys": [{ "key": "app.k:Sup3rS3cret" }, ] }') }, /ROLLCALL_CONFIG .* is not JSON(?![\s\S]*Sup3rS3cret)/],
    [{ ROLLCALL_CONFIG: files('size.json', { hub: { maxMessageSize: 1 << 20 } }) }, /maxMessageSize is at most 262144/],
    // Keys that name none: development mode for whoever reaches the hub, so refused.
    [{ ROLLCALL_KEYS: ',' }, /the keys given name no key/],
    [{ ROLLCALL_CONFIG: files('none.json', { keys: [] }) }, /the keys given name no key/],
    [{ ROLLCALL_MAX_BUFFERED_BYTES: '8MB' }, /ROLLCALL_MAX_BUFFERED_BYTES must be a whole number, not "8MB"/],
    [{ ROLLCALL_MAX_BUFFERED_TOTAL_BYTES: '1GB' }, /ROLLCALL_MAX_BUFFERED_TOTAL_BYTES must be a whole number, not "1GB"/],
    [{ ROLLCALL_CONFIG: files('total.json', { maxBufferedTotalBytes: -1 }) }, /ROLLCALL_MAX_BUFFERED_TOTAL_BYTES must be a whole number/],
    [{ PORT: 'http' }, /PORT must be a whole number/],
    [{}, /Unknown option '--prot'/, ['--prot', '9000']],
    [{}, /--port must be a whole number, not "x"/, ['--port', 'x']],
  ];
  for (const [env, why, args] of cases) {
    const { child, output, exited } = run({ HOST: '127.0.0.1', PORT: '0', ROLLCALL_KEYS: '', ...env }, args);
    t.after(() => child.kill('SIGKILL'));
    const late = new Promise((resolve) => setTimeout(() => resolve({ code: 'still running after 10 s' }), 10000).unref());
    const { code } = await Promise.race([exited, late]);
    assert.equal(code, 1, JSON.stringify(env));
    assert.match(output.text, why);
  }
  for (const [options, why] of [
    // A misspelt setting: the settings one gives, not where in the JSON the host wrote.
    [{ hub: { remainPresentFr: 1 } }, new RegExp(`^unknown field \`remainPresentFr\`, expected one of ${['serverId', 'maxMessageSize', 'connectionStateTtl', 'remainPresentFor', 'heartbeatInterval', 'historyTtl', 'historyLimit', 'maxHistoryBytes', 'maxReplayBytes', 'maxMembersPerChannel', 'maxMemberBytes', 'maxMemberBytesPerClient', 'maxChannelsPerConnection', 'maxConnections', 'maxConnectionsPerClient', 'maxInboundRate'].map((s) => `\`${s}\``).join(', ')}$`)],
    // A value of the wrong type: the setting named.
    [{ hub: { historyTtl: 5, remainPresentFor: 'x' } }, /^remainPresentFor: invalid type: string "x", expected u64$/],
    [{ hub: { persistence: true } }, /edge host/],
    [{ batch: 'x' }, /batch must be a whole number/],
  ]) {
    const started = await startHub({ port: 0, ...options }).catch((error) => error);
    if (!(started instanceof Error)) await started.close();
    assert.match(String(started?.message), why);
  }
});

test('the program prints its URL, serves, and stops cleanly on SIGTERM', async (t) => {
  // The port from the command line, over PORT (as `npm start -- --port 0`).
  // ROLLCALL_KEY (an app server's setting) is not the hub's: it says so, as it runs without keys.
  const { child, output, exited } = run({ HOST: '127.0.0.1', PORT: 'not read', ROLLCALL_KEYS: '', ROLLCALL_KEY: 'app.k:s' }, ['--port', '0']);
  // Stopped however the test ends, so that a failure does not leave the program running.
  t.after(() => child.kill('SIGKILL'));
  const url = await waitFor(() => output.text.match(/listening on (http:\/\/\S+)/)?.[1], { ms: 10000 });
  // The mode is the next line, which may arrive in a later chunk of output.
  await waitFor(() => /development mode/.test(output.text), { ms: 10000 });
  await waitFor(() => /ROLLCALL_KEY set, but the hub reads ROLLCALL_CONFIG, ROLLCALL_KEYS/.test(output.text), { ms: 10000, what: 'the unread setting named' });
  const client = await RawClient.connect(url, 'clientId=a');
  await client.next((m) => m.action === 4);
  child.kill('SIGTERM');
  const { code } = await exited;
  assert.equal(code, 0);
  await client.waitClosed();
  // Told that the hub goes away, with a closing handshake rather than a cut.
  assert.equal(client.closeCode, 1001);
});

test('close() closes each socket with 1001; a hub that cannot listen frees what it made', async () => {
  const hub = await startHub({ port: 0 });
  const url = hub.url.replace('http', 'ws');
  // A client that does not answer the closing handshake does not hold close() up for long,
  // nor does one that reconnects as soon as it is told (as rollcall's and Ably's do): it finds
  // no hub, rather than slip in while close() waits and hold it up until it gives up.
  let silent;
  const eager = new Realtime({ clientId: 'eager', url, disconnectedRetryTimeout: 100 });
  try {
    const client = await RawClient.connect(hub.url, 'clientId=a');
    await client.next((m) => m.action === 4);
    silent = new WebSocket(`${url}/?clientId=b`);
    await new Promise((resolve, reject) => {
      silent.once('open', resolve);
      silent.once('error', reject);
    });
    silent._socket.pause();
    await eager.connection.whenState('connected');
    let closed = false;
    hub.close().then(() => (closed = true));
    await waitFor(() => closed, { ms: 5000, what: 'close() done, not held up by a client that came back' });
    await client.waitClosed();
    assert.equal(client.closeCode, 1001);
    assert.notEqual(eager.connection.state, 'connected');
  } finally {
    // However the test ends, nothing of it holds the process (nor a hub waiting on them).
    eager.close();
    silent?.terminate();
    await hub.close();
  }

  // The port in use: the hub made for it is freed as startHub fails.
  const other = await startHub({ port: 0 });
  let freed = false;
  const instrument = (made) => {
    const free = made.free.bind(made);
    made.free = () => {
      freed = true;
      free();
    };
    return made;
  };
  await assert.rejects(startHub({ port: other.port, instrument }), { code: 'EADDRINUSE' });
  await other.close();
  assert.ok(freed, 'the hub of a failed listen is freed');
});

test('a refused upgrade reset by its peer does not take the program down, and leaves no socket open', async (t) => {
  // With keys: an upgrade anywhere but / is refused (404) before any credential is asked for,
  // so anyone can send one. In development mode a page from another site is refused (403).
  for (const [env, headers] of [
    [{ ROLLCALL_KEYS: 'app.k:s' }, 'GET /elsewhere HTTP/1.1\r\nHost: localhost\r\n'],
    [{ ROLLCALL_KEYS: '' }, 'GET / HTTP/1.1\r\nHost: localhost\r\nOrigin: https://elsewhere.example\r\n'],
  ]) {
    const { child, output, exited } = run({ HOST: '127.0.0.1', PORT: '0', ...env });
    t.after(() => child.kill('SIGKILL'));
    const port = Number(await waitFor(() => output.text.match(/listening on http:\/\/\S+:(\d+)/)?.[1], { ms: 10000 }));
    const sockets = () => readdirSync(`/proc/${child.pid}/fd`).length;
    const before = sockets();
    const upgrade = `${headers}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
    const once = (polite) =>
      new Promise((resolve) => {
        const socket = net.connect(port, '127.0.0.1', () => socket.write(upgrade));
        socket.on('error', (error) => resolve(String(error)));
        socket.once('data', (answer) => {
          if (polite) socket.end();
          else socket.resetAndDestroy();
          resolve(String(answer).split('\r\n')[0]);
        });
      });
    // Reset as the answer arrives, as a peer that gave up does: the write or the read that
    // follows fails on the hub's side.
    for (let i = 0; i < 20; i++) assert.match(await once(false), /^HTTP\/1\.1 40[34] /);
    for (let i = 0; i < 20; i++) await once(true);
    // Still serving: a request made after the resets is answered.
    const answered = fetch(`http://127.0.0.1:${port}/time`).then((r) => `answered ${r.status}`, (e) => `not answered: ${e.message}`);
    assert.equal(await Promise.race([exited.then(({ code }) => `exited ${code}: ${output.text}`), answered]), 'answered 200');
    await waitFor(() => sockets() <= before, { what: `the refused sockets closed (${sockets()} open, ${before} before)` });
    child.kill('SIGTERM');
    assert.equal((await exited).code, 0);
  }
});

test('many clients attaching a big channel in one turn do not hold all their SYNCs in the Wasm memory at once', async () => {
  const hub = await startHub({ port: 0 });
  try {
    const grown = await attachBurst(hub.url, async () => hub.stats().wasmMemoryBytes);
    // 60 SYNCs of 2 MB held at once would be 120 MB; drained every 4 MB, a few SYNCs' worth.
    assert.ok(grown < 40 * 1024 * 1024, `the Wasm memory grew ${(grown / 1048576).toFixed(1)} MB`);
  } finally {
    await hub.close();
  }
});

test('a frame beyond maxFrameSize is refused unread: a million empty items cost the hub no memory', async () => {
  const hub = await startHub({ port: 0 });
  try {
    const client = await RawClient.connect(hub.url, 'clientId=mallory&v=6');
    await client.attach('room');
    // { action: 14, channel: "room", msgSerial: 0, presence: [{ action: 2, data: [nil × 1 040 000] }] }
    // in msgpack: under the 1 MiB a host reads, four times the hub's maxFrameSize, and a hundred
    // times its size once decoded.
    const str = (s) => Buffer.concat([Buffer.from([0xa0 | s.length]), Buffer.from(s)]);
    const count = Buffer.alloc(5);
    count.writeUInt8(0xdd, 0);
    count.writeUInt32BE(1_040_000, 1);
    const frame = Buffer.concat([
      Buffer.from([0x84]), str('action'), Buffer.from([14]), str('channel'), str('room'), str('msgSerial'), Buffer.from([0]),
      str('presence'), Buffer.from([0x91, 0x82]), str('action'), Buffer.from([2]), str('data'), count, Buffer.alloc(1_040_000, 0xc0),
    ]);
    assert.ok(frame.length < 1 << 20, `${frame.length} bytes`);
    const before = hub.stats().wasmMemoryBytes;
    const from = client.received.length;
    client.ws.send(frame);
    const nack = await client.next((m) => m.action === 2, { from });
    assert.deepEqual([nack.msgSerial, nack.error.code, nack.error.statusCode], [0, 40009, 400]);
    assert.match(nack.error.message, /exceeds maxFrameSize/);
    const grown = hub.stats().wasmMemoryBytes - before;
    assert.ok(grown < 8 * 1024 * 1024, `the Wasm memory grew ${(grown / 1048576).toFixed(1)} MB`);
    // The connection carries on.
    client.send({ action: 14, channel: 'room', msgSerial: 1, presence: [{ action: 2, data: 'here' }] });
    const ack = await client.next((m) => m.action === 1, { from });
    assert.equal(ack.msgSerial, 1);
    client.ws.close();
    // What is read to answer it is read without holding the rest: an action that is a
    // million-item array is skipped as it is read. (Not a message: the connection fails.)
    const other = await RawClient.connect(hub.url, 'clientId=mallory&v=6');
    const array = Buffer.alloc(5);
    array.writeUInt8(0xdd, 0);
    array.writeUInt32BE(1_040_000, 1);
    const junk = Buffer.concat([Buffer.from([0x81]), str('action'), array, Buffer.alloc(1_040_000, 0xc0)]);
    const at = hub.stats().wasmMemoryBytes;
    other.ws.send(junk);
    const failed = await other.next((m) => m.action === 9);
    assert.equal(failed.error.code, 40009);
    const more = hub.stats().wasmMemoryBytes - at;
    assert.ok(more < 8 * 1024 * 1024, `the Wasm memory grew ${(more / 1048576).toFixed(1)} MB`);
  } finally {
    await hub.close();
  }
});

test('a TokenRequest body over 64 KiB is refused (413, 40009) and not read further', async () => {
  const hub = await startHub({ port: 0 });
  try {
    const post = (body) => fetch(`${hub.url}/keys/app.k/requestToken`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const big = await post('x'.repeat(70 * 1024));
    assert.equal(big.status, 413);
    assert.equal((await big.json()).error.code, 40009);
    // One that fits is read, and answered by the hub: not JSON, 40000.
    const small = await post('not json');
    assert.deepEqual([small.status, (await small.json()).error.code], [400, 40000]);
  } finally {
    await hub.close();
  }
});

test("after the host's clock steps back, the hub's time meets it again rather than staying ahead", async () => {
  // In a process of its own: the clock is the process's. Date.now is stepped back 15 minutes,
  // then 31 minutes pass; the hub's time (GET /time) must have met the clock by then, at half
  // its pace. Kept 15 minutes ahead, it would refuse every token with less than that to run.
  const script = `
    // The clock moves only when the test moves it.
    const base = Date.now();
    let offset = 0;
    Date.now = () => base + offset;
    const { startHub } = await import(${JSON.stringify(new URL('../../js/hub/node.js', import.meta.url).href)});
    const hub = await startHub({ port: 0 });
    const time = async () => (await (await fetch(hub.url + '/time')).json())[0];
    const ahead = [];
    ahead.push((await time()) - Date.now());
    offset = -15 * 60_000;
    ahead.push((await time()) - Date.now());
    // A busy hub, asked every millisecond: its time goes on at half pace, not not at all.
    const from = await time();
    for (let i = 0; i < 100; i++) {
      offset += 1;
      await time();
    }
    ahead.push((await time()) - from);
    offset += 31 * 60_000;
    ahead.push((await time()) - Date.now());
    await hub.close();
    console.log(JSON.stringify(ahead));
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const code = await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(code, 0);
  const [before, stepped, busy, later] = JSON.parse(out);
  assert.ok(Math.abs(before) < 1000, `in step at first: ${before} ms`);
  // Just after the step the hub's time does not go back with the clock...
  assert.ok(stepped > 14 * 60_000, `held ahead after the step: ${stepped} ms`);
  assert.equal(busy, 50, `100 ms of the clock in 1 ms steps: ${busy} ms of the hub's`);
  // ...and has met it again once twice the step has passed.
  assert.ok(Math.abs(later) < 1000, `in step again: ${later} ms ahead`);
});

test('transport ids stay in the u32 the binding takes, and wrap past those still open', () => {
  assert.deepEqual(transportId(1, new Set()), [1, 2]);
  // The last one, then round to 1, skipping ids of sockets open since the last round.
  assert.deepEqual(transportId(0xffffffff, new Set()), [0xffffffff, 1]);
  const open = new Map([[1, {}], [2, {}], [0xffffffff, {}]]);
  assert.deepEqual(transportId(0xffffffff, open), [3, 4]);
  // A next past the range (as a woken object computes it from the highest id it holds).
  assert.deepEqual(transportId(2 ** 32, new Set([1])), [2, 3]);
});

test('a client that pipelines requests for static files without reading the answers is held back, and closed past 16 waiting', async () => {
  // Answered one by one as it drains: not a file read started (and held) for every request sent.
  const { child, output, exited } = run({ PORT: '0' });
  try {
    await waitFor(() => /listening on http:\/\/[^:]+:(\d+)/.test(output.text), { ms: 20_000, what: 'the hub listening' });
    const port = Number(/listening on http:\/\/[^:]+:(\d+)/.exec(output.text)[1]);
    const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))[1]) * 1024;
    const path = '/rollcall/pkg/client/rollcall_client_bg.wasm';
    const size = (await fetch(`http://127.0.0.1:${port}${path}`).then((r) => r.arrayBuffer())).byteLength;
    /** Writes `count` requests at once and reads nothing for a while; what it then reads. */
    const pipeline = async (count) => {
      const before = rss();
      const socket = net.connect(port, '127.0.0.1');
      let received = 0;
      let closed = false;
      socket.on('data', (chunk) => (received += chunk.length));
      socket.on('close', () => (closed = true));
      socket.pause();
      socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost:${port}\r\n\r\n`.repeat(count));
      // Meanwhile a WebSocket connects, and the hub answers it.
      const ws = new WebSocket(`ws://127.0.0.1:${port}/?v=6&format=json&clientId=probe`);
      const first = await new Promise((resolve, reject) => {
        ws.once('message', (data) => resolve(JSON.parse(data)));
        ws.once('error', reject);
      });
      assert.equal(first.action, 4, 'CONNECTED');
      ws.close();
      const grew = rss() - before;
      socket.resume();
      await waitFor(() => closed || received >= count * size, { ms: 60_000, what: 'every answer read, or the socket closed' });
      socket.destroy();
      return { grew, received, closed };
    };
    // Within the limit, each is answered as the socket drains.
    const within = await pipeline(16);
    assert.ok(within.received >= 16 * size, `${within.received} bytes of ${16 * size}`);
    // Past it, the socket is closed; all of them held at once would be 2 000 answers (146 MB).
    const past = await pipeline(2_000);
    assert.ok(past.closed && past.received < 2_000 * size, `${past.received} bytes read`);
    assert.ok(past.grew < (2_000 * size) / 3, `the hub grew by ${(past.grew / 1e6).toFixed(1)} MB`);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
});

test('static files: every spelling of one file is kept once, and a file too large is not read', async (t) => {
  // In the package's build folder (not tracked), as files a developer leaves there would be.
  const dir = join(import.meta.dirname, '..', '..', 'pkg', 'client');
  const loop = join(dir, `loop-${process.pid}`);
  const large = join(dir, `large-${process.pid}.bin`);
  symlinkSync('.', loop);
  writeFileSync(large, '');
  truncateSync(large, 17 * 1024 * 1024);
  t.after(() => rmSync(loop, { force: true }) ?? rmSync(large, { force: true }));
  const hub = await startHub({ port: 0 });
  try {
    const link = `loop-${process.pid}`;
    const get = (path) => fetch(`${hub.url}/rollcall/pkg/client/${path}`);
    assert.equal((await get('rollcall_client_bg.wasm')).status, 200);
    const kept = staticKept().files;
    for (let depth = 1; depth <= 20; depth++) {
      const answer = await get(`${`${link}/`.repeat(depth)}rollcall_client_bg.wasm`);
      assert.equal(answer.status, 200);
      await answer.arrayBuffer();
    }
    assert.equal(staticKept().files, kept, 'one file, kept once');
    assert.equal((await get(`large-${process.pid}.bin`)).status, 404);
  } finally {
    await hub.close();
  }
});
