// Channels, a channel and its presence: attach and detach, enter, update, leave, get,
// subscribe and history, carried out by the client's core (see realtime.js).

import { ErrorInfo, EventEmitter, badArgs, restGet, whenState } from './events.js';
import { PresenceMessage, encodeData } from './message.js';

export class Channels {
  #realtime;
  #all = new Map();
  /** Channels released and not yet detached, each with its latest release: a `get` meanwhile
   * takes one back. */
  #releasing = new Map();

  constructor(realtime) {
    this.#realtime = realtime;
  }

  /** `options`: `{ attachOnSubscribe, modes }`, as Ably's. `modes: ['PRESENCE']` enters
   * without hearing the others (a big channel's members, an agent that only announces itself). */
  get(name, options) {
    if (typeof name !== 'string' || !name) throw badArgs('a channel name is required');
    // Refused rather than ignored: the data would go unencrypted.
    if (options?.cipher) throw badArgs(CIPHER);
    let channel = this.#all.get(name);
    if (!channel) this.#all.set(name, (channel = new RealtimeChannel(this.#realtime, name)));
    // Asked for again while its release detaches it: it is the caller's again, and stays (it
    // would otherwise be dropped as the detach settles, and never hear anything more).
    this.#releasing.delete(channel);
    if (options) {
      if (options.modes !== undefined) {
        const modes = modeFlags(options.modes);
        // As Ably's (RTS3c1): new modes need a new ATTACH, which `get` does not make.
        if (modes !== channel._modes && /^attach/.test(channel.state)) throw badArgs('cannot change the modes of an attached channel');
        channel._modes = modes;
      }
      channel.channelOptions = options;
    }
    return channel;
  }

