//! The hub: a sans-IO state machine that holds the presence set of every channel and speaks the
//! Ably realtime protocol (v6) with its connections.
//!
//! A host (Node, a Durable Object, a test) owns the sockets and the one timer. It tells the hub
//! what happened with `handle_*` calls, each given the current time in milliseconds since the
//! Unix epoch, and after every such call drains [`Hub::poll_transmit`], then [`Hub::poll_event`],
//! until both are empty, and re-arms its timer for [`Hub::poll_timeout`]. A timeout that comes
//! early or twice changes nothing.
//!
//! ```
//! use rollcall::hub::{Hub, HubConfig, TransportId};
//!
//! let mut hub = Hub::new(HubConfig::default());
//! let now = 1_700_000_000_000;
//! hub.handle_open(now, TransportId(1), "clientId=alice&v=6", [7; 24]);
//! let connected = hub.poll_transmit().unwrap();
//! assert_eq!(connected.to, vec![TransportId(1)]);
//! assert!(connected.frame.text().unwrap().starts_with(r#"{"action":4,"#));
//! while hub.poll_transmit().is_some() {}
//! while hub.poll_event().is_some() {}
//! assert!(hub.poll_timeout().is_some());
//! ```

mod auth;
mod channel;
mod codec;
pub mod config;
mod connection;
#[doc(hidden)]
pub mod fuzz;
mod handshake;
mod liveness;
mod messages;
mod pacing;
mod persist;
mod presence;
mod rest;
mod small;
mod tokens;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::protocol::{codes, Action, ErrorInfo, PresenceMessage, ProtocolMessage};

pub use auth::Capability;
use channel::Channel;
pub use codec::{Format, Frame};
pub use config::{ApiKey, HubConfig};
pub use connection::ConnectParams;
use connection::Connection;
pub use persist::{Restoring, StoredChange};
use presence::LeaveReason;
pub use rest::{RestRequest, RestResponse, MAX_REQUEST_BODY};

/// The host's name for one WebSocket. The host picks it; it must not be reused while the hub may
/// still refer to it (after [`Hub::handle_close`] it may be).
/// A bare `u32` in memory, so that a host can read a list of them in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct TransportId(pub u32);

/// A frame to send, once, to each of `to`.
#[derive(Clone, Debug)]
pub struct Transmit {
    /// The transports to send it to.
    pub to: Vec<TransportId>,
    /// What to send.
    pub frame: Frame,
}

/// Something the host must do besides sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HubEvent {
    /// Close this transport once what was sent to it has gone. The hub has forgotten it.
    Close {
        /// The transport to close.
        transport: TransportId,
        /// The WebSocket close code to use.
        code: u16,
    },
    /// Send a WebSocket ping on this transport; report the pong with [`Hub::handle_pong`].
    Ping {
        /// The transport to ping.
        transport: TransportId,
    },
}

/// Counts for monitoring and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Connections known, with or without a transport.
    pub connections: usize,
    /// Connections with a transport.
    pub live_connections: usize,
    /// Channels held.
    pub channels: usize,
    /// Members across all channels.
    pub members: usize,
    /// The memory the history of all channels holds, roughly, in bytes (at most
    /// `maxHistoryBytes`).
    pub history_bytes: u64,
    /// The memory the members of all channels hold, roughly, in bytes (at most
    /// `maxMemberBytes`).
    pub member_bytes: u64,
    /// The bytes of the frames dropped connections have waiting for their resume (at most
    /// `maxReplayBytes`).
    pub replay_bytes: usize,
}

/// An ACK of `count` messages from `serial` on, or a NACK of one with its error.
#[derive(Debug)]
struct Settlement {
    slot: Slot,
    serial: i64,
    count: u64,
    error: Option<ErrorInfo>,
}

/// What the connections counted under one clientId hold.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Held {
    /// Its connections (see `max_connections_per_client`).
    connections: u32,
    /// What their members hold, as [`channel::history_bytes`] counts them (see
    /// `max_member_bytes_per_client`).
    member_bytes: u64,
}

/// Who a clientId that connections are counted under is, said in an error.
fn counted_as(client: &str) -> String {
    match client.strip_prefix(auth::TOKEN_PLACES) {
        Some(_) => "this token".to_owned(),
        None => {
            let id = client
                .split_once(auth::APP_OF_CLIENT)
                .map_or(client, |(_, id)| id);
            format!("clientId {id}")
        }
    }
}

