// The demo page (www/) in real Chromium, in situations the scenario of demo-scenario.mjs does
// not reach: a hub whose settings differ from the usual, a hub restart, the back-forward cache,
// a channel the form would refuse, a phone's screen, and the contrast of its controls.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { chromium } from 'playwright-core';

import { Realtime } from '../../js/node.js';
import { CHROMIUM_FLAGS, launchBrowser } from './browser.mjs';
import { startHub, waitFor } from './helpers.mjs';

/** What a page says went wrong: its uncaught errors, and what the demo reports on the console. */
function watchErrors(page, errors = []) {
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && m.text().startsWith('rollcall demo') && errors.push(m.text()));
  return errors;
}

/** A page's event log, oldest first: each line as [kind, text]. */
const logOf = (page) =>
  page.$$eval('#log li', (lis) => lis.map((li) => [li.querySelector('.kind').textContent, li.lastElementChild.textContent]).reverse());

const present = (page, what = 'the page present') =>
  waitFor(async () => (await page.textContent('#me-presence')) === 'present', { ms: 20000, what });

test("the demo page says the hub's grace window, whatever the hub's default", async () => {
  const hub = await startHub({ port: 0, hub: { remainPresentFor: 4000 } });
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    const errors = watchErrors(page);
    // Nothing asked in the URL: the hub's own default holds, and the page says it.
    await page.goto(`${hub.url}/?clientId=alice&device=desk&channel=grace`);
    await present(page);
    assert.equal(await page.textContent('#grace'), '4 s');
    const droppedAt = Date.now();
    await page.click('#drop');
    const said = (await logOf(page)).find(([, text]) => /others keep seeing/.test(text));
    assert.match(said?.[1] ?? '', /others keep seeing desk for 4 s$/);
    // The page says others see it gone once the hub's window is over: not after 15 s.
    await waitFor(async () => (await page.textContent('#me-presence')) === 'offline to others · disconnected until you reconnect', {
      ms: 12000,
      what: 'the badge saying others see this tab gone',
    });
    assert.ok(Date.now() - droppedAt >= 4000 - 100, `after ${Date.now() - droppedAt} ms, not before the window is over`);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await hub.close();
  }
});

