// Faults with real processes on the Node host: a client frozen (SIGSTOP), a client killed
// (SIGKILL), the hub itself killed and restarted, and a reader too slow to keep up.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { WebSocket } from 'ws';

import { Realtime } from '../../js/node.js';
import { freePort, silentProxy, spyProxy, startHub, waitFor } from './helpers.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const member = fileURLToPath(new URL('./fixtures/member.mjs', import.meta.url));

/** `startHub`'s `instrument`: hubs that trap as a bug in their Wasm would, on a call that
 * `poisoned(name, args)` picks, and on every call after that (a hub that trapped stays
 * unusable). */
function trapping(poisoned) {
  return (made) => {
    let broken = false;
    return new Proxy(made, {
      get: (target, name) => {
        const value = target[name];
        if (typeof value !== 'function') return value;
        return (...args) => {
          if (broken || poisoned(name, args)) {
            broken = true;
            throw new WebAssembly.RuntimeError('unreachable');
          }
          return value.apply(target, args);
        };
      },
    });
  };
}

function spawnMember(url, clientId, channel, remainPresentFor, heartbeatInterval) {
  const child = spawn(process.execPath, [member, url, clientId, channel, String(remainPresentFor), String(heartbeatInterval)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.out = '';
  child.stdout.on('data', (d) => (child.out += d));
  child.stderr.on('data', (d) => (child.out += d));
  child.exited = new Promise((r) => child.on('exit', r));
  return child;
}

async function watch(url, channel) {
  const watcher = new Realtime({ clientId: `watcher-${channel}`, url, disconnectedRetryTimeout: 300 });
  const leaves = [];
  await watcher.channels.get(channel).presence.subscribe('leave', (m) => leaves.push({ at: Date.now(), m }));
  return { watcher, leaves };
}

test('a frozen client (SIGSTOP) is noticed by heartbeats, then leaves after remainPresentFor', async () => {
  const hub = await startHub({ port: 0 });
  const url = `ws://127.0.0.1:${hub.port}`;
  const { watcher, leaves } = await watch(url, 'frozen');
  const child = spawnMember(url, 'sleeper', 'frozen', 1000, 1000);
  try {
    await waitFor(() => child.out.includes('entered'), { ms: 10000 });
    child.kill('SIGSTOP');
    // From just before its enter: the last the hub could have heard of it is no earlier.
    const enteringAt = Number(child.out.match(/entering (\d+)/)[1]);
    await waitFor(() => leaves.length === 1, { ms: 10000, what: 'the leave' });
    const took = leaves[0].at - enteringAt;
    // Detection within heartbeatInterval + margin (1000 + 1000), then 1000 of grace.
    assert.ok(took >= 2900, `left ${took} ms after freezing: not before detection and grace`);
    assert.ok(took < 9000, `left ${took} ms after freezing: noticed by heartbeats, well before 15 s`);
    assert.equal(leaves[0].m.clientId, 'sleeper');
    assert.equal(leaves[0].m.extras?.reason, 'timeout');
  } finally {
    child.kill('SIGKILL');
    await child.exited;
    watcher.close();
    await hub.close();
  }
});

test('a killed client (SIGKILL) leaves remainPresentFor after its socket dies', async () => {
  const hub = await startHub({ port: 0 });
  const url = `ws://127.0.0.1:${hub.port}`;
  const { watcher, leaves } = await watch(url, 'killed');
  const child = spawnMember(url, 'victim', 'killed', 1500, 15000);
  try {
    await waitFor(() => child.out.includes('entered'), { ms: 10000 });
    const killedAt = Date.now();
    child.kill('SIGKILL');
    await child.exited;
    await waitFor(() => leaves.length === 1, { ms: 10000, what: 'the leave' });
    const took = leaves[0].at - killedAt;
    // Noticed by the socket's close, not by the 15 s heartbeat deadline.
    assert.ok(took >= 1400 && took < 9000, `left ${took} ms after the kill`);
    assert.equal(leaves[0].m.extras?.reason, 'timeout');
  } finally {
    watcher.close();
    await hub.close();
  }
});

function spawnHub(port) {
  const child = spawn(process.execPath, ['js/hub/node.js'], {
    cwd: root,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', ROLLCALL_KEYS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.out = '';
  child.stdout.on('data', (d) => (child.out += d));
  child.stderr.on('data', (d) => (child.out += d));
  child.exited = new Promise((r) => child.on('exit', r));
  return child;
}

test('the hub killed and restarted: clients reconnect with backoff, re-enter, and every member is back', async () => {
  const port = await freePort();
  const url = `ws://127.0.0.1:${port}`;
  let hub = spawnHub(port);
  const members = [];
  let watcher;
  try {
    await waitFor(() => hub.out.includes('listening'), { ms: 10000 });
    members.push(spawnMember(url, 'ann', 'restart', 15000, 15000), spawnMember(url, 'ben', 'restart', 15000, 15000));
    await waitFor(() => members.every((m) => m.out.includes('entered')), { ms: 10000 });
    watcher = new Realtime({ clientId: 'watcher', url, disconnectedRetryTimeout: 300 });
    const presence = watcher.channels.get('restart').presence;
    await presence.enter({ role: 'watching' });
    const view = async () => (await presence.get()).map((m) => `${m.clientId}:${JSON.stringify(m.data)}`).sort();
    await waitFor(async () => (await view()).length === 3);
    const before = (await view()).map((v) => v.replace(/"pid":\d+/, 'pid'));

    hub.kill('SIGKILL');
    await hub.exited;
    await waitFor(() => watcher.connection.state !== 'connected');
    hub = spawnHub(port);
    await waitFor(() => hub.out.includes('listening'), { ms: 10000 });
    await waitFor(() => watcher.connection.state === 'connected', { ms: 15000, what: 'reconnect' });
    await waitFor(async () => (await view()).length === 3, { ms: 15000, what: 'every member back' });
    const after = (await view()).map((v) => v.replace(/"pid":\d+/, 'pid'));
    assert.deepEqual(after, before);
    const res = await fetch(`http://127.0.0.1:${port}/channels/restart/presence`);
    assert.deepEqual((await res.json()).map((m) => m.clientId).sort(), ['ann', 'ben', 'watcher']);
  } finally {
    watcher?.close();
    for (const m of members) m.kill('SIGKILL');
    await Promise.all(members.map((m) => m.exited));
    hub.kill('SIGKILL');
    await hub.exited;
  }
});

test('a watcher whose socket dies resumes with its view kept, no SYNC: what it missed arrives as events', async () => {
  const hub = await startHub({ port: 0 });
  const url = `ws://127.0.0.1:${hub.port}`;
  const proxy = await spyProxy(hub.port);
  const watcher = new Realtime({ clientId: 'watcher', url: `ws://127.0.0.1:${proxy.port}`, disconnectedRetryTimeout: 300 });
  const alice = new Realtime({ clientId: 'alice', url });
  const bob = new Realtime({ clientId: 'bob', url });
  try {
    const channel = watcher.channels.get('kept');
    const events = [];
    await channel.presence.subscribe((m) => events.push(`${m.action}:${m.clientId}`));
    await channel.presence.enter('watching');
    await alice.channels.get('kept').presence.enter('a');
    await waitFor(() => events.includes('enter:alice'));
    // Bob hears when the hub has noticed that the watcher's socket is gone.
    const lost = [];
    await bob.channels.get('kept').presence.subscribeClients('connectionLost', (c) => lost.push(c.clientId));
    const resumed = [];
    channel.on('attached', (change) => resumed.push(change.resumed));
    const id = watcher.connection.id;
    events.length = 0;
    const [ATTACHED, SYNC] = [11, 16];
    proxy.down.length = 0;
    // Offline until told to connect: what happens meanwhile can only reach it by the replay.
    watcher.connection.simulateDrop();
    await waitFor(() => lost.includes('watcher'), { what: 'the hub noticed the drop' });
    await bob.channels.get('kept').presence.enter('b');
    await alice.channels.get('kept').presence.leave();
    watcher.connect();
    await waitFor(() => resumed.length === 1, { ms: 10000, what: 're-attached' });
    assert.equal(watcher.connection.id, id, 'the connection resumed');
    assert.deepEqual(resumed, [true]);
    assert.ok(proxy.down.includes(ATTACHED), `frames after the resume: ${proxy.down}`);
    assert.ok(!proxy.down.includes(SYNC), `no SYNC after the resume: ${proxy.down}`);
    await waitFor(() => events.length === 2, { what: 'the missed events' });
    assert.deepEqual(events, ['enter:bob', 'leave:alice']);
    const members = (await channel.presence.get()).map((m) => m.clientId).sort();
    assert.deepEqual(members, ['bob', 'watcher']);
  } finally {
    for (const c of [watcher, alice, bob]) c.close();
    await proxy.close();
    await hub.close();
  }
});

test('a reader too slow to keep up is cut off; the others get everything', async () => {
  const lines = [];
  const hub = await startHub({ port: 0, maxBufferedBytes: 512 * 1024, log: (l) => lines.push(l) });
  const url = `ws://127.0.0.1:${hub.port}`;
  const fast = new Realtime({ clientId: 'fast', url });
  const writers = [];
  try {
    const updates = [];
    await fast.channels.get('flood').presence.subscribe('update', () => updates.push(1));
    // A raw client that attaches and then stops reading its socket.
    const slow = new WebSocket(`${url}/?clientId=slow&v=6&format=json`);
    await new Promise((r) => slow.once('open', r));
    slow.send(JSON.stringify({ action: 10, channel: 'flood' }));
    await waitFor(() => hub.stats().liveConnections === 2);
    await new Promise((r) => setTimeout(r, 100));
    slow._socket.pause();
    const fastStates = [];
    fast.connection.on((change) => fastStates.push(change.current));
    const big = 'x'.repeat(32 * 1024);
    for (let w = 0; w < 4; w++) writers.push(new Realtime({ clientId: `writer-${w}`, url }));
    await Promise.all(writers.map((w) => w.channels.get('flood').presence.enter('start')));
    // Rounds of one update per writer, each round acknowledged before the next: a reader that
    // reads keeps up, one that does not falls ever further behind.
    const rounds = 150;
    for (let i = 0; i < rounds; i++) {
      await Promise.all(writers.map((w) => w.channels.get('flood').presence.update(`${i}:${big}`)));
    }
    await waitFor(() => lines.some((l) => l.includes('cutting it off')), { ms: 10000, what: 'the slow reader cut off' });
    await waitFor(() => updates.length === rounds * writers.length, { ms: 20000, what: 'every update delivered to the fast reader' });
    assert.deepEqual(fastStates, [], 'the reader that keeps up was never cut off');
    assert.equal(lines.filter((l) => l.includes('cutting it off')).length, 1, 'only the slow reader');
    assert.equal(hub.stats().liveConnections, 5, 'the writers and the fast reader remain');
    slow.terminate();
  } finally {
    for (const c of [fast, ...writers]) c.close();
    await new Promise((r) => setTimeout(r, 100));
    await hub.close();
  }
});

test('a channel whose SYNC is larger than the unread-bytes limit is attached; a reader that stops reading it is cut off', async () => {
  const lines = [];
  // 1 MiB: the SYNC below is over four times it.
  const hub = await startHub({ port: 0, maxBufferedBytes: 1024 * 1024, log: (l) => lines.push(l) });
  const url = `ws://127.0.0.1:${hub.port}`;
  const cut = () => lines.filter((l) => l.includes('cutting it off'));
  const clients = [];
  try {
    // 19 MB of members, entered by connections that do not hear them.
    const big = 'x'.repeat(60_000);
    for (let i = 0; i < 20; i++) {
      const writer = new Realtime({ key: 'app.k:s', url });
      clients.push(writer);
      const channel = writer.channels.get('crowded', { modes: ['PRESENCE'] });
      await Promise.all(Array.from({ length: 16 }, (_, j) => channel.presence.enterClient(`u${i}-${j}`, big)));
    }
    const reader = new Realtime({ clientId: 'reader', url });
    clients.push(reader);
    const states = [];
    reader.connection.on((change) => states.push(change.current));
    const late = new Promise((_, reject) => setTimeout(() => reject(new Error(`no whole SYNC in 20 s (${states.join(', ')})`)), 20_000).unref());
    assert.equal((await Promise.race([reader.channels.get('crowded').presence.get(), late])).length, 320);
    assert.deepEqual(states, ['connecting', 'connected'], 'never cut off');
    assert.deepEqual(cut(), []);
    // One that attaches and never reads what it is sent is cut off once it makes no progress.
    const deaf = new WebSocket(`${url}/?clientId=deaf&v=6&format=json`);
    await new Promise((r) => deaf.once('open', r));
    deaf._socket.pause();
    deaf.send(JSON.stringify({ action: 10, channel: 'crowded' }));
    await waitFor(() => cut().length === 1, { ms: 15000, what: 'the reader that stopped reading cut off' });
    assert.equal(reader.connection.state, 'connected');
    deaf.terminate();
  } finally {
    for (const c of clients) c.close();
    await hub.close();
  }
});

test('readers each under the unread-bytes limit but over the hub-wide one together are cut off, those with most unread first; readers that read are not', async () => {
  const lines = [];
  // Each deaf reader below leaves a few MiB unread, under maxBufferedBytes (8 MiB); twenty of
  // them leave far more than the hub-wide 16 MiB.
  const hub = await startHub({ port: 0, maxBufferedTotalBytes: 16 * 1024 * 1024, log: (l) => lines.push(l) });
  const url = `ws://127.0.0.1:${hub.port}`;
  const cut = () => lines.filter((l) => l.includes('cutting it off'));
  const clients = [];
  const sockets = [];
  try {
    // About 1 MB of members: each ATTACH is answered with a SYNC of them, built for its reader.
    const writer = new Realtime({ key: 'app.k:s', url });
    clients.push(writer);
    const channel = writer.channels.get('crowded', { modes: ['PRESENCE'] });
    const big = 'x'.repeat(60_000);
    await Promise.all(Array.from({ length: 16 }, (_, j) => channel.presence.enterClient(`u${j}`, big)));
    const watcher = new Realtime({ clientId: 'watcher', url });
    clients.push(watcher);
    const states = [];
    watcher.connection.on((change) => states.push(change.current));
    assert.equal((await watcher.channels.get('crowded').presence.get()).length, 16);
    const open = async (clientId) => {
      const ws = new WebSocket(`${url}/?clientId=${clientId}&v=6&format=json`);
      sockets.push(ws);
      await new Promise((r) => ws.once('open', r));
      return ws;
    };
    const cycles = 6;
    const cycle = (ws) => {
      for (let c = 0; c < cycles; c++) {
        ws.send(JSON.stringify({ action: 10, channel: 'crowded' }));
        ws.send(JSON.stringify({ action: 12, channel: 'crowded' }));
      }
    };
    // A reader that asks for as much as the deaf ones, and reads it.
    const reading = await open('reading');
    let attached = 0;
    reading.on('message', (data) => (attached += JSON.parse(data).action === 11 ? 1 : 0));
    cycle(reading);
    for (let i = 0; i < 20; i++) {
      const deaf = await open(`deaf${i}`);
      deaf._socket.pause();
      cycle(deaf);
    }
    await waitFor(() => cut().length > 0, { ms: 15000, what: 'deaf readers cut off' });
    await waitFor(() => attached === cycles, { ms: 15000, what: 'every SYNC the reading reader asked for' });
    assert.ok(cut().every((l) => l.includes("while the hub's readers leave over 16777216 unread")), cut().join('\n'));
    assert.ok(cut().length < 20, 'only as many as bring the unread bytes under the limit');
    assert.equal(reading.readyState, WebSocket.OPEN);
    assert.deepEqual(states, ['connecting', 'connected'], 'the watcher was never cut off');
  } finally {
    for (const ws of sockets) ws.terminate();
    for (const c of clients) c.close();
    await hub.close();
  }
});

test('a hub that fails (a trap in its Wasm) is replaced: clients come back and enter again; a frame that fails it twice is refused', async (t) => {
  // Hubs that trap as a bug in their Wasm would: on a frame that holds `trap-now`, and on every
  // call after that (a hub that trapped stays unusable).
  const instrument = trapping((name, args) => name === 'frame' && Buffer.from(args[2]).includes('trap-now'));
  const lines = [];
  const hub = await startHub({ port: 0, log: (l) => lines.push(l), instrument });
  const url = `ws://127.0.0.1:${hub.port}`;
  const clients = [];
  const client = (clientId) => {
    const c = new Realtime({ clientId, url, disconnectedRetryTimeout: 300 });
    clients.push(c);
    return c;
  };
  try {
    const first = hub.hub;
    const watcher = client('watcher');
    const room = watcher.channels.get('room');
    await room.presence.subscribe(() => {});
    await client('alice').channels.get('room').presence.enter('here');
    const mallory = client('mallory');
    await mallory.channels.get('room').presence.enter('fine');
    const refused = mallory.channels.get('room').presence.update('trap-now').catch((error) => error);

    // It fails the hub. Mallory sends it again on her new connection (the same frame but for
    // its msgSerial, which starts again), twice, failing two more hubs; the third time the
    // same frame comes, it is refused, to her alone.
    const error = await refused;
    assert.equal(error?.code, 50000, `${error?.message}`);
    await waitFor(() => mallory.connection.state === 'failed', { ms: 20000, what: 'mallory failed' });
    assert.equal(lines.filter((l) => l.includes('the hub failed')).length, 3, lines.join('\n'));
    assert.notEqual(hub.hub, first, 'a fresh hub took over');

    // Everyone else is back, present as before, on the hub that runs now.
    const present = async () => (await room.presence.get().catch(() => [])).map((m) => m.clientId).sort();
    await waitFor(async () => watcher.connection.state === 'connected' && (await present()).join() === 'alice', {
      ms: 20000,
      what: 'alice present again',
    });
    await client('bob').channels.get('room').presence.enter('new');
    await waitFor(async () => (await present()).join() === 'alice,bob', { ms: 10000, what: 'bob heard' });
    assert.equal(hub.stats().members, 2);
  } finally {
    for (const c of clients) c.close();
    await hub.close();
  }
});

test('a process whose hubs keep failing gives up after a few, for its supervisor to start it afresh', async (t) => {
  // Each failed hub's instance stays in memory: replacing them without end would leak.
  const fixture = fileURLToPath(new URL('./fixtures/failing-hub.mjs', import.meta.url));
  const child = spawn(process.execPath, [fixture], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise((r) => child.on('exit', (code) => r(code)));
  const port = await waitFor(() => out.match(/port (\d+)/)?.[1], { ms: 10000, what: 'the port' });
  let code = null;
  exited.then((c) => (code = c));
  for (let n = 0; n < 20 && code === null; n++) {
    // A new connection each time: a failure closes every socket.
    const ws = new WebSocket(`ws://127.0.0.1:${port}/?clientId=c${n}`);
    await new Promise((resolve) => {
      ws.on('open', () => ws.send(JSON.stringify({ action: 10, channel: `trap-${n}` })));
      ws.on('close', resolve);
      ws.on('error', resolve);
    });
  }
  await waitFor(() => code !== null, { ms: 10000, what: 'the process to give up' });
  assert.notEqual(code, 0);
  assert.equal((out.match(/a fresh hub takes over/g) ?? []).length, 8, out);
  assert.match(out, /failed \(unreachable\) 9 times; giving up/);
});

test('a hub that keeps failing ends the process, also when REST reads are what fail it', async () => {
  // An embedded hub whose REST reads trap, as a bug in its Wasm would: past the replacements it
  // allows, the process must end (for its supervisor to start it afresh), not serve on with a
  // hub that fails every call.
  const script = `
    import { startHub } from ${JSON.stringify(`${root}js/hub/node.js`)};
    const instrument = (made) => new Proxy(made, {
      get: (target, name) => name === 'rest'
        ? () => { throw new WebAssembly.RuntimeError('unreachable'); }
        : typeof target[name] === 'function' ? target[name].bind(target) : target[name],
    });
    const hub = await startHub({ port: 0, instrument });
    // Each a request of its own: one that failed the hub twice would be refused before it.
    for (let i = 0; i < 12; i++) await fetch(hub.url + '/time?n=' + i).catch(() => {});
    console.log('still running');
    await hub.close();
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const late = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const code = await new Promise((resolve) => child.on('exit', (c) => resolve(c)));
  clearTimeout(late);
  // Ended by the trap, thrown uncaught (1); not killed for hanging (null).
  assert.equal(code, 1, out);
  assert.match(out, /RuntimeError: unreachable/);
  assert.doesNotMatch(out, /still running/);
});

test('a connection request or a REST read that fails the hub twice is refused from then on, and the hub carries on', async () => {
  // Hubs that trap on one connect query and on one REST path, as bugs in their Wasm would, and
  // are unusable after a trap.
  const instrument = trapping(
    (name, args) => (name === 'open' && args[2].includes('trap-open')) || (name === 'rest' && args[2].includes('trap-rest')),
  );
  const lines = [];
  const hub = await startHub({ port: 0, log: (l) => lines.push(l), instrument });
  const failures = () => lines.filter((l) => l.includes('a fresh hub takes over')).length;
  try {
    const answers = [];
    for (let i = 0; i < 3; i++) {
      const ws = new WebSocket(`ws://127.0.0.1:${hub.port}/?clientId=trap-open`);
      ws.on('message', (data) => answers.push(JSON.parse(data)));
      ws.on('error', () => {});
      await new Promise((resolve) => ws.once('close', resolve));
    }
    assert.equal(failures(), 2, 'two hubs failed, not three');
    assert.deepEqual(answers.map((m) => [m.action, m.error?.code]), [[9, 50000]], 'the third refused, with why');

    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await fetch(`${hub.url}/channels/trap-rest/presence`)).status);
    assert.deepEqual(statuses, [500, 500, 500]);
    assert.equal(failures(), 4, 'two more hubs failed, not three');
    // The hub that runs now serves everyone else.
    assert.equal((await fetch(`${hub.url}/channels/fine/presence`)).status, 200);
    const member = new Realtime({ clientId: 'fine', url: `ws://127.0.0.1:${hub.port}` });
    await member.channels.get('fine').presence.enter();
    member.close();
  } finally {
    await hub.close();
  }
});

test('a step back of the clock holds up neither the hub\'s grace windows nor the client\'s retries', async (t) => {
  const wall = Date.now;
  t.after(() => (Date.now = wall));
  const hub = await startHub({ port: 0 });
  const url = `ws://127.0.0.1:${hub.port}`;
  const watcher = new Realtime({ clientId: 'watcher', url });
  const alice = new Realtime({ clientId: 'alice', url, transportParams: { remainPresentFor: 1000 } });
  t.after(async () => {
    watcher.close();
    alice.close();
    await hub.close();
  });
  const leaves = [];
  await watcher.channels.get('clock').presence.subscribe('leave', (m) => leaves.push(m.clientId));
  await alice.channels.get('clock').presence.enter('here');
  // The host's clock goes back a minute (an NTP correction), for the hub and the client alike.
  Date.now = () => wall() - 60_000;
  // The client's first retry after a drop is at once, not a minute later.
  alice.connection.simulateDrop(0);
  await waitFor(() => alice.connection.state === 'connected', { ms: 5000, what: 'connected again at once' });
  // The hub ends a dropped connection's grace window on time, not a minute late.
  alice.connection.simulateDrop();
  await waitFor(() => leaves.length === 1, { ms: 8000, what: 'the leave after 1 s of grace' });
  assert.deepEqual(leaves, ['alice']);
});

test('a link that dies silently, with the network back at once, is resumed within a short grace window: no one sees a leave', async () => {
  // The hub's own remainPresentFor (3 s; the client asks for none), told to the client in
  // CONNECTED: it notices the silence in time for it, not after realtimeRequestTimeout (10 s).
  const hub = await startHub({ port: 0, hub: { remainPresentFor: 3000, heartbeatInterval: 1000 } });
  const proxy = await silentProxy(hub.port);
  const watcher = new Realtime({ clientId: 'watcher', url: `ws://127.0.0.1:${hub.port}` });
  const phone = new Realtime({ clientId: 'alice', url: `ws://127.0.0.1:${proxy.port}` });
  try {
    const seen = [];
    await watcher.channels.get('room').presence.subscribe((m) => seen.push(m.action));
    await phone.channels.get('room').presence.enter('on the train');
    await waitFor(() => seen.includes('enter'), { what: 'the enter heard' });
    const id = phone.connection.id;
    let dropped = false;
    phone.connection.once('disconnected', () => (dropped = true));
    proxy.vanish();
    await waitFor(() => dropped && phone.connection.state === 'connected', { ms: 15000, what: 'the phone back' });
    assert.equal(phone.connection.id, id, 'resumed');
    // Resumed, its members are the hub's to keep: a leave would have come before, and the
    // channel's history would have it.
    const history = await watcher.channels.get('room').presence.history();
    assert.deepEqual(history.items.map((m) => m.action), ['enter'], 'no leave in the history');
    assert.deepEqual(seen, ['enter'], 'no leave and no enter');
    assert.deepEqual((await watcher.channels.get('room').presence.get()).map((m) => m.clientId), ['alice']);
  } finally {
    phone.close();
    watcher.close();
    await proxy.close();
    await hub.close();
  }
});

test('HTTP requests pipelined on one socket are answered in turn; past 16 waiting, the socket is closed', async () => {
  const net = await import('node:net');
  const hub = await startHub({ port: 0 });
  /** Writes `n` pipelined reads at once; what comes back until the hub closes the socket, or
   * until `n` answers came. */
  const pipeline = (n) =>
    new Promise((resolve, reject) => {
      const socket = net.connect(hub.port, '127.0.0.1');
      let text = '';
      const answers = () => text.split('HTTP/1.1 200').length - 1;
      socket.on('data', (chunk) => {
        text += chunk;
        if (answers() === n) socket.end();
      });
      socket.on('close', () => resolve(answers()));
      socket.on('error', reject);
      socket.write(Array.from({ length: n }, () => 'GET /time HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n').join(''));
    });
  try {
    assert.equal(await pipeline(10), 10);
    const answered = await pipeline(200);
    assert.ok(answered < 200, `${answered} of 200 answered`);
    // The hub still answers others.
    assert.equal((await fetch(`${hub.url}/time`)).status, 200);
  } finally {
    await hub.close();
  }
});
