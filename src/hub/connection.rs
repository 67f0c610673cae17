//! A connection as the hub sees it: its identity and parameters (read from the connect query),
//! its transport while it has one, and its liveness bookkeeping.

use std::collections::VecDeque;
use std::sync::Arc;

use super::auth::Capability;
use super::config::{
    liveness_margin, HubConfig, MAX_HEARTBEAT_INTERVAL, MAX_REMAIN_PRESENT_FOR,
    MIN_HEARTBEAT_INTERVAL, MIN_REMAIN_PRESENT_FOR,
};
use super::small::{NameMap, PairSet};
use super::{Format, Frame, TransportId};
use crate::protocol::{flags, ErrorInfo, PresenceAction, PresenceMessage};

/// What a client asks for in the query of its WebSocket URL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectParams {
    /// `key`: basic auth with an API key.
    pub key: Option<String>,
    /// `access_token`: token auth.
    pub access_token: Option<String>,
    /// `clientId`.
    pub client_id: Option<String>,
    /// `format`: `json` (default) or `msgpack`.
    pub format: Option<String>,
    /// `heartbeats`: protocol heartbeats wanted (browsers) rather than WebSocket pings.
    pub heartbeats: bool,
    /// `resume` (or `recover`): the key of the connection to resume.
    pub resume: Option<String>,
    /// Whether the key came as `recover`: a new client (a reloaded page, a restarted process)
    /// takes the connection over, rather than the same client coming back.
    pub recover: bool,
    /// `echo`: whether the client's own messages come back (presence always does).
    pub echo: bool,
    /// `remainPresentFor`, in milliseconds.
    pub remain_present_for: Option<u64>,
    /// `heartbeatInterval`, in milliseconds.
    pub heartbeat_interval: Option<u64>,
    /// `agent`: the client library; rollcall's own clients get the hub's extensions.
    pub agent: Option<String>,
    /// A parameter the hub reads that held no valid value (the connection is refused with
    /// 40000 rather than silently given the default).
    pub invalid: Option<&'static str>,
}

/// Milliseconds as a query gives them: any non-negative number (fractions dropped).
fn milliseconds(value: &str) -> Option<u64> {
    let ms: f64 = value.trim().parse().ok()?;
    (ms.is_finite() && ms >= 0.0).then_some(ms as u64)
}

impl ConnectParams {
    /// Whether the client is rollcall's own (its `agent` says so): it keeps its connection
    /// alive itself, and hears when members' connections are lost and back.
    pub(crate) fn is_rollcall_client(&self) -> bool {
        self.agent
            .as_deref()
            .is_some_and(|a| a.contains("rollcall"))
    }

    /// Reads the query part of a connect URL (with or without the leading `?`).
    pub fn parse(query: &str) -> Self {
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut params = Self {
            echo: true,
            ..Self::default()
        };
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.into_owned();
            match &*name {
                "key" => params.key = Some(value),
                "access_token" | "accessToken" => params.access_token = Some(value),
                "clientId" => params.client_id = Some(value),
                "format" => params.format = Some(value),
                "heartbeats" => params.heartbeats = value == "true",
                "resume" | "recover" => {
                    params.recover = name == "recover";
                    params.resume = Some(value);
                }
                "echo" => params.echo = value != "false",
                "remainPresentFor" => {
                    params.remain_present_for = milliseconds(&value);
                    if params.remain_present_for.is_none() {
                        params.invalid = Some("remainPresentFor");
                    }
                }
                "heartbeatInterval" => {
                    params.heartbeat_interval = milliseconds(&value);
                    if params.heartbeat_interval.is_none() {
                        params.invalid = Some("heartbeatInterval");
                    }
                }
                "agent" => params.agent = Some(value),
                _ => {}
            }
        }
        params
    }

    /// `remainPresentFor` within its bounds, or the hub's default.
    pub(crate) fn remain_present_for(&self, config: &HubConfig) -> u64 {
        self.remain_present_for
            .unwrap_or(config.remain_present_for)
            .clamp(MIN_REMAIN_PRESENT_FOR, MAX_REMAIN_PRESENT_FOR)
    }

    /// `heartbeatInterval` within its bounds, or the hub's default.
    pub(crate) fn heartbeat_interval(&self, config: &HubConfig) -> u64 {
        self.heartbeat_interval
            .unwrap_or(config.heartbeat_interval)
            .clamp(MIN_HEARTBEAT_INTERVAL, MAX_HEARTBEAT_INTERVAL)
    }
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Life {
    /// It has a transport.
    Live,
    /// Its transport dropped at this time; its members stay until `remainPresentFor` is over and
    /// its state until `connectionStateTtl` is.
    Dropped { at: u64 },
}

