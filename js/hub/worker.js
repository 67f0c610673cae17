// The Cloudflare host of the rollcall hub: a Worker that routes to a Durable Object per shard,
// and the Durable Object that runs the same Wasm hub as the Node host.
//
// The object uses the WebSocket Hibernation API, so that idle connections cost as little as the
// platform allows: no setTimeout or setInterval, the hub's next deadline is a storage alarm.
// It cannot send WebSocket pings: clients' heartbeats (`{"action":0}`) are answered by the
// runtime's auto-response without waking it, and their timestamps tell the hub who is alive.
// What the hub needs after an eviction (connections and members) is in storage, and each
// socket's transport id is in its attachment, so waking up makes no leave and no enter. The
// attachment also says when the socket last sent a frame, so that a client gone silent is
// still noticed by an object that sleeps more often than the client's heartbeat interval.

import { DurableObject } from 'cloudflare:workers';

import wasm from '../../pkg/hub/rollcall_hub_bg.wasm';
import { instantiate } from '../../pkg/hub/rollcall_hub_instance.js';
import { FAILED_KEPT_MS, frameKey, refused } from './failures.js';
import { transportId } from './ids.js';
import { MAX_BODY, REFUSED, foreignPage, forwarded, refusal as answer } from './pages.js';


const HUB_PATH = /^\/(time$|presence$|stats$|messages$|channels\/|keys\/|push\/)/;
/** Where TokenRequests are exchanged, and the shard that exchanges them all. */
const TOKEN_PATH = /^\/keys\/[^/]+\/requestToken$/;
const TOKEN_SHARD = 'rollcall:tokens';
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);
const HEARTBEAT = '{"action":0}';
/** How long presence events of a burst may wait to leave together: a Durable Object has no
 * turn of an event loop to batch in, and no timers, so the flush is an alarm this soon. */
const FLUSH_MS = 5;
/** How many stored records a waking object reads at a time. */
const WAKE_PAGE = 512;
/** The most inputs the hub takes between drains: what waits for a drain is held in the Wasm
 * memory, which never shrinks. */
const BATCH = 512;
/** The bytes of frames waiting in the Wasm memory past which they go at once rather than at the
 * flush (the SYNCs of a big channel that many clients attach in one burst), as on the Node host. */
const DRAIN_BYTES = 4 * 1024 * 1024;
/** The largest frame a client may send, as on the Node host: beyond it the socket closes (1009). */
const MAX_FRAME = 1024 * 1024;
/** How stale a socket's "last heard" in its attachment may get (it is written at most this
 * often, not on every frame); well under the shortest heartbeat interval, 1 s. */
const HEARD_EVERY = 250;
/** How stale the runtime's heartbeat replies may be when the hub's deadlines are run (see
 * `alarm`). */
const REPLIES_EVERY = 250;
/** Frames that made the hub trap (see `guard`): the storage key prefix, and how long one is
 * remembered. A frame that traps the hub twice within that time is kept out of it. */
const TRAPPED = 'trapped:';
/** Where wakes that made the hub trap are counted (a bug that stored records bring out). */
const WAKE_TRAPPED = `${TRAPPED}wake`;
/** The records a wake leaves out after so many wakes in a row trapped: history after two,
 * members too after three (with the channels' serials: their serials would have the hub vouch
 * for views that still show the members left out), everything after four. What is left out is
 * deleted: a shard that loses some of what it held is better than one that never starts. */
const LEFT_OUT = [null, null, /^h:/, /^[hms]:/, /^[cmhsn]:/];
const WAKES_IN_A_ROW_MS = 10 * 60 * 1000;
const encoder = new TextEncoder();

/** A frame's storage key under TRAPPED. */
const trappedKey = (bytes) => `${TRAPPED}${frameKey(bytes)}`;
const decoder = new TextDecoder();

/** A refusal as the hub's own errors are, readable by a page on another origin as the hub's
 * answers are. */
function refusal(statusCode, code, message, request) {
  const { status, headers, body } = answer(statusCode, code, message);
  headers.vary = 'Origin';
  const origin = request?.headers.get('origin');
  if (origin) Object.assign(headers, { 'access-control-allow-origin': origin, 'access-control-allow-credentials': 'true' });
  return new Response(body, { status, headers });
}

/** The hub's answer to a REST request: `[status, headers, body]`, or `undefined` for a path
 * that is not the hub's. */
function askRest(hub, now, request, url, body) {
  const header = (name) => request.headers.get(name) ?? undefined;
  return hub.rest(now, request.method, url.pathname + url.search, header('authorization'), header('accept'), header('origin'), body);
}

/** An upgrade the hub refused, answered on a socket accepted for it alone (not the object's):
 * the hub's frames (its ERROR), then its close. */
