// Types of rollcall's public API: Ably's `Realtime` and `channel.presence`, plus client-level
// presence (users across devices).

/** `absent` is Ably's too and is never delivered to listeners; it is here so that ported code
 * that names it compiles. */
export type PresenceAction = 'absent' | 'enter' | 'leave' | 'update' | 'present';
export type ConnectionState =
  | 'initialized'
  | 'connecting'
  | 'connected'
  | 'disconnected'
  | 'suspended'
  | 'closing'
  | 'closed'
  | 'failed';
export type ChannelState = 'initialized' | 'attaching' | 'attached' | 'detaching' | 'detached' | 'suspended' | 'failed';

/** An error with Ably's `code` and HTTP-like `statusCode`. */
export class ErrorInfo extends Error {
  constructor(message: string, code: number, statusCode: number, cause?: ErrorInfo | Error);
  code: number;
  statusCode: number;
  /** What failed underneath: an ErrorInfo, or the Error a token source or a request failed
   * with (80019's cause, 80000's). */
  cause?: ErrorInfo | Error;
}

/** What the page before this one left for `recover`. */
export interface LastConnectionDetails {
  recoveryKey: string;
  /** When that page went away (ms since the epoch). */
  disconnectedAt: number;
  /** Where that page was: recover only if it was this page (a reload) with
   * `lastConnectionDetails.location.href === location.href`. */
  location: { href: string };
  clientId?: string;
}

export interface ClientOptions {
  /** Who this client is. Required to `enter()`; without it (or `null`, as Ably's), use
   * `enterClient()` with a key. */
  clientId?: string | null;
  /** An API key, `appId.keyId:secret` (basic auth). */
  key?: string;
  /** A token (JWT) for token auth. */
  token?: string | { token: string };
  /** Ably's other name for `token`, as its details. */
  tokenDetails?: TokenDetails;
  /** Token params for every token asked of `authUrl` or `authCallback` (as Ably's). */
  defaultTokenParams?: TokenParams;
  /** Where to get tokens, now and before they expire: GET (or authMethod) returns the token
   * as text or as JSON `{ token }`. */
  authUrl?: string;
  authMethod?: 'GET' | 'POST';
  authParams?: Record<string, string>;
  authHeaders?: Record<string, string>;
  /** Gets tokens, now and before they expire: call `callback(error, token)`, or return the
   * token or a promise of it (a JWT string, `{ token }`, or a TokenRequest to exchange). */
  authCallback?: (
    tokenParams: TokenParams,
    callback: (error: unknown, token?: string | TokenDetails | TokenRequest | null) => void,
  ) => unknown;
  /** The hub's host name (default: the page's host in a browser, `localhost` elsewhere). */
  endpoint?: string;
  /** Ably's older names for `endpoint`, taken as it. */
  realtimeHost?: string;
  restHost?: string;
  /** The hub's port (default: in a browser the page's, else 80 as Ably's; the Node hub listens
   * on 8080). */
  port?: number;
  /** The hub's port under TLS, if not `port` (default: in a browser the page's, else 443). */
  tlsPort?: number;
  /** Whether to use `wss:` and `https:` (default: yes, as Ably's, except to this machine; in a
   * browser, as the page). */
  tls?: boolean;
  /** The hub's WebSocket URL, instead of endpoint/port/tls: `ws://host:port`. */
  url?: string;
  /** Sent to the hub when connecting. A `remainPresentFor` or `heartbeatInterval` that is not a
   * number of ms (or its decimal text, as Ably's types allow) throws 40000. */
  transportParams?: {
    /** How long this connection's members stay after an abrupt disconnect (ms, default 15000,
     * 1000–3600000; while it runs after a drop, this client retries at least every half of it). */
    remainPresentFor?: number | string;
    /** How fast the hub notices this connection is dead (ms, default 15000). */
    heartbeatInterval?: number | string;
    [name: string]: string | number | boolean | undefined;
  };
  /** Connect at once (default true). */
  autoConnect?: boolean;
  /** Close when the page goes away, so that members leave at once (default true in browsers,
   * unless `recover` is given). */
  closeOnUnload?: boolean;
  /** Take over an earlier client's connection, so that its members neither leave nor enter
   * again: a key from `connection.createRecoveryKey()` (a restarted process), or, in browsers,
   * `(last, callback) => callback(last.location.href === location.href)` to recover the
   * connection of the page before this one in the tab when it was this page (a reload); it
   * is dropped with `closeOnUnload: true`. A key the hub no longer holds, or one for another
   * clientId, gives a new connection, with 80008 as the `connected` state change's reason.
   * Connecting waits for the callback. */
  recover?: string | ((lastConnectionDetails: LastConnectionDetails, callback: (shouldRecover: boolean) => void) => void);
  /** Where `recover` as a function keeps the key in sessionStorage (default
   * `rollcall-connection-recovery`). */
  recoveryKeyStorageName?: string;
  /** Whether the hub echoes this client's own messages (presence always comes back). */
  echoMessages?: boolean;
  /** ms to wait for the hub to answer (default 10000). */
  realtimeRequestTimeout?: number;
  /** ms between reconnection attempts after the first, immediate one (default 15000; while this
   * client's members are held after a drop, a quarter of `remainPresentFor` at most, 1 s at
   * least, to start with). */
  disconnectedRetryTimeout?: number;
  /** ms before a REST read (`history()`, `time()`) is given up (default 10000), as Ably's. */
  httpRequestTimeout?: number;
  /** ms between attempts once suspended (default 30000). */
  suspendedRetryTimeout?: number;
  /** ms before a suspended channel attaches again (default 15000). */
  channelRetryTimeout?: number;
  /** Accepted for code written for `ably`, and ignored: rollcall's client always speaks JSON. */
  useBinaryProtocol?: boolean;
  /** Accepted for code written for `ably`, and ignored: rollcall's client does not log. A
   * listener that throws is reported (`reportError` in browsers, the console elsewhere). */
  logLevel?: number;
  /** Accepted for code written for `ably`, and ignored: there is one hub, reached over
   * WebSocket, on its own clock. */
  logHandler?: (message: string) => void;
  transports?: string[];
  fallbackHosts?: string[];
  queryTime?: boolean;
}

