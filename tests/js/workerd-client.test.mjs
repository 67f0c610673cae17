// The client inside workerd (an agent as a Worker, through the package's `workerd` export)
// enters presence on a Node hub and sees a member that a browser page entered.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { Miniflare } from 'miniflare';

import { launchBrowser } from './browser.mjs';
import { startHub, waitFor } from './helpers.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));

test('an agent in workerd sees a browser tab, and the tab sees the agent', async () => {
  const hub = await startHub({ port: 0 });
  const browser = await launchBrowser();
  const mf = new Miniflare({
    modules: true,
    scriptPath: fileURLToPath(new URL('./fixtures/edge-agent.js', import.meta.url)),
    modulesRoot: root,
    modulesRules: [
      { type: 'ESModule', include: ['**/*.js'] },
      { type: 'CompiledWasm', include: ['**/*.wasm'] },
    ],
    compatibilityDate: '2025-04-01',
    cf: false,
  });
  try {
    const channel = `edge-${Date.now()}`;
    const page = await browser.newPage();
    await page.goto(`${hub.url}/`);
    // The browser build, from a plain module script served by the hub.
    await page.evaluate(async (channel) => {
      const { Realtime } = await import('/rollcall/js/browser.js');
      const realtime = new Realtime({ clientId: 'browser-user' });
      window.seen = [];
      await realtime.channels.get(channel).presence.subscribe('enter', (m) => window.seen.push([m.clientId, m.data]));
      await realtime.channels.get(channel).presence.enter({ device: 'chromium' });
    }, channel);

    const response = await mf.dispatchFetch(`http://agent/?hub=ws://127.0.0.1:${hub.port}&channel=${channel}`);
    const members = await response.json();
    assert.equal(response.status, 200, JSON.stringify(members));
    const byClient = Object.fromEntries(members.map((m) => [m.clientId, m.data]));
    assert.deepEqual(byClient['browser-user'], { device: 'chromium' }, 'the agent sees the browser member');
    assert.deepEqual(byClient['edge-agent'], { model: 'edge', runtime: 'workerd' });

    const seen = await waitFor(() => page.evaluate(() => window.seen.find(([id]) => id === 'edge-agent')));
    assert.deepEqual(seen[1], { model: 'edge', runtime: 'workerd' }, 'the tab saw the agent enter');

    // Binary data comes back in a browser as ably-js gives it there: an ArrayBuffer.
    const binary = await page.evaluate(async (channel) => {
      const { Realtime } = await import('/rollcall/js/browser.js');
      const realtime = new Realtime({ clientId: 'browser-binary' });
      const presence = realtime.channels.get(channel).presence;
      const got = new Promise((resolve) => presence.subscribe('enter', (m) => m.clientId === 'browser-binary' && resolve(m.data)));
      await presence.enter(new Uint8Array([1, 2, 250]));
      const data = await got;
      realtime.close();
      return { arrayBuffer: data instanceof ArrayBuffer, bytes: [...new Uint8Array(data)] };
    }, channel);
    assert.deepEqual(binary, { arrayBuffer: true, bytes: [1, 2, 250] });
  } finally {
    await mf.dispose();
    await browser.close();
    await hub.close();
  }
});
