//! The client: a sans-IO state machine for one realtime connection and its channels, with
//! Ably's connection and channel states, resume, automatic re-entry and the presence view.
//!
//! The host opens and closes the WebSocket when asked ([`ClientEvent::OpenTransport`],
//! [`ClientEvent::CloseTransport`]), reports what happens to it (`handle_transport_open`,
//! `handle_message`, `handle_transport_closed`) and, after every input or API call, drains
//! [`Client::poll_transmit`] and [`Client::poll_event`], then re-arms its one timer for
//! [`Client::poll_timeout`].

mod channel;
mod channels;
mod connection;
mod events;
mod text;

use crate::prelude::*;
use alloc::collections::VecDeque;
use alloc::sync::Arc;

pub use channel::ChannelState;
use channel::{Channels, Queued};
pub use events::{ClientEvent, ClientOptions, ConnectionState, OpId};
use text::{has_param, with_param};

use crate::protocol::{
    codes, Action, ConnectionDetails, Data, ErrorInfo, PresenceAction, PresenceMessage,
    ProtocolMessage,
};

/// What a presence item adds to a frame as JSON, roughly and never less: its strings with
/// their escapes, binary as base64, and an allowance for the field names and the envelope.
pub(crate) fn frame_size(item: &PresenceMessage) -> usize {
    let text = |s: &str| -> usize {
        let mut n = s.len();
        for b in s.bytes() {
            n += match b {
                b'"' | b'\\' => 1,
                0..=0x1f => 5,
                _ => 0,
            };
        }
        n
    };
    let data = match &item.data {
        Some(Data::String(s) | Data::Json(s)) => text(s),
        Some(Data::Binary(b)) => b.len().div_ceil(3) * 4,
        None => 0,
    };
    data + item.client_id.as_deref().map_or(0, text)
        + item.extras.as_ref().map_or(0, |e| e.0.len())
        + 128
}

/// A presence message sent and not yet acknowledged.
#[derive(Debug)]
struct InFlight {
    serial: i64,
    channel: Arc<str>,
    items: Vec<Queued>,
}

/// Why a transport is wanted closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    None,
    Opening,
    Open,
}

/// The client state machine. See the module documentation for how to drive it.
#[derive(Debug)]
pub struct Client {
    options: ClientOptions,
    state: ConnectionState,
    transport: Transport,
    connection_id: Option<Arc<str>>,
    connection_key: Option<Arc<str>>,
    /// The key is a recovery key (RTN16): the next connection asks with `recover`, and the
    /// hub's CONNECTED without an error means it took the connection over.
    recovering: bool,
    details: ConnectionDetails,
    channels: Channels,
    msg_serial: i64,
    in_flight: Vec<InFlight>,
    next_op: u32,
    transmits: VecDeque<ProtocolMessage>,
    events: Vec<ClientEvent>,
    /// Waiting for CONNECTED or CLOSED.
    request_deadline: Option<u64>,
    /// Closed while connecting to a connection the hub holds: CLOSE goes when it answers.
    close_owed: bool,
    /// When to try connecting again.
    retry_at: Option<u64>,
    /// When the hub's silence means the transport is dead.
    idle_deadline: Option<u64>,
    /// When the client last sent a frame: it sends a heartbeat after `maxIdleInterval` of
    /// silence, so that hubs that cannot ping (Durable Objects) still see it alive.
    last_sent: u64,
    /// When the current connection was established.
    connected_at: u64,
    /// When to ask the host for a new token.
    renew_token_at: Option<u64>,
    /// Whether the connection waits for a token before it tries again.
    awaiting_token: bool,
    /// Whether the hub refused a token since the last CONNECTED: a second refusal waits for the
    /// usual retry rather than reconnecting as soon as a token comes.
    token_refused: bool,
    /// Whether it was suspended since the last CONNECTED: its tries from then on are on the
    /// suspended schedule, and a try that waits for a token is not suspended again at once.
    suspended: bool,
    /// Failed attempts since the last CONNECTED.
    attempts: u32,
    /// Why the connection failed: what an operation refused by its failure says, as Ably's.
    failure: Option<ErrorInfo>,

