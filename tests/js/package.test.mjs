// The installed package (npm pack, then npm install of the tarball) running the README's code
// samples against a hub: `import { Realtime } from 'rollcall'` as apps and agents write it.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { waitFor } from './helpers.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
let dir;
let Realtime;
let startHub;
let hub;
const clients = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rollcall-package-'));
  execFileSync('npm', ['pack', '--pack-destination', dir, '--silent'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--silent', `./${tarball}`], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  // An app module, resolved from the app's node_modules through the package's exports.
  writeFileSync(join(dir, 'app.mjs'), "export { Realtime } from 'rollcall';\nexport { startHub } from 'rollcall/hub';\n");
  ({ Realtime, startHub } = await import(pathToFileURL(join(dir, 'app.mjs'))));
  hub = await startHub({ port: 0 });
});

after(async () => {
  for (const c of clients) c.close();
  try {
    await waitFor(() => clients.every((c) => ['closed', 'failed'].includes(c.connection.state)), { what: 'clients closed' });
  } finally {
    await hub?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
});

function client(clientId, extra = {}) {
  const c = new Realtime({ clientId, key: 'app.demo:secret', endpoint: 'localhost', port: hub.port, tls: false, ...extra });
  clients.push(c);
  return c;
}

let room = 0;
const fresh = () => `job-map-new-${++room}`;

test('a user client enters presence with metadata about the device', async () => {
  const name = fresh();
  const user = client('user-1');
  const channel = user.channels.get(name);
  await channel.presence.enter({ device: 'mobile', platform: 'ios' });
  const agent = client('agent-1');
  const members = await agent.channels.get(name).presence.get();
  assert.equal(members.length, 1);
  assert.equal(members[0].clientId, 'user-1');
  assert.deepEqual(members[0].data, { device: 'mobile', platform: 'ios' });
  assert.equal(members[0].action, 'present');
  assert.equal(members[0].connectionId, user.connection.id);
});

test('one user on two devices is two members with one clientId', async () => {
  const name = fresh();
  const desktop = client('user-123');
  const mobile = client('user-123');
  await desktop.channels.get(name).presence.enter({ device: 'desktop' });
  await mobile.channels.get(name).presence.enter({ device: 'mobile' });
  const agent = client('agent');
  const members = await agent.channels.get(name).presence.get();
  const lines = members.map(({ clientId, connectionId, data }) => [clientId, connectionId, data.device]);
  assert.deepEqual(lines.map((l) => l[0]), ['user-123', 'user-123']);
  assert.notEqual(lines[0][1], lines[1][1]);
  assert.deepEqual(lines.map((l) => l[2]).sort(), ['desktop', 'mobile']);
  // When either device leaves, the other remains.
  await desktop.channels.get(name).presence.leave();
  await waitFor(async () => (await agent.channels.get(name).presence.get()).length === 1);
  const [remaining] = await agent.channels.get(name).presence.get();
  assert.equal(remaining.data.device, 'mobile');
});

test('a leave carries its reason to leave subscribers', async () => {
  const name = fresh();
  const agent = client('agent');
  const reasons = [];
  await agent.channels.get(name).presence.subscribe('leave', (presenceMessage) => {
    reasons.push([presenceMessage.clientId, presenceMessage.data?.reason]);
  });
  const user = client('user-2');
  await user.channels.get(name).presence.enter();
  await user.channels.get(name).presence.leave({ reason: 'session-completed', timestamp: Date.now() });
  await waitFor(() => reasons.length === 1);
  assert.deepEqual(reasons, [['user-2', 'session-completed']]);
});

test('subscribe to all events, or to enter or leave only', async () => {
  const name = fresh();
  const watcher = client('watcher');
  const presence = watcher.channels.get(name).presence;
  const all = [];
  const enters = [];
  const leaves = [];
  await presence.subscribe((m) => all.push(m.action));
  await presence.subscribe('enter', (m) => enters.push(m.clientId));
  await presence.subscribe('leave', (m) => leaves.push(m.clientId));
  const user = client('user-3');
  const p = user.channels.get(name).presence;
  await p.enter('here');
  await p.update('typing');
  await p.leave();
  await waitFor(() => all.length === 3);
  assert.deepEqual(all, ['enter', 'update', 'leave']);
  assert.deepEqual(enters, ['user-3']);
  assert.deepEqual(leaves, ['user-3']);
  presence.unsubscribe('enter');
  await p.enter('back');
  await waitFor(() => all.length === 4);
  assert.deepEqual(enters, ['user-3'], 'unsubscribed from enter');
});

test('an agent detects that a user is offline on all devices', async () => {
  const name = fresh();
  const agent = client('agent');
  const channel = agent.channels.get(name);
  const offlineLog = [];
  // As apps write it: get() inside the listener, then look for the user.
  await channel.presence.subscribe(async () => {
    const members = await channel.presence.get();
    if (!members.map((m) => m.clientId).includes('user-123')) offlineLog.push('offline on all devices');
  });
  // The same, as one subscription.
  const changes = [];
  const reasons = [];
  await channel.presence.subscribeClients((change) => {
    changes.push([change.action, change.clientId, change.devices.length]);
    if (change.action === 'offline') reasons.push([change.reason, change.leave?.connectionId]);
  });

  const desktop = client('user-123');
  const mobile = client('user-123', { transportParams: { remainPresentFor: 2000 } });
  await desktop.channels.get(name).presence.enter({ device: 'desktop' });
  await mobile.channels.get(name).presence.enter({ device: 'mobile' });
  await waitFor(async () => (await channel.presence.get()).length === 2);
  await desktop.channels.get(name).presence.leave({ reason: 'closed laptop' });
  await waitFor(async () => (await channel.presence.get()).length === 1);
  assert.equal(offlineLog.length, 0, 'one device left: not offline');
  assert.ok(channel.presence.isOnline('user-123'));
  mobile.connection.simulateDrop();
  await waitFor(() => offlineLog.length > 0, { ms: 6000 });
  assert.ok(!channel.presence.isOnline('user-123'));
  assert.deepEqual(changes, [
    ['online', 'user-123', 1],
    ['connectionLost', 'user-123', 1],
    ['offline', 'user-123', 0],
  ]);
  // Why: the last device was dropped and not back in time.
  assert.deepEqual(reasons, [['timeout', mobile.connection.id]]);
  // A user who leaves on the last device goes offline as `left`, with the leave's data.
  await mobile.connection.whenState('disconnected');
  mobile.connect();
  await waitFor(() => channel.presence.isOnline('user-123'), { what: 're-entered' });
  await mobile.channels.get(name).presence.leave({ reason: 'logged out' });
  await waitFor(() => reasons.length === 2, { what: 'offline again' });
  assert.equal(reasons[1][0], 'left');
  const leaves = [];
  await channel.presence.subscribeClients('offline', (c) => leaves.push(c.leave?.data?.reason));
  await mobile.channels.get(name).presence.enter({ device: 'mobile' });
  await waitFor(() => channel.presence.isOnline('user-123'), { what: 'back' });
  await mobile.channels.get(name).presence.leave({ reason: 'logged out' });
  await waitFor(() => leaves.length === 1, { what: 'offline with the leave' });
  assert.deepEqual(leaves, ['logged out']);
});

test('agent hand-off: with remainPresentFor 30000 a new instance comes online before the old one leaves', async () => {
  const name = fresh();
  const watcher = client('user');
  const changes = [];
  const events = [];
  await watcher.channels.get(name).presence.subscribeClients(['online', 'offline'], (c) => changes.push(c.action));
  await watcher.channels.get(name).presence.subscribe((m) => events.push([m.action, m.connectionId]));
  const first = client('weather-agent', { transportParams: { remainPresentFor: 30000 } });
  await first.channels.get(name).presence.enter({ model: 'gpt-4' });
  const firstId = first.connection.id;
  first.connection.simulateDrop(); // the instance dies without closing
  await waitFor(() => first.connection.state === 'disconnected');
  const second = client('weather-agent', { transportParams: { remainPresentFor: 30000 } });
  await second.channels.get(name).presence.enter({ model: 'gpt-4', resumedFrom: firstId });
  await waitFor(() => events.length === 2);
  const members = await watcher.channels.get(name).presence.get();
  assert.equal(members.length, 2, 'the old instance is still present while the new one runs');
  assert.deepEqual(events.map((e) => e[0]), ['enter', 'enter']);
  assert.deepEqual(changes, ['online'], 'the agent never appeared offline');
  first.close();
});

test('a listener may call get() and leave() from inside its callback', async () => {
  const name = fresh();
  const user = client('user-4');
  const presence = user.channels.get(name).presence;
  const seen = [];
  await presence.subscribe('enter', async (m) => {
    const members = await presence.get();
    seen.push(members.map((x) => x.clientId));
    await presence.leave();
  });
  await presence.enter();
  await waitFor(() => seen.length === 1);
  assert.deepEqual(seen[0], ['user-4']);
  await waitFor(async () => (await presence.get()).length === 0);
});

test('errors are Error objects with Ably codes', async () => {
  const anonymous = client(undefined);
  await assert.rejects(anonymous.channels.get(fresh()).presence.enter(), (e) => e instanceof Error && e.code === 40012 && e.statusCode === 400);
  const user = client('user-5');
  await assert.rejects(user.channels.get(fresh()).presence.leave(), (e) => e instanceof Error && e.code === 90001);
  await assert.rejects(user.channels.get(fresh()).presence.enter(42), (e) => e.code === 40013);
  assert.throws(() => new Realtime({ clientId: '*' }), (e) => e.code === 40012);
  const big = 'x'.repeat(70000);
  await assert.rejects(user.channels.get(fresh()).presence.enter(big), (e) => e.code === 40009);
});

test('presence history pages through the REST read', async () => {
  const name = fresh();
  const user = client('user-6');
  const p = user.channels.get(name).presence;
  await p.enter({ step: 1 });
  await p.update({ step: 2 });
  await p.update({ step: 3 });
  const page = await p.history({ limit: 2 });
  assert.deepEqual(page.items.map((m) => [m.action, m.data.step]), [['update', 3], ['update', 2]]);
  assert.ok(page.hasNext());
  const next = await page.next();
  assert.deepEqual(next.items.map((m) => [m.action, m.data.step]), [['enter', 1]]);
  assert.ok(next.isLast());
});

test("the hub program runs from the installed package, as the README says: node node_modules/rollcall/js/hub/node.js", async () => {
  const { spawn } = await import('node:child_process');
  const program = spawn(process.execPath, [join('node_modules', 'rollcall', 'js', 'hub', 'node.js')], { cwd: dir, env: { ...process.env, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  program.stdout.on('data', (chunk) => (output += chunk));
  program.stderr.on('data', (chunk) => (output += chunk));
  try {
    const port = await waitFor(() => output.match(/listening on http:\/\/[^ ]*:(\d+) /)?.[1], { ms: 20000, what: 'the hub program listening' });
    const user = client('program-user', { port: Number(port) });
    await user.channels.get(fresh()).presence.enter('here');
    assert.equal(user.connection.state, 'connected');
  } finally {
    program.kill();
  }
});
