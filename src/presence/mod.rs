//! The presence set: members keyed by (`clientId`, `connectionId`), the newness rules that
//! decide which of two messages about one member wins (the spec's RTP2b), and the SYNC
//! bookkeeping of residual members (RTP18, RTP19).
//!
//! The hub keeps one [`PresenceMap`] per channel as the authority; each client keeps one per
//! attached channel as its view, rebuilt by SYNC after every attach.

use crate::prelude::*;
use alloc::sync::Arc;

use crate::protocol::{PresenceAction, PresenceMessage};

#[cfg_attr(
    not(all(target_arch = "wasm32", not(feature = "codec"), not(test))),
    allow(dead_code)
)]
mod sorted;

/// The members of a set in key order: a B-tree, or in the browser client (built for size) a
/// sorted `Vec` ([`sorted::SortedMap`]), which has the same behaviour and a fraction of the code.
#[cfg(not(all(target_arch = "wasm32", not(feature = "codec"), not(test))))]
type Members = alloc::collections::BTreeMap<MemberKey, (PresenceMessage, bool)>;
#[cfg(all(target_arch = "wasm32", not(feature = "codec"), not(test)))]
type Members = sorted::SortedMap<MemberKey, (PresenceMessage, bool)>;

/// The identity of a member: one client on one connection.
///
/// Ordered by client id first, so that the devices of one user sit next to each other.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberKey {
    /// The member's client id.
    pub client_id: Arc<str>,
    /// The connection it is present on.
    pub connection_id: Arc<str>,
}

impl MemberKey {
    /// The key of the member a message is about, if the message names both parts.
    pub fn of(message: &PresenceMessage) -> Option<Self> {
        Some(Self {
            client_id: message.client_id.clone()?,
            connection_id: message.connection_id.clone()?,
        })
    }
}

/// Whether a message was made by the server rather than caused by its member's connection: its
/// `id` is missing or does not start with its `connectionId` (RTP2b1).
pub fn is_synthesized(message: &PresenceMessage) -> bool {
    match (&message.id, &message.connection_id) {
        (Some(id), Some(connection_id)) => !id.starts_with(&**connection_id),
        _ => true,
    }
}

/// The `msgSerial` and `index` parts of an id `connectionId:msgSerial:index`.
fn serial_and_index(message: &PresenceMessage) -> Option<(u64, u64)> {
    let id = message.id.as_deref()?.as_bytes();
    let (rest, index) = trailing_number(id)?;
    let (_, serial) = trailing_number(rest)?;
    Some((serial, index))
}

/// Splits `rest:digits` at its last `:`, reading the digits as a number. By hand rather than
/// with `rsplitn` and `parse`: this runs for every presence message, and is small in the Wasm.
fn trailing_number(bytes: &[u8]) -> Option<(&[u8], u64)> {
    let colon = bytes.iter().rposition(|&b| b == b':')?;
    let (rest, digits) = (&bytes[..colon], &bytes[colon + 1..]);
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((rest, n))
}

/// Whether `item` is newer than `existing`, both being about the same member (RTP2b).
///
/// When either was synthesized, the later `timestamp` wins and a tie goes to `item`; otherwise
/// the ids are compared as (`msgSerial`, `index`).
pub fn newer_than(item: &PresenceMessage, existing: &PresenceMessage) -> bool {
    let by_time = || item.timestamp.unwrap_or(0) >= existing.timestamp.unwrap_or(0);
    if is_synthesized(item) || is_synthesized(existing) {
        return by_time();
    }
    match (serial_and_index(item), serial_and_index(existing)) {
        (Some(a), Some(b)) => a > b,
        _ => by_time(),
    }
}

/// A presence set with the newness rules and SYNC bookkeeping.
#[derive(Clone, Debug, Default)]
pub struct PresenceMap {
    /// Members as `Present`, and while a SYNC is in progress `Absent` tombstones of members that
    /// left during it (RTP2h2a); each with whether the SYNC in progress has seen it.
    members: Members,
    /// Whether a SYNC is in progress: members it has not seen by its end are residual (RTP19).
    syncing: bool,
    /// How many entries of `members` are `Present`.
    present: usize,
    /// Counts calls that may have changed the set: what was derived from it at one count
    /// (the hub's encoded SYNC) holds while the count stays.
    version: u64,
}