    /// When the client last tried again at once after losing its connection: at most once a
    /// `disconnectedRetryTimeout`, so that a hub that drops it as soon as it connects is not
    /// hammered.
    quick_retry_at: Option<u64>,
    /// Since when the client has been without a connection.
    disconnected_since: Option<u64>,
    /// Until when a simulated network outage lasts (`u64::MAX`: until `connect()`).
    offline_until: Option<u64>,
    rng: u64,
    now: u64,
}

impl Client {
    /// A client that has not connected yet.
    pub fn new(options: ClientOptions) -> Self {
        let rng = options.seed | 1;
        // A client that gets its tokens from the host and has none yet waits for one.
        let awaiting_token = options.renewable_auth && !has_param(&options.url, "access_token");
        Self {
            options,
            state: ConnectionState::Initialized,
            transport: Transport::None,
            close_owed: false,
            connection_id: None,
            connection_key: None,
            recovering: false,
            details: ConnectionDetails::default(),
            channels: Channels::default(),
            msg_serial: 0,
            in_flight: Vec::new(),
            next_op: 0,
            transmits: VecDeque::new(),
            events: Vec::new(),
            request_deadline: None,
            retry_at: None,
            idle_deadline: None,
            last_sent: 0,
            connected_at: 0,
            renew_token_at: None,
            awaiting_token,
            token_refused: false,
            suspended: false,
            failure: None,
            attempts: 0,
            quick_retry_at: None,
            disconnected_since: None,
            offline_until: None,
            rng,
            now: 0,
        }
    }

    // ---- API ----------------------------------------------------------------------------------

    /// Connects (or reconnects now, ending a simulated outage).
    pub fn connect(&mut self, now: u64) {
        self.tick(now);
        self.offline_until = None;
        match self.state {
            ConnectionState::Connecting | ConnectionState::Connected => {}
            ConnectionState::Closing => {
                // CLOSE has gone out; the new connection need not wait for CLOSED.
                self.finish_close();
                self.start_connecting();
            }
            _ => self.start_connecting(),
        }
    }

    /// Closes the connection: members leave at once, channels detach.
    pub fn close(&mut self, now: u64) {
        self.tick(now);
        match self.state {
            ConnectionState::Closed | ConnectionState::Failed | ConnectionState::Closing => {}
            ConnectionState::Connected => {
                self.transmits
                    .push_back(ProtocolMessage::new(Action::Close));
                self.request_deadline = Some(self.now + self.options.realtime_request_timeout);
                self.detach_for_close(&closed_reason());
                self.set_state(ConnectionState::Closing, Some(closed_reason()));
            }
            // Resuming a connection the hub holds, on a transport under way: CLOSE goes once the
            // hub answers (RTN12f), so that its members leave now rather than after their grace
            // window (an agent stopped during a blip).
            ConnectionState::Connecting
                if self.transport != Transport::None && self.connection_key.is_some() =>
            {
                self.close_owed = true;
                self.request_deadline = Some(self.now + self.options.realtime_request_timeout);
                self.detach_for_close(&closed_reason());
                self.set_state(ConnectionState::Closing, Some(closed_reason()));
            }
            _ => self.finish_close(),
        }
    }

