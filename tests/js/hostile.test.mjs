// A catalogue of hostile input against the hub, over real sockets, on both hosts (Node, and the
// Worker and Durable Object on workerd): malformed frames, wrong types, huge or deeply nested
// data, unknown and out-of-order actions, wrong serials, invalid channel names, bad
// credentials, floods. Each gets Ably's error code; meanwhile well-behaved clients keep a
// correct view.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { WebSocket } from 'ws';

import { createToken } from '../../js/auth.js';
import { startEdgeHub } from '../../js/hub/edge.js';
import { Realtime } from '../../js/node.js';
import { startHub, waitFor } from './helpers.mjs';

const KEY = 'app.k:s3cret';
const HUB = { maxChannelsPerConnection: 5, maxMembersPerChannel: 50, maxInboundRate: 100 };
const HOSTS = {
  node: (keys) => startHub({ port: 0, keys, hub: HUB }),
  edge: (keys) => startEdgeHub({ port: 0, keys, hub: HUB }),
};

/** A hub without keys and one with, on `host`, with two well-behaved clients on the first. */
function hubs(host) {
  const w = { events: [] };
  before(async () => {
    w.open = await HOSTS[host]('');
    w.secured = await HOSTS[host](KEY);
    const url = `ws://127.0.0.1:${w.open.port}`;
    w.watcher = new Realtime({ clientId: 'watcher', url });
    w.good = new Realtime({ clientId: 'good', url });
    await w.watcher.channels.get('room').presence.subscribe((m) => w.events.push([m.action, m.clientId]));
    await w.good.channels.get('room').presence.enter({ fine: true });
  });
  after(async () => {
    w.watcher.close();
    w.good.close();
    try {
      await waitFor(() => w.watcher.connection.state === 'closed' && w.good.connection.state === 'closed');
    } finally {
      await w.open.close();
      await w.secured.close();
    }
  });
  return w;
}

/** A raw connection that records what it receives. */
async function raw(hub, query) {
  const ws = new WebSocket(`ws://127.0.0.1:${hub.port}/?${query}`);
  const received = [];
  let closed = false;
  ws.on('message', (data, binary) => received.push(binary ? { binary: true } : JSON.parse(data.toString())));
  ws.on('close', () => (closed = true));
  ws.on('error', () => {});
  await new Promise((resolve) => ws.once('open', resolve));
  await waitFor(() => received.length > 0, { what: 'the first message' });
  return { ws, received, closed: () => closed };
}

const E = (code) => ({ kind: 'error', code });
const NACK = (code) => ({ kind: 'nack', code });
const CHANNEL = (code) => ({ kind: 'channel', code });
const REFUSED = (code) => ({ kind: 'refused', code });
const attach = (channel, extra = {}) => JSON.stringify({ action: 10, channel, ...extra });
const presence = (serial, items, channel = 'room') => JSON.stringify({ action: 14, channel, msgSerial: serial, presence: items });