impl PresenceMap {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies an `enter`, `update` or `present` message. Returns whether it changed the set,
    /// that is whether it is newer than what the set held for that member (RTP2d).
    pub fn put(&mut self, message: &PresenceMessage) -> bool {
        self.version += 1;
        let Some(key) = MemberKey::of(message) else {
            return false;
        };
        let mut stored = message.clone();
        stored.action = PresenceAction::Present;
        match self.members.get_mut(&key) {
            Some((existing, seen)) => {
                // Seen by the SYNC even when not newer (RTP19).
                *seen = true;
                if !newer_than(message, existing) {
                    return false;
                }
                if existing.action == PresenceAction::Absent {
                    self.present += 1;
                }
                *existing = stored;
                true
            }
            None => {
                self.members.insert(key, (stored, true));
                self.present += 1;
                true
            }
        }
    }

    /// Applies a `leave` message. Returns whether a present member was removed (RTP2h).
    ///
    /// While a SYNC is in progress the member is kept as an `Absent` tombstone, so that an older
    /// `present` arriving later in the SYNC cannot bring it back.
    pub fn remove(&mut self, message: &PresenceMessage) -> bool {
        self.version += 1;
        let Some(key) = MemberKey::of(message) else {
            return false;
        };
        let was_present = match self.members.get(&key) {
            Some((existing, _)) if !newer_than(message, existing) => return false,
            Some((existing, _)) => existing.action != PresenceAction::Absent,
            None => false,
        };
        if was_present {
            self.present -= 1;
        }
        if self.syncing {
            let mut tombstone = message.clone();
            tombstone.action = PresenceAction::Absent;
            self.members.insert(key, (tombstone, true));
        } else {
            self.members.remove(&key);
        }
        was_present
    }

    /// Sets a member as the authority decides (the hub, whose order of events is the truth):
    /// no newness comparison, which a clock that went back could otherwise turn against it.
    pub fn set(&mut self, message: &PresenceMessage) {
        self.version += 1;
        let Some(key) = MemberKey::of(message) else {
            return;
        };
        let mut stored = message.clone();
        stored.action = PresenceAction::Present;
        if let Some((old, _)) = self.members.insert(key, (stored, true)) {
            if old.action == PresenceAction::Present {
                return;
            }
        }
        self.present += 1;
    }

    /// Removes a member as the authority decides (see [`PresenceMap::set`]); whether it was
    /// present.
    pub fn unset(&mut self, message: &PresenceMessage) -> bool {
        self.version += 1;
        let Some(key) = MemberKey::of(message) else {
            return false;
        };
        let was_present = self
            .members
            .remove(&key)
            .is_some_and(|(old, _)| old.action == PresenceAction::Present);
        if was_present {
            self.present -= 1;
        }
        was_present
    }

    /// Starts a SYNC: every present member becomes residual until a message about it is seen.
    pub fn start_sync(&mut self) {
        self.version += 1;
        for (_, seen) in self.members.values_mut() {
            *seen = false;
        }
        self.syncing = true;
    }

    /// Ends a SYNC: drops the tombstones and removes the members the SYNC did not mention
    /// (RTP19), returning them so that the caller can emit a `leave` for each.
    pub fn end_sync(&mut self) -> Vec<PresenceMessage> {
        self.version += 1;
        let mut gone = Vec::new();
        if self.syncing {
            self.members.retain(|_, (member, seen)| {
                let residual = !*seen && member.action == PresenceAction::Present;
                if residual {
                    gone.push(member.clone());
                }
                member.action == PresenceAction::Present && !residual
            });
        }
        self.syncing = false;
        self.present = self.members.len();
        gone
    }

    /// Whether a SYNC is in progress.
    pub fn sync_in_progress(&self) -> bool {
        self.syncing
    }

    /// Removes every member without a trace, returning those that were present.
    pub fn clear(&mut self) -> Vec<PresenceMessage> {
        self.version += 1;
        self.syncing = false;
        self.present = 0;
        core::mem::take(&mut self.members)
            .into_values()
            .map(|(m, _)| m)
            .filter(|m| m.action == PresenceAction::Present)
            .collect()
    }