    /// Uses a new token (`expires`: when it expires, in ms since the epoch, if known): for the
    /// next connection attempt, and at once by `AUTH` when connected, which keeps every member.
    pub fn set_token(&mut self, now: u64, token: &str, expires: Option<u64>) {
        self.tick(now);
        self.options.url = with_param(&self.options.url, "access_token", token);
        // A closed or failed client renews nothing (a token may arrive after the close).
        let live = !matches!(
            self.state,
            ConnectionState::Closing | ConnectionState::Closed | ConnectionState::Failed
        );
        self.renew_token_at = expires
            .filter(|_| self.options.renewable_auth && live)
            .and_then(|e| {
                let life = e.saturating_sub(self.now);
                let at = e.saturating_sub((life / 3).min(30_000));
                // Expired, or nearly, by this clock, which may be ahead of the issuer's: a
                // renewal now would bring another alike, in a loop. The hub asks for one (AUTH)
                // when it is due by its own clock.
                (at >= self.now.saturating_add(MIN_RENEW_AHEAD)).then_some(at)
            });
        if self.state == ConnectionState::Connected {
            let mut message = ProtocolMessage::new(Action::Auth);
            message.auth = Some(crate::protocol::AuthDetails {
                access_token: Some(Arc::from(token)),
            });
            self.transmits.push_back(message);
        } else if self.state == ConnectionState::Connecting && self.transport != Transport::None {
            // The handshake under way carries the old token: begun again with this one, as
            // Ably's is, so that what the hub allows is what the token says; within the first
            // attempt's time, so that tokens renewed faster than a slow link answers cannot
            // keep it connecting for good.
            let deadline = self.request_deadline;
            self.start_connecting();
            self.request_deadline = deadline.or(self.request_deadline);
        }
        if self.awaiting_token {
            self.awaiting_token = false;
            let waiting = matches!(
                self.state,
                ConnectionState::Disconnected
                    | ConnectionState::Suspended
                    | ConnectionState::Failed
            ) || (self.state == ConnectionState::Connecting
                && self.transport == Transport::None);
            if waiting {
                self.start_connecting();
            }
        }
    }

    /// The host could not get a token (its `authUrl` or `authCallback` failed). A client that
    /// was waiting for one to connect is disconnected with `reason` (Ably's 80019), and asks
    /// for one again when it next tries, after `disconnectedRetryTimeout` and on the usual
    /// backoff (RSA4c2). Returns whether it was waiting; any other client carries on with the
    /// token it has.
    pub fn token_failed(&mut self, now: u64, reason: ErrorInfo) -> bool {
        self.tick(now);
        // Connecting, or disconnected by a refused token and waiting for the next.
        let waiting = self.awaiting_token
            && self.transport == Transport::None
            && matches!(
                self.state,
                ConnectionState::Connecting | ConnectionState::Disconnected
            );
        if waiting {
            // A timed try (its state says when), not at once: asking again at once would most
            // likely fail the same way. Counted as a second attempt, so the first wait is the
            // whole `disconnectedRetryTimeout` (Ably's schedule, RTB1).
            self.awaiting_token = false;
            self.attempts = self.attempts.max(1);
            let was = self.state;
            self.lose_transport(reason.clone());
            if was == ConnectionState::Disconnected && self.state == was {
                // Disconnected already (by a refused token): said again, with why and when it
                // tries next, as an update.
                let retry_in = self.retry_in();
                self.events.push(ClientEvent::ConnectionState {
                    current: was,
                    previous: was,
                    reason: Some(reason),
                    retry_in,
                });
            }
            self.awaiting_token = true;
        }
        waiting
    }

    /// Drops the transport without `CLOSE`, as a lost network would, and stays offline for
    /// `offline_for` milliseconds (`None`: until [`Client::connect`]).
    pub fn simulate_drop(&mut self, now: u64, offline_for: Option<u64>) {
        self.tick(now);
        if matches!(
            self.state,
            ConnectionState::Closed | ConnectionState::Failed | ConnectionState::Closing
        ) {
            return;
        }
        self.offline_until = Some(offline_for.map_or(u64::MAX, |d| self.now.saturating_add(d)));
        self.lose_transport(ErrorInfo::new(
            codes::DISCONNECTED,
            408,
            "connection dropped",
        ));
    }

    /// Attaches a channel. Settles when attached.
    pub fn attach(&mut self, now: u64, channel: &str) -> OpId {
        self.attach_with(now, channel, 0)
    }

