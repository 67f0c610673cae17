//! A channel as the hub holds it: the authoritative presence set, the connections that receive
//! its presence events, and its presence history.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use super::Slot;
use crate::presence::PresenceMap;
use crate::protocol::{Data, PresenceMessage};

/// One presence event kept in history, numbered in the order it happened.
#[derive(Clone, Debug)]
pub(crate) struct HistoryEntry {
    pub(crate) seq: u64,
    pub(crate) message: PresenceMessage,
    /// What it holds in memory, roughly (see [`history_bytes`]).
    pub(crate) bytes: u32,
}

/// The memory a history entry holds, roughly: the entry and its strings (the client and
/// connection ids may be shared with a member, or not once it has left: counted all the same).
pub(crate) fn history_bytes(message: &PresenceMessage) -> u32 {
    let len = |s: &Option<Arc<str>>| s.as_ref().map(|s| s.len());
    bytes_with_ids(
        message,
        len(&message.id),
        len(&message.client_id),
        len(&message.connection_id),
    )
}

/// At least what `item`, sent by connection `connection_id` for `client_id`, counts once the
/// hub has stored it: with its id (the connection id, a serial and an index), its client id
/// and its connection id.
pub(crate) fn stored_bytes_at_most(
    item: &PresenceMessage,
    client_id: &str,
    connection_id: &str,
) -> u32 {
    // ":" and a u64 serial, ":" and a usize index, in digits.
    let id = connection_id.len() + 1 + 20 + 1 + 20;
    bytes_with_ids(
        item,
        Some(id),
        Some(client_id.len()),
        Some(connection_id.len()),
    )
}

/// [`history_bytes`] of `message` with ids of these lengths.
fn bytes_with_ids(
    message: &PresenceMessage,
    id: Option<usize>,
    client_id: Option<usize>,
    connection_id: Option<usize>,
) -> u32 {
    let data = message.data.as_ref().map_or(0, Data::json_len);
    let extras = message.extras.as_ref().map_or(0, |e| e.0.len())
        + message.encoding.as_ref().map_or(0, |e| e.len());
    let ids = [id, client_id, connection_id]
        .iter()
        .map(|len| len.map_or(0, |len| len + 16))
        .sum::<usize>();
    let total = std::mem::size_of::<HistoryEntry>() + ids + data + extras;
    u32::try_from(total).unwrap_or(u32::MAX)
}

#[derive(Debug, Default)]
pub(crate) struct Channel {
    pub(crate) members: PresenceMap,
    /// Connections attached with the presence-subscribe mode.
    pub(crate) subscribers: BTreeSet<Slot>,
    pub(crate) history: VecDeque<HistoryEntry>,
    pub(crate) history_seq: u64,
    /// With persistence: the history numbers durable storage holds, `[first, end)`.
    pub(crate) stored: (u64, u64),
    /// Counts the presence events every subscriber hears; each frame carries the number of its
    /// last as `channelSerial`, and so does ATTACHED, so that a client knows how far it got and
    /// can say so when it re-attaches after a resume.
    pub(crate) serial: u64,
    /// Subscribers sent the set as of a number beyond `serial` (they attached, or asked for a
    /// SYNC, with events of the channel still to send, whose outcome the set holds): they are
    /// sent only the events after it, or they would see members come and go that had come and
    /// gone before they attached.
    pub(crate) joined: Vec<(Slot, u64)>,
    /// The members encoded for a SYNC, in JSON and in msgpack, with the set's version they
    /// were encoded at: a reconnecting crowd re-attaching at once encodes them once, not once
    /// per connection.
    pub(crate) sync_items: [Option<EncodedSet>; 2],
}

/// Where the serials of a channel made at `now` (ms) start (see [`Channel::starting_at`]).
pub(crate) fn first_serial(now: u64) -> u64 {
    now.saturating_mul(1000)
}

impl Channel {
    /// A channel made at `now` (ms): its serials (and history numbers) start from the time, in
    /// thousandths of a millisecond, so that they go on past those of any channel of that name
    /// the hub held before and forgot (or before a restart), rather than start again at 0. A
    /// serial a client kept from then (for `untilAttach`, or to resume) then names no event
    /// of this one, however many that one had (unless over a thousand a millisecond).
    pub(crate) fn starting_at(now: u64) -> Self {
        let first = first_serial(now);
        Self {
            serial: first,
            history_seq: first,
            ..Self::default()
        }
    }

    /// The number a SYNC of the set sent now stands at: the events still to send included, as
    /// their outcome is in the set. A subscriber (`subscribes`) sent it is sent only those that
    /// follow (see [`Channel::joined`]).
    pub(crate) fn synced(&mut self, slot: Slot, subscribes: bool) -> u64 {
        if subscribes && self.history_seq > self.serial {
            self.joined.push((slot, self.history_seq));
        }
        self.history_seq
    }

    /// Records a presence event, keeping at most `limit` events. Returns its number and size,
    /// and the bytes of the events it pushed out.
    pub(crate) fn record(&mut self, message: PresenceMessage, limit: usize) -> (u64, u32, u64) {
        self.history_seq += 1;
        let bytes = history_bytes(&message);
        self.history.push_back(HistoryEntry {
            seq: self.history_seq,
            message,
            bytes,
        });
        let mut freed = 0;
        while self.history.len() > limit {
            freed += self.history.pop_front().map_or(0, |e| u64::from(e.bytes));
        }
        (self.history_seq, bytes, freed)
    }