/// The slot of a connection in the hub's table.
type Slot = u32;

/// How late a deadline may be run before the hub takes it that it was not run at all meanwhile.
const STALL: u64 = 1_000;

/// How many times its presence messages a connection may send control frames (see
/// [`Hub::control_rate`]).
const CONTROL_FACTOR: u32 = 20;

/// The slot the channel sweep uses in the timer set.
const SWEEP: Slot = Slot::MAX;

/// The presence hub. See the module documentation for how to drive it.
#[derive(Debug)]
pub struct Hub {
    config: HubConfig,
    /// Boxed, so that the table's spare capacity costs a pointer per slot, not a connection.
    slots: Vec<Option<Box<Connection>>>,
    free_slots: Vec<Slot>,
    by_id: HashMap<Arc<str>, Slot>,
    by_key: HashMap<Arc<str>, Slot>,
    /// Connections by their earlier keys, which only recover them (`Connection::old_keys`).
    by_old_key: HashMap<Arc<str>, Slot>,
    by_transport: HashMap<TransportId, Slot>,
    channels: HashMap<Arc<str>, Channel>,
    /// What each clientId a token named holds (see `max_connections_per_client`).
    per_client: HashMap<Arc<str>, Held>,
    /// Connections whose listeners were told that they dropped (`Connection::lost_told`): while
    /// there are none, an attach looks for none among the channel's members.
    told_lost: usize,
    /// The bytes of the frames all dropped connections have waiting (held to
    /// `HubConfig::max_replay_bytes`).
    replay_held: usize,
    /// Since when the hub has been run on time (see `tick`): no connection is taken for dead
    /// for silence before a margin past it.
    heard_since: u64,
    /// The history of every channel, held to `maxHistoryBytes`.
    history: channel::HistoryBudget,
    /// What the members of every channel hold, as [`channel::history_bytes`] counts them.
    member_bytes: u64,
    /// (deadline, slot): at most one entry per connection, plus the sweep and the release of
    /// held frames.
    timers: BTreeSet<(u64, Slot)>,
    sweep_at: Option<u64>,
    /// Frames that wait for their connection's budget (see `pacing`), their bytes, and when
    /// they are next read.
    held: BTreeMap<Slot, pacing::HeldFrames>,
    held_bytes: usize,
    held_at: Option<u64>,
    transmits: VecDeque<Transmit>,
    /// The bytes of the frames in `transmits` (see [`Hub::queued_bytes`]).
    transmit_bytes: usize,
    events: VecDeque<HubEvent>,
    /// Presence events waiting to be sent, one frame per channel, when the host drains.
    pending: Vec<(Arc<str>, PresenceMessage)>,
    /// Grace statuses waiting to follow them: (channel, connection id, lost).
    pending_status: Vec<(Arc<str>, Arc<str>, bool)>,
    /// The channels each connection has an ATTACHED or a SYNC of waiting in this drain: a
    /// repeated ATTACH or SYNC request is answered by it (see `on_attach`). Forgotten for a
    /// connection that changes transport, as what waited went to the old one.
    answered: HashSet<(Slot, Arc<str>, Action)>,
    /// The channels whose members were encoded for a SYNC (`Channel::sync_items`), and the
    /// bytes encoded since they were last reckoned: an encoding serves every SYNC of the set
    /// while it is unchanged, and all of them go once they hold more than
    /// [`Hub::sync_cache_budget`] when a drain ends (a stable channel would otherwise hold its
    /// own, in each format, outside every budget, for good).
    synced: Vec<Arc<str>>,
    synced_bytes: usize,
    /// Acknowledgements (and refusals, in the same order) waiting to follow those events, so
    /// that a client sees its own echo first.
    acks: Vec<Settlement>,
    /// The latest time seen: the hub's clock never goes back.
    now: u64,
    /// Numbers the leaves the hub makes and the SYNCs it sends.
    counter: u64,
    /// What changed for durable storage, when persistence is on.
    changes: Option<persist::Changes>,
    /// The TokenRequests exchanged lately (key name and nonce), each until its timestamp is
    /// no longer current: one is exchanged once (see `tokens`). Stored when persistence is on.
    token_nonces: BTreeMap<Arc<str>, u64>,
    /// When expired nonces are next looked for, once the table is half full.
    nonces_swept_at: u64,
    /// What each reader of the REST API may still be sent (see `rest`), by whose it is.
    rest_budgets: HashMap<Arc<str>, connection::RateLimit>,
}

