// An AI agent beside the demo page, written as an app would write one: it enters presence
// with its model, watches one user, and pauses its work while that user is offline on every
// device, resuming when they come back. With --state, it keeps its connection's recovery key in
// a file, so that a restart after a crash or a `kill -9`, within its grace window, is invisible to
// others; a deploy starts the new instance before stopping the old one. SIGTERM and Ctrl-C are a
// shutdown: it leaves.
//
//   node examples/agent.mjs --user alice [--channel lobby] [--url ws://localhost:8080]
//                           [--name weather-agent] [--model gpt-4] [--state agent.key]

import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { Realtime } from 'rollcall';

const { values: args } = parseArgs({
  options: {
    user: { type: 'string', default: 'alice' },
    channel: { type: 'string', default: 'lobby' },
    url: { type: 'string', default: 'ws://localhost:8080' },
    name: { type: 'string', default: 'weather-agent' },
    model: { type: 'string', default: 'gpt-4' },
    state: { type: 'string' },
  },
});

const say = (line) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);

const readKey = (file) => {
  try {
    return readFileSync(file, 'utf8') || undefined;
  } catch {
    return undefined; // the first run
  }
};
const recover = args.state ? readKey(args.state) : undefined;
const ably = new Realtime({ clientId: args.name, url: args.url, recover });
let kept; // the key this process last wrote
let gaveUp = false; // another instance took the connection over: the file is its
if (args.state) {
  if (recover) {
    const readable = (() => {
      try {
        return typeof JSON.parse(recover).connectionKey === 'string';
      } catch {
        return false;
      }
    })();
    ably.connection.once('connected', (change) => {
      if (!readable) say('the key file holds no recovery key: a new connection');
      else if (change.reason) say(`could not recover (${change.reason.message}): a new connection`);
      else say('recovered the connection');
    });
  }
  // Kept again on every connect (each recovery gives the connection a new key, and a hub that
  // restarted a new connection), whole or not at all (written aside, then renamed), and only
  // while the file is this process's: another instance that took the connection over (a
  // deploy) keeps its own key there. This one, told so as it gets a connection of its own,
  // leaves the file alone from then on, whatever the file holds at that moment (the other may
  // be writing it).
  ably.connection.on('connected', (change) => {
    if (/recovered by another client/.test(change.reason?.message ?? '')) gaveUp = true;
    if (gaveUp || (kept !== undefined && readKey(args.state) !== kept)) return;
    kept = ably.connection.createRecoveryKey() ?? '';
    const aside = `${args.state}.${process.pid}.tmp`;
    writeFileSync(aside, kept);
    renameSync(aside, args.state);
  });
}
const channel = ably.channels.get(args.channel);

let work; // the agent's work loop, once started
let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  clearInterval(work);
  // A leave that cannot be sent (the hub is down) is not waited for long.
  const leave = channel.presence.leave({ reason: 'agent shut down' }).catch(() => {});
  await Promise.race([leave, new Promise((r) => setTimeout(r, 2000))]);
  const ours = !gaveUp;
  ably.close();
  // A closed connection cannot be recovered. The file is removed only if it and the connection
  // are still this process's.
  if (args.state && ours && readKey(args.state) === kept) rmSync(args.state, { force: true });
  say('left and closed');
  process.exit(0);
}
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
say(`${args.name} connecting to ${args.url}`);

// The connection, said as it changes: while it is down, what the agent knows of the user may be
// out of date, and it does no work.
let entered = false;
ably.connection.on(['disconnected', 'suspended', 'connected'], (change) => {
  const why = change.reason ? ` (${change.reason.message})` : '';
  const retry = change.retryIn ? `, trying again in ${Math.ceil(change.retryIn / 1000)} s` : '';
  if (change.current === 'connected') {
    if (entered) say('connected again');
  } else if (!entered) say(`cannot reach ${args.url}${why}${retry}`);
  else say(`connection ${change.current}${why}${retry}: pausing until it is back`);
});

// A connection that fails (refused credentials, say) does not come back: the agent exits for its
// supervisor to start it again, rather than sit idle, reporting the user offline.
ably.connection.on(['failed', 'closed'], (change) => {
  if (stopping) return;
  say(`connection ${change.current}${change.reason ? ` (${change.reason.message})` : ''}: exiting`);
  process.exit(1);
});

// Enter presence with metadata about the agent (stopping meanwhile ends it all).
await channel.presence.enter({ model: args.model, status: 'watching', watching: args.user }).catch((error) => {
  if (stopping) return;
  say(`could not enter ${args.channel}: ${error.message} (error ${error.code})`);
  process.exit(1);
});
if (stopping) await new Promise(() => {}); // stop() exits
entered = true;
say(`${args.name} is present on ${args.channel} (model ${args.model}), watching ${args.user}`);

let working = false;
let steps = 0;
work = setInterval(() => {
  if (working && ably.connection.state === 'connected') steps += 1;
}, 1000);

function setWorking(online, why) {
  if (online === working) return;
  working = online;
  if (online) say(`${args.user} is online (${why}): working`);
  else say(`${args.user} is offline on all devices (${why}): pausing work after ${steps} steps`);
}

// The user is online while any of their devices is present. An online learned as the agent
// starts names only the first device: the list read below says how many there are.
let listed = false;
await channel.presence.subscribeClients(['online', 'offline'], (change) => {
  if (change.clientId !== args.user || (change.initial && !listed)) return;
  const devices = change.initial ? 'listed after a resync' : '1 device';
  // Offline says why the last device went: 'left', or 'timeout' when it dropped and did not
  // come back within its grace window.
  // No reason: the device was not in a fresh list of members (a resync), or the channel went.
  setWorking(change.action === 'online', change.action === 'online' ? devices : (change.reason ?? 'no longer listed'));
});
// Devices come and go; only the last one leaving matters.
await channel.presence.subscribe('leave', (message) => {
  if (message.clientId !== args.user) return;
  const remaining = channel.presence.isOnline(args.user);
  if (remaining) say(`${args.user} left one device; still online elsewhere`);
});

const clients = await channel.presence.getClients();
listed = true;
const target = clients.find((c) => c.clientId === args.user);
if (target) setWorking(true, `${target.devices.length} device${target.devices.length === 1 ? '' : 's'}`);
else say(`waiting for ${args.user} to come online`);

