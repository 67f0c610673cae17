// The Node host of the rollcall hub: one port for HTTP and WebSocket, the Wasm hub inside.
//
// The host only moves bytes, time and one timer; every decision is the hub's. It serves the
// hub's REST reads, the demo page from www/ and the browser build of the package.
//
//   node js/hub/node.js           (or `npm start`)
//   PORT=8080 HOST=127.0.0.1 ROLLCALL_KEYS=app.key:secret,...

import { randomFillSync } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import { extname, join, normalize, posix, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';

import { WebSocketServer } from 'ws';

import { initSync, Hub } from '../../pkg/hub/rollcall_hub.js';
import { frameKey, refused } from './failures.js';
import { transportId } from './ids.js';
import { MAX_BODY, REFUSED, foreignPage, forwarded, refusal, toThisMachine } from './pages.js';

const root = resolve(fileURLToPath(new URL('../..', import.meta.url)));

/** The largest frame the host accepts: well above maxMessageSize, so the hub can answer an
 * oversized message with 40009 rather than the socket dying. */
const MAX_FRAME = 1 << 20;

/** The most inputs the hub takes between drains by default (see `drainSoon`). */
const BATCH = 512;
/** How long a reader over its unread-bytes limit may go without reading any of them. */
const STALL_MS = 5000;
/** A socket's HTTP requests waiting behind the one being answered, at most (see `onRequest`). */
const MAX_PIPELINED = 16;
/** How long an HTTP socket may go without reading anything, or without a write completing (a
 * WebSocket is not held to it: ws clears it on upgrade). Node counts a large answer still being
 * read as idle until it is all taken: long enough for a 4 MiB batch read at 50 KB/s. */
const IDLE_HTTP_MS = 120_000;
/** The most frame bytes left waiting for a drain within a turn (see `onMessage`). */
const DRAIN_BYTES = 4 * 1024 * 1024;

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.d.ts': 'text/plain; charset=utf-8',
};

/** URL prefixes served from the package, and the folders they map to. */
const STATIC = [
  ['/rollcall/js/', join(root, 'js')],
  ['/rollcall/pkg/client/', join(root, 'pkg', 'client')],
  ['/', join(root, 'www')],
];

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/**
 * Starts a hub. Resolves once it listens; `close()` stops it.
 * @param {object} [options]
 * @param {number} [options.port] 0 picks a free port
 * @param {string} [options.host]
 * @param {string} [options.keys] `appId.keyId:secret,...`; empty for development mode
 * @param {object} [options.hub] hub settings (remainPresentFor, heartbeatInterval, ...)
 * @param {(line: string) => void} [options.log]
 * @param {number} [options.batch] the most inputs taken between drains within one turn (512)
 * @param {string[]} [options.allowedOrigins] in development mode, origins other than this
 *   machine's whose pages may connect (a forwarded port, a tunnel)
 */
/** The time the hub is given, in ms since the epoch: the host's clock, except that it never
 * goes back. The hub keeps the latest time it was given; after a step back of the host's clock
 * (an NTP correction), a timer set from the raw clock would wait that much longer, holding
 * every grace window and heartbeat check past its time. A step back is taken up instead, and
 * given back at half the clock's pace (the hub's time runs at half speed until it meets the
 * clock again): kept ahead for good, it would hold tokens to a time they have not reached. */
let behind = 0;
let exact = 0;
let lastWall = 0;
function clock() {
  const wall = Date.now();
  behind = Math.max(0, behind - Math.max(0, wall - lastWall) / 2);
  lastWall = wall;
  // Kept to the fraction (at half pace, a millisecond is half of one), whole once given.
  const t = wall + behind;
  if (t < exact) behind = exact - wall;
  else exact = t;
  return Math.floor(exact);
}