/// Whether a channel may be forgotten at `now`: it holds nothing (see [`Channel::is_idle`]),
/// has no events still to send (their numbers are its serial's, and its history's were it
/// made again before they go), and its numbers are not ahead of the clock (more than a
/// thousand events a millisecond: made again now, its numbers would go back, see
/// `Channel::starting_at`).
fn forgettable(
    name: &str,
    channel: &Channel,
    pending: &[(Arc<str>, PresenceMessage)],
    now: u64,
) -> bool {
    channel.is_idle()
        && channel.serial <= channel::first_serial(now)
        && !pending.iter().any(|(n, _)| &**n == name)
}

/// Whether two names places are counted under (see [`counted_client`]) are of two apps: a
/// connection does not move from one app to another by renewing or resuming.
fn other_app(a: &Option<Arc<str>>, b: &Option<Arc<str>>) -> bool {
    fn app(name: &Option<Arc<str>>) -> Option<&str> {
        let name = name.as_deref()?;
        let name = name.strip_prefix(auth::TOKEN_PLACES).unwrap_or(name);
        Some(name.split_once(auth::APP_OF_CLIENT)?.0)
    }
    matches!((app(a), app(b)), (Some(a), Some(b)) if a != b)
}

/// Whose places a connection takes (see [`auth::Identity::counts_as`]), when keys are checked.
fn counted_client(config: &HubConfig, identity: &auth::Identity) -> Option<Arc<str>> {
    identity
        .counts_as
        .clone()
        .filter(|_| !config.development_mode())
}

impl Hub {
    /// A hub with no connections.
    pub fn new(config: HubConfig) -> Self {
        let changes = config.persistence.then(persist::Changes::default);
        Self {
            config,
            slots: Vec::new(),
            free_slots: Vec::new(),
            by_id: HashMap::new(),
            by_key: HashMap::new(),
            by_old_key: HashMap::new(),
            by_transport: HashMap::new(),
            channels: HashMap::new(),
            per_client: HashMap::new(),
            told_lost: 0,
            replay_held: 0,
            heard_since: 0,
            history: channel::HistoryBudget::default(),
            member_bytes: 0,
            timers: BTreeSet::new(),
            sweep_at: None,
            held: BTreeMap::new(),
            held_bytes: 0,
            held_at: None,
            transmits: VecDeque::new(),
            transmit_bytes: 0,
            events: VecDeque::new(),
            pending: Vec::new(),
            pending_status: Vec::new(),
            answered: HashSet::new(),
            synced: Vec::new(),
            synced_bytes: 0,
            acks: Vec::new(),
            now: 0,
            counter: 0,
            changes,
            token_nonces: BTreeMap::new(),
            nonces_swept_at: 0,
            rest_budgets: HashMap::new(),
        }
    }

    /// A WebSocket opened with this query (`key=…&clientId=…&v=6…`). `entropy` must be random
    /// (from the host's CSPRNG): it makes the connection id and the secret connection key.
    ///
    /// The hub answers `CONNECTED`, or an `ERROR` and a [`HubEvent::Close`].
    pub fn handle_open(
        &mut self,
        now: u64,
        transport: TransportId,
        query: &str,
        entropy: [u8; 24],
    ) {
        self.tick(now);
        // A host that opens a transport id still in use has lost the socket it named: that
        // connection dropped (rather than two sharing one id).
        if let Some(slot) = self.by_transport.get(&transport).copied() {
            self.drop_transport(slot);
        }
        self.open(transport, &ConnectParams::parse(query), entropy);
    }

    /// A text frame arrived.
    pub fn handle_text(&mut self, now: u64, transport: TransportId, text: &str) {
        self.tick(now);
        if let Some(slot) = self.touch(transport) {
            self.on_text(slot, text);
        }
    }

    /// A text frame arrived whose bytes are not UTF-8 (a host whose WebSocket library does not
    /// check them passes them here): refused as a frame that is not a protocol message, with an
    /// `ERROR`, not read as the binary frame it is not.
    pub fn handle_text_bytes(&mut self, now: u64, transport: TransportId, bytes: &[u8]) {
        match core::str::from_utf8(bytes) {
            Ok(text) => self.handle_text(now, transport, text),
            Err(_) => {
                self.tick(now);
                if let Some(slot) = self.touch(transport) {
                    self.on_invalid_text(slot, bytes);
                }
            }
        }
    }

