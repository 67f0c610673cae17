// The demo: who is online on a channel, grouped by user, one chip per device.
// Identity comes from the URL (?clientId=alice&device=laptop&channel=lobby) or the form.
// Test knobs: &remainPresentFor=ms&heartbeatInterval=ms. A hub that checks credentials needs
// &authUrl=… (a token endpoint of the app's server).

import { Realtime } from '/rollcall/js/browser.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const clientId = params.get('clientId')?.trim();
const channelName = params.get('channel')?.trim() || 'lobby';

const bytes = (text) => new TextEncoder().encode(text).length;
const CONTROL = /\p{Cc}/u;
/** Text-direction controls: in a name, they could reorder the text shown around it. */
const BIDI = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/u;
/** How many users gone offline the list keeps showing. */
const OFFLINE_KEPT = 20;
/** The statuses this page sets (others' may be any text). */
const STATUSES = ['available', 'typing', 'away'];

/** Why a name cannot be used, or null. The hub's rules, and no text-direction controls (the
 * hub allows them: names from other clients are shown isolated all the same). */
const nameProblem = (name) =>
  !name
    ? 'Your name needs more than spaces.'
    : name === '*'
      ? 'The name * is reserved (it means anyone).'
      : bytes(name) > 512
        ? 'Your name is too long (512 bytes at most).'
        : CONTROL.test(name)
          ? 'Your name cannot hold control characters (tabs, line breaks).'
          : BIDI.test(name)
            ? 'Your name cannot hold text-direction controls (such as U+202E): they would reorder the text around it.'
            : null;

/** Why a channel name cannot be used, or null. The same rules as the hub's. */
const channelNameProblem = (name) =>
  name.startsWith('[')
    ? 'A channel name cannot start with [.'
    : name === '.' || name === '..'
      ? 'A channel name cannot be . or .. (no address could name it).'
      : bytes(name) > 1024
        ? 'A channel name is at most 1024 bytes.'
        : CONTROL.test(name)
          ? 'A channel name cannot hold control characters.'
          : null;

/** What the form refuses, as [its field, why], or null. */
const formProblem = (name, channel) => {
  const why = nameProblem(name);
  if (why) return ['clientId', why];
  const where = channelNameProblem(channel);
  return where ? ['channel', where] : null;
};

/** A duration as the page says it: "15 s". */
const seconds = (ms) => `${ms / 1000} s`;

// The grace window the URL asks for, as the hub holds it (at least 1 s, at most an hour), so
// that the join form says what joining will give; once connected, the page says the hub's own.
const askedGrace = Number(params.get('remainPresentFor'));
if (askedGrace > 0) $('grace').textContent = seconds(Math.min(Math.max(askedGrace, 1_000), 3_600_000));

// A name or channel from the URL is checked as the form checks it: one the hub would refuse is
// put right in the form, with the form's words, rather than refused by the hub.
const urlProblem = clientId && formProblem(clientId, channelName);
if (!clientId || urlProblem) {
  showJoin(urlProblem);
} else {
  try {
    // The page's own name for this tab first (it may wait for a lock, briefly).
    start(params.get('device')?.trim() || (await tabName()));
  } catch (error) {
    $('app').hidden = true;
    showJoin(['clientId', `This page could not start: ${error.message}`]);
  }
}

/** The join form, with what the URL asked for in it; `problem` ([field, why]) says what to put
 * right, and where. */
function showJoin(problem) {
  $('join').hidden = false;
  const form = $('join-form');
  // What the URL asked for, refused or not, to be put right rather than typed again.
  for (const key of ['clientId', 'device', 'channel']) form[key].value = params.get(key) ?? '';
  $('join-error').textContent = problem?.[1] ?? '';
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const problem = formProblem(form.clientId.value.trim(), form.channel.value.trim());
    $('join-error').textContent = problem?.[1] ?? '';
    if (problem) return form[problem[0]].focus();
    // What the URL had (remainPresentFor, heartbeatInterval, ...) stays; the form's fields
    // are written over it.
    const next = new URLSearchParams(params);
    for (const key of ['clientId', 'device', 'channel', 'authUrl']) {
      if (!form[key]) continue;
      const value = form[key].value.trim();
      if (value) next.set(key, value);
      else next.delete(key);
    }
    location.search = next.toString();
  });
  form[problem?.[0] ?? 'clientId'].focus();
}