function refusedUpgrade(frames, code) {
  const [client, server] = Object.values(new WebSocketPair());
  server.accept();
  for (const frame of frames) server.send(frame);
  server.close(code, 'refused');
  return new Response(null, { status: 101, webSocket: client });
}

/** A request's body, or `null` if it is longer than `limit` bytes (it is not read further). */
async function readAtMost(request, limit) {
  const chunks = [];
  let size = 0;
  const reader = request.body?.getReader();
  for (;;) {
    const { done, value } = (await reader?.read()) ?? { done: true };
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    body.set(chunk, at);
    at += chunk.byteLength;
  }
  return body;
}

export default {
  /** Routes WebSocket upgrades and REST reads to the shard's object; the rest is static. */
  async fetch(request, env) {
    const url = new URL(request.url);
    const upgrade = request.headers.get('upgrade')?.toLowerCase() === 'websocket';
    if ((upgrade && url.pathname === '/') || HUB_PATH.test(url.pathname) || url.pathname === '/_rollcall/state') {
      // Every shard would fail to start on them, and clients would retry without a word.
      const problem = settingsProblem(env);
      if (problem) return refusal(500, 50000, `rollcall: ${problem}`, request);
      // A proxy on this machine (a tunnel) may name localhost while serving anyone: it says so.
      if (!hasKeys(env) && (!LOOPBACK.has(url.hostname) || forwarded(request.headers))) {
        return refusal(
          403,
          40300,
          'rollcall: no keys configured. Development mode (any key, any clientId) is for localhost only; ' +
            'set ROLLCALL_KEYS (wrangler secret put ROLLCALL_KEYS) to serve other hosts.',
          request,
        );
      }
      // A page from another site open in the developer's browser, which is on localhost too.
      if (!hasKeys(env) && foreignPage(request.headers.get('origin'))) {
        return refusal(403, 40300, REFUSED.foreignPage, request);
      }
      // The state of a shard is for its operators: with keys, only a key may read it.
      if (url.pathname === '/_rollcall/state' && hasKeys(env) && !presentsKey(request, env)) {
        return refusal(401, 40100, 'rollcall: reading the state needs a key (Basic authorization)', request);
      }
      // A body is read for one thing only, a TokenRequest, and only as long as one may be:
      // anything else would be read whole into a shard's memory before it is refused.
      if (request.method === 'POST') {
        if (!TOKEN_PATH.test(url.pathname)) return refusal(405, 40500, 'only a TokenRequest is sent with POST', request);
        // With its length said: a body without one could be any size (`Number(null)` is 0).
        const length = request.headers.get('content-length');
        if (!/^\d+$/.test(length ?? '') || Number(length) > MAX_BODY) {
          return refusal(413, 40009, `a TokenRequest is sent with its content-length, at most ${MAX_BODY} bytes`, request);
        }
      }
      // TokenRequests go to one shard, whatever the query says: it remembers which were used.
      // The names under `rollcall:` are the host's own.
      const asked = url.searchParams.get('shard');
      if (asked?.startsWith('rollcall:')) return refusal(400, 40000, 'shard names beginning with rollcall: are reserved', request);
      // Each name is an object: names are held to a sensible form (a tenant, a room).
      if (asked && (asked.length > 256 || /\p{Cc}/u.test(asked))) {
        return refusal(400, 40000, 'a shard name has at most 256 characters, none of them control characters', request);
      }
      const shard = TOKEN_PATH.test(url.pathname) ? TOKEN_SHARD : asked || env.ROLLCALL_DEFAULT_SHARD || 'default';
      // Credentials are checked here, before any object is reached: one that refuses a
      // connection keeps its socket until the peer answers the close, and a peer that never
      // does would take the shard's sockets one by one.
      let forward = request;
      if (hasKeys(env) && url.pathname !== '/_rollcall/state') {
        let body;
        if (request.method === 'POST') {
          body = await readAtMost(request, MAX_BODY);
          if (!body) return refusal(413, 40009, REFUSED.tooLarge, request);
          forward = new Request(request, { body });
        }
        const refused = gate(request, url, upgrade, body);
        if (refused) return refused;
      }
      try {
        return await env.HUB.get(env.HUB.idFromName(shard)).fetch(forward);
      } catch (error) {
        // The object reset (its hub trapped, a deploy) or is overloaded: an Ably error, with
        // CORS, rather than the platform's page, which a browser reports as a CORS failure.
        console.error(`rollcall: shard ${shard} could not answer (${error?.message ?? error})`);
        return refusal(500, 50000, 'rollcall: the shard could not answer this request; try again', request);
      }
    }
    if (env.ASSETS) {
      const asset = await env.ASSETS.fetch(request);
      // The package (its ES module and Wasm) may be imported by a page of another origin, as
      // from the Node host: it is public, and a page needs more than it to connect.
      if (!url.pathname.startsWith('/rollcall/') || !asset.ok) return asset;
      const shared = new Response(asset.body, asset);
      shared.headers.set('access-control-allow-origin', '*');
      return shared;
    }
    return new Response('not found\n', { status: 404 });
  },
};