    /// A binary frame arrived (msgpack).
    pub fn handle_binary(&mut self, now: u64, transport: TransportId, bytes: &[u8]) {
        self.tick(now);
        if let Some(slot) = self.touch(transport) {
            self.on_binary(slot, bytes);
        }
    }

    /// A pong arrived, or another sign of life that is not a frame (such as the time a
    /// runtime answered the client's heartbeat for the hub), at `now`: a sign of life reported
    /// late counts from when it was, not from when it was told.
    pub fn handle_pong(&mut self, now: u64, transport: TransportId) {
        self.tick(now);
        let Some(slot) = self.by_transport.get(&transport).copied() else {
            return;
        };
        if let Some(conn) = self.conn_mut(slot) {
            if now >= conn.last_in {
                conn.last_in = now;
                conn.probed = false;
            }
        }
        self.mark_heartbeating(slot);
        self.schedule(slot);
    }

    /// After [`Hub::restore`]: when the host last heard from a transport (a frame, or a
    /// heartbeat its runtime answered), where it keeps that across an eviction. A restored
    /// connection counts as heard at the restore otherwise, and one that went silent would
    /// never be noticed by a host that is evicted more often than its heartbeat interval.
    pub fn handle_last_heard(&mut self, transport: TransportId, at: u64) {
        let now = self.now;
        let Some(slot) = self.by_transport.get(&transport).copied() else {
            return;
        };
        if let Some(conn) = self.conn_mut(slot) {
            conn.last_in = at.min(now);
        }
        self.schedule(slot);
    }

    /// The host refuses what came on this transport (a frame that made the hub fail before):
    /// its connection fails, with `message` and 50000 in an `ERROR` (a client does not retry
    /// after one), and its members leave at once. Other connections are not touched.
    pub fn handle_refused(&mut self, now: u64, transport: TransportId, message: &str) {
        self.tick(now);
        let error = ErrorInfo::new(codes::INTERNAL, 500, message);
        match self.by_transport.get(&transport).copied() {
            Some(slot) => self.fail(slot, error),
            None => self.refuse(transport, Format::Json, error),
        }
    }

    /// The host cut the transport off for a frame larger than it reads (`limit` bytes; the
    /// WebSocket closed with 1009), which the hub never saw. The drop is handled as any other,
    /// but the connection cannot resume: a client resends what was not acknowledged when it
    /// resumes (RTN19a), so it would send the frame again, be cut off again, and stay offline
    /// for good with no word of why. Its resume fails instead, with 40009 and the limit, and
    /// its members leave then. A recover (a new client, which resends nothing) is not refused.
    pub fn handle_too_large(&mut self, now: u64, transport: TransportId, limit: usize) {
        self.tick(now);
        if let Some(slot) = self.by_transport.get(&transport).copied() {
            if let Some(conn) = self.conn_mut(slot) {
                conn.cut_for_size = Some(limit);
            }
            self.touch_connection(slot);
            self.drop_transport(slot);
        }
    }

    /// The WebSocket closed or failed. Unless the connection sent `CLOSE` first, this is an
    /// abrupt drop: its members stay for its `remainPresentFor`, and it may resume.
    pub fn handle_close(&mut self, now: u64, transport: TransportId) {
        self.tick(now);
        if let Some(slot) = self.by_transport.get(&transport).copied() {
            self.drop_transport(slot);
        }
    }

    /// The host could not take the transport it opened (no room for another socket): none of
    /// the hub's frames reached its client. A connection that holds no channel (a new one, or
    /// one a failed resume made) goes at once, as its client never heard its key, and held
    /// for a resume it would take one of its user's places at each retry. One that holds
    /// channels (resumed) is dropped as by a close, and keeps its members' grace.
    pub fn handle_unaccepted(&mut self, now: u64, transport: TransportId) {
        self.tick(now);
        let Some(slot) = self.by_transport.get(&transport).copied() else {
            return;
        };
        if self
            .conn(slot)
            .is_some_and(|c| c.attachments.keys().next().is_none())
        {
            self.end(slot, 1011, LeaveReason::Closed);
        } else {
            self.drop_transport(slot);
        }
    }