/// The token a connection authenticated with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token {
    /// When it expires, in milliseconds since the epoch.
    pub(crate) expires: u64,
    /// When it was issued, if it says.
    pub(crate) issued: Option<u64>,
    /// Whether the hub asked the client to renew it (`AUTH`).
    pub(crate) renewal_asked: bool,
}

impl Token {
    /// When to ask for a renewal: 30 s before expiry, or a third of the token's life before it
    /// for short-lived tokens.
    pub(crate) fn renew_at(&self) -> u64 {
        let life = self
            .issued
            .map_or(90_000, |i| self.expires.saturating_sub(i));
        self.expires.saturating_sub((life / 3).min(30_000))
    }
}

/// A token bucket of inbound frames: `rate` per second, bursts up to `burst`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RateLimit {
    /// Thousandths of a frame available; below zero, what the connection owes (frames taken on
    /// credit, see [`RateLimit::charge`]).
    allowance: i64,
    at: u64,
    /// Thousandths of frames refused lately: each refusal adds a frame, and time takes away
    /// the rate's worth, so that only a connection that keeps sending well beyond the rate
    /// reaches two seconds' worth (whether its frames are taken together, as in one turn of a
    /// Node host, or each at its own time, as a Durable Object takes them).
    refused: i64,
}

impl RateLimit {
    pub(crate) fn new(now: u64, burst: u32) -> Self {
        Self {
            allowance: i64::from(burst) * 1_000,
            at: now,
            refused: 0,
        }
    }

    fn refill(&mut self, now: u64, rate: u32, burst: u32) {
        let elapsed = i64::try_from(now.saturating_sub(self.at)).unwrap_or(i64::MAX);
        self.at = now;
        let earned = elapsed.saturating_mul(i64::from(rate));
        self.allowance = self
            .allowance
            .saturating_add(earned)
            .min(i64::from(burst) * 1_000);
        self.refused = self.refused.saturating_sub(earned).max(0);
    }

    /// Whether it refused more than two seconds' worth of frames lately: a flood.
    pub(crate) fn flooded(&self, rate: u32) -> bool {
        self.refused > i64::from(rate) * 2_000
    }

    /// Takes `cost` frames' worth from the budget, if it holds that much.
    pub(crate) fn admit(&mut self, now: u64, rate: u32, burst: u32, cost: u32) -> bool {
        let taken = self.take(now, rate, burst, i64::from(cost.max(1)) * 1_000);
        if !taken {
            self.refused = self.refused.saturating_add(1_000);
        }
        taken
    }

    /// Takes `milli` thousandths of a frame from the budget, if it holds that much.
    fn take(&mut self, now: u64, rate: u32, burst: u32, milli: i64) -> bool {
        self.refill(now, rate, burst);
        let taken = self.allowance >= milli;
        if taken {
            self.allowance -= milli;
        }
        taken
    }

    /// Takes what `items` presence items sent one in a frame cost when they are members entered
    /// again: what they would in one frame together, a fiftieth of a frame each (see
    /// `Hub::admit`).
    /// Not counted as refused when it is not: the frame is then taken as any other is.
    pub(crate) fn admit_bundled(&mut self, now: u64, rate: u32, burst: u32, items: u32) -> bool {
        self.take(now, rate, burst, i64::from(items) * 1_000 / 50)
    }

