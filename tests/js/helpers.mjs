// Shared helpers for the Node tests: a hub per test, and a raw protocol client that awaits
// conditions with a bounded deadline instead of sleeping.

import http from 'node:http';
import net from 'node:net';

import { WebSocket, WebSocketServer } from 'ws';

import { startHub } from '../../js/hub/node.js';

export { startHub };

/** Polls `check` until it returns a truthy value or `ms` pass. */
export async function waitFor(check, { ms = 5000, every = 10, what = 'condition' } = {}) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** A client that speaks raw protocol frames and records everything it receives. */
export class RawClient {
  static async connect(hubUrl, query, wsOptions = {}) {
    const client = new RawClient(hubUrl.replace(/^http/, 'ws') + '/?' + query, wsOptions);
    await client.opened;
    return client;
  }

  constructor(url, wsOptions) {
    this.received = [];
    this.closed = false;
    this.closeCode = null;
    this.ws = new WebSocket(url, wsOptions);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    });
    this.ws.on('message', (data) => this.received.push(JSON.parse(data.toString())));
    this.ws.on('close', (code) => {
      this.closed = true;
      this.closeCode = code;
      this.closedAt = Date.now();
    });
    this.ws.on('error', () => {});
  }

  send(message) {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  /** Waits for a received message matching `predicate`, from position `from` on. */
  async next(predicate, { from = 0, ms = 5000 } = {}) {
    return waitFor(() => this.received.slice(from).find(predicate), { ms, what: predicate.toString() });
  }

  /** The presence events received, flattened. */
  events() {
    return this.received.filter((m) => m.action === 14).flatMap((m) => m.presence);
  }

  async attach(channel) {
    const from = this.received.length;
    this.send({ action: 10, channel });
    return this.next((m) => m.action === 11 && m.channel === channel, { from });
  }

  /** Sends one presence item and waits for its ACK or NACK. */
  async presence(channel, serial, item) {
    const from = this.received.length;
    this.send({ action: 14, channel, msgSerial: serial, presence: [item] });
    return this.next((m) => (m.action === 1 || m.action === 2) && m.msgSerial === serial, { from });
  }

  async waitClosed(ms = 5000) {
    await waitFor(() => this.closed, { ms, what: 'close' });
  }

  close() {
    this.ws.terminate();
  }
}

/**
 * Fills channel `big` of the hub at `url` with 1 000 members of 2 KB (a SYNC of about 2 MB),
 * then has 60 clients attach it at once, so that their ATTACHes arrive together and each takes
 * the whole set by SYNC. Resolves to how much `memoryBytes()` (the hub's Wasm memory) grew.
 */
export async function attachBurst(url, memoryBytes) {
  const clients = [];
  try {
    // No clientId in development mode: the connection may enter any (as a wildcard token would).
    const owner = await RawClient.connect(url, '');
    clients.push(owner);
    await owner.attach('big');
    const pad = 'x'.repeat(2000);
    for (let serial = 0; serial < 40; serial++) {
      const items = Array.from({ length: 25 }, (_, i) => ({ action: 2, clientId: `m${serial * 25 + i}`, data: pad }));
      const from = owner.received.length;
      owner.send({ action: 14, channel: 'big', msgSerial: serial, presence: items });
      await owner.next((m) => m.action === 1 && m.msgSerial + m.count > serial, { from });
    }
    const burst = [];
    for (let i = 0; i < 60; i++) burst.push(await RawClient.connect(url, `clientId=c${i}`));
    clients.push(...burst);
    const before = await memoryBytes();
    for (const c of burst) c.send({ action: 10, channel: 'big' });
    // A SYNC's last page has an empty cursor (`syncId:`).
    await waitFor(() => burst.every((c) => c.received.some((m) => m.action === 16 && /:$/.test(m.channelSerial))), {
      ms: 30_000,
      what: 'every SYNC complete',
    });
    return (await memoryBytes()) - before;
  } finally {
    for (const c of clients) c.close();
  }
}

