//! A simulated network of client cores and one hub core: every frame is encoded and decoded as
//! JSON text, travels with a seeded latency (in order, as over TCP), and transports can be cut
//! abruptly or silently. Time is virtual; nothing sleeps.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use rollcall::client::{ChannelState, Client, ClientEvent, ClientOptions, ConnectionState, OpId};
use rollcall::hub::{Hub, HubConfig, HubEvent, TransportId};
use rollcall::protocol::{json, Data, PresenceAction, PresenceMessage};

use super::{Rng, T0};

/// What travels or happens at a given time.
#[derive(Debug)]
enum Happening {
    ToHub(TransportId, String),
    ToClient(usize, TransportId, String),
    HubSeesClose(TransportId),
    ClientSeesClose(usize, TransportId),
}

/// One client core and its socket.
pub struct SimClient {
    pub core: Client,
    /// The transport it is using, when it has one.
    pub transport: Option<TransportId>,
    /// Every event it emitted, in order.
    pub events: Vec<ClientEvent>,
    /// Operations settled, by id.
    pub settled: BTreeMap<OpId, Result<(), rollcall::protocol::ErrorInfo>>,
    /// Whether the network between it and the hub holds every frame (a partition): frames wait,
    /// in order, until it heals; the sockets stay open.
    partitioned: bool,
    /// Frames held by the partition: (to the hub?, transport, text).
    held: Vec<(bool, TransportId, String)>,
    /// Its timers fire only on multiples of this many milliseconds, as a browser tab's in the
    /// background do (Chrome: once a minute); frames still arrive at once.
    pub timer_period: Option<u64>,
}

impl SimClient {
    /// The presence events it emitted on a channel.
    pub fn presence_events(&self, channel: &str) -> Vec<PresenceMessage> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Presence {
                    channel: c,
                    message,
                } if &**c == channel => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    /// Its view of a channel: (clientId, connectionId, data).
    pub fn view(&self, channel: &str) -> BTreeSet<(String, String, Option<String>)> {
        self.core
            .members(channel)
            .into_iter()
            .map(member_triple)
            .collect()
    }
}

pub fn member_triple(m: &PresenceMessage) -> (String, String, Option<String>) {
    (
        m.client_id.as_deref().unwrap_or_default().to_owned(),
        m.connection_id.as_deref().unwrap_or_default().to_owned(),
        match &m.data {
            Some(Data::String(s)) | Some(Data::Json(s)) => Some(s.to_string()),
            Some(Data::Binary(b)) => Some(format!("{b:?}")),
            None => None,
        },
    )
}

/// The world: a hub, clients, a virtual clock and the frames in flight.
pub struct World {
    pub hub: Hub,
    pub clients: Vec<SimClient>,
    pub now: u64,
    pub rng: Rng,
    /// The largest one-way latency, in milliseconds.
    pub max_latency: u64,
    /// The `disconnectedRetryTimeout` clients added from now on get (2 s, for quick tests).
    pub retry_timeout: u64,
    /// Whether the hub takes every frame that reaches it at one moment before its outputs go
    /// out, as a host does in one turn of its event loop (replies to several frames then leave
    /// in the hub's order: an ATTACHED before the ACKs of presence sent ahead of it).
    pub batch_turns: bool,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    happenings: HashMap<u64, Happening>,
    seq: u64,
    next_transport: u32,
    /// Which client owns a transport.
    owners: HashMap<TransportId, usize>,
    /// The delivery time of the last frame on each transport and direction, to keep order.
    last_delivery: HashMap<(TransportId, bool), u64>,
    /// Transports cut: frames on them are lost.
    cut: BTreeSet<TransportId>,
    /// Transports the hub closed: what it sent before still arrives, nothing reaches it after.
    hub_closed: BTreeSet<TransportId>,
    /// When each connection had a transport, as the hub saw it: connection id → (transport,
    /// open, close).
    pub live: HashMap<String, Vec<(TransportId, u64, u64)>>,
    /// Which client a connection id belongs to.
    pub conn_client: HashMap<String, usize>,
    transport_conn: HashMap<TransportId, String>,
    /// Transports the hub's host holds open (what a Durable Object keeps across eviction).
    hub_open: BTreeSet<TransportId>,
    /// Durable storage, for a hub with `persistence` on: what `take_changes` wrote.
    pub store: Option<BTreeMap<String, Vec<u8>>>,
}