    /// Attaches a channel with modes (`flags::PRESENCE | flags::PRESENCE_SUBSCRIBE`, ...; 0:
    /// all that its credentials allow; mode flags only). A channel without `PRESENCE_SUBSCRIBE`
    /// hears only its own members: what Ably advises for a big channel whose members need not
    /// see each other. The modes hold from its next ATTACH.
    pub fn attach_with(&mut self, now: u64, channel: &str, modes: u32) -> OpId {
        self.tick(now);
        let op = self.next_op();
        let name = self.channel_entry(channel);
        let mut changed = false;
        let mut state = ChannelState::Initialized;
        if let Some(c) = self.channels.get_mut(&name) {
            changed = c.modes != modes;
            c.modes = modes;
            state = c.state;
        }
        if state == ChannelState::Attached && !changed {
            self.settle(op, Ok(()));
            return op;
        }
        if let Some(error) = self.connection_refusal() {
            self.settle(op, Err(error));
            return op;
        }
        if let Some(c) = self.channels.get_mut(&name) {
            c.attach_waiters.push(op);
        }
        // Other modes, attached or attaching: attached again with them (RTL16a).
        if changed
            && matches!(state, ChannelState::Attached | ChannelState::Attaching)
            && self.state == ConnectionState::Connected
        {
            self.send_attach(&name);
        } else {
            self.request_attach(&name);
        }
        op
    }

    /// Detaches a channel: this connection's members on it leave. Settles when detached.
    pub fn detach(&mut self, now: u64, channel: &str) -> OpId {
        self.tick(now);
        let op = self.next_op();
        let Some(c) = self.channels.get_mut(channel) else {
            self.settle(op, Ok(()));
            return op;
        };
        match c.state {
            ChannelState::Initialized | ChannelState::Detached => self.settle(op, Ok(())),
            ChannelState::Failed => self.settle(op, Err(channel_failed())),
            ChannelState::Detaching => c.detach_waiters.push(op),
            // Offline: detached at once, as Ably's (RTL5l). The hub may still hold the channel
            // for a resume: the DETACH is owed, and goes if the connection resumes (its members
            // would stay present otherwise).
            _ if self.state != ConnectionState::Connected => {
                c.detach_owed = self.connection_key.is_some();
                let name = c.name.clone();
                // What was sent on it and not acknowledged goes with it (90001), as what is
                // queued does, and is not sent again: resent after a resume, what the hub never
                // had would be applied only for the owed DETACH to undo it, and everyone would
                // see the member come and go. (The hub takes the serials that follow; what it
                // had goes with the DETACH.)
                self.in_flight.retain_mut(|sent| {
                    if sent.channel != name {
                        return true;
                    }
                    for q in &mut sent.items {
                        c.attach_waiters.extend(q.op.take());
                    }
                    false
                });
                self.detached(&name, None);
                self.settle(op, Ok(()));
            }
            _ => {
                c.detach_waiters.push(op);
                let name = c.name.clone();
                let mut events = Vec::new();
                c.set_state(ChannelState::Detaching, None, false, &mut events);
                self.events.extend(events);
                self.send_detach(name);
            }
        }
        op
    }

    /// Forgets a channel that holds nothing (initialized, detached or failed), as Ably's
    /// `channels.release`: an app that goes through many channels keeps none it let go of. One
    /// in another state is kept, and forgotten once it holds nothing (its owed DETACH answered,
    /// or detached) unless a call on it since took it up again.
    pub fn release(&mut self, channel: &str) {
        self.channels.release(channel, true);
    }