const catalogue = [
  // Frames that are not protocol messages end the connection (40000).
  ['not JSON', [], ['hello'], E(40000)],
  ['truncated JSON', [], ['{"action":14,"chan'], E(40000)],
  ['a JSON array', [], ['[1,2,3]'], E(40000)],
  ['JSON null', [], ['null'], E(40000)],
  ['an empty object', [], ['{}'], E(40000)],
  ['the action as a string', [], ['{"action":"14"}'], E(40000)],
  ['a negative action', [], ['{"action":-1}'], E(40000)],
  ['ATTACH without a channel', [], ['{"action":10}'], E(40000)],
  ['ATTACH with a numeric channel', [], ['{"action":10,"channel":7}'], E(40000)],
  ['PRESENCE without a msgSerial', [attach('room')], [JSON.stringify({ action: 14, channel: 'room', presence: [] })], E(40000)],
  ['binary garbage', [], [Buffer.from([0xc1, 0xff, 0x00])], E(40000)],
  // Bad presence messages are refused alone (NACK); the connection carries on.
  ['an unknown presence action', [attach('room')], [presence(0, [{ action: 9 }])], NACK(40000)],
  ['presence that is not an array', [attach('room')], [JSON.stringify({ action: 14, channel: 'room', msgSerial: 0, presence: 'x' })], NACK(40000)],
  ['a presence item that is not an object', [attach('room')], [presence(0, [5])], NACK(40000)],
  ['a clientId of the wrong type', [attach('room')], [presence(0, [{ action: 2, clientId: 5 }])], NACK(40000)],
  ['a negative msgSerial', [attach('room')], [presence(-3, [{ action: 2 }])], NACK(40000)],
  ['action present from a client', [attach('room')], [presence(0, [{ action: 1 }])], NACK(40000)],
  ['deeply nested data', [attach('room')], [`{"action":14,"channel":"room","msgSerial":0,"presence":[{"action":2,"data":${'['.repeat(4000)}${']'.repeat(4000)}}]}`], NACK(40000)],
  ['a channel message', [attach('room')], [JSON.stringify({ action: 15, channel: 'room', msgSerial: 0, messages: [{ data: 'x' }] })], NACK(40000)],
  ['presence on a channel not attached', [], [presence(0, [{ action: 2 }], 'elsewhere')], NACK(90001)],
  ['entering as someone else', [attach('room')], [presence(0, [{ action: 2, clientId: 'good' }])], NACK(40012)],
  ['entering as the wildcard', [attach('room')], [presence(0, [{ action: 2, clientId: '*' }])], NACK(40012)],
  ['a 100 KB presence message', [attach('room')], [presence(0, [{ action: 2, data: 'x'.repeat(100_000) }])], NACK(40009)],
  ['entering where only watching is allowed', [attach('watch-only', { flags: 1 << 19 })], [presence(0, [{ action: 2 }], 'watch-only')], NACK(40160)],
  // Invalid channels fail that channel only.
  ['an empty channel name', [], [attach('')], CHANNEL(40010)],
  ['a channel qualifier', [], [attach('[?rewind=1]room')], CHANNEL(40010)],
  ['control characters in a name', [], [attach('a\u0000b')], CHANNEL(40010)],
  ['a 5 000-character name', [], [attach('n'.repeat(5000))], CHANNEL(40010)],
  ['a sixth channel', ['a', 'b', 'c', 'd', 'e'].map((c) => attach(c)), [attach('f')], CHANNEL(90010)],
];