test('the demo page after a hub restart: no device listed is said to have left, and its own user is never offline', async () => {
  let hub = await startHub({ port: 0 });
  const { port } = hub;
  const watcher = () => new Realtime({ clientId: 'watcher', url: `ws://127.0.0.1:${port}` });
  let probe = null;
  const browser = await launchBrowser();
  try {
    const open = async (qs) => {
      const page = await (await browser.newContext()).newPage();
      const errors = watchErrors(page);
      await page.goto(`${hub.url}/?${qs}&channel=restart`);
      await present(page);
      return { page, errors };
    };
    const alice = await open('clientId=alice&device=laptop');
    const bob = await open('clientId=bob&device=desk');
    const listed = (page, id) => page.evaluate((id) => [...document.querySelectorAll('[data-client-id]')].find((r) => r.dataset.clientId === id)?.dataset.status, id);
    await waitFor(async () => (await listed(bob.page, 'alice')) === 'online', { what: 'bob seeing alice' });
    await waitFor(async () => (await listed(alice.page, 'bob')) === 'online', { what: 'alice seeing bob' });
    const connectionOf = (page) => page.evaluate(() => window.rollcall.realtime.connection.id);
    const aliceBefore = await connectionOf(alice.page);

    // Bob's page stays offline through the restart (its drop button), so that when it is back,
    // alice is there again on a new connection: the fresh list it gets has her new connection
    // and not her old one.
    await bob.page.click('#drop');
    const [aliceSince, bobSince] = [(await logOf(alice.page)).length, (await logOf(bob.page)).length];
    await hub.close();
    hub = await startHub({ port });
    probe = watcher();
    const members = async () => (await probe.channels.get('restart').presence.get()).map((m) => `${m.clientId} ${m.connectionId}`);
    await waitFor(async () => (await members()).includes(`alice ${await connectionOf(alice.page)}`), {
      ms: 20000,
      what: 'alice present again, on her new connection',
    });
    assert.notEqual(await connectionOf(alice.page), aliceBefore, 'a new connection (the hub forgot the old one)');
    await bob.page.click('#reconnect');
    // Settled: bob's page lists the two new connections, and only those.
    const settled = async () => {
      const [a, b] = [await connectionOf(alice.page), await connectionOf(bob.page)];
      const seen = await bob.page.evaluate(async () => (await window.rollcall.channel.presence.get()).map((m) => `${m.clientId} ${m.connectionId}`).sort());
      return JSON.stringify(seen) === JSON.stringify([`alice ${a}`, `bob ${b}`]) && (await bob.page.textContent('#me-presence')) === 'present';
    };
    await waitFor(settled, { ms: 20000, what: "bob's page back, listing alice's and its own new connections" });
    await waitFor(async () => (await listed(bob.page, 'alice')) === 'online' && (await listed(bob.page, 'bob')) === 'online', {
      what: 'both drawn online',
    });

    // Bob's page: alice never went (her laptop is listed throughout, on one connection or the
    // other), and nor did bob, whose page this is.
    const bobSaid = (await logOf(bob.page)).slice(bobSince).map((line) => line.join(' '));
    for (const line of bobSaid) {
      assert.doesNotMatch(line, /alice (left|is offline|is here)|bob (left|is offline|came online|entered)/, bobSaid.join(' | '));
    }
    // Alice's page: bob went (the hub had him no more) but alice did not.
    const aliceSaid = (await logOf(alice.page)).slice(aliceSince).map((line) => line.join(' '));
    for (const line of aliceSaid) assert.doesNotMatch(line, /alice (left|is offline|came online|entered)/, aliceSaid.join(' | '));
    assert.deepEqual([...alice.errors, ...bob.errors], []);
  } finally {
    probe?.close();
    await browser.close();
    await hub.close();
  }
});

test('the demo page going into the back-forward cache, or closed while offline, reports no error', async () => {
  const hub = await startHub({ port: 0 });
  // With the back-forward cache, as a user's browser has it (Playwright turns it off).
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: CHROMIUM_FLAGS,
    ignoreDefaultArgs: ['--disable-back-forward-cache'],
  });
  try {
    const bob = await browser.newPage();
    await bob.goto(`${hub.url}/?clientId=bob&channel=cached`);
    await present(bob, 'bob present');
    const page = await browser.newPage();
    const errors = watchErrors(page);
    await page.goto(`${hub.url}/?clientId=alice&channel=cached`);
    await present(page);
    await page.evaluate(() => (window.kept = true));
    await page.goto(`${hub.url}/style.css`);
    // Restored, a page fires no `load`: its navigation is done once committed.
    await page.goBack({ waitUntil: 'commit' });
    assert.equal(await page.evaluate(() => window.kept), true, 'restored from the back-forward cache');
    await present(page, 'present again');
    await waitFor(() => page.evaluate(() => document.querySelectorAll('[data-status="online"]').length === 2), { what: 'both listed' });
    assert.deepEqual(errors, [], 'none as the page went into the cache and came back');

    // A tab closed while offline (held so by its drop button) closes its connection as it goes.
    await page.click('#drop');
    await page.evaluate(() => dispatchEvent(new PageTransitionEvent('pagehide', { persisted: false })));
    await waitFor(async () => (await page.evaluate(() => window.rollcall.channel.state)) === 'detached', { what: 'the channel let go' });
    assert.equal(await page.evaluate(() => window.rollcall.realtime.connection.state), 'closed');
    // A round trip to the page after it: anything the close brought about has run.
    await page.evaluate(() => new Promise((r) => setTimeout(r, 0)));
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await hub.close();
  }
});

