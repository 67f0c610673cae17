//! The wire types of the Ably realtime protocol, version 6, as far as presence needs them.
//!
//! Every field the protocol makes optional is an `Option` here, so that absent and `null` fields
//! read alike. The codec (`protocol::json`, behind the `codec` feature) maps these types to and
//! from JSON; the browser client builds them from objects parsed by the host's `JSON.parse`.

use crate::prelude::*;
#[cfg(feature = "codec")]
use alloc::collections::BTreeMap;
use alloc::sync::Arc;

use super::ErrorInfo;

/// The action of a [`ProtocolMessage`] (the spec's TR2), numbered as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// 0: keep-alive, or a ping with an `id` that is echoed back.
    Heartbeat,
    /// 1: acknowledges `count` messages from `msgSerial` on.
    Ack,
    /// 2: refuses `count` messages from `msgSerial` on, with an `error`.
    Nack,
    /// 3: unused by clients.
    Connect,
    /// 4: the connection is established (or resumed).
    Connected,
    /// 5: the client is tearing down its transport (an abrupt drop for presence).
    Disconnect,
    /// 6: the server is closing the transport; the client may resume.
    Disconnected,
    /// 7: graceful close requested by the client.
    Close,
    /// 8: reply to `Close`.
    Closed,
    /// 9: an error; without `channel` it ends the connection.
    Error,
    /// 10: attach to a channel.
    Attach,
    /// 11: the channel is attached.
    Attached,
    /// 12: detach from a channel.
    Detach,
    /// 13: the channel is detached.
    Detached,
    /// 14: presence messages.
    Presence,
    /// 15: channel messages (not carried by a presence hub).
    Message,
    /// 16: a page of the presence set.
    Sync,
    /// 17: re-authentication.
    Auth,
    /// 100, a rollcall extension sent only to rollcall clients: in `presence`, items that each
    /// name a connection, `absent` when it was lost (its members stay for their grace window),
    /// `present` when it is back.
    ConnectionStatus,
    /// Any other number: read and ignored, as the spec asks (RSF1).
    Unknown(u64),
}

impl Action {
    /// The action for a wire number.
    pub fn from_number(n: u64) -> Self {
        match n {
            0 => Self::Heartbeat,
            1 => Self::Ack,
            2 => Self::Nack,
            3 => Self::Connect,
            4 => Self::Connected,
            5 => Self::Disconnect,
            6 => Self::Disconnected,
            7 => Self::Close,
            8 => Self::Closed,
            9 => Self::Error,
            10 => Self::Attach,
            11 => Self::Attached,
            12 => Self::Detach,
            13 => Self::Detached,
            14 => Self::Presence,
            15 => Self::Message,
            16 => Self::Sync,
            17 => Self::Auth,
            100 => Self::ConnectionStatus,
            other => Self::Unknown(other),
        }
    }

    /// The wire number of this action.
    pub fn number(self) -> u64 {
        match self {
            Self::Heartbeat => 0,
            Self::Ack => 1,
            Self::Nack => 2,
            Self::Connect => 3,
            Self::Connected => 4,
            Self::Disconnect => 5,
            Self::Disconnected => 6,
            Self::Close => 7,
            Self::Closed => 8,
            Self::Error => 9,
            Self::Attach => 10,
            Self::Attached => 11,
            Self::Detach => 12,
            Self::Detached => 13,
            Self::Presence => 14,
            Self::Message => 15,
            Self::Sync => 16,
            Self::Auth => 17,
            Self::ConnectionStatus => 100,
            Self::Unknown(n) => n,
        }
    }
}

/// Channel and message flags (the spec's TR3): flag `n` is set when `flags & (1 << n)` is.
pub mod flags {
    /// The channel has members; a SYNC follows the ATTACHED.
    pub const HAS_PRESENCE: u64 = 1 << 0;
    /// The channel has a message backlog.
    pub const HAS_BACKLOG: u64 = 1 << 1;
    /// Continuity was kept for this connection and channel.
    pub const RESUMED: u64 = 1 << 2;
    /// On a `ConnectionStatus` frame (rollcall's own): the statuses in force as the channel
    /// attached, told with the attach, rather than changes as they happen.
    pub const AS_OF_ATTACH: u64 = 1 << 2;
    /// ATTACH: a re-attach after a resume, with the view the client holds (its
    /// `channelSerial` says how far it heard the channel).
    pub const ATTACH_RESUME: u64 = 1 << 5;
    /// Mode: may enter presence.
    pub const PRESENCE: u64 = 1 << 16;
    /// Mode: may publish messages.
    pub const PUBLISH: u64 = 1 << 17;
    /// Mode: receives messages.
    pub const SUBSCRIBE: u64 = 1 << 18;
    /// Mode: receives presence events.
    pub const PRESENCE_SUBSCRIBE: u64 = 1 << 19;
    /// Every mode a presence channel grants.
    pub const ALL_MODES: u64 = PRESENCE | PUBLISH | SUBSCRIBE | PRESENCE_SUBSCRIBE;
    /// The mode bits of a flags word.
    pub const MODE_MASK: u64 = 0xFFFF_0000;
}