    /// Whether the budget holds anything (nothing is owed), refilled to `now`.
    pub(crate) fn in_credit(&mut self, now: u64, rate: u32, burst: u32) -> bool {
        self.refill(now, rate, burst);
        self.allowance >= 0
    }

    /// Whether the budget would be whole at `now`: nothing taken that time has not given back.
    pub(crate) fn whole(&self, now: u64, rate: u32, burst: u32) -> bool {
        let elapsed = i64::try_from(now.saturating_sub(self.at)).unwrap_or(i64::MAX);
        self.allowance
            .saturating_add(elapsed.saturating_mul(i64::from(rate)))
            >= i64::from(burst) * 1_000
    }

    /// Takes `cost` units, into debt if it must.
    pub(crate) fn spend(&mut self, now: u64, rate: u32, burst: u32, cost: u32) {
        self.refill(now, rate, burst);
        self.allowance = self.allowance.saturating_sub(i64::from(cost) * 1_000);
    }

    /// Takes a frame's worth on credit, for frames that must be answered (a client waits on
    /// them): `false`, taking nothing, while the connection owes a second's worth.
    pub(crate) fn charge(&mut self, now: u64, rate: u32, burst: u32) -> bool {
        self.refill(now, rate, burst);
        let taken = self.allowance - 1_000 >= Self::credit(rate);
        if taken {
            self.allowance -= 1_000;
        }
        taken
    }

    /// When [`RateLimit::charge`] takes a frame again.
    pub(crate) fn charge_at(&self, rate: u32) -> u64 {
        let short = Self::credit(rate) + 1_000 - self.allowance;
        let rate = i64::from(rate.max(1));
        // Rounded up: by then the budget has refilled by at least what it lacks.
        let wait = u64::try_from((short + rate - 1) / rate).unwrap_or(0);
        self.at.saturating_add(wait)
    }

    /// How far below nothing `charge` may take the budget: a second's worth.
    fn credit(rate: u32) -> i64 {
        -i64::from(rate) * 1_000
    }
}

/// One channel a connection is attached to.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Attachment {
    /// The modes granted (see `protocol::flags`).
    pub(crate) modes: u64,
    /// The channel's serial when the connection was last sent the channel's members (ATTACHED
    /// and its SYNC, or a SYNC it asked for).
    pub(crate) synced_at: u64,
    /// The channel's serial when the connection last lost its transport: the frames up to it
    /// went to the old transport, those after it wait in the replay or went to the new one.
    pub(crate) dropped_at: Option<u64>,
    /// Events on the channel were lost to the client (its replay overflowed) and it has not
    /// been told: its next ATTACHED is not RESUMED.
    pub(crate) missed: bool,
    /// Held for a client that recovered the connection, which has not attached the channel
    /// again: by [`Connection::claim_by`] it does, or the attachment and its members go.
    pub(crate) unclaimed: bool,
}

impl Attachment {
    /// Whether a client that re-attaches with `ATTACH_RESUME` after a resume, saying it has
    /// every frame up to `serial`, holds the members as they are and needs no SYNC: it heard
    /// everything sent on the old transport, and a frame sent after its last SYNC proves that
    /// the SYNC (and what followed it) arrived whole. Not after events were lost to it (a
    /// replay that overflowed), however its transports came and went since. Never for a
    /// channel held for a client that recovered the connection: it has no view of it.
    pub(crate) fn holds_members_at(&self, serial: u64) -> bool {
        self.modes & flags::PRESENCE_SUBSCRIBE != 0
            && !self.missed
            && !self.unclaimed
            && self.dropped_at == Some(serial)
            && serial > self.synced_at
    }
}