async function runCatalogue(w) {
  let checked = 0;
  for (const [name, setup, frames, expected] of catalogue) {
    const c = await raw(w.open, 'clientId=mallory&v=6&format=json');
    for (const frame of setup) c.ws.send(frame);
    if (setup.length) await waitFor(() => c.received.filter((m) => m.action === 11).length === setup.length, { what: `${name}: setup` });
    const from = c.received.length;
    for (const frame of frames) c.ws.send(frame);
    const reply = await waitFor(() => c.received.slice(from).find((m) => m.action === 9 || m.action === 2), { what: name });
    assert.equal(reply.error?.code, expected.code, `${name}: ${JSON.stringify(reply)}`);
    assert.ok(reply.error.statusCode >= 400 && reply.error.message, name);
    if (expected.kind === 'error') {
      assert.equal(reply.action, 9, name);
      assert.equal(reply.channel, undefined, `${name}: a connection error`);
      await waitFor(() => c.closed(), { what: `${name}: closed` });
    } else {
      assert.equal(reply.action, expected.kind === 'nack' ? 2 : 9, name);
      if (expected.kind === 'channel') assert.ok(reply.channel !== undefined, `${name}: a channel error`);
      assert.equal(c.closed(), false, `${name}: the connection carries on`);
      c.ws.close();
    }
    checked += 1;
  }

  // Connect refusals: ERROR, then close.
  const refusals = [
    [w.open, 'clientId=*', 40012],
    [w.open, 'format=xml', 40000],
    [w.secured, 'key=app.k:wrong', 40101],
    [w.secured, 'key=app.other:s3cret', 40101],
    [w.secured, 'clientId=anyone', 40101],
    [w.secured, `access_token=${createToken({ key: KEY, clientId: 'a', ttl: -60_000 })}`, 40142],
    [w.secured, `access_token=${createToken({ key: 'app.k:forged', clientId: 'a' })}`, 40144],
    [w.secured, 'access_token=not-a-jwt', 40144],
    [w.secured, `access_token=${createToken({ key: KEY, clientId: 'alice' })}&clientId=bob`, 40102],
  ];
  for (const [hub, query, code] of refusals) {
    const c = await raw(hub, query);
    assert.deepEqual([c.received[0].action, c.received[0].error?.code], [9, code], query);
    await waitFor(() => c.closed(), { what: `${query}: closed` });
    checked += 1;
  }

  // A capability that does not include the channel refuses the attach.
  const limited = createToken({ key: KEY, clientId: 'carol', capability: { 'team:*': ['presence'] } });
  const carol = await raw(w.secured, `access_token=${limited}`);
  carol.ws.send(attach('secret'));
  const refused = await waitFor(() => carol.received.find((m) => m.action === 9));
  assert.deepEqual([refused.channel, refused.error.code], ['secret', 40160]);
  carol.ws.close();
  checked += 1;

  // A msgpack connection sending text that is not a message.
  const packed = await raw(w.open, 'clientId=m&format=msgpack');
  assert.ok(packed.received[0].binary, 'msgpack frames are binary');
  // { action: 10 }: ATTACH without a channel, as a msgpack map.
  packed.ws.send(Buffer.concat([Buffer.from([0x81, 0xa6]), Buffer.from('action'), Buffer.from([0x0a])]));
  await waitFor(() => packed.closed(), { what: 'msgpack garbage closes' });
  checked += 1;

  // Floods: a burst beyond the rate is refused (42910), a persistent one closes (42920).
  const flood = await raw(w.open, 'clientId=flooder&v=6');
  flood.ws.send(attach('room'));
  // 1 000: the burst (400) and twice the rate refused (200) leave room for the budget to refill
  // on a busy machine, where the hub takes the frames over seconds rather than at once.
  for (let i = 0; i < 1000; i++) flood.ws.send(presence(i, [{ action: 4, data: `${i}` }]));
  await waitFor(() => flood.closed(), { ms: 10000, what: 'the flood closed' });
  const codes = flood.received.map((m) => m.error?.code).filter(Boolean);
  assert.ok(codes.includes(42910), `refused first: ${[...new Set(codes)]}`);
  assert.equal(codes.at(-1), 42920);
  checked += 1;
  const attachFlood = await raw(w.open, 'clientId=attacher&v=6');
  // Control frames: 2 000 a second, 6 005 at once (a burst of 4 005 and 2 000 on credit), and a
  // second's worth held; 16 000 leave room for the budget to refill on a busy machine.
  for (let i = 0; i < 16000; i++) attachFlood.ws.send(attach('room'));
  await waitFor(() => attachFlood.closed(), { ms: 10000, what: 'the attach flood closed' });
  assert.equal(attachFlood.received.filter((m) => m.action === 9).at(-1).error.code, 42920);
  checked += 1;

  assert.ok(checked >= 30, `${checked} bad inputs`);

  // Well-behaved clients saw a true picture throughout.
  await w.good.channels.get('room').presence.update({ fine: 'still' });
  await waitFor(() => w.events.some(([a, c]) => a === 'update' && c === 'good'));
  const fromGood = w.events.filter(([, c]) => c === 'good');
  assert.deepEqual(fromGood, [['enter', 'good'], ['update', 'good']]);
  const view = (await w.watcher.channels.get('room').presence.get()).map((m) => `${m.clientId}/${m.connectionId}`).sort();
  const rest = await (await fetch(`http://127.0.0.1:${w.open.port}/channels/room/presence?limit=1000`)).json();
  assert.deepEqual(view, rest.map((m) => `${m.clientId}/${m.connectionId}`).sort());
  assert.ok(view.some((v) => v.startsWith('good/')));
  assert.equal(w.good.connection.state, 'connected');
}

