//! What a hub keeps in durable storage so that it can be rebuilt after its host is evicted (a
//! Durable Object that hibernates and is evicted, while its sockets stay open): each
//! connection's identity and parameters, every member, and each channel's presence history
//! (one record per event). Timers are not kept: deadlines are recomputed on restore.
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
use crate::protocol::{flags, ErrorInfo, PresenceMessage};

/// What changed since the last [`Hub::take_changes`].
#[derive(Debug, Default)]
pub(crate) struct Changes {
    connections: BTreeSet<Arc<str>>,
    /// (channel, connection id, client id)
    members: BTreeSet<(Arc<str>, Arc<str>, Arc<str>)>,
    /// Channels whose history changed.
    history: BTreeSet<Arc<str>>,
    /// Channels whose serial moved on.
    serials: BTreeSet<Arc<str>>,
    /// History records of channels the hub forgot, to delete.
    forgotten: Vec<String>,
    /// TokenRequest nonces used (until when they are remembered), or to forget (`None`).
    nonces: Vec<(Arc<str>, Option<u64>)>,
}

impl Changes {
    /// Notes that a channel's history changed.
    pub(super) fn note_history(&mut self, channel: &Arc<str>) {
        if !self.history.contains(channel) {
            self.history.insert(channel.clone());
        }
    }

    /// Notes that a channel's serial moves on (an event was recorded).
    pub(super) fn note_serial(&mut self, channel: &Arc<str>) {
        if !self.serials.contains(channel) {
            self.serials.insert(channel.clone());
        }
    }

    /// Notes that a TokenRequest's nonce was used, until `until`, or is forgotten (`None`).
    pub(super) fn note_nonce(&mut self, seen: &Arc<str>, until: Option<u64>) {
        self.nonces.push((seen.clone(), until));
    }

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
    /// `Connection::serial_offset` and `rebase_serials`.
    #[serde(default)]
    serial_offset: i64,
    /// `Connection::cut_for_size`: a woken object still refuses the resume that would send
    /// the frame again.
    #[serde(default)]
    cut_for_size: Option<usize>,
    /// `Connection::timed_out`: a client that resumes after an eviction still enters those
    /// members again at the charge of items bundled.
    #[serde(default)]
    timed_out: u32,
    #[serde(default)]
    rebase_serials: bool,
    attachments: Vec<(String, u64)>,
    /// For each of `attachments`, what the hub knows of the client's view of the channel
    /// (`Attachment::synced_at`, `dropped_at` and `missed`), so that a woken object can spare a
    /// client that resumes the SYNC. Records without it vouch for no view.
    #[serde(default)]
    views: Vec<(u64, Option<u64>, bool)>,
    /// After a recover: the channels its new client has yet to attach again
    /// (`Attachment::unclaimed`), and by when (`Connection::claim_by`).
    #[serde(default)]
    unclaimed: Vec<String>,
    #[serde(default)]
    claim_by: Option<u64>,
    capability: Capability,
    token_expires: Option<u64>,
    token_issued: Option<u64>,
    /// Whose places it took (`Connection::counted`).
    #[serde(default)]
    counted: Option<String>,
    /// Whether the hub has asked it to renew its token, so that a wake does not ask again.
    #[serde(default)]
    renewal_asked: bool,
    /// Keys it had before it was recovered (`Connection::old_keys`).
    #[serde(default)]
    old_keys: Vec<String>,
    /// Whether listeners were told that it dropped (`Connection::lost_told`): a woken object
    /// must neither skip a notice that was due nor fail to say "back" after one it gave.
    #[serde(default)]
    lost_told: bool,
    /// Its client's own leaves (`Connection::own_leaves`): channel, clientId, msgSerial and
    /// index. A woken object still tells a stale re-entry from a new enter.
    #[serde(default)]
    own_leaves: Vec<(String, String, i64, u64)>,
    /// Why it refused its last messages (`Connection::refused`): msgSerial, code, status and
    /// message. A woken object refuses a resend of one again rather than acknowledge it.
    #[serde(default)]
    refused: Vec<(i64, u32, u16, String)>,
}

