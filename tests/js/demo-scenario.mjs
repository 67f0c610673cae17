// The demo page in real Chromium, against a hub at a URL: several tabs of one user shown as
// devices, another user in another browser context, closing tabs, and a network drop with its
// grace window. Screenshots of each state go to test-results/.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';

import { launchBrowser } from './browser.mjs';
import { waitFor } from './helpers.mjs';

// Long enough that a user going offline at once is told apart from one whose grace ran out,
// also on a loaded machine.
const GRACE = 5000;
const shots = new URL('../../test-results/', import.meta.url);
mkdirSync(shots, { recursive: true });

/** The row of a user as a page shows it: { devices, status }, or null. A user shown twice
 * fails the test at once. */
const row = async (page, clientId) => {
  const rows = await page.evaluate(
    (id) => [...document.querySelectorAll('[data-client-id]')].filter((el) => el.dataset.clientId === id).map((el) => ({ devices: Number(el.dataset.devices), status: el.dataset.status })),
    clientId,
  );
  assert.ok(rows.length <= 1, `${clientId} is shown once, not ${rows.length} times`);
  return rows[0] ?? null;
};

/** How many lines of a page's event log match `pattern`. */
const logLines = async (page, pattern) => (await page.$$eval('#log li', (lis) => lis.map((li) => li.textContent))).filter((t) => pattern.test(t)).length;

/** Records a page's uncaught errors, and what the demo reports on the console, in `errors`. */
const watch = (page, errors) => {
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && m.text().startsWith('rollcall demo') && errors.push(m.text()));
  return page;
};

async function shows(page, clientId, expected, ms = 8000) {
  await waitFor(
    async () => {
      const r = await row(page, clientId);
      return r && r.status === expected.status && (expected.devices === undefined || r.devices === expected.devices);
    },
    { ms, what: `${clientId} ${JSON.stringify(expected)}` },
  );
}