  /** Drops this client's reference to a channel, detaching it (as Ably's): a later
   * `get(name)` gives a new channel. */
  release(name) {
    const channel = this.#all.get(name);
    if (!channel) return;
    // As Ably's: kept until detached, so that its own state changes reach it and not the
    // channel a later `get` makes.
    // Only if no `get` took it back meanwhile (a remount), and it is still detached once that
    // settles: its state changes would otherwise reach no channel.
    // Each release settles only its own: a second release while the first detaches is the
    // one that drops it.
    const mark = {};
    this.#releasing.set(channel, mark);
    const drop = () =>
      this.#releasing.get(channel) === mark &&
      this.#all.get(name) === channel &&
      /^(initialized|detached|failed)$/.test(channel.state) &&
      this.#releasing.delete(channel) &&
      this.#all.delete(name) &&
      (this.#realtime._core.release(name), true);
    if (!drop()) channel.detach().then(drop, drop);
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

const CIPHER = 'cipher is not supported: presence data is not encrypted end to end';

/** Ably's channel modes, in the order of the ATTACH flags that carry them (from bit 16). */
const MODES = ['PRESENCE', 'PUBLISH', 'SUBSCRIBE', 'PRESENCE_SUBSCRIBE'];

function modeFlags(modes) {
  let flags = 0;
  for (const mode of modes) {
    const bit = MODES.indexOf(String(mode).toUpperCase());
    if (bit < 0) throw badArgs(`invalid channel mode: ${mode}`);
    flags |= 1 << (16 + bit);
  }
  return flags;
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
    this._modes = 0;
  }

  /** Resolves with the state change, or `null` when it was attached already (as Ably's). */
  attach() {
    const already = this.state === 'attached';
    // The change is kept as it is made, not listened for: an app's `off()` cannot lose it, nor
    // a failed attach leave a listener behind.
    return this.#realtime._op((core) => core.attach(this.name, this._modes)).then(() => (already ? null : this._attached));
  }

  detach() {
    return this.#realtime._op((core) => core.detach(this.name));
  }

  /** As Ably's: other modes re-attach a channel that is attached or attaching (RTL16a). */
  async setOptions(options) {
    if (options?.cipher) throw badArgs(CIPHER);
    const modes = options?.modes === undefined ? this._modes : modeFlags(options.modes);
    const changed = modes !== this._modes;
    this._modes = modes;
    this.channelOptions = options;
    if (changed && /^attach/.test(this.state)) await this.attach();
  }

  /** Resolves once the channel is in `state`: with `null` if it is now, else with the change. */
  whenState(state) {
    return whenState(this, state);
  }

  _change(current, previous, reason, resumed) {
    this.state = current;
    if (reason) this.errorReason = reason;
    const change = { current, previous, event: current === previous ? 'update' : current, reason: reason ?? undefined, resumed };
    if (current === 'attached') this._attached = change;
    if (current === 'suspended' || current === 'detached' || current === 'failed') this.presence._abandonSync(current, reason);
    // Attached again with the view whole and no SYNC (the hub vouched for it): what waited for
    // one has it.
    else if (current === 'attached' && this.presence.syncComplete) this.presence._synced();
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

  async enterClient(clientId, data) {
    return this.#send(2, requireClientId(clientId), data);
  }

  async updateClient(clientId, data) {
    return this.#send(4, requireClientId(clientId), data);
  }

  async leaveClient(clientId, data) {
    return this.#send(3, requireClientId(clientId), data);
  }

  /** What this client entered here, by client id (`undefined`: as itself). @internal */
  _entered = new Map();

  async #send(action, clientId, value) {
    const encoded = encodeData(value);
    const name = this.#channel.name;
    // An enter attaches the channel implicitly: with its modes, which only attach() gives the core.
    if (action !== 3 && this.#channel._modes && ['initialized', 'detached'].includes(this.#channel.state)) {
      this.#channel.attach().catch(() => {});
    }
    await this.#realtime._op((core) => core.presence(name, action, clientId, encoded.data, encoded.encoding, undefined));
    // Not on a channel detached meanwhile: what was entered there went with the detach. By the
    // member it is: enterClient() with this client's own id is its enter().
    const who = clientId === this.#realtime.clientId ? undefined : clientId;
    if (action === 3) this._entered.delete(who);
    else if (!['detached', 'failed'].includes(this.#channel.state)) this._entered.set(who, value);
  }

  /** The members: `{ waitForSync = true, clientId, connectionId }`. */
  async get(params) {
    const { clientId, connectionId } = params ?? {};
    // As Ably's: given, even as undefined, it is what it says.
    const waitForSync = params && 'waitForSync' in params ? params.waitForSync : true;
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
  subscribe(...args) {
    return this.#listen(this.#listeners, args);
  }

  async #listen(listeners, args) {
    if (this.#channel.state === 'failed') throw new ErrorInfo(`unable to subscribe on failed channel ${this.#channel.name}`, 90001, 400);
    // As Ably's, with no listener it only attaches.
    if (args.at(-1) !== undefined) listeners.on(...args);
    if (this.#channel.state !== 'attached' && this.#channel.channelOptions?.attachOnSubscribe !== false) await this.#channel.attach();
  }

  /** `unsubscribe()`, `(listener)`, `(action)`, `(actions)`, `(action, listener)`, `(actions, listener)`. */
  unsubscribe(...args) {
    this.#listeners.off(...args);
  }

  /**
   * Presence history from the hub: `{ start, end, direction = 'backwards', limit = 100,
   * untilAttach }`. Resolves to a page: `{ items, hasNext(), isLast(), next(), first(), current() }`.
   * With `untilAttach`, the channel must be attached: history ends where it attached, so that
   * with what it has heard since, nothing is missed or heard twice.
   */
  async history(params) {
    params = { ...params };
    // The core knows the serial while the channel is attached.
    if (params.untilAttach && !(params.from_serial = this.#realtime._core.text(3, this.#channel.name))) {
      throw new ErrorInfo(`option untilAttach requires the channel to be attached, was: ${this.#channel.state}`, 40000, 400);
    }
    const query = new URLSearchParams();
    for (const key of ['start', 'end', 'direction', 'limit', 'from_serial']) {
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
   * (and `connectionId` for the connection events). Resolves once the channel is attached
   * (as `subscribe`, which it follows in `attachOnSubscribe` and a failed channel).
   */
  subscribeClients(...args) {
    return this.#listen(this.#clientListeners, args);
  }

  unsubscribeClients(...args) {
    this.#clientListeners.off(...args);
  }

  _event(message) {
    this.#clientsBy = undefined;
    this.#listeners.emit(message.action, message);
  }

  _synced() {
    this.#clientsBy = undefined;
    for (const waiter of this.#syncWaiters.splice(0)) waiter.resolve();
  }

  /** The channel left `attached` before its SYNC completed: a `get()` waiting for it fails. */
  _abandonSync(state, reason) {
    const error = syncError(this.#channel, state, reason);
    for (const waiter of this.#syncWaiters.splice(0)) waiter.reject(error);
  }

  /** The client ids of each connection, read once for a run of status events (a crowd that
   * drops at once) rather than once per event, which made the run quadratic. Forgotten when
   * the members change and at the end of the turn; the devices are read as of each event. */
  #clientsBy;

  // The two below run once per event: with no listener they cost nothing.
  _connectionStatus(connectionId, lost, initial) {
    const action = lost ? 'connectionLost' : 'connectionRestored';
    if (!this.#clientListeners._hears(action)) return;
    if (!this.#clientsBy) {
      const by = (this.#clientsBy = new Map());
      for (const m of this.#members()) by.set(m.connectionId, (by.get(m.connectionId) ?? new Set()).add(m.clientId));
      queueMicrotask(() => (this.#clientsBy = undefined));
    }
    for (const clientId of this.#clientsBy.get(connectionId) ?? []) {
      this.#clientListeners.emit(action, { action, clientId, connectionId, devices: this.#members(clientId), initial, timestamp: Date.now() });
    }
  }

  /** `cause`: the presence event that brought it about, if any (none when this client's view
   * is dropped, on a detach). */
  _clientChange(clientId, online, initial, cause) {
    this.#clientsBy = undefined;
    const action = online ? 'online' : 'offline';
    if (!this.#clientListeners._hears(action)) return;
    // The devices as of this event, not as of the end of its frame (which may hold more
    // events of the same client): the one that came, or none.
    const devices = online && cause ? [Object.assign(Object.create(PresenceMessage.prototype), cause, { action: 'present' })] : [];
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
  let body, response;
  try {
    [body, response] = await restGet(base + relative, headers, realtime.options.httpRequestTimeout);
  } catch (error) {
    // An expired or rejected token: get a new one and try once more (RSA4b).
    if (!renewed && error.code >= 40140 && error.code < 40150 && realtime._renewable) {
      await realtime._renew();
      return fetchPage(realtime, base, relative, true);
    }
    throw error;
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
