//! Hub settings, with Ably's defaults.

use std::sync::Arc;

use super::auth::Capability;

/// An API key: `appId.keyId:secret`. The part before the colon is the key's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// `appId.keyId`.
    pub name: Arc<str>,
    /// The secret that proves the key.
    pub secret: Arc<str>,
    /// What connections made with the key (and tokens it signs, unless they say less) may do.
    pub capability: Capability,
}

impl ApiKey {
    /// Reads `appId.keyId:secret`.
    pub fn parse(text: &str) -> Option<Self> {
        let (name, secret) = text.trim().split_once(':')?;
        if name.is_empty() || secret.is_empty() {
            return None;
        }
        Some(Self {
            name: Arc::from(name),
            secret: Arc::from(secret),
            capability: Capability::all(),
        })
    }

    /// Reads a comma-separated list of keys, as `ROLLCALL_KEYS` holds them. The error names the
    /// first entry that is not a key by its place in the list and what comes before its first
    /// `:`, never by the rest: a mistyped entry may hold a secret, and errors go to logs.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        text.split(',')
            .filter(|k| !k.trim().is_empty())
            .enumerate()
            .map(|(i, k)| {
                Self::parse(k).ok_or_else(|| format!("entry {} ({})", i + 1, Self::unreadable(k)))
            })
            .collect()
    }

    /// What may be said of text that is not a key: the name before its first `:`, never the
    /// rest (a mistyped entry may hold a secret, and errors go to logs).
    pub fn unreadable(text: &str) -> String {
        match text.trim().split_once(':') {
            Some((name, _)) => format!("named {}", name.trim()),
            None => "no `:` in it".to_owned(),
        }
    }
}

/// How a hub behaves. `HubConfig::default()` is Ably's behaviour with rollcall's generous
/// limits.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Named in `connectionDetails.serverId` and in the ids of the leaves the hub makes.
    pub server_id: Arc<str>,
    /// The keys that may connect. Empty: development mode, where any key and any client id are
    /// accepted.
    pub keys: Vec<ApiKey>,
    /// The largest presence message accepted, in bytes of the frame (40009 beyond it), and the
    /// largest SYNC page sent.
    pub max_message_size: usize,
    /// How long a dropped connection can be resumed, in milliseconds.
    pub connection_state_ttl: u64,
    /// How long the members of a dropped connection stay, unless the connection asks otherwise.
    pub remain_present_for: u64,
    /// The heartbeat period, unless the connection asks otherwise: how fast a dead connection
    /// is noticed.
    pub heartbeat_interval: u64,
    /// How long presence events stay in history, in milliseconds.
    pub history_ttl: u64,
    /// The most presence events kept per channel.
    pub history_limit: usize,
    /// The most memory the history of all channels together may hold, roughly, in bytes: beyond
    /// it the oldest events anywhere are dropped, so that no client can make the hub run out of
    /// memory by spreading events over channels.
    pub max_history_bytes: u64,
    /// The most members a channel may have (91003 beyond it).
    pub max_members_per_channel: usize,
    /// The most memory the members of all channels together may hold, roughly, in bytes (as
    /// history counts an event): beyond it an enter or an update that adds to it is refused
    /// (91003), so that a few connections with large data cannot make the hub run out of memory.
    pub max_member_bytes: u64,
    /// The most memory the members of one clientId that a token names may hold, across all its
    /// connections and channels, roughly, in bytes (91003 beyond it), so that one token holder
    /// cannot take `maxMemberBytes` from everyone else. Counted as `maxConnectionsPerClient`
    /// counts: a token that names no clientId, or `*`, as itself; connections made with a key
    /// (servers) and in development mode are not counted.
    pub max_member_bytes_per_client: u64,
    /// The most channels one connection may attach (90010 beyond it).
    pub max_channels_per_connection: usize,
    /// How many frames a dropped connection may have waiting for its resume before they are
    /// given up (the resumed client then relies on the SYNC that follows its re-attach).
    pub replay_limit: usize,
    /// How many bytes of frames a dropped connection may have waiting, likewise: a few large
    /// events are as much to hold as many small ones.
    pub replay_bytes: usize,
    /// How many bytes of frames all dropped connections together may have waiting: past it, a
    /// dropped connection's frames are given up as past its own limits (its resume re-syncs),
    /// so that many dropped connections cannot hold the hub's memory between them.
    pub max_replay_bytes: usize,
    /// Whether the host can send WebSocket pings (Node can; a Durable Object cannot). Without
    /// pings, keep-alives are protocol `HEARTBEAT`s, and only connections that show they send
    /// heartbeats themselves are dropped for silence; the others are dropped when their socket
    /// closes.
    pub host_pings: bool,
    /// The most connections the hub holds (40150 beyond it).
    pub max_connections: usize,
    /// The most connections the hub holds for one clientId that a token names (40150 beyond
    /// it): a user's devices, not a way for one token to take the hub's places. A token that
    /// names no clientId, or `*`, is counted as itself. Connections made with a key (servers)
    /// and in development mode are not counted.
    pub max_connections_per_client: usize,
    /// Presence messages per second a connection may send, in bursts of up to twice that plus
    /// `max_channels_per_connection` (42910 beyond it; a connection that keeps flooding is
    /// closed with 42920). Its other frames have a budget of their own, twenty times the rate
    /// (Ably allows a connection 2 000 protocol messages a second), and are always answered:
    /// past it, on credit of a second's worth, and past that held until the budget fills
    /// again; only a flood of them (more than a second's worth held) closes the connection.
    pub max_inbound_rate: u32,
    /// Whether to record changes for durable storage ([`crate::hub::Hub::take_changes`]).
    pub persistence: bool,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            server_id: Arc::from("rollcall"),
            keys: Vec::new(),
            max_message_size: 65_536,
            connection_state_ttl: 120_000,
            remain_present_for: 15_000,
            heartbeat_interval: 15_000,
            history_ttl: 120_000,
            history_limit: 10_000,
            max_history_bytes: 128 * 1024 * 1024,
            max_members_per_channel: 20_000,
            max_member_bytes: 512 * 1024 * 1024,
            max_channels_per_connection: 200,
            replay_limit: 1_000,
            replay_bytes: 1024 * 1024,
            max_replay_bytes: 64 * 1024 * 1024,
            host_pings: true,
            persistence: false,
            max_connections: 50_000,
            max_connections_per_client: 100,
            max_member_bytes_per_client: 16 * 1024 * 1024,
            max_inbound_rate: 100,
        }
    }
}

