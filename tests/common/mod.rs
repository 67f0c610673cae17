//! A simulated world for the hub: a virtual clock, peers that speak raw protocol frames, and a
//! seeded random source. Nothing sleeps; every loop is bounded.

#![allow(dead_code, unreachable_pub)]

pub mod world;

use std::collections::{HashMap, HashSet};

use rollcall::hub::{Hub, HubConfig, HubEvent, RestRequest, RestResponse, TransportId};
use rollcall::protocol::{json, Action, PresenceAction, PresenceMessage, ProtocolMessage};
use serde_json::{json, Value};

/// The start of simulated time: a plausible epoch time in milliseconds.
pub const T0: u64 = 1_700_000_000_000;

/// A small seeded generator (xorshift64*), enough for ids and fault schedules.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn entropy(&mut self) -> [u8; 24] {
        let mut out = [0; 24];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes()[..chunk.len()]);
        }
        out
    }
}

/// One WebSocket as a test sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer(pub TransportId);

/// The hub and its peers, in simulated time.
pub struct Sim {
    pub hub: Hub,
    pub now: u64,
    pub rng: Rng,
    next_transport: u32,
    inbox: HashMap<TransportId, Vec<ProtocolMessage>>,
    /// The size in bytes of every frame each transport received.
    pub sizes: HashMap<TransportId, Vec<usize>>,
    closed: HashSet<TransportId>,
    /// Peers that do not answer pings (frozen processes).
    pub frozen: HashSet<TransportId>,
    pub pings: Vec<(u64, TransportId)>,
    /// Durable storage, as a host keeps it from the hub's changes (when persistence is on).
    pub store: std::collections::BTreeMap<String, Vec<u8>>,
}

impl Sim {
    pub fn new(config: HubConfig) -> Self {
        Self::seeded(config, 1)
    }

    pub fn seeded(config: HubConfig, seed: u64) -> Self {
        Self {
            hub: Hub::new(config),
            now: T0,
            rng: Rng::new(seed),
            next_transport: 0,
            inbox: HashMap::new(),
            sizes: HashMap::new(),
            closed: HashSet::new(),
            frozen: HashSet::new(),
            pings: Vec::new(),
            store: Default::default(),
        }
    }

    /// Opens a WebSocket with this query and returns the peer and its first message.
    pub fn open(&mut self, query: &str) -> (Peer, ProtocolMessage) {
        self.next_transport += 1;
        let transport = TransportId(self.next_transport);
        let entropy = self.rng.entropy();
        self.hub.handle_open(self.now, transport, query, entropy);
        self.drain();
        let peer = Peer(transport);
        let inbox = self.inbox.entry(transport).or_default();
        assert!(!inbox.is_empty(), "a first message");
        let first = inbox.remove(0);
        (peer, first)
    }

    /// Opens a connection that must succeed; returns the peer and its `CONNECTED`.
    pub fn connect(&mut self, query: &str) -> (Peer, ProtocolMessage) {
        let (peer, first) = self.open(query);
        assert_eq!(first.action, Action::Connected, "{first:?}");
        (peer, first)
    }

    /// Connects and attaches to a channel, discarding the replies.
    pub fn join(&mut self, query: &str, channel: &str) -> (Peer, String) {
        let (peer, connected) = self.connect(query);
        self.send(peer, json!({"action": 10, "channel": channel}));
        let replies = self.take(peer);
        assert_eq!(replies[0].action, Action::Attached, "{replies:?}");
        (peer, connected.connection_id.unwrap().to_string())
    }

    /// Connects and attaches to a channel with these mode flags (0: the default); returns the
    /// peer and the ATTACHED's `channelSerial` (what `untilAttach` sends as `from_serial`).
    pub fn attach_with(&mut self, query: &str, channel: &str, flags: u64) -> (Peer, String) {
        let (peer, _) = self.connect(query);
        let attach = if flags == 0 {
            json!({"action": 10, "channel": channel})
        } else {
            json!({"action": 10, "channel": channel, "flags": flags})
        };
        self.send(peer, attach);
        let replies = self.take(peer);
        assert_eq!(replies[0].action, Action::Attached, "{replies:?}");
        (
            peer,
            replies[0].channel_serial.as_deref().unwrap().to_owned(),
        )
    }

