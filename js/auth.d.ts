export interface TokenOptions {
  /** `appId.keyId:secret` */
  key: string;
  /** The identity the token binds (`*`: any). */
  clientId?: string;
  /** Channel name or pattern → operations (`presence`, `subscribe`, `publish`, `history`, `*`). */
  capability?: Record<string, string[]>;
  /** Milliseconds (default one hour). */
  ttl?: number;
  /** Milliseconds since the epoch (default now). */
  now?: number;
}

/** An Ably-compatible JWT (HS256, `kid` = the key's name). */
export function createToken(options: TokenOptions): string;
