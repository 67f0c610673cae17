// The public API, in Ably's shape: Realtime, connection, channels, channel.presence.
// The state machine is the Wasm core (ClientCore), which does no I/O; this file carries out
// what it asks (one WebSocket, one timer) and adds listeners, promises, data encoding and REST.
// Each entry point (browser.js, node.js, workerd.js) supplies the platform.

import { Channels } from './channels.js';
import { ErrorInfo, EventEmitter, badArgs, restGet, whenState } from './events.js';
import { PresenceMessage } from './message.js';

export { ErrorInfo, EventEmitter } from './events.js';
export { PresenceMessage } from './message.js';
export { Channels, RealtimeChannel, RealtimePresence } from './channels.js';

const VERSION = '0.1.0';

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
  #tokenParams = {};

  constructor(options, platform) {
    if (typeof options === 'string') options = options.includes(':') ? { key: options } : { token: options };
    if (!options || typeof options !== 'object') throw badArgs('options are required');
    // As Ably's: null (or '') is an anonymous client.
    if (options.clientId === null || options.clientId === '') options = { ...options, clientId: undefined };
    // Ably's other name for a token given up front.
    if (options.tokenDetails && !options.token) options = { ...options, token: options.tokenDetails };
    if (options.clientId !== undefined && (typeof options.clientId !== 'string' || !options.clientId || options.clientId === '*')) {
      throw new ErrorInfo('clientId must be a string other than *, or null', 40012, 400);
    }
    this.options = { ...options };
    this.#tokenParams = { ...options.defaultTokenParams };
    this.#platform = platform;
    const { url, rest } = endpoints(options, platform);
    this.restUrl = rest;
    this.clientId = options.clientId;
    this.#tokenSource = tokenSource(options);
    this.auth = {
      clientId: options.clientId,
      tokenDetails: undefined,
      /** Gets a new token now (from authUrl or authCallback) and uses it; resolves to its details. */
      // As Ably's (RSA10j): token params given here hold for later renewals too.
      // As Ably's, it settles once the hub has taken the token: connected (or confirmed, RTN24),
      // or it fails with the connection (failed, closed, suspended); not connected, it connects.
      authorize: async (tokenParams) => {
        if (tokenParams) {
          this.#tokenParams = { ...tokenParams };
          // A renewal under way asked with the params before: these are asked for after it.
          await this.#renewing?.catch(() => {});
        }
        const closes = this.#closes;
        await this.#renew();
        // Closed meanwhile (and not opened again since): not opened again behind the app's back.
        if (closes !== this.#closes && /^clos/.test(this.connection.state)) throw new ErrorInfo('connection closed', 80017, 400);
        // Waited for from the token on: a `connected` before it (a reconnect) is not its answer.
        const taken = new Promise((resolve, reject) => this.#authWaiters.push([resolve, reject]));
        if (this.connection.state !== 'connected' && this.connection.state !== 'connecting') this.connect();
        await taken;
        return this.auth.tokenDetails;
      },
    };
    this.connection = new Connection(this);
    this.channels = new Channels(this);
    /** The hub's time, in milliseconds since the epoch (`GET /time`). */
    this.time = async () => (await restGet(`${rest}/time`, undefined, options.httpRequestTimeout))[0][0];
    this.#core = new platform.ClientCore(
      {
        url,
        clientId: options.clientId,
        realtimeRequestTimeout: options.realtimeRequestTimeout,
        disconnectedRetryTimeout: options.disconnectedRetryTimeout,
        suspendedRetryTimeout: options.suspendedRetryTimeout,
        channelRetryTimeout: options.channelRetryTimeout,
        // Below 2^31: the binding holds every number to a timer's range, which made every seed
        // above it one and the same (half of all clients retrying in step).
        seed: Math.floor(Math.random() * 2 ** 31),
        // (What is not a number is refused above, by endpoints(); absent, the core's default.)
        remainPresentFor: (this.#asked = +options.transportParams?.remainPresentFor),
        renewableAuth: this.#tokenSource !== null,
      },
      // (workerd has no WeakRef without a compatibility flag: there, held as before.)
      BaseRealtime.#relay(typeof WeakRef === 'function' ? new WeakRef(this) : { deref: () => this }),
    );
    // The function form cannot work with a page that closes its connection as it goes: it is
    // dropped then, as Ably's client drops it.
    const recover = typeof options.recover === 'function' && options.closeOnUnload === true ? undefined : options.recover;
    // A recovering client keeps its connection through the unload instead (as Ably's does).
    if (options.closeOnUnload ?? (platform.isBrowser && !recover)) platform.onUnload?.(this);
    platform.followNetwork?.(this);
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

  /** Those waiting in `authorize()` for the hub to take the token: `[resolve, reject]`. */
  #authWaiters = [];

  /** The timer of a renewal tried again after a failure. */
  #renewRetry;
  /** Cancels the token request under way. */
  #renewAbort;

  /** How many times `close()` was called. */
  #closes = 0;

  /** Gets a new token and hands it to the core, without waiting for the hub (REST). @internal */
  _renew() {
    return this.#renew();
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
      // Not waited for past realtimeRequestTimeout (RSA4c): a source that never answers would
      // leave the client connecting for good. Nor once the client is closed: its requests are
      // cancelled, rather than keep a program that closed it running.
      const wait = this.options.realtimeRequestTimeout ?? 1e4;
      const abort = (this.#renewAbort = new AbortController());
      const timer = setTimeout(() => abort.abort(new Error(`no token within ${wait} ms`)), wait);
      timer.unref?.();
      const given = new Promise((_, reject) => abort.signal.addEventListener('abort', () => reject(abort.signal.reason)));
      given.catch(() => {});
      try {
        let token = await Promise.race([this.#tokenSource({ clientId: this.clientId, ...this.#tokenParams }, abort.signal), given]);
        // A TokenRequest, signed by the app's server as Ably advises: the hub exchanges it.
        if (token.mac) {
          const response = await fetch(`${this.restUrl}/keys/${encodeURIComponent(token.keyName)}/requestToken`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(token),
            signal: abort.signal,
          });
          const answer = await response.json().catch(() => ({}));
          // (An answer cut short by a close, or the timeout, is none.)
          abort.signal.throwIfAborted();
          if (!response.ok) throw ErrorInfo.from(answer.error ?? `the hub answered ${response.status}`);
          token = tokenText(answer.token);
        }
        this.#useToken(token);
      } catch (cause) {
        // A client closed meanwhile says nothing more: it said closed.
        if (abort.signal.reason?.code === 80017) throw abort.signal.reason;
        const error = new ErrorInfo(`unable to get a token: ${cause?.message ?? cause}`, 40170, 401, cause);
        // Waiting for it to connect, it cannot (RSA4c2): disconnected with 80019 (and why), and
        // it asks again when it next tries, on the usual schedule.
        this.#authFailure = new ErrorInfo(error.message, 80019, 401, cause);
        if (this.#core.tokenFailed()) throw error;
        this.connection.errorReason = error;
        this.connection.emit('update', { current: this.connection.state, previous: this.connection.state, event: 'update', reason: error });
        // Tried again later, unless the client is closed (a close also ends the timer).
        clearTimeout(this.#renewRetry);
        if (!/^(closing|closed|failed)$/.test(this.connection.state)) {
          (this.#renewRetry = setTimeout(() => this.#renew().catch(() => {}), this.options.disconnectedRetryTimeout ?? 15000)).unref?.();
        }
        throw error;
      } finally {
        clearTimeout(timer);
        // (A close let this one go: another may be under way.)
        if (this.#renewAbort === abort) this.#renewAbort = this.#renewing = null;
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

  /** How long the hub keeps this connection's members present after its link drops: what the
   * hub said once connected, before that what was asked, as the hub holds it (its default,
   * 15 s, when nothing was). @internal */
  get _grace() {
    return this.#grace ?? Math.min(Math.max(Number.isNaN(this.#asked) ? 15_000 : this.#asked, 1_000), 3_600_000);
  }

  #grace;
  #asked;

  /** @internal */
  get _platform() {
    return this.#platform;
  }

  connect() {
    this._heldOffline = false;
    if (this.#deciding) {
      this.#connectWhenDecided = true;
      return;
    }
    // Without a token yet, the core asks for one (TokenNeeded) before it connects.
    this.#core.connect();
  }

  close() {
    this.#connectWhenDecided = false;
    this.#closes++;
    clearTimeout(this.#renewRetry);
    this.#renewAbort?.abort(new ErrorInfo('connection closed', 80017, 400));
    this.#renewAbort = this.#renewing = null;
    this.#core.close();
  }

  /** The round trip to the hub in ms, as Ably's `connection.ping()`: a HEARTBEAT with an id,
   * which the hub sends back. @internal */
  _ping() {
    const ws = this.#socket;
    const id = `${Math.random()}`;
    const start = Date.now();
    if (this.connection.state !== 'connected' || !ws) return Promise.reject(new ErrorInfo('not connected', 40000, 400));
    this.#send(`{"action":0,"id":"${id}"}`);
    return new Promise((resolve, reject) => {
      const done = (error) => {
        clearTimeout(timer);
        this.#pings.delete(id);
        error ? reject(error) : resolve(Date.now() - start);
      };
      const timer = setTimeout(done, this.options.realtimeRequestTimeout ?? 1e4, new ErrorInfo('no answer to the ping', 50000, 500));
      timer.unref?.();
      this.#pings.set(id, done);
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

  /** Where the core's outputs go: to the client, held weakly, as the core (in the Wasm's table)
   * would otherwise keep it, and the core with it, for the life of the page. A live socket or
   * timer holds it meanwhile. Made where no closure holds the client (those of the
   * constructor share its `this`). */
  static #relay(ref) {
    return (kind, ...args) => ref.deref()?.#onEvent(kind, args);
  }

  #onEvent(kind, args) {
    const cause = this.#cause;
    this.#cause = undefined;
    switch (kind) {
      case 0: {
        const [current, previous, reason, retryIn] = args;
        // The hub says who this connection is: the clientId a token binds it to, say.
        const clientId = current === 'connected' ? this.#core.text(1, '') : undefined;
        if (clientId && clientId !== '*') {
          this.clientId = this.auth.clientId = clientId;
          if (this.auth.tokenDetails) this.auth.tokenDetails.clientId = clientId;
        }
        const why = reason?.code === 80019 ? this.#authFailure : reason && ErrorInfo.from(reason);
        this.connection._change(current, previous, why, retryIn);
        // What authorize() waits for: the hub took the token, or the connection is over.
        if (/^(connected|failed|closed|suspended)$/.test(current)) {
          for (const [resolve, reject] of this.#authWaiters.splice(0)) {
            current === 'connected' ? resolve() : reject(why ?? new ErrorInfo(`connection ${current}`, 80000, 400));
          }
        }
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
        const [name, connectionId, lost, initial] = args;
        this.channels._existing(name)?.presence._connectionStatus(connectionId, lost, initial);
        break;
      }
      case 8:
        this.#open(args[0]);
        break;
      case 9:
        this.#dropSocket();
        break;
      case 10:
        this.#send(args[0]);
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

  /** Frames waiting for the pace, in order, and what each budget allows now (see `#send`). */
  #paced = [];
  #budgets = [
    { rate: PACE_RATE, burst: PACE_BURST, allowed: PACE_BURST, at: 0 },
    { rate: CONTROL_RATE, burst: CONTROL_BURST, allowed: CONTROL_BURST, at: 0 },
  ];
  #pacer;

  /** Sends a frame within the hub's default inbound rates: presence messages at 100 a second
   * (bursts of 360, under the hub's 400), past which the hub refuses them (42910); other
   * frames at 2 000 (bursts of 4 000), past which it holds them back (a second's worth at
   * most: beyond, it ends the connection, 42920). An agent that enters and leaves room after
   * room, each awaited, went past it in a second; its frames now wait their turn here, in
   * order (a frame waits behind those before it, whatever its budget). */
  #send(frame) {
    this.#paced.push(frame);
    this.#pace();
  }

  #pace() {
    const now = Date.now();
    for (const b of this.#budgets) {
      // (A clock set back gives nothing, rather than holding every frame for as long.)
      b.allowed = Math.min(b.burst, b.allowed + (Math.max(0, now - b.at) * b.rate) / 1000);
      b.at = now;
    }
    while (this.#paced.length) {
      // The client writes `action` first: 14 is PRESENCE.
      const budget = this.#budgets[this.#paced[0].startsWith('{"action":14,') ? 0 : 1];
      if (budget.allowed < 1) {
        this.#pacer ??= setTimeout(() => {
          this.#pacer = undefined;
          this.#pace();
        }, Math.ceil(((1 - budget.allowed) * 1000) / budget.rate));
        return;
      }
      budget.allowed -= 1;
      this.#socket?.send(this.#paced.shift());
    }
  }

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
      this.#pings.get(message?.id)?.();
      // CONNECTED: the grace window the hub gives this connection.
      if (message?.action === 4) this.#grace = message.connectionDetails?.remainPresentFor;
      this.#core.transportMessage(message);
    });
    ws.onclose = mine(() => {
      this.#socket = null;
      this.#failPings();
      this.#core.transportClosed();
    });
    ws.onerror = () => {};
  }

  /** A ping's answer comes on the transport it went on, or not at all. */
  #failPings() {
    for (const done of [...this.#pings.values()]) done(new ErrorInfo('connection lost before the ping was answered', 80003, 400));
  }

  #dropSocket() {
    this.#failPings();
    // What waited for the pace was the old socket's: the core sends again what it must.
    this.#paced = [];
    clearTimeout(this.#pacer);
    this.#pacer = undefined;
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
        const isToken = (t) => typeof (t?.token ?? t?.mac ?? t) === 'string';
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
    return async (params, signal) => {
      const url = new URL(options.authUrl, globalThis.location?.href);
      // As Ably's: the params go in the query, or with POST as a form in the body.
      const post = /^post$/i.test(options.authMethod);
      const form = post ? new URLSearchParams() : url.searchParams;
      // The token params too (RSA8c1a), a capability as its JSON.
      for (const [k, v] of Object.entries({ ...options.authParams, ...params })) {
        if (v != null) form.set(k, typeof v === 'object' ? JSON.stringify(v) : String(v));
      }
      // Given up (the request cancelled, not left open) when the token is no longer waited for.
      const response = await fetch(url, post ? { method: 'POST', headers: options.authHeaders, body: form, signal } : { headers: options.authHeaders, signal });
      // What is not read is let go at once, rather than held open until the request times out.
      const refuse = (message) => {
        response.body?.cancel().catch(() => {});
        return new ErrorInfo(message, 40170, 401);
      };
      if (!response.ok) throw refuse(`authUrl answered ${response.status}`);
      // As Ably's: a token as JSON (TokenDetails or a TokenRequest), as text or as a JWT; not a
      // page (a login form) taken for a token, nor more than 128 KiB read.
      const type = response.headers.get('content-type') ?? '';
      const json = /json/i.test(type);
      if (!json && !/text\/plain|application\/jwt/i.test(type)) throw refuse(`authUrl answered ${type || 'no content type'}, not a token (JSON, text/plain or application/jwt)`);
      const reader = response.body?.getReader();
      const decoder = new TextDecoder();
      let text = '';
      for (let read, size = 0; reader && !(read = await reader.read()).done; ) {
        if ((size += read.value.length) > 131072) {
          // Through its reader, which holds the body: the rest is not downloaded.
          reader.cancel().catch(() => {});
          throw new ErrorInfo('authUrl answered more than 128 KiB', 40170, 401);
        }
        text += decoder.decode(read.value, { stream: true });
      }
      return tokenText(json ? JSON.parse(text) : text);
    };
  }
  return null;
}

/** The token a source gave, as text; or a TokenRequest (to be exchanged), as it is. */
function tokenText(token) {
  if (typeof token?.mac === 'string') return token;
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

/** The pace of frames to the hub, its default inbound rates and their bursts: presence
 * messages, and other frames (twenty times as many). */
const PACE_RATE = 100;
// 40 under the hub's: frames sent a little apart may reach it together (a turn of its event loop
// that took longer), and at the hub's own burst, one in five bursts of 420 lost one or two.
const PACE_BURST = 360;
const CONTROL_RATE = 2000;
const CONTROL_BURST = 4000;

/** Host names of this machine. */
const LOCAL = /^(localhost|127\.[\d.]+|\[?::1\]?)$/;

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
    // The hub refuses the connection for what is not a number (40000): said now instead. As it
    // reads them: a finite number, or decimal text (not `0x10`, `true` or blanks).
    const ms = typeof value === 'string' && /^\s*\+?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*$/i.test(value) ? Number(value) : value;
    if ((name === 'remainPresentFor' || name === 'heartbeatInterval') && !(typeof ms === 'number' && Number.isFinite(ms) && ms >= 0)) {
      throw badArgs(`transportParams.${name} must be a number of milliseconds, not ${value && typeof value == 'object' ? 'an object' : String(value)}`);
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
    // Ably's older names for the host are taken too.
    const host = options.endpoint ?? options.realtimeHost ?? options.restHost ?? platform.defaultHost?.() ?? 'localhost';
    // As Ably's, TLS unless told otherwise (a page's own scheme in a browser); but not to this machine.
    const tls = options.tls ?? platform.defaultTls?.() ?? !LOCAL.test(host);
    // One colon is a port in the host name; IPv6 addresses have several.
    if (/^[^:]*:\d*$/.test(host)) {
      throw badArgs(`the host is a name only: give the port as the port option (host '${host.split(':')[0]}', port ${host.split(':')[1] || '…'})`);
    }
    // As Ably's: `tlsPort` under TLS, `port` otherwise (rollcall also takes `port` for both).
    // The page's port for the page's own host with the page's scheme (whether or not `tls`
    // said it again); Ably's defaults for any other.
    const page = host === platform.defaultHost?.() && tls === platform.defaultTls?.();
    const port = (tls ? options.tlsPort : undefined) ?? options.port ?? (page ? platform.defaultPort?.() : undefined) ?? (tls ? 443 : 80);
    base = new URL(`${tls ? 'wss' : 'ws'}://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}/`);
  }
  // As Ably's (RSA1): a key is sent under TLS only, unless to this machine.
  if (options.key && base.protocol === 'ws:' && !LOCAL.test(base.hostname)) {
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
    return this.#realtime._core.text(0, '');
  }

  /** How long, in milliseconds, the hub keeps this connection's members present after its
   * link drops (`remainPresentFor`): the hub's word once connected. */
  get remainPresentFor() {
    return this.#realtime._grace;
  }

  get key() {
    // Before connecting, a key to recover is not this connection's yet.
    return this.state === 'initialized' ? undefined : this.#realtime._core.text(2, '');
  }

  /** A key with which a later client (a reloaded page, a restarted process) takes over this
   * connection by `new Realtime({ recover: key })`, so that its members neither leave nor
   * enter again; `null` when there is no connection to recover (not connected yet, closing,
   * closed or failed; a suspended one is kept, as Ably's client keeps it). Ably's format. */
  createRecoveryKey() {
    const core = this.#realtime._core;
    // Only once connected: a key being recovered is about to be replaced by the hub's.
    const connectionKey = this.id && this.key;
    const over = ['closing', 'closed', 'failed'].includes(this.state);
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
    // As the core takes it: no time (none given, or not a finite one of at least 0) is until
    // `connect()`, which the browser's `online` event does not stand in for.
    this.#realtime._heldOffline = !(offlineForMs >= 0 && offlineForMs < Infinity);
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
    // The hub confirming the connection again (after an `authorize()`) is an `update` (RTN24).
    const change = { current, previous, event: current === previous && current === 'connected' ? 'update' : current, reason: reason ?? undefined, retryIn };
    this.emit(change.event, change);
  }
}