impl World {
    pub fn new(config: HubConfig, seed: u64) -> Self {
        let store = config.persistence.then(BTreeMap::new);
        Self {
            hub: Hub::new(config),
            clients: Vec::new(),
            now: T0,
            rng: Rng::new(seed),
            max_latency: 0,
            retry_timeout: 2_000,
            batch_turns: false,
            queue: BinaryHeap::new(),
            happenings: HashMap::new(),
            seq: 0,
            next_transport: 0,
            owners: HashMap::new(),
            last_delivery: HashMap::new(),
            cut: BTreeSet::new(),
            hub_closed: BTreeSet::new(),
            live: HashMap::new(),
            conn_client: HashMap::new(),
            transport_conn: HashMap::new(),
            hub_open: BTreeSet::new(),
            store,
        }
    }

    /// Adds a client with this connect query (`clientId=…&remainPresentFor=…`); it connects.
    pub fn add_client(&mut self, query: &str) -> usize {
        let mut options = ClientOptions::new(
            format!("ws://hub/?v=6&heartbeats=true&agent=rollcall-test&{query}"),
            None,
        );
        options.client_id = query
            .split('&')
            .find_map(|p| p.strip_prefix("clientId="))
            .map(Into::into);
        self.add_client_with(options)
    }

    /// Adds a client with these options; it connects.
    pub fn add_client_with(&mut self, options: ClientOptions) -> usize {
        self.add_client_prepared(options, |_| {})
    }

    /// Adds a client with these options, runs `prepare` on it (before it connects), and
    /// connects it.
    pub fn add_client_prepared(
        &mut self,
        mut options: ClientOptions,
        prepare: impl FnOnce(&mut Client),
    ) -> usize {
        options.seed = self.rng.next_u64();
        options.disconnected_retry_timeout = self.retry_timeout;
        let index = self.clients.len();
        self.clients.push(SimClient {
            core: Client::new(options),
            transport: None,
            events: Vec::new(),
            settled: BTreeMap::new(),
            partitioned: false,
            held: Vec::new(),
            timer_period: None,
        });
        prepare(&mut self.clients[index].core);
        self.clients[index].core.connect(self.now);
        self.pump();
        index
    }

    /// Runs an API call on a client core and carries out what follows.
    pub fn with<R>(&mut self, client: usize, f: impl FnOnce(&mut Client, u64) -> R) -> R {
        let now = self.now;
        let result = f(&mut self.clients[client].core, now);
        self.pump();
        result
    }

    /// Cuts a client's transport abruptly: both ends notice, at different times.
    pub fn cut(&mut self, client: usize) {
        let Some(transport) = self.clients[client].transport else {
            return;
        };
        self.cut.insert(transport);
        let hub_delay = self.latency();
        let client_delay = self.latency();
        self.schedule(self.now + hub_delay, Happening::HubSeesClose(transport));
        self.schedule(
            self.now + client_delay,
            Happening::ClientSeesClose(client, transport),
        );
    }

    /// Kills a client's transport silently (a Wi-Fi roam, a NAT rebinding): its frames are lost
    /// both ways and neither end is told; a new transport works.
    pub fn vanish(&mut self, client: usize) {
        if let Some(transport) = self.clients[client].transport {
            self.cut.insert(transport);
        }
    }

    /// Partitions a client from the hub: frames both ways wait until [`World::heal`].
    pub fn partition(&mut self, client: usize) {
        self.clients[client].partitioned = true;
    }

