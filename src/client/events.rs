//! The client's public vocabulary: connection states, operation handles, events, options.

use crate::prelude::*;
use alloc::sync::Arc;

use super::ChannelState;
use crate::protocol::{ErrorInfo, PresenceMessage};

/// The state of the connection, with Ably's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Created, not yet connecting.
    Initialized,
    /// Opening a transport and waiting for `CONNECTED`.
    Connecting,
    /// Connected.
    Connected,
    /// The transport was lost; retrying, with resume.
    Disconnected,
    /// Disconnected for longer than the connection state lasts; retrying less often.
    Suspended,
    /// `CLOSE` sent.
    Closing,
    /// Closed by the client.
    Closed,
    /// Refused by the hub.
    Failed,
}

impl ConnectionState {
    /// Ably's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            Self::Initialized => "initialized",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
            Self::Suspended => "suspended",
            Self::Closing => "closing",
            Self::Closed => "closed",
            Self::Failed => "failed",
        }
    }
}

/// A handle on an operation (attach, detach, a presence operation) whose outcome is reported by
/// [`ClientEvent::Settled`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpId(pub u32);

/// What the client tells its host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// Open a WebSocket to this URL; report `handle_transport_open` or `_closed`.
    OpenTransport {
        /// The URL, with `resume=` when the client resumes.
        url: String,
    },
    /// Close the WebSocket (after sending what was drained before this event).
    CloseTransport,
    /// The connection changed state.
    ConnectionState {
        /// The new state.
        current: ConnectionState,
        /// The state before.
        previous: ConnectionState,
        /// Why, when there is a reason.
        reason: Option<ErrorInfo>,
        /// In how many milliseconds the client tries to connect again (disconnected or
        /// suspended, Ably's `retryIn`).
        retry_in: Option<u64>,
    },
    /// A channel changed state (or, with `current == previous`, an update such as a failed
    /// re-entry).
    ChannelState {
        /// The channel.
        channel: Arc<str>,
        /// The new state.
        current: ChannelState,
        /// The state before.
        previous: ChannelState,
        /// Why, when there is a reason.
        reason: Option<ErrorInfo>,
        /// Whether continuity was kept (ATTACHED with RESUMED).
        resumed: bool,
    },
    /// A presence event: the view changed.
    Presence {
        /// The channel.
        channel: Arc<str>,
        /// The event, with its original action (`enter`, `update`, `present`, `leave`).
        message: PresenceMessage,
    },
    /// A SYNC completed: the view is the hub's set.
    SyncComplete {
        /// The channel.
        channel: Arc<str>,
    },
    /// A client id came online (its first device) or went offline (its last device left).
    ClientPresence {
        /// The channel.
        channel: Arc<str>,
        /// The client id.
        client_id: Arc<str>,
        /// Whether it is now online.
        online: bool,
        /// Whether this was learned from the SYNC after an attach (the client id was already
        /// online) rather than happening now.
        initial: bool,
    },
    /// A member's connection was lost (its members stay for their grace window and may come
    /// back) or is back. From rollcall hubs only.
    ConnectionStatus {
        /// The channel.
        channel: Arc<str>,
        /// The connection.
        connection_id: Arc<str>,
        /// Whether it is lost (rather than back).
        lost: bool,
        /// Learned on attaching (the hub tells of every connection in its grace window before
        /// the ATTACHED) or from what an attach no longer repeats, rather than seen happen.
        initial: bool,
    },
    /// Get a new token and hand it to [`crate::client::Client::set_token`]: the current one is
    /// about to expire, the hub asked for a renewal, or it refused the token.
    TokenNeeded,
    /// An operation finished.
    Settled {
        /// The operation.
        op: OpId,
        /// Its outcome.
        result: Result<(), ErrorInfo>,
    },
}

/// How a client connects and how patient it is. Times are in milliseconds.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The connect URL with its query (`ws://host:port/?key=…&clientId=…&v=6…`), without
    /// `resume`, which the client adds.
    pub url: String,
    /// The client id, when the client has one (`None` or `*` cannot enter with `enter()`).
    pub client_id: Option<Arc<str>>,
    /// How long to wait for `CONNECTED`, `ATTACHED`, `DETACHED` or `CLOSED`.
    pub realtime_request_timeout: u64,
    /// The base of the backoff between reconnection attempts (after the first, immediate one).
    pub disconnected_retry_timeout: u64,
    /// How often a suspended connection retries.
    pub suspended_retry_timeout: u64,
    /// How long a suspended channel waits before attaching again.
    pub channel_retry_timeout: u64,
    /// A seed for the jitter of retries.
    pub seed: u64,
    /// Whether the host can get new tokens (`authUrl`, `authCallback`): then token errors ask
    /// for one ([`ClientEvent::TokenNeeded`]) instead of failing the connection.
    pub renewable_auth: bool,
    /// The `remainPresentFor` it asks of the hub (`transportParams`; the hub's default is
    /// Ably's 15 s): while its members are held for it after a drop, it retries more often.
    pub remain_present_for: u64,
}

impl ClientOptions {
    /// Options with Ably's timeouts.
    pub fn new(url: impl Into<String>, client_id: Option<&str>) -> Self {
        Self {
            url: url.into(),
            client_id: client_id.map(Arc::from),
            realtime_request_timeout: 10_000,
            disconnected_retry_timeout: 15_000,
            suspended_retry_timeout: 30_000,
            channel_retry_timeout: 15_000,
            seed: 0x5eed,
            renewable_auth: false,
            remain_present_for: 15_000,
        }
    }
}
