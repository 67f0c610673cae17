// Presence data and messages as they go on the wire and as the API hands them out.

import { ErrorInfo } from './events.js';

/** Encodes data as ably-js does: objects as JSON text, binary as base64. */
export function encodeData(data) {
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

  /** As Ably's (RTP2b1): whether the hub made this message (a leave at the end of a grace
   * window), rather than the member's connection. */
  isSynthesized() {
    return !this.id?.startsWith(`${this.connectionId}:`);
  }

  /** As Ably's (RTP2b2): `{ connectionId, msgSerial, index }` from the id. */
  parseId() {
    if (!this.id) throw new ErrorInfo('this presence message has no id', 40000, 400);
    const [connectionId, msgSerial, index] = this.id.split(':');
    return { connectionId, msgSerial: parseInt(msgSerial, 10), index: parseInt(index, 10) };
  }
}