/// The action of a [`PresenceMessage`] (the spec's TP2), numbered as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PresenceAction {
    /// 0: a tombstone, only inside a client's map during a SYNC; never emitted.
    Absent,
    /// 1: a member of the set, as listed by SYNC.
    Present,
    /// 2: a member entered.
    Enter,
    /// 3: a member left.
    Leave,
    /// 4: a member changed its data.
    Update,
}

impl PresenceAction {
    /// The action for a wire number, or `None` for a number the protocol does not define.
    pub fn from_number(n: u64) -> Option<Self> {
        Some(match n {
            0 => Self::Absent,
            1 => Self::Present,
            2 => Self::Enter,
            3 => Self::Leave,
            4 => Self::Update,
            _ => return None,
        })
    }

    /// The wire number of this action.
    pub fn number(self) -> u64 {
        match self {
            Self::Absent => 0,
            Self::Present => 1,
            Self::Enter => 2,
            Self::Leave => 3,
            Self::Update => 4,
        }
    }

    /// The name used by Ably's JavaScript API (`'enter'`, `'leave'`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Absent => "absent",
            Self::Present => "present",
            Self::Enter => "enter",
            Self::Leave => "leave",
            Self::Update => "update",
        }
    }

    /// The action for an API name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "absent" => Self::Absent,
            "present" => Self::Present,
            "enter" => Self::Enter,
            "leave" => Self::Leave,
            "update" => Self::Update,
            _ => return None,
        })
    }
}

/// The payload of a presence message, kept as it arrived so that it is forwarded unchanged.
///
/// Object data travels as JSON text with `encoding: "json"` (as ably-js sends it), so a hub never
/// needs to look inside. Raw bytes only arrive over msgpack; JSON connections receive them as
/// base64 with `base64` appended to the encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    /// A string, possibly carrying an `encoding` (`json`, `base64`, ...).
    String(Arc<str>),
    /// Raw bytes.
    Binary(Arc<[u8]>),
    /// Any other JSON value (number, object, array, boolean), as its JSON text.
    Json(Arc<str>),
}

impl Data {
    /// Its size in a JSON frame, roughly: the text, or the bytes as base64.
    pub fn json_len(&self) -> usize {
        match self {
            Data::String(s) | Data::Json(s) => s.len(),
            Data::Binary(b) => b.len().div_ceil(3) * 4,
        }
    }

    /// Its size as Ably counts it against `maxMessageSize` (TO3l8): the text's bytes, or the
    /// binary's.
    pub fn size(&self) -> usize {
        match self {
            Data::String(s) | Data::Json(s) => s.len(),
            Data::Binary(b) => b.len(),
        }
    }
}

/// Opaque JSON (a message's `extras`), kept as its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawJson(pub Arc<str>);

/// A presence message (the spec's TP3).
#[cfg_attr(
    feature = "codec",
    derive(serde::Deserialize),
    serde(rename_all = "camelCase")
)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceMessage {
    /// `connectionId:msgSerial:index` for events a client caused; anything else is synthesized.
    pub id: Option<Arc<str>>,
    /// What happened.
    pub action: PresenceAction,
    /// The member's client id.
    pub client_id: Option<Arc<str>>,
    /// The member's connection id.
    pub connection_id: Option<Arc<str>>,
    /// The member's data.
    pub data: Option<Data>,
    /// The transforms applied to `data`, such as `json` or `base64`.
    pub encoding: Option<Arc<str>>,
    /// Opaque metadata.
    pub extras: Option<RawJson>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
}