/** "Chrome · tab 2" (or "Chrome phone · tab 2"): the browser, and this tab's number: the
 * smallest not taken by another tab of this browser that is still open. */
async function tabName() {
  const ua = navigator.userAgent;
  const phone = /Mobi|Android|iPhone|iPad/.test(ua) ? ' phone' : '';
  const browser = /Edg\//.test(ua)
    ? 'Edge'
    : /Firefox\//.test(ua)
      ? 'Firefox'
      : /Chrome\/|Chromium\//.test(ua)
        ? 'Chrome'
        : /Safari\//.test(ua)
          ? 'Safari'
          : 'Browser';
  return `${browser}${phone} · tab ${await tabNumber()}`;
}

/** This tab's number, numbered per user and channel (another user in this browser starts at
 * tab 1), kept across reloads of the tab. */
async function tabNumber() {
  const mine = `rollcall-tab:${channelName}:${clientId}`;
  if (navigator.locks) {
    // Each number is a lock held for as long as its tab is open: a tab in the background (whose
    // timers the browser slows) keeps it, and a duplicated tab, which starts with a copy of
    // this one's sessionStorage, does not take it too.
    const take = (n) =>
      new Promise((resolve) =>
        navigator.locks.request(`${mine}:${n}`, { ifAvailable: true }, (lock) => {
          resolve(Boolean(lock));
          return lock ? new Promise(() => {}) : undefined;
        }),
      );
    let n = Number(sessionStorage.getItem(mine)) || 1;
    if (!(await take(n))) for (n = 1; !(await take(n)); n++);
    sessionStorage.setItem(mine, String(n));
    return n;
  }
  // Without locks (a page served over plain http to another machine): open tabs say they are
  // alive every few seconds, and a number whose tab has gone is free again.
  const key = `rollcall-open-tabs:${channelName}:${clientId}`;
  const read = () => {
    try {
      return JSON.parse(localStorage.getItem(key) ?? '{}');
    } catch {
      return {};
    }
  };
  const now = Date.now();
  const open = Object.fromEntries(Object.entries(read()).filter(([, seen]) => now - seen < 12_000));
  let n = Number(sessionStorage.getItem(mine));
  if (!n) {
    n = 1;
    while (open[n]) n++;
    sessionStorage.setItem(mine, String(n));
  }
  const alive = () => localStorage.setItem(key, JSON.stringify({ ...read(), [n]: Date.now() }));
  alive();
  setInterval(alive, 5_000);
  addEventListener('pagehide', () => {
    const tabs = read();
    delete tabs[n];
    localStorage.setItem(key, JSON.stringify(tabs));
  });
  return n;
}