#[derive(Serialize, Deserialize)]
struct MemberRecord {
    channel: String,
    member: PresenceMessage,
}

const CONNECTION: &str = "c:";
const MEMBER: &str = "m:";
const HISTORY: &str = "h:";
/// A channel's serial: how many events it has numbered.
const SERIAL: &str = "s:";
/// A TokenRequest's nonce (its digest), used until the time stored.
const NONCE: &str = "n:";

fn serial_key(channel: &str) -> String {
    format!("{SERIAL}{channel}")
}

/// A history record's key: the channel, then the event's number zero-padded, so that storage
/// lists a channel's events in order.
fn history_key(channel: &str, seq: u64) -> String {
    format!("{HISTORY}{channel}\n{seq:020}")
}

fn parse_history_key(key: &str) -> Option<(&str, u64)> {
    let (channel, seq) = key.strip_prefix(HISTORY)?.rsplit_once('\n')?;
    Some((channel, seq.parse().ok()?))
}

/// The keys to write and to delete to take storage from holding `stored` to holding `held`
/// (both `[first, end)` ranges of history numbers).
fn history_writes(
    stored: (u64, u64),
    held: (u64, u64),
) -> (std::ops::Range<u64>, std::ops::Range<u64>) {
    let deletes = stored.0..stored.1.min(held.0).max(stored.0);
    let writes = stored.1.max(held.0)..held.1;
    (writes, deletes)
}

fn member_key(channel: &str, connection_id: &str, client_id: &str) -> String {
    // Channel names hold no control characters and connection ids are URL-safe, so the
    // newlines keep keys apart.
    format!("{MEMBER}{channel}\n{connection_id}\n{client_id}")
}