    /// Ends a partition: the frames it held arrive, in order, on transports still open.
    pub fn heal(&mut self, client: usize) {
        self.clients[client].partitioned = false;
        for (to_hub, t, text) in std::mem::take(&mut self.clients[client].held) {
            let happening = if to_hub {
                Happening::ToHub(t, text)
            } else {
                Happening::ToClient(client, t, text)
            };
            self.send(t, to_hub, happening);
        }
        self.pump();
    }

    /// Advances virtual time by `ms`, delivering frames and firing timers on the way.
    pub fn run(&mut self, ms: u64) {
        let target = self.now + ms;
        for _ in 0..2_000_000 {
            let next_frame = self.queue.peek().map(|Reverse((t, _))| *t);
            let next_hub = self.hub.poll_timeout();
            let next_client = self
                .clients
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let t = c.core.poll_timeout()?;
                    Some((c.timer_period.map_or(t, |p| t.div_ceil(p) * p), i))
                })
                .min();
            let next = [next_frame, next_hub, next_client.map(|(t, _)| t)]
                .into_iter()
                .flatten()
                .min();
            let Some(at) = next.filter(|&t| t <= target) else {
                self.now = target;
                return;
            };
            self.now = self.now.max(at);
            if next_frame == Some(at) {
                let Some(Reverse((_, seq))) = self.queue.pop() else {
                    unreachable!()
                };
                if let Some(happening) = self.happenings.remove(&seq) {
                    let to_hub = self.batch_turns && matches!(happening, Happening::ToHub(..));
                    self.happen(happening);
                    // See `batch_turns`.
                    if to_hub {
                        while let Some(&Reverse((t, next))) = self.queue.peek() {
                            if t != at
                                || !matches!(self.happenings.get(&next), Some(Happening::ToHub(..)))
                            {
                                break;
                            }
                            self.queue.pop();
                            if let Some(happening) = self.happenings.remove(&next) {
                                self.happen(happening);
                            }
                        }
                    }
                }
            } else if next_hub == Some(at) {
                self.hub.handle_timeout(self.now);
            } else if let Some((_, i)) = next_client {
                self.clients[i].core.handle_timeout(self.now);
            }
            self.pump();
        }
        panic!("the world did not settle");
    }

    fn latency(&mut self) -> u64 {
        if self.max_latency == 0 {
            0
        } else {
            self.rng.below(self.max_latency + 1)
        }
    }

    fn schedule(&mut self, at: u64, happening: Happening) {
        self.seq += 1;
        self.happenings.insert(self.seq, happening);
        self.queue.push(Reverse((at, self.seq)));
    }

    /// Sends a frame on a transport, after every earlier frame in that direction.
    fn send(&mut self, transport: TransportId, to_hub: bool, happening: Happening) {
        let latency = self.latency();
        let at =
            (self.now + latency).max(*self.last_delivery.get(&(transport, to_hub)).unwrap_or(&0));
        self.last_delivery.insert((transport, to_hub), at);
        self.schedule(at, happening);
    }

    fn happen(&mut self, happening: Happening) {
        match happening {
            Happening::ToHub(t, text) => {
                if !self.cut.contains(&t) && !self.hub_closed.contains(&t) {
                    self.hub.handle_text(self.now, t, &text);
                }
            }
            Happening::ToClient(i, t, text) => {
                if !self.cut.contains(&t) && self.clients[i].transport == Some(t) {
                    let message = json::decode(&text).expect("the hub sends valid frames");
                    self.clients[i].core.handle_message(self.now, message);
                }
            }
            Happening::HubSeesClose(t) => {
                self.note_closed(t);
                self.hub_open.remove(&t);
                self.hub.handle_close(self.now, t);
            }
            Happening::ClientSeesClose(i, t) => {
                if self.clients[i].transport == Some(t) {
                    self.clients[i].transport = None;
                    self.clients[i].core.handle_transport_closed(self.now);
                }
            }
        }
    }

    /// Carries out every output of the hub and the clients until there are none.
    pub fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(transmit) = self.hub.poll_transmit() {
                progressed = true;
                let text = transmit.frame.text().expect("text").to_owned();
                if text.starts_with(r#"{"action":4,"#) {
                    let connected = json::decode(&text).expect("CONNECTED");
                    if let (Some(id), Some(&t)) = (connected.connection_id, transmit.to.first()) {
                        let id = id.to_string();
                        self.live
                            .entry(id.clone())
                            .or_default()
                            .push((t, self.now, u64::MAX));
                        if let Some(&i) = self.owners.get(&t) {
                            self.conn_client.insert(id.clone(), i);
                        }
                        self.transport_conn.insert(t, id);
                    }
                }
                for t in transmit.to {
                    if let Some(&i) = self.owners.get(&t) {
                        trace(i, self.now, "<-", &text);
                        if self.clients[i].partitioned {
                            self.clients[i].held.push((false, t, text.clone()));
                        } else {
                            self.send(t, false, Happening::ToClient(i, t, text.clone()));
                        }
                    }
                }
            }
            while let Some(event) = self.hub.poll_event() {
                progressed = true;
                match event {
                    HubEvent::Close { transport, .. } => {
                        self.note_closed(transport);
                        self.hub_closed.insert(transport);
                        self.hub_open.remove(&transport);
                        self.hub.handle_close(self.now, transport);
                        // A transport that was cut or died silently carries no close frame.
                        if let Some(&i) = self
                            .owners
                            .get(&transport)
                            .filter(|_| !self.cut.contains(&transport))
                        {
                            // The close follows the frames already on their way.
                            let delay = self.latency();
                            let after = *self.last_delivery.get(&(transport, false)).unwrap_or(&0);
                            self.schedule(
                                (self.now + delay).max(after),
                                Happening::ClientSeesClose(i, transport),
                            );
                        }
                    }
                    HubEvent::Ping { transport } => {
                        // The client's WebSocket answers pings by itself, if the network lets it.
                        if let Some(&i) = self.owners.get(&transport) {
                            if !self.clients[i].partitioned && !self.cut.contains(&transport) {
                                self.hub.handle_pong(self.now, transport);
                            }
                        }
                    }
                }
            }
            rollcall::hub::fuzz::check_invariants(&self.hub);
            if let Some(store) = self.store.as_mut() {
                for change in self.hub.take_changes() {
                    match change.value {
                        Some(value) => store.insert(change.key, value),
                        None => store.remove(&change.key),
                    };
                }
            }
            for i in 0..self.clients.len() {
                while let Some(message) = self.clients[i].core.poll_transmit() {
                    progressed = true;
                    let text = String::from_utf8(json::encode(&message)).expect("utf-8");
                    trace(i, self.now, "->", &text);
                    if let Some(t) = self.clients[i].transport {
                        if self.clients[i].partitioned {
                            self.clients[i].held.push((true, t, text));
                        } else {
                            self.send(t, true, Happening::ToHub(t, text));
                        }
                    }
                }
                for event in self.clients[i].core.take_events() {
                    progressed = true;
                    match &event {
                        ClientEvent::OpenTransport { url } => {
                            self.next_transport += 1;
                            let t = TransportId(self.next_transport);
                            self.owners.insert(t, i);
                            self.clients[i].transport = Some(t);
                            if self.clients[i].partitioned {
                                // No connection gets through a partition.
                                self.cut.insert(t);
                                let delay = self.latency();
                                self.schedule(self.now + delay, Happening::ClientSeesClose(i, t));
                            } else {
                                let query = url.split_once('?').map_or("", |(_, q)| q).to_owned();
                                let entropy = self.rng.entropy();
                                self.hub_open.insert(t);
                                self.hub.handle_open(self.now, t, &query, entropy);
                                self.clients[i].core.handle_transport_open(self.now);
                            }
                        }
                        ClientEvent::CloseTransport => {
                            if let Some(t) = self.clients[i].transport.take() {
                                self.cut.insert(t);
                                let delay = self.latency();
                                self.schedule(self.now + delay, Happening::HubSeesClose(t));
                            }
                        }
                        ClientEvent::Settled { op, result } => {
                            self.clients[i].settled.insert(*op, result.clone());
                        }
                        _ => {}
                    }
                    self.clients[i].events.push(event);
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// The hub's host is evicted and started again (a Durable Object): the hub is rebuilt from
    /// storage, with the transports the host still holds.
    pub fn evict(&mut self, config: HubConfig) {
        let store = self.store.get_or_insert_with(BTreeMap::new);
        let records: Vec<(String, Vec<u8>)> = store.clone().into_iter().collect();
        let open: Vec<TransportId> = self.hub_open.iter().copied().collect();
        let (hub, stale) = Hub::restore(config, self.now, records, &open);
        self.hub = hub;
        for key in stale {
            store.remove(&key);
        }
        self.pump();
    }

    /// The hub lost a transport: the connection it carried stopped being live.
    fn note_closed(&mut self, t: TransportId) {
        let now = self.now;
        if let Some(id) = self.transport_conn.remove(&t) {
            for entry in self.live.get_mut(&id).into_iter().flatten() {
                if entry.0 == t && entry.2 == u64::MAX {
                    entry.2 = now;
                }
            }
        }
    }

    /// The hub's set of a channel: (clientId, connectionId, data).
    pub fn hub_view(&self, channel: &str) -> BTreeSet<(String, String, Option<String>)> {
        self.hub
            .members(channel)
            .iter()
            .map(member_triple)
            .collect()
    }

    pub fn connected(&self, client: usize) -> bool {
        self.clients[client].core.state() == ConnectionState::Connected
    }
}

/// Checks that a client's presence events form a consistent story: no leave without a member,
/// no enter for a member already there, and the story's end is the client's view.
pub fn check_story(client: &SimClient, channel: &str) -> Result<(), String> {
    let mut shadow: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
    for event in &client.events {
        let event = match event {
            ClientEvent::Presence {
                channel: c,
                message,
            } if &**c == channel => message,
            ClientEvent::ChannelState {
                channel: c,
                current,
                ..
            } if &**c == channel
                && matches!(current, ChannelState::Detached | ChannelState::Failed) =>
            {
                // The view is dropped without events (RTP5a).
                shadow.clear();
                continue;
            }
            _ => continue,
        };
        let (c, k, d) = member_triple(event);
        let key = (c, k);
        match event.action {
            PresenceAction::Enter => {
                if shadow.insert(key.clone(), d).is_some() {
                    return Err(format!("enter for a member already present: {key:?}"));
                }
            }
            PresenceAction::Present | PresenceAction::Update => {
                shadow.insert(key, d);
            }
            PresenceAction::Leave => {
                if shadow.remove(&key).is_none() {
                    return Err(format!("leave without a member: {key:?}"));
                }
            }
            PresenceAction::Absent => return Err("absent emitted".to_owned()),
        }
    }
    let story: BTreeSet<_> = shadow.into_iter().map(|((c, k), d)| (c, k, d)).collect();
    let view = client.view(channel);
    if story != view {
        return Err(format!("events tell {story:?} but the view is {view:?}"));
    }
    Ok(())
}

/// A presence operation for [`Client::presence`]: an action, another client's id or none, and
/// string data or none.
pub fn item(
    action: PresenceAction,
    client_id: Option<&str>,
    data: Option<&str>,
) -> PresenceMessage {
    PresenceMessage {
        client_id: client_id.map(Into::into),
        data: data.map(|d| Data::String(d.into())),
        ..PresenceMessage::new(action)
    }
}

/// With `ROLLCALL_TRACE=<client index>`, prints the frames that client and the hub exchange, as
/// the hub sends them and as the client sends them (a failing seed's story).
fn trace(client: usize, now: u64, direction: &str, text: &str) {
    let traced = std::env::var("ROLLCALL_TRACE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    if traced == Some(client) {
        println!("{now} {direction} {text}");
    }
}