export interface ConnectionStateChange {
  current: ConnectionState;
  previous: ConnectionState;
  /** The new state, or `update` when the state stayed and something else changed (a token
   * that could not be renewed, in `reason`). */
  event: ConnectionState | 'update';
  reason?: ErrorInfo;
  /** On `disconnected` and `suspended`: in how many milliseconds the client tries to connect
   * again. Absent when it waits for `connect()`, or for a token after the hub refused one (it
   * connects as soon as `authUrl` or `authCallback` gives one, and asks again every
   * `disconnectedRetryTimeout` while they fail). */
  retryIn?: number;
}

export interface ChannelStateChange {
  current: ChannelState;
  previous: ChannelState;
  event: ChannelState | 'update';
  reason?: ErrorInfo;
  resumed: boolean;
  /** Ably's, for messages: never set, as the hub carries presence only. */
  hasBacklog?: boolean;
}

/** As Ably's, a listener's `this` names the event it hears. */
type Listener<T> = (this: { event: string }, arg: T) => void;

export class EventEmitter<Event extends string, Arg> {
  on(listener: Listener<Arg>): void;
  on(event: Event | Event[], listener: Listener<Arg>): void;
  once(listener: Listener<Arg>): void;
  once(event: Event | Event[], listener: Listener<Arg>): void;
  once(event?: Event | Event[]): Promise<Arg>;
  off(): void;
  off(listener: Listener<Arg>): void;
  off(event: Event | Event[], listener?: Listener<Arg>): void;
  listeners(event?: Event): Listener<Arg>[];
}

export class PresenceMessage {
  /** Made by the client; not to be constructed by apps. */
  private constructor();
  /** `connectionId:msgSerial:index` for events a client caused. */
  id: string;
  action: PresenceAction;
  clientId: string;
  connectionId: string;
  /** Decoded: a string, an object or array, or binary. */
  data: any;
  /** What remains of the encoding when the data could not be fully decoded (else undefined). */
  encoding: string;
  extras?: any;
  /** ms since the epoch. */
  timestamp: number;
  /** Beyond Ably: the member's connection was lost; it stays for its grace window
   * (`remainPresentFor`) and leaves unless the connection comes back. Set 2 s after the hub
   * notices the drop (half the grace if that is shorter): a shorter blip never sets it. */
  connectionLost?: true;
  /** As Ably's: whether the hub made this message (a leave at the end of a grace window). */
  isSynthesized(): boolean;
  /** As Ably's: the parts of `id`. */
  parseId(): { connectionId: string; msgSerial: number; index: number };
}

export interface PaginatedResult<T> {
  items: T[];
  hasNext(): boolean;
  isLast(): boolean;
  next(): Promise<PaginatedResult<T> | null>;
  first(): Promise<PaginatedResult<T>>;
  current(): Promise<PaginatedResult<T>>;
}

/** A client id with the devices (members) it is present on. */
export interface ClientPresence {
  clientId: string;
  devices: PresenceMessage[];
}

/** A client id came online (its first device) or went offline (its last device left), or one of
 * its devices lost its connection (and stays for its grace window) or got it back. A connection
 * is said to be lost 2 s after the hub notices the drop (half its grace if that is shorter), so
 * a shorter blip gives neither `connectionLost` nor `connectionRestored`; it is said to be back
 * within a quarter second of its resume. */