    /// Enters, updates or leaves presence on a channel. `item` carries the action, the data
    /// (already encoded for the wire, with its `encoding`) and, for `enterClient` and friends,
    /// another client's id; without one it acts as this client. Settles when the hub
    /// acknowledges it.
    pub fn presence(&mut self, now: u64, channel: &str, item: PresenceMessage) -> OpId {
        self.tick(now);
        let op = self.next_op();
        let action = item.action;
        // Without a clientId of its own the client cannot enter as itself. Before it is
        // connected only the options tell; once connected the hub's answer (a token may bind
        // the identity) does (RTP8j).
        let identity = match self.state {
            ConnectionState::Connected => self.client_id(),
            _ => self.options.client_id.as_ref(),
        };
        let anonymous = identity.is_none_or(|id| &**id == "*");
        let token_auth =
            self.options.renewable_auth || has_param(&self.options.url, "access_token");
        let known_later = self.state != ConnectionState::Connected && token_auth;
        if item.client_id.is_none() && anonymous && !known_later {
            let error = ErrorInfo::new(
                codes::INVALID_CLIENT_ID,
                400,
                "unable to use presence without a clientId",
            );
            self.settle(op, Err(error));
            return op;
        }
        if !matches!(
            action,
            PresenceAction::Enter | PresenceAction::Update | PresenceAction::Leave
        ) {
            let error = ErrorInfo::new(codes::BAD_REQUEST, 400, "invalid presence action");
            self.settle(op, Err(error));
            return op;
        }
        if let Some(error) = self.connection_refusal() {
            self.settle(op, Err(error));
            return op;
        }
        // Refused here when it cannot fit, as the hub measures (TO3l8, and its frame within
        // maxFrameSize): sent, it would be refused, or with a frame beyond the hub's, cut the
        // connection on every resend.
        let max = self.max_message_size();
        if item.size() > max || frame_size(&item) > max.saturating_mul(4) {
            let error = ErrorInfo::new(
                codes::MESSAGE_TOO_LARGE,
                400,
                "maximum message length exceeded",
            );
            self.settle(op, Err(error));
            return op;
        }
        let name = self.channel_entry(channel);
        let state = self.channels.get(&name).map(|c| c.state);
        let item = PresenceMessage {
            id: None,
            connection_id: None,
            timestamp: None,
            ..item
        };
        let queued = Queued { op: Some(op), item };
        match state {
            Some(ChannelState::Attached) => self.send_presence(&name, vec![queued]),
            Some(ChannelState::Attaching) => self.queue(&name, queued),
            Some(ChannelState::Failed) => {
                let error = ErrorInfo::new(
                    codes::CHANNEL_STATE,
                    400,
                    "unable to use presence on a failed channel",
                );
                self.settle(op, Err(error));
            }
            _ if action == PresenceAction::Leave => {
                // Leaving does not attach (RTP10).
                let error = ErrorInfo::new(
                    codes::CHANNEL_STATE,
                    400,
                    "unable to leave presence on a channel that is not attached",
                );
                self.settle(op, Err(error));
            }
            _ => {
                // Entering attaches implicitly (RTP8d).
                self.queue(&name, queued);
                self.request_attach(&name);
            }
        }
        op
    }

    // ---- inputs -------------------------------------------------------------------------------

    /// The WebSocket opened.
    pub fn handle_transport_open(&mut self, now: u64) {
        self.tick(now);
        if self.transport == Transport::Opening {
            self.transport = Transport::Open;
        }
    }

    /// A message arrived.
    pub fn handle_message(&mut self, now: u64, message: ProtocolMessage) {
        self.tick(now);
        if self.transport != Transport::Open {
            return;
        }
        self.refresh_idle_deadline();
        match message.action {
            Action::Connected => self.on_connected(message),
            // Closing, the hub letting go is as good as its CLOSED.
            Action::Disconnected if self.state == ConnectionState::Closing => self.finish_close(),
            Action::Disconnected => {
                let reason = message.error.unwrap_or_else(|| {
                    ErrorInfo::new(codes::DISCONNECTED, 503, "disconnected by the hub")
                });
                if is_token_error(&reason) && !self.options.renewable_auth {
                    // A token that expired with nothing to renew it: failed (RTN15h1).
                    return self.fail_connection(reason);
                }
                if is_token_error(&reason) {
                    return self.refused_token(reason);
                }
                self.lose_transport(reason);
            }
            Action::Auth if self.options.renewable_auth => {
                self.events.push(ClientEvent::TokenNeeded);
            }
            Action::Closed => self.finish_close(),
            // Closing, the hub refusing the connection (a connect that `close()` overtook) is
            // as good as its CLOSED: the client was asked to close, not to fail or try again.
            Action::Error
                if self.state == ConnectionState::Closing && message.channel.is_none() =>
            {
                self.finish_close()
            }
            Action::Error => self.on_error(message),
            Action::Ack => self.on_ack(message, Ok(())),
            Action::Nack => {
                let error = message.error.clone().unwrap_or_else(|| {
                    ErrorInfo::new(codes::INTERNAL, 500, "refused without a reason")
                });
                self.on_ack(message, Err(error));
            }
            // Channel messages only count on a transport the hub has accepted.
            _ if self.state != ConnectionState::Connected => {}
            Action::Attached => self.on_attached(message),
            Action::Detached => self.on_detached(message),
            Action::Presence => self.on_presence(message, false),
            Action::ConnectionStatus => self.on_connection_status(message),
            Action::Sync => self.on_presence(message, true),
            _ => {}
        }
        // The heartbeat also goes out on the hub's traffic, once half an interval is gone (or
        // half the grace window, if that is shorter): the timer of a tab in the background may
        // fire once a minute, and a hub that cannot ping (the edge) takes one and a half
        // intervals of silence for a dead link. The message handler is not held back so. And
        // the hub then hears from this client within half a grace window of the client's last
        // hearing from it, which `refresh_idle_deadline` counts on.
        if let (Some(due), Some(interval)) =
            (self.keepalive_deadline(), self.details.max_idle_interval)
        {
            // A second at least: the answer to a heartbeat is traffic too, and a slow link would
            // otherwise trade heartbeats and answers without end.
            let after = (interval.min(self.grace()) / 2).max(1_000);
            if self.transmits.is_empty()
                && due <= self.now.saturating_add(interval.saturating_sub(after))
            {
                self.transmits
                    .push_back(ProtocolMessage::new(Action::Heartbeat));
            }
        }
    }