    /// The bytes of members encoded for SYNCs the hub keeps: a quarter of `maxMemberBytes`.
    pub(crate) fn sync_cache_budget(&self) -> usize {
        usize::try_from(self.config.max_member_bytes / 4).unwrap_or(usize::MAX)
    }

    /// Counts what the SYNC encodings hold now (those of sets that changed went already), and
    /// lets them all go if that is past the budget.
    fn reckon_sync_cache(&mut self) {
        self.synced.sort_unstable();
        self.synced.dedup();
        let channels = &self.channels;
        self.synced.retain(|name| {
            channels
                .get(name)
                .is_some_and(|c| c.sync_items.iter().any(Option::is_some))
        });
        self.synced_bytes = self
            .synced
            .iter()
            .filter_map(|name| self.channels.get(name))
            .map(channel::Channel::sync_bytes)
            .sum();
        if self.synced_bytes > self.sync_cache_budget() {
            for name in core::mem::take(&mut self.synced) {
                if let Some(channel) = self.channels.get_mut(&name) {
                    channel.sync_items = Default::default();
                }
            }
            self.synced_bytes = 0;
        }
    }

    /// The host's timer fired. Early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: u64) {
        self.tick(now);
        while let Some(&(deadline, slot)) = self.timers.first() {
            if deadline > self.now {
                break;
            }
            self.timers.pop_first();
            if slot == SWEEP {
                self.sweep_at = None;
                self.sweep();
            } else if slot == pacing::HELD {
                self.held_at = None;
                self.release_held();
            } else if let Some(conn) = self.conn_mut(slot) {
                if conn.deadline == Some(deadline) {
                    conn.deadline = None;
                    self.on_deadline(slot);
                }
            }
        }
    }

    /// An HTTP request. Returns `None` when the path is not one of the hub's (the host serves
    /// it, or answers 404).
    pub fn handle_rest(&mut self, now: u64, request: &RestRequest<'_>) -> Option<RestResponse> {
        self.tick(now);
        self.rest(request)
    }

    /// The next frame to send.
    ///
    /// Presence events wait here until the host drains, and then leave as one frame per channel
    /// for everything that happened since: a host that drains once per turn of its event loop
    /// coalesces the events of that turn (a join storm becomes a few frames per subscriber).
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.transmits.is_empty()
            && !(self.pending.is_empty() && self.pending_status.is_empty() && self.acks.is_empty())
        {
            self.flush();
        }
        let next = self.transmits.pop_front();
        match &next {
            Some(t) => {
                self.transmit_bytes = self.transmit_bytes.saturating_sub(t.frame.bytes.len())
            }
            None => {
                // Drained: what was waiting has gone to the host.
                self.transmit_bytes = 0;
                self.answered.clear();
                // Also once the list names channels twice over (sets encoded again and again,
                // or channels gone): it is reckoned in time linear in what it holds.
                if self.synced_bytes > self.sync_cache_budget()
                    || self.synced.len() > 2 * self.channels.len() + 64
                {
                    self.reckon_sync_cache();
                }
            }
        }
        next
    }

    /// The bytes of the frames waiting for the host to take them. A host that feeds many inputs
    /// before it drains (one turn of its event loop) drains early when this grows: the SYNCs of
    /// a big channel that many clients attach at once would otherwise all wait in memory at
    /// the same time, and a Wasm memory does not shrink.
    #[must_use]
    pub fn queued_bytes(&self) -> usize {
        self.transmit_bytes
    }

    /// Queues a frame for the host.
    fn transmit(&mut self, transmit: Transmit) {
        self.transmit_bytes += transmit.frame.bytes.len();
        self.transmits.push_back(transmit);
    }

    /// The next thing to do besides sending. Drain transmits first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<HubEvent> {
        self.events.pop_front()
    }

    /// When to call [`Hub::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.first().map(|&(deadline, _)| deadline)
    }

    /// How much the hub holds.
    pub fn stats(&self) -> HubStats {
        let connections = self.by_id.len();
        HubStats {
            connections,
            live_connections: self.by_transport.len(),
            channels: self.channels.len(),
            members: self.channels.values().map(|c| c.members.len()).sum(),
            history_bytes: self.history.bytes,
            member_bytes: self.member_bytes,
            replay_bytes: self.replay_held,
        }
    }

    /// The present members of a channel.
    pub fn members(&self, channel: &str) -> Vec<PresenceMessage> {
        self.channels
            .get(channel)
            .map(|c| c.members.members().cloned().collect())
            .unwrap_or_default()
    }

    /// The names of the channels the hub holds.
    pub fn channel_names(&self) -> Vec<Arc<str>> {
        self.channels.keys().cloned().collect()
    }

    /// The hub's settings.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    // ---- connection lifecycle -----------------------------------------------------------------

    fn tick(&mut self, now: u64) {
        // Not run for more than a second while a deadline was due: the host did not run the hub
        // meanwhile (an event loop blocked, a machine suspended, a clock stepped forward), and
        // what its connections sent waits unread. Silence is counted from now, not from
        // before. (A hub restored from storage starts at its wake: the deadlines it restored,
        // past by then, are not its stall, and its sockets' last-heard times hold.)
        if now > self.now.saturating_add(STALL)
            && self
                .timers
                .first()
                .is_some_and(|&(due, _)| now > due.saturating_add(STALL))
        {
            self.heard_since = self.heard_since.max(now);
        }
        self.now = self.now.max(now);
    }

    /// Ends a connection because of what it sent: `ERROR`, close, and its members leave at once.
    fn fail(&mut self, slot: Slot, error: ErrorInfo) {
        // What is owed to it (acknowledgements, refusals, events) goes before the ERROR.
        self.flush();
        let mut message = ProtocolMessage::new(Action::Error);
        message.error = Some(error);
        self.send(slot, &message);
        self.end(slot, 1008, LeaveReason::Failed);
    }

    /// Ends a connection for good (CLOSE, or a failure): its members leave at once, its transport
    /// is closed and it cannot be resumed.
    fn end(&mut self, slot: Slot, code: u16, reason: LeaveReason) {
        self.leave_members(slot, None, reason);
        if let Some(transport) = self.conn(slot).and_then(|c| c.transport) {
            self.events.push_back(HubEvent::Close { transport, code });
        }
        self.remove(slot);
    }

    /// Control frames (attach, detach, heartbeats) a connection may send a second: twenty times
    /// its presence messages, as Ably allows a connection 2 000 protocol messages a second
    /// besides its 50 messages.
    pub(super) fn control_rate(&self) -> u32 {
        self.config.max_inbound_rate.saturating_mul(CONTROL_FACTOR)
    }

    /// The most control frames a connection may send at once (see [`Hub::burst_at`]).
    pub(super) fn control_burst(&self) -> u32 {
        self.burst_at(self.control_rate())
    }

    /// The most presence messages a connection may send at once (see [`Hub::burst_at`]).
    pub(super) fn inbound_burst(&self) -> u32 {
        self.burst_at(self.config.max_inbound_rate)
    }

    /// The most frames a connection may send at once at `rate`: two seconds' worth, and one
    /// more for every channel it may attach (a client that reconnects re-attaches and re-enters
    /// each at once).
    fn burst_at(&self, rate: u32) -> u32 {
        let channels = u32::try_from(self.config.max_channels_per_connection).unwrap_or(u32::MAX);
        rate.saturating_mul(2).saturating_add(channels)
    }

    /// Counts a connection in (`1`) or out (`-1`) of the places of the clientId it was counted
    /// under when it opened (whatever credentials it has renewed or resumed with since).
    pub(super) fn count_client(&mut self, slot: Slot, by: i32) {
        let Some(client) = self.conn(slot).and_then(|c| c.counted.clone()) else {
            return;
        };
        let held = self.per_client.entry(client.clone()).or_default();
        held.connections = held.connections.saturating_add_signed(by);
        if held.connections == 0 {
            self.per_client.remove(&client);
        }
    }

    /// Counts what a connection's members hold: `added` bytes more and `removed` fewer, under
    /// the clientId it is counted under, if any.
    pub(super) fn count_member_bytes(&mut self, slot: Slot, added: u64, removed: u64) {
        let conn = self.slots.get(slot as usize).and_then(Option::as_deref);
        let Some(client) = conn.and_then(|c| c.counted.as_ref()) else {
            return;
        };
        if let Some(held) = self.per_client.get_mut(client) {
            held.member_bytes = (held.member_bytes + added).saturating_sub(removed);
        }
    }

    /// Forgets a connection entirely.
    fn remove(&mut self, slot: Slot) {
        self.forget_held(slot);
        self.count_client(slot, -1);
        self.touch_connection(slot);
        let Some(conn) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        self.told_lost = self.told_lost.saturating_sub(usize::from(conn.lost_told));
        self.replay_held = self.replay_held.saturating_sub(conn.replay_bytes);
        if let Some(deadline) = conn.deadline {
            self.timers.remove(&(deadline, slot));
        }
        if let Some(transport) = conn.transport {
            self.by_transport.remove(&transport);
        }
        self.by_id.remove(&conn.id);
        self.by_key.remove(&conn.key);
        for key in &conn.old_keys {
            self.by_old_key.remove(key);
        }
        for name in conn.attachments.keys() {
            if let Some(channel) = self.channels.get_mut(name) {
                channel.subscribers.remove(&slot);
            }
            self.forget_if_idle(name);
        }
        self.free_slots.push(slot);
        self.arm_sweep();
    }

    fn conn(&self, slot: Slot) -> Option<&Connection> {
        self.slots.get(slot as usize).and_then(Option::as_deref)
    }

    fn conn_mut(&mut self, slot: Slot) -> Option<&mut Connection> {
        self.slots
            .get_mut(slot as usize)
            .and_then(Option::as_deref_mut)
    }

    // ---- sending ------------------------------------------------------------------------------

    /// Sends a message to one connection (or keeps it for its resume).
    fn send(&mut self, slot: Slot, message: &ProtocolMessage) {
        let Some(conn) = self.conn(slot) else {
            return;
        };
        let frame = codec::encode(message, conn.format);
        self.send_frame(slot, frame);
    }

    fn send_frame(&mut self, slot: Slot, frame: Frame) {
        let now = self.now;
        let (limit, max_bytes) = (self.config.replay_limit, self.config.replay_bytes);
        let room = self
            .config
            .max_replay_bytes
            .saturating_sub(self.replay_held);
        let Some(conn) = self
            .slots
            .get_mut(slot as usize)
            .and_then(Option::as_deref_mut)
        else {
            return;
        };
        match conn.transport {
            Some(transport) => {
                conn.last_out = now;
                self.transmit(Transmit {
                    to: vec![transport],
                    frame,
                });
            }
            // Once one is given up, so is what follows: the client takes its channels afresh on
            // its resume, and a replay with a hole in it would only hold the budget.
            None if !conn.replay_overflowed
                && conn.replay.len() < limit
                && conn.replay_bytes + frame.bytes.len() <= max_bytes
                && frame.bytes.len() <= room =>
            {
                conn.replay_bytes += frame.bytes.len();
                self.replay_held += frame.bytes.len();
                conn.replay.push_back(frame);
            }
            None => conn.replay_overflowed = true,
        }
    }

    // ---- channel housekeeping -----------------------------------------------------------------

    /// The channel of that name, made now if the hub holds none (see [`Channel::starting_at`]):
    /// its serial is stored from the start, so that a hub rebuilt from storage goes on from it.
    fn channel_or_new(&mut self, name: &Arc<str>) -> &mut Channel {
        if !self.channels.contains_key(name) {
            if let Some(changes) = &mut self.changes {
                changes.note_serial(name);
            }
        }
        let now = self.now;
        self.channels
            .entry(name.clone())
            .or_insert_with(|| Channel::starting_at(now))
    }

    /// Forgets a channel that holds nothing any more (no members, no history, no one hearing
    /// its presence) at once, rather than at the next sweep: a client that attaches to name
    /// after name and detaches each must not fill the hub with empty channels for a
    /// `historyTtl`. One with events still to send is left to the sweep (see [`Hub::sweep`]).
    fn forget_if_idle(&mut self, name: &str) {
        let idle = self
            .channels
            .get(name)
            .is_some_and(|c| forgettable(name, c, &self.pending, self.now));
        if let Some(channel) = idle.then(|| self.channels.remove(name)).flatten() {
            self.forget_history(name, &channel);
        }
    }

    /// Arms the sweep that drops idle channels once their history has expired.
    fn arm_sweep(&mut self) {
        if self.sweep_at.is_some() || self.channels.is_empty() {
            return;
        }
        let at = self.now.saturating_add(self.config.history_ttl.max(1_000));
        self.sweep_at = Some(at);
        self.timers.insert((at, SWEEP));
    }

    pub(super) fn sweep(&mut self) {
        let horizon = self.now.saturating_sub(self.config.history_ttl);
        let mut forgotten = Vec::new();
        for (name, channel) in self.channels.iter_mut() {
            self.history.freed(channel.prune_history(horizon));
            if forgettable(name, channel, &self.pending, self.now) {
                forgotten.push(name.clone());
            } else if let Some(changes) = &mut self.changes {
                // However the history was pruned (here, or by a REST read), storage follows.
                if channel.stored != channel.held() {
                    changes.note_history(name);
                }
            }
        }
        for name in forgotten {
            if let Some(channel) = self.channels.remove(&name) {
                self.forget_history(&name, &channel);
            }
        }
        self.history.trim(&self.channels);
        self.arm_sweep();
    }

    /// Holds the history of every channel to `maxHistoryBytes`, dropping the oldest events
    /// first, wherever they are (storage follows).
    pub(super) fn enforce_history_budget(&mut self) {
        if self.history.bytes <= self.config.max_history_bytes {
            return;
        }
        let changed = self
            .history
            .enforce(self.config.max_history_bytes, &mut self.channels);
        if let Some(changes) = &mut self.changes {
            for name in &changed {
                changes.note_history(name);
            }
        }
        // Those it emptied that hold nothing else go too (their channel is held by no budget).
        for name in &changed {
            self.forget_if_idle(name);
        }
    }

    fn next_counter(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }
}