export async function runDemoScenario(hubUrl, label) {
  const browser = await launchBrowser();
  const channel = `demo-${label}-${Date.now()}`;
  const url = (clientId) => `${hubUrl}/?clientId=${clientId}&channel=${channel}&remainPresentFor=${GRACE}`;
  try {
    const alice = await browser.newContext({ viewport: { width: 1200, height: 760 } });
    const bob = await browser.newContext({ viewport: { width: 1200, height: 760 } });
    const errors = [];
    const open = async (context, clientId) => {
      const page = await context.newPage();
      watch(page, errors);
      await page.goto(url(clientId));
      return page;
    };

    // Without a clientId, the page is only its join form.
    const joinPage = await alice.newPage();
    watch(joinPage, errors);
    await joinPage.goto(`${hubUrl}/?channel=${channel}`);
    await joinPage.waitForSelector('#join:not([hidden])');
    assert.equal(await joinPage.evaluate(() => getComputedStyle(document.getElementById('app')).display), 'none');
    // A form does not connect: the header says nothing of a connection.
    assert.ok(await joinPage.isHidden('#connection'), 'no connection state on the join form');
    await joinPage.close();

    const tab1 = await open(alice, 'alice');
    // "Open another tab as me": a device of its own, not a second "tab 1".
    const [tab2] = await Promise.all([alice.waitForEvent('page'), tab1.click('#new-tab')]);
    watch(tab2, errors);
    for (const page of [tab1, tab2]) await shows(page, 'alice', { status: 'online', devices: 2 });
    const deviceNames = await tab1.evaluate(() =>
      [...document.querySelectorAll('[data-client-id="alice"] .device')].map((d) => d.textContent),
    );
    assert.equal(new Set(deviceNames).size, 2, `two devices told apart: ${deviceNames}`);
    // A duplicated tab starts with a copy of the first one's sessionStorage (its tab number):
    // it is a device of its own all the same.
    const duplicate = await alice.newPage();
    watch(duplicate, errors);
    const numbered = await tab1.evaluate(() => Object.entries(sessionStorage));
    await duplicate.addInitScript((entries) => entries.forEach(([k, v]) => sessionStorage.setItem(k, v)), numbered);
    await duplicate.goto(url('alice'));
    await shows(tab1, 'alice', { status: 'online', devices: 3 });
    const three = await tab1.evaluate(() => [...document.querySelectorAll('[data-client-id="alice"] .device')].map((d) => d.textContent));
    assert.equal(new Set(three).size, 3, `three devices told apart: ${three}`);
    await duplicate.close();
    await shows(tab1, 'alice', { status: 'online', devices: 2 });
    // This tab's own device comes first.
    assert.ok(await tab1.evaluate(() => document.querySelector('[data-client-id="alice"] .device').classList.contains('mine')));
    // ...and says so in words (read out too), not by its colour alone; to nobody else.
    const thisTab = (page) => page.evaluate(() => [...document.querySelectorAll('[data-client-id="alice"] .device')].map((d) => d.innerText.includes('this tab')));
    assert.deepEqual(await thisTab(tab1), [true, false]);
    const bobPage = await open(bob, 'bob');
    // A long name without spaces wraps: the page does not scroll sideways.
    const long = `${'w'.repeat(140)}`;
    const longPage = await open(bob, long);
    await shows(bobPage, long, { status: 'online', devices: 1 });
    assert.ok(
      await bobPage.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth),
      'no sideways scroll with a long name',
    );
    await longPage.close();
    await shows(bobPage, 'alice', { status: 'online', devices: 2 });
    await shows(tab1, 'bob', { status: 'online', devices: 1 });
    assert.deepEqual(await thisTab(bobPage), [false, false]);

    // "Open as another user" opens a new user each time, none already on the list.
    const otherUsers = await bobPage.evaluate(() => {
      const hrefs = [];
      addEventListener('click', (e) => {
        const link = e.target.closest?.('#as-other');
        if (!link) return;
        e.preventDefault();
        hrefs.push(link.href);
      });
      document.getElementById('as-other').click();
      document.getElementById('as-other').click();
      const listed = [...document.querySelectorAll('[data-client-id]')].map((r) => r.dataset.clientId);
      return { names: hrefs.map((h) => new URL(h).searchParams.get('clientId')), listed };
    });
    assert.equal(otherUsers.names.length, 2);
    assert.notEqual(otherUsers.names[0], otherUsers.names[1], 'a new name on each click');
    for (const n of otherUsers.names) assert.ok(n && !otherUsers.listed.includes(n), `${n} is not on the list`);
    await bobPage.screenshot({ path: new URL(`${label}-1-alice-on-two-tabs.png`, shots).pathname });

    // A status change on one device reaches the other user, on that device's chip and in the log.
    await tab1.click('#status button[data-status="away"]');
    await waitFor(
      () => bobPage.evaluate(() => [...document.querySelectorAll('[data-client-id="alice"] .device')].some((d) => /· away/.test(d.textContent))),
      { what: "alice's device shown away to bob" },
    );
    await waitFor(async () => (await logLines(bobPage, /alice is away on/)) === 1, { what: 'the update in the log' });
    // The status it has already, clicked again: nothing sent, nothing logged (the next update
    // comes after anything those clicks would have sent).
    await tab1.click('#status button[data-status="away"]');
    await tab1.click('#status button[data-status="away"]');
    await tab1.click('#status button[data-status="available"]');
    await waitFor(async () => (await logLines(bobPage, /alice is available on/)) === 1, { what: 'the next update in the log' });
    assert.equal(await logLines(bobPage, /alice is away on/), 1, 'a status clicked again was sent again');

    // Names and data are shown as text, never as markup.
    const hostile = '<img src=x onerror="window.pwned=1">';
    const hostilePage = await bob.newPage();
    watch(hostilePage, errors);
    await hostilePage.goto(`${hubUrl}/?clientId=${encodeURIComponent(hostile)}&device=${encodeURIComponent('<b>bold</b>')}&channel=${channel}&remainPresentFor=${GRACE}`);
    await shows(bobPage, hostile, { status: 'online', devices: 1 });
    assert.deepEqual(
      await bobPage.evaluate(() => ({ imgs: document.querySelectorAll('#users img, #log img, #users b').length, pwned: window.pwned ?? null })),
      { imgs: 0, pwned: null },
    );
    assert.ok((await bobPage.textContent('#users')).includes('<b>bold</b>'), 'the device name shown as typed');
    await hostilePage.close();

    // Other clients (not this page) may use any name, device and status the hub takes.
    const raw = await bob.newPage();
    watch(raw, errors);
    await raw.goto(`${hubUrl}/rollcall/js/browser.js`);
    const longStatus = `mine lost ${'in a meeting until three, then out for lunch, '.repeat(5)}back at four`;
    const [eve, coder] = ['eve\u202E', '👩‍💻 coder'];
    await raw.evaluate(
      async ({ channel, grace, members }) => {
        const { Realtime } = await import('/rollcall/js/browser.js');
        window.clients = [];
        for (const [clientId, data] of members) {
          const realtime = new Realtime({ clientId, transportParams: { remainPresentFor: grace } });
          window.clients.push(realtime);
          await realtime.channels.get(channel).presence.enter(data);
        }
      },
      {
        channel,
        grace: GRACE,
        members: [
          [eve, { device: 'desk\u202E' }],
          [coder, { device: 'laptop' }],
          // Two browsers' first tabs: the same name.
          ['twin', { device: 'Chrome · tab 1' }],
          ['twin', { device: 'Chrome · tab 1' }],
          ['stat', { device: 'desk', status: longStatus }],
        ],
      },
    );
    await shows(bobPage, 'twin', { status: 'online', devices: 2 });
    await shows(bobPage, 'stat', { status: 'online', devices: 1 });
    // A name's direction controls do not reorder the rest of its log line: "entered on" reads
    // left to right.
    const order = await bobPage.evaluate((eve) => {
      const line = [...document.querySelectorAll('#log li')].find((li) => li.textContent.includes(`${eve} entered on`));
      const walker = document.createTreeWalker(line, NodeFilter.SHOW_TEXT);
      while (walker.nextNode() && !walker.currentNode.data.includes(' entered on ')) ;
      const node = walker.currentNode;
      const at = (word) => {
        const range = document.createRange();
        const i = node.data.indexOf(` ${word} `) + 1;
        range.setStart(node, i);
        range.setEnd(node, i + word.length);
        return range.getBoundingClientRect().left;
      };
      return { entered: at('entered'), on: at('on') };
    }, eve);
    assert.ok(order.entered < order.on, `"entered on" in its order: ${JSON.stringify(order)}`);
    const rowOf = (id) => bobPage.evaluate((id) => {
      const li = [...document.querySelectorAll('[data-client-id]')].find((r) => r.dataset.clientId === id);
      return {
        avatar: li.querySelector('.avatar').textContent,
        chips: [...li.querySelectorAll('.device')].map((d) => d.textContent),
        states: [...li.querySelectorAll('.device .state')].map((s) => [...s.classList]),
        overflow: [...li.querySelectorAll('.device, .device > *')].some((e) => e.getBoundingClientRect().right > li.getBoundingClientRect().right),
      };
    }, id);
    // Initials of whole characters, not half an emoji.
    assert.equal((await rowOf(coder)).avatar, '👩‍💻C');
    // Two devices of the same name are told apart.
    const twins = (await rowOf('twin')).chips;
    assert.equal(new Set(twins).size, 2, `two devices told apart: ${twins}`);
    // ...and so are their lines in the log.
    const twinLines = (await bobPage.$$eval('#log li', (lis) => lis.map((li) => li.lastElementChild.textContent))).filter((t) => t.startsWith('twin entered on'));
    assert.equal(new Set(twinLines).size, 2, twinLines.join(' | '));
    assert.ok(twins.every((t) => t.startsWith('Chrome · tab 1')), twins.join(' | '));
    // Another client's status is text, not the page's classes; a long one wraps inside its row.
    const stat = await rowOf('stat');
    assert.deepEqual(stat.states, [['state']]);
    assert.equal(stat.overflow, false, 'a long status wraps');
    await raw.close();

    // A user whose only device lost its connection is "reconnecting" (in words) while it is in
    // its grace window (a long one here); a page opened meanwhile does not log that as news.
    const frank = await bob.newPage();
    watch(frank, errors);
    await frank.goto(`${hubUrl}/?clientId=frank&device=desk&channel=${channel}&remainPresentFor=20000`);
    await shows(bobPage, 'frank', { status: 'online', devices: 1 });
    await frank.click('#drop');
    await shows(bobPage, 'frank', { status: 'reconnecting', devices: 1 });
    const userStatus = (page, id) => page.evaluate((id) => [...document.querySelectorAll('[data-client-id]')].find((r) => r.dataset.clientId === id)?.querySelector('.user-status').textContent, id);
    assert.equal(await userStatus(bobPage, 'frank'), 'reconnecting · 1 device');
    // The header counts users as their rows show them: frank as reconnecting, not online.
    const counted = await bobPage.evaluate(() => ({
      summary: document.getElementById('summary').textContent,
      online: document.querySelectorAll("[data-client-id][data-status='online']").length,
      reconnecting: document.querySelectorAll("[data-client-id][data-status='reconnecting']").length,
    }));
    assert.ok(counted.summary.startsWith(`${counted.online} online · ${counted.reconnecting} reconnecting · `), JSON.stringify(counted));
    // Which of his devices lost its connection.
    await waitFor(async () => (await logLines(bobPage, /frank lost the connection on desk/)) === 1, { what: "bob's log saying frank lost a connection" });
    const late = await open(bob, 'late');
    await shows(late, 'frank', { status: 'reconnecting', devices: 1 });
    await waitFor(async () => (await late.textContent('#me-presence')) === 'present', { what: 'late present' });
    assert.equal(await logLines(late, /frank is online/), 1);
    assert.equal(await logLines(late, /lost the connection/), 0, 'a connection lost before this page came is not news');
    // An Enter that fails leaves the keyboard focus on a button that can be used.
    await late.click('#leave');
    await waitFor(async () => (await late.textContent('#me-presence')) === 'not present', { what: 'late left' });
    await late.evaluate(() => {
      window.rollcall.channel.presence.enter = () => Promise.reject(Object.assign(new Error('refused for the test'), { code: 50000 }));
    });
    await late.focus('#enter');
    await late.keyboard.press('Enter');
    await waitFor(async () => (await logLines(late, /refused for the test/)) === 1, { what: 'the failed enter' });
    assert.deepEqual(await late.evaluate(() => [document.activeElement?.id, document.activeElement?.disabled]), ['enter', false]);
    await late.close();
    await frank.click('#reconnect');
    await shows(bobPage, 'frank', { status: 'online', devices: 1 });
    await frank.close();

    await tab2.close();
    await shows(bobPage, 'alice', { status: 'online', devices: 1 });
    await shows(tab1, 'alice', { status: 'online', devices: 1 });
    // One device leaving is not the user going offline, not even for a moment.
    assert.equal(await logLines(bobPage, /alice is offline/), 0, 'alice was never shown offline');
    await bobPage.screenshot({ path: new URL(`${label}-2-one-tab-closed.png`, shots).pathname });

    const closedAt = Date.now();
    await tab1.close();
    await shows(bobPage, 'alice', { status: 'offline', devices: 0 });
    const closeTook = Date.now() - closedAt;
    assert.ok(closeTook < GRACE, `offline ${closeTook} ms after the last tab closed: at once, not after the grace window`);
    await bobPage.screenshot({ path: new URL(`${label}-3-last-tab-closed.png`, shots).pathname });

    const tab3 = await open(alice, 'alice');
    await shows(bobPage, 'alice', { status: 'online', devices: 1 });
    // Taken before the click: the hub hears of the drop no earlier.
    const droppedAt = Date.now();
    await tab3.click('#drop');
    await waitFor(async () => (await tab3.textContent('#connection-state')) === 'disconnected', { what: 'tab3 disconnected' });
    // The log (newest first) says the drop, then what came of it; "network" once.
    const dropLog = await tab3.$$eval('#log li', (lis) => lis.map((li) => [li.querySelector('.kind').textContent, li.lastElementChild.textContent]));
    const cause = dropLog.findIndex(([, text]) => /others keep seeing/.test(text));
    const effect = dropLog.findIndex(([, text]) => /^disconnected/.test(text));
    assert.ok(effect >= 0 && cause > effect, `the drop before its effect: ${JSON.stringify(dropLog.slice(0, 3))}`);
    assert.equal(dropLog[cause][0], 'network');
    assert.doesNotMatch(dropLog[cause][1], /^network/, 'the kind said once');
    assert.match(dropLog[cause][1], / for 5 s$/);
    // The dropped tab says so of itself, and shows what it knew as such.
    // Dropped by the button, it waits for Reconnect, and says so rather than "reconnecting".
    assert.equal(await tab3.textContent('#me-presence'), 'present to others · disconnected until you reconnect');
    assert.ok(await tab3.evaluate(() => document.getElementById('users').classList.contains('stale')));
    // Still shown present during the grace window, marked as having lost its connection (and,
    // her only device, as reconnecting)...
    assert.ok(['online', 'reconnecting'].includes((await row(bobPage, 'alice'))?.status));
    await waitFor(() => bobPage.evaluate(() => document.querySelector('[data-client-id="alice"] .device')?.dataset.lost === 'true'), {
      what: 'the device marked as having lost its connection',
    });
    assert.deepEqual(await row(bobPage, 'alice'), { devices: 1, status: 'reconnecting' });
    assert.equal(await userStatus(bobPage, 'alice'), 'reconnecting · 1 device');
    await bobPage.screenshot({ path: new URL(`${label}-4-network-dropped-grace.png`, shots).pathname });
    // ...then offline once remainPresentFor has passed.
    await shows(bobPage, 'alice', { status: 'offline', devices: 0 }, GRACE + 8000);
    const dropTook = Date.now() - droppedAt;
    assert.ok(dropTook >= GRACE - 100, `offline ${dropTook} ms after the drop, not before remainPresentFor`);
    // Offline since the hub's leave: its time, machine-readable, within the window it happened in.
    const since = await bobPage.evaluate(() => document.querySelector('[data-client-id="alice"] .user-status time')?.dateTime);
    assert.ok(since, 'the offline row says since when');
    assert.ok(Date.parse(since) >= droppedAt + GRACE - 100 && Date.parse(since) <= Date.now(), `offline since ${since}`);
    assert.match(await userStatus(bobPage, 'alice'), /^offline on all devices · since \S/);
    await bobPage.screenshot({ path: new URL(`${label}-5-offline-after-grace.png`, shots).pathname });
    // The dropped tab says others now see it as gone.
    await waitFor(async () => (await tab3.textContent('#me-presence')) === 'offline to others · disconnected until you reconnect', {
      what: 'the dropped tab saying others see it offline',
    });

    // Still offline: Leave, then a status change, then Reconnect. Leaving is said at once, and
    // the status change does not enter alice again behind her leave (the hub has no alice to
    // remove by then, so nobody hears the leave itself).
    await tab3.click('#leave');
    assert.equal(await tab3.textContent('#me-presence'), 'leaving…');
    assert.equal(await tab3.evaluate(() => document.activeElement?.id), 'enter', 'focus moves to Enter');
    await tab3.click('#status button[data-status="away"]');
    await tab3.click('#reconnect');
    await waitFor(async () => (await tab3.textContent('#me-presence')) === 'not present', { what: 'the leave done' });
    const settled = await tab3.evaluate(async () => {
      // A round trip after the status change: anything it sent has been applied by now.
      await window.rollcall.channel.presence.get();
      return (await window.rollcall.channel.presence.get()).filter((m) => m.clientId === 'alice').length;
    });
    assert.equal(settled, 0, 'alice is not present again');
    assert.deepEqual(await row(bobPage, 'alice'), { devices: 0, status: 'offline' });
    assert.equal(await tab3.evaluate(() => document.getElementById('enter').disabled), false);
    await tab3.close();

    // A hub that cannot be reached: the page counts down to the next try.
    const unreachable = await bob.newPage();
    watch(unreachable, errors);
    let attempts = 0;
    await unreachable.routeWebSocket(/./, (ws) => {
      attempts++;
      ws.close();
    });
    // What the page reads out about its connection, each time it says it.
    await unreachable.addInitScript(() => {
      window.said = [];
      new MutationObserver((records) => {
        for (const r of records) if (r.target.id === 'connection-said') window.said.push(r.target.textContent);
      }).observe(document, { subtree: true, childList: true });
    });
    await unreachable.goto(url('carol'));
    const countdown = async () => (await unreachable.textContent('#connection-state')).match(/^disconnected · retrying in (\d+) s$/)?.[1];
    await waitFor(countdown, { what: 'a retry countdown' });
    const first = Number(await countdown());
    await waitFor(async () => Number(await countdown()) < first, { what: 'the countdown going down' });
    // Tried twice (at once, then once more at once), and said so once: not at every try.
    assert.ok(attempts >= 2, `${attempts} attempts`);
    const said = (await unreachable.evaluate(() => window.said)).filter((t) => /^Connection /.test(t ?? ''));
    assert.deepEqual([...new Set(said)], ['Connection connecting', 'Connection disconnected'], said.join(', '));
    assert.ok(said.length <= 2, said.join(', '));
    // Pressing Reconnect is answered: what comes of it is said.
    const saidCount = async () => (await unreachable.evaluate(() => window.said)).filter((t) => /^Connection /.test(t ?? '')).length;
    await unreachable.click('#reconnect');
    await waitFor(async () => (await saidCount()) > said.length, { what: 'the reconnect said' });
    assert.match(await unreachable.textContent('#nobody'), /Not connected to the server yet/, 'not "Connecting…" while it waits to retry');
    await unreachable.close();

    // A name of spaces is refused with a message, not a silent reload.
    const join = await bob.newPage();
    watch(join, errors);
    await join.goto(`${hubUrl}/`);
    await join.fill('input[name="clientId"]', '   ');
    await join.click('#join-form button[type="submit"]');
    await waitFor(async () => /more than spaces/.test(await join.textContent('#join-error')), { what: 'the join form refusing spaces' });
    assert.equal(new URL(join.url()).search, '');
    // A channel name the hub would refuse is refused by the form, saying why.
    await join.fill('input[name="clientId"]', 'erin');
    await join.fill('input[name="channel"]', 'c'.repeat(1100));
    await join.click('#join-form button[type="submit"]');
    await waitFor(async () => /at most 1024 bytes/.test(await join.textContent('#join-error')), { what: 'the long channel name refused' });
    assert.equal(new URL(join.url()).search, '');
    // A name from the URL that the hub would refuse (a tab in it) is put back in the form, to be
    // put right.
    await join.goto(`${hubUrl}/?clientId=a%09b&device=desk`);
    await waitFor(async () => /control characters/.test(await join.textContent('#join-error')), { what: 'the tab refused' });
    assert.equal(await join.inputValue('input[name="clientId"]'), 'a\tb');
    assert.equal(await join.inputValue('input[name="device"]'), 'desk');
    // So is a name with a text-direction control in it.
    await join.goto(`${hubUrl}/?clientId=eve%E2%80%AE&channel=${channel}`);
    await waitFor(async () => /text-direction/.test(await join.textContent('#join-error')), { what: 'the direction control refused' });
    await join.close();

    // The join form keeps the URL's settings (a short grace to try the demo with).
    const withGrace = await bob.newPage();
    watch(withGrace, errors);
    // On a phone's width.
    await withGrace.setViewportSize({ width: 360, height: 700 });
    await withGrace.goto(`${hubUrl}/?remainPresentFor=3000&channel=${channel}`);
    // The form says the grace window joining will give.
    await withGrace.waitForSelector('#join:not([hidden])');
    assert.equal(await withGrace.textContent('#grace'), '3 s');
    await withGrace.fill('input[name="clientId"]', 'dora');
    await Promise.all([withGrace.waitForURL(/clientId=dora/), withGrace.click('#join-form button[type="submit"]')]);
    const kept = new URL(withGrace.url()).searchParams;
    assert.equal(kept.get('remainPresentFor'), '3000', withGrace.url());
    assert.equal(kept.get('channel'), channel);
    await waitFor(async () => (await withGrace.textContent('#grace')) === '3 s', { what: 'the grace from the URL' });
    // A device chip too wide for a phone's card puts its status on a line of its own rather than
    // break the device's name.
    const chip = () => withGrace.evaluate(() => {
      const name = document.querySelector('[data-client-id="dora"] .device > span:not(.state)');
      if (!name) return null;
      const range = document.createRange();
      range.selectNodeContents(name);
      return { name: name.textContent, lines: range.getClientRects().length };
    });
    await waitFor(async () => (await chip()) !== null, { what: "dora's device chip" });
    assert.deepEqual(await chip(), { name: (await chip()).name, lines: 1 });
    await withGrace.close();

    const log = await bobPage.textContent('#log');
    // Offline twice: when her last tab closed, and when the dropped tab's grace ran out.
    assert.equal(await logLines(bobPage, /alice is offline on all devices/), 2);
    assert.match(log, /connection lost/);
    assert.match(log, /tab closed/);
    // This page's own connection closing (as a page put in the back-forward cache closes it)
    // empties its view, but no one went offline: the log does not say they did.
    const offlineLines = await logLines(bobPage, /is offline on all devices/);
    await bobPage.evaluate(() => window.rollcall.realtime.close());
    await waitFor(async () => (await bobPage.evaluate(() => window.rollcall.realtime.connection.state)) === 'closed', { what: "bob's page closed" });
    await waitFor(async () => (await bobPage.evaluate(() => window.rollcall.channel.state)) === 'detached', { what: "bob's channel let go" });
    assert.equal(await logLines(bobPage, /is offline on all devices/), offlineLines);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
}