/// A connection: identity, parameters, transport, attachments, members and timers.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) id: Arc<str>,
    pub(crate) key: Arc<str>,
    /// `None` for an anonymous connection, `*` for one that may act as any client.
    pub(crate) client_id: Option<Arc<str>>,
    /// What its credentials allow.
    pub(crate) capability: Capability,
    /// The token it connected with, when it used one.
    pub(crate) token: Option<Token>,
    /// The budget of frames it may send.
    pub(crate) inbound: RateLimit,
    /// Its other frames (attach, detach, heartbeats...): a budget of their own, so that
    /// re-attaching every channel at once leaves the presence budget whole.
    pub(crate) control: RateLimit,
    pub(crate) transport: Option<TransportId>,
    pub(crate) format: Format,
    pub(crate) heartbeats: bool,
    pub(crate) remain_present_for: u64,
    pub(crate) heartbeat_interval: u64,
    pub(crate) life: Life,
    /// When a frame (or a pong) last arrived.
    pub(crate) last_in: u64,
    /// When a frame (or a ping) was last sent.
    pub(crate) last_out: u64,
    /// Whether a ping went out since `last_in`.
    pub(crate) probed: bool,
    /// Whether listeners were told that it dropped (see [`LOST_NOTICE_DELAY`]), and have not
    /// yet been told that it is back.
    pub(crate) lost_told: bool,
    /// When listeners told that it dropped are to be told that it is back, once it has resumed:
    /// on the next quarter-second tick, so that a crowd that comes back within one is told in
    /// one frame (where each return was a frame to every listener, N² in all).
    pub(crate) back_notice_at: Option<u64>,
    /// After a recover: when the channels the new client has not attached again are detached
    /// (its `remainPresentFor` later), so that a page that no longer shows a channel does not
    /// stay present on it for the connection's life.
    pub(crate) claim_by: Option<u64>,
    /// Whether the client has shown that it sends heartbeats (or answers pings), so that its
    /// silence means it is gone.
    pub(crate) heartbeating: bool,
    /// Whether it wants to hear when members' connections are lost and back (rollcall clients).
    pub(crate) wants_status: bool,
    /// The `msgSerial` expected next; lower ones are resends of messages already answered.
    /// Counted in the hub's numbers (see `serial_offset`).
    pub(crate) next_serial: i64,
    /// What the hub adds to its client's `msgSerial`s: a client that recovers the connection
    /// with a recovery key made before its last messages (an `ably` client takes its serial
    /// from the key, RTN16f) numbers its messages from there, below `next_serial`, where they
    /// would be taken for resends, acknowledged and not applied. The hub counts them on from
    /// `next_serial` instead (and answers them under the client's own numbers).
    pub(crate) serial_offset: i64,
    /// Recovered: the offset is set by the client's next message with a serial.
    pub(crate) rebase_serials: bool,
    /// The last [`REFUSED_KEPT`] messages it refused, with why: a resend of one (its NACK went
    /// with a transport) is refused again, not acknowledged as done.
    pub(crate) refused: Vec<(i64, ErrorInfo)>,
    /// The host cut its last transport off for a frame larger than it reads (this many bytes):
    /// its resume fails with 40009, as the client would send the frame again (see
    /// `Hub::handle_too_large`). Not stored.
    pub(crate) cut_for_size: Option<usize>,
    pub(crate) attachments: NameMap<Attachment>,
    /// The members this connection holds: (channel, client id).
    pub(crate) members: PairSet,
    /// Where the client's own leaves were, `(msgSerial, index)` by channel and clientId, the
    /// newest last and at most [`OWN_LEAVES`] (see [`Connection::own_leave`]).
    pub(crate) own_leaves: Vec<OwnLeave>,
    /// The deadline this connection has in the hub's timer set.
    pub(crate) deadline: Option<u64>,
    /// Frames sent while it had no transport, delivered when it resumes.
    pub(crate) replay: VecDeque<Frame>,
    /// The bytes of the frames in `replay` (held to `HubConfig::replay_bytes`).
    pub(crate) replay_bytes: usize,
    /// Whether frames were lost because `replay` was full.
    pub(crate) replay_overflowed: bool,
    /// The clientId whose places (`maxConnectionsPerClient`) this connection holds, if any.
    pub(crate) counted: Option<Arc<str>>,
    /// Keys it had before it was recovered (the newest last, at most [`OLD_KEYS`]): they still
    /// recover it (a retried recover, a key kept once by a process that restarts again), and
    /// no longer resume it, so that a client it was taken from gets a connection of its own.
    pub(crate) old_keys: Vec<Arc<str>>,
    /// Re-entries of members it holds, as they are, it may send without charge: as many as it
    /// held when it last resumed (see `Hub::reentries_in`). Not stored.
    pub(crate) reentries: u32,
    /// Members it no longer holds that it may enter again one in a frame, charged as if fifty
    /// came in a frame: those its grace window ran out on before it last resumed; on a new
    /// connection whose resume failed, [`regain_credit`]. Not stored.
    pub(crate) regain: u32,
    /// Members whose grace window ran out while it was dropped: its client, resuming, enters
    /// them again (as Ably's does). Stored, as an object may be evicted before the resume.
    pub(crate) timed_out: u32,
}

