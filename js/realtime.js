// The public API, in Ably's shape: Realtime, connection, channels, channel.presence.
// The state machine is the Wasm core (ClientCore), which does no I/O; this file carries out
// what it asks (one WebSocket, one timer) and adds listeners, promises, data encoding and REST.
// Each entry point (browser.js, node.js, workerd.js) supplies the platform.

const VERSION = '0.1.0';

/** An Ably-style error: `code`, `statusCode`, `message`, and the `cause` when there is one. */
export class ErrorInfo extends Error {
  constructor(message, code, statusCode, cause) {
    super(message);
    this.name = 'ErrorInfo';
    this.code = code;
    this.statusCode = statusCode;
    if (cause !== undefined) this.cause = cause;
  }

  static from(error) {
    if (error instanceof ErrorInfo) return error;
    return new ErrorInfo(error?.message ?? String(error), error?.code ?? 50000, error?.statusCode ?? 500);
  }
}

const badArgs = (message) => new ErrorInfo(message, 40000, 400);

/** Ably's EventEmitter: `on([event | events], listener)`, `once`, `off` in all their forms. */
export class EventEmitter {
  #any = new Set();
  #byEvent = new Map();

  on(...args) {
    const [events, listener] = EventEmitter.#parse(args);
    if (typeof listener !== 'function') throw badArgs('a listener function is required');
    if (events === null) this.#any.add(listener);
    else for (const e of events) (this.#byEvent.get(e) ?? this.#byEvent.set(e, new Set()).get(e)).add(listener);
  }

  once(...args) {
    const [events, listener] = EventEmitter.#parse(args);
    if (typeof listener !== 'function') {
      return new Promise((resolve) => this.once(...(events ? [events] : []), resolve));
    }
    const wrapper = (...a) => {
      this.off(wrapper);
      return listener.apply(this, a);
    };
    wrapper.listener = listener;
    this.on(...(events ? [events, wrapper] : [wrapper]));
  }

  off(...args) {
    const [events, listener] = EventEmitter.#parse(args);
    const matches = (l) => l === listener || l.listener === listener;
    if (events === null && !listener) {
      this.#any.clear();
      this.#byEvent.clear();
      return;
    }
    if (events === null) {
      for (const l of [...this.#any]) if (matches(l)) this.#any.delete(l);
      for (const set of this.#byEvent.values()) for (const l of [...set]) if (matches(l)) set.delete(l);
      return;
    }
    for (const e of events) {
      if (!listener) this.#byEvent.delete(e);
      else for (const l of [...(this.#byEvent.get(e) ?? [])]) if (matches(l)) this.#byEvent.get(e).delete(l);
    }
  }

  /** Whether anything listens for `event`. @internal */
  _hears(event) {
    return this.#any.size > 0 || (this.#byEvent.get(event)?.size ?? 0) > 0;
  }

  listeners(event) {
    return [...(event === undefined ? this.#any : this.#byEvent.get(event) ?? [])];
  }

  emit(event, ...args) {
    for (const l of [...this.#any, ...(this.#byEvent.get(event) ?? [])]) {
      try {
        l.apply(this, args);
      } catch (error) {
        // A listener's exception must not break delivery to the others, nor end the process.
        reportListenerError(error);
      }
    }
  }

  static #parse(args) {
    if (args.length === 0) return [null, undefined];
    if (typeof args[0] === 'function') return [null, args[0]];
    if (args[0] === null || args[0] === undefined) return [null, args[1]];
    const events = Array.isArray(args[0]) ? args[0] : [args[0]];
    return [events, args[1]];
  }
}

/** Where a listener's exception goes: the page's error reporting in a browser (the console and
 * `error` listeners, as an uncaught exception would), the console elsewhere (as ably-js logs it). */
function reportListenerError(error) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(error);
  else console.error('rollcall: a listener threw:', error);
}

// ---- data on the wire ------------------------------------------------------------------------

/** Encodes data as ably-js does: objects as JSON text, binary as base64. */
function encodeData(data) {
  if (data === undefined || data === null) return {};
  if (typeof data === 'string') return { data };
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return { data: toBase64(bytes), encoding: 'base64' };
  }
  // Objects and arrays, as ably-js takes them: a Map, a Set or a Date would arrive as `{}` or
  // as something else, and is refused (as ably-js does).
  const tag = Object.prototype.toString.call(data);
  if (tag === '[object Object]' || tag === '[object Array]') {
    try {
      return { data: JSON.stringify(data), encoding: 'json' };
    } catch (cause) {
      throw new ErrorInfo(`data cannot be encoded as JSON: ${cause?.message ?? cause}`, 40013, 400, cause);
    }
  }
  throw new ErrorInfo(`data of type ${tag.slice(8, -1)} is not supported: use a string, an object, an array or binary`, 40013, 400);
}

/** Decodes data by its encoding, innermost last; what cannot be decoded stays in `encoding`. */
function decodeData(data, encoding, platform) {
  if (!encoding) return { data, encoding: undefined };
  const steps = encoding.split('/');
  while (steps.length) {
    const step = steps[steps.length - 1];
    try {
      if (step === 'json') data = JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data));
      else if (step === 'base64') data = platform.binary(fromBase64(data));
      else if (step === 'utf-8' || step === 'utf8') data = new TextDecoder().decode(data);
      else break;
    } catch {
      break;
    }
    steps.pop();
  }
  return { data, encoding: steps.length ? steps.join('/') : undefined };
}

function toBase64(bytes) {
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

const WIRE_ACTIONS = ['absent', 'present', 'enter', 'leave', 'update'];

/** A presence message as the API gives it: action by name, data decoded. */
export class PresenceMessage {
  constructor(raw, platform) {
    this.id = raw.id;
    this.action = typeof raw.action === 'number' ? WIRE_ACTIONS[raw.action] : raw.action;
    this.clientId = raw.clientId;
    this.connectionId = raw.connectionId;
    const { data, encoding } = decodeData(raw.data, raw.encoding, platform);
    this.data = data;
    this.encoding = encoding;
    this.extras = raw.extras;
    this.timestamp = raw.timestamp;
    // Beyond Ably: the member's connection was lost and it stays for its grace window.
    if (raw.connectionLost) this.connectionLost = true;
  }
}

// ---- Realtime --------------------------------------------------------------------------------

/**
 * The client. `new Realtime({ clientId, key | token, endpoint, port, tls | url, transportParams,
 * autoConnect, closeOnUnload, recover })`.
 */
export class BaseRealtime {
  #core;
  #platform;
  #pending = new Map();
  #tokenSource = null;
  #renewing = null;

  constructor(options, platform) {
    if (typeof options === 'string') options = options.includes(':') ? { key: options } : { token: options };
    if (!options || typeof options !== 'object') throw badArgs('options are required');
    if (options.clientId !== undefined && (typeof options.clientId !== 'string' || !options.clientId || options.clientId === '*')) {
      throw new ErrorInfo('clientId must be a non-empty string other than *', 40012, 400);
    }
    this.options = { ...options };
    this.#platform = platform;
    const { url, rest } = endpoints(options, platform);
    this.restUrl = rest;
    this.clientId = options.clientId;
    this.#tokenSource = tokenSource(options);
    this.auth = {
      clientId: options.clientId,
      tokenDetails: undefined,
      /** Gets a new token now (from authUrl or authCallback) and uses it; resolves to its details. */
      authorize: () => this.#renew().then(() => this.auth.tokenDetails),
    };
    this.connection = new Connection(this);
    this.channels = new Channels(this);
    /** The hub's time, in milliseconds since the epoch (`GET /time`). */
    this.time = async () => (await (await fetch(`${rest}/time`)).json())[0];
    this.#core = new platform.ClientCore(
      {
        url,
        clientId: options.clientId,
        realtimeRequestTimeout: options.realtimeRequestTimeout,
        disconnectedRetryTimeout: options.disconnectedRetryTimeout,
        suspendedRetryTimeout: options.suspendedRetryTimeout,
        channelRetryTimeout: options.channelRetryTimeout,
        seed: Math.floor(Math.random() * 2 ** 32),
        renewableAuth: this.#tokenSource !== null,
      },
      (kind, ...args) => this.#onEvent(kind, args),
    );
    // The function form cannot work with a page that closes its connection as it goes: it is
    // dropped then, as Ably's client drops it.
    const recover = typeof options.recover === 'function' && options.closeOnUnload === true ? undefined : options.recover;
    // A recovering client keeps its connection through the unload instead (as Ably's does).
    if (options.closeOnUnload ?? (platform.isBrowser && !recover)) platform.onUnload?.(this);
    if (options.token) this.#useToken(typeof options.token === 'string' ? options.token : options.token.token);
    // On the next tick, as Ably's does, so that listeners added just after construction hear
    // `connecting`.
    const start = () => {
      if (options.autoConnect ?? true) queueMicrotask(() => this.connection.state === 'initialized' && this.connect());
    };
    if (typeof recover === 'string') this.#recover(recover);
    if (typeof recover !== 'function') return start();
    // The function form (browsers): the page before this one left its key in sessionStorage,
    // and `recover(lastConnectionDetails, callback)` says whether to take the connection over.
    // Connecting waits for its answer.
    const storage = options.recoveryKeyStorageName ?? 'rollcall-connection-recovery';
    platform.persistOnUnload?.(this, storage);
    const last = platform.takeRecovery?.(storage);
    if (!last) return start();
    this.#deciding = true;
    recover(last, (yes) => {
      if (!this.#deciding) return;
      this.#deciding = false;
      if (yes) this.#recover(last.recoveryKey);
      if (this.#connectWhenDecided) this.connect();
      else start();
    });
  }

  /** Why the last token could not be had while connecting (80019). */
  #authFailure;

  /** Whether `recover` (a function) has yet to answer, and whether to connect once it has. */
  #deciding = false;
  #connectWhenDecided = false;

  /** Takes over the connection a recovery key names, when it is readable and the client has
   * not connected yet; a key the hub no longer knows gives a new connection (80008). */
  #recover(key) {
    let parsed;
    try {
      parsed = JSON.parse(key);
    } catch {
      return;
    }
    const { connectionKey, msgSerial } = parsed ?? {};
    if (typeof connectionKey === 'string' && Number.isSafeInteger(msgSerial) && msgSerial >= 0) {
      this.#core.recover(connectionKey, msgSerial);
    }
  }

  #useToken(token) {
    const expires = tokenExpiry(token);
    this.auth.tokenDetails = { token, expires, clientId: this.clientId };
    this.#core.setToken(token, expires);
  }

  /** Gets a token from authUrl or authCallback and hands it to the core; once at a time. */
  #renew() {
    if (!this.#tokenSource) return Promise.reject(new ErrorInfo('no means to renew the token: give authUrl or authCallback', 40171, 403));
    this.#renewing ??= (async () => {
      try {
        this.#useToken(await this.#tokenSource({ clientId: this.clientId }));
      } catch (cause) {
        const error = new ErrorInfo(`unable to get a token: ${cause?.message ?? cause}`, 40170, 401, cause);
        // Waiting for it to connect, it cannot (RSA4c2): disconnected with 80019 (and why), and
        // it asks again when it next tries, on the usual schedule.
        this.#authFailure = new ErrorInfo(error.message, 80019, 401, cause);
        if (this.connection.state === 'connecting' && this.#core.tokenFailed()) throw error;
        this.connection.errorReason = error;
        this.connection.emit('update', { current: this.connection.state, previous: this.connection.state, event: 'update', reason: error });
        // Try again later unless the client was closed meanwhile.
        setTimeout(() => {
          if (!['closed', 'closing', 'failed'].includes(this.connection.state)) this.#renew().catch(() => {});
        }, this.options.disconnectedRetryTimeout ?? 15000);
        throw error;
      } finally {
        this.#renewing = null;
      }
    })();
    return this.#renewing;
  }

  /** The `Authorization` header for REST reads: the key, or the current token (got first when
   * there is none yet). @internal */
  async _restAuthorization() {
    if (this.options.key) return `Basic ${btoa(this.options.key)}`;
    if (!this.auth.tokenDetails && this.#tokenSource) await this.#renew();
    const token = this.auth.tokenDetails?.token;
    return token ? `Bearer ${btoa(token)}` : undefined;
  }

  /** Whether a new token can be had (authUrl or authCallback). @internal */
  get _renewable() {
    return this.#tokenSource !== null;
  }

  /** @internal */
  get _core() {
    return this.#core;
  }

  /** @internal */
  get _platform() {
    return this.#platform;
  }

  connect() {
    if (this.#deciding) {
      this.#connectWhenDecided = true;
      return;
    }
    // Without a token yet, the core asks for one (TokenNeeded) before it connects.
    this.#core.connect();
  }

  close() {
    this.#connectWhenDecided = false;
    this.#core.close();
  }

  /** The round trip to the hub in ms, as Ably's `connection.ping()`: a HEARTBEAT with an id,
   * which the hub sends back. @internal */
  _ping() {
    const ws = this.#socket;
    const id = `${Math.random()}`;
    const start = Date.now();
    if (this.connection.state !== 'connected' || !ws) return Promise.reject(new ErrorInfo('not connected', 40000, 400));
    ws.send(`{"action":0,"id":"${id}"}`);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new ErrorInfo('no answer to the ping', 50000, 500), this.#pings.delete(id)), this.options.realtimeRequestTimeout ?? 1e4);
      this.#pings.set(id, () => resolve(Date.now() - start, clearTimeout(timer)));
    });
  }

  #pings = new Map();

  /** Where this client is present: `[{ channel, clientId, data }]`. @internal */
  _presentOn() {
    return this.channels
      ._all()
      .flatMap((c) => [...c.presence._entered].map(([clientId, data]) => ({ channel: c.name, clientId, data })));
  }

  /** Runs an operation of the core and resolves when the hub settles it. @internal */
  _op(start) {
    return new Promise((resolve, reject) => {
      const id = start(this.#core);
      this.#pending.set(id, { resolve, reject });
      this.#flushEarly(id);
    });
  }

  #early = new Map();

  #flushEarly(id) {
    if (!this.#early.has(id)) return;
    const error = this.#early.get(id);
    this.#early.delete(id);
    this.#settle(id, error);
  }

  #settle(id, error) {
    const waiter = this.#pending.get(id);
    if (!waiter) {
      // Settled synchronously, before the promise registered.
      this.#early.set(id, error);
      return;
    }
    this.#pending.delete(id);
    if (error) waiter.reject(new ErrorInfo(error.message, error.code, error.statusCode));
    else waiter.resolve();
  }

  /** The presence event just told, if the last event was one: the core tells of a client
   * coming online or going offline right after the event that did it. */
  #cause;

  #onEvent(kind, args) {
    const cause = this.#cause;
    this.#cause = undefined;
    switch (kind) {
      case 0: {
        const [current, previous, reason, retryIn] = args;
        // The hub says who this connection is: the clientId a token binds it to, say.
        const clientId = current === 'connected' ? this.#core.clientId : undefined;
        if (clientId && clientId !== '*') {
          this.clientId = this.auth.clientId = clientId;
          if (this.auth.tokenDetails) this.auth.tokenDetails.clientId = clientId;
        }
        const why = reason?.code === 80019 ? this.#authFailure : reason && ErrorInfo.from(reason);
        this.connection._change(current, previous, why, retryIn);
        break;
      }
      case 1: {
        const [name, current, previous, reason, resumed] = args;
        this.channels._existing(name)?._change(current, previous, reason && ErrorInfo.from(reason), resumed);
        break;
      }
      case 2: {
        const [name, raw] = args;
        this.#cause = new PresenceMessage(raw, this.#platform);
        this.channels._existing(name)?.presence._event(this.#cause);
        break;
      }
      case 3:
        this.#settle(args[0], args[1]);
        break;
      case 4:
        this.channels._existing(args[0])?.presence._synced();
        break;
      case 5: {
        const [name, clientId, online, initial] = args;
        this.channels._existing(name)?.presence._clientChange(clientId, online, initial, cause);
        break;
      }
      case 6:
        this.#renew().catch(() => {});
        break;
      case 7: {
        const [name, connectionId, lost] = args;
        this.channels._existing(name)?.presence._connectionStatus(connectionId, lost);
        break;
      }
      case 8:
        this.#open(args[0]);
        break;
      case 9:
        this.#dropSocket();
        break;
      case 10:
        this.#socket?.send(args[0]);
        break;
      case 11:
        clearTimeout(this.#timer);
        this.#timer =
          args[0] < 0
            ? undefined
            : setTimeout(() => {
                this.#timer = undefined;
                this.#core.timeout();
              }, args[0]);
        break;
    }
  }

  // ---- the I/O the core asks for: one WebSocket and one timer --------------------------------

  #socket = null;
  #timer;

  #open(url) {
    this.#dropSocket();
    let ws;
    try {
      ws = new this.#platform.WebSocket(url);
    } catch {
      // The URL or the constructor is unusable: a transport that closed at once.
      this.#core.transportClosed();
      return;
    }
    this.#socket = ws;
    const mine = (handler) => (event) => ws === this.#socket && handler(event);
    ws.onopen = mine(() => this.#core.transportOpened());
    ws.onmessage = mine((event) => {
      if (typeof event.data !== 'string') return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      // The answer to a ping (a HEARTBEAT with its id).
      this.#pings.get(message?.id)?.(this.#pings.delete(message.id));
      this.#core.transportMessage(message);
    });
    ws.onclose = mine(() => {
      this.#socket = null;
      this.#core.transportClosed();
    });
    ws.onerror = () => {};
  }

  #dropSocket() {
    const ws = this.#socket;
    this.#socket = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    // A socket closed while connecting still reports an error: something must hear it.
    ws.onerror = () => {};
    try {
      ws.close();
    } catch {
      // already closing
    }
  }
}

/** Where tokens come from: `authCallback(tokenParams, callback?)` or `authUrl`, or nowhere. */
function tokenSource(options) {
  if (typeof options.authCallback === 'function') {
    const callback = options.authCallback;
    return (params) =>
      new Promise((resolve, reject) => {
        // A token that is no token fails this fetch, however late the callback answers: it
        // must not throw into the caller's code and leave the fetch unsettled.
        const give = (token) => {
          try {
            resolve(tokenText(token));
          } catch (e) {
            reject(e);
          }
        };
        const returned = callback(params, (error, token) => (error ? reject(error) : give(token)));
        const isToken = (t) => typeof t === 'string' || typeof t?.token === 'string';
        // A promise of the token, or the token itself; anything else (a timer, a request, a
        // promise of nothing) leaves the answer to the callback.
        if (returned && typeof returned.then === 'function') {
          returned.then((t) => isToken(t) && give(t), reject);
        } else if (isToken(returned)) {
          give(returned);
        }
      });
  }
  if (options.authUrl) {
    return async (params) => {
      const url = new URL(options.authUrl, globalThis.location?.href);
      // As Ably's: the params go in the query, or with POST as a form in the body.
      const post = /^post$/i.test(options.authMethod);
      const form = post ? new URLSearchParams() : url.searchParams;
      for (const [k, v] of Object.entries({ ...options.authParams, ...(params.clientId ? { clientId: params.clientId } : {}) })) {
        form.set(k, String(v));
      }
      const response = await fetch(url, post ? { method: 'POST', headers: options.authHeaders, body: form } : { headers: options.authHeaders });
      if (!response.ok) throw new ErrorInfo(`authUrl answered ${response.status}`, 40170, 401);
      const text = await response.text();
      return tokenText(response.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text);
    };
  }
  return null;
}

function tokenText(token) {
  const text = typeof token === 'string' ? token : token?.token;
  if (typeof text !== 'string' || !text) throw new ErrorInfo('the token source gave no token', 40170, 401);
  return text;
}

/** When a JWT expires (ms since the epoch), or undefined for another kind of token. */
function tokenExpiry(token) {
  try {
    const body = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const exp = JSON.parse(atob(body + '='.repeat((4 - (body.length % 4)) % 4))).exp;
    return typeof exp === 'number' ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** The connect URL and REST base for the options. */
function endpoints(options, platform) {
  const params = new URLSearchParams();
  if (options.key) params.set('key', options.key);
  else if (options.token) params.set('access_token', typeof options.token === 'string' ? options.token : options.token.token);
  if (options.clientId) params.set('clientId', options.clientId);
  if (options.echoMessages === false) params.set('echo', 'false');
  params.set('format', 'json');
  params.set('heartbeats', 'true');
  params.set('v', '6');
  params.set('agent', `rollcall-js/${VERSION}`);
  for (const [name, value] of Object.entries(options.transportParams ?? {})) {
    if (value === undefined) continue;
    // The hub would read a non-number as absent and use its default: say so now instead.
    if ((name === 'remainPresentFor' || name === 'heartbeatInterval') && !(Number(value) >= 0 && value !== '' && value !== null)) {
      throw badArgs(`transportParams.${name} must be a number of milliseconds, not ${JSON.stringify(value)}`);
    }
    params.set(name, String(value));
  }
  let base;
  if (options.url) {
    try {
      base = new URL(options.url);
    } catch {
      base = null;
    }
    // http: and https: name the same hub (`ws` and browsers take them too).
    const scheme = { 'ws:': 'ws:', 'wss:': 'wss:', 'http:': 'ws:', 'https:': 'wss:' }[base?.protocol];
    if (!scheme) throw badArgs(`url must be a full URL such as ws://localhost:8080, not ${options.url}`);
    base = new URL(`${scheme}//${base.host}${base.pathname}`);
  } else {
    const tls = options.tls ?? platform.defaultTls?.() ?? false;
    // Ably's older names for the host are taken too.
    const host = options.endpoint ?? options.realtimeHost ?? options.restHost ?? platform.defaultHost?.() ?? 'localhost';
    // One colon is a port in the host name; IPv6 addresses have several.
    if (/^[^:]*:\d*$/.test(host)) {
      throw badArgs(`the host is a name only: give the port as the port option (host '${host.split(':')[0]}', port ${host.split(':')[1] || '…'})`);
    }
    // As Ably's: `tlsPort` under TLS, `port` otherwise (rollcall also takes `port` for both).
    const port = (tls ? options.tlsPort : undefined) ?? options.port ?? (options.tls === undefined ? platform.defaultPort?.() : undefined) ?? (tls ? 443 : 80);
    base = new URL(`${tls ? 'wss' : 'ws'}://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}/`);
  }
  // As Ably's (RSA1): a key is sent under TLS only, unless to this machine.
  if (options.key && base.protocol === 'ws:' && !/^((.+\.)?localhost|127\.[\d.]+|\[::1\])$/.test(base.hostname)) {
    throw new ErrorInfo(`a key goes to ${base.hostname} only with tls (wss:); or use a token`, 40103, 401);
  }
  const path = base.pathname.endsWith('/') ? base.pathname : `${base.pathname}/`;
  // REST reads are served beside the WebSocket, under the same path.
  const rest = `${base.protocol === 'wss:' ? 'https:' : 'http:'}//${base.host}${path.slice(0, -1)}`;
  return { url: `${base.protocol}//${base.host}${path}?${params}`, rest };
}

export class Connection extends EventEmitter {
  #realtime;

  constructor(realtime) {
    super();
    this.#realtime = realtime;
    this.state = 'initialized';
    this.errorReason = null;
  }

  get id() {
    return this.#realtime._core.connectionId;
  }

  get key() {
    // Before connecting, a key to recover is not this connection's yet.
    return this.state === 'initialized' ? undefined : this.#realtime._core.connectionKey;
  }

  /** A key with which a later client (a reloaded page, a restarted process) takes over this
   * connection by `new Realtime({ recover: key })`, so that its members neither leave nor
   * enter again; `null` when there is no connection to recover (not connected yet, closing,
   * closed, failed or suspended: RTN16g2). Ably's format. */
  createRecoveryKey() {
    const core = this.#realtime._core;
    // Only once connected: a key being recovered is about to be replaced by the hub's.
    const connectionKey = this.id && this.key;
    const over = ['closing', 'closed', 'failed', 'suspended'].includes(this.state);
    return connectionKey && !over ? JSON.stringify({ connectionKey, msgSerial: core.msgSerial, channelSerials: {} }) : null;
  }

  connect() {
    this.#realtime.connect();
  }

  close() {
    this.#realtime.close();
  }

  /** The round trip to the hub, in milliseconds (as Ably's). */
  ping() {
    return this.#realtime._ping();
  }

  /** Drops the transport without closing, as a lost network would; stays offline for
   * `offlineForMs` (default: until `connect()`). */
  simulateDrop(offlineForMs) {
    this.#realtime._core.simulateDrop(offlineForMs);
  }

  /** Resolves once the connection is in `state`: with `null` if it is now, else with the change. */
  whenState(state) {
    return whenState(this, state);
  }

  _change(current, previous, reason, retryIn) {
    this.state = current;
    // Connected, the last problem is over (RTN14a): the reason is this change's, if any.
    if (reason || current === 'connected') this.errorReason = reason ?? null;
    const change = { current, previous, event: current, reason: reason ?? undefined, retryIn };
    this.emit(current, change);
  }
}

/** As Ably's `whenState`: `null` when `emitter` is in `state` now, else the change to it. */
function whenState(emitter, state) {
  return emitter.state === state ? Promise.resolve(null) : emitter.once(state);
}

export class Channels {
  #realtime;
  #all = new Map();

  constructor(realtime) {
    this.#realtime = realtime;
  }

  /** `options`: `{ attachOnSubscribe }` (default true), as Ably's. */
  get(name, options) {
    if (typeof name !== 'string' || !name) throw badArgs('a channel name is required');
    let channel = this.#all.get(name);
    if (!channel) this.#all.set(name, (channel = new RealtimeChannel(this.#realtime, name)));
    if (options) channel.channelOptions = options;
    return channel;
  }

  /** Drops this client's reference to a channel, detaching it (as Ably's): a later
   * `get(name)` gives a new channel. */
  release(name) {
    const channel = this.#all.get(name);
    if (!channel) return;
    // Dropped now, so that a `get` before the detach settles is not left with a channel
    // that no longer hears anything.
    this.#all.delete(name);
    if (!['initialized', 'detached', 'failed'].includes(channel.state)) channel.detach().catch(() => {});
  }

  /** @internal */
  _existing(name) {
    return this.#all.get(name);
  }

  /** @internal */
  _all() {
    return [...this.#all.values()];
  }
}

export class RealtimeChannel extends EventEmitter {
  #realtime;

  constructor(realtime, name) {
    super();
    this.#realtime = realtime;
    this.name = name;
    this.state = 'initialized';
    this.errorReason = null;
    this.presence = new RealtimePresence(realtime, this);
  }

  attach() {
    return this.#realtime._op((core) => core.attach(this.name));
  }

  detach() {
    return this.#realtime._op((core) => core.detach(this.name));
  }

  /** Resolves once the channel is in `state`: with `null` if it is now, else with the change. */
  whenState(state) {
    return whenState(this, state);
  }

  _change(current, previous, reason, resumed) {
    this.state = current;
    if (reason) this.errorReason = reason;
    const change = { current, previous, event: current === previous ? 'update' : current, reason: reason ?? undefined, resumed };
    if (current === 'suspended' || current === 'detached' || current === 'failed') this.presence._abandonSync(current, reason);
    // Members here are gone with the channel (a suspended one re-enters them when back).
    if (current === 'detached' || current === 'failed') this.presence._entered.clear();
    this.emit(change.event, change);
  }
}

/** `channel.presence`: Ably's calls, plus client-level presence (users across devices). */
export class RealtimePresence {
  #realtime;
  #channel;
  #listeners = new EventEmitter();
  #clientListeners = new EventEmitter();
  #syncWaiters = [];

  constructor(realtime, channel) {
    this.#realtime = realtime;
    this.#channel = channel;
  }

  get syncComplete() {
    return this.#realtime._core.syncComplete(this.#channel.name);
  }

  enter(data) {
    return this.#send(2, undefined, data);
  }

  update(data) {
    return this.#send(4, undefined, data);
  }

  leave(data) {
    return this.#send(3, undefined, data);
  }

  enterClient(clientId, data) {
    return this.#send(2, requireClientId(clientId), data);
  }

  updateClient(clientId, data) {
    return this.#send(4, requireClientId(clientId), data);
  }

  leaveClient(clientId, data) {
    return this.#send(3, requireClientId(clientId), data);
  }

  /** What this client entered here, by client id (`undefined`: as itself). @internal */
  _entered = new Map();

  async #send(action, clientId, value) {
    const encoded = encodeData(value);
    const name = this.#channel.name;
    await this.#realtime._op((core) => core.presence(name, action, clientId, encoded.data, encoded.encoding, undefined));
    // Not on a channel detached meanwhile: what was entered there went with the detach.
    if (action === 3) this._entered.delete(clientId);
    else if (!['detached', 'failed'].includes(this.#channel.state)) this._entered.set(clientId, value);
  }

  /** The members: `{ waitForSync = true, clientId, connectionId }`. */
  async get(params) {
    const { waitForSync = true, clientId, connectionId } = params ?? {};
    const channel = this.#channel;
    if (channel.state === 'failed') throw new ErrorInfo(`unable to get presence on failed channel ${channel.name}`, 90001, 400);
    if (channel.state === 'suspended' && waitForSync) {
      throw new ErrorInfo('presence state is out of sync: the channel is suspended', 91005, 400);
    }
    if (channel.state !== 'attached' && !(channel.state === 'suspended' && !waitForSync)) await channel.attach();
    if (waitForSync && !this.syncComplete) {
      // The channel may have left `attached` in the same turn as the attach settled.
      if (channel.state !== 'attached') throw syncError(channel, channel.state, channel.errorReason);
      await new Promise((resolve, reject) => this.#syncWaiters.push({ resolve, reject }));
    }
    // As Ably's, a filter that is absent, null or empty filters nothing.
    if (clientId && typeof clientId !== 'string') return [];
    return this.#members(clientId || undefined).filter((m) => !connectionId || m.connectionId === connectionId);
  }

  /** The members, or one client id's devices (looked up in the core, not scanned for). */
  #members(clientId) {
    const platform = this.#realtime._platform;
    return this.#realtime._core.members(this.#channel.name, clientId).map((raw) => new PresenceMessage(raw, platform));
  }

  /** `subscribe([action | actions], listener)`, or `subscribe()`: resolves once the channel is
   * attached. */
  async subscribe(...args) {
    if (this.#channel.state === 'failed') throw new ErrorInfo(`unable to subscribe on failed channel ${this.#channel.name}`, 90001, 400);
    // As Ably's, with no listener it only attaches.
    if (args.at(-1) !== undefined) this.#listeners.on(...args);
    if (this.#channel.state !== 'attached' && this.#channel.channelOptions?.attachOnSubscribe !== false) await this.#channel.attach();
  }

  /** `unsubscribe()`, `(listener)`, `(action)`, `(actions)`, `(action, listener)`, `(actions, listener)`. */
  unsubscribe(...args) {
    this.#listeners.off(...args);
  }

  /**
   * Presence history from the hub: `{ start, end, direction = 'backwards', limit = 100 }`.
   * Resolves to a page: `{ items, hasNext(), isLast(), next(), first(), current() }`.
   */
  history(params) {
    params ??= {};
    const query = new URLSearchParams();
    for (const key of ['start', 'end', 'direction', 'limit']) {
      if (params[key] !== undefined) query.set(key, String(params[key] instanceof Date ? params[key].getTime() : params[key]));
    }
    // On the edge, the shard the connection lives on holds the channel's history too.
    const shard = this.#realtime.options.transportParams?.shard;
    if (shard !== undefined) query.set('shard', String(shard));
    const base = `${this.#realtime.restUrl}/channels/${encodeURIComponent(this.#channel.name)}/presence/`;
    return fetchPage(this.#realtime, base, `history?${query}`);
  }

  // ---- beyond Ably: client-level presence ----------------------------------------------------

  /** The members grouped by client id: `[{ clientId, devices: PresenceMessage[] }]`. */
  async getClients(params = {}) {
    const members = await this.get(params);
    const clients = new Map();
    for (const m of members) (clients.get(m.clientId) ?? clients.set(m.clientId, []).get(m.clientId)).push(m);
    return [...clients].map(([clientId, devices]) => ({ clientId, devices }));
  }

  /** Whether a client id has at least one device present (from the view, without waiting). */
  isOnline(clientId) {
    return typeof clientId === 'string' && this.#members(clientId).length > 0;
  }

  /**
   * `subscribeClients([action | actions], listener)`: a client id came online (`online`: its
   * first device entered) or went offline (`offline`: its last device left, on every device);
   * one of its devices lost its connection and stays for its grace window (`connectionLost`, 2 s
   * after the hub notices the drop) or is back (`connectionRestored`). The listener gets `{ action, clientId, devices, initial }`
   * (and `connectionId` for the connection events). Resolves once the channel is attached.
   */
  async subscribeClients(...args) {
    this.#clientListeners.on(...args);
    if (this.#channel.state !== 'attached') await this.#channel.attach();
  }

  unsubscribeClients(...args) {
    this.#clientListeners.off(...args);
  }

  _event(message) {
    this.#listeners.emit(message.action, message);
  }

  _synced() {
    for (const waiter of this.#syncWaiters.splice(0)) waiter.resolve();
  }

  /** The channel left `attached` before its SYNC completed: a `get()` waiting for it fails. */
  _abandonSync(state, reason) {
    const error = syncError(this.#channel, state, reason);
    for (const waiter of this.#syncWaiters.splice(0)) waiter.reject(error);
  }

  // The two below run once per event: with no listener they cost nothing. With one,
  // `_connectionStatus` reads the members once.
  _connectionStatus(connectionId, lost) {
    const action = lost ? 'connectionLost' : 'connectionRestored';
    if (!this.#clientListeners._hears(action)) return;
    const members = this.#members();
    for (const clientId of new Set(members.filter((m) => m.connectionId === connectionId).map((m) => m.clientId))) {
      const devices = members.filter((m) => m.clientId === clientId);
      this.#clientListeners.emit(action, { action, clientId, connectionId, devices, initial: false, timestamp: Date.now() });
    }
  }

  /** `cause`: the presence event that brought it about, if any (none when this client's view
   * is dropped, on a detach). */
  _clientChange(clientId, online, initial, cause) {
    const action = online ? 'online' : 'offline';
    if (!this.#clientListeners._hears(action)) return;
    // The devices as of this event, not as of the end of its frame (which may hold more
    // events of the same client): the one that came, or none.
    const devices = online && cause ? [{ ...cause, action: 'present' }] : [];
    const change = { action, clientId, devices, initial, timestamp: Date.now() };
    const leave = cause?.action === 'leave' ? cause : undefined;
    if (!online && leave?.clientId === clientId) {
      // Why the last device went: the hub's reason for a leave it made (its ids start with
      // `!`), `left` for a leave of the client's own; unknown for one this client inferred
      // (a member missing from a SYNC).
      change.reason = leave.id?.startsWith('!') ? leave.extras?.reason : leave.id && 'left';
      change.leave = leave;
    }
    this.#clientListeners.emit(action, change);
  }
}

/** Why a `get()` that waits for the SYNC cannot have it: the channel is `state`. */
function syncError(channel, state, reason) {
  return state === 'suspended'
    ? new ErrorInfo('presence state is out of sync: the channel is suspended', 91005, 400)
    : new ErrorInfo(`unable to get presence: channel ${channel.name} is ${state}${reason ? ` (${reason.message})` : ''}`, 90001, 400);
}

function requireClientId(clientId) {
  if (typeof clientId !== 'string' || !clientId) throw badArgs('a clientId is required');
  return clientId;
}

async function fetchPage(realtime, base, relative, renewed = false) {
  const headers = { accept: 'application/json', 'x-ably-version': '6' };
  const authorization = await realtime._restAuthorization();
  if (authorization) headers.authorization = authorization;
  const response = await fetch(base + relative, { headers });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const e = body?.error ?? {};
    // An expired or rejected token: get a new one and try once more (RSA4b).
    if (!renewed && e.code >= 40140 && e.code < 40150 && realtime._renewable) {
      await realtime.auth.authorize();
      return fetchPage(realtime, base, relative, true);
    }
    throw new ErrorInfo(e.message ?? `request failed with status ${response.status}`, e.code ?? 50000, e.statusCode ?? response.status);
  }
  const links = {};
  for (const part of (response.headers.get('link') ?? '').split(',')) {
    const match = part.trim().match(/^<\.\/(.+)>; rel="(\w+)"$/);
    if (match) links[match[2]] = match[1];
  }
  const platform = realtime._platform;
  return {
    items: (body ?? []).map((raw) => new PresenceMessage(raw, platform)),
    hasNext: () => 'next' in links,
    isLast: () => !('next' in links),
    next: () => ('next' in links ? fetchPage(realtime, base, links.next) : Promise.resolve(null)),
    first: () => fetchPage(realtime, base, links.first ?? relative),
    current: () => fetchPage(realtime, base, links.current ?? relative),
  };
}