export async function startHub(options = {}) {
  const port = options.port ?? 8080;
  const host = options.host ?? '127.0.0.1';
  const keys = options.keys ?? '';
  const log = options.log ?? (() => {});
  const maxBuffered = count('maxBufferedBytes', options.maxBufferedBytes, 8 * 1024 * 1024);
  const maxBufferedTotal = count('maxBufferedTotalBytes', options.maxBufferedTotalBytes, 256 * 1024 * 1024);
  const batch = Math.max(1, count('batch', options.batch, BATCH));
  const allowedOrigins = new Set((options.allowedOrigins ?? []).map(originOf));
  // Changes for storage would gather with nothing to take them: that is the edge host's.
  if (options.hub?.persistence) throw new Error('the hub setting persistence is for the edge host; the Node host keeps no storage');
  // Keys inside `hub` would be replaced by the option's (none): development mode, silently.
  if (options.hub?.keys !== undefined) throw new Error('keys go in the keys option (or the config file\'s top level), not in hub');
  let wasm = initSync({ module: hubModule() });
  const config = JSON.stringify({ ...options.hub, keys });
  // `instrument(hub)`: what the host runs instead of each hub it makes (tests, fault drills).
  const instrument = options.instrument ?? ((made) => made);
  let Made = Hub;
  let hub = instrument(new Made(config));
  // Keys given that name none ("," or []) would be development mode, for anyone who reaches
  // the hub (a proxy in front of it, say): asked for only by giving no keys at all.
  if (hub.keyCount === 0 && (Array.isArray(keys) || String(keys).trim() !== '')) {
    hub.free();
    throw new Error('the keys given name no key: give at least one (appId.keyId:secret), or none at all for development mode');
  }
  if (hub.keyCount === 0 && !LOOPBACK.has(host)) {
    hub.free();
    throw new Error(
      `refusing to listen on ${host} without keys: in development mode any key and any ` +
        'clientId are accepted, so the hub only listens on loopback. Set ROLLCALL_KEYS ' +
        '(appId.keyId:secret,...) to serve other machines.',
    );
  }
  if (hub.keyCount === 0) log('development mode: no keys configured, any key and any clientId are accepted (loopback only)');
  // What a hub that traps is replaced with: bindings with an instance of their own, made
  // ahead (a trap leaves its instance's state, its stack and the hub it held, unusable).
  let spare = spares.pop() ?? (await freshBindings());

  /** transport id → WebSocket */
  const sockets = new Map();
  let nextTransport = 1;
  let stopped = false;
  let timer = null;
  let armedFor = -1;

  /**
   * Runs the hub. A trap in its Wasm is a bug (the hub must not panic, and the fuzzer looks for
   * one), and a hub that trapped is unusable: every later call would fail. Rather than let the
   * exception end the process, a fresh hub takes over: every socket is closed (1011), and the
   * clients connect to the new hub and enter their members again (this host keeps no storage
   * to resume from). A frame that made the hub fail twice is refused from then on, to its
   * connection alone, so that a client resending it cannot fail the hub again and again.
   */
  const failures = new Map();
  /** Whether the input named `key` failed the hub twice, and is kept out of it. */
  const keptOut = (key) => failures.size > 0 && refused(failures.get(key), Date.now());
  let replaced = 0;
  const guard = (work, culprit) => {
    try {
      return work();
    } catch (error) {
      if (stopped) return undefined;
      if (!(error instanceof WebAssembly.RuntimeError)) {
        // Not a trap: the hub is whole, and what failed is the host's to fix; say so.
        log(`host error: ${error?.stack ?? error}`);
        return undefined;
      }
      const key = culprit?.();
      if (key) failures.set(key, { times: (failures.get(key)?.times ?? 0) + 1, at: Date.now() });
      // Each failed instance stays in memory (its module stays loaded): past a few, the
      // process ends as it would have without this, for its supervisor to start it afresh.
      if (++replaced > MAX_REPLACED) {
        log(`the hub failed (${error.message}) ${replaced} times; giving up`);
        // Uncaught wherever the failing call came from: a REST read's would be answered 500,
        // and the process would carry on with a hub that fails every call.
        setImmediate(() => {
          throw error;
        });
        throw error;
      }
      log(`the hub failed (${error.message}); a fresh hub takes over and every client connects to it again`);
      if (spare) {
        ({ Hub: Made, wasm } = spare);
        spare = null;
        freshBindings().then(
          (next) => (stopped ? spares.push(next) : (spare = next)),
          (e) => log(`no spare instance for the hub: ${e.message}`),
        );
      } else {
        log('no spare instance ready: the new hub shares the failed one\'s');
      }
      hub = instrument(new Made(config));
      if (timer) clearTimeout(timer);
      timer = null;
      armedFor = -1;
      for (const ws of sockets.values()) {
        // Its events are the failed hub's: the new one never knew it.
        ws.rollcallReplaced = true;
        ws.close(1011, 'the hub failed');
        setTimeout(() => ws.terminate(), 2000).unref();
      }
      sockets.clear();
      return undefined;
    }
  };

  // A reader too slow to keep up is cut off (it may resume) rather than letting its backlog grow
  // without bound: one whose unread bytes stay over `maxBuffered` without going down for
  // STALL_MS, or that is sent four times `maxBuffered` more after the drain that put it behind.
  // That drain's frames go whole, however many: the SYNC of a channel with more member data
  // than `maxBuffered` is sent at once, and cutting its reader then would have it resume into
  // the same SYNC, forever.
  /** transport id → { since, least, drain, sent }: since when its unread bytes last went down,
   * and to what; the drain that put it behind, and what it was sent after that one. */
  const readersBehind = new Map();
  let behindTimer = null;
  let drains = 0;
  const cutOff = (id, ws, why = '') => {
    log(`transport ${id}: ${ws.bufferedAmount} bytes unread${why}, cutting it off`);
    readersBehind.delete(id);
    ws.terminate();
  };
  const behind = (id, ws, length) => {
    const reader = readersBehind.get(id);
    if (reader) {
      if (reader.drain !== drains && (reader.sent += length) > 4 * maxBuffered) cutOff(id, ws);
      return;
    }
    readersBehind.set(id, { since: Date.now(), least: ws.bufferedAmount, drain: drains, sent: 0 });
    behindTimer ??= setInterval(() => {
      const now = Date.now();
      for (const [id, reader] of readersBehind) {
        const ws = sockets.get(id);
        const unread = ws?.bufferedAmount ?? 0;
        if (!ws || unread <= maxBuffered) readersBehind.delete(id);
        else if (unread < reader.least) Object.assign(reader, { since: now, least: unread });
        else if (now - reader.since >= STALL_MS) cutOff(id, ws);
      }
      if (readersBehind.size === 0) {
        clearInterval(behindTimer);
        behindTimer = null;
      }
    }, STALL_MS / 4);
    behindTimer.unref();
  };

  // What all readers leave unread is held to `maxBufferedTotal`: a hundred readers each just
  // under `maxBuffered`, never reading, would otherwise hold a hundred times it. Each reader's
  // unread bytes count a frame sent to many (an event fanned out) once per reader, though it is
  // held once; the bytes the process holds in buffers count it once, but also what is held for
  // other reasons, or no longer held but not yet collected. Readers are cut off, those with the
  // most unread first, only when both are over the limit, and only as many as bring the lesser
  // of the two under it. Looked at once 1 MiB more has been sent, at most every 100 ms.
  let sentSinceCheck = 0;
  let checkedAt = 0;
  let checkTimer = null;
  const checkUnreadSoon = () => {
    const wait = checkedAt + 100 - Date.now();
    if (wait <= 0) checkUnread();
    else checkTimer ??= setTimeout(() => guard(checkUnread), wait).unref();
  };
  const checkUnread = () => {
    clearTimeout(checkTimer);
    checkTimer = null;
    if (stopped) return;
    checkedAt = Date.now();
    sentSinceCheck = 0;
    const held = process.memoryUsage().arrayBuffers;
    if (held <= maxBufferedTotal) return;
    const readers = [];
    let unread = 0;
    for (const [id, ws] of sockets) {
      const bytes = ws.bufferedAmount;
      if (bytes === 0 || ws.readyState !== ws.OPEN) continue;
      readers.push([id, ws, bytes]);
      unread += bytes;
    }
    let over = Math.min(held, unread) - maxBufferedTotal;
    if (over <= 0) return;
    readers.sort((a, b) => b[2] - a[2]);
    for (const [id, ws, bytes] of readers) {
      if (over <= 0) break;
      over -= bytes;
      cutOff(id, ws, ` while the hub's readers leave over ${maxBufferedTotal} unread`);
    }
  };

  const drain = () => guard(drainNow);
  const drainNow = () => {
    undrained = 0;
    drains++;
    if (stopped) return;
    const outputs = hub.drain();
    for (const out of outputs) {
      switch (out[0]) {
        case 0: {
          // Read in place (see `drain` in src/wasm/hub.rs); the bytes are copied once, into
          // Node's buffer pool, as the socket may keep them past the next drain.
          const [, at, count, bytesAt, length, binary] = out;
          const to = new Uint32Array(wasm.memory.buffer, at, count);
          const buffer = Buffer.from(new Uint8Array(wasm.memory.buffer, bytesAt, length));
          for (const id of to) {
            const ws = sockets.get(id);
            if (!ws || ws.readyState !== ws.OPEN) continue;
            ws.send(buffer, { binary });
            sentSinceCheck += length;
            if (ws.bufferedAmount > maxBuffered) behind(id, ws, length);
          }
          break;
        }
        case 1: {
          const ws = sockets.get(out[1]);
          sockets.delete(out[1]);
          if (ws) {
            ws.close(out[2]);
            // A peer that does not finish the closing handshake is cut off.
            setTimeout(() => ws.terminate(), 2000).unref();
          }
          break;
        }
        case 2: {
          const ws = sockets.get(out[1]);
          if (ws && ws.readyState === ws.OPEN) ws.ping();
          break;
        }
      }
    }
    if (sentSinceCheck >= 1024 * 1024) checkUnreadSoon();
    arm();
  };

  // Inputs of one turn of the event loop are drained together at its end, so that the presence
  // events of a burst leave as one frame per channel and subscriber (and the Wasm boundary is
  // crossed once per turn, not once per frame). A lone event waits well under a millisecond.
  // A turn that brings more inputs than `batch` is drained every `batch` of them: what waits for
  // a drain (frames, acknowledgements) is held in the Wasm memory, which never shrinks.
  let drainScheduled = false;
  let undrained = 0;
  const drainSoon = () => {
    if (++undrained >= batch) {
      drain();
      return;
    }
    if (drainScheduled) return;
    drainScheduled = true;
    setImmediate(() => {
      drainScheduled = false;
      drain();
    });
  };

  // One timer, re-armed only when the hub's next deadline changes.
  const arm = () => {
    const next = hub.nextTimeout();
    if (next === armedFor) return;
    if (timer) clearTimeout(timer);
    timer = null;
    armedFor = next;
    if (next < 0) return;
    const delay = Math.min(Math.max(0, next - clock()), 0x7fffffff);
    timer = setTimeout(() => {
      if (stopped) return;
      timer = null;
      armedFor = -1;
      guard(() => hub.timeout(clock()));
      drain();
    }, delay);
  };

  /** In development mode (any key, any clientId), a page from another site open in the
   * developer's browser: loopback is all that keeps the hub to this machine, and the browser
   * is on it. Programs send no Origin; pages on localhost (the demo, a dev server) are let in. */
  const allowedHosts = new Set([...allowedOrigins].map((origin) => new URL(origin).host));
  /** Why a request is refused in development mode, if it is: a page from another site, a
   * request made to another name for this machine, or one a proxy passed on. Naming the origins
   * allowed (a tunnel) lets in the requests they make. */
  const refusedWhy = (req) => {
    if (hub.keyCount > 0) return undefined;
    const { origin, host } = req.headers;
    if (!allowedOrigins.has(origin) && foreignPage(origin)) return REFUSED.foreignPage;
    if (allowedOrigins.size === 0 ? forwarded(req.headers) || !toThisMachine(host) : !toThisMachine(host) && !allowedHosts.has(host)) return REFUSED.elsewhere;
    return undefined;
  };

  const isPackageRead = (req) => (req.method === 'GET' || req.method === 'HEAD') && inPackage(req.url);

  const refuse = (res, statusCode, code, message, headers = {}) => {
    const { status, headers: own, body } = refusal(statusCode, code, message);
    res.writeHead(status, { ...own, ...headers });
    res.end(body);
  };

  // A socket's requests are answered one at a time, each once the answer before it has gone to
  // the socket (and the socket has drained): Node parses every request a write pipelines, and
  // a client that sent hundreds of reads in one write, never reading, had every answer built
  // at once and held (a write of 36 KB held 476 MB, and stalled the hub for 2 s). Beyond
  // MAX_PIPELINED waiting, the socket is closed; one that takes nothing for IDLE_HTTP_MS is
  // closed too (`server.timeout`).
  /** socket → the requests waiting behind the one being answered. */
  const inLine = new WeakMap();
  const onRequest = (req, res) => {
    const { socket } = req;
    const waiting = inLine.get(socket);
    if (waiting) {
      if (waiting.length >= MAX_PIPELINED) socket.destroy();
      else waiting.push([req, res]);
      return;
    }
    inLine.set(socket, []);
    answerInTurn(req, res);
  };
  const answerInTurn = (req, res) => {
    const { socket } = req;
    let done = false;
    const next = () => {
      if (done) return;
      done = true;
      const following = inLine.get(socket)?.shift();
      if (following) answerInTurn(...following);
      else inLine.delete(socket);
    };
    const sent = () => (socket.writableNeedDrain ? socket.once('drain', next) : next());
    res.once('finish', sent);
    res.once('close', sent);
    handleRequest(req, res);
  };
  const handleRequest = (req, res) => {
    // The package's files are public: a page of any origin may import them (it then needs an
    // origin the hub allows, or credentials, to connect).
    const why = isPackageRead(req) ? undefined : refusedWhy(req);
    if (why) {
      refuse(res, 403, 40300, why);
      return;
    }
    // A POST (a TokenRequest to exchange) is read first: its body is part of the request.
    if (req.method !== 'POST') return answer(req, res);
    // Beyond the limit, the rest is not read: the connection closes after the answer.
    const tooLarge = () => refuse(res, 413, 40009, REFUSED.tooLarge, { connection: 'close' });
    if (Number(req.headers['content-length']) > MAX_BODY) return tooLarge();
    readBody(req, MAX_BODY).then((body) => answer(req, res, body), tooLarge);
  };

  const answer = (req, res, body) => {
    // A request that made the hub fail is answered 500, by the catch below; one that did so
    // twice is refused before the hub sees it, as a frame is.
    const keyOf = () => `http:${frameKey(Buffer.concat([Buffer.from(`${req.method} ${req.url}\n`), body ?? Buffer.alloc(0)]))}`;
    const key = failures.size > 0 ? keyOf() : null;
    if (key && keptOut(key)) {
      refuse(res, 500, 50000, REFUSED.trapped);
      return;
    }
    const withHub = (work) => {
      let failed = true;
      const result = guard(
        () => {
          const value = work(hub);
          failed = false;
          return value;
        },
        () => key ?? keyOf(),
      );
      if (failed) throw new Error('the hub failed');
      return result;
    };
    serveHttp(withHub, req, res, body).catch((error) => {
      log(`http error: ${error.message}`);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  };
  // `sockets` tracks the sockets: ws's own tracking would add a set entry and a close listener
  // per socket. UTF-8 is checked by the hub, which answers a text frame that is not UTF-8 with
  // an ERROR (ws would close with 1007 and say nothing), and reads each frame once, not twice.
  const wss = new WebSocketServer({ noServer: true, clientTracking: false, maxPayload: MAX_FRAME, perMessageDeflate: false, skipUTF8Validation: true });
  const onUpgrade = (req, socket, head) => {
    // Stopping: an upgrade already read is not taken (close() waits for no socket of it).
    if (stopped) {
      socket.destroy();
      return;
    }
    const path = req.url.split('?')[0];
    const why = path === '/' ? refusedWhy(req) : 'the hub takes WebSocket connections at /';
    if (why) {
      // Said as an answer over HTTP, as the edge host says it, rather than a reset.
      const { status, headers, body } = path === '/' ? refusal(403, 40300, why) : refusal(404, 40400, why);
      const head = Object.entries({ ...headers, 'content-length': Buffer.byteLength(body), connection: 'close' }).map(([k, v]) => `${k}: ${v}\r\n`);
      // Node leaves an upgraded socket without an error listener: a peer that resets it would
      // otherwise take the process down. Nothing reads it either, so it is destroyed once the
      // answer has gone rather than left half-open.
      socket.on('error', () => socket.destroy());
      socket.once('finish', () => socket.destroy());
      socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n${head.join('')}\r\n${body}`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => accept(ws, req));
  };
  // A request has 15 s to arrive whole (Node's default is 5 minutes): a client that trickles a
  // body in would otherwise hold its socket and up to 64 KiB that long.
  const limits = { headersTimeout: 10_000, requestTimeout: 15_000, connectionsCheckingInterval: 5_000 };
  const server = http.createServer(limits, onRequest);
  server.timeout = IDLE_HTTP_MS;
  server.on('upgrade', onUpgrade);

  // Shared handlers (the socket carries its transport id) rather than closures per socket:
  // an idle hub holds tens of thousands of sockets.
  function onMessage(data, isBinary) {
    if (stopped || this.rollcallReplaced) return;
    const id = this.transportId;
    const key = failures.size > 0 ? frameKey(data) : null;
    if (key && keptOut(key)) {
      guard(() => hub.refuse(clock(), id, 'this message made the hub fail; it is refused'));
    } else {
      const queued = guard(
        () => hub.frame(clock(), id, data, isBinary),
        () => key ?? frameKey(data),
      );
      // Frames waiting in the Wasm memory (the SYNCs of a big channel that many attach in one
      // turn) go now rather than at the turn's end: that memory never shrinks.
      if (queued > DRAIN_BYTES) undrained = batch;
    }
    drainSoon();
  }
  function onPong() {
    if (!stopped && !this.rollcallReplaced) guard(() => hub.pong(clock(), this.transportId));
  }
  function onClose() {
    if (stopped || this.rollcallReplaced) return;
    sockets.delete(this.transportId);
    guard(() => hub.closed(clock(), this.transportId));
    drainSoon();
  }
  function onError(error) {
    // A frame over maxPayload: `ws` closes with 1009 before the hub sees it, and the hub
    // refuses the client's resend of it when it resumes (see `handle_too_large`).
    if (error?.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' && !stopped && !this.rollcallReplaced) {
      guard(() => hub.tooLarge(clock(), this.transportId, MAX_FRAME));
      drainSoon();
    }
    this.terminate();
  }

  const accept = (ws, req) => {
    if (stopped) {
      ws.terminate();
      return;
    }
    let id;
    [id, nextTransport] = transportId(nextTransport, sockets);
    ws.transportId = id;
    sockets.set(id, ws);
    const query = req.url.includes('?') ? req.url.slice(req.url.indexOf('?') + 1) : '';
    ws.on('message', onMessage);
    ws.on('pong', onPong);
    ws.on('close', onClose);
    ws.on('error', onError);
    // A connection request that made the hub fail twice is refused, as a frame is: sent again
    // and again, it would otherwise end the process.
    const key = `open:${frameKey(Buffer.from(query))}`;
    if (keptOut(key)) {
      guard(() => hub.refuse(clock(), id, 'this connection request made the hub fail; it is refused'));
    } else {
      guard(() => hub.open(clock(), id, query, randomFillSync(new Uint8Array(24))), () => key);
    }
    drainSoon();
  };

  try {
    await new Promise((resolvePromise, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolvePromise();
      });
    });
  } catch (error) {
    // A port in use: the hub made for it is freed, so that a caller that tries port after
    // port leaks nothing.
    stopped = true;
    clearInterval(behindTimer);
    clearTimeout(checkTimer);
    spares.push(spare);
    hub.free();
    throw error;
  }
  const address = server.address();
  // `localhost` may resolve to ::1 first: on the IPv4 loopback, listen on the IPv6 one too.
  const servers = [server];
  if (host === '127.0.0.1') {
    const v6 = http.createServer(limits, onRequest);
    v6.timeout = IDLE_HTTP_MS;
    v6.on('upgrade', onUpgrade);
    await new Promise((resolvePromise) => {
      // Not fatal (a machine without IPv6), but said: another server on [::1] at this port
      // would answer browsers that try it first for `localhost`.
      v6.once('error', (error) => resolvePromise(log(`not listening on [::1]:${address.port} (${error.code ?? error.message}): \`localhost\` may reach something else`)));
      v6.listen(address.port, '::1', () => {
        servers.push(v6);
        resolvePromise();
      });
    });
  }
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  // Once listening, an error of a server (an accept that failed for want of memory or file
  // descriptors) is logged: unheard, it would end the process.
  for (const each of servers) each.on('error', (error) => log(`server error: ${error.message}`));

  return {
    url,
    port: address.port,
    /** The hub now running (a fresh one if the first failed). */
    get hub() {
      return hub;
    },
    /** How many keys credentials are checked against; 0 is development mode. */
    keyCount: hub.keyCount,
    /** Cuts every WebSocket without a closing handshake, as a network failure would: the hub
     * sees abrupt drops, and clients reconnect and resume. For tests and fault drills. */
    disconnectAll() {
      for (const ws of sockets.values()) ws.terminate();
    },
    stats() {
      const [connections, liveConnections, channels, members, historyBytes, memberBytes] = hub.stats();
      return { connections, liveConnections, channels, members, historyBytes, memberBytes, wasmMemoryBytes: wasm.memory.buffer.byteLength };
    },
    async close() {
      if (stopped) return;
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
      clearInterval(behindTimer);
      clearTimeout(checkTimer);
      // No new connection first (a client told below reconnects at once), then each socket is
      // closed with 1001 (going away), as a server that stops says it, and cut once its client
      // answered or after CLOSE_WAIT_MS: its client reconnects either way, but sees why.
      // Frames that reach the hub meanwhile are not read.
      const listening = servers.map((srv) => new Promise((r) => srv.close(() => r())));
      const open = [...sockets.values()];
      sockets.clear();
      const closed = open.map((ws) => new Promise((r) => (ws.readyState === ws.CLOSED ? r() : ws.once('close', r))));
      for (const ws of open) ws.close(1001, 'the hub is stopping');
      let waited;
      await Promise.race([Promise.all(closed), new Promise((r) => (waited = setTimeout(r, CLOSE_WAIT_MS)))]);
      clearTimeout(waited);
      for (const ws of open) ws.terminate();
      wss.close();
      if (spare) spares.push(spare);
      spare = null;
      for (const srv of servers) srv.closeAllConnections?.();
      await Promise.all(listening);
      hub.free();
    },
  };
}