impl PresenceMessage {
    /// Its size as Ably counts it against `maxMessageSize` (TO3l8): its data, clientId and
    /// extras. Binary data counts as its bytes, also when a JSON frame carries it as base64.
    pub fn size(&self) -> usize {
        let data = match (&self.data, self.encoding.as_deref()) {
            // Three bytes for every four characters (its padding, one or two characters, counts
            // for a byte or two: smaller for the browser than counting it off).
            (Some(Data::String(text)), Some(encoding)) if encoding.ends_with("base64") => {
                text.len() * 3 / 4
            }
            (data, _) => data.as_ref().map_or(0, Data::size),
        };
        data + self.client_id.as_deref().map_or(0, str::len)
            + self.extras.as_ref().map_or(0, |e| e.0.len())
    }

    /// A message with an action and nothing else.
    pub fn new(action: PresenceAction) -> Self {
        Self {
            id: None,
            action,
            client_id: None,
            connection_id: None,
            data: None,
            encoding: None,
            extras: None,
            timestamp: None,
        }
    }
}

/// What the server tells a client about its connection (the spec's CD2).
#[cfg_attr(
    feature = "codec",
    derive(serde::Deserialize),
    serde(rename_all = "camelCase")
)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionDetails {
    /// The identity of the connection: a client id, `*` (may act as anyone) or none.
    pub client_id: Option<Arc<str>>,
    /// The secret that resumes this connection. Distinct from the connection id.
    pub connection_key: Option<Arc<str>>,
    /// The largest message the server accepts, in bytes.
    pub max_message_size: Option<u64>,
    /// The largest frame the server accepts, in bytes.
    pub max_frame_size: Option<u64>,
    /// Messages per second the server accepts from this connection.
    pub max_inbound_rate: Option<u64>,
    /// The longest the server stays silent, in milliseconds.
    pub max_idle_interval: Option<u64>,
    /// How long a dropped connection can be resumed, in milliseconds.
    pub connection_state_ttl: Option<u64>,
    /// Which server this is (for debugging).
    pub server_id: Option<Arc<str>>,
    /// How long the hub keeps this connection's members present after its transport drops, in
    /// milliseconds (rollcall's own: other clients ignore it).
    pub remain_present_for: Option<u64>,
}

/// Credentials sent with an `AUTH` message.
#[cfg_attr(
    feature = "codec",
    derive(serde::Deserialize),
    serde(rename_all = "camelCase")
)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthDetails {
    /// The new access token.
    pub access_token: Option<Arc<str>>,
}

/// One frame of the realtime protocol (the spec's TR4).
#[cfg_attr(
    feature = "codec",
    derive(serde::Deserialize),
    serde(rename_all = "camelCase")
)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolMessage {
    /// What the message does.
    pub action: Action,
    /// The message id.
    pub id: Option<Arc<str>>,
    /// The channel it concerns.
    pub channel: Option<Arc<str>>,
    /// A channel position: a SYNC cursor (`syncId:cursor`) or an attach point.
    pub channel_serial: Option<Arc<str>>,
    /// The connection it came from.
    pub connection_id: Option<Arc<str>>,
    /// Connection details (in `CONNECTED`).
    pub connection_details: Option<ConnectionDetails>,
    /// The serial of the first message acknowledged, or of a message a client sends.
    pub msg_serial: Option<i64>,
    /// How many messages an ACK or NACK covers.
    pub count: Option<u64>,
    /// An error.
    pub error: Option<ErrorInfo>,
    /// Flags (see [`flags`]).
    pub flags: Option<u64>,
    /// Presence messages.
    pub presence: Option<Vec<PresenceMessage>>,
    /// Credentials (in `AUTH`).
    pub auth: Option<AuthDetails>,
    /// Channel parameters. The client never sends them, so its build leaves them out. Values
    /// are strings in Ably's protocol; ably-js sends what the app gave (`{ rewind: 1 }`), so any
    /// JSON value is taken rather than the frame refused.
    #[cfg(feature = "codec")]
    pub params: Option<BTreeMap<String, serde_json::Value>>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
}

impl ProtocolMessage {
    /// A message with an action and nothing else.
    pub fn new(action: Action) -> Self {
        Self {
            action,
            id: None,
            channel: None,
            channel_serial: None,
            connection_id: None,
            connection_details: None,
            msg_serial: None,
            count: None,
            error: None,
            flags: None,
            presence: None,
            auth: None,
            #[cfg(feature = "codec")]
            params: None,
            timestamp: None,
        }
    }

    /// A message for a channel.
    pub fn for_channel(action: Action, channel: Arc<str>) -> Self {
        Self {
            channel: Some(channel),
            ..Self::new(action)
        }
    }

    /// Whether a flag (see [`flags`]) is set.
    pub fn has_flag(&self, flag: u64) -> bool {
        self.flags.unwrap_or(0) & flag != 0
    }
}