function start(device) {
  const transportParams = {};
  for (const key of ['remainPresentFor', 'heartbeatInterval']) {
    const value = Number(params.get(key));
    if (value > 0) transportParams[key] = value;
  }
  const authUrl = params.get('authUrl') || undefined;
  const realtime = new Realtime({ clientId, transportParams, authUrl });
  // How long others keep seeing this tab after its link drops: the hub's word once connected
  // (its own default may not be 15 s), what was asked until then.
  const grace = () => realtime.connection.remainPresentFor;
  $('grace').textContent = seconds(grace());
  const channel = realtime.channels.get(channelName);
  const presence = channel.presence;
  const debug = (window.rollcall = { realtime, channel, draws: 0 }); // for the console, and for tests

  let status = 'available';
  /** Whether this tab is (or is about to be) present, and what is under way, if anything. */
  let present = false;
  let busy = null;
  /** When this tab lost its connection (others see it for `grace()` more). */
  let droppedAt = null;
  /** Dropped by the button: offline until Reconnect is pressed. */
  let heldOffline = false;
  /** Why the channel cannot be used, once known. */
  let channelProblem = null;
  /** The hub refused this page's name (40012): the way back is the form. */
  let nameRefused = false;
  /** Every user seen on this page: clientId → { online, devices }. */
  const known = new Map();
  /** When each user went offline, in the order this page heard it. */
  const wentOffline = new Map();
  // The hub's time of each client's latest leave, for "offline since".
  const leftAt = new Map();
  let offlines = 0;

  $('app').hidden = false;
  $('where').hidden = false;
  $('connection').hidden = false;
  $('channel-name').textContent = channelName;
  $('me-name').textContent = clientId;
  $('me-device').textContent = device;
  $('app-title').replaceChildren('Who is online on ', bdi(channelName));
  // "Open as another user": a new name on each use, none of those on the list (nor one this
  // page has already opened), picked as it is used.
  const opened = new Set();
  const pointOther = () => {
    const name = randomName((n) => n === clientId || known.has(n) || opened.has(n));
    opened.add(name);
    const other = new URLSearchParams({ clientId: name, channel: channelName });
    for (const [k, v] of Object.entries(transportParams)) other.set(k, v);
    if (authUrl) other.set('authUrl', authUrl);
    $('as-other').href = `?${other}`;
  };
  pointOther();
  // Before the browser follows the link: a click, a middle click, or its context menu.
  for (const type of ['click', 'auxclick', 'contextmenu']) $('as-other').addEventListener(type, pointOther);

  const myData = () => ({ device, status });

  /** Entering or leaving takes effect on the page at once (a status change made before the
   * leave is done does not enter again), and is undone only if the hub refuses it. */
  async function act(nowPresent, label, operation) {
    present = nowPresent;
    busy = label;
    renderMe();
    try {
      await operation();
    } catch (error) {
      present = !nowPresent;
      throw error;
    } finally {
      busy = null;
      renderMe();
    }
  }
  const enter = () => act(true, 'entering…', () => presence.enter(myData()));
  const leave = () => act(false, 'leaving…', () => presence.leave({ ...myData(), reason: 'pressed leave' }));

  // ---- rendering -----------------------------------------------------------------------------

  // One draw at a time, and one more after it for whatever came meanwhile: a SYNC of N members
  // is N events, and must not be N redraws of N rows. A channel that failed (say, an invalid
  // name) is reported once, by its operations.
  let drawing = false;
  let again = false;
  /** This page does not hear the channel, and a draw could only fail: its connection is closed
   * (as a page going into the back-forward cache, or a tab closing, closes it) or was refused,
   * or the channel failed. What it last drew stays, greyed as not current; why is said by what
   * failed (`refused`, `report`), not as an error on the console. */
  const unheard = () => /^(closing|closed|failed)$/.test(realtime.connection.state) || channel.state === 'failed';
  async function render() {
    again = true;
    if (drawing) return;
    drawing = true;
    while (again) {
      again = false;
      renderSummary();
      if (unheard()) continue;
      // Reported, not swallowed: a list that stops updating must say why somewhere.
      // (A channel suspended meanwhile is shown as such, and drawn again when it is back; a
      // draw under way when the connection closes is let go.)
      await draw().catch((error) => error?.code === 91005 || unheard() || console.error('rollcall demo: the list could not be drawn', error));
    }
    drawing = false;
  }

  /** The roster's counts, as last drawn. */
  let counts = '';
  function renderSummary() {
    const last = counts && realtime.connection.state !== 'connected' ? 'last known: ' : '';
    $('summary').textContent = `${last}${counts}`;
  }

  async function draw() {
    debug.draws++;
    const clients = await presence.getClients({ waitForSync: channel.state === 'attached' });
    const online = new Set(clients.map((c) => c.clientId));
    for (const c of clients) known.set(c.clientId, { online: true, devices: c.devices });
    // Offline since the hub's time of the last leave heard (this page may have been away then).
    for (const [id, entry] of known) if (!online.has(id) && entry.online) known.set(id, { online: false, devices: [], since: new Date(leftAt.get(id) ?? Date.now()) });
    // Those gone stay listed, the latest to go first, up to OFFLINE_KEPT: a tab left open all day
    // does not list everyone it ever saw.
    const gone = [...known].filter(([id, e]) => !e.online && id !== clientId);
    gone.sort(([a], [b]) => (wentOffline.get(b) ?? 0) - (wentOffline.get(a) ?? 0));
    for (const [id] of gone.slice(OFFLINE_KEPT)) {
      known.delete(id);
      wentOffline.delete(id);
      leftAt.delete(id);
    }
    const order = [...known.keys()].sort((a, b) => {
      const rank = (id) => (id === clientId ? 0 : known.get(id).online ? 1 : 2);
      return rank(a) - rank(b) || a.localeCompare(b);
    });
    // Only the rows that changed are replaced: a screen reader's place in the list, or a
    // selection in it, is kept while others' statuses change.
    const list = $('users');
    const old = new Map([...list.children].map((row) => [row.dataset.clientId, row]));
    const rows = order.map((id) => {
      const row = userRow(id, known.get(id));
      const was = old.get(id);
      return was?.isEqualNode(row) ? was : row;
    });
    rows.forEach((row, i) => list.children[i] !== row && list.insertBefore(row, list.children[i] ?? null));
    while (list.children.length > rows.length) list.lastElementChild.remove();
    renderEmpty();
    // Counted as the rows show them: a user whose every device is in its grace window is
    // reconnecting, not online.
    const devices = clients.reduce((n, c) => n + c.devices.length, 0);
    const reconnecting = clients.filter((c) => allLost(c.devices)).length;
    counts =
      `${clients.length - reconnecting} online${reconnecting ? ` · ${reconnecting} reconnecting` : ''}` +
      ` · ${devices} device${devices === 1 ? '' : 's'}`;
    renderSummary();
  }

  /** What the roster says when it lists nobody, or why the channel cannot be used. */
  function renderEmpty() {
    $('channel-problem').hidden = !channelProblem;
    $('channel-problem-text').textContent = channelProblem ?? '';
    // Another channel would not help a connection the hub refused; another name may.
    $('channel-problem-link').hidden = realtime.connection.state === 'failed' && !nameRefused;
    $('channel-problem-link').textContent = nameRefused ? 'Choose another name' : 'Choose another channel';
    const connected = realtime.connection.state === 'connected';
    $('nobody').hidden = known.size > 0 || Boolean(channelProblem);
    $('nobody').textContent = connected ? 'Nobody here yet.' : 'Not connected to the server yet: the list comes once it is.';
  }

  function userRow(id, { online, devices, since }) {
    const li = el('li', 'user');
    li.dataset.clientId = id;
    li.dataset.devices = String(devices.length);
    // Every device in its grace window: still listed, but maybe not for long.
    const reconnecting = online && allLost(devices);
    const state = reconnecting ? 'reconnecting' : online ? 'online' : 'offline';
    li.dataset.status = state;
    if (id === clientId) li.classList.add('mine');
    const avatar = el('div', 'avatar', initials(id));
    avatar.setAttribute('aria-hidden', 'true');
    avatar.style.background = colour(id);
    avatar.append(el('span', 'dot'));
    const body = el('div');
    const head = el('div', 'user-head');
    head.append(el('span', 'user-name', id));
    const agent = devices.find((d) => str(d.data?.model));
    if (agent) head.append(el('span', 'tag agent', `agent · ${str(agent.data.model)}`));
    if (id === clientId) head.append(el('span', 'tag you', 'you'));
    const count = `${devices.length} device${devices.length === 1 ? '' : 's'}`;
    const status = el('span', 'user-status', online ? `${state} · ${count}` : 'offline on all devices');
    if (!online && since) {
      // With its date once it is not today's (a tab left open overnight).
      const today = since.toDateString() === new Date().toDateString();
      const when = el('time', '', today ? since.toLocaleTimeString() : since.toLocaleString());
      when.dateTime = since.toISOString();
      status.append(' · since ', when);
    }
    head.append(status);
    const chips = el('div', 'devices');
    // In a stable order: this tab first, then by device name (tab 2 before tab 10).
    const name = deviceName;
    const ordered = [...devices].sort(
      (a, b) =>
        (b.connectionId === realtime.connection.id) - (a.connectionId === realtime.connection.id) ||
        name(a).localeCompare(name(b), undefined, { numeric: true }) ||
        a.connectionId.localeCompare(b.connectionId),
    );
    // Two devices of the same name (two browsers' "Chrome · tab 1") are told apart by as much of
    // their connection ids as it takes, 4 characters at least.
    const suffix = new Map();
    for (const d of ordered) {
      const twins = ordered.filter((o) => o !== d && name(o) === name(d));
      if (twins.length) suffix.set(d, idPrefix(d.connectionId, twins.map((o) => o.connectionId)));
    }
    for (const d of ordered) chips.append(deviceChip(d, suffix.get(d)));
    body.append(head, chips);
    li.append(avatar, body);
    return li;
  }

  function deviceChip(member, suffix) {
    const data = member.data && typeof member.data === 'object' ? member.data : { device: str(member.data) };
    const mine = member.connectionId === realtime.connection.id;
    const chip = el('span', `device${mine ? ' mine' : ''}${member.connectionLost ? ' lost' : ''}`);
    chip.dataset.lost = String(Boolean(member.connectionLost));
    chip.title = member.connectionLost
      ? `connection ${member.connectionId} lost: still shown for its grace window`
      : `connection ${member.connectionId}`;
    chip.append(icon(str(data.model) ? 'agent' : /phone|mobile|ios|android/i.test(str(data.device)) ? 'phone' : 'laptop'));
    chip.append(el('span', 'device-name', deviceName(member) || 'device'));
    if (suffix) chip.append(el('span', 'device-id', `#${suffix}`));
    if (mine) chip.append(el('span', 'this-tab', 'this tab'));
    if (member.connectionLost) chip.append(el('span', 'state lost', '· connection lost'));
    else if (str(data.status)) {
      // Another client's status is text: only the page's own three give a style.
      const state = el('span', 'state', `· ${str(data.status)}`);
      if (STATUSES.includes(data.status)) state.dataset.status = data.status;
      chip.append(state);
    }
    return chip;
  }

  function renderMe() {
    const offline = realtime.connection.state !== 'connected';
    // Once the grace window is over, everyone else sees this tab as gone: say so here too.
    const gone = offline && droppedAt !== null && Date.now() - droppedAt >= grace();
    // After the drop button the client waits for Reconnect; otherwise it is trying again.
    // A connection that failed or was closed is not trying again.
    const state = realtime.connection.state;
    const how = heldOffline ? 'disconnected until you reconnect' : state === 'failed' ? 'connection failed' : state === 'closed' ? 'connection closed' : 'reconnecting';
    $('me-presence').textContent =
      busy ?? (present ? (gone ? `offline to others · ${how}` : offline ? `present to others · ${how}` : 'present') : 'not present');
    $('me-presence').className = `badge${present && !gone ? ' present' : ''}${gone ? ' gone' : ''}`;
    const unusable = Boolean(channelProblem);
    $('enter').disabled = present || unusable;
    $('leave').disabled = !present || unusable;
    $('drop').disabled = offline || unusable;
    $('new-tab').disabled = unusable;
    for (const b of $('status').querySelectorAll('button')) {
      b.setAttribute('aria-pressed', String(b.dataset.status === status));
      b.disabled = unusable;
    }
  }

  // ---- the event log -------------------------------------------------------------------------

  /** A line of the log: `parts` are text, and names (isolated: see `bdi`). */
  function log(kind, ...parts) {
    const li = el('li');
    const text = el('span');
    text.append(...parts);
    li.append(el('time', '', new Date().toLocaleTimeString()), el('span', `kind ${kind}`, kind), text);
    $('log').prepend(li);
    while ($('log').children.length > 200) $('log').lastChild.remove();
  }

  // The devices heard, by client: clientId → (connectionId → device name). A device is named by
  // its name, and also by its connection while the same name is on another (the same tab on an
  // old connection and a new one, after the hub restarted).
  const heard = new Map();
  const hear = (m) => (heard.get(m.clientId) ?? heard.set(m.clientId, new Map()).get(m.clientId)).set(m.connectionId, deviceName(m));
  const forget = (m) => {
    const devices = heard.get(m.clientId);
    devices?.delete(m.connectionId);
    if (devices?.size === 0) heard.delete(m.clientId);
  };
  /** The other connections this member's client has a device of the same name on. */
  const twinsOf = (m) => [...(heard.get(m.clientId) ?? [])].filter(([id, name]) => id !== m.connectionId && name === deviceName(m)).map(([id]) => id);
  // A channel no longer attached dropped its members without a leave for each.
  channel.on(['detached', 'failed'], () => heard.clear());

  const deviceOf = (m) => {
    const twins = m ? twinsOf(m) : [];
    return bdi(`${(m && deviceName(m)) || 'a device'}${twins.length ? ` #${idPrefix(m.connectionId, twins)}` : ''}`);
  };
  const who = (id) => bdi(id);
  /** This page's own user, while this tab is present on a live connection: not offline, nor
   * gone from a device of this tab's name, whatever a list made anew says for a moment. */
  const stillHere = (id) => id === clientId && present && realtime.connection.state === 'connected';
  const REASONS = { timeout: 'connection lost', closed: 'tab closed', detached: 'detached', failed: 'connection failed', revoked: 'access revoked' };

  // Members listed when this page first attached are not news; those a later list brings (after
  // this page was away, or the hub restarted) are, as are those it no longer has.
  // If that first list cannot be had, the one after the next attach is the first.
  let firstList = true;
  const firstGet = () => presence.get().then(() => (firstList = false), () => channel.once('attached', firstGet));
  firstGet();
  // After the hub restarted, each device comes back on a new connection, and a fresh list
  // brings the new one and drops the old one, in either order. Where the same device is listed
  // on both, that is not news: neither its coming nor its going is said. This tab's own going
  // is not either (this tab is here), nor its coming back, nor its user going offline.
  /** This tab's old connection was dropped from a fresh list, unsaid: its enter on the new one
   * is not news either. */
  let ownReturnOwed = false;
  /** This page's user was dropped from a fresh list, unsaid: their coming online is not news. */
  let ownOnlineOwed = false;
  const listening = presence.subscribe((m) => {
    const mine = m.connectionId === realtime.connection.id;
    const twins = twinsOf(m);
    const named = deviceOf(m);
    if (m.action === 'leave') forget(m);
    else hear(m);
    if (m.action === 'enter') {
      if (!(mine && ownReturnOwed)) log('enter', who(m.clientId), ' entered on ', named);
      if (mine) ownReturnOwed = false;
    }
    if (m.action === 'present' && !firstList && !mine && !twins.length) {
      log('enter', who(m.clientId), ' is here on ', named, ' — listed after a resync');
    }
    if (m.action === 'update') log('update', who(m.clientId), ' is ', bdi(str(m.data?.status) || 'updated'), ' on ', named);
    if (m.action === 'leave') {
      if (Number.isFinite(m.timestamp)) leftAt.set(m.clientId, m.timestamp);
      // A leave with no id is this page's own inference: its member was not in a fresh list.
      const inferred = !m.id;
      const thisTab = inferred && stillHere(m.clientId) && deviceName(m) === device;
      // This tab is to enter again on its new connection, unless it has already.
      if (thisTab && !twins.length) ownReturnOwed = true;
      if (!(inferred && (twins.length || thisTab))) {
        // The hub's reason is in the extras of the leaves it makes (their ids start with `!`).
        const hub = m.id?.startsWith('!') ? REASONS[m.extras?.reason] : undefined;
        const why = hub || str(m.data?.reason) || (m.id ? 'left' : 'no longer listed after a resync');
        log('leave', who(m.clientId), ' left ', named, ' — ', bdi(String(why)));
      }
    }
    render();
  });
  const listeningClients = presence.subscribeClients((change) => {
    const id = who(change.clientId);
    if (change.action === 'online') {
      if (!(change.clientId === clientId && ownOnlineOwed)) log('online', id, change.initial ? ' is online' : ' came online');
      if (change.clientId === clientId) ownOnlineOwed = false;
    } else if (change.action === 'offline') {
      wentOffline.set(change.clientId, ++offlines);
      // Only with the leave that made it: not when this page stopped hearing the channel (its
      // connection closed, as a page in the back-forward cache closes it, or the channel
      // failed), as no one left.
      if (change.leave && stillHere(change.clientId)) ownOnlineOwed = true;
      else if (change.leave) log('offline', id, ' is offline on all devices');
    }
    // A connection already lost (or back) when this page attached is not news: its chip says so.
    else if (!change.initial) {
      // Which of the user's devices: the event names its connection.
      const named = deviceOf(change.devices.find((d) => d.connectionId === change.connectionId));
      if (change.action === 'connectionLost') log('lost', id, ' lost the connection on ', named, ': still shown for its grace window');
      else log('back', id, "'s connection on ", named, ' is back');
    }
    render();
  });

  // The same refusal as enter()'s, reported once there.
  listening.catch(() => {});
  listeningClients.catch(() => {});

  // While disconnected: when the client tries again, counted down.
  let countdown;
  function showState(state, retryAt) {
    clearTimeout(countdown);
    const left = Math.ceil((retryAt - Date.now()) / 1000);
    $('connection-state').textContent = left > 0 ? `${state} · retrying in ${left} s` : state;
    if (left > 0) countdown = setTimeout(() => showState(state, retryAt), 1000);
  }

  let graceTimer;
  let wasConnected = false;
  // The state last said (read out, and logged): an outage is said once, and again only when it
  // becomes something else (suspended, failed), not at every try (connecting, disconnected).
  let lastSaid = null;
  realtime.connection.on((change) => {
    $('connection').dataset.state = change.current;
    const connected = change.current === 'connected';
    // Offline, the roster is what this page last knew: shown as such, and so is this tab.
    $('users').classList.toggle('stale', !connected);
    if (connected) {
      $('grace').textContent = seconds(grace());
      droppedAt = null;
      heldOffline = false;
      clearTimeout(graceTimer);
    } else if (droppedAt === null && wasConnected) {
      droppedAt = Date.now();
      graceTimer = setTimeout(renderMe, grace() + 50);
    }
    renderMe();
    // The roster's placeholder says whether the list can come yet (a draw waits for the channel).
    renderEmpty();
    showState(change.current, Date.now() + (change.retryIn ?? 0));
    const news =
      connected || lastSaid === null || lastSaid === 'connected' || (change.current !== 'connecting' && change.current !== lastSaid);
    if (news) {
      lastSaid = change.current;
      // The countdown is not read out every second.
      $('connection-said').textContent = `Connection ${change.current}`;
      const retry = change.retryIn ? `: trying again in ${Math.ceil(change.retryIn / 1000)} s` : '';
      // Also before it ever connected, when there is a reason: a token endpoint the browser
      // could not reach (80019), a hub that is not there, is said rather than left to guess.
      if (['disconnected', 'suspended'].includes(change.current) && (wasConnected || change.reason)) {
        log('network', `${change.current}${change.reason ? ` (${change.reason.message})` : ''}${retry}`);
      } else if (connected && wasConnected) {
        log('network', 'connected again');
      }
    }
    wasConnected ||= connected;
    $('reconnect').hidden = !['disconnected', 'suspended', 'closed'].includes(change.current);
    if (change.current === 'failed') refused(change.reason);
    render();
  });

  /** The hub refused this page's connection: say why, and what would let it in. */
  function refused(reason) {
    const credentials = Math.floor((reason?.code ?? 0) / 100) === 401;
    nameRefused = reason?.code === 40012;
    channelProblem = credentials
      ? `This hub checks credentials (it runs with keys), and this page has none: ${reason.message} (error ${reason.code}). ` +
        'Run the hub without ROLLCALL_KEYS to try the demo, or open this page with &authUrl= naming your token endpoint.'
      : `The hub refused this page's connection: ${reason?.message ?? 'no reason given'} (error ${reason?.code ?? 'unknown'}).`;
    renderEmpty();
    renderMe();
  }
  channel.on('attached', render);

  // ---- controls ------------------------------------------------------------------------------

  // A button that disables itself hands the keyboard focus to the one that undoes it; if what
  // it started fails, that one is disabled in turn, and the focus goes to one still usable.
  $('enter').addEventListener('click', () => {
    enter().catch((error) => {
      report(error);
      keepFocus($('leave'));
    });
    $('leave').focus();
  });
  $('leave').addEventListener('click', () => {
    leave().catch((error) => {
      report(error);
      keepFocus($('enter'));
    });
    $('enter').focus();
  });
  // Back to the form, here, with everything as typed (name, device, channel and the URL's
  // settings) and the refused field to put right.
  $('channel-problem-link').addEventListener('click', () => {
    realtime.close();
    for (const id of ['app', 'where', 'connection']) $(id).hidden = true;
    showJoin([nameRefused ? 'clientId' : 'channel', channelProblem]);
  });
  function keepFocus(given) {
    const now = document.activeElement;
    // Unless the user has moved it meanwhile.
    if (now && now !== given && now !== document.body) return;
    if (now === given && !given.disabled) return;
    const usable = ['enter', 'leave', 'channel-problem-link', 'as-other'].map($).find((c) => !c.disabled && c.getClientRects().length > 0);
    usable?.focus();
  }
  $('status').addEventListener('click', async (event) => {
    const button = event.target.closest('button[data-status]');
    // The status it has already: nothing to tell anyone.
    if (!button || button.dataset.status === status) return;
    status = button.dataset.status;
    renderMe();
    if (present) await presence.update(myData()).catch(report);
  });
  $('new-tab').addEventListener('click', () => {
    const next = new URLSearchParams(params);
    next.delete('device');
    // Without the opener: a tab opened by another starts with a copy of its sessionStorage,
    // and would take its tab number.
    window.open(`?${next}`, '_blank', 'noopener');
  });
  $('drop').addEventListener('click', () => {
    heldOffline = true;
    // Said before the drop: the state change it makes is logged as it happens, inside
    // simulateDrop(), and the cause comes before its effect.
    log('network', 'simulated drop: others keep seeing ', bdi(device), ` for ${seconds(grace())}`);
    realtime.connection.simulateDrop();
    $('reconnect').focus();
  });
  // It hides itself as the connection starts: the keyboard focus goes to what undoes it, once
  // that is usable (after this page has redrawn).
  let focusDropWhenBack = false;
  realtime.connection.on('connected', () => {
    if (focusDropWhenBack) setTimeout(() => $('drop').focus(), 0);
    focusDropWhenBack = false;
  });
  $('reconnect').addEventListener('click', () => {
    focusDropWhenBack = true;
    // What comes of it is said, whatever was said last.
    lastSaid = null;
    realtime.connect();
  });

  function report(error) {
    log('error', `${error.message} (error ${error.code ?? 'unknown'})`);
    // A refused connection is said by `refused`, not blamed on the channel.
    if (realtime.connection.state === 'failed') return;
    if (error.code === 40010 || channel.state === 'failed') {
      channelProblem = `This channel cannot be joined: ${error.message}.`;
      renderEmpty();
      renderMe();
    }
  }

  renderMe();
  enter().catch(report);
}

// ---- helpers -----------------------------------------------------------------------------------

/** Another client's data as text: a string or a number as it is, anything else as nothing (an
 * object whose `toString` throws must not stop the page drawing its list). */
const str = (v) => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '');