/** How long `close()` waits for clients to answer the closing handshake. */
const CLOSE_WAIT_MS = 1000;

/** How many failed hubs a process replaces before it gives up. */
const MAX_REPLACED = 8;

/** Spare bindings of hubs that stopped, for the next hub to take: a copy of the bindings stays
 * loaded, with its instance, for as long as the process runs. */
const spares = [];

/** The hub's bindings with an instance of their own: the module imported under another URL is
 * another module, with its own instance of the (shared, compiled once) Wasm. */
let copies = 0;
async function freshBindings() {
  const bindings = await import(`../../pkg/hub/rollcall_hub.js?copy=${++copies}`);
  return { Hub: bindings.Hub, wasm: bindings.initSync({ module: hubModule() }) };
}

/** The hub's compiled Wasm, once per process: every hub of the process shares its instance. */
let compiled = null;
const hubModule = () => (compiled ??= compileWhole(readFileSync(join(root, 'pkg', 'hub', 'rollcall_hub_bg.wasm'))));

/**
 * Compiles the hub's Wasm whole, now. V8 otherwise compiles each function on its first call, on
 * the main thread: the first connections would wait for the code they reach to compile, and
 * that memory (about 10 MB, once) would be counted as theirs by any per-connection measure.
 * The flag is V8's own and is put back once the module is compiled, unless the process was
 * started with a choice of its own.
 */
