// For app servers: mint the tokens browsers and agents connect with. Ably-compatible JWTs
// (HS256, signed with a key's secret, `kid` = the key's name), so a rollcall hub and Ably
// verify the same tokens.
//
//   import { createToken } from 'rollcall/auth';
//   const token = createToken({ key: process.env.ROLLCALL_KEY, clientId: 'alice', ttl: 3600_000,
//                               capability: { 'room:*': ['presence', 'subscribe'] } });

import { createHmac } from 'node:crypto';

const base64url = (buffer) => Buffer.from(buffer).toString('base64url');

/**
 * A signed token.
 * @param {object} options
 * @param {string} options.key `appId.keyId:secret`
 * @param {string} [options.clientId] the identity the token binds (`*`: any)
 * @param {Record<string, string[]>} [options.capability] channel name or pattern → operations
 *   (`presence`, `subscribe`, `history`, `publish`, `*`); default everything the key allows
 * @param {number} [options.ttl] milliseconds (default one hour)
 * @param {number} [options.now] milliseconds since the epoch (default now)
 */
export function createToken({ key, clientId, capability = { '*': ['*'] }, ttl = 3_600_000, now = Date.now() } = {}) {
  const at = typeof key === 'string' ? key.indexOf(':') : -1;
  if (at <= 0 || at === key.length - 1) throw new TypeError('key must be appId.keyId:secret');
  // An empty clientId is no identity: the hub refuses a token that binds one (40144).
  if (clientId !== undefined && (typeof clientId !== 'string' || clientId === '')) throw new TypeError('clientId must be a non-empty string (or "*" for any)');
  const name = key.slice(0, at);
  const secret = key.slice(at + 1);
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: name }));
  const claims = {
    iat: Math.floor(now / 1000),
    // Rounded up: a token lives its ttl at least (rounded down, one of under a second would be
    // born expired).
    exp: Math.ceil((now + ttl) / 1000),
    'x-ably-capability': JSON.stringify(capability),
  };
  if (clientId !== undefined) claims['x-ably-clientId'] = clientId;
  const body = base64url(JSON.stringify(claims));
  const signature = createHmac('sha256', secret).update(`${header}.${body}`).digest('base64url');
  return `${header}.${body}.${signature}`;
}