export interface ClientChange {
  action: 'online' | 'offline' | 'connectionLost' | 'connectionRestored';
  clientId: string;
  /** The connection, for connectionLost and connectionRestored. */
  connectionId?: string;
  /** The devices as of the event: on online, the device that came; none on offline; on
   * connectionLost and connectionRestored, the client's devices. */
  devices: PresenceMessage[];
  /** True when learned on attaching rather than seen as it happened: from the SYNC after
   * attaching, or attaching again after events were missed (online or offline since some time
   * this client did not see), and, for connectionLost and connectionRestored, from the grace
   * windows the hub tells with the attach. An app can leave out "lost connection" notices for
   * these on page load. */
  initial: boolean;
  /** When this client told it (`Date.now()`), not when it happened. */
  timestamp: number;
  /** On offline: why the last device went. `left` when it left itself (its data may say
   * more), else the hub's reason: `timeout` (dropped, not back within its grace window),
   * `closed`, `detached`, `failed` or `revoked`. Absent when this client only inferred the
   * leave (the member was missing from a SYNC after this client was away), and when this
   * client's own view was dropped (the channel detached or failed: every client it held goes
   * offline, and comes online again from the SYNC when it attaches). */
  reason?: 'left' | 'timeout' | 'closed' | 'detached' | 'failed' | 'revoked';
  /** On offline: the leave of the last device. */
  leave?: PresenceMessage;
}

export interface PresenceGetParams {
  waitForSync?: boolean;
  clientId?: string;
  connectionId?: string;
}

export interface PresenceHistoryParams {
  start?: number | Date;
  end?: number | Date;
  direction?: 'backwards' | 'forwards';
  limit?: number;
  /** History up to the channel's attach (it must be attached): nothing missed or heard twice. */
  untilAttach?: boolean;
}

/** Ably's names for the parameter types. */
export type RealtimePresenceParams = PresenceGetParams;
export type RealtimeHistoryParams = PresenceHistoryParams;

/** What `auth.authorize(tokenParams)` asks the token source for (Ably's names). */
export interface TokenParams {
  clientId?: string;
  ttl?: number;
  capability?: Record<string, string[]> | string;
  [param: string]: unknown;
}

/** A TokenRequest signed with a key by an app server (Ably's `auth.createTokenRequest()`), which
 * the client exchanges with the hub for a token. */
export interface TokenRequest {
  keyName: string;
  /** ms since the epoch. */
  timestamp: number;
  nonce: string;
  mac: string;
  clientId?: string;
  ttl?: number;
  /** The capability as JSON text. */
  capability?: string;
}

/** A token's details: what a token source may give (Ably's TokenDetails, of which `token` is
 * read), and what `auth.tokenDetails` and `auth.authorize()` give (`token`, `expires` when the
 * token is a JWT, `clientId`). */
export interface TokenDetails {
  token: string;
  /** ms since the epoch. */
  expires?: number;
  /** ms since the epoch. */
  issued?: number;
  /** The capability as JSON text. */
  capability?: string;
  clientId?: string;
}

/** What a channel attaches for (Ably's); `PUBLISH` and `SUBSCRIBE` concern messages, which the
 * hub does not carry. */
export type ChannelMode =
  | 'PRESENCE'
  | 'PUBLISH'
  | 'SUBSCRIBE'
  | 'PRESENCE_SUBSCRIBE'
  | 'presence'
  | 'publish'
  | 'subscribe'
  | 'presence_subscribe';
export type ChannelModes = ChannelMode[];

/** Options of `channels.get(name, options)`. `params` is accepted for code ported from `ably`,
 * and not read. */
export interface ChannelOptions {
  /** `false`: `presence.subscribe` does not attach the channel (as Ably's). */
  attachOnSubscribe?: boolean;
  /** The modes to attach with (default: all the credentials allow). `['PRESENCE']` enters
   * without hearing the others: `presence.get()` and `subscribe` see this connection's own
   * members only. Set before the channel attaches: changing them on an attached channel throws. */
  modes?: ChannelModes;
  params?: Record<string, string>;
}

export type ConnectionEvent = ConnectionState | 'update';
export type ChannelEvent = ChannelState | 'update';

/** Not constructed by apps: reached as `channel.presence`. */
export interface RealtimePresence {
  readonly syncComplete: boolean;
  enter(data?: any): Promise<void>;
  update(data?: any): Promise<void>;
  leave(data?: any): Promise<void>;
  enterClient(clientId: string, data?: any): Promise<void>;
  updateClient(clientId: string, data?: any): Promise<void>;
  leaveClient(clientId: string, data?: any): Promise<void>;
  get(params?: PresenceGetParams): Promise<PresenceMessage[]>;
  /** With no listener, only attaches (as Ably's). */
  subscribe(listener?: Listener<PresenceMessage>): Promise<void>;
  subscribe(action: PresenceAction | PresenceAction[], listener: Listener<PresenceMessage>): Promise<void>;
  unsubscribe(): void;
  unsubscribe(listener: Listener<PresenceMessage>): void;
  unsubscribe(action: PresenceAction | PresenceAction[], listener?: Listener<PresenceMessage>): void;
  history(params?: PresenceHistoryParams): Promise<PaginatedResult<PresenceMessage>>;

