// The presence benchmark: each server started fresh on 127.0.0.1 (with no ROLLCALL_* variable
// of the shell: default settings), driven by one load generator (this process, raw `ws`
// clients), runs interleaved so that machine drift hits all alike, the targets' order rotated
// each run so that none always follows the same one (and this process collects its garbage
// between measurements: `--expose-gc` if given, else exposed here).
//
//   node bench/load.mjs [--targets rollcall,edge,relay,relay-batched,yjs,sockudo] [--sizes 100,300,1000]
//                       [--runs 3] [--scenarios storm,fanout,churn,idle,resume,watched] [--outage 0]
//                       [--deploy]
//
// Scenarios:
//   storm   N clients attach to one room, then all join at once: the time from the last join
//           sent until every client holds all N members, and the frames and bytes each client
//           received from the joins on (not counting its connection's and attach's).
//   fanout  200 members each send 20 updates as fast as they can: deliveries per second (none
//           when a burst was not all delivered within 120 s), and the p50/p99 delay from send
//           to delivery.
//   churn   100 members enter and leave continuously for 10 s: events sent, events delivered
//           to a watcher, server CPU per 1 000 delivered.
//   idle    10 000 connections entered in rooms of 100: server memory per connection.
//   watched N members enter one room attached with the PRESENCE mode only (they hear no one
//           else), watched by one client (Ably-protocol targets only): the time from the last
//           join until the watcher holds all N.
//   resume  N members of one room lose their network at once and resume (Ably-protocol targets
//           only), re-attaching as Ably's clients do and as rollcall's do: the time until every
//           view is whole, and the bytes each client is sent. `--outage MS` keeps the network
//           down that long first (over 2 s: long enough for drops and returns to be told).
//           `--deploy` (edge only): the server restarts instead, as in a deploy, and every
//           client resumes on an object rebuilt from storage.
//
// Targets: rollcall (the Node hub), edge (the Worker + Durable Object on workerd), relay (a raw
// ws relay: the floor; relay-batched, the same sending what came for a room in one turn as one frame, encoded once), yjs (@y/websocket-server awareness with a minimal client), sockudo
// (Pusher-protocol presence channels; only where its binary is, see SOCKUDO below). Server CPU
// seconds and peak memory are read from /proc for the server's process tree. Results: a table,
// and JSON lines in bench/results/load.jsonl.
//
// Waits are judged as each message arrives (nothing polls, so the load generator leaves the
// servers their cores), and a time ends when the last client's message made it whole. Once a
// scenario has converged, outside its timed part, every client's member set is checked against
// the ids expected, and a sample of clients' members against the states they joined with: a
// mismatch makes the run an error. A run that threw, did not converge or was not all delivered
// is counted in its cell ("1 of 3 failed"), and the errors are listed under the tables.

import { execFileSync, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { WebSocket } from 'ws';

import { freePort } from '../tests/js/helpers.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values: args } = parseArgs({
  options: {
    targets: { type: 'string', default: 'rollcall,edge,relay,relay-batched,yjs,sockudo' },
    sizes: { type: 'string', default: '100,300,1000' },
    runs: { type: 'string', default: '3' },
    scenarios: { type: 'string', default: 'storm,fanout,churn,idle,resume' },
    outage: { type: 'string', default: '0' },
    deploy: { type: 'boolean', default: false },
  },
});

// ---- the server's process tree, from /proc --------------------------------------------------

const TICK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

function processes() {
  const table = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const command = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      table.set(Number(name), { ppid: Number(fields[1]), cpu: (Number(fields[11]) + Number(fields[12])) / TICK, command });
    } catch {
      // The process ended meanwhile.
    }
  }
  return table;
}

/**
 * A server's CPU seconds, over its whole process tree, and its memory (resident and peak): of
 * the processes `server.memoryOf` names if it names some (the edge's workerd, without the
 * Node process that runs it locally and holds about 190 MB of its own), else of the tree.
 */
function usage(server) {
  const table = processes();
  const tree = [server.pid];
  for (let i = 0; i < tree.length; i++) for (const [pid, p] of table) if (p.ppid === tree[i]) tree.push(pid);
  let cpu = 0;
  let rss = 0;
  let hwm = 0;
  for (const pid of tree) {
    cpu += table.get(pid)?.cpu ?? 0;
    if (server.memoryOf && !server.memoryOf.test(table.get(pid)?.command ?? '')) continue;
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      rss += Number(status.match(/VmRSS:\s+(\d+)/)?.[1] ?? 0) * 1024;
      hwm += Number(status.match(/VmHWM:\s+(\d+)/)?.[1] ?? 0) * 1024;
    } catch {
      // Gone.
    }
  }
  return { cpu, rss, hwm };
}

// ---- servers ------------------------------------------------------------------------------

// Servers run in their own process group, so that stopping one also stops what it started
// (the edge host's workerd), and none outlives the bench, however the bench ends.
const live = new Set();
const killGroup = (pid) => {
  live.delete(pid);
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
};
process.on('exit', () => [...live].forEach(killGroup));
process.once('SIGINT', () => process.exit(130));
process.once('SIGTERM', () => process.exit(143));