async function fromTheCaller(w) {
  const url = `ws://127.0.0.1:${w.open.port}`;
  const badArgs = (e) => e.code === 40000 && e.statusCode === 400;
  assert.throws(() => new Realtime({ clientId: 'x', endpoint: 'localhost:8080', autoConnect: false }), (e) => badArgs(e) && /port option/.test(e.message));
  assert.throws(() => new Realtime({ clientId: 'x', url: '127.0.0.1:8080', autoConnect: false }), badArgs);
  assert.throws(() => new Realtime({ clientId: 'x', url: 'ftp://127.0.0.1:8080', autoConnect: false }), badArgs);
  // All that the hub would refuse the connection for (40000), refused at once.
  for (const remainPresentFor of ['abc', -5, null, NaN, Infinity, '0x10', ' ', true, '1e400', Object.create(null), { ms: 5 }]) {
    const said = remainPresentFor && typeof remainPresentFor === 'object' ? 'an object' : String(remainPresentFor);
    assert.throws(
      () => new Realtime({ clientId: 'x', url, transportParams: { remainPresentFor }, autoConnect: false }),
      // Saying what was given (`Infinity`, not JSON's `null` for it).
      (e) => badArgs(e) && /remainPresentFor/.test(e.message) && e.message.endsWith(`not ${said}`),
    );
  }
  new Realtime({ clientId: 'x', url, transportParams: { remainPresentFor: '3000', heartbeatInterval: undefined }, autoConnect: false }).close();
  // What the hub reads, whatever its spelling, is taken (and clamped by the hub).
  for (const remainPresentFor of [' 2500 ', '1e4', 0.5, '+7']) {
    const taken = new Realtime({ clientId: 'y', url, transportParams: { remainPresentFor } });
    await waitFor(() => taken.connection.state === 'connected', { what: `remainPresentFor ${JSON.stringify(remainPresentFor)} taken` });
    taken.close();
  }
  // An IPv6 address is a host name with colons, not a port.
  new Realtime({ clientId: 'x', endpoint: '::1', port: 1, autoConnect: false }).close();

  const circular = {};
  circular.self = circular;
  await assert.rejects(w.good.channels.get('room').presence.update(circular), (e) => e.code === 40013 && e.statusCode === 400);

  const reported = [];
  const consoleError = console.error;
  console.error = (...args) => reported.push(args);
  try {
    const heard = [];
    const presence = w.watcher.channels.get('listeners');
    await presence.presence.subscribe('enter', () => {
      throw new Error('a bug in a listener');
    });
    await presence.presence.subscribe('enter', (m) => heard.push(m.clientId));
    await w.good.channels.get('listeners').presence.enter();
    await waitFor(() => heard.length === 1 && reported.length === 1, { what: 'the event heard and the error reported' });
    assert.deepEqual(heard, ['good']);
    assert.equal(reported[0].at(-1).message, 'a bug in a listener');
  } finally {
    console.error = consoleError;
  }
  assert.equal(w.watcher.connection.state, 'connected');
}

for (const host of Object.keys(HOSTS)) {
  describe(`the ${host} host`, () => {
    const w = hubs(host);
    test('a catalogue of more than 40 bad inputs, each answered with an Ably code, harming no one', () => runCatalogue(w));
    // The client's own checks: the same whatever the host.
    if (host === 'node') test('bad input from the caller: Ably errors, and a listener that throws ends nothing', () => fromTheCaller(w));
    // workerd reads a text frame's bytes that are not UTF-8 as U+FFFD before the hub sees it.
    if (host === 'node') test('a text frame that is not UTF-8: a presence message refused alone, anything else with an ERROR', () => notUtf8(w));
  });
}

async function notUtf8(w) {
  const text = (...parts) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
  const c = await raw(w.open, 'clientId=mallory&v=6&format=json');
  c.ws.send(attach('room'));
  await waitFor(() => c.received.some((m) => m.action === 11), { what: 'attached' });
  c.ws.send(text('{"action":14,"channel":"room","msgSerial":0,"presence":[{"action":2,"data":"a', [0xff, 0xfe], '"}]}'), { binary: false });
  const nack = await waitFor(() => c.received.find((m) => m.action === 2), { what: 'the NACK' });
  assert.equal(nack.error.code, 40000);
  assert.match(nack.error.message, /not UTF-8/);
  c.ws.send(presence(1, [{ action: 2, data: 'fine' }]));
  await waitFor(() => c.received.some((m) => m.action === 1), { what: 'the next presence message acknowledged' });
  assert.equal(c.closed(), false);
  c.ws.send(text('{"action":10,"channel":"a', [0xc3, 0x28], '"}'), { binary: false });
  const error = await waitFor(() => c.received.find((m) => m.action === 9 && m.error?.code === 40000), { what: 'the ERROR' });
  assert.match(error.error.message, /not UTF-8/);
  await waitFor(() => c.closed(), { what: 'closed' });
  assert.equal(w.good.connection.state, 'connected');
}