    /// A REST read (`GET`) of the hub, as a client that takes JSON and gives no credentials
    /// sends it.
    pub fn get(&mut self, url: &str) -> RestResponse {
        let request = RestRequest {
            method: "GET",
            url,
            authorization: None,
            accept: Some("application/json"),
            origin: None,
            body: &[],
        };
        self.hub
            .handle_rest(self.now, &request)
            .expect("a hub path")
    }

    pub fn send(&mut self, peer: Peer, message: Value) {
        self.send_text(peer, &message.to_string());
    }

    pub fn send_text(&mut self, peer: Peer, text: &str) {
        self.hub.handle_text(self.now, peer.0, text);
        self.drain();
    }

    /// Sends every message before the hub is drained, as frames arriving in one turn of a
    /// host's event loop.
    pub fn send_in_one_turn(&mut self, peer: Peer, messages: impl IntoIterator<Item = Value>) {
        for message in messages {
            self.hub.handle_text(self.now, peer.0, &message.to_string());
        }
        self.drain();
    }

    /// Sends a presence message with one item and returns the replies to the sender.
    pub fn presence(
        &mut self,
        peer: Peer,
        channel: &str,
        serial: i64,
        items: Value,
    ) -> Vec<ProtocolMessage> {
        self.send(
            peer,
            json!({"action": 14, "channel": channel, "msgSerial": serial, "presence": items}),
        );
        self.take(peer)
    }

    /// The socket closes without `CLOSE` (a lost network).
    pub fn drop_transport(&mut self, peer: Peer) {
        self.hub.handle_close(self.now, peer.0);
        self.drain();
    }

