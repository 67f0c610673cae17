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

/** Why a name cannot be used, or null. The same rules as the hub's. */
const nameProblem = (name) =>
  !name
    ? 'Your name needs more than spaces.'
    : name === '*'
      ? 'The name * is reserved (it means anyone).'
      : bytes(name) > 512
        ? 'Your name is too long (512 bytes at most).'
        : CONTROL.test(name)
          ? 'Your name cannot hold control characters (tabs, line breaks).'
          : null;

/** Why a channel name cannot be used, or null. The same rules as the hub's. */
const channelNameProblem = (name) =>
  name.startsWith('[')
    ? 'A channel name cannot start with [.'
    : bytes(name) > 1024
      ? 'A channel name is at most 1024 bytes.'
      : CONTROL.test(name)
        ? 'A channel name cannot hold control characters.'
        : null;

if (!clientId || nameProblem(clientId)) {
  showJoin(clientId && nameProblem(clientId));
} else {
  try {
    // The page's own name for this tab first (it may wait for a lock, briefly).
    start(params.get('device')?.trim() || (await tabName()));
  } catch (error) {
    $('app').hidden = true;
    showJoin(`This page could not start: ${error.message}`);
  }
}

function showJoin(why) {
  $('join').hidden = false;
  const form = $('join-form');
  // What the URL asked for, refused or not, to be put right rather than typed again.
  for (const key of ['clientId', 'device', 'channel']) form[key].value = params.get(key) ?? '';
  $('join-error').textContent = why ?? '';
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const name = nameProblem(form.clientId.value.trim());
    const where = channelNameProblem(form.channel.value.trim());
    const problem = name ? ['clientId', name] : where ? ['channel', where] : null;
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
  form.clientId.focus();
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
  // As the hub applies it: at least 1 s, at most an hour.
  const grace = Math.min(Math.max(transportParams.remainPresentFor ?? 15_000, 1_000), 3_600_000);
  const graceText = `${grace / 1000} s`;
  $('grace').textContent = graceText;

  const authUrl = params.get('authUrl') || undefined;
  const realtime = new Realtime({ clientId, transportParams, authUrl });
  const channel = realtime.channels.get(channelName);
  const presence = channel.presence;
  const debug = (window.rollcall = { realtime, channel, draws: 0 }); // for the console, and for tests

  let status = 'available';
  /** Whether this tab is (or is about to be) present, and what is under way, if anything. */
  let present = false;
  let busy = null;
  /** When this tab lost its connection (others see it for `grace` more). */
  let droppedAt = null;
  /** Dropped by the button: offline until Reconnect is pressed. */
  let heldOffline = false;
  /** Why the channel cannot be used, once known. */
  let channelProblem = null;
  /** The hub refused this page's name (40012): the way back is the form. */
  let nameRefused = false;
  /** Every user seen on this page: clientId → { online, devices }. */
  const known = new Map();

  $('app').hidden = false;
  $('where').hidden = false;
  $('channel-name').textContent = channelName;
  $('me-name').textContent = clientId;
  $('me-device').textContent = device;
  $('app-title').textContent = `Who is online on ${channelName}`;
  const other = new URLSearchParams({ clientId: randomName(), channel: channelName });
  for (const [k, v] of Object.entries(transportParams)) other.set(k, v);
  if (authUrl) other.set('authUrl', authUrl);
  $('as-other').href = `?${other}`;

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
  async function render() {
    again = true;
    if (drawing) return;
    drawing = true;
    while (again) {
      again = false;
      await draw().catch(() => {});
    }
    drawing = false;
  }

  async function draw() {
    debug.draws++;
    const clients = await presence.getClients({ waitForSync: channel.state === 'attached' });
    const online = new Set(clients.map((c) => c.clientId));
    for (const c of clients) known.set(c.clientId, { online: true, devices: c.devices });
    for (const [id, entry] of known) if (!online.has(id)) known.set(id, { online: false, devices: [] });
    const order = [...known.keys()].sort((a, b) => {
      const rank = (id) => (id === clientId ? 0 : known.get(id).online ? 1 : 2);
      return rank(a) - rank(b) || a.localeCompare(b);
    });
    $('users').replaceChildren(...order.map((id) => userRow(id, known.get(id))));
    renderEmpty();
    const devices = clients.reduce((n, c) => n + c.devices.length, 0);
    const last = realtime.connection.state === 'connected' ? '' : 'last known: ';
    $('summary').textContent = `${last}${clients.length} online · ${devices} device${devices === 1 ? '' : 's'}`;
  }

  /** What the roster says when it lists nobody, or why the channel cannot be used. */
  function renderEmpty() {
    $('channel-problem').hidden = !channelProblem;
    $('channel-problem-text').textContent = channelProblem ?? '';
    // Another channel would not help a connection the hub refused; another name may.
    $('channel-problem-link').hidden = realtime.connection.state === 'failed' && !nameRefused;
    $('channel-problem-link').textContent = nameRefused ? 'Choose another name' : 'Choose another channel';
    const back = new URLSearchParams(params);
    back.delete('clientId');
    $('channel-problem-link').href = nameRefused ? `?${back}` : './';
    const connected = realtime.connection.state === 'connected';
    $('nobody').hidden = known.size > 0 || Boolean(channelProblem);
    $('nobody').textContent = connected ? 'Nobody here yet.' : 'Not connected to the server yet: the list comes once it is.';
  }

  function userRow(id, { online, devices }) {
    const li = el('li', 'user');
    li.dataset.clientId = id;
    li.dataset.devices = String(devices.length);
    li.dataset.status = online ? 'online' : 'offline';
    if (id === clientId) li.classList.add('mine');
    const avatar = el('div', 'avatar', initials(id));
    avatar.setAttribute('aria-hidden', 'true');
    avatar.style.background = colour(id);
    avatar.append(el('span', 'dot'));
    const body = el('div');
    const head = el('div', 'user-head');
    head.append(el('span', 'user-name', id));
    const agent = devices.find((d) => d.data?.model);
    if (agent) head.append(el('span', 'tag agent', `agent · ${agent.data.model}`));
    if (id === clientId) head.append(el('span', 'tag you', 'you'));
    head.append(
      el('span', 'user-status', online ? `online · ${devices.length} device${devices.length === 1 ? '' : 's'}` : 'offline on all devices'),
    );
    const chips = el('div', 'devices');
    // In a stable order: this tab first, then by device name (tab 2 before tab 10).
    const name = (d) => String((d.data && typeof d.data === 'object' ? d.data.device || d.data.model : d.data) ?? '');
    const ordered = [...devices].sort(
      (a, b) =>
        (b.connectionId === realtime.connection.id) - (a.connectionId === realtime.connection.id) ||
        name(a).localeCompare(name(b), undefined, { numeric: true }) ||
        a.connectionId.localeCompare(b.connectionId),
    );
    for (const d of ordered) chips.append(deviceChip(d));
    body.append(head, chips);
    li.append(avatar, body);
    return li;
  }

  function deviceChip(member) {
    const data = member.data && typeof member.data === 'object' ? member.data : { device: String(member.data ?? '') };
    const mine = member.connectionId === realtime.connection.id;
    const chip = el('span', `device${mine ? ' mine' : ''}${member.connectionLost ? ' lost' : ''}`);
    chip.dataset.lost = String(Boolean(member.connectionLost));
    chip.title = member.connectionLost
      ? `connection ${member.connectionId} lost: still shown for its grace window`
      : `connection ${member.connectionId}`;
    chip.append(icon(data.model ? 'agent' : /phone|mobile|ios|android/i.test(data.device ?? '') ? 'phone' : 'laptop'));
    chip.append(el('span', '', data.device || data.model || 'device'));
    if (member.connectionLost) chip.append(el('span', 'state lost', '· connection lost'));
    else if (data.status) chip.append(el('span', `state ${data.status}`, `· ${data.status}`));
    return chip;
  }

  function renderMe() {
    const offline = realtime.connection.state !== 'connected';
    // Once the grace window is over, everyone else sees this tab as gone: say so here too.
    const gone = offline && droppedAt !== null && Date.now() - droppedAt >= grace;
    // After the drop button the client waits for Reconnect; otherwise it is trying again.
    const how = heldOffline ? 'until you reconnect' : 'reconnecting';
    $('me-presence').textContent =
      busy ?? (present ? (gone ? `offline to others · ${how}` : offline ? `present · ${how}` : 'present') : 'not present');
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

  function log(kind, text) {
    const li = el('li');
    li.append(el('time', '', new Date().toLocaleTimeString()), el('span', `kind ${kind}`, kind), el('span', '', text));
    $('log').prepend(li);
    while ($('log').children.length > 200) $('log').lastChild.remove();
  }

  const deviceOf = (m) => (m.data && typeof m.data === 'object' ? m.data.device || m.data.model : m.data) || 'a device';
  const REASONS = { timeout: 'connection lost', closed: 'tab closed', detached: 'detached', failed: 'connection failed', revoked: 'access revoked' };

  // Members listed when this page first attached are not news; those a later list brings (after
  // this page was away, or the hub restarted) are, as are those it no longer has.
  let firstList = true;
  presence.get().then(() => (firstList = false), () => {});
  const listening = presence.subscribe((m) => {
    if (m.action === 'enter') log('enter', `${m.clientId} entered on ${deviceOf(m)}`);
    if (m.action === 'present' && !firstList) log('enter', `${m.clientId} is here on ${deviceOf(m)} — listed after a resync`);
    if (m.action === 'update') log('update', `${m.clientId} is ${m.data?.status ?? 'updated'} on ${deviceOf(m)}`);
    if (m.action === 'leave') {
      // The hub's reason is in the extras of the leaves it makes (their ids start with `!`).
      const hub = m.id?.startsWith('!') ? REASONS[m.extras?.reason] : undefined;
      // A leave with no id is this page's own inference: its member was not in a fresh list.
      const why = hub || (m.data && typeof m.data === 'object' && m.data.reason) || (m.id ? 'left' : 'no longer listed after a resync');
      log('leave', `${m.clientId} left ${deviceOf(m)} — ${why}`);
    }
    render();
  });
  const listeningClients = presence.subscribeClients((change) => {
    if (change.action === 'online') log('online', `${change.clientId} ${change.initial ? 'is online' : 'came online'}`);
    else if (change.action === 'offline') log('offline', `${change.clientId} is offline on all devices`);
    else if (change.action === 'connectionLost') log('lost', `${change.clientId} lost a connection: still shown for its grace window`);
    else log('back', `${change.clientId}'s connection is back`);
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
  realtime.connection.on((change) => {
    $('connection').dataset.state = change.current;
    const connected = change.current === 'connected';
    // Offline, the roster is what this page last knew: shown as such, and so is this tab.
    $('users').classList.toggle('stale', !connected);
    if (connected) {
      droppedAt = null;
      heldOffline = false;
      clearTimeout(graceTimer);
    } else if (droppedAt === null && wasConnected) {
      droppedAt = Date.now();
      graceTimer = setTimeout(renderMe, grace + 50);
    }
    renderMe();
    // The roster's placeholder says whether the list can come yet (a draw waits for the channel).
    renderEmpty();
    showState(change.current, Date.now() + (change.retryIn ?? 0));
    // Said once per change (the countdown is not read out every second).
    $('connection-said').textContent = `Connection ${change.current}`;
    const retry = change.retryIn ? `: trying again in ${Math.ceil(change.retryIn / 1000)} s` : '';
    if (['disconnected', 'suspended'].includes(change.current) && wasConnected) {
      log('network', `${change.current}${change.reason ? ` (${change.reason.message})` : ''}${retry}`);
    } else if (connected && wasConnected) {
      log('network', 'connected again');
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

  // A button that disables itself hands the keyboard focus to the one that undoes it.
  $('enter').addEventListener('click', () => {
    enter().catch(report);
    $('leave').focus();
  });
  $('leave').addEventListener('click', () => {
    leave().catch(report);
    $('enter').focus();
  });
  $('status').addEventListener('click', async (event) => {
    const button = event.target.closest('button[data-status]');
    if (!button) return;
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
    realtime.connection.simulateDrop();
    log('network', `network dropped: others keep seeing ${device} for ${graceText}`);
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

function initials(name) {
  const parts = name.split(/[\s._-]+/).filter(Boolean);
  return ((parts[0]?.[0] ?? '?') + (parts[1]?.[0] ?? '')).toUpperCase();
}

function colour(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  // Dark enough for white initials to read (4.5:1 or more whatever the hue).
  return `hsl(${hash % 360} 50% 32%)`;
}

function randomName() {
  const names = ['bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy', 'mallory'];
  return `${names[Math.floor(Math.random() * names.length)]}-${Math.floor(Math.random() * 90 + 10)}`;
}
