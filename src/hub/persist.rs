//! What a hub keeps in durable storage so that it can be rebuilt after its host is evicted (a
//! Durable Object that hibernates and is evicted, while its sockets stay open): each
//! connection's identity and parameters, and every member. History and timers are not kept:
//! history is a convenience, and deadlines are recomputed on restore.
//!
//! With [`HubConfig::persistence`] on, every mutation records what changed; the host takes the
//! changes after each input ([`Hub::take_changes`]) and writes them, key by key. [`Hub::restore`]
//! rebuilds a hub from every stored record and the transports still open.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::auth::Capability;
use super::connection::{Attachment, Connection, Life, RateLimit, Token};
use super::{Format, Hub, HubConfig, Slot, TransportId};
use crate::protocol::{flags, PresenceMessage};

/// What changed since the last [`Hub::take_changes`].
#[derive(Debug, Default)]
pub(crate) struct Changes {
    connections: BTreeSet<Arc<str>>,
    /// (channel, connection id, client id)
    members: BTreeSet<(Arc<str>, Arc<str>, Arc<str>)>,
}

impl Changes {
    /// Notes that a member's record must be written (or deleted).
    pub(super) fn note_member(
        &mut self,
        channel: &Arc<str>,
        connection: &Arc<str>,
        client: &Arc<str>,
    ) {
        self.members
            .insert((channel.clone(), connection.clone(), client.clone()));
    }
}