/** A TCP port free on 127.0.0.1 just now, for a server started in another process. */
export async function freePort() {
  const server = net.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

/** A TCP proxy in front of the hub whose `vanish()` kills the connections it carries silently,
 * as a Wi-Fi roam or a NAT rebinding does: nothing more passes either way (WebSocket pings
 * included) and neither end is told, while new connections go through. */
export async function silentProxy(hubPort) {
  const pairs = new Set();
  const server = net.createServer((near) => {
    const far = net.connect(hubPort, '127.0.0.1');
    const pair = { near, far, dead: false };
    pairs.add(pair);
    near.on('data', (d) => pair.dead || far.write(d));
    far.on('data', (d) => pair.dead || near.write(d));
    const end = () => {
      pairs.delete(pair);
      near.destroy();
      far.destroy();
    };
    // A close or a failure on one side reaches the other only while the link lives.
    for (const s of [near, far]) {
      s.on('close', () => pair.dead || end());
      s.on('error', () => pair.dead || end());
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    vanish: () => pairs.forEach((pair) => (pair.dead = true)),
    close: () =>
      new Promise((r) => {
        for (const { near, far } of pairs) near.destroy(), far.destroy();
        pairs.clear();
        server.close(() => r());
      }),
  };
}

/** A WebSocket proxy in front of the hub that records the action of every frame it passes down
 * (`down`), and the `channelSerial` of each ATTACHED and PRESENCE frame (`serials`). While `muted`, it drops
 * what the hub sends; `cut()` drops every client's socket; with `forgetResumes`, it takes
 * `resume` out of the URLs it passes on, so that clients reconnect as new connections. HTTP
 * requests (REST reads) pass through as they are. */
export async function spyProxy(hubPort) {
  const web = http.createServer((req, res) => {
    const upstream = http.request({ host: '127.0.0.1', port: hubPort, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise((r) => web.listen(0, '127.0.0.1', r));
  const server = new WebSocketServer({ server: web });
  const down = [];
  const serials = [];
  const proxy = { down, serials, muted: false, forgetResumes: false };
  server.on('connection', (client, request) => {
    const url = new URL(request.url, 'ws://hub');
    if (proxy.forgetResumes) url.searchParams.delete('resume');
    const upstream = new WebSocket(`ws://127.0.0.1:${hubPort}${url.pathname}${url.search}`);
    const early = [];
    upstream.on('open', () => early.splice(0).forEach((m) => upstream.send(m)));
    client.on('message', (data, binary) => {
      const m = binary ? data : data.toString();
      if (upstream.readyState === WebSocket.OPEN) upstream.send(m);
      else early.push(m);
    });
    upstream.on('message', (data, binary) => {
      if (!binary) {
        const m = JSON.parse(data.toString());
        down.push(m.action);
        if (m.action === 11 || m.action === 14) serials.push(m.channelSerial);
      }
      if (client.readyState === WebSocket.OPEN && !proxy.muted) client.send(binary ? data : data.toString());
    });
    // One side closed: the other is closed after what was sent to it (a client's CLOSE, say)
    // has gone, as a network passes it on; a socket that failed is cut.
    const end = (graceful) => () => {
      for (const s of [client, upstream]) {
        if (graceful && s.readyState === WebSocket.OPEN) s.close();
        else s.terminate();
      }
    };
    client.on('close', end(true));
    upstream.on('close', end(true));
    client.on('error', end(false));
    upstream.on('error', end(false));
  });
  return Object.assign(proxy, {
    port: web.address().port,
    cut: () => server.clients.forEach((c) => c.terminate()),
    close: () =>
      new Promise((r) => {
        // Its clients' sockets, which the HTTP server no longer counts once upgraded, and with
        // them their upstreams: the server closes once no connection is left.
        server.clients.forEach((c) => c.terminate());
        server.close();
        web.closeAllConnections?.();
        web.close(() => r());
      }),
  });
}