function compileWhole(bytes) {
  if (process.execArgv.some((arg) => arg.includes('wasm-lazy-compilation'))) return new WebAssembly.Module(bytes);
  try {
    v8.setFlagsFromString('--no-wasm-lazy-compilation');
  } catch {
    // A runtime that refuses flags compiles lazily, as it would anyway.
    return new WebAssembly.Module(bytes);
  }
  try {
    return new WebAssembly.Module(bytes);
  } finally {
    v8.setFlagsFromString('--wasm-lazy-compilation');
  }
}

/** A request's body, up to `limit` bytes (it rejects beyond, and stops reading). */
function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.pause();
        reject(new Error('too large'));
      } else chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** `withHub(work)`: runs `work(hub)` on the hub now running; `requestBody`: a POST's. */
async function serveHttp(withHub, req, res, requestBody) {
  const response = withHub((hub) => hub.rest(clock(), req.method, req.url, req.headers.authorization, req.headers.accept, req.headers.origin, requestBody));
  if (response) {
    const [status, headers, body] = response;
    res.writeHead(status, Object.fromEntries(headers));
    res.end(req.method === 'HEAD' ? undefined : Buffer.from(body));
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' });
    res.end();
    return;
  }
  // Answered in this turn, from memory once read: a client that sends request after request
  // on one socket without reading the answers is then held back by them (Node stops reading a
  // socket whose answers pile up), rather than start a file read for every request it sent.
  const found = staticFile(req.url.split('?')[0]);
  if (!found) {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('not found\n');
    return;
  }
  const { file, body } = found;
  const type = file.endsWith('.d.ts') ? MIME['.d.ts'] : MIME[extname(file)] ?? 'application/octet-stream';
  // The package (its ES module and Wasm) may be imported by a page of another origin: it is
  // public, and a page needs more than it to connect (an origin the hub allows, or a token).
  const shared = inPackage(req.url) ? { 'access-control-allow-origin': '*' } : {};
  res.writeHead(200, { 'content-type': type, 'content-length': body.length, 'cache-control': 'no-cache', ...shared });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** Whether a URL names a file of the package (`/rollcall/js/…`, `/rollcall/pkg/client/…`), as
 * the static files are found: decoded and normalised (`/rollcall/../index.html` is the page's). */
function inPackage(url) {
  let path;
  try {
    path = posix.normalize(decodeURIComponent(url.split('?')[0]));
  } catch {
    return false;
  }
  return STATIC.some(([prefix]) => prefix !== '/' && path.startsWith(prefix));
}

/** An allowed origin as browsers send it (`https://host[:port]`, whatever was written after
 * it; `chrome-extension://id` as it is). */
function originOf(origin) {
  const url = URL.canParse(origin) ? new URL(origin) : null;
  if (url?.origin && url.origin !== 'null') return url.origin;
  if (url?.host) return `${url.protocol}//${url.host}`;
  throw new Error(`allowedOrigins: ${JSON.stringify(origin)} is not an origin (such as https://host:port)`);
}

/** The largest static file served: the folders hold a page and a package, not recordings. */
const MAX_STATIC_FILE = 16 * 1024 * 1024;
/** How many bytes of static files are kept read; past it, they are read again as asked for. */
const STATIC_KEPT = 64 * 1024 * 1024;

/** The static files as last read, by file (device and inode: every spelling of a path to it,
 * through links or a case-blind file system, is one), `{ mtimeMs, size, body }`. */
const staticFiles = new Map();
let staticBytes = 0;

/** What the static files kept hold: `{ files, bytes }`. @internal (tests) */
export const staticKept = () => ({ files: staticFiles.size, bytes: staticBytes });

/** A file's bytes, read again only when it changed. */
function fileBody(info, file) {
  const id = `${info.dev}:${info.ino}`;
  const kept = staticFiles.get(id);
  if (kept?.mtimeMs === info.mtimeMs && kept.size === info.size) return kept.body;
  const body = readFileSync(file);
  if (kept) staticBytes -= kept.body.length;
  if (staticBytes + body.length > STATIC_KEPT) {
    staticFiles.clear();
    staticBytes = 0;
  }
  staticBytes += body.length;
  staticFiles.set(id, { mtimeMs: info.mtimeMs, size: info.size, body });
  return body;
}

/** The file a URL path names under one of the static folders, never outside them, and its
 * bytes: `{ file, body }`, or `null`. */
function staticFile(path) {
  let decoded;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return null;
  }
  for (const [prefix, dir] of STATIC) {
    if (!decoded.startsWith(prefix)) continue;
    let file = normalize(join(dir, decoded.slice(prefix.length)));
    if (file !== dir && !file.startsWith(dir + sep)) return null;
    try {
      let info = statSync(file);
      if (info.isDirectory()) {
        file = join(file, 'index.html');
        info = statSync(file);
      }
      // Larger than any file of the page or the package: not read (it would hold up the hub).
      if (info.isFile() && info.size <= MAX_STATIC_FILE) return { file, body: fileBody(info, file) };
    } catch {
      // Not here; try the next folder.
    }
  }
  return null;
}

/** A setting that must be a whole number of at least 0: `fallback` when absent or empty. */
function count(name, value, fallback) {
  if (value === undefined || value === null || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a whole number, not ${JSON.stringify(value)}`);
  return n;
}

/** The config file's settings. JSON's own error would quote the text around the mistake,
 * which may be a secret: only where it is is said. */
function readConfig(path) {
  const text = readFileSync(path, 'utf8');
  try {
    return JSON.parse(text);
  } catch (error) {
    const at = /position (\d+)/.exec(error.message)?.[1];
    throw new Error(`ROLLCALL_CONFIG ${path} is not JSON${at ? ` (at character ${at})` : ''}`);
  }
}

/** The settings the program reads from the environment, besides PORT and HOST. */
const ENV_SETTINGS = ['ROLLCALL_CONFIG', 'ROLLCALL_KEYS', 'ROLLCALL_MAX_BUFFERED_BYTES', 'ROLLCALL_MAX_BUFFERED_TOTAL_BYTES', 'ROLLCALL_ALLOWED_ORIGINS'];

/** The names a ROLLCALL_CONFIG file may have at its top level. */
const FILE_SETTINGS = ['keys', 'hub', 'port', 'host', 'maxBufferedBytes', 'maxBufferedTotalBytes'];

// Run as a program: `node js/hub/node.js`.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  let running;
  try {
    // ROLLCALL_CONFIG names a JSON file: { "keys": "app.k:s,..." | [{ "key", "capability" }],
    // "hub": { settings }, "maxBufferedBytes": n, "maxBufferedTotalBytes": n }. The environment
    // wins over it.
    const file = process.env.ROLLCALL_CONFIG ? readConfig(process.env.ROLLCALL_CONFIG) : {};
    // A misspelt name ("Keys") would otherwise be a default, and no keys is development mode.
    const unknown = Object.keys(file).filter((name) => !FILE_SETTINGS.includes(name));
    if (unknown.length) throw new Error(`unknown setting ${JSON.stringify(unknown[0])} in ${process.env.ROLLCALL_CONFIG} (known: ${FILE_SETTINGS.join(', ')})`);
    // `--port` and `--host` (as `npm start -- --port 9000` passes them) win over the rest; an
    // argument it does not know stops it, as a misspelt setting does.
    const { values: args } = parseArgs({ options: { port: { type: 'string' }, host: { type: 'string' } } });
    const port = args.port !== undefined ? count('--port', args.port, 8080) : count('PORT', process.env.PORT || file.port, 8080);
    const host = args.host ?? process.env.HOST ?? file.host ?? '127.0.0.1';
    const keys = process.env.ROLLCALL_KEYS || file.keys || '';
    const maxBufferedBytes = count('ROLLCALL_MAX_BUFFERED_BYTES', process.env.ROLLCALL_MAX_BUFFERED_BYTES || file.maxBufferedBytes, 8 * 1024 * 1024);
    const maxBufferedTotalBytes = count('ROLLCALL_MAX_BUFFERED_TOTAL_BYTES', process.env.ROLLCALL_MAX_BUFFERED_TOTAL_BYTES || file.maxBufferedTotalBytes, 256 * 1024 * 1024);
    // Pages served through a forwarded port or a tunnel (a Codespace) in development mode.
    const allowedOrigins = (process.env.ROLLCALL_ALLOWED_ORIGINS ?? '').split(',').map((o) => o.trim()).filter(Boolean);
    running = await startHub({ port, host, keys, hub: file.hub, maxBufferedBytes, maxBufferedTotalBytes, allowedOrigins, log: (line) => console.error(line) });
  } catch (error) {
    console.error(`rollcall: ${error.message}`);
    process.exit(1);
  }
  // Where it listens, as bound (`--host`, HOST or the config file's): localhost for loopback.
  const bound = new URL(running.url).hostname.replace(/^\[|\]$/g, '');
  const shown = LOOPBACK.has(bound) ? `http://localhost:${running.port}` : running.url;
  console.log(`rollcall hub listening on ${shown}  (WebSocket at ws${shown.slice(4)}/)`);
  // (Development mode says so through `log`, as it does for an embedded hub.) A setting of the
  // environment it does not read may be keys meant for it (ROLLCALL_KEY).
  const unread = Object.keys(process.env).filter((name) => name.startsWith('ROLLCALL_') && !ENV_SETTINGS.includes(name));
  if (!running.keyCount && unread.length) console.error(`rollcall: ${unread.join(', ')} set, but the hub reads ${ENV_SETTINGS.join(', ')}; it runs without keys`);
  if (running.keyCount) console.log(`keys: ${running.keyCount} configured; connections must present a key or a token`);
  const stop = async (signal) => {
    console.log(`rollcall: ${signal}, closing`);
    await running.close();
    process.exit(0);
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}