/** A Wasm instance of the hub for the Worker's own checks (keys, credentials), made once per
 * isolate and made again if it ever traps. */
let checker = null;
const checks = () => (checker ??= instantiate(wasm));

/**
 * The hub's answer to a request whose credentials it refuses, given by a hub made for this
 * request alone, or `null` for a request to pass to its shard: a WebSocket the hub would refuse
 * gets the same ERROR frame and close as from its shard, and a REST read or TokenRequest the
 * same 401. A TokenRequest that passes is exchanged by the token shard, which alone knows which
 * were used. A hub that traps here lets the request through, to the object that blames it.
 */
function gate(request, url, upgrade, body) {
  let hub;
  try {
    const { Hub, memory } = checks();
    hub = new Hub(settingsChecked.config);
    const now = Date.now();
    if (upgrade) {
      hub.open(now, 1, url.search.slice(1), crypto.getRandomValues(new Uint8Array(24)));
      const frames = [];
      let close = null;
      for (const out of hub.drain()) {
        if (out[0] === 0) {
          const bytes = new Uint8Array(memory.buffer, out[3], out[4]);
          frames.push(out[5] ? bytes.slice() : decoder.decode(bytes));
        } else if (out[0] === 1) close = out[2];
      }
      return close === null ? null : refusedUpgrade(frames, close);
    }
    // Judged without an envelope, inside which every answer is a 200 (a refusal too): a request
    // without credentials would otherwise wake its shard. Answered in one if it asked for one.
    const plain = new URL(url);
    plain.searchParams.delete('envelope');
    let answer = askRest(hub, now, request, plain, body);
    if (!answer) return null;
    const [status] = answer;
    // Only what the shard alone can answer goes on: a read the credentials allow, or one whose
    // query names the shard's serials (400 comes after the credentials are checked). The
    // rest (a refusal, the time, a preflight, a wrong method or path) is answered here, so
    // that a request without credentials neither makes nor wakes an object.
    const forward = TOKEN_PATH.test(url.pathname) ? status === 200 : (status === 200 && url.pathname !== '/time') || status === 400;
    if (forward) return null;
    if (plain.search !== url.search) answer = askRest(hub, now, request, url, body);
    const [answered, headers, text] = answer;
    return new Response(request.method === 'HEAD' ? null : text, { status: answered, headers });
  } catch (error) {
    if (!(error instanceof WebAssembly.RuntimeError)) throw error;
    console.error(`rollcall: the Worker's credential check trapped (${error.message}); passing the request on`);
    checker = null;
    hub = null;
    return null;
  } finally {
    hub?.free();
  }
}

/** ROLLCALL_KEYS as the hub takes them: `appId.keyId:secret,...`, or a JSON list of
 * `{ "key", "capability" }` (as the Node host's config file has them) for keys that may do
 * less; `null` when that list is not JSON. */
