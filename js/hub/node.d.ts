// Types of the Node host: `import { startHub } from 'rollcall/hub'`.

export interface HubSettings {
  /** How long the members of a dropped connection stay, by default (ms). */
  remainPresentFor?: number;
  /** The default heartbeat interval (ms). */
  heartbeatInterval?: number;
  maxMessageSize?: number;
  connectionStateTtl?: number;
  historyTtl?: number;
  historyLimit?: number;
  /** Bytes of presence history kept in all (the oldest go first). */
  maxHistoryBytes?: number;
  /** What all dropped connections together may have waiting for their resume, in bytes
   * (default 64 MiB, 16 MiB per Durable Object; past it, a resume re-attaches with a SYNC). */
  maxReplayBytes?: number;
  maxMembersPerChannel?: number;
  /** Bytes of member data held in all (an enter or update that would pass it: NACK 91003). */
  maxMemberBytes?: number;
  /** Bytes of member data one clientId a token names, per app (the key's appId), or one token
   * without a clientId, may hold across its connections and channels (NACK 91003 beyond;
   * default 16 MiB, 4 MiB per Durable Object). */
  maxMemberBytesPerClient?: number;
  maxChannelsPerConnection?: number;
  /** Connections the hub holds at most (DISCONNECTED 40150 beyond: clients try again later). */
  maxConnections?: number;
  /** Connections one clientId a token names, per app (the key's appId), or one token without a
   * clientId, may hold at most (DISCONNECTED 40150 beyond: clients try again later). */
  maxConnectionsPerClient?: number;
  /** Presence messages a second a connection may send (NACK 42910 beyond; 42920 closes a
   * flood); its other frames, twenty times as many (held beyond, not refused). */
  maxInboundRate?: number;
  serverId?: string;
}

export interface StartOptions {
  /** 0 picks a free port (default 8080). */
  port?: number;
  /** Default 127.0.0.1. Another address needs keys. */
  host?: string;
  /** `appId.keyId:secret,...`, or `[{ key, capability }]`; none for development mode. */
  keys?: string | { key: string; capability?: Record<string, string[]> }[];
  hub?: HubSettings;
  log?: (line: string) => void;
  /** Bytes a socket may leave unread before it is cut off (default 8 MiB). */
  maxBufferedBytes?: number;
  /** Bytes all sockets together may leave unread; past it, those with most unread are cut off
   * (default 256 MiB). */
  maxBufferedTotalBytes?: number;
  /** The most inputs the hub takes between drains within one turn of the event loop (512). */
  batch?: number;
  /** In development mode, origins other than this machine's whose pages may connect (a
   * forwarded port, a tunnel); pages from any other site are refused (403, 40300). */
  allowedOrigins?: string[];
  /** What the host runs instead of each hub it makes, the first and any that replaces one that
   * failed: a wrapper for tests and fault drills. */
  instrument?: <H extends object>(hub: H) => H;
}

export interface RunningHub {
  url: string;
  port: number;
  /** How many keys credentials are checked against; 0 is development mode. */
  keyCount: number;
  /** The hub now running (a fresh one if the first failed): what `instrument` wrapped. */
  readonly hub: object;
  stats(): { connections: number; liveConnections: number; channels: number; members: number; historyBytes: number; memberBytes: number; wasmMemoryBytes: number };
  /** Cuts every WebSocket without a closing handshake, as a network failure would. */
  disconnectAll(): void;
  /** Stops the hub: each WebSocket is closed with 1001 (cut if its client has not answered
   * within a second), then the server closes. */
  close(): Promise<void>;
}

export function startHub(options?: StartOptions): Promise<RunningHub>;