    /// Drops history older than `horizon` (milliseconds since the epoch); returns the bytes
    /// freed.
    pub(crate) fn prune_history(&mut self, horizon: u64) -> u64 {
        let mut freed = 0;
        while self
            .history
            .front()
            .is_some_and(|e| e.message.timestamp.unwrap_or(0) < horizon as i64)
        {
            freed += self.history.pop_front().map_or(0, |e| u64::from(e.bytes));
        }
        freed
    }

    /// Drops the oldest event if it is number `seq`; returns its bytes.
    pub(crate) fn drop_oldest(&mut self, seq: u64) -> Option<u64> {
        if self.history.front()?.seq != seq {
            return None;
        }
        self.history.pop_front().map(|e| u64::from(e.bytes))
    }

    /// The history numbers held now, `[first, end)`: contiguous, as events are only added at the
    /// back and dropped from the front.
    pub(crate) fn held(&self) -> (u64, u64) {
        let end = self.history_seq + 1;
        (self.history.front().map_or(end, |e| e.seq), end)
    }

    /// The bytes of its members encoded for SYNCs, in both formats.
    pub(crate) fn sync_bytes(&self) -> usize {
        self.sync_items
            .iter()
            .flatten()
            .map(|(_, items)| encoded_bytes(items))
            .sum()
    }

    /// Whether nothing would be lost by forgetting the channel.
    pub(crate) fn is_idle(&self) -> bool {
        self.members.is_empty() && self.subscribers.is_empty() && self.history.is_empty()
    }
}

/// What a set encoded item by item holds: its bytes, and each item's own.
pub(crate) fn encoded_bytes(items: &[Vec<u8>]) -> usize {
    items
        .iter()
        .map(|item| item.len() + core::mem::size_of::<Vec<u8>>())
        .sum()
}

/// A presence set encoded item by item, with the set's version it was encoded at.
pub(crate) type EncodedSet = (u64, Arc<[Vec<u8>]>);

/// The history of every channel, oldest first, held to the hub's `maxHistoryBytes`: one
/// client cannot make the hub keep more history than that, however many channels it spreads
/// its events over.
#[derive(Debug, Default)]
pub(crate) struct HistoryBudget {
    /// Every event recorded, as (channel, number), in the order they happened. Entries whose
    /// event is gone already are dropped when they reach the front.
    order: VecDeque<(Arc<str>, u64)>,
    /// The bytes held: the events' and this order's own.
    pub(crate) bytes: u64,
}

/// What one entry of the order holds.
const ORDER_BYTES: u64 = std::mem::size_of::<(Arc<str>, u64)>() as u64;

impl HistoryBudget {
    /// An event was recorded (`Channel::record`'s answer).
    pub(crate) fn recorded(&mut self, channel: &Arc<str>, (seq, bytes, freed): (u64, u32, u64)) {
        self.order.push_back((channel.clone(), seq));
        self.bytes = (self.bytes + u64::from(bytes) + ORDER_BYTES).saturating_sub(freed);
    }

    /// Events were dropped from a channel's history.
    pub(crate) fn freed(&mut self, bytes: u64) {
        self.bytes = self.bytes.saturating_sub(bytes);
    }

    /// Drops the oldest events, whichever channel holds them, until at most `limit` bytes are
    /// held; returns the channels whose history changed.
    pub(crate) fn enforce(
        &mut self,
        limit: u64,
        channels: &mut HashMap<Arc<str>, Channel>,
    ) -> Vec<Arc<str>> {
        let mut changed: Vec<Arc<str>> = Vec::new();
        while self.bytes > limit {
            let Some((name, seq)) = self.order.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(ORDER_BYTES);
            if let Some(bytes) = channels.get_mut(&name).and_then(|c| c.drop_oldest(seq)) {
                self.bytes = self.bytes.saturating_sub(bytes);
                if !changed.contains(&name) {
                    changed.push(name);
                }
            }
        }
        changed
    }

    /// Forgets the front entries whose events are gone (expired, pushed out by a channel's
    /// `historyLimit`, or their channel forgotten).
    pub(crate) fn trim(&mut self, channels: &HashMap<Arc<str>, Channel>) {
        while let Some((name, seq)) = self.order.front() {
            let live = channels
                .get(name)
                .and_then(|c| c.history.front())
                .is_some_and(|e| e.seq <= *seq);
            if live {
                break;
            }
            self.order.pop_front();
            self.bytes = self.bytes.saturating_sub(ORDER_BYTES);
        }
    }
}

/// Whether a channel name is one the hub accepts: not empty, at most 1 024 bytes, no control
/// characters, no `[` qualifier prefix (channel parameters are not supported), and not `.` or
/// `..`, which no URL can name (a REST read of them reaches another path, whatever escapes it).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 1024
        && !name.starts_with('[')
        && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_entry_is_counted_with_its_strings() {
        let message = |client: &str| PresenceMessage {
            client_id: Some(Arc::from(client)),
            ..PresenceMessage::new(crate::protocol::PresenceAction::Leave)
        };
        let small = history_bytes(&message("a"));
        let large = history_bytes(&message(&"x".repeat(60_000)));
        assert!(large >= small + 59_999, "{small} then {large}");
    }

    #[test]
    fn names() {
        assert!(valid_name("job-map-new"));
        assert!(valid_name("a:b/c d"));
        assert!(!valid_name(""));
        assert!(!valid_name("[?rewind=1]x"));
        assert!(!valid_name("a\nb"));
        assert!(!valid_name(&"x".repeat(1025)));
    }
}