/// The re-entries a new connection whose resume or recover failed may send one in a frame (a
/// hub restarted, a connection expired), charged as if they came fifty in a frame: its client
/// enters every member it had again, one in a frame (as Ably's does, RTP17i). As many as one
/// second's budget carries in frames of fifty (see `Hub::admit`).
pub(crate) fn regain_credit(config: &HubConfig) -> u32 {
    config.max_inbound_rate.saturating_mul(50)
}

/// How long a dropped connection with members waits before listeners are told it is in its
/// grace window (at most half its `remainPresentFor`): a blip, or a crowd that loses its network
/// at once and resumes, then costs them nothing, where each drop and return was a frame to every
/// listener (N² in all).
pub(crate) const LOST_NOTICE_DELAY: u64 = 2_000;

/// The ticks notices fall on, in milliseconds.
const NOTICE_TICK: u64 = 250;

/// How many of its earlier keys still recover a connection.
pub(crate) const OLD_KEYS: usize = 8;

/// A client's own leave of a member: channel, clientId, and `(msgSerial, index)`.
pub(crate) type OwnLeave = (Arc<str>, Arc<str>, (i64, u64));

/// How many refused messages a connection remembers.
pub(crate) const REFUSED_KEPT: usize = 8;

/// Adds `item` to a list that keeps its newest `at_most`, the oldest first.
fn push_newest<T>(list: &mut Vec<T>, item: T, at_most: usize) {
    if list.len() >= at_most {
        list.remove(0);
    }
    list.push(item);
}

/// How many of a connection's own leaves it remembers.
pub(crate) const OWN_LEAVES: usize = 32;

impl Connection {
    /// Where the client's own leave of this member was, if it is one of the last
    /// [`OWN_LEAVES`]: a re-entry that names an older operation comes from a client that never
    /// heard the leave's echo (it went with a transport, and the resent LEAVE was a duplicate),
    /// and must not bring the member back.
    pub(crate) fn own_leave(&self, channel: &str, client_id: &str) -> Option<(i64, u64)> {
        self.own_leaves
            .iter()
            .find(|(c, id, _)| &**c == channel && &**id == client_id)
            .map(|(_, _, at)| *at)
    }

    /// Notes the client's own leave of a member (`Some(at)`), or that it is a member again.
    pub(crate) fn note_own_leave(
        &mut self,
        channel: &Arc<str>,
        client_id: &Arc<str>,
        at: Option<(i64, u64)>,
    ) {
        self.own_leaves
            .retain(|(c, id, _)| !(c == channel && id == client_id));
        if let Some(at) = at {
            push_newest(
                &mut self.own_leaves,
                (channel.clone(), client_id.clone(), at),
                OWN_LEAVES,
            );
        }
    }