/** The demo page against a hub that checks credentials: it says why it cannot get in, and does
 * not blame the channel. */
export async function runKeyedDemoCheck(hubUrl) {
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    // A refused connection is said on the page; nothing is reported on the console.
    const errors = [];
    watch(page, errors);
    await page.goto(`${hubUrl}/?clientId=alice&channel=keyed`);
    await waitFor(async () => /checks credentials/.test((await page.textContent('#channel-problem')) ?? ''), { what: 'the credentials message' });
    assert.ok(await page.isHidden('#channel-problem-link'), 'no "choose another channel"');
    assert.equal(await page.textContent('#me-presence'), 'not present');
    // A name the client would refuse is refused by the form, with the page still usable.
    await page.goto(`${hubUrl}/?clientId=*&channel=keyed`);
    await waitFor(async () => /reserved/.test(await page.textContent('#join-error')), { what: 'the * name refused' });
    assert.equal(await page.inputValue('input[name="clientId"]'), '*', 'put back in the form');
    // Long names with nowhere to break wrap on a narrow screen rather than widen the page.
    await page.setViewportSize({ width: 360, height: 700 });
    await page.goto(`${hubUrl}/?clientId=${'a'.repeat(80)}&channel=${'keyed'.repeat(16)}`);
    await waitFor(async () => /checks credentials/.test((await page.textContent('#channel-problem')) ?? ''), { what: 'the page drawn' });
    assert.equal(await page.evaluate(() => document.documentElement.scrollWidth), 360);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
}