/// The shortest `remainPresentFor` a connection may ask for.
pub const MIN_REMAIN_PRESENT_FOR: u64 = 1_000;
/// The longest `remainPresentFor` a connection may ask for.
pub const MAX_REMAIN_PRESENT_FOR: u64 = 3_600_000;
/// The shortest `heartbeatInterval` a connection may ask for.
pub const MIN_HEARTBEAT_INTERVAL: u64 = 1_000;
/// The longest `heartbeatInterval` a connection may ask for.
pub const MAX_HEARTBEAT_INTERVAL: u64 = 1_800_000;

impl HubConfig {
    /// The largest frame a client may send (`connectionDetails.maxFrameSize`): room for a
    /// message of `maxMessageSize` with its escapes and envelope.
    pub fn max_frame_size(&self) -> usize {
        self.max_message_size.saturating_mul(4)
    }

    /// Whether keys are checked.
    pub fn development_mode(&self) -> bool {
        self.keys.is_empty()
    }
}

/// How long after its heartbeat interval a silent connection is given to answer a ping before
/// it is treated as dropped: half the interval, at least one second.
pub fn liveness_margin(heartbeat_interval: u64) -> u64 {
    (heartbeat_interval / 2).max(1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys() {
        let keys = ApiKey::parse_list("app.k1:s1, app.k2:s:2,").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(&*keys[1].name, "app.k2");
        assert_eq!(&*keys[1].secret, "s:2");
        // The error never repeats what may be a secret.
        assert_eq!(
            ApiKey::parse_list("app.k1:s1,s3cr3t"),
            Err("entry 2 (no `:` in it)".to_owned())
        );
        assert_eq!(
            ApiKey::parse_list("app.k1:s1, app.k2 s3cr3t"),
            Err("entry 2 (no `:` in it)".to_owned())
        );
        assert_eq!(
            ApiKey::parse_list(":s3cr3t"),
            Err("entry 1 (named )".to_owned())
        );
    }
}