    /// Whether `item` on `channel` is its client entering a member it holds again, naming the
    /// operation of this connection that made it (as Ably's clients do after a resume, RTP17g).
    pub(crate) fn is_reentry(&self, channel: &Arc<str>, item: &PresenceMessage) -> bool {
        let Some(client_id) = item.client_id.as_ref().or(self.client_id.as_ref()) else {
            return false;
        };
        item.action == PresenceAction::Enter
            && item
                .id
                .as_deref()
                .and_then(|id| id.strip_prefix(&*self.id))
                .is_some_and(|rest| rest.starts_with(':'))
            && self.members.contains(&(channel.clone(), client_id.clone()))
    }

    /// Why this connection's message `serial` was refused, if it is one of the last
    /// [`REFUSED_KEPT`] it refused: a resend of it is refused again.
    pub(crate) fn refusal(&self, serial: i64) -> Option<&ErrorInfo> {
        self.refused
            .iter()
            .find(|(s, _)| *s == serial)
            .map(|(_, error)| error)
    }

    /// Notes why message `serial` was refused.
    pub(crate) fn note_refused(&mut self, serial: i64, error: ErrorInfo) {
        if self.refusal(serial).is_none() {
            push_newest(&mut self.refused, (serial, error), REFUSED_KEPT);
        }
    }

    /// The next time this connection needs attention, given its state.
    /// `heard_since`: since when the hub has been run on time (silence before it is not
    /// counted against the connection).
    pub(crate) fn next_deadline(&self, config: &HubConfig, heard_since: u64) -> u64 {
        match self.life {
            // On the second: the deadlines of a crowd's live connections, each in a millisecond
            // of its own, fall on a few ticks rather than thousands (on the edge host each is an
            // alarm). A heartbeat or a check under a second late is harmless, and a token's
            // expiry is on the second already. A return is told on its own quarter-second tick.
            Life::Live => self
                .live_deadline(config, heard_since)
                .div_ceil(1_000)
                .saturating_mul(1_000)
                .min(self.back_notice_at.unwrap_or(u64::MAX)),
            // Members are held for `remainPresentFor`; a connection without any, for the
            // `connectionStateTtl` it was told (however long a grace it asked for: a dropped
            // connection holds a place among the hub's `maxConnections`).
            Life::Dropped { at } => {
                if self.members.is_empty() {
                    at.saturating_add(config.connection_state_ttl)
                } else if !self.lost_told {
                    self.lost_notice_at(at, config)
                } else {
                    self.grace_ends(at, config)
                }
            }
        }
    }

    /// A live connection's next deadline, to the millisecond.
    fn live_deadline(&self, config: &HubConfig, heard_since: u64) -> u64 {
        let h = self.heartbeat_interval;
        let token = self.token.map_or(u64::MAX, |t| {
            if t.renewal_asked {
                t.expires
            } else {
                t.renew_at()
            }
        });
        let keepalive = (self.last_out + h)
            .min(token)
            .min(self.claim_by.unwrap_or(u64::MAX));
        if !self.silence_is_death(config) {
            return keepalive;
        }
        let dead = (self.last_in + h).max(heard_since) + liveness_margin(h);
        let probe = if self.probed || !config.host_pings {
            dead
        } else {
            self.last_in + h
        };
        keepalive.min(probe).min(dead)
    }

    /// Forgets how far its client heard its channels: no view it holds is vouched for.
    pub(crate) fn forget_where_heard(&mut self) {
        for (_, attachment) in self.attachments.iter_mut() {
            attachment.dropped_at = None;
        }
    }

    /// Its client missed events on every channel: none of its views is vouched for, and each
    /// channel's next ATTACHED says so (without RESUMED).
    pub(crate) fn missed_events(&mut self) {
        for (_, attachment) in self.attachments.iter_mut() {
            attachment.dropped_at = None;
            attachment.missed = true;
        }
    }