impl Hub {
    /// Notes that the hub forgot a channel (its history is already gone): whatever storage
    /// still holds of its history goes.
    pub(super) fn forget_history(&mut self, name: &str, channel: &super::channel::Channel) {
        if let Some(changes) = &mut self.changes {
            let (_, deletes) = history_writes(channel.stored, channel.held());
            changes
                .forgotten
                .extend(deletes.map(|seq| history_key(name, seq)));
            changes.forgotten.push(serial_key(name));
        }
    }

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
        // Each channel's serial goes in the same batch as the member records of the events it
        // counts (with those recorded and not yet sent: a client cannot have heard them, and
        // takes a SYNC): a woken object vouches for a client's view only by it.
        for name in changes.serials {
            let Some(channel) = self.channels.get(&name) else {
                continue;
            };
            let unsent = self.pending.iter().filter(|(n, _)| *n == name).count() as u64;
            out.push(StoredChange {
                key: serial_key(&name),
                value: rmp_serde::to_vec(&(channel.serial + unsent)).ok(),
            });
        }
        for name in changes.history {
            let Some(channel) = self.channels.get_mut(&name) else {
                continue;
            };
            let held = channel.held();
            let (writes, deletes) = history_writes(channel.stored, held);
            for seq in deletes {
                out.push(StoredChange {
                    key: history_key(&name, seq),
                    value: None,
                });
            }
            let first = channel.history.front().map_or(0, |e| e.seq);
            for seq in writes {
                let value = channel
                    .history
                    .get((seq - first) as usize)
                    .and_then(|e| rmp_serde::to_vec_named(&e.message).ok());
                out.push(StoredChange {
                    key: history_key(&name, seq),
                    value,
                });
            }
            channel.stored = held;
        }
        for (seen, until) in changes.nonces {
            out.push(StoredChange {
                key: format!("{NONCE}{seen}"),
                value: until.and_then(|until| rmp_serde::to_vec(&until).ok()),
            });
        }
        // A forgotten channel made anew before this call starts its numbers again: its new
        // records are written above, and must not be deleted here.
        let written: BTreeSet<&str> = out
            .iter()
            .filter(|c| c.value.is_some())
            .map(|c| c.key.as_str())
            .collect();
        let forgotten: Vec<String> = changes
            .forgotten
            .into_iter()
            .filter(|key| !written.contains(key.as_str()))
            .collect();
        out.extend(
            forgotten
                .into_iter()
                .map(|key| StoredChange { key, value: None }),
        );
        out
    }

    /// Rebuilds a hub from every stored record. `open` lists the transports still open (with the
    /// connection each belongs to, as the host kept it beside the socket); a connection whose
    /// transport is gone is treated as dropped now, so that its members stay for their grace
    /// window. Returns the hub and the keys of records that no longer mean anything (to delete).
    pub fn restore(
        config: HubConfig,
        now: u64,
        records: impl IntoIterator<Item = (String, Vec<u8>)>,
        open: &[TransportId],
    ) -> (Self, Vec<String>) {
        let mut restoring = Hub::restoring(config, now, open);
        restoring.feed(records);
        restoring.finish()
    }

    /// [`Hub::restore`] in steps: the records are given in batches, in any order, by
    /// [`Restoring::feed`], so that a host need not hold them all at once beside the hub they
    /// make; [`Restoring::finish`] gives the hub.
    pub fn restoring(config: HubConfig, now: u64, open: &[TransportId]) -> Restoring {
        let mut hub = Hub::new(config);
        hub.now = now;
        // Sorted, and searched for each stored connection: an object wakes with tens of
        // thousands of sockets open.
        let mut open = open.to_vec();
        open.sort_unstable();
        Restoring {
            hub,
            open,
            stale: Vec::new(),
            members: Vec::new(),
            history: Vec::new(),
            dropped_while_asleep: Vec::new(),
            serials: Vec::new(),
        }
    }

    /// Puts each channel's stored events back in order. Only the newest run of consecutive
    /// numbers is kept, so that history stays contiguous; anything older is stale.
    fn restore_history(
        &mut self,
        mut history: Vec<(Arc<str>, u64, PresenceMessage)>,
        stale: &mut Vec<String>,
    ) {
        history.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        // The hub-wide order of events, oldest first, rebuilt from their timestamps.
        let mut order: Vec<(i64, Arc<str>, u64, u32)> = Vec::new();
        let mut rest = history.into_iter().peekable();
        while let Some((name, seq, message)) = rest.next() {
            let mut run = vec![(seq, message)];
            while let Some((_, seq, message)) = rest.next_if(|(c, _, _)| *c == name) {
                if run.last().is_some_and(|(last, _)| last + 1 != seq) {
                    // A gap: what came before it is older than the newest run.
                    stale.extend(run.drain(..).map(|(seq, _)| history_key(&name, seq)));
                }
                run.push((seq, message));
            }
            // At most `history_limit` of them, as the hub would have kept.
            let excess = run.len().saturating_sub(self.config.history_limit);
            stale.extend(run.drain(..excess).map(|(seq, _)| history_key(&name, seq)));
            let channel = self.channels.entry(name.clone()).or_default();
            for (seq, message) in run {
                let bytes = super::channel::history_bytes(&message);
                channel.history.push_back(super::channel::HistoryEntry {
                    seq,
                    message,
                    bytes,
                });
                channel.history_seq = seq;
                let at = channel.history.back().and_then(|e| e.message.timestamp);
                order.push((at.unwrap_or(0), name.clone(), seq, bytes));
            }
            channel.stored = channel.held();
        }
        order.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
        for (_, name, seq, bytes) in order {
            self.history.recorded(&name, (seq, bytes, 0));
        }
    }

    /// Once the channels' serials are back: where a restored connection's client stands.
    /// - One whose socket closed while the object slept (as every socket does in a deploy) had
    ///   no frames waiting: all went to that socket, and it heard them up to the channel's
    ///   serial, or says otherwise when it re-attaches.
    /// - One that had dropped before had its frames waiting in memory, which are gone: it
    ///   missed events on each channel where something was numbered since it dropped (its next
    ///   ATTACHED there is not RESUMED, and brings the SYNC), and nothing on the others. (What
    ///   else waited, acknowledgements, its client sends again when it resumes.)
    fn restore_views(&mut self, slot: Slot, dropped_while_asleep: bool) {
        let Some(conn) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        if conn.transport.is_some() {
            return;
        }
        for (name, attachment) in conn.attachments.iter_mut() {
            let serial = self.channels.get(name).map(|c| c.serial);
            if dropped_while_asleep {
                attachment.dropped_at = serial;
            } else if attachment.dropped_at != serial {
                attachment.missed = true;
            }
        }
    }

    /// Puts a stored connection back; `true` when what is stored no longer holds (its socket
    /// closed while the object slept) and must be written anew.
    /// `open` is sorted.
    fn restore_connection(&mut self, record: ConnectionRecord, open: &[TransportId]) -> bool {
        let now = self.now;
        let stored_live = record.transport.is_some();
        let transport = record
            .transport
            .map(TransportId)
            .filter(|t| open.binary_search(t).is_ok());
        let life = match (transport, record.dropped_at) {
            (Some(_), _) => Life::Live,
            (None, Some(at)) => Life::Dropped { at },
            (None, None) => Life::Dropped { at: now },
        };
        let id: Arc<str> = Arc::from(record.id);
        let key: Arc<str> = Arc::from(record.key);
        // Records from before `counted` was stored: counted as they were then (a token's
        // clientId other than `*`).
        let counted = match record.counted {
            Some(counted) => Some(Arc::from(counted)),
            None => record
                .client_id
                .as_deref()
                .filter(|c| *c != "*")
                .filter(|_| record.token_expires.is_some() && !self.config.development_mode())
                .map(Arc::from),
        };
        // A record without views (from before they were stored) vouches for none: its client
        // takes a SYNC when it next re-attaches.
        let views = if record.views.len() == record.attachments.len() {
            record.views
        } else {
            Vec::new()
        };
        let unclaimed = record.unclaimed;
        let attachments: super::small::NameMap<Attachment> = record
            .attachments
            .into_iter()
            .zip(views.into_iter().map(Some).chain(std::iter::repeat(None)))
            .map(|((name, modes), view)| {
                let (synced_at, dropped_at, missed) = view.unwrap_or((u64::MAX, None, false));
                let attachment = Attachment {
                    modes,
                    synced_at,
                    dropped_at,
                    missed,
                    unclaimed: unclaimed.contains(&name),
                };
                (Arc::from(name), attachment)
            })
            .collect();
        let conn = Connection {
            id: id.clone(),
            key: key.clone(),
            client_id: record.client_id.map(Arc::from),
            capability: record.capability,
            token: record.token_expires.map(|expires| Token {
                expires,
                issued: record.token_issued,
                renewal_asked: record.renewal_asked,
            }),
            inbound: RateLimit::new(now, self.inbound_burst()),
            control: RateLimit::new(now, self.control_burst()),
            transport,
            format: if record.msgpack {
                Format::Msgpack
            } else {
                Format::Json
            },
            heartbeats: record.heartbeats,
            heartbeating: record.heartbeating,
            wants_status: record.wants_status,
            // Records from before `counted` was stored: counted as they were then.
            counted,
            remain_present_for: record.remain_present_for,
            heartbeat_interval: record.heartbeat_interval,
            life,
            last_in: now,
            // A keep-alive at once: how long the connection has been without one is not known
            // (the object may have slept through several intervals), and a client that hears
            // nothing for too long gives up on it.
            last_out: now.saturating_sub(record.heartbeat_interval),
            probed: false,
            lost_told: record.lost_told,
            claim_by: record.claim_by,
            // A return not yet told when the object slept is told on the next tick.
            back_notice_at: (record.lost_told && life == Life::Live)
                .then(|| Connection::back_notice_at(now)),
            next_serial: record.next_serial,
            serial_offset: record.serial_offset,
            rebase_serials: record.rebase_serials,
            attachments,
            members: Default::default(),
            own_leaves: record
                .own_leaves
                .into_iter()
                .map(|(channel, client_id, serial, index)| {
                    (Arc::from(channel), Arc::from(client_id), (serial, index))
                })
                .collect(),
            refused: record
                .refused
                .into_iter()
                .map(|(serial, code, status, message)| {
                    (serial, ErrorInfo::new(code, status, message))
                })
                .collect(),
            cut_for_size: record.cut_for_size,
            deadline: None,
            replay: Default::default(),
            replay_bytes: 0,
            // Frames kept for a dropped connection lived in memory, and are gone: see
            // `restore_views`.
            replay_overflowed: false,
            old_keys: record.old_keys.into_iter().map(Arc::from).collect(),
            reentries: 0,
            regain: 0,
            timed_out: record.timed_out,
        };
        let slot = self.slots.len() as Slot;
        self.told_lost += usize::from(conn.lost_told);
        for (name, attachment) in conn.attachments.iter() {
            let channel = self.channels.entry(name.clone()).or_default();
            if attachment.modes & flags::PRESENCE_SUBSCRIBE != 0 && !attachment.unclaimed {
                channel.subscribers.insert(slot);
            }
        }
        self.slots.push(Some(Box::new(conn)));
        self.by_id.insert(id, slot);
        self.by_key.insert(key, slot);
        for old in self.slots[slot as usize]
            .iter()
            .flat_map(|c| c.old_keys.iter())
        {
            self.by_old_key.insert(old.clone(), slot);
        }
        if let Some(transport) = transport {
            self.by_transport.insert(transport, slot);
        }
        self.count_client(slot, 1);
        stored_live && transport.is_none()
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
        serial_offset: conn.serial_offset,
        cut_for_size: conn.cut_for_size,
        timed_out: conn.timed_out,
        rebase_serials: conn.rebase_serials,
        attachments: conn
            .attachments
            .iter()
            .map(|(name, a)| (name.to_string(), a.modes))
            .collect(),
        views: conn
            .attachments
            .iter()
            .map(|(_, a)| (a.synced_at, a.dropped_at, a.missed))
            .collect(),
        unclaimed: conn
            .attachments
            .iter()
            .filter(|(_, a)| a.unclaimed)
            .map(|(name, _)| name.to_string())
            .collect(),
        claim_by: conn.claim_by,
        capability: conn.capability.clone(),
        token_expires: conn.token.map(|t| t.expires),
        token_issued: conn.token.and_then(|t| t.issued),
        renewal_asked: conn.token.is_some_and(|t| t.renewal_asked),
        counted: conn.counted.as_deref().map(str::to_owned),
        old_keys: conn.old_keys.iter().map(|k| k.to_string()).collect(),
        lost_told: conn.lost_told,
        own_leaves: conn
            .own_leaves
            .iter()
            .map(|(channel, client_id, (serial, index))| {
                (channel.to_string(), client_id.to_string(), *serial, *index)
            })
            .collect(),
        refused: conn
            .refused
            .iter()
            .map(|(serial, e)| (*serial, e.code, e.status_code, e.message.clone()))
            .collect(),
    }
}

