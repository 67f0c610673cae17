// The browser client as a page uses it: where it connects when told little, and the package
// imported by a page of another origin.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { launchBrowser } from './browser.mjs';
import { startHub } from './helpers.mjs';

test("a page's client connects to the page's own host and port, whether or not tls: false says its scheme again; to another host, on Ably's ports", async () => {
  const hub = await startHub({ port: 0 });
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    await page.goto(`${hub.url}/rollcall/js/browser.js`);
    const states = await page.evaluate(async () => {
      // Where each client goes: the WebSocket it opens.
      const urls = (window.urls = []);
      const Native = WebSocket;
      window.WebSocket = class extends Native {
        constructor(url, ...rest) {
          urls.push(String(url).split('?')[0]);
          super(url, ...rest);
        }
      };
      const { Realtime } = await import('/rollcall/js/browser.js');
      for (const options of [{ endpoint: 'localhost', tls: false }, { endpoint: 'localhost' }]) {
        const elsewhere = new Realtime({ clientId: 'elsewhere', autoConnect: false, ...options });
        elsewhere.connect();
        // Its first attempt seen, it tries no more.
        const seen = urls.length;
        for (let waited = 0; urls.length === seen && waited < 3000; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10));
        elsewhere.close();
        window.firsts = [...(window.firsts ?? []), urls[seen]];
      }
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
    const own = new URL(hub.url);
    assert.deepEqual(await page.evaluate(() => window.firsts), ['ws://localhost/', 'ws://localhost/']);
    assert.deepEqual((await page.evaluate(() => window.urls)).filter((url) => url !== 'ws://localhost/'), [`ws://${own.host}/`, `ws://${own.host}/`]);
  } finally {
    await browser.close();
    await hub.close();
  }
});

test('a page of another origin imports the client from the hub, and connects to a hub that allows its origin', async () => {
  // Public files, also to a page from another site in development mode (which refuses it a
  // WebSocket).
  const open = await startHub({ port: 0 });
  try {
    const module = await fetch(`${open.url}/rollcall/js/browser.js`, { headers: { origin: 'https://app.example' } });
    assert.equal(module.status, 200);
    assert.equal(module.headers.get('access-control-allow-origin'), '*');
    // The page is not the package, however its path is spelt.
    for (const path of ['/', '/rollcall/../', '/rollcall/%2e%2e/index.html', '/rollcall/..%2Findex.html']) {
      const page = await fetch(`${open.url}${path}`, { headers: { origin: 'https://app.example' } });
      assert.equal(page.status, 403, path);
    }
  } finally {
    await open.close();
  }
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