    /// Advances simulated time by `ms`, firing every deadline on the way and answering pings
    /// for peers that are not frozen.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now + ms;
        for _ in 0..100_000 {
            match self.hub.poll_timeout() {
                Some(t) if t <= target => {
                    self.now = self.now.max(t);
                    self.hub.handle_timeout(self.now);
                    self.drain();
                }
                _ => {
                    self.now = target;
                    return;
                }
            }
        }
        panic!("the hub did not settle: a timer keeps firing");
    }

    /// Drains the hub's outputs into the peers' inboxes (after checking the hub's bookkeeping).
    pub fn drain(&mut self) {
        rollcall::hub::fuzz::check_invariants(&self.hub);
        for change in self.hub.take_changes() {
            match change.value {
                Some(value) => self.store.insert(change.key, value),
                None => self.store.remove(&change.key),
            };
        }
        loop {
            let mut progressed = false;
            while let Some(transmit) = self.hub.poll_transmit() {
                progressed = true;
                let message = match transmit.frame.text() {
                    Some(text) => json::decode(text).expect("valid frame"),
                    None => rollcall::protocol::msgpack::decode(&transmit.frame.bytes)
                        .expect("valid msgpack frame"),
                };
                for to in transmit.to {
                    self.sizes
                        .entry(to)
                        .or_default()
                        .push(transmit.frame.bytes.len());
                    assert!(
                        !self.closed.contains(&to),
                        "sent to a closed transport {to:?}"
                    );
                    self.inbox.entry(to).or_default().push(message.clone());
                }
            }
            while let Some(event) = self.hub.poll_event() {
                progressed = true;
                match event {
                    HubEvent::Close { transport, .. } => {
                        self.closed.insert(transport);
                        // The host reports the close of a socket it closed itself.
                        self.hub.handle_close(self.now, transport);
                    }
                    HubEvent::Ping { transport } => {
                        self.pings.push((self.now, transport));
                        if !self.frozen.contains(&transport) && !self.closed.contains(&transport) {
                            self.hub.handle_pong(self.now, transport);
                        }
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// Everything the peer received since the last call.
    pub fn take(&mut self, peer: Peer) -> Vec<ProtocolMessage> {
        self.inbox.remove(&peer.0).unwrap_or_default()
    }

    /// The presence events the peer received since the last call, flattened.
    pub fn events(&mut self, peer: Peer) -> Vec<PresenceMessage> {
        self.take(peer)
            .into_iter()
            .filter(|m| m.action == Action::Presence)
            .flat_map(|m| m.presence.unwrap_or_default())
            .collect()
    }

    /// The hub is evicted and rebuilt from its storage; the sockets of `open` peers survive.
    pub fn evict(&mut self, config: HubConfig) {
        let records: Vec<(String, Vec<u8>)> = self.store.clone().into_iter().collect();
        let open: Vec<TransportId> = (1..=self.next_transport)
            .map(TransportId)
            .filter(|t| !self.closed.contains(t))
            .collect();
        let (hub, stale) = Hub::restore(config, self.now, records, &open);
        self.hub = hub;
        for key in stale {
            self.store.remove(&key);
        }
        self.drain();
    }

    /// The socket closes while the hub's host is evicted (as every socket does in a deploy):
    /// the hub is not told, and the next [`Sim::evict`] does not find it open.
    pub fn close_unnoticed(&mut self, peer: Peer) {
        self.closed.insert(peer.0);
    }

    pub fn is_closed(&self, peer: Peer) -> bool {
        self.closed.contains(&peer.0)
    }

    /// (clientId, connectionId) of the hub's members of a channel.
    pub fn members(&self, channel: &str) -> Vec<(String, String)> {
        self.hub
            .members(channel)
            .into_iter()
            .map(|m| {
                (
                    m.client_id.unwrap().to_string(),
                    m.connection_id.unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// (action, clientId) of presence events, for compact assertions.
pub fn summary(events: &[PresenceMessage]) -> Vec<(PresenceAction, String)> {
    events
        .iter()
        .map(|e| (e.action, e.client_id.as_deref().unwrap_or("").to_owned()))
        .collect()
}

/// Decoded presence data of an event, when it is a string.
pub fn data(event: &PresenceMessage) -> Option<String> {
    match &event.data {
        Some(rollcall::protocol::Data::String(s)) => Some(s.to_string()),
        Some(rollcall::protocol::Data::Json(s)) => Some(s.to_string()),
        _ => None,
    }
}

/// The error code of a reply.
pub fn code(message: &ProtocolMessage) -> Option<u32> {
    message.error.as_ref().map(|e| e.code)
}

/// Base64url without padding (for JWTs in tests).
pub fn base64url(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// An Ably JWT (HS256) signed with `secret`, named by `kid`, with these claims. The claims Ably
/// requires and a test leaves out are added: `iat` (0) and `x-ably-capability` (everything);
/// give one as `null` to leave it out.
pub fn jwt(kid: &str, secret: &str, claims: &Value) -> String {
    use hmac::Mac;
    let mut claims = claims.clone();
    if claims.get("iat").is_none() {
        claims["iat"] = json!(0);
    }
    if claims.get("x-ably-capability").is_none() {
        claims["x-ably-capability"] = json!("{\"*\":[\"*\"]}");
    }
    let claims = &claims;
    let header = base64url(
        json!({"alg": "HS256", "typ": "JWT", "kid": kid})
            .to_string()
            .as_bytes(),
    );
    let body = base64url(claims.to_string().as_bytes());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{header}.{body}").as_bytes());
    let signature = base64url(&mac.finalize().into_bytes());
    format!("{header}.{body}.{signature}")
}

/// Whether `replies` attach a channel afresh: an ATTACHED that is not RESUMED (the client
/// missed events, RTL12), and the members by SYNC.
pub fn attached_afresh(replies: &[ProtocolMessage]) -> bool {
    let attached = replies.iter().find(|m| m.action == Action::Attached);
    attached.is_some_and(|a| a.flags.unwrap_or(0) & rollcall::protocol::flags::RESUMED == 0)
        && replies.iter().any(|m| m.action == Action::Sync)
}