test('the demo page checks the channel in the URL as its form does, and goes back to the form with what was typed', async () => {
  const hub = await startHub({ port: 0 });
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    const errors = watchErrors(page);
    const fields = () => page.$$eval('#join-form input', (inputs) => inputs.map((i) => i.value));
    // A channel the hub would refuse: the form says why, with what was asked in it, and the
    // page does not connect.
    for (const [channel, why] of [['[bad', /cannot start with \[/], ['..', /cannot be \. or \.\./]]) {
      await page.goto(`${hub.url}/?clientId=alice&device=phone&channel=${encodeURIComponent(channel)}&remainPresentFor=3000`);
      await waitFor(async () => why.test(await page.textContent('#join-error')), { what: `${channel} refused by the form` });
      assert.deepEqual(await fields(), ['alice', 'phone', channel]);
      assert.equal(await page.evaluate(() => document.activeElement?.name), 'channel');
      assert.equal(await page.evaluate(() => window.rollcall), undefined, 'not connected');
      assert.ok(await page.isHidden('#app'));
      assert.ok(await page.isHidden('#connection'), 'no connection state on the form');
      assert.equal(await page.textContent('#grace'), '3 s', 'the grace window the URL asks for');
    }

    // A channel the hub refuses all the same (as this page is told here): "Choose another
    // channel" goes back to the form with everything as it was.
    await page.goto(`${hub.url}/?clientId=alice&device=phone&channel=refused&remainPresentFor=3000`);
    await present(page);
    await page.click('#leave');
    await waitFor(async () => (await page.textContent('#me-presence')) === 'not present', { what: 'left' });
    await page.evaluate(() => {
      window.rollcall.channel.presence.enter = () => Promise.reject(Object.assign(new Error('invalid channel name'), { code: 40010 }));
    });
    await page.click('#enter');
    await waitFor(() => page.isVisible('#channel-problem-link'), { what: 'the channel refused' });
    await page.click('#channel-problem-link');
    await waitFor(() => page.isVisible('#join'), { what: 'the form' });
    assert.deepEqual(await fields(), ['alice', 'phone', 'refused']);
    assert.equal(await page.evaluate(() => document.activeElement?.name), 'channel');
    assert.ok(await page.isHidden('#app'));
    await page.fill('input[name="channel"]', 'another');
    await Promise.all([page.waitForURL(/channel=another/), page.click('#join-form button[type="submit"]')]);
    const next = new URL(page.url()).searchParams;
    assert.deepEqual(
      ['clientId', 'device', 'channel', 'remainPresentFor'].map((k) => next.get(k)),
      ['alice', 'phone', 'another', '3000'],
    );
    await present(page, 'present on the other channel');
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await hub.close();
  }
});

test("the demo page's controls and focus rings hold 3:1 against what is under them", async () => {
  const hub = await startHub({ port: 0 });
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    await page.goto(`${hub.url}/?clientId=alice&channel=contrast`);
    await present(page);
    const contrast = ([a, b]) => {
      const lum = (rgb) => {
        const [r, g, b] = rgb.match(/\d+/g).slice(0, 3).map((v) => {
          const c = Number(v) / 255;
          return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
        });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
      };
      const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
      return (hi + 0.05) / (lo + 0.05);
    };
    const card = () => page.$eval('.me', (e) => getComputedStyle(e).backgroundColor);
    // Edges of controls on their card.
    for (const selector of ['#leave', '#status']) {
      const edge = await page.$eval(selector, (e) => getComputedStyle(e).borderTopColor);
      const ratio = contrast([edge, await card()]);
      assert.ok(ratio >= 3, `${selector}'s edge ${edge}: ${ratio.toFixed(2)}:1`);
    }
    // The status buttons' focus ring, drawn inside the button: on a pressed one and another.
    for (const status of ['available', 'typing']) {
      const selector = `#status button[data-status="${status}"]`;
      await page.focus(selector);
      const ring = await page.$eval(selector, (b) => ({
        visible: b.matches(':focus-visible'),
        pressed: b.getAttribute('aria-pressed'),
        colours: [getComputedStyle(b).outlineColor, getComputedStyle(b).backgroundColor],
      }));
      assert.ok(ring.visible, 'the ring shown');
      const ratio = contrast(ring.colours);
      assert.ok(ratio >= 3, `the ring on ${status} (pressed: ${ring.pressed}): ${ring.colours.join(' on ')}, ${ratio.toFixed(2)}:1`);
    }
    // The join form's fields.
    await page.goto(`${hub.url}/`);
    await page.waitForSelector('#join:not([hidden])');
    const field = await page.$eval('#join-form input', (e) => [getComputedStyle(e).borderTopColor, getComputedStyle(e.closest('.card')).backgroundColor]);
    assert.ok(contrast(field) >= 3, `a field's edge: ${field.join(' on ')}, ${contrast(field).toFixed(2)}:1`);
  } finally {
    await browser.close();
    await hub.close();
  }
});