    /// The member with this client id on this connection.
    pub fn get(&self, client_id: &str, connection_id: &str) -> Option<&PresenceMessage> {
        let key = MemberKey {
            client_id: Arc::from(client_id),
            connection_id: Arc::from(connection_id),
        };
        self.members
            .get(&key)
            .map(|(m, _)| m)
            .filter(|m| m.action == PresenceAction::Present)
    }

    /// The member with this key (no allocation, where [`PresenceMap::get`] makes a key).
    pub fn member(&self, key: &MemberKey) -> Option<&PresenceMessage> {
        self.members
            .get(key)
            .map(|(m, _)| m)
            .filter(|m| m.action == PresenceAction::Present)
    }

    /// The present members, ordered by client id and then connection id.
    pub fn members(&self) -> impl Iterator<Item = &PresenceMessage> + '_ {
        self.members
            .values()
            .map(|(m, _)| m)
            .filter(|m| m.action == PresenceAction::Present)
    }

    /// The present members after the one with `after`'s key, in key order: a place in the set
    /// that holds while members come and go (a page of members, and the next).
    pub fn members_after<'a>(
        &'a self,
        after: &'a MemberKey,
    ) -> impl Iterator<Item = &'a PresenceMessage> + 'a {
        self.members
            .range(after.clone()..)
            .filter(move |(k, _)| *k != after)
            .map(|(_, (m, _))| m)
            .filter(|m| m.action == PresenceAction::Present)
    }

    /// The present members with this client id: the devices of one user.
    pub fn devices<'a>(
        &'a self,
        client_id: &'a str,
    ) -> impl Iterator<Item = &'a PresenceMessage> + 'a {
        let start = MemberKey {
            client_id: Arc::from(client_id),
            connection_id: Arc::from(""),
        };
        self.members
            .range(start..)
            .take_while(move |(k, _)| &*k.client_id == client_id)
            .map(|(_, (m, _))| m)
            .filter(|m| m.action == PresenceAction::Present)
    }

    /// Changes whenever the set may have changed (see the field).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// How many members are present.
    pub fn len(&self) -> usize {
        self.present
    }

    /// Whether no member is present.
    pub fn is_empty(&self) -> bool {
        self.present == 0
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn msg(action: PresenceAction, client: &str, conn: &str, id: &str, ts: i64) -> PresenceMessage {
        PresenceMessage {
            id: (!id.is_empty()).then(|| Arc::from(id)),
            client_id: Some(Arc::from(client)),
            connection_id: Some(Arc::from(conn)),
            timestamp: Some(ts),
            ..PresenceMessage::new(action)
        }
    }

    #[test]
    fn synthesized_means_id_not_from_the_connection() {
        assert!(!is_synthesized(&msg(
            PresenceAction::Enter,
            "a",
            "c1",
            "c1:0:0",
            1
        )));
        assert!(is_synthesized(&msg(
            PresenceAction::Leave,
            "a",
            "c1",
            "!srv:1:0",
            1
        )));
        assert!(is_synthesized(&msg(
            PresenceAction::Leave,
            "a",
            "c1",
            "",
            1
        )));
    }

    #[test]
    fn ids_are_read_as_connection_serial_and_index() {
        let of = |id: &str| serial_and_index(&msg(PresenceAction::Enter, "a", "c", id, 0));
        assert_eq!(of("c:3:0"), Some((3, 0)));
        assert_eq!(of("conn:with:colons:12:7"), Some((12, 7)));
        assert_eq!(of(":1:2"), Some((1, 2)));
        assert_eq!(of("c:18446744073709551615:1"), Some((u64::MAX, 1)));
        for bad in [
            "1:2",
            "c:1:",
            "c::2",
            "c:x:2",
            "c:1:2a",
            "c:18446744073709551616:1",
            "",
        ] {
            assert_eq!(of(bad), None, "{bad}");
        }
    }

    #[test]
    fn newness_compares_serial_then_index() {
        let a = msg(PresenceAction::Update, "a", "c1", "c1:2:0", 1);
        let b = msg(PresenceAction::Update, "a", "c1", "c1:10:0", 0);
        assert!(
            newer_than(&b, &a),
            "serial 10 beats 2 whatever the timestamps"
        );
        assert!(!newer_than(&a, &b));
        let c = msg(PresenceAction::Update, "a", "c1", "c1:10:1", 0);
        assert!(newer_than(&c, &b));
        assert!(!newer_than(&b, &b), "the same id is not newer");
    }

    #[test]
    fn newness_compares_timestamps_when_synthesized_and_ties_go_to_the_newcomer() {
        let entered = msg(PresenceAction::Enter, "a", "c1", "c1:5:0", 100);
        let leave = msg(PresenceAction::Leave, "a", "c1", "!srv:1:0", 100);
        assert!(newer_than(&leave, &entered));
        let late = msg(PresenceAction::Leave, "a", "c1", "!srv:1:0", 99);
        assert!(!newer_than(&late, &entered));
    }

    #[test]
    fn two_connections_of_one_client_are_two_members() {
        let mut map = PresenceMap::new();
        assert!(map.put(&msg(PresenceAction::Enter, "user-123", "c1", "c1:0:0", 1)));
        assert!(map.put(&msg(PresenceAction::Enter, "user-123", "c2", "c2:0:0", 1)));
        assert_eq!(map.len(), 2);
        assert_eq!(map.devices("user-123").count(), 2);
        assert!(map.remove(&msg(PresenceAction::Leave, "user-123", "c1", "c1:1:0", 2)));
        assert_eq!(map.devices("user-123").count(), 1);
        assert!(map.get("user-123", "c2").is_some());
    }

    #[test]
    fn stale_messages_change_nothing() {
        let mut map = PresenceMap::new();
        assert!(map.put(&msg(PresenceAction::Enter, "a", "c1", "c1:3:0", 1)));
        assert!(!map.put(&msg(PresenceAction::Update, "a", "c1", "c1:2:0", 1)));
        assert!(!map.remove(&msg(PresenceAction::Leave, "a", "c1", "c1:1:0", 1)));
        assert_eq!(map.get("a", "c1").unwrap().id.as_deref(), Some("c1:3:0"));
        assert_eq!(map.get("a", "c1").unwrap().action, PresenceAction::Present);
    }

    #[test]
    fn leave_of_an_absent_member_reports_nothing() {
        let mut map = PresenceMap::new();
        assert!(!map.remove(&msg(PresenceAction::Leave, "a", "c1", "c1:0:0", 1)));
        assert!(map.is_empty());
    }

    #[test]
    fn sync_removes_residual_members_and_keeps_seen_ones() {
        let mut map = PresenceMap::new();
        map.put(&msg(PresenceAction::Enter, "a", "c1", "c1:0:0", 1));
        map.put(&msg(PresenceAction::Enter, "b", "c2", "c2:0:0", 1));
        map.start_sync();
        assert!(map.sync_in_progress());
        assert!(!map.put(&msg(PresenceAction::Present, "a", "c1", "c1:0:0", 1)));
        map.put(&msg(PresenceAction::Present, "c", "c3", "c3:0:0", 1));
        let gone = map.end_sync();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].client_id.as_deref(), Some("b"));
        let names: Vec<_> = map
            .members()
            .map(|m| m.client_id.clone().unwrap())
            .collect();
        assert_eq!(names, vec![Arc::from("a"), Arc::from("c")]);
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn a_leave_during_sync_is_not_undone_by_an_older_present() {
        let mut map = PresenceMap::new();
        map.start_sync();
        assert!(!map.remove(&msg(PresenceAction::Leave, "a", "c1", "c1:5:0", 10)));
        assert!(!map.put(&msg(PresenceAction::Present, "a", "c1", "c1:4:0", 9)));
        assert!(map.end_sync().is_empty());
        assert!(map.is_empty());
        assert_eq!(map.members().count(), 0);
    }

    #[test]
    fn messages_without_identity_are_ignored() {
        let mut map = PresenceMap::new();
        let mut m = msg(PresenceAction::Enter, "a", "c1", "c1:0:0", 1);
        m.connection_id = None;
        assert!(!map.put(&m));
        assert!(map.is_empty());
    }
}