/** What a member calls its device: its data's `device` or `model`, or its data if that is text. */
const deviceName = (m) => (m.data && typeof m.data === 'object' ? str(m.data.device) || str(m.data.model) : str(m.data));

/** Every device of a user is in its grace window (its connection lost): the user is
 * reconnecting, not online. */
const allLost = (devices) => devices.length > 0 && devices.every((d) => d.connectionLost);

/** As much of a connection id as tells it apart from `others` (4 characters at least). */
function idPrefix(id, others) {
  let n = 4;
  while (n < id.length && others.some((o) => o.slice(0, n) === id.slice(0, n))) n++;
  return id.slice(0, n);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const ICONS = {
  laptop: 'M3 5h18v11H3zM1 18h22v2H1z',
  phone: 'M7 2h10v20H7zM11 18h2v2h-2z',
  agent: 'M9 2h6v3H9zM4 6h16v12H4zM8 10h2v2H8zM14 10h2v2h-2zM8 20h8v2H8z',
};

/** A small device icon (SVG: no emoji font is needed). */
function icon(kind) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'icon');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', ICONS[kind]);
  path.setAttribute('fill-rule', 'evenodd');
  svg.append(path);
  return svg;
}

/** Text shown isolated from what is around it: a name's right-to-left letters or direction
 * controls cannot reorder the rest of its line. */