/// A hub being rebuilt from storage (see [`Hub::restoring`]): what it has decoded so far.
pub struct Restoring {
    hub: Hub,
    open: Vec<TransportId>,
    stale: Vec<String>,
    members: Vec<(String, MemberRecord)>,
    history: Vec<(Arc<str>, u64, PresenceMessage)>,
    dropped_while_asleep: Vec<Slot>,
    serials: Vec<(Arc<str>, u64)>,
}

impl Restoring {
    /// Decodes a batch of stored records (each freed once decoded).
    pub fn feed(&mut self, records: impl IntoIterator<Item = (String, Vec<u8>)>) {
        let hub = &mut self.hub;
        for (key, value) in records {
            if key.starts_with(CONNECTION) {
                match rmp_serde::from_slice::<ConnectionRecord>(&value) {
                    Ok(record) => {
                        if hub.restore_connection(record, &self.open) {
                            self.dropped_while_asleep.push(hub.slots.len() as Slot - 1);
                        }
                    }
                    Err(_) => self.stale.push(key),
                }
            } else if key.starts_with(MEMBER) {
                match rmp_serde::from_slice::<MemberRecord>(&value) {
                    Ok(record) => self.members.push((key, record)),
                    Err(_) => self.stale.push(key),
                }
            } else if let Some(name) = key.strip_prefix(SERIAL) {
                match rmp_serde::from_slice::<u64>(&value) {
                    Ok(serial) => self.serials.push((Arc::<str>::from(name), serial)),
                    Err(_) => self.stale.push(key),
                }
            } else if let Some(seen) = key.strip_prefix(NONCE) {
                // Remembered while it may still be used; forgotten (deleted) after.
                match rmp_serde::from_slice::<u64>(&value) {
                    Ok(until) if until > hub.now => {
                        hub.token_nonces.insert(Arc::from(seen), until);
                    }
                    _ => self.stale.push(key),
                }
            } else if key.starts_with(HISTORY) {
                let parsed = parse_history_key(&key).map(|(c, seq)| (Arc::<str>::from(c), seq));
                match (parsed, rmp_serde::from_slice::<PresenceMessage>(&value)) {
                    (Some((channel, seq)), Ok(message)) => {
                        self.history.push((channel, seq, message));
                    }
                    _ => self.stale.push(key),
                }
            }
        }
    }