  /** Beyond Ably: the members grouped by client id. */
  getClients(params?: PresenceGetParams): Promise<ClientPresence[]>;
  /** Beyond Ably: whether a client id has a device present, from the current view. */
  isOnline(clientId: string): boolean;
  /** Beyond Ably: a client id came online, or went offline on every device. */
  subscribeClients(listener?: Listener<ClientChange>): Promise<void>;
  subscribeClients(action: ClientChange['action'] | Array<ClientChange['action']>, listener: Listener<ClientChange>): Promise<void>;
  unsubscribeClients(): void;
  unsubscribeClients(listener: Listener<ClientChange>): void;
  unsubscribeClients(action: ClientChange['action'] | Array<ClientChange['action']>, listener?: Listener<ClientChange>): void;
}

/** Not constructed by apps: reached as `realtime.channels.get(name)`. */
export interface RealtimeChannel extends EventEmitter<ChannelEvent, ChannelStateChange> {
  readonly name: string;
  readonly state: ChannelState;
  /** The last problem; `null` until there is one (typed as Ably types it). */
  readonly errorReason: ErrorInfo;
  readonly presence: RealtimePresence;
  /** Resolves with the state change, or `null` when it was attached already (as Ably's). */
  attach(): Promise<ChannelStateChange | null>;
  detach(): Promise<void>;
  /** As Ably's: other modes re-attach a channel that is attached or attaching. */
  setOptions(options: ChannelOptions): Promise<void>;
  /** Resolves once the channel is in `state`: `null` if it is now, else the change to it. */
  whenState(state: ChannelState): Promise<ChannelStateChange | null>;
}

/** Not constructed by apps: reached as `realtime.channels`. */
export interface Channels<T = RealtimeChannel> {
  get(name: string, options?: ChannelOptions): T;
  /** Drops the client's reference to a channel, detaching it first if it is attached. */
  release(name: string): void;
}

/** Not constructed by apps: reached as `realtime.connection`. */
export interface Connection extends EventEmitter<ConnectionEvent, ConnectionStateChange> {
  readonly state: ConnectionState;
  readonly id: string | undefined;
  readonly key: string | undefined;
  /** How long, in milliseconds, the hub keeps this connection's members present after its link
   * drops (`remainPresentFor`): the hub's word once connected (its setting, or what
   * `transportParams` asked within its bounds); before that, what was asked (15 000 if
   * nothing). */
  readonly remainPresentFor: number;
  /** The last problem; `null` until there is one, and once connected again (typed as Ably
   * types it). */
  readonly errorReason: ErrorInfo;
  /** A key for `new Realtime({ recover })`, or `null` when there is no connection to recover
   * (not connected yet, closing, closed or failed). */
  createRecoveryKey(): string | null;
  connect(): void;
  close(): void;
  /** The round trip to the hub, in milliseconds (as Ably's); rejects with 40000 when not
   * connected. */
  ping(): Promise<number>;
  /** Resolves once the connection is in `state`: `null` if it is now, else the change to it. */
  whenState(state: ConnectionState): Promise<ConnectionStateChange | null>;
  /** Drops the transport without closing, as a lost network would; stays offline for
   * `offlineForMs` (default: until `connect()`). */
  simulateDrop(offlineForMs?: number): void;
}

export class Realtime {
  constructor(options: ClientOptions | string);
  /** The clientId given, or, once connected, the one the hub says the connection has (the
   * clientId a token binds it to); undefined for an anonymous client (typed as Ably types it). */
  readonly clientId: string;
  readonly auth: {
    clientId: string | undefined;
    tokenDetails?: TokenDetails;
    /** Gets a new token now from authUrl or authCallback and uses it (AUTH, no member lost);
     * resolves to its details, as Ably's. `tokenParams` (`ttl`, `capability`, ...) go to the
     * callback or the URL, and to every later renewal. */
    authorize(tokenParams?: TokenParams): Promise<TokenDetails>;
  };
  readonly connection: Connection;
  readonly channels: Channels;
  /** The hub's time, in milliseconds since the epoch. */
  time(): Promise<number>;
  connect(): void;
  close(): void;
}

declare const _default: { Realtime: typeof Realtime; ErrorInfo: typeof ErrorInfo };
export default _default;
