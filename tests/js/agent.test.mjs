// examples/agent.mjs against a hub: it reports the user offline on all devices only after the
// last device has gone, and resumes when the user returns.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Realtime } from '../../js/node.js';
import { freePort, startHub, waitFor } from './helpers.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Starts the example agent with these arguments; `out` collects what it says. */
function startAgent(args) {
  const agent = spawn(process.execPath, ['examples/agent.mjs', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const run = { agent, out: '', exited: new Promise((r) => agent.on('exit', (code, signal) => r({ code, signal }))) };
  agent.stdout.on('data', (d) => (run.out += d));
  agent.stderr.on('data', (d) => (run.out += d));
  return run;
}

test('the agent pauses only when the last device is gone, and resumes when the user is back', async () => {
  const hub = await startHub({ port: 0 });
  const url = `ws://127.0.0.1:${hub.port}`;
  const agent = spawn(process.execPath, ['examples/agent.mjs', '--user', 'user-123', '--channel', 'work', '--url', url], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  agent.stdout.on('data', (d) => (out += d));
  agent.stderr.on('data', (d) => (out += d));
  const exited = new Promise((r) => agent.on('exit', r));
  const devices = [];
  try {
    await waitFor(() => out.includes('waiting for user-123'), { ms: 10000, what: 'the agent to start' });
    const device = (name, extra) => {
      const c = new Realtime({ clientId: 'user-123', url, ...extra });
      devices.push(c);
      return c;
    };
    const desktop = device('desktop');
    const mobile = device('mobile', { transportParams: { remainPresentFor: 1000 } });
    await desktop.channels.get('work').presence.enter({ device: 'desktop' });
    await waitFor(() => out.includes('user-123 is online (1 device): working'), { what: 'online' });
    await mobile.channels.get('work').presence.enter({ device: 'mobile' });

    // The agent is a member with its model, as an agent enters.
    const members = await desktop.channels.get('work').presence.get();
    assert.deepEqual(members.find((m) => m.clientId === 'weather-agent')?.data.model, 'gpt-4');

    await desktop.channels.get('work').presence.leave({ reason: 'closed laptop' });
    await waitFor(() => out.includes('left one device; still online elsewhere'), { what: 'one device left' });
    assert.ok(!out.includes('offline on all devices'), 'not offline while the phone is present');

    mobile.connection.simulateDrop(); // the last device drops; it leaves after remainPresentFor
    await waitFor(() => out.includes('offline on all devices (timeout): pausing work'), { ms: 8000, what: 'offline' });

    await desktop.channels.get('work').presence.enter({ device: 'desktop' });
    await waitFor(() => out.split('is online').length === 3, { what: 'back online' });
  } finally {
    for (const c of devices) c.close();
    agent.kill('SIGTERM');
    await exited;
    await hub.close();
  }
  assert.match(out, /left and closed/);
});

test('the agent restarted with --state keeps its connection: the user sees no leave and no enter', async () => {
  const hub = await startHub({ port: 0 });
  const url = `ws://127.0.0.1:${hub.port}`;
  const dir = mkdtempSync(join(tmpdir(), 'rollcall-agent-'));
  const state = join(dir, 'agent.key');
  const start = () => startAgent(['--user', 'user-9', '--channel', 'work', '--url', url, '--state', state, '--name', 'agent-9']);
  const user = new Realtime({ clientId: 'user-9', url });
  const runs = [];
  try {
    const events = [];
    await user.channels.get('work').presence.subscribe((m) => m.clientId === 'agent-9' && events.push(m.action));
    for (let i = 0; i < 3; i++) {
      const run = start();
      runs.push(run);
      await waitFor(() => run.out.includes('waiting for user-9'), { ms: 10000, what: `run ${i + 1} up` });
      await waitFor(() => existsSync(state), { what: 'the key kept' });
      if (i > 0) assert.match(run.out, /recovered the connection/);
      // Killed: no leave, no close. The next run is back within the default 15 s window.
      run.agent.kill('SIGKILL');
      await run.exited;
    }
    const last = start();
    runs.push(last);
    await waitFor(() => last.out.includes('recovered the connection'), { ms: 10000, what: 'the fourth run recovered' });
    await waitFor(() => last.out.includes('waiting for user-9'), { ms: 10000, what: 'the fourth run up' });
    await waitFor(async () => (await user.channels.get('work').presence.get()).some((m) => m.clientId === 'agent-9'));
    assert.deepEqual(events, ['enter'], 'one enter, and never a leave, across three restarts');
    const agents = (await user.channels.get('work').presence.get()).filter((m) => m.clientId === 'agent-9');
    assert.equal(agents.length, 1, 'one agent, not one per run');
    last.agent.kill('SIGTERM');
    await last.exited;
    assert.ok(!existsSync(state), 'a closed connection leaves no key behind');
    await waitFor(() => events.includes('leave'), { what: 'the leave on shut down' });
  } finally {
    for (const run of runs) run.agent.kill('SIGKILL');
    user.close();
    rmSync(dir, { recursive: true, force: true });
    await hub.close();
  }
});

test('the agent stopped before it could enter (no hub) exits at once, cleanly', async () => {
  const port = await freePort();
  const run = startAgent(['--user', 'u', '--url', `ws://127.0.0.1:${port}`]);
  try {
    await waitFor(() => run.out.includes('connecting to'), { ms: 10000, what: 'the agent starting' });
    // It says why it is not getting anywhere, rather than nothing until it gives up.
    await waitFor(() => run.out.includes(`cannot reach ws://127.0.0.1:${port}`), { ms: 10000, what: 'why it cannot connect' });
    const stoppedAt = Date.now();
    run.agent.kill('SIGTERM');
    const { code } = await run.exited;
    assert.equal(code, 0, run.out);
    assert.ok(Date.now() - stoppedAt < 8000, 'not waiting on the connection');
    assert.match(run.out, /left and closed/);
    assert.doesNotMatch(run.out, /is present on/);
  } finally {
    run.agent.kill('SIGKILL');
  }
});

test('a new agent instance started on the same --state file (a deploy) keeps the key once the old one stops', async () => {
  const hub = await startHub({ port: 0 });
  const url = `ws://127.0.0.1:${hub.port}`;
  const dir = mkdtempSync(join(tmpdir(), 'rollcall-agent-'));
  const state = join(dir, 'agent.key');
  const args = ['--user', 'u', '--channel', 'work', '--url', url, '--state', state, '--name', 'agent-d'];
  const old = startAgent(args);
  let fresh;
  try {
    await waitFor(() => old.out.includes('waiting for u') && existsSync(state), { ms: 10000, what: 'the old instance up' });
    fresh = startAgent(args);
    await waitFor(() => fresh.out.includes('recovered the connection') && fresh.out.includes('waiting for u'), { ms: 10000, what: 'the new one up' });
    const key = readFileSync(state, 'utf8');
    // The old instance, its connection taken, gets one of its own; the file stays the new one's.
    old.agent.kill('SIGTERM');
    assert.equal((await old.exited).code, 0);
    assert.ok(existsSync(state), 'the new instance still has its key');
    assert.equal(readFileSync(state, 'utf8'), key);
  } finally {
    old.agent.kill('SIGKILL');
    fresh?.agent.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    await hub.close();
  }
});

test('the agent keeps the key of the new connection it gets when the hub restarted', async () => {
  let hub = await startHub({ port: 0 });
  const port = hub.port;
  const dir = mkdtempSync(join(tmpdir(), 'rollcall-agent-'));
  const state = join(dir, 'agent.key');
  const run = startAgent(['--user', 'u', '--channel', 'work', '--url', `ws://127.0.0.1:${port}`, '--state', state, '--name', 'agent-r']);
  try {
    await waitFor(() => run.out.includes('waiting for u') && existsSync(state), { ms: 10000, what: 'the agent up' });
    const before = JSON.parse(readFileSync(state, 'utf8')).connectionKey;
    // A restarted hub knows no connection: the agent gets a new one, whose key it must keep.
    await hub.close();
    hub = await startHub({ port });
    await waitFor(() => run.out.includes('connected again'), { ms: 40000, what: 'the agent connected again' });
    await waitFor(() => JSON.parse(readFileSync(state, 'utf8')).connectionKey !== before, { what: 'the new key kept' });
    // Restarted again, now with keys it has none of: its connection fails, and it exits (for a
    // supervisor to see), rather than sit idle saying the user is offline.
    await hub.close();
    hub = await startHub({ port, keys: 'app.k:secret' });
    let ended;
    run.exited.then((result) => (ended = result));
    await waitFor(() => ended, { ms: 40000, what: 'the agent exited' });
    assert.equal(ended.code, 1, run.out);
    assert.match(run.out, /connection failed.*exiting/);
  } finally {
    run.agent.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    await hub.close();
  }
});

test('the agent says when its own connection drops, does no work until it is back, and says so', async () => {
  const hub = await startHub({ port: 0 });
  const run = startAgent(['--user', 'u', '--channel', 'work', '--url', `ws://127.0.0.1:${hub.port}`]);
  try {
    await waitFor(() => run.out.includes('waiting for u'), { ms: 10000, what: 'the agent up' });
    hub.disconnectAll();
    await waitFor(() => run.out.includes('connection disconnected'), { what: 'the drop said' });
    assert.match(run.out, /pausing until it is back/);
    await waitFor(() => run.out.includes('connected again'), { ms: 10000, what: 'the return said' });
  } finally {
    run.agent.kill('SIGKILL');
    await hub.close();
  }
});

test('a user already present on two devices when the agent starts is said to be on two', async () => {
  const hub = await startHub({ port: 0 });
  const url = `ws://127.0.0.1:${hub.port}`;
  const devices = ['desktop', 'mobile'].map(() => new Realtime({ clientId: 'u', url }));
  let run;
  try {
    await Promise.all(devices.map((d, i) => d.channels.get('work').presence.enter({ device: i })));
    run = startAgent(['--user', 'u', '--channel', 'work', '--url', url]);
    await waitFor(() => run.out.includes('u is online ('), { ms: 10000, what: 'the user online' });
    assert.match(run.out, /u is online \(2 devices\): working/);
  } finally {
    for (const d of devices) d.close();
    run?.agent.kill('SIGKILL');
    await hub.close();
  }
});
