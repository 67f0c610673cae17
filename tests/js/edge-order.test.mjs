// On the edge host, what a drain writes is issued before what it sends: a Durable Object's
// output gate then holds every frame (an ACK, the event of an enter) until what it reports is
// stored, so that no client hears of a change that a lost write would undo. The order is
// logged by a test Worker (fixtures/ordering-worker.js). (Its own file: one Miniflare per test
// process.)

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { startEdgeHub } from '../../js/hub/edge.js';
import { Realtime } from '../../js/node.js';
import { waitFor } from './helpers.mjs';

const script = fileURLToPath(new URL('./fixtures/ordering-worker.js', import.meta.url));

test('a drain issues its storage writes before it sends a frame', async () => {
  const edge = await startEdgeHub({ port: 0, script });
  const url = edge.url.replace(/^http/, 'ws');
  const watcher = new Realtime({ clientId: 'watcher', url });
  const alice = new Realtime({ clientId: 'alice', url });
  try {
    const events = [];
    await watcher.channels.get('room').presence.subscribe((m) => events.push(`${m.action}:${m.clientId}`));
    await alice.channels.get('room').presence.enter('here');
    await waitFor(() => events.length === 1, { what: 'the enter heard' });
    const log = await (await fetch(`${edge.url}/_rollcall/state?log`)).json();
    const drains = log.join(' ').split('drain').map((d) => d.trim()).filter(Boolean);
    const both = drains.filter((d) => d.includes('put') && d.includes('send'));
    assert.ok(both.length >= 2, `drains that write and send: ${JSON.stringify(drains)}`);
    for (const drain of both) {
      assert.ok(!/send.*(put|delete)/.test(drain), `a frame sent before a write: ${drain}`);
    }
  } finally {
    watcher.close();
    alice.close();
    await edge.close();
  }
});
