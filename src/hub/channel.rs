//! A channel as the hub holds it: the authoritative presence set, the connections that receive
//! its presence events, and its presence history.

use std::collections::{BTreeSet, VecDeque};

use super::Slot;
use crate::presence::PresenceMap;
use crate::protocol::PresenceMessage;

/// One presence event kept in history, numbered in the order it happened.
#[derive(Clone, Debug)]
pub(crate) struct HistoryEntry {
    pub(crate) seq: u64,
    pub(crate) message: PresenceMessage,
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
    /// Counts attaches; names the attach point in `channelSerial`.
    pub(crate) attach_serial: u64,
}

impl Channel {
    /// Records a presence event, keeping at most `limit` events.
    pub(crate) fn record(&mut self, message: PresenceMessage, limit: usize) {
        self.history_seq += 1;
        self.history.push_back(HistoryEntry {
            seq: self.history_seq,
            message,
        });
        while self.history.len() > limit {
            self.history.pop_front();
        }
    }

    /// Drops history older than `horizon` (milliseconds since the epoch).
    pub(crate) fn prune_history(&mut self, horizon: u64) {
        while self
            .history
            .front()
            .is_some_and(|e| e.message.timestamp.unwrap_or(0) < horizon as i64)
        {
            self.history.pop_front();
        }
    }

    /// The history numbers held now, `[first, end)`: contiguous, as events are only added at the
    /// back and dropped from the front.
    pub(crate) fn held(&self) -> (u64, u64) {
        let end = self.history_seq + 1;
        (self.history.front().map_or(end, |e| e.seq), end)
    }

    /// Whether nothing would be lost by forgetting the channel.
    pub(crate) fn is_idle(&self) -> bool {
        self.members.is_empty() && self.subscribers.is_empty() && self.history.is_empty()
    }
}

/// Whether a channel name is one the hub accepts: not empty, at most 1 024 bytes, no control
/// characters, and no `[` qualifier prefix (channel parameters are not supported).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 1024
        && !name.starts_with('[')
        && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

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