/// A write for durable storage: `value: None` deletes the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredChange {
    /// The storage key.
    pub key: String,
    /// The value to store, or `None` to delete the key.
    pub value: Option<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct ConnectionRecord {
    id: String,
    key: String,
    client_id: Option<String>,
    transport: Option<u32>,
    msgpack: bool,
    heartbeats: bool,
    heartbeating: bool,
    #[serde(default)]
    wants_status: bool,
    remain_present_for: u64,
    heartbeat_interval: u64,
    dropped_at: Option<u64>,
    next_serial: i64,
    attachments: Vec<(String, u64)>,
    capability: Capability,
    token_expires: Option<u64>,
    token_issued: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct MemberRecord {
    channel: String,
    member: PresenceMessage,
}

const CONNECTION: &str = "c:";
const MEMBER: &str = "m:";

fn member_key(channel: &str, connection_id: &str, client_id: &str) -> String {
    // Channel names hold no control characters and connection ids are URL-safe, so the
    // newlines keep keys apart.
    format!("{MEMBER}{channel}\n{connection_id}\n{client_id}")
}

impl Hub {
    /// Notes that a connection's record must be written.
    pub(super) fn touch_connection(&mut self, slot: Slot) {
        let Some(changes) = &mut self.changes else {
            return;
        };
        if let Some(conn) = self.slots.get(slot as usize).and_then(Option::as_ref) {
            changes.connections.insert(conn.id.clone());
        }
    }

    /// What to write to durable storage since the last call (empty unless
    /// [`HubConfig::persistence`] is on).
    pub fn take_changes(&mut self) -> Vec<StoredChange> {
        let Some(changes) = self.changes.as_mut().map(std::mem::take) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(changes.connections.len() + changes.members.len());
        for id in changes.connections {
            let key = format!("{CONNECTION}{id}");
            let value = self
                .by_id
                .get(&id)
                .and_then(|&slot| self.conn(slot))
                .and_then(|conn| rmp_serde::to_vec_named(&record_of(conn)).ok());
            out.push(StoredChange { key, value });
        }
        for (channel, connection, client) in changes.members {
            let key = member_key(&channel, &connection, &client);
            let value = self
                .channels
                .get(&channel)
                .and_then(|c| c.members.get(&client, &connection))
                .and_then(|member| {
                    let record = MemberRecord {
                        channel: channel.to_string(),
                        member: member.clone(),
                    };
                    rmp_serde::to_vec_named(&record).ok()
                });
            out.push(StoredChange { key, value });
        }
        out
    }

    /// Rebuilds a hub from every stored record. `open` lists the transports still open (with the
    /// connection each belongs to, as the host kept it beside the socket); a connection whose
    /// transport is gone is treated as dropped now, so that its members stay for their grace
    /// window. Returns the hub and the keys of records that no longer mean anything (to delete).
    pub fn restore(
        config: HubConfig,
        now: u64,
        records: Vec<(String, Vec<u8>)>,
        open: &[TransportId],
    ) -> (Self, Vec<String>) {
        let mut hub = Hub::new(config);
        hub.now = now;
        let mut stale = Vec::new();
        let mut members = Vec::new();
        for (key, value) in records {
            if key.starts_with(CONNECTION) {
                match rmp_serde::from_slice::<ConnectionRecord>(&value) {
                    Ok(record) => hub.restore_connection(record, open),
                    Err(_) => stale.push(key),
                }
            } else if key.starts_with(MEMBER) {
                match rmp_serde::from_slice::<MemberRecord>(&value) {
                    Ok(record) => members.push((key, record)),
                    Err(_) => stale.push(key),
                }
            }
        }
        for (key, record) in members {
            let Some(member_key) = crate::presence::MemberKey::of(&record.member) else {
                stale.push(key);
                continue;
            };
            let Some(&slot) = hub.by_id.get(&member_key.connection_id) else {
                // The member of a connection the hub no longer knows.
                stale.push(key);
                continue;
            };
            let channel: Arc<str> = Arc::from(record.channel);
            let name = hub
                .channels
                .get_key_value(&channel)
                .map_or(channel, |(k, _)| k.clone());
            let entry = hub.channels.entry(name.clone()).or_default();
            entry.members.put(&record.member);
            if let Some(conn) = hub.slots.get_mut(slot as usize).and_then(Option::as_mut) {
                conn.members.insert((name, member_key.client_id));
            }
        }
        let slots: Vec<Slot> = hub.by_id.values().copied().collect();
        for slot in slots {
            hub.schedule(slot);
        }
        hub.arm_sweep();
        hub.changes = Some(Changes::default());
        (hub, stale)
    }

    fn restore_connection(&mut self, record: ConnectionRecord, open: &[TransportId]) {
        let now = self.now;
        let transport = record
            .transport
            .map(TransportId)
            .filter(|t| open.contains(t));
        let life = match (transport, record.dropped_at) {
            (Some(_), _) => Life::Live,
            (None, Some(at)) => Life::Dropped { at },
            (None, None) => Life::Dropped { at: now },
        };
        let id: Arc<str> = Arc::from(record.id);
        let key: Arc<str> = Arc::from(record.key);
        let attachments: super::small::NameMap<Attachment> = record
            .attachments
            .into_iter()
            .map(|(name, modes)| (Arc::from(name), Attachment { modes }))
            .collect();
        let conn = Connection {
            id: id.clone(),
            key: key.clone(),
            client_id: record.client_id.map(Arc::from),
            capability: record.capability,
            token: record.token_expires.map(|expires| Token {
                expires,
                issued: record.token_issued,
                renewal_asked: false,
            }),
            inbound: RateLimit::new(now, self.config.max_inbound_rate),
            transport,
            format: if record.msgpack {
                Format::Msgpack
            } else {
                Format::Json
            },
            heartbeats: record.heartbeats,
            heartbeating: record.heartbeating,
            wants_status: record.wants_status,
            remain_present_for: record.remain_present_for,
            heartbeat_interval: record.heartbeat_interval,
            life,
            last_in: now,
            last_out: now,
            probed: false,
            next_serial: record.next_serial,
            attachments,
            members: Default::default(),
            deadline: None,
            replay: Default::default(),
            replay_overflowed: false,
        };
        let slot = self.slots.len() as Slot;
        for (name, attachment) in conn.attachments.iter() {
            let channel = self.channels.entry(name.clone()).or_default();
            if attachment.modes & flags::PRESENCE_SUBSCRIBE != 0 {
                channel.subscribers.insert(slot);
            }
        }
        self.slots.push(Some(Box::new(conn)));
        self.by_id.insert(id, slot);
        self.by_key.insert(key, slot);
        if let Some(transport) = transport {
            self.by_transport.insert(transport, slot);
        }
    }
}

fn record_of(conn: &Connection) -> ConnectionRecord {
    ConnectionRecord {
        id: conn.id.to_string(),
        key: conn.key.to_string(),
        client_id: conn.client_id.as_deref().map(str::to_owned),
        transport: conn.transport.map(|t| t.0),
        msgpack: conn.format == Format::Msgpack,
        heartbeats: conn.heartbeats,
        heartbeating: conn.heartbeating,
        wants_status: conn.wants_status,
        remain_present_for: conn.remain_present_for,
        heartbeat_interval: conn.heartbeat_interval,
        dropped_at: match conn.life {
            Life::Live => None,
            Life::Dropped { at } => Some(at),
        },
        next_serial: conn.next_serial,
        attachments: conn
            .attachments
            .iter()
            .map(|(name, a)| (name.to_string(), a.modes))
            .collect(),
        capability: conn.capability.clone(),
        token_expires: conn.token.map(|t| t.expires),
        token_issued: conn.token.and_then(|t| t.issued),
    }
}