function keysSetting(env) {
  const text = String(env.ROLLCALL_KEYS ?? '').trim();
  if (!text.startsWith('[')) return text;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** The keys the hub checks, as `ROLLCALL_KEYS` names them (`,` and `[]` alone name none). */
function keysOf(env) {
  const setting = keysSetting(env);
  if (Array.isArray(setting)) return setting.map((entry) => String(entry?.key ?? '').trim()).filter(Boolean);
  return String(setting ?? '')
    .split(',')
    .map((k) => k.trim())
    .filter(Boolean);
}

const hasKeys = (env) => keysOf(env).length > 0;

/** The hub settings of `ROLLCALL_HUB`, a JSON object (`{ "remainPresentFor": 30000 }`), or
 * `null` when it is not one. */
function hubSettings(env) {
  const setting = env.ROLLCALL_HUB ?? '';
  // `[vars]` in wrangler.toml may give a table (an object) rather than JSON text.
  let settings = setting;
  if (typeof setting !== 'object') {
    const text = String(setting).trim();
    if (!text) return {};
    try {
      settings = JSON.parse(text);
    } catch {
      return null;
    }
  }
  return settings && typeof settings === 'object' && !Array.isArray(settings) ? settings : null;
}

/** `ROLLCALL_HUB` as text, to tell when it changed. */
const hubSettingText = (env) => (typeof env.ROLLCALL_HUB === 'object' ? JSON.stringify(env.ROLLCALL_HUB) : String(env.ROLLCALL_HUB ?? ''));

/** An object takes 32 768 WebSockets, closing ones included: the hub says it is full (40150,
 * clients try again later) before the runtime refuses a socket with a bare 500. */
const EDGE_CONNECTIONS = 30_000;

/** A connection's record (its channels, by name, up to 1 024 bytes each, twice over after a
 * recover) must fit in one storage value (2 MB): at most this many channels per connection. */
const EDGE_CHANNELS_PER_CONNECTION = 800;

/** A storage write that failed (a value or key larger than storage takes, or storage itself). */
class StorageFailure extends Error {
  constructor(cause) {
    super(String(cause?.message ?? cause), { cause });
  }
}

/** The settings the host's own: they are not for `ROLLCALL_HUB`. */
const HOST_SETTINGS = ['keys', 'hostPings', 'persistence'];

/** Every shard's hub settings, as JSON: the edge's defaults, `ROLLCALL_HUB` over them, and the
 * keys. Keys that cannot be read fail the object rather than leave it in development mode. */
function hubConfig(env) {
  return JSON.stringify({
    serverId: env.ROLLCALL_SERVER_ID ?? 'rollcall-edge',
    // An object's isolate has 128 MB: the history of its channels may hold an eighth of it,
    // and the members a quarter.
    maxHistoryBytes: 16 * 1024 * 1024,
    // What dropped connections have waiting for their resume, another eighth.
    maxReplayBytes: 16 * 1024 * 1024,
    maxMemberBytes: 32 * 1024 * 1024,
    maxMemberBytesPerClient: 4 * 1024 * 1024,
    maxConnections: EDGE_CONNECTIONS,
    ...hubSettings(env),
    keys: keysSetting(env) ?? [null],
    hostPings: false,
    persistence: true,
  });
}

/** What is wrong with `ROLLCALL_KEYS` or `ROLLCALL_HUB`, as the hub reads them (its message
 * names no secret), or `null`; checked once per isolate and value, with the hub settings they
 * make (`config`, for `gate`). */
let settingsChecked = { keys: null, hub: null, problem: null, config: null };
function settingsProblem(env) {
  const keys = String(env.ROLLCALL_KEYS ?? '');
  const hub = hubSettingText(env);
  if (settingsChecked.keys !== keys || settingsChecked.hub !== hub) {
    const problem = check(env);
    settingsChecked = { keys, hub, problem, config: problem ? null : hubConfig(env) };
  }
  return settingsChecked.problem;
}

function check(env) {
  // JSON's own error would quote the text around the mistake: a secret, maybe.
  if (keysSetting(env) === null) return 'ROLLCALL_KEYS cannot be read: a list of keys that is not JSON';
  const settings = hubSettings(env);
  if (settings === null) return 'ROLLCALL_HUB cannot be read: it is not a JSON object of hub settings';
  const own = HOST_SETTINGS.filter((name) => name in settings);
  if (own.length) return `ROLLCALL_HUB cannot be read: ${own.join(', ')} is the host's to set`;
  if (settings.maxConnections > EDGE_CONNECTIONS) {
    return `ROLLCALL_HUB cannot be read: maxConnections is at most ${EDGE_CONNECTIONS} on the edge (an object takes 32 768 sockets)`;
  }
  if (settings.maxChannelsPerConnection > EDGE_CHANNELS_PER_CONNECTION) {
    return `ROLLCALL_HUB cannot be read: maxChannelsPerConnection is at most ${EDGE_CHANNELS_PER_CONNECTION} on the edge (a connection's record is one storage value, at most 2 MB)`;
  }
  // The Worker's instance (each object has one of its own), had outside the `try`: an
  // instance that cannot be made is no problem of the settings', and is not remembered; nor is
  // a trap, after which the instance is made again.
  const { Hub } = checks();
  // The keys alone first, so that a mistake is blamed on the setting that holds it.
  for (const [setting, config] of [
    ['ROLLCALL_KEYS', JSON.stringify({ keys: keysSetting(env) })],
    ['ROLLCALL_HUB', hubConfig(env)],
  ]) {
    try {
      new Hub(config).free();
    } catch (error) {
      if (error instanceof WebAssembly.RuntimeError) {
        checker = null;
        throw error;
      }
      return `${setting} cannot be read: ${error.message}`;
    }
  }
  return null;
}

/** Whether the request carries `Authorization: Basic base64(key)` for one of the keys. */
function presentsKey(request, env) {
  // The scheme's name in any case (RFC 9110), as the hub reads it.
  const [, encoded] = /^\s*basic\s+(\S+)\s*$/i.exec(request.headers.get('authorization') ?? '') ?? [];
  if (!encoded) return false;
  let key;
  try {
    key = atob(encoded);
  } catch {
    return false;
  }
  // In time that does not tell how much of a guess was right.
  const same = (a, b) => a.length === b.length && [...a].reduce((diff, c, i) => diff | (c.charCodeAt(0) ^ b.charCodeAt(i)), 0) === 0;
  return keysOf(env).some((k) => same(k, key));
}

/** One shard of the hub: its channels, its connections, their presence. */
export class HubObject extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.config = hubConfig(env);
    /** transport id → WebSocket */
    this.sockets = new Map();
    /** transport id → the last auto-response time reported to the hub */
    this.answered = new Map();
    /** When the runtime's heartbeat replies were last read (see `alarm`). */
    this.repliesReadAt = 0;
    /** transport id → the "last heard" time its attachment holds */
    this.heardAt = new Map();
    this.armedFor = null;
    /** Frames that made the hub trap: key → { at, times } (see `guard`). */
    this.trapped = new Map();
    /** When the events of the current burst leave (an alarm), if they wait. */
    this.flushAt = null;
    /** Inputs since the last drain. */
    this.undrained = 0;
    /** The socket being opened, not yet the object's: what the hub sends it, and its close. */
    this.opening = null;
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(HEARTBEAT, HEARTBEAT));
    ctx.blockConcurrencyWhile(() => {
      /** A Wasm instance of its own: a hub that traps takes only this object's with it (the
       * object resets, and the next one makes another), and its memory, which never shrinks,
       * goes with the object. One that cannot be made (no memory) resets the object too. */
      try {
        this.wasm = instantiate(wasm);
      } catch (error) {
        this.ctx.abort(`rollcall: no Wasm instance for the hub: ${error.message}`);
        throw error;
      }
      return this.guard(
        () => this.wake(),
        () => WAKE_TRAPPED,
      );
    });
  }

  /** Rebuilds the hub from storage and the sockets that stayed open while the object slept. */
  async wake() {
    const storage = this.ctx.storage;
    // Wakes that trapped before this one, in a row (within minutes): counted by `guard`.
    const counted = await storage.get(WAKE_TRAPPED);
    const failedWakes = counted && Date.now() - counted.at < WAKES_IN_A_ROW_MS ? counted : null;
    if (failedWakes) this.trapped.set(WAKE_TRAPPED, failedWakes);
    const leftOut = LEFT_OUT[Math.min(failedWakes?.times ?? 0, LEFT_OUT.length - 1)];
    const dropped = [];
    let next = 1;
    const heard = [];
    for (const ws of this.ctx.getWebSockets()) {
      const attachment = ws.deserializeAttachment();
      const id = attachment?.t;
      if (!Number.isInteger(id)) continue;
      next = Math.max(next, id + 1);
      // Closed by the object, and not yet by its peer (see `cutOff`): not a transport.
      if (attachment.gone) continue;
      this.sockets.set(id, ws);
      // Its last frame, or the last heartbeat the runtime answered for it, whichever is later.
      const answered = this.ctx.getWebSocketAutoResponseTimestamp(ws)?.getTime() ?? 0;
      if (answered) this.answered.set(id, answered);
      const at = Math.max(attachment.in ?? 0, answered);
      if (at) heard.push([id, at]);
    }
    this.nextTransport = next;
    // The records in pages, each given to the hub and dropped: a shard's records may be tens
    // of megabytes, and the isolate has 128 MB, which the hub they make shares.
    const restoring = this.wasm.Hub.restoring(this.config, Date.now(), Uint32Array.from(this.sockets.keys()));
    let records = 0;
    let boots;
    for (let startAfter; ; ) {
      const page = await storage.list(startAfter === undefined ? { limit: WAKE_PAGE } : { startAfter, limit: WAKE_PAGE });
      const batch = [];
      for (const [key, value] of page) {
        startAfter = key;
        // Not copied: the hub copies each in as it reads it.
        if (leftOut?.test(key)) dropped.push(key);
        else if (/^[cmhsn]:/.test(key)) batch.push([key, value instanceof Uint8Array ? value : new Uint8Array(value)]);
        else if (key === 'boots') boots = value;
        else if (key.startsWith(TRAPPED)) {
          if (Date.now() - value.at < FAILED_KEPT_MS) this.trapped.set(key, value);
          else await storage.delete(key);
        }
      }
      records += batch.length;
      restoring.feed(batch);
      if (page.size < WAKE_PAGE) break;
    }
    this.hub = restoring.finish();
    if (counted) {
      if (dropped.length) {
        console.error(`rollcall: ${failedWakes.times} wakes in a row made the hub trap; left out ${dropped.length} stored records (${leftOut.source})`);
        for (let i = 0; i < dropped.length; i += 128) await storage.delete(dropped.slice(i, i + 128));
      }
      this.leftOut = { records: dropped.length, at: Date.now() };
      this.trapped.delete(WAKE_TRAPPED);
      await storage.delete(WAKE_TRAPPED);
    }
    for (const [id, at] of heard) this.hub.heard(id, at);
    const stale = this.hub.takeStale();
    for (let i = 0; i < stale.length; i += 128) await storage.delete(stale.slice(i, i + 128));
    // Counted in storage only by an object that holds something: a request for a shard no one
    // uses (with no credentials, say) must not leave a record behind.
    this.boots = (boots ?? 0) + 1;
    this.saved = records > 0 || boots !== undefined;
    if (this.saved) await storage.put('boots', this.boots);
    await this.drain();
  }

  async fetch(request) {
    // Requests this object was given since it woke, for its operators (and tests).
    this.served = (this.served ?? 0) + 1;
    // A connection request (its query) or a REST read (its method and URL) that made the hub
    // trap twice is kept out of it, as a frame is (see `guard`).
    const url = new URL(request.url);
    const upgrade = request.headers.get('upgrade')?.toLowerCase() === 'websocket';
    // A POST (a TokenRequest to exchange) is read first: its body is part of the request.
    let body;
    if (request.method === 'POST') {
      body = await readAtMost(request, MAX_BODY);
      if (!body) return refusal(413, 40009, REFUSED.tooLarge, request);
    }
    const said = upgrade ? `open:${url.search}` : `http:${request.method} ${url.pathname}${url.search}\n`;
    const key = trappedKey(body ? new Uint8Array([...encoder.encode(said), ...body]) : encoder.encode(said));
    const kept = this.keptOut(key, Date.now());
    if (kept && !upgrade) return refusal(500, 50000, REFUSED.trapped, request);
    return this.guard(
      () => this.serve(request, url, upgrade, kept, body),
      () => !kept && key,
    );
  }

  async serve(request, url, upgrade, kept, requestBody) {
    if (upgrade) {
      let id;
      [id, this.nextTransport] = transportId(this.nextTransport, this.sockets);
      // The hub's answer is had before the socket is the object's: a refusal goes on a socket
      // accepted for it alone. One the object accepts (hibernatable) and closes before the
      // upgrade completes keeps its connection open, closing, until the peer gives up.
      const opening = (this.opening = { id, frames: [], close: null });
      try {
        if (kept) this.hub.refuse(Date.now(), id, 'this connection request made the hub fail; it is refused');
        else this.hub.open(Date.now(), id, url.search.slice(1), crypto.getRandomValues(new Uint8Array(24)));
        await this.drain();
      } finally {
        this.opening = null;
      }
      if (opening.close !== null) return refusedUpgrade(opening.frames, opening.close);
      const [client, server] = Object.values(new WebSocketPair());
      try {
        this.ctx.acceptWebSocket(server);
      } catch (error) {
        // No room for another socket (the runtime's limit, which sockets closing unanswered
        // count against): the connection just opened must not stay live with no socket, nor,
        // unless resumed with channels, be held for a resume its client cannot make.
        console.error(`rollcall: a socket could not be accepted (${error?.message ?? error})`);
        this.hub.unaccepted(Date.now(), id);
        await this.drain();
        return refusal(503, 50004, 'rollcall: this shard has no room for another connection; try again later', request);
      }
      this.stampHeard(server, id, Date.now());
      this.sockets.set(id, server);
      for (const frame of opening.frames) server.send(frame);
      return new Response(null, { status: 101, webSocket: client });
    }
    if (url.pathname === '/_rollcall/state') {
      const [connections, liveConnections, channels, members, historyBytes, memberBytes] = this.hub.stats();
      // `sockets`: those the hub may use; `closing`: those closed by the object, not yet by their peer.
      const sockets = this.sockets.size;
      const closing = this.ctx.getWebSockets().filter((ws) => ws.deserializeAttachment()?.gone).length;
      const wasmMemoryBytes = this.wasm.memory.buffer.byteLength;
      return Response.json({ boots: this.boots, served: this.served, saved: this.saved, connections, liveConnections, channels, members, historyBytes, memberBytes, wasmMemoryBytes, sockets, closing, leftOut: this.leftOut ?? null });
    }
    const response = askRest(this.hub, Date.now(), request, url, requestBody);
    if (!response) return new Response('not found\n', { status: 404 });
    // What it changed (a TokenRequest's nonce, used) is written before the answer leaves.
    await this.drain();
    const [status, headers, body] = response;
    const empty = status === 204 || request.method === 'HEAD';
    return new Response(empty ? null : body, { status, headers });
  }

  async webSocketMessage(ws, message) {
    const attachment = ws.deserializeAttachment();
    // A socket the object closed whose peer goes on sending: it costs nothing more.
    if (attachment?.gone) return;
    const id = attachment?.t ?? 0;
    const now = Date.now();
    if (now - (this.heardAt.get(id) ?? 0) >= HEARD_EVERY) this.stampHeard(ws, id, now);
    // A string has at least as many bytes in UTF-8 as it has UTF-16 units: one longer than the
    // limit is refused before it is encoded (the runtime passes on frames of up to 32 MiB, and
    // encoding one took a hundred megabytes of an isolate's 128).
    const long = typeof message === 'string' && message.length > MAX_FRAME;
    const bytes = long ? null : typeof message === 'string' ? encoder.encode(message) : new Uint8Array(message);
    if (long || bytes.byteLength > MAX_FRAME) {
      this.cutOff(ws, id, 1009, 'frame too large');
      await this.guard(() => this.hub.tooLarge(now, id, MAX_FRAME));
      return this.closed(ws, id);
    }
    // A frame that made the hub trap twice is not given to it again (a client resends what
    // was not acknowledged when it resumes): the connection that sends it fails instead, alone
    // (50000: a client does not retry), and its members leave.
    const kept = this.trapped.size > 0 && this.keptOut(trappedKey(bytes), now);
    const take = kept
      ? () => this.hub.refuse(now, id, 'this message made the hub fail; it is refused')
      : () => this.hub.frame(now, id, bytes, typeof message !== 'string');
    // Only the frame is blamed for a trap while the hub takes it, not what follows.
    const queued = await this.guard(take, () => !kept && trappedKey(bytes));
    await this.guard(() => (queued > DRAIN_BYTES ? this.drain() : this.drainSoon()));
  }

  /**
   * Runs the hub. A trap in its Wasm is a bug (the hub must not panic, and the fuzzer looks for
   * one), and it leaves the hub unusable: every later call would fail. Rather than stay wedged
   * until the runtime evicts it, the object resets itself (`ctx.abort`): its sockets close, its
   * clients reconnect to a fresh object restored from storage, and resume, so that nobody sees
   * a leave or an enter.
   */
  /** Whether the input stored under `key` made the hub trap twice, and is kept out of it. */
  keptOut(key, now) {
    return this.trapped.size > 0 && refused(this.trapped.get(key), now);
  }

  async guard(work, culprit) {
    try {
      return await work();
    } catch (error) {
      if (error instanceof WebAssembly.RuntimeError || error instanceof StorageFailure) {
        console.error(`rollcall: ${error instanceof StorageFailure ? 'a storage write failed' : 'the hub trapped'} (${error.message}); resetting this object`);
        // The frame that did it, if one did, is remembered: if it does it again, the next
        // object keeps it out of its hub. (A trap that depends on the hub's state rather than
        // the frame, which other clients may send too, is not blamed on a frame at once.)
        // A storage write that failed is no frame's doing: nothing is blamed for it.
        const key = error instanceof StorageFailure ? null : culprit?.();
        try {
          if (key) {
            const times = (this.trapped.get(key)?.times ?? 0) + 1;
            await this.ctx.storage.put(key, { at: Date.now(), times });
            // Written before the reset, which drops what is not.
            await this.ctx.storage.sync?.();
          }
        } finally {
          // Reset whether or not that could be written.
          this.ctx.abort(`rollcall: resetting: ${error.message}`);
        }
      }
      throw error;
    }
  }

  /** Lets the events of a burst gather for FLUSH_MS, then sends them together (the alarm); a
   * burst of more than BATCH inputs leaves every BATCH of them, so that what waits is bounded. */
  async drainSoon() {
    if (++this.undrained >= BATCH) {
      await this.drain();
      return;
    }
    if (this.flushAt !== null) return;
    this.flushAt = Date.now() + FLUSH_MS;
    await this.arm();
  }

  async webSocketClose(ws, code, reason) {
    // The closing handshake: the runtime leaves the answer to the object. 1005 and 1006 say
    // that no code came, and cannot be sent.
    try {
      ws.close(code === 1005 || code === 1006 ? 1000 : code, reason);
    } catch {
      // Closed already.
    }
    if (!ws.deserializeAttachment()?.gone) await this.closed(ws);
  }

  async webSocketError(ws) {
    if (!ws.deserializeAttachment()?.gone) await this.closed(ws);
  }

  /**
   * Closes a socket for the object's own reasons. A Worker cannot drop a connection, only
   * start the closing handshake, and a peer that never answers keeps the socket: marked gone
   * in its attachment (which outlives an eviction), its frames are ignored and a later wake
   * does not take it for a transport.
   */
  cutOff(ws, id, code, reason) {
    this.sockets.delete(id);
    this.answered.delete(id);
    this.heardAt.delete(id);
    try {
      ws.serializeAttachment({ t: id, gone: true });
      ws.close(code, reason);
    } catch {
      // Already closed.
    }
  }

  async closed(ws, id = this.idOf(ws)) {
    this.sockets.delete(id);
    this.answered.delete(id);
    this.heardAt.delete(id);
    await this.guard(async () => {
      this.hub.closed(Date.now(), id);
      await this.drainSoon();
    });
  }

  async alarm() {
    this.armedFor = null;
    await this.guard(async () => {
      const now = Date.now();
      const due = this.hub.nextTimeout();
      // A flush (see `drainSoon`) before any deadline of the hub needs no more than the drain:
      // reading every socket's heartbeats at each flush of a burst costs O(sockets) each time.
      if (due >= 0 && now >= due) {
        // Heartbeats the runtime answered while the object slept are signs of life. Read at
        // most four times a second: deadlines that fall close together (a return's notice
        // keeps a quarter-second tick) would each cost a read of every socket. A reply read up
        // to a quarter second late kills no one: the hub allows a second at least past a
        // heartbeat interval, and a live connection's deadlines fall on the second.
        if (now - this.repliesReadAt >= REPLIES_EVERY) {
          this.repliesReadAt = now;
          for (const [id, ws] of this.sockets) {
            const at = this.ctx.getWebSocketAutoResponseTimestamp(ws)?.getTime();
            if (at && at > (this.answered.get(id) ?? 0)) {
              this.answered.set(id, at);
              this.hub.pong(at, id);
            }
          }
        }
        this.hub.timeout(now);
      }
      await this.drain();
    });
  }

  /** Keeps in the socket's attachment (which outlives an eviction) when it was last heard. */
  stampHeard(ws, id, at) {
    ws.serializeAttachment({ t: id, in: at });
    this.heardAt.set(id, at);
  }

  idOf(ws) {
    return ws.deserializeAttachment()?.t ?? 0;
  }

  /** Writes what changed, carries out the hub's outputs, and re-arms the alarm. */
  async drain() {
    // Everything pending leaves now; events that arrive meanwhile ask for a flush of their own.
    this.flushAt = null;
    this.undrained = 0;
    const outputs = this.hub.drain();
    // The writes are issued before anything is sent: the output gate then holds back every
    // frame (an ACK, the event of an enter) until what it reports is stored. A frame sent
    // before them would leave at once, and a write lost after it would undo what clients heard.
    const written = this.write(this.hub.takeChanges());
    for (const out of outputs) {
      if (out[0] === 0) {
        // Read in place (see `drain` in src/wasm/hub.rs), copied once into what is sent.
        const [, at, count, bytesAt, length, binary] = out;
        const bytes = new Uint8Array(this.wasm.memory.buffer, bytesAt, length);
        const payload = binary ? bytes.slice() : decoder.decode(bytes);
        for (const id of new Uint32Array(this.wasm.memory.buffer, at, count)) {
          if (id === this.opening?.id) this.opening.frames.push(payload);
          try {
            this.sockets.get(id)?.send(payload);
          } catch {
            // A socket that closed meanwhile: its close event tells the hub.
          }
        }
      } else if (out[0] === 1) {
        if (out[1] === this.opening?.id) this.opening.close = out[2];
        const ws = this.sockets.get(out[1]);
        if (ws) this.cutOff(ws, out[1], out[2], 'closed by the hub');
      }
      // out[0] === 2 asks for a ping, which a Durable Object cannot send: keep-alives here are
      // protocol heartbeats, which the hub sends itself when it is told the host cannot ping.
    }
    try {
      await written;
    } catch (error) {
      // What the hub holds and what is stored now differ, and a later wake would undo what
      // clients heard: the object resets as after a trap (see `guard`), and starts again from
      // what is stored. Its clients resume on it.
      throw new StorageFailure(error);
    }
    await this.arm();
  }

  /** Issues the writes of one drain, all before any is awaited, so that storage commits them as
   * one (a Durable Object's writes with no await between them are atomic): a channel's serial is
   * never stored without the members it counts, nor they without it. */
  write(changes) {
    const puts = {};
    const deletes = [];
    for (const [key, value] of changes) {
      if (value) puts[key] = value;
      else deletes.push(key);
    }
    if (changes.length && !this.saved) {
      this.saved = true;
      puts.boots = this.boots;
    }
    const keys = Object.keys(puts);
    const writes = [];
    for (let i = 0; i < keys.length; i += 128) {
      writes.push(this.ctx.storage.put(Object.fromEntries(keys.slice(i, i + 128).map((k) => [k, puts[k]]))));
    }
    for (let i = 0; i < deletes.length; i += 128) writes.push(this.ctx.storage.delete(deletes.slice(i, i + 128)));
    return Promise.all(writes);
  }

  /** One alarm: the hub's next deadline, or the pending flush if sooner. */
  async arm() {
    const deadline = this.hub.nextTimeout();
    const next = this.flushAt === null ? deadline : deadline < 0 ? this.flushAt : Math.min(deadline, this.flushAt);
    if (next !== this.armedFor) {
      this.armedFor = next;
      if (next < 0) await this.ctx.storage.deleteAlarm();
      else await this.ctx.storage.setAlarm(next);
    }
  }
}