/// A malformed-message error.
fn malformed(what: &str) -> ErrorInfo {
    ErrorInfo::new(
        codes::BAD_REQUEST,
        400,
        format!("malformed message: {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hub whose channel `room` has `members` members with 100 bytes of data each, and a
    /// watcher that attached after them (so that their set was encoded for its SYNC).
    fn crowd(config: HubConfig, members: u32) -> Hub {
        let mut hub = Hub::new(config);
        let drain = |hub: &mut Hub| {
            while hub.poll_transmit().is_some() || hub.poll_event().is_some() {}
        };
        let data = "x".repeat(100);
        for n in 0..=members {
            let transport = TransportId(n + 1);
            let entropy = [n as u8; 24];
            hub.handle_open(1_000, transport, &format!("clientId=u{n}"), entropy);
            hub.handle_text(1_000, transport, r#"{"action":10,"channel":"room"}"#);
            if n < members {
                let enter = format!(
                    r#"{{"action":14,"channel":"room","msgSerial":0,"presence":[{{"action":2,"data":"{data}"}}]}}"#
                );
                hub.handle_text(1_000, transport, &enter);
            }
            drain(&mut hub);
        }
        hub
    }

    #[test]
    fn sync_encodings_of_channels_made_and_forgotten_again_and_again_are_not_held() {
        let mut hub = Hub::new(HubConfig {
            max_inbound_rate: 1_000_000,
            ..HubConfig::default()
        });
        let transport = TransportId(1);
        hub.handle_open(1_000, transport, "clientId=mallory", [7; 24]);
        for n in 0..5_000u64 {
            let now = 1_000 + n;
            // Attached twice (the second answered with a SYNC of the empty set), then
            // detached: the channel is forgotten, and its encoding with it.
            for frame in [
                r#"{"action":10,"channel":"c"}"#,
                r#"{"action":10,"channel":"c"}"#,
                r#"{"action":12,"channel":"c"}"#,
            ] {
                hub.handle_text(now, transport, frame);
                while hub.poll_transmit().is_some() || hub.poll_event().is_some() {}
            }
            assert!(
                hub.synced.len() <= 2 * hub.channels.len() + 65,
                "{} names held",
                hub.synced.len()
            );
        }
    }

    #[test]
    fn sync_encodings_are_kept_within_their_budget_and_let_go_past_it() {
        let roomy = crowd(HubConfig::default(), 50);
        assert_eq!(roomy.stats().members, 50);
        assert!(
            roomy.channels["room"].sync_bytes() > 5_000,
            "kept for the next SYNC"
        );
        // Members that fill half of maxMemberBytes encode to more than its quarter.
        let member_bytes = roomy.stats().member_bytes;
        let tight = crowd(
            HubConfig {
                max_member_bytes: member_bytes * 2,
                ..HubConfig::default()
            },
            50,
        );
        assert_eq!(tight.stats().members, 50);
        assert_eq!(
            tight.channels["room"].sync_bytes(),
            0,
            "let go at the drain"
        );
        assert_eq!(tight.synced_bytes, 0);
    }
}