    /// The WebSocket closed or failed to open.
    pub fn handle_transport_closed(&mut self, now: u64) {
        self.tick(now);
        if self.transport == Transport::None {
            return;
        }
        self.transport = Transport::None;
        self.transmits.clear();
        match self.state {
            ConnectionState::Closing => self.finish_close(),
            // Never connected on it: no hub there, or not one that took the connection (an app
            // that gave no address tries localhost:80, and learns that it reached nothing).
            ConnectionState::Connecting => self.lose_transport(ErrorInfo::new(
                codes::DISCONNECTED,
                408,
                "unable to connect to the hub",
            )),
            ConnectionState::Connected => self.lose_transport(ErrorInfo::new(
                codes::DISCONNECTED,
                408,
                "connection to the hub lost",
            )),
            _ => {}
        }
    }

    /// The host's timer fired. Early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: u64) {
        self.tick(now);
        let now = self.now;
        if self.request_deadline.is_some_and(|d| d <= now) {
            self.request_deadline = None;
            match self.state {
                ConnectionState::Closing => self.finish_close(),
                ConnectionState::Connecting => self.lose_transport(ErrorInfo::new(
                    codes::DISCONNECTED,
                    408,
                    "timed out waiting for the hub",
                )),
                _ => {}
            }
        }
        if self.idle_deadline.is_some_and(|d| d <= now) {
            self.idle_deadline = None;
            if self.state == ConnectionState::Connected {
                self.lose_transport(ErrorInfo::new(
                    codes::DISCONNECTED,
                    408,
                    "no activity from the hub within maxIdleInterval",
                ));
            }
        }
        if self.keepalive_deadline().is_some_and(|d| d <= now) {
            self.transmits
                .push_back(ProtocolMessage::new(Action::Heartbeat));
            self.last_sent = now;
        }
        if self.renew_token_at.is_some_and(|t| t <= now) {
            self.renew_token_at = None;
            if self.options.renewable_auth {
                self.events.push(ClientEvent::TokenNeeded);
            }
        }
        if self.offline_until.is_some_and(|t| t <= now) {
            self.offline_until = None;
        }
        if self.suspend_at().is_some_and(|t| t <= now) {
            // Offline, or waiting for a token, for as long as the hub keeps the connection: the
            // view can no longer be vouched for, and what waited fails (RTN14e).
            self.suspend(ErrorInfo::new(
                codes::DISCONNECTED,
                408,
                "disconnected for longer than connectionStateTtl",
            ));
        }
        if self.retry_at.is_some_and(|d| d <= now) && self.offline_until.is_none() {
            self.retry_at = None;
            if matches!(
                self.state,
                ConnectionState::Disconnected | ConnectionState::Suspended
            ) {
                self.start_connecting();
            }
        }
        let due: Vec<Arc<str>> = self
            .channels
            .iter()
            .filter(|c| c.deadline.is_some_and(|d| d <= now))
            .map(|c| c.name.clone())
            .collect();
        for name in due {
            self.on_channel_deadline(&name);
        }
    }

    // ---- outputs ------------------------------------------------------------------------------

    /// The next message to send on the open WebSocket.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<ProtocolMessage> {
        if self.transport != Transport::Open {
            return None;
        }
        let message = self.transmits.pop_front()?;
        self.last_sent = self.now;
        Some(message)
    }

    /// The next event for the host. Drain transmits first. Each call moves the events behind
    /// it: a host that drains many at a time (a SYNC of thousands) takes them all with
    /// [`Client::take_events`], as the Wasm build does, which keeps the browser's download
    /// free of a second queue.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }

    /// Takes every pending event at once.
    pub fn take_events(&mut self) -> Vec<ClientEvent> {
        core::mem::take(&mut self.events)
    }

    /// The most a message may hold, as the hub said (Ably's default before it has).
    pub(super) fn max_message_size(&self) -> usize {
        self.details
            .max_message_size
            .map_or(65_536, |m| usize::try_from(m).unwrap_or(usize::MAX))
    }

    /// When the client tries to connect again: not before it is back online (never, when it is
    /// offline until told to connect).
    fn next_retry(&self) -> Option<u64> {
        self.retry_at
            .map(|r| r.max(self.offline_until.unwrap_or(0)))
            .filter(|&r| r != u64::MAX)
    }

    /// In how many milliseconds the client tries to connect again, if it will.
    pub(super) fn retry_in(&self) -> Option<u64> {
        if self.awaiting_token {
            return None;
        }
        self.next_retry().map(|r| r.saturating_sub(self.now))
    }

    /// When to call [`Client::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        let retry = self.next_retry();
        let offline = self.offline_until.filter(|&t| t != u64::MAX);
        [
            self.request_deadline,
            retry,
            self.idle_deadline,
            offline,
            self.keepalive_deadline(),
            self.renew_token_at,
            self.suspend_at(),
        ]
        .into_iter()
        .chain(self.channels.iter().map(|c| c.deadline))
        .flatten()
        .min()
    }

    // ---- reading ------------------------------------------------------------------------------

    /// How long the hub keeps this client's members present after a drop: what it said, else
    /// what the client asked for.
    fn grace(&self) -> u64 {
        self.details
            .remain_present_for
            .unwrap_or(self.options.remain_present_for)
    }

    /// Silence from the hub for `maxIdleInterval` and an allowance means the link is dead
    /// (RTN23a). The allowance is `realtimeRequestTimeout` (Ably's), but at most half of what
    /// the hub allows past the interval before the members leave (its margin, max(interval / 2,
    /// 1 s), and `remainPresentFor`), so that a link that dies silently is noticed, and resumed,
    /// before anyone sees a leave; and 2 s at least, as the hub's keep-alive may come up to a
    /// second past the interval. (The hub counts from what it last heard from this client,
    /// which is within half a grace window (a second at least) of what this client last heard:
    /// see the heartbeat sent on the hub's traffic. So, with a grace of 2 s or more, it lets the
    /// members go after this client has noticed; at the least grace, 1 s, not always.)
    fn refresh_idle_deadline(&mut self) {
        if let Some(idle) = self.details.max_idle_interval.filter(|&i| i > 0) {
            let hub_allows = (idle / 2).max(1_000).saturating_add(self.grace());
            let allowance = (hub_allows / 2)
                .max(2_000)
                .min(self.options.realtime_request_timeout);
            self.idle_deadline = Some(self.now.saturating_add(idle).saturating_add(allowance));
        }
    }

    /// When to send a heartbeat, if the connection stays quiet.
    fn keepalive_deadline(&self) -> Option<u64> {
        if self.state != ConnectionState::Connected || self.transport != Transport::Open {
            return None;
        }
        let interval = self.details.max_idle_interval.filter(|&i| i > 0)?;
        Some(
            self.last_sent
                .max(self.connected_at)
                .saturating_add(interval),
        )
    }

    /// The connection state.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// The connection id, once connected.
    pub fn connection_id(&self) -> Option<&Arc<str>> {
        self.connection_id.as_ref()
    }

    /// The connection's identity as the hub reported it.
    pub fn client_id(&self) -> Option<&Arc<str>> {
        self.details
            .client_id
            .as_ref()
            .or(self.options.client_id.as_ref())
    }

    /// The key that resumes this connection.
    pub fn connection_key(&self) -> Option<&Arc<str>> {
        self.connection_key.as_ref()
    }

    /// The serial the next presence message gets: with [`Client::connection_key`], what a
    /// recovery key holds.
    pub fn msg_serial(&self) -> i64 {
        self.msg_serial
    }

    /// Takes over the connection of an earlier client (a page before a reload, a process
    /// before a restart) from its recovery key, if the hub still holds it (RTN16): no leave
    /// and no enter for its members. The first connection asks with `recover`; messages
    /// continue from `msg_serial`, so that the hub does not take them for resends. Only
    /// before the client first connects; a hub that no longer knows the key answers with an
    /// error and a new connection.
    pub fn recover(&mut self, connection_key: &str, msg_serial: i64) {
        if self.state == ConnectionState::Initialized && !connection_key.is_empty() {
            self.connection_key = Some(Arc::from(connection_key));
            self.msg_serial = msg_serial.max(0);
            self.recovering = true;
        }
    }

    /// A channel's state.
    pub fn channel_state(&self, channel: &str) -> ChannelState {
        self.channels
            .get(channel)
            .map_or(ChannelState::Initialized, |c| c.state)
    }

    /// The present members of a channel, as this client sees them.
    pub fn members(&self, channel: &str) -> Vec<&PresenceMessage> {
        self.channels
            .get(channel)
            .map(|c| c.members.members().collect())
            .unwrap_or_default()
    }

    /// The present members of a channel with this client id: the devices of one user.
    pub fn devices<'a>(&'a self, channel: &str, client_id: &'a str) -> Vec<&'a PresenceMessage> {
        self.channels
            .get(channel)
            .map(|c| c.members.devices(client_id).collect())
            .unwrap_or_default()
    }

    /// The connections whose members are in their grace window, as the hub reported them.
    pub fn lost_connections(&self, channel: &str) -> &[Arc<str>] {
        self.channels.get(channel).map_or(&[], |c| &c.lost)
    }

    /// The `channelSerial` of the channel's last ATTACHED, while it is attached: the hub's
    /// history up to it is what happened before this client heard the channel live.
    pub fn attach_serial(&self, channel: &str) -> Option<&Arc<str>> {
        self.channels
            .get(channel)
            .filter(|c| c.state == ChannelState::Attached)
            .and_then(|c| c.attach_serial.as_ref())
    }

    /// Whether the channel's view is complete: attached and not in the middle of a SYNC.
    pub fn sync_complete(&self, channel: &str) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|c| c.state == ChannelState::Attached && !c.members.sync_in_progress())
    }
}

/// How far ahead a token's renewal must be, at the least, to be scheduled (see
/// [`Client::set_token`]).
const MIN_RENEW_AHEAD: u64 = 1_000;

/// Why operations fail, and what the connection's and its channels' changes say, once it is
/// closing or closed (80017, as Ably's).
fn closed_reason() -> ErrorInfo {
    ErrorInfo::new(codes::CONNECTION_CLOSED, 400, "connection closed")
}

/// Whether an error is a token problem (40140–40149), which a new token can fix.
fn is_token_error(error: &ErrorInfo) -> bool {
    (40140..=40149).contains(&error.code)
}

fn presence_message(channel: &Arc<str>, serial: i64, items: &[Queued]) -> ProtocolMessage {
    let mut message = ProtocolMessage::for_channel(Action::Presence, channel.clone());
    message.msg_serial = Some(serial);
    message.presence = Some(items.iter().map(|q| q.item.clone()).collect());
    message
}

/// Why what was waiting on a failed channel fails.
fn channel_failed() -> ErrorInfo {
    ErrorInfo::new(codes::CHANNEL_STATE, 400, "channel failed")
}