test("on a phone's screen, the demo page's header does not hold the screen once scrolled", async () => {
  const hub = await startHub({ port: 0 });
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage({ viewport: { width: 320, height: 640 } });
    const channel = 'the-team-standup-room-for-the-whole-engineering-department';
    await page.goto(`${hub.url}/?clientId=alice&channel=${channel}`);
    await present(page);
    // Scrolled to the end of the page (some 300 px below its top, on this screen).
    await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
    await waitFor(() => page.evaluate(() => scrollY > 0 && scrollY + innerHeight >= document.documentElement.scrollHeight - 1), { what: 'scrolled' });
    const covered = await page.$eval('.bar', (bar) => Math.max(0, bar.getBoundingClientRect().bottom));
    assert.ok(covered <= 64, `the header covers ${covered} px of 640`);
    assert.equal(await page.evaluate(() => document.documentElement.scrollWidth), 320, 'no sideways scroll');
  } finally {
    await browser.close();
    await hub.close();
  }
});

test('the demo page says why it cannot connect the first time: a token endpoint it cannot reach', async () => {
  const hub = await startHub({ port: 0 });
  // A token endpoint where nothing answers (as one the browser blocks for want of CORS).
  const net = await import('node:net');
  const probe = net.createServer();
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    await page.goto(`${hub.url}/?clientId=alice&device=desk&channel=auth&authUrl=${encodeURIComponent(`http://127.0.0.1:${port}/token`)}`);
    const line = await waitFor(async () => (await logOf(page)).find(([kind, text]) => kind === 'network' && /^disconnected/.test(text)), {
      ms: 15000,
      what: 'the reason logged',
    });
    assert.match(line[1], /token/i);
  } finally {
    await browser.close();
    await hub.close();
  }
});

test("a tab's own leave and enter are both logged, while another device of its user has the same name", async () => {
  const hub = await startHub({ port: 0 });
  const browser = await launchBrowser();
  try {
    // Two browsers (or a window and a private one) whose tabs have one name.
    const other = await (await browser.newContext()).newPage();
    await other.goto(`${hub.url}/?clientId=alice&device=desk&channel=twins`);
    await present(other, 'the other device present');
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${hub.url}/?clientId=alice&device=desk&channel=twins`);
    await present(page);
    await page.click('#leave');
    await waitFor(async () => (await page.textContent('#me-presence')) !== 'present', { what: 'left' });
    await page.click('#enter');
    await present(page, 'present again');
    const lines = await waitFor(
      async () => {
        const log = await logOf(page);
        const left = log.findIndex(([kind, text]) => kind === 'leave' && /^alice left desk/.test(text));
        return left >= 0 && log.slice(left).some(([kind, text]) => kind === 'enter' && /^alice entered on desk/.test(text)) && log;
      },
      { what: 'the leave and the enter logged', ms: 10000 },
    );
    assert.ok(lines);
  } finally {
    await browser.close();
    await hub.close();
  }
});