    /// When listeners told that this connection was lost are told that it is back, for a
    /// return at `now`: the next tick.
    pub(crate) fn back_notice_at(now: u64) -> u64 {
        now.div_ceil(NOTICE_TICK).saturating_mul(NOTICE_TICK)
    }

    /// When the members of this connection, dropped at `at`, leave: after its
    /// `remainPresentFor`, but no longer than the hub's own `remainPresentFor` past its token's
    /// expiry. A grace window is for coming back with the credentials it has, or renewed ones;
    /// a long one asked for is not a way to stay present an hour after they ran out.
    pub(crate) fn grace_ends(&self, at: u64, config: &HubConfig) -> u64 {
        let asked = at.saturating_add(self.remain_present_for);
        match self.token {
            Some(token) => asked.min(
                token
                    .expires
                    .max(at)
                    .saturating_add(self.remain_present_for.min(config.remain_present_for)),
            ),
            None => asked,
        }
    }

    /// When listeners are told that this connection, dropped at `at`, is in its grace window:
    /// on a quarter-second tick, so that a crowd that drops within one is told in one frame,
    /// and before its members leave.
    pub(crate) fn lost_notice_at(&self, at: u64, config: &HubConfig) -> u64 {
        let grace = self.grace_ends(at, config) - at;
        let due = at.saturating_add(LOST_NOTICE_DELAY.min(grace / 2));
        let tick = due.div_ceil(NOTICE_TICK).saturating_mul(NOTICE_TICK);
        tick.min(at.saturating_add(grace.saturating_sub(1)))
    }

    /// Whether silence past the heartbeat interval and its margin means the connection is gone:
    /// always when the host can ping; otherwise only for clients that send heartbeats.
    pub(crate) fn silence_is_death(&self, config: &HubConfig) -> bool {
        config.host_pings || self.heartbeating
    }

    /// Whether the connection may act as this client id.
    pub(crate) fn wildcard(&self) -> bool {
        self.client_id.as_deref() == Some("*")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_query_ably_js_sends() {
        let p = ConnectParams::parse(
            "?key=app.k%3Asecret&clientId=user%20123&format=json&heartbeats=true&v=6\
             &agent=ably-js%2F2.28.0&resume=abc&echo=false&remainPresentFor=1000\
             &heartbeatInterval=5000",
        );
        assert_eq!(p.key.as_deref(), Some("app.k:secret"));
        assert_eq!(p.client_id.as_deref(), Some("user 123"));
        assert_eq!(p.format.as_deref(), Some("json"));
        assert!(p.heartbeats);
        assert!(!p.echo);
        assert_eq!(p.resume.as_deref(), Some("abc"));
        assert_eq!(p.remain_present_for, Some(1000));
        assert_eq!(p.heartbeat_interval, Some(5000));
    }

    #[test]
    fn bounds_the_transport_params() {
        let config = HubConfig::default();
        let p = ConnectParams::parse("remainPresentFor=10&heartbeatInterval=99999999");
        assert_eq!(p.remain_present_for(&config), MIN_REMAIN_PRESENT_FOR);
        assert_eq!(p.heartbeat_interval(&config), MAX_HEARTBEAT_INTERVAL);
        let p = ConnectParams::parse("remainPresentFor=1500.5&heartbeatInterval=1e4");
        assert_eq!(p.remain_present_for(&config), 1_500);
        assert_eq!(p.heartbeat_interval(&config), 10_000);
        assert_eq!(p.invalid, None);
        let p = ConnectParams::parse("");
        assert_eq!(p.remain_present_for(&config), 15_000);
        assert_eq!(p.heartbeat_interval(&config), 15_000);
        for bad in ["abc", "-5", "", "NaN", "inf"] {
            let p = ConnectParams::parse(&format!("remainPresentFor={bad}"));
            assert_eq!(p.invalid, Some("remainPresentFor"), "{bad}");
        }
    }
}
