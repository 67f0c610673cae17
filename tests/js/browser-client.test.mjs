// The browser client as a page uses it: where it connects when told little, and the package
// imported by a page of another origin.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { launchBrowser } from './browser.mjs';
import { startHub } from './helpers.mjs';

test("a page's client connects to the page's own host and port, whether or not tls: false says its scheme again", async () => {
  const hub = await startHub({ port: 0 });
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    await page.goto(`${hub.url}/rollcall/js/browser.js`);
    const states = await page.evaluate(async () => {
      const { Realtime } = await import('/rollcall/js/browser.js');
      const connect = async (options) => {
        const realtime = new Realtime({ clientId: 'page', ...options });
        // Connected, or given up after a few seconds (a hub that is not there: retrying).
        const state = await Promise.race([
          realtime.connection.whenState('connected').then(() => 'connected'),
          new Promise((resolve) => setTimeout(() => resolve(realtime.connection.state), 4000)),
        ]);
        realtime.close();
        return state;
      };
      return [await connect({}), await connect({ tls: false })];
    });
    assert.deepEqual(states, ['connected', 'connected']);
  } finally {
    await browser.close();
    await hub.close();
  }
});

test('a page of another origin imports the client from the hub, and connects to a hub that allows its origin', async () => {
  // The page's own server, and the hub, which allows the page's origin.
  const site = await startHub({ port: 0 });
  const hub = await startHub({ port: 0, allowedOrigins: [site.url] });
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    await page.goto(`${site.url}/rollcall/js/browser.js`);
    const state = await page.evaluate(async (hubUrl) => {
      const { Realtime } = await import(`${hubUrl}/rollcall/js/browser.js`);
      const realtime = new Realtime({ clientId: 'page', url: hubUrl });
      await realtime.channels.get('room').presence.enter();
      const state = realtime.connection.state;
      realtime.close();
      return state;
    }, hub.url);
    assert.equal(state, 'connected');
  } finally {
    await browser.close();
    await hub.close();
    await site.close();
  }
});