async function launch(command, argv, env, ready, cwd = root) {
  // Every Node server gets the same preload: SIGUSR2 collects garbage (see gc-on-signal.cjs).
  const node = command === process.execPath ? ['--expose-gc', '-r', './bench/gc-on-signal.cjs'] : [];
  const child = spawn(command, [...node, ...argv], {
    cwd,
    env: { ...shellEnv, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  live.add(child.pid);
  // The server's output until it is ready (to find the ready line, or to show why it did not
  // start); after that only the last few kilobytes, as a busy server may log without end.
  let out = '';
  const keep = (d) => {
    out += d;
    if (out.length > 65536) out = out.slice(-8192);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((r) => child.on('exit', r));
  const deadline = Date.now() + 30000;
  while (!ready.test(out)) {
    if (Date.now() > deadline || child.exitCode !== null) {
      killGroup(child.pid);
      throw new Error(`${argv.join(' ')} did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    pid: child.pid,
    collects: node.length > 0,
    async stop() {
      killGroup(child.pid);
      await exited;
    },
  };
}

/**
 * The environment the servers inherit: the shell's without any ROLLCALL_* variable, so that
 * rollcall and the edge run with their default settings whatever the shell has (a key set there
 * would refuse the bench's clients; a config file or buffer limit would change the figures).
 */
const shellEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('ROLLCALL_')));

const SERVERS = {
  rollcall: (port) => launch(process.execPath, ['js/hub/node.js'], { PORT: String(port), HOST: '127.0.0.1' }, /listening/),
  edge: async (port) => {
    const state = mkdtempSync(join(tmpdir(), 'rollcall-edge-'));
    const start = () => launch(process.execPath, ['js/hub/edge.js'], { PORT: String(port), ROLLCALL_EDGE_STATE: state }, /listening/);
    let server = await start();
    return {
      get pid() {
        return server.pid;
      },
      collects: server.collects,
      // Memory is workerd's: miniflare's Node process, which starts it here, is not the edge's.
      memoryOf: /^workerd/,
      /** Stopped and started again on its storage, as a deploy does: every socket closes. */
      async restart() {
        await server.stop();
        server = await start();
      },
      async stop() {
        await server.stop();
        rmSync(state, { recursive: true, force: true });
      },
    };
  },
  relay: (port) => launch(process.execPath, ['bench/relay.mjs'], { PORT: String(port) }, /listening/),
  // The same relay sending what came for a room in one turn of its event loop as one frame,
  // encoded once for every socket of the room, as rollcall sends an event.
  'relay-batched': (port) => launch(process.execPath, ['bench/relay.mjs'], { PORT: String(port), RELAY_BATCH: '1' }, /listening/),
  yjs: (port) =>
    launch(process.execPath, ['node_modules/@y/websocket-server/src/server.js'], { PORT: String(port), HOST: '127.0.0.1' }, /running at/),
  // Sockudo's limits are raised so that the scenarios fit: its defaults cap a presence channel
  // at 100 members and client events at 10 a second. It runs from an empty directory, so that
  // it reads no config file.
  sockudo: async (port) => {
    const dir = mkdtempSync(join(tmpdir(), 'rollcall-sockudo-'));
    const server = await launch(
      SOCKUDO.bin,
      [],
      {
        HOST: '127.0.0.1',
        PORT: String(port),
        SOCKUDO_DEFAULT_APP_ID: SOCKUDO.app,
        SOCKUDO_DEFAULT_APP_KEY: SOCKUDO.key,
        SOCKUDO_DEFAULT_APP_SECRET: SOCKUDO.secret,
        SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS: '100000',
        SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBERS_PER_CHANNEL: '100000',
        SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: 'true',
        SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND: '100000',
        PRESENCE_UPDATE_RATE_LIMIT_PER_MEMBER_PER_SECOND: '100000',
        RATE_LIMITER_ENABLED: 'false',
        METRICS_ENABLED: 'false',
      },
      SOCKUDO.ready,
      dir,
    );
    return { ...server, async stop() { await server.stop(); rmSync(dir, { recursive: true, force: true }); } };
  },
};

/** Sockudo runs where its binary is: `SOCKUDO_BIN`, else `sockudo` on the PATH or in ~/.cargo/bin. */
const SOCKUDO = {
  app: 'bench',
  key: 'bench-key',
  secret: 'bench-secret',
  ready: /server listening/,
  bin: [process.env.SOCKUDO_BIN, ...(process.env.PATH ?? '').split(':').map((d) => join(d, 'sockudo')), join(homedir(), '.cargo/bin/sockudo')].find(
    (p) => p && existsSync(p),
  ),
};
if (!SOCKUDO.bin) delete SERVERS.sockudo;

// ---- clients: one per protocol ------------------------------------------------------------

/**
 * What every protocol's client shares: one socket, the frames and bytes it received, the
 * presence events it heard (`heard`: each enter, update, leave or member listed), and `ready`,
 * which settles when the socket opens (`readyOnOpen`) or when the subclass's
 * `received(data, resolve)` says so. `onMessage(client)`, when set (by `waitFor`), runs after
 * each message is handled. `record`, when set to a Map (by `sample`), keeps each member's last
 * state as received, by id, for `verify`; each subclass says which ids it holds (`held()`) and
 * what state it holds for one (`stateOf(id)`).
 */
class BenchClient {
  constructor(url, { readyOnOpen = false } = {}) {
    this.frames = 0;
    this.bytes = 0;
    this.heard = 0;
    this.onUpdate = null;
    this.onMessage = null;
    this.record = null;
    this.readyOnOpen = readyOnOpen;
    this.open(url);
  }

  /** Opens a socket (again); `ready` settles as for the first. */
  open(url) {
    this.ws = new WebSocket(url, { perMessageDeflate: false });
    this.ready = new Promise((resolve, reject) => {
      this.ws.on('error', reject);
      if (this.readyOnOpen) this.ws.on('open', resolve);
      this.ws.on('message', (data) => {
        this.frames += 1;
        this.bytes += data.length;
        this.received(data, resolve);
        this.onMessage?.(this);
      });
    });
  }

  close() {
    this.ws.terminate();
  }
}

/** The Ably protocol, as a minimal raw client (JSON). */
class RollcallClient extends BenchClient {
  /** `modes`: the ATTACH's mode flags (none: all). */
  constructor(port, room, id, agent, modes) {
    super(`ws://127.0.0.1:${port}/?clientId=${id}&v=6&format=json&heartbeats=true${agent ? `&agent=${agent}` : ''}`);
    this.agent = agent;
    this.modes = modes;
    this.port = port;
    this.id = id;
    this.room = room;
    this.members = new Set();
    this.serial = 0;
    // For the resume scenario: the connection, how far the channel was heard, whether a SYNC
    // is under way, and how to re-attach (`keep`: ask to keep the view, as rollcall's client does).
    this.key = null;
    this.channelSerial = null;
    this.syncing = false;
    this.keep = false;
    this.state = null;
    this.seen = null;
    this.attached = false;
  }

  received(data, resolve) {
    const m = JSON.parse(data);
    if (m.action === 4) {
      this.key = m.connectionDetails?.connectionKey ?? null;
      const attach = { action: 10, channel: this.room };
      if (this.modes) attach.flags = this.modes;
      if (this.keep && this.channelSerial) Object.assign(attach, { flags: 32 | (this.modes ?? 0), channelSerial: this.channelSerial });
      this.ws.send(JSON.stringify(attach));
    } else if (m.action === 11) {
      if (m.channelSerial) this.channelSerial = m.channelSerial;
      this.syncing = (m.flags & 1) === 1;
      // An attach starts the view again, as Ably's clients do (RTP19): whoever the SYNC and the
      // events during it do not name is gone, and with no SYNC (no HAS_PRESENCE) everyone is.
      // Only a view the hub agreed to keep (ATTACH_RESUME answered RESUMED) stays, and then it
      // is judged by the events it hears. Without this a view from before the drop could never
      // be seen missing anyone.
      this.seen = this.keep && (m.flags & 4) === 4 ? null : new Set();
      if (this.seen && !this.syncing) this.#endSync();
      // Back after a resume: the member is entered again, as Ably's and rollcall's clients do.
      if (this.state) this.#send(2, this.state);
      this.attached = true;
      resolve();
    } else if (m.action === 14) {
      if (m.channelSerial) this.channelSerial = m.channelSerial;
      this.#presence(m.presence);
    } else if (m.action === 16) {
      this.#presence(m.presence);
      if (!m.channelSerial || m.channelSerial.endsWith(':')) {
        this.syncing = false;
        this.#endSync();
      }
    }
  }

  /** The end of a SYNC: members it did not name (nor events during it) have left. */
  #endSync() {
    if (!this.seen) return;
    for (const id of this.members) if (!this.seen.has(id)) this.members.delete(id);
    this.seen = null;
  }

  /** Reconnects at once, resuming its connection. */
  resume(keep) {
    this.keep = keep;
    this.attached = false;
    const agent = this.agent ? `&agent=${this.agent}` : '';
    this.open(`ws://127.0.0.1:${this.port}/?clientId=${this.id}&v=6&format=json&heartbeats=true${agent}&resume=${encodeURIComponent(this.key)}`);
  }

  #presence(items = []) {
    this.heard += items.length;
    for (const p of items) {
      if (p.action === 3) this.members.delete(p.clientId);
      else {
        this.members.add(p.clientId);
        this.seen?.add(p.clientId);
        this.record?.set(p.clientId, p);
        if (p.action === 4 && this.onUpdate && p.clientId !== this.id) this.onUpdate(JSON.parse(p.data).t);
      }
    }
  }

  get count() {
    return this.members.size;
  }

  held() {
    return [...this.members];
  }

  stateOf(id) {
    const p = this.record?.get(id);
    if (!p) return undefined;
    return p.encoding === 'json' && typeof p.data === 'string' ? safeJson(p.data) : p.data;
  }

  #send(action, state) {
    const item = { action };
    if (state) Object.assign(item, { data: JSON.stringify(state), encoding: 'json' });
    this.ws.send(JSON.stringify({ action: 14, channel: this.room, msgSerial: this.serial++, presence: [item] }));
  }

  join(state) {
    this.state = state;
    this.#send(2, state);
  }

  update(state) {
    this.state = state;
    this.#send(4, state);
  }

  leave() {
    this.state = null;
    this.#send(3);
  }
}

/** The relay: each client says who it is; every other client hears it. */
class RelayClient extends BenchClient {
  constructor(port, room, id) {
    super(`ws://127.0.0.1:${port}/${room}`, { readyOnOpen: true });
    this.id = id;
    this.members = new Set();
    this.joined = false;
    this.state = null;
  }

  received(data) {
    const frame = JSON.parse(data);
    // One frame, or (from the batching relay) an array of them.
    for (const m of Array.isArray(frame) ? frame : [frame]) {
      this.heard += 1;
      // Its own frames, which the batching relay sends back with the others (as rollcall echoes
      // a client's own presence): it holds itself already.
      if (m.id === this.id) continue;
      if (m.k === 'leave') this.members.delete(m.id);
      else {
        this.members.add(m.id);
        this.record?.set(m.id, m.s);
        if (m.k === 'u' && this.onUpdate) this.onUpdate(m.s.t);
      }
    }
  }

  get count() {
    return this.members.size + (this.joined ? 1 : 0);
  }

  /** A client holds itself as it joined, not as the relay told it. */
  held() {
    return this.joined ? [...this.members, this.id] : [...this.members];
  }

  stateOf(id) {
    return id === this.id ? this.state : this.record?.get(id);
  }

  join(state) {
    this.joined = true;
    this.state = state;
    this.ws.send(JSON.stringify({ k: 'join', id: this.id, s: state }));
  }

  update(state) {
    this.state = state;
    this.ws.send(JSON.stringify({ k: 'u', id: this.id, s: state }));
  }

  leave() {
    this.joined = false;
    this.state = null;
    this.ws.send(JSON.stringify({ k: 'leave', id: this.id }));
  }
}

// lib0 encoding, as y-protocols uses it.
function writeVarUint(out, n) {
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
}

function readVarUint(bytes, at) {
  let n = 0;
  let mult = 1;
  for (;;) {
    const b = bytes[at.i++];
    n += (b & 0x7f) * mult;
    if (b < 0x80) return n;
    mult *= 128;
  }
}

const utf8 = new TextEncoder();
const text = new TextDecoder();

/** The bench's id of each Yjs awareness client id in use (awareness knows only the latter). */
const yjsIds = new Map();

/** Yjs awareness with a minimal client: awareness updates only (message type 1). */
class YjsClient extends BenchClient {
  constructor(port, room, id) {
    super(`ws://127.0.0.1:${port}/${room}`);
    this.id = id;
    do this.yid = Math.floor(Math.random() * 2 ** 31);
    while (yjsIds.has(this.yid));
    yjsIds.set(this.yid, id);
    this.clock = 0;
    /** Each client's state as last heard (a JSON string), by its Yjs id. */
    this.states = new Map();
    this.state = null;
    this.sentAt = 0;
  }

  close() {
    yjsIds.delete(this.yid);
    yjsRenewing.delete(this);
    super.close();
  }

  received(data, resolve) {
    this.#message(data);
    resolve();
  }

  #message(bytes) {
    const at = { i: 0 };
    if (readVarUint(bytes, at) !== 1) return; // sync messages: not needed for awareness
    readVarUint(bytes, at); // the update's length
    const count = readVarUint(bytes, at);
    for (let k = 0; k < count; k++) {
      const client = readVarUint(bytes, at);
      readVarUint(bytes, at); // clock
      const len = readVarUint(bytes, at);
      const state = text.decode(bytes.subarray(at.i, at.i + len));
      at.i += len;
      this.heard += 1;
      if (state === 'null') this.states.delete(client);
      else {
        const before = this.states.get(client);
        this.states.set(client, state);
        this.record?.set(yjsIds.get(client) ?? `yjs client ${client}`, state);
        // A state that did not change is a renewal (y-protocols' 'update' without 'change').
        if (before !== undefined && before !== state && this.onUpdate && client !== this.yid) this.onUpdate(JSON.parse(state).t);
      }
    }
  }

  get count() {
    return this.states.size;
  }

  held() {
    return [...this.states.keys()].map((yid) => yjsIds.get(yid) ?? `yjs client ${yid}`);
  }

  stateOf(id) {
    const state = this.record?.get(id);
    return state === undefined ? undefined : safeJson(state);
  }

  #send(state) {
    this.state = state;
    this.sentAt = performance.now();
    if (state === null) yjsRenewing.delete(this);
    else {
      yjsRenewing.add(this);
      yjsRenewal ??= setInterval(renewYjs, YJS_RENEW_CHECK_MS).unref();
    }
    this.clock += 1;
    const update = [];
    writeVarUint(update, 1);
    writeVarUint(update, this.yid);
    writeVarUint(update, this.clock);
    const s = utf8.encode(JSON.stringify(state));
    writeVarUint(update, s.length);
    update.push(...s);
    const message = [];
    writeVarUint(message, 1);
    writeVarUint(message, update.length);
    message.push(...update);
    this.ws.send(Uint8Array.from(message));
  }

  join(state) {
    this.#send(state);
  }

  update(state) {
    this.#send(state);
  }

  leave() {
    this.#send(null);
  }

  /** Sends its state again, as y-protocols' Awareness does, once half of the 30 s after which
   * the server (and every peer) drops a state not heard from has passed. */
  renew(now) {
    if (this.state !== null && now - this.sentAt >= YJS_OUTDATED_MS / 2 && this.ws.readyState === 1) this.#send(this.state);
  }
}

/** y-protocols' awareness timing: a state unrenewed for 30 s is dropped; checked every 3 s. */
const YJS_OUTDATED_MS = 30000;
const YJS_RENEW_CHECK_MS = YJS_OUTDATED_MS / 10;
/** The Yjs clients with a state to keep alive, and the one timer that renews them. */
const yjsRenewing = new Set();
let yjsRenewal = null;
function renewYjs() {
  const now = performance.now();
  for (const c of yjsRenewing) c.renew(now);
  if (!yjsRenewing.size) {
    clearInterval(yjsRenewal);
    yjsRenewal = null;
  }
}

/**
 * Sockudo, over the Pusher protocol (7): a member joins by subscribing to a presence channel
 * with signed `channel_data`, leaves by unsubscribing, and updates with a client event (Pusher
 * presence has no update).
 */
class SockudoClient extends BenchClient {
  constructor(port, room, id) {
    super(`ws://127.0.0.1:${port}/app/${SOCKUDO.key}?protocol=7&client=js&version=8.4.0`);
    this.id = id;
    this.channel = `presence-${room}`;
    this.members = new Set();
    this.socketId = null;
  }

  received(data, resolve) {
    const m = JSON.parse(data);
    const body = typeof m.data === 'string' ? safeJson(m.data) : m.data;
    const event = String(m.event).replace(/^(pusher|sockudo)(_internal)?:/, '');
    if (event === 'connection_established') {
      this.socketId = body.socket_id;
      resolve();
    } else if (event === 'ping') this.ws.send(JSON.stringify({ event: 'pusher:pong', data: {} }));
    else if (event === 'subscription_succeeded') {
      for (const id of body?.presence?.ids ?? []) {
        this.heard += 1;
        this.members.add(String(id));
        this.record?.set(String(id), body.presence.hash?.[id]);
      }
    } else if (event === 'member_added') {
      this.heard += 1;
      this.members.add(String(body.user_id));
      this.record?.set(String(body.user_id), body.user_info);
    } else if (event === 'member_removed') {
      this.heard += 1;
      this.members.delete(String(body.user_id));
    } else if (m.event === 'client-u' && this.onUpdate) this.onUpdate(body.t);
  }

  get count() {
    return this.members.size;
  }

  held() {
    return [...this.members];
  }

  stateOf(id) {
    return this.record?.get(id);
  }

  join(state) {
    const channelData = JSON.stringify({ user_id: this.id, user_info: state });
    const signature = createHmac('sha256', SOCKUDO.secret).update(`${this.socketId}:${this.channel}:${channelData}`).digest('hex');
    this.ws.send(
      JSON.stringify({
        event: 'pusher:subscribe',
        data: { channel: this.channel, auth: `${SOCKUDO.key}:${signature}`, channel_data: channelData },
      }),
    );
  }

  update(state) {
    this.ws.send(JSON.stringify({ event: 'client-u', channel: this.channel, data: state }));
  }

  /** Joins to hear the room; returns the count that means "nobody else is here". */
  watch() {
    this.join({});
    return 1;
  }

  leave() {
    this.members.clear();
    this.ws.send(JSON.stringify({ event: 'pusher:unsubscribe', data: { channel: this.channel } }));
  }
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

const CLIENTS = { rollcall: RollcallClient, edge: RollcallClient, relay: RelayClient, 'relay-batched': RelayClient, yjs: YjsClient, sockudo: SockudoClient };

// ---- scenarios ------------------------------------------------------------------------------

/**
 * Waits until `check(client)` says the whole wait is over. It is asked after each message a
 * client handles (with that client), and once for each client at the start: nothing polls, so
 * the load generator takes no core from the servers while it waits, and the time it resolves to
 * (`performance.now()`) is stamped in the message handler of the message that ended it, not
 * when a poll noticed. A timer looks every 100 ms at the deadline (`ms`) and, given `quiet`, at
 * whether the clients' counts still move: it rejects after `ms`, after `quiet` ms without
 * progress, or when `signal` aborts.
 */
function waitFor(clients, check, { ms, what, quiet = Infinity, signal }) {
  return new Promise((resolve, reject) => {
    let over = false;
    let timer = null;
    const finish = (error, at) => {
      if (over) return;
      over = true;
      clearInterval(timer);
      for (const c of clients) c.onMessage = null;
      if (error) reject(error);
      else resolve(at);
    };
    const judge = (c) => {
      if (check(c)) finish(null, performance.now());
    };
    for (const c of clients) c.onMessage = judge;
    for (const c of clients) if (!over) judge(c);
    if (over) return;
    const deadline = performance.now() + ms;
    let total = -1;
    let movedAt = performance.now();
    timer = setInterval(() => {
      const now = performance.now();
      if (quiet !== Infinity) {
        const t = clients.reduce((s, c) => s + c.count, 0);
        if (t !== total) [total, movedAt] = [t, now];
      }
      if (now > deadline) finish(new Error(`timed out: ${what}`));
      else if (now - movedAt > quiet) finish(new Error(`stalled: ${what}`));
    }, 100);
    signal?.addEventListener('abort', () => finish(new Error(`abandoned: ${what}`)), { once: true });
  });
}

/** Waits until `done(c)` holds for every client at once (see `waitFor`): resolves to the time it first did. */
function allDone(clients, done, options) {
  const ok = new Set();
  return waitFor(
    clients,
    (c) => {
      if (done(c)) ok.add(c);
      else ok.delete(c);
      return ok.size === clients.length;
    },
    options,
  );
}

/**
 * Waits until every client holds at least `n` members: resolves to the time the last got there,
 * or to null when the counts have not moved for `quiet` ms (a server that loses joins never gets
 * there, and the scenario goes on with what it has, saying so) or after 120 s.
 */
async function settle(clients, n, quiet) {
  try {
    return await allDone(clients, (c) => c.count >= n, { ms: 120000, quiet, what: `every client holds ${n}` });
  } catch {
    return null;
  }
}

/**
 * Has up to `k` clients, spread over the crowd (the first and the last among them), keep each
 * member's state as received, for `verify`. Set before the joins: a few Map writes per frame
 * for a few clients, in the timed part.
 */
function sample(clients, k = 16) {
  const step = Math.max(1, (clients.length - 1) / (k - 1));
  for (let i = 0; i < clients.length; i += step) clients[Math.round(i)].record = new Map();
  clients.at(-1).record = new Map();
}

/** JSON with every object's keys sorted, to compare states whatever order a server keeps keys in. */
const canonical = (x) =>
  JSON.stringify(x ?? null, (_, v) => (v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v));

/**
 * After convergence, outside the timed part: every client holds exactly the ids of `expected(c)`
 * (a Map of id to state), and each sampled client (see `sample`) holds each with its state.
 * Throws on the first mismatch, which makes the run an error: a count can be right with the
 * wrong members in it.
 */
function verify(clients, expected) {
  for (const c of clients) {
    const want = expected(c);
    const held = c.held();
    const stranger = held.find((id) => !want.has(id));
    if (held.length !== want.size || stranger !== undefined) {
      const missing = [...want.keys()].find((id) => !held.includes(id));
      throw new Error(
        `${c.id} holds ${held.length} members, expected ${want.size}${stranger !== undefined ? `; ${stranger} not expected` : ''}${missing !== undefined ? `; ${missing} missing` : ''}`,
      );
    }
    if (!c.record) continue;
    for (const [id, state] of want) {
      const got = canonical(c.stateOf(id));
      if (got !== canonical(state)) throw new Error(`${c.id} holds ${id} with ${got}, expected ${canonical(state)}`);
    }
  }
}

/** The members every client of one room should hold: each id with `state(id)`. */
const members = (clients, state) => new Map(clients.map((c) => [c.id, state(c.id)]));

async function connectAll(target, port, n, room, ...extra) {
  const clients = [];
  for (let i = 0; i < n; i++) {
    clients.push(new CLIENTS[target](port, typeof room === 'function' ? room(i) : room, `c${i}`, ...extra));
    // Connect in waves, as a real crowd would, without overrunning the listen backlog.
    if (i % 200 === 199) await Promise.all(clients.slice(-200).map((c) => c.ready));
  }
  await Promise.all(clients.map((c) => c.ready));
  return clients;
}

/** The state each client joins with. */
const joinState = (id) => ({ device: 'laptop', name: id });

/** Every client joins, at once; returns when the last join was sent. */
function joinAll(clients) {
  for (const c of clients) c.join(joinState(c.id));
  return performance.now();
}

async function storm(target, server, port, n) {
  const clients = await connectAll(target, port, n, `storm${n}`);
  sample(clients);
  // What each client receives from the joins on: its connection's and attach's frames (and
  // Yjs's sync step 1) are not the storm's.
  for (const c of clients) [c.frames, c.bytes] = [0, 0];
  const before = usage(server);
  const last = joinAll(clients);
  // Up to 120 s, but a storm that has made no progress for 15 s is over: it will not converge.
  const end = await settle(clients, n, 15000);
  const converged = end !== null;
  const after = usage(server);
  const result = {
    ms: converged ? end - last : null,
    converged,
    // When it did not converge: how many clients were still missing members, and the fewest held.
    ...(converged ? {} : { short: clients.filter((c) => c.count < n).length, fewest: Math.min(...clients.map((c) => c.count)) }),
    cpu: after.cpu - before.cpu,
    hwm: after.hwm,
    framesPerClient: clients.reduce((s, c) => s + c.frames, 0) / n,
    bytesPerClient: clients.reduce((s, c) => s + c.bytes, 0) / n,
  };
  try {
    if (converged) {
      const everyone = members(clients, joinState);
      verify(clients, () => everyone);
    }
  } finally {
    for (const c of clients) c.close();
  }
  return result;
}

/**
 * A crowd of N walks into one room watched by one dashboard: the members attach with the
 * PRESENCE mode only (as Ably advises for a big channel, `channels.get(name, { modes:
 * ['PRESENCE'] })`), so each hears its own entry and no one else's; the watcher attaches as
 * usual. The time from the last join until the watcher holds all N: N deliveries instead of N².
 */
async function watched(target, server, port, n) {
  const room = `watched${n}`;
  const PRESENCE = 1 << 16;
  const crowd = await connectAll(target, port, n, room, undefined, PRESENCE);
  const watcher = new RollcallClient(port, room, 'watcher');
  await watcher.ready;
  sample(crowd);
  watcher.record = new Map();
  const before = usage(server);
  const last = joinAll(crowd);
  let end = null;
  try {
    end = await allDone([...crowd, watcher], (c) => (c === watcher ? c.count >= n : c.count >= 1), { ms: 120000, what: 'the watcher holds all' });
  } catch {
    // Not converged: said below.
  }
  const converged = end !== null;
  const after = usage(server);
  const result = {
    ms: converged ? end - last : null,
    converged,
    // A member that heard anyone but itself would show the mode was not honoured.
    heardOthers: crowd.filter((c) => c.count > 1).length,
    cpu: after.cpu - before.cpu,
    hwm: after.hwm,
    bytesPerMember: crowd.reduce((s, c) => s + c.bytes, 0) / n,
    watcherBytes: watcher.bytes,
  };
  try {
    if (converged) {
      // The watcher holds the crowd; each member only itself.
      const everyone = members(crowd, joinState);
      verify([...crowd, watcher], (c) => (c === watcher ? everyone : new Map([[c.id, joinState(c.id)]])));
    }
  } finally {
    for (const c of [...crowd, watcher]) c.close();
  }
  return result;
}

/**
 * A crowd of N, all present in one room, loses its network at once and comes back: every
 * client resumes its connection and re-attaches, either as Ably's clients do (a SYNC of all N
 * each, N² members in all) or asking to keep its view (`keep`, as rollcall's client does). The
 * time from the first reconnect until every client is attached with its view whole.
 */
async function resumeStorm(target, server, port, n, keep) {
  // Asking to keep the view is for rollcall's client, which says so in its agent (and so also
  // hears of connections in their grace window).
  const clients = await connectAll(target, port, n, `resume${n}`, keep ? 'rollcall-bench' : undefined);
  sample(clients);
  joinAll(clients);
  if ((await settle(clients, n, 15000)) === null) throw new Error('the room did not fill');
  const closed = clients.map((c) => new Promise((r) => c.ws.once('close', r)));
  if (args.deploy) await server.restart();
  else for (const c of clients) c.close();
  await Promise.all(closed);
  const before = usage(server);
  await new Promise((r) => setTimeout(r, Number(args.outage)));
  for (const c of clients) [c.frames, c.bytes] = [0, 0];
  const start = performance.now();
  for (const c of clients) c.resume(keep);
  // Judged from here (`resume` took every client out of the attached state, and no message is
  // handled before this turn ends), so that the time is stamped by the message that ended it.
  const abandon = new AbortController();
  const whole = allDone(clients, (c) => c.attached && !c.syncing && c.count >= n, { ms: 120000, what: 'every view whole', signal: abandon.signal });
  whole.catch(() => {}); // awaited below; settled by the abort when a socket failed first
  let end = null;
  try {
    await Promise.all(clients.map((c) => c.ready));
    end = await whole;
  } catch {
    abandon.abort();
  }
  const back = end !== null;
  const after = usage(server);
  const result = {
    ms: back ? end - start : null,
    back,
    keep,
    cpu: after.cpu - before.cpu,
    framesPerClient: clients.reduce((s, c) => s + c.frames, 0) / n,
    bytesPerClient: clients.reduce((s, c) => s + c.bytes, 0) / n,
  };
  try {
    if (back) {
      const everyone = members(clients, joinState);
      verify(clients, () => everyone);
    }
  } finally {
    for (const c of clients) c.close();
  }
  return result;
}

async function fanout(target, server, port) {
  const n = 200;
  const clients = await connectAll(target, port, n, 'fanout');
  try {
    return await burst(clients, server, n);
  } finally {
    for (const c of clients) c.close();
  }
}

async function burst(clients, server, n) {
  const perMember = 20;
  sample(clients);
  for (const c of clients) c.join({ t: 0 });
  const joined = (await settle(clients, n, 5000)) !== null;
  if (joined) {
    const everyone = members(clients, () => ({ t: 0 }));
    verify(clients, () => everyone);
  }
  let delays = [];
  // Done when every client has heard every other member's every update: counted by client, so
  // that one client's extra deliveries cannot stand for another's missing ones.
  const each = perMember * (n - 1);
  let whole = 0;
  for (const c of clients) {
    c.updates = 0;
    c.onUpdate = (sent) => {
      delays.push(performance.now() - sent);
      if (++c.updates === each) whole += 1;
    };
  }
  // Throughput: every member sends its updates as fast as it can.
  const before = usage(server);
  const start = performance.now();
  for (let k = 0; k < perMember; k++) for (const c of clients) c.update({ t: performance.now() });
  let end = null;
  try {
    end = await waitFor(clients, () => whole === n, { ms: 120000, what: 'every update delivered' });
  } catch {
    // Not all delivered in 120 s: no throughput, said below.
  }
  const complete = end !== null;
  const seconds = ((end ?? performance.now()) - start) / 1000;
  const after = usage(server);
  const deliveries = delays.length;
  // Delay: a steady load well within capacity (each member twice a second, for 5 s).
  delays = [];
  const paced = performance.now() + 5000;
  await Promise.all(
    clients.map(async (c) => {
      await new Promise((r) => setTimeout(r, Math.random() * 500));
      while (performance.now() < paced) {
        c.update({ t: performance.now() });
        await new Promise((r) => setTimeout(r, 500));
      }
    }),
  );
  await new Promise((r) => setTimeout(r, 1000));
  delays.sort((a, b) => a - b);
  const q = (p) => (delays.length ? delays[Math.min(delays.length - 1, Math.floor(delays.length * p))] : null);
  return {
    joined,
    complete,
    deliveries,
    // A burst not all delivered has no throughput: what came in 120 s is not a rate.
    deliveriesPerSecond: complete ? deliveries / seconds : null,
    p50: q(0.5),
    p99: q(0.99),
    cpu: after.cpu - before.cpu,
    hwm: after.hwm,
  };
}

async function churn(target, server, port) {
  const n = 100;
  const watcher = (await connectAll(target, port, 1, 'churn'))[0];
  watcher.record = new Map();
  // Hearing a room takes joining it on Pusher; there the watcher counts itself.
  const empty = watcher.watch?.() ?? 0;
  const clients = await connectAll(target, port, n, 'churn');
  // Let the watcher's own join be told before counting what it hears.
  if (empty) await allDone([watcher], (c) => c.count >= empty, { ms: 5000, what: 'the watcher in the room' });
  const before = usage(server);
  let sent = 0;
  watcher.heard = 0;
  const start = performance.now();
  const end = start + 10000;
  await Promise.all(
    clients.map(async (c) => {
      while (performance.now() < end) {
        c.join({ t: performance.now() });
        await new Promise((r) => setTimeout(r, 50 + Math.random() * 150));
        c.leave();
        sent += 2;
        await new Promise((r) => setTimeout(r, 50 + Math.random() * 150));
      }
    }),
  );
  let settled = true;
  try {
    await allDone([watcher], (c) => c.count <= empty, { ms: 30000, what: 'everyone gone' });
  } catch {
    settled = false;
  }
  const after = usage(server);
  // Every presence event the watcher heard, from the first join until the room was empty again.
  const delivered = watcher.heard;
  const cpu = after.cpu - before.cpu;
  try {
    // The watcher holds no one (on Pusher, itself as it joined).
    if (settled) verify([watcher], () => new Map(empty ? [[watcher.id, {}]] : []));
  } finally {
    for (const c of [watcher, ...clients]) c.close();
  }
  return {
    // `events`, `eventsPerSecond` and `cpuPerKiloEvents` count the events sent, as before;
    // `delivered` those the watcher heard, on which the table bases CPU.
    events: sent,
    eventsPerSecond: sent / 10,
    delivered,
    deliveredPerSecond: delivered / 10,
    settled,
    cpu,
    cpuPerKiloEvents: sent ? (cpu / sent) * 1000 : null,
    cpuPerKiloDelivered: delivered ? (cpu / delivered) * 1000 : null,
    hwm: after.hwm,
  };
}

async function idle(target, server, port) {
  const n = 10000;
  const size = 100;
  if (server.collects) process.kill(server.pid, 'SIGUSR2');
  await new Promise((r) => setTimeout(r, 500));
  const base = usage(server).rss;
  const clients = await connectAll(target, port, n, (i) => `idle${Math.floor(i / size)}`);
  try {
    return await idleRooms(clients, server, n, size, base);
  } finally {
    for (const c of clients) c.close();
  }
}

/** Idle's rooms, entered and left alone: the server's memory per connection. */
async function idleRooms(clients, server, n, size, base) {
  sample(clients, 32);
  for (const c of clients) c.join({ device: 'laptop' });
  const full = (await settle(clients, size, 5000)) !== null;
  if (full) {
    const rooms = [];
    for (let i = 0; i < n; i += size) rooms.push(members(clients.slice(i, i + size), () => ({ device: 'laptop' })));
    verify(clients, (c) => rooms[Math.floor(Number(c.id.slice(1)) / size)]);
  }
  // Settled memory: the median of samples over 5 s, each after a full collection (the Node
  // servers collect on SIGUSR2; workerd is left alone).
  const samples = [];
  for (let i = 0; i < 10; i++) {
    try {
      if (server.collects) process.kill(server.pid, 'SIGUSR2');
    } catch {
      // Not a Node server.
    }
    await new Promise((r) => setTimeout(r, 500));
    samples.push(usage(server).rss);
  }
  samples.sort((a, b) => a - b);
  const rss = samples[5];
  return { connections: n, full, bytesPerConnection: (rss - base) / n, rss, baseRss: base };
}

// ---- the run --------------------------------------------------------------------------------

const targets = args.targets.split(',').filter((t) => t in SERVERS);
const sizes = args.sizes.split(',').map(Number);
const runs = Number(args.runs);
const scenarios = args.scenarios.split(',');
mkdirSync(new URL('results/', import.meta.url), { recursive: true });
const out = new URL('results/load.jsonl', import.meta.url);
const results = [];

/**
 * A full collection in this process: run between measurements, so that the garbage one target's
 * clients left is not collected while the next one is timed. `node --expose-gc` gives it;
 * otherwise the flag is set now (`npm run bench` runs plain `node`), which V8 honours for a
 * context made after it.
 */
const gc =
  globalThis.gc ??
  (() => {
    try {
      setFlagsFromString('--expose-gc');
      return runInNewContext('gc');
    } catch {
      return null;
    }
  })();

async function measure(target, scenario, size, run) {
  const port = await freePort();
  const server = await SERVERS[target.split(':')[0]](port);
  try {
    let result;
    if (scenario === 'storm') result = await storm(target, server, port, size);
    else if (scenario === 'watched') result = await watched(target, server, port, size);
    else if (scenario === 'resume') result = await resumeStorm(target.split(':')[0], server, port, size, target.endsWith(':keep'));
    else if (scenario === 'fanout') result = await fanout(target, server, port);
    else if (scenario === 'churn') result = await churn(target, server, port);
    else result = await idle(target, server, port);
    return result;
  } catch (error) {
    return { error: error.message };
  } finally {
    await server.stop();
  }
}

/** Row `r` of a balanced Latin square of `n` (Williams's): 0, 1, n-1, 2, n-2, ... shifted by r.
 * Each row starts with another target, and (for an even n, over n rows) each target follows
 * each other once. */
function latinRow(n, r) {
  const first = [0];
  for (let lo = 1, hi = n - 1; first.length < n; ) first.push(first.length % 2 ? lo++ : hi--);
  return first.map((x) => (x + r) % n);
}

const machine = { cpus: (await import('node:os')).cpus().length, node: process.version, at: new Date().toISOString() };
for (const scenario of scenarios) {
  const plan = ['storm', 'resume', 'watched'].includes(scenario) ? sizes : [null];
  // A resume storm needs the Ably protocol: each such target, re-attaching as Ably's clients
  // do and as rollcall's do (`:keep`).
  // After a deploy: only the edge, whose objects are rebuilt from storage.
  const resumable = (t) => CLIENTS[t] === RollcallClient && (!args.deploy || t === 'edge');
  // Modes are the Ably protocol's: the watched room is for its targets only.
  const those =
    scenario === 'resume'
      ? targets.filter(resumable).flatMap((t) => [t, `${t}:keep`])
      : scenario === 'watched'
        ? targets.filter((t) => CLIENTS[t] === RollcallClient)
        : targets;
  for (const size of plan) {
    for (let run = 1; run <= runs; run++) {
      // Interleaved: every target once per run, so that drift hits all alike, in the orders of a
      // balanced Latin square: no target always comes first, or right after the same one.
      const order = those.length ? latinRow(those.length, run - 1).map((i) => those[i]) : [];
      for (const target of order) {
        gc?.();
        const result = await measure(target, scenario, size, run);
        const row = { scenario, size, target, run, ...result, machine };
        results.push(row);
        appendFileSync(out, JSON.stringify(row) + '\n');
        console.error(`${scenario}${size ? ` N=${size}` : ''} ${target} run ${run}: ${JSON.stringify(result)}`);
      }
    }
  }
}

// ---- the table ----------------------------------------------------------------------------

const median = (values) => {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const mid = Math.floor(v.length / 2);
  // With an even count (a run failed), the mean of the middle two: neither the faster nor the
  // slower of them.
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
};
/** The runs of one cell. */
const rowsOf = (scenario, size, target) => results.filter((r) => r.scenario === scenario && r.size === size && r.target === target);
/** The median of `key` over a cell's runs that have it and that did what they measure: a run
 * that failed has no figures, and one that did not converge (or complete, or come back whole)
 * has partial ones, which are left out (the cell counts it). */
const pick = (scenario, size, target, key) =>
  median(
    rowsOf(scenario, size, target)
      .filter((r) => r.converged !== false && r.complete !== false && r.back !== false && r.settled !== false)
      .map((r) => r[key]),
  );
/**
 * What failed among a cell's runs, for the cell ('' if nothing): the runs that threw ("1 of 3
 * failed"; the error is listed under the tables) and those that `ok` says fell short ("1 of 3
 * did not converge").
 */
const failures = (rows, ok = () => true, short = 'failed') => {
  const errors = rows.filter((r) => r.error).length;
  const fell = rows.filter((r) => !r.error && !ok(r)).length;
  return [errors && `${errors} of ${rows.length} failed`, fell && `${fell} of ${rows.length} ${short}`].filter(Boolean).join(', ');
};
/** A figure with its cell's failures beside it; the failures alone when no run gave a figure. */
const flag = (figure, failed) => (figure === '—' ? failed || '—' : failed ? `${figure}, but ${failed}` : figure);
/** Whether every run of a scenario said yes to `key` (and how many failed before saying). */
const all = (scenario, target, key) => {
  const rows = rowsOf(scenario, null, target);
  const said = rows.filter((r) => !r.error);
  const answer = said.length ? (said.every((r) => r[key]) ? 'yes' : 'no') : '—';
  return flag(answer, failures(rows));
};
const fmt = (x, unit = '') => (typeof x !== 'number' || !Number.isFinite(x) ? '—' : `${Math.round(x).toLocaleString('en-US')}${unit}`);
/** A number to `digits` places, '—' when there is none (never 0.00 for a figure no run gave). */
const fix = (x, digits) => (typeof x !== 'number' || !Number.isFinite(x) ? '—' : x.toFixed(digits));
const kb = (x) => (x === null ? '—' : (x / 1024).toFixed(1));
const mb = (x) => (x === null ? '—' : fmt(x / 2 ** 20));

console.log(`\nmedians of ${runs} runs on ${machine.cpus} cores, ${machine.node}\n`);
if (scenarios.includes('storm')) {
  console.log(`join storm (ms from the last join until all N hold all N; ratio to relay)`);
  const at = `at N = ${sizes.at(-1)}`;
  console.log(`| server | ${sizes.map((n) => `N = ${n}`).join(' | ')} | CPU s ${at} | frames/client ${at} | KB/client ${at} | peak server MB ${at} |`);
  console.log(`|---|${sizes.map(() => '---').join('|')}|---|---|---|---|`);
  for (const t of targets) {
    const cells = sizes.map((n) => {
      const ms = pick('storm', n, t, 'ms');
      const relay = pick('storm', n, 'relay', 'ms');
      const failed = failures(rowsOf('storm', n, t), (r) => r.converged, 'did not converge');
      return flag(ms === null ? '—' : `${fmt(ms)} (${relay ? (ms / relay).toFixed(2) : '—'}×)`, failed);
    });
    const last = sizes.at(-1);
    console.log(
      `| ${t} | ${cells.join(' | ')} | ${fix(pick('storm', last, t, 'cpu'), 2)} | ${fmt(pick('storm', last, t, 'framesPerClient'))} | ${kb(pick('storm', last, t, 'bytesPerClient'))} | ${mb(pick('storm', last, t, 'hwm'))} |`,
    );
  }
}
if (scenarios.includes('resume')) {
  const how = args.deploy ? 'the server restarts, as in a deploy' : `all N lose their network at once${Number(args.outage) ? ` for ${args.outage} ms` : ''}`;
  console.log(`\nresume storm (${how}, and every client resumes: ms until every view is whole)`);
  console.log('| server | N | re-attach as Ably\'s clients do (SYNC) | asking to keep the view | ratio | KB per client, SYNC / kept | CPU s, SYNC / kept |');
  console.log('|---|---|---|---|---|---|---|');
  for (const t of targets.filter((t) => CLIENTS[t] === RollcallClient)) {
    for (const n of sizes) {
      const [a, b] = [pick('resume', n, t, 'ms'), pick('resume', n, `${t}:keep`, 'ms')];
      const time = (x, target) => flag(fmt(x), failures(rowsOf('resume', n, target), (r) => r.back, 'not whole'));
      console.log(
        `| ${t} | ${n} | ${time(a, t)} | ${time(b, `${t}:keep`)} | ${a && b ? (b / a).toFixed(2) : '—'}× | ${kb(pick('resume', n, t, 'bytesPerClient'))} / ${kb(pick('resume', n, `${t}:keep`, 'bytesPerClient'))} | ${fix(pick('resume', n, t, 'cpu'), 2)} / ${fix(pick('resume', n, `${t}:keep`, 'cpu'), 2)} |`,
      );
    }
  }
}
if (scenarios.includes('watched')) {
  console.log(`\nwatched room (N members attached with the PRESENCE mode only, one watcher: ms from the last join until it holds all N)`);
  console.log('| server | N | ms | CPU s | KB per member | KB to the watcher | peak server MB | members that heard others |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const t of targets.filter((t) => CLIENTS[t] === RollcallClient)) {
    for (const n of sizes) {
      const rows = rowsOf('watched', n, t);
      const heard = rows.map((r) => r.heardOthers ?? '—');
      const ms = flag(fmt(pick('watched', n, t, 'ms')), failures(rows, (r) => r.converged, 'did not converge'));
      console.log(
        `| ${t} | ${n} | ${ms} | ${fix(pick('watched', n, t, 'cpu'), 2)} | ${kb(pick('watched', n, t, 'bytesPerMember'))} | ${kb(pick('watched', n, t, 'watcherBytes'))} | ${mb(pick('watched', n, t, 'hwm'))} | ${heard.join(', ')} |`,
      );
    }
  }
}
if (scenarios.includes('fanout')) {
  console.log(`\nupdate fan-out (200 members × 20 updates)`);
  console.log('| server | deliveries/s (burst) | ratio to relay | p50 ms (steady) | p99 ms (steady) | CPU s (burst) | every member saw all 200 join |');
  console.log('|---|---|---|---|---|---|---|');
  const relay = pick('fanout', null, 'relay', 'deliveriesPerSecond');
  for (const t of targets) {
    const d = pick('fanout', null, t, 'deliveriesPerSecond');
    // A burst not all delivered within 120 s has no rate: it is counted here, not in the median.
    const rate = flag(fmt(d), failures(rowsOf('fanout', null, t), (r) => r.complete, 'incomplete'));
    console.log(
      `| ${t} | ${rate} | ${d && relay ? (d / relay).toFixed(2) : '—'} | ${fix(pick('fanout', null, t, 'p50'), 1)} | ${fix(pick('fanout', null, t, 'p99'), 1)} | ${fix(pick('fanout', null, t, 'cpu'), 2)} | ${all('fanout', t, 'joined')} |`,
    );
  }
}
if (scenarios.includes('churn')) {
  console.log(`\nchurn (100 members entering and leaving for 10 s; delivered: the events a watcher heard)`);
  console.log('| server | events sent/s | delivered/s | server CPU s per 1 000 delivered | ratio to relay | settled |');
  console.log('|---|---|---|---|---|---|');
  const relayCpu = pick('churn', null, 'relay', 'cpuPerKiloDelivered');
  for (const t of targets) {
    const cpu = pick('churn', null, t, 'cpuPerKiloDelivered');
    console.log(
      `| ${t} | ${fmt(pick('churn', null, t, 'eventsPerSecond'))} | ${fmt(pick('churn', null, t, 'deliveredPerSecond'))} | ${fix(cpu, 2)} | ${cpu !== null && relayCpu ? (cpu / relayCpu).toFixed(2) : '—'} | ${all('churn', t, 'settled')} |`,
    );
  }
}
if (scenarios.includes('idle')) {
  console.log(`\nidle (10 000 connections in rooms of 100)`);
  console.log('| server | server memory per connection | server memory before the first | every room full |');
  console.log('|---|---|---|---|');
  for (const t of targets) {
    const base = pick('idle', null, t, 'baseRss');
    console.log(`| ${t} | ${flag(fmt(pick('idle', null, t, 'bytesPerConnection'), ' B'), failures(rowsOf('idle', null, t)))} | ${base ? `${(base / 1048576).toFixed(1)} MB` : '—'} | ${all('idle', t, 'full')} |`);
  }
}
const errors = results.filter((r) => r.error);
if (errors.length) {
  console.log(`\nfailed runs (no figures; counted in their cells above)`);
  for (const r of errors) console.log(`- ${r.scenario}${r.size ? ` N=${r.size}` : ''} ${r.target} run ${r.run}: ${r.error.split('\n')[0]}`);
}