    /// The hub, once every record was fed; and the keys of records that no longer mean
    /// anything (to delete).
    pub fn finish(self) -> (Hub, Vec<String>) {
        let Restoring {
            mut hub,
            mut stale,
            members,
            history,
            dropped_while_asleep,
            serials,
            ..
        } = self;
        hub.restore_history(history, &mut stale);
        for (name, serial) in serials {
            hub.channels.entry(name).or_default().serial = serial;
        }
        // An event's history number is the serial it was sent with. Storage holds the two
        // apart, and no history at all once it has all expired: both go on from the greater.
        // A channel with neither stored (swept while a connection that does not listen stayed
        // attached, or stored before serials started from the time) starts from the time, as
        // a channel made now does, and stores it.
        let now = hub.now;
        // The ids the hub makes (its leaves, in stored history too) go on from the time, as
        // serials do, rather than start again at 1 and repeat those made before.
        hub.counter = hub.counter.max(super::channel::first_serial(now));
        for (name, channel) in hub.channels.iter_mut() {
            let next = channel.serial.max(channel.history_seq);
            let next = if next == 0 {
                if let Some(changes) = &mut hub.changes {
                    changes.note_serial(name);
                }
                super::channel::first_serial(now)
            } else {
                next
            };
            channel.serial = next;
            channel.history_seq = next;
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
            // Counted as stored: of two records of one member (storage that disagrees with
            // itself), the last stands.
            let bytes = |member: Option<&PresenceMessage>| {
                member.map_or(0, |m| u64::from(super::channel::history_bytes(m)))
            };
            let removed = bytes(entry.members.member(&member_key));
            entry.members.set(&record.member);
            let added = bytes(entry.members.member(&member_key));
            hub.member_bytes = hub.member_bytes - removed + added;
            hub.count_member_bytes(slot, added, removed);
            if let Some(conn) = hub.slots.get_mut(slot as usize).and_then(Option::as_mut) {
                conn.members.insert((name, member_key.client_id));
            }
        }
        let slots: Vec<Slot> = hub.by_id.values().copied().collect();
        for &slot in &slots {
            // In the order the slots were made: sorted.
            hub.restore_views(slot, dropped_while_asleep.binary_search(&slot).is_ok());
        }
        for slot in slots {
            hub.schedule(slot);
        }
        hub.changes = Some(Changes::default());
        // Swept now, with storage following: armed a whole `historyTtl` after each wake, the
        // sweep never came to an object woken more often than that (by its keep-alives, or
        // requests), whose expired history and idle channels then stayed, and woke it, for ever.
        hub.sweep();
        // When their grace began is stored, so that the next wake does not begin it again.
        for slot in dropped_while_asleep {
            hub.touch_connection(slot);
        }
        // After the changes are noted again, so that storage drops what the budget drops.
        hub.enforce_history_budget();
        (hub, stale)
    }
}