function bdi(text) {
  return el('bdi', '', text);
}

/** The first character as a reader sees it (an emoji, a letter and its accent): not half of one. */
function firstOf(text) {
  const first = typeof Intl.Segmenter === 'function' ? new Intl.Segmenter().segment(text)[Symbol.iterator]().next().value?.segment : Array.from(text)[0];
  return first ?? '';
}

function initials(name) {
  const parts = name.replace(new RegExp(BIDI, 'gu'), '').split(/[\s._-]+/).filter(Boolean);
  return ((parts[0] ? firstOf(parts[0]) : '?') + (parts[1] ? firstOf(parts[1]) : '')).toUpperCase();
}

function colour(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  // Dark enough for white initials to read (4.5:1 or more whatever the hue).
  return `hsl(${hash % 360} 50% 32%)`;
}

/** A name such as "carol-42", one that `taken` does not refuse if there is one. */
function randomName(taken) {
  const names = ['bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy', 'mallory'];
  const all = names.length * 90;
  const start = Math.floor(Math.random() * all);
  for (let i = 0; i < all; i++) {
    const k = (start + i) % all;
    const name = `${names[k % names.length]}-${Math.floor(k / names.length) + 10}`;
    if (!taken(name)) return name;
  }
  return `guest-${Date.now().toString(36)}`;
}
