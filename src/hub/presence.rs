//! Presence operations on the hub: applying a client's enter, update and leave, the leaves the
//! hub makes itself, and sending the resulting events to every subscriber.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::channel::{history_bytes, stored_bytes_at_most};
use super::{codec, Format, Hub, Slot, Transmit};
use crate::presence::MemberKey;
use crate::protocol::{
    codes, flags, Action, ErrorInfo, PresenceAction, PresenceMessage, ProtocolMessage, RawJson,
};

/// A connection's grace status, as an item of a `ConnectionStatus` frame (rollcall's own): action
/// `absent` while its members wait out their grace window, `present` when it is back.
fn status_item(connection_id: Arc<str>, lost: bool) -> PresenceMessage {
    PresenceMessage {
        id: None,
        action: if lost {
            PresenceAction::Absent
        } else {
            PresenceAction::Present
        },
        client_id: None,
        connection_id: Some(connection_id),
        data: None,
        encoding: None,
        extras: None,
        timestamp: None,
    }
}

/// The longest `encoding` taken, in bytes.
const MAX_ENCODING: usize = 256;

/// The usual encodings as one shared string each, rather than one per member and event.
fn intern_encoding(encoding: Arc<str>) -> Arc<str> {
    thread_local! {
        static COMMON: [Arc<str>; 3] = [Arc::from("json"), Arc::from("base64"), Arc::from("utf-8")];
    }
    COMMON.with(|common| {
        common
            .iter()
            .find(|c| ***c == *encoding)
            .cloned()
            .unwrap_or(encoding)
    })
}

/// Why the hub made a member leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LeaveReason {
    /// The connection dropped and did not come back within `remainPresentFor`.
    Timeout,
    /// The connection closed (`CLOSE`).
    Closed,
    /// The connection detached from the channel.
    Detached,
    /// The hub ended the connection for what it sent.
    Failed,
    /// The connection's credentials no longer allow it to be present on the channel.
    Revoked,
}

impl LeaveReason {
    fn extras(self) -> RawJson {
        let reason = match self {
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::Detached => "detached",
            Self::Failed => "failed",
            Self::Revoked => "revoked",
        };
        RawJson(Arc::from(format!(r#"{{"reason":"{reason}"}}"#)))
    }
}

/// What one presence item of a client's message will do, decided before anything is applied so
/// that a message is applied whole or not at all.
struct Op {
    action: PresenceAction,
    client_id: Arc<str>,
    item: PresenceMessage,
}

impl Hub {
    pub(super) fn on_presence(&mut self, slot: Slot, message: ProtocolMessage) {
        let Some(serial) = message.msg_serial else {
            return self.fail(slot, super::malformed("PRESENCE without a msgSerial"));
        };
        let Some(conn) = self.conn(slot) else {
            return;
        };
        if serial < 0 {
            let error = ErrorInfo::new(codes::BAD_REQUEST, 400, "msgSerial must not be negative");
            return self.nack(slot, serial, error);
        }
        if serial < conn.next_serial {
            // A resend of a message already answered (after a resume): the same answer again.
            return match conn.refusal(serial).cloned() {
                Some(error) => self.nack(slot, serial, error),
                None => self.ack(slot, serial),
            };
        }
        // Ably's measure (TO3l8): the items' data (binary as its bytes), clientIds and extras,
        // whatever their escapes in JSON. (A frame past maxFrameSize was refused unread.)
        let payload: usize = message
            .presence
            .iter()
            .flatten()
            .map(PresenceMessage::size)
            .sum();
        let max = self.config.max_message_size;
        if payload > max {
            let error = ErrorInfo::new(
                codes::MESSAGE_TOO_LARGE,
                400,
                format!("message of {payload} bytes exceeds maxMessageSize of {max} bytes"),
            );
            return self.nack(slot, serial, error);
        }
        let Some(name) = message.channel.clone() else {
            return self.nack(slot, serial, super::malformed("PRESENCE without a channel"));
        };
        let ops = match self.check_presence(slot, &name, message.presence.unwrap_or_default()) {
            Ok(ops) => ops,
            Err(error) => return self.nack(slot, serial, error),
        };
        for (index, op) in ops.into_iter().enumerate() {
            self.apply(slot, &name, serial, index, op);
        }
        if let Some(conn) = self.conn_mut(slot) {
            conn.next_serial = serial.saturating_add(1);
        }
        self.touch_connection(slot);
        self.ack(slot, serial);
    }

    /// Checks every item of a presence message against the connection's identity, the channel's
    /// state and the limits.
    fn check_presence(
        &self,
        slot: Slot,
        name: &Arc<str>,
        items: Vec<PresenceMessage>,
    ) -> Result<Vec<Op>, ErrorInfo> {
        let Some(conn) = self.conn(slot) else {
            return Err(ErrorInfo::new(codes::INTERNAL, 500, "no connection"));
        };
        // A channel held for a client that recovered the connection is not attached for it
        // until it attaches it again.
        let Some(attachment) = conn.attachments.get(name).filter(|a| !a.unclaimed) else {
            return Err(ErrorInfo::new(
                codes::CHANNEL_STATE,
                400,
                format!("unable to use presence on channel {name}: not attached"),
            ));
        };
        // Without the PRESENCE mode (a re-attach may drop it) a member can still leave: it would
        // otherwise be stuck until the connection ends.
        let may_enter = attachment.modes & flags::PRESENCE != 0;
        let members = self.channels.get(name).map(|c| &c.members);
        let mut entering = 0;
        let mut adding = 0u64;
        let mut ops = Vec::with_capacity(items.len());
        // The clientIds this message enters or updates so far: a frame of thousands of items
        // is checked in time linear in them (a search of the items before each was quadratic:
        // 8 000 took 181 ms, and a refused frame can be sent again and again).
        let mut entered: HashSet<Arc<str>> = HashSet::new();
        for item in items {
            let action = item.action;
            if !matches!(
                action,
                PresenceAction::Enter | PresenceAction::Update | PresenceAction::Leave
            ) {
                return Err(super::malformed(
                    "a presence action must be enter, update or leave",
                ));
            }
            if action != PresenceAction::Leave && !may_enter {
                return Err(ErrorInfo::new(
                    codes::CAPABILITY_REFUSED,
                    401,
                    format!("presence is not permitted on channel {name}"),
                ));
            }
            // Ably's measure leaves the encoding out; a real one is a few steps
            // (`json/utf-8/cipher+aes-128-cbc/base64`), and one longer than this is no encoding.
            if item
                .encoding
                .as_ref()
                .is_some_and(|e| e.len() > MAX_ENCODING)
            {
                return Err(ErrorInfo::new(
                    codes::INVALID_MESSAGE_DATA,
                    400,
                    format!("invalid encoding: at most {MAX_ENCODING} bytes"),
                ));
            }
            // As a connection's own is checked (enterClient names another).
            if let Some(error) = item
                .client_id
                .as_deref()
                .and_then(super::auth::invalid_client_id)
            {
                return Err(error);
            }
            let client_id = match (&item.client_id, &conn.client_id) {
                (Some(given), Some(own)) if conn.wildcard() || given == own => given.clone(),
                (Some(given), _) => {
                    return Err(ErrorInfo::new(
                        codes::INVALID_CLIENT_ID,
                        400,
                        format!("this connection cannot act for clientId {given}"),
                    ))
                }
                (None, Some(own)) if !conn.wildcard() => own.clone(),
                (None, _) => {
                    return Err(ErrorInfo::new(
                        codes::INVALID_CLIENT_ID,
                        400,
                        "unable to enter presence without a clientId",
                    ))
                }
            };
            let existing = members.and_then(|m| m.get(&client_id, &conn.id));
            if action != PresenceAction::Leave {
                // Counted as it will be stored, ids and all, so that updates that each grow a
                // little cannot pass the budget.
                let old = existing.map_or(0, history_bytes);
                let new = stored_bytes_at_most(&item, &client_id, &conn.id);
                adding += u64::from(new.saturating_sub(old));
                // Once per clientId that is not a member yet, whatever this message has it do
                // before (a LEAVE first does not make room).
                let first = entered.insert(client_id.clone());
                if existing.is_none() && first {
                    entering += 1;
                }
            }
            ops.push(Op {
                action,
                client_id,
                item,
            });
        }
        let present = members.map_or(0, |m| m.len());
        if entering > 0 && present + entering > self.config.max_members_per_channel {
            return Err(ErrorInfo::new(
                codes::TOO_MANY_MEMBERS,
                400,
                format!(
                    "channel {name} has reached its limit of {} members",
                    self.config.max_members_per_channel
                ),
            ));
        }
        let held = conn
            .counted
            .as_ref()
            .and_then(|c| Some((c, self.per_client.get(c)?)));
        if let Some((client, held)) = held.filter(|_| adding > 0) {
            let limit = self.config.max_member_bytes_per_client;
            if held.member_bytes.saturating_add(adding) > limit {
                return Err(ErrorInfo::new(
                    codes::TOO_MANY_MEMBERS,
                    400,
                    format!(
                        "{} holds its limit of {limit} bytes of member data",
                        super::counted_as(client)
                    ),
                ));
            }
        }
        if adding > 0 && self.member_bytes.saturating_add(adding) > self.config.max_member_bytes {
            return Err(ErrorInfo::new(
                codes::TOO_MANY_MEMBERS,
                400,
                format!(
                    "the hub holds its limit of {} bytes of member data",
                    self.config.max_member_bytes
                ),
            ));
        }
        Ok(ops)
    }

    /// Applies one checked presence item and queues the event it causes, if any.
    fn apply(&mut self, slot: Slot, name: &Arc<str>, serial: i64, index: usize, op: Op) {
        let now = self.now as i64;
        let history_limit = self.config.history_limit;
        if self.conn(slot).is_none() {
            return;
        }
        // The channel may have been swept while only connections that do not subscribe were
        // attached (nothing to keep then): it is made anew, and nothing is dropped.
        self.channel_or_new(name);
        let Some(conn) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        let Some(channel) = self.channels.get_mut(name) else {
            return;
        };
        let key = MemberKey {
            client_id: op.client_id.clone(),
            connection_id: conn.id.clone(),
        };
        let existing = channel.members.member(&key).cloned();
        // A re-entry names the operation it restores (RTP17g): one older than what the member
        // holds now (an update made while the re-entry was being sent), or than the member's
        // own leave (whose echo the client never heard, lost with a transport), changes nothing.
        if op.action == PresenceAction::Enter {
            let position = |id: &Option<Arc<str>>| {
                let rest = id.as_deref()?.strip_prefix(&*conn.id)?.strip_prefix(':')?;
                let (serial, index) = rest.split_once(':')?;
                Some((serial.parse::<i64>().ok()?, index.parse::<u64>().ok()?))
            };
            let own_leave = conn.own_leave(name, &op.client_id);
            let newest = match &existing {
                Some(old) => position(&old.id),
                None => own_leave,
            };
            // One that names an operation this hub refused carries what was refused.
            if position(&op.item.id).is_some_and(|(serial, _)| conn.refusal(serial).is_some()) {
                return;
            }
            if let (Some(restores), Some(newest)) = (position(&op.item.id), newest) {
                if restores < newest {
                    // The client never heard its leave: it is told again, or it would hold the
                    // member as its own and enter it after every reconnect (ably-js forgets
                    // one only on its leave's echo, RTP17b).
                    if let (None, Some((serial, index))) = (&existing, own_leave) {
                        self.echo_leave(slot, name, op.client_id, (serial, index as usize), None);
                    }
                    return;
                }
            }
        }
        let event_action = match (op.action, &existing) {
            (PresenceAction::Leave, None) => {
                // A leave of a member that has gone (its first leave's echo went with a
                // transport, and ably-js sends it again as a new message; or the hub made the
                // leave, at the end of a grace window): the sender alone hears it, so that the
                // client stops holding the member as its own. Remembered as its own leave: a
                // re-entry naming an operation before it, should this echo be lost too, does
                // not bring the member back.
                if let Some(conn) = self.conn_mut(slot) {
                    conn.note_own_leave(name, &op.client_id, Some((serial, index as u64)));
                }
                self.echo_leave(slot, name, op.client_id, (serial, index), Some(op.item));
                return;
            }
            (PresenceAction::Leave, Some(_)) => PresenceAction::Leave,
            (_, None) => PresenceAction::Enter,
            (PresenceAction::Enter, Some(old))
                if old.data == op.item.data
                    && old.encoding == op.item.encoding
                    && old.extras == op.item.extras =>
            {
                // A re-entry (as every client sends after a reconnect) that changes nothing.
                return;
            }
            (_, Some(_)) => PresenceAction::Update,
        };
        let mut event = PresenceMessage {
            id: Some(Arc::from(format!("{}:{serial}:{index}", conn.id))),
            action: event_action,
            client_id: Some(op.client_id.clone()),
            connection_id: Some(conn.id.clone()),
            data: op.item.data,
            encoding: op.item.encoding.map(intern_encoding),
            extras: op.item.extras,
            timestamp: Some(now),
        };
        if let Some(changes) = &mut self.changes {
            changes.note_member(name, &conn.id, &op.client_id);
        }
        let mut added = 0;
        if event_action == PresenceAction::Leave {
            if event.data.is_none() {
                if let Some(old) = &existing {
                    event.data = old.data.clone();
                    event.encoding = old.encoding.clone();
                }
            }
            channel.members.unset(&event);
            conn.note_own_leave(name, &op.client_id, Some((serial, index as u64)));
            conn.members.remove(&(name.clone(), op.client_id));
        } else {
            channel.members.set(&event);
            conn.note_own_leave(name, &op.client_id, None);
            conn.members.insert((name.clone(), op.client_id));
            added = u64::from(history_bytes(&event));
        }
        let removed = existing
            .as_ref()
            .map_or(0, |old| u64::from(history_bytes(old)));
        self.member_bytes = (self.member_bytes + added).saturating_sub(removed);
        // An encoded SYNC of the set as it was is of no more use: its memory goes now.
        channel.sync_items = Default::default();
        let recorded = channel.record(event.clone(), history_limit);
        self.history.recorded(name, recorded);
        if let Some(changes) = &mut self.changes {
            changes.note_history(name);
            changes.note_serial(name);
        }
        self.pending.push((name.clone(), event));
        self.count_member_bytes(slot, added, removed);
        self.enforce_history_budget();
        // The channel may be new (made anew above): it is swept in its turn.
        self.arm_sweep();
    }

    /// Tells a connection alone of its own leave of a member that is not there, as the echo
    /// of message `(serial, index)` (with the data and encoding of `item`, the leave sent):
    /// its client forgets the member, and no one else hears a thing.
    fn echo_leave(
        &mut self,
        slot: Slot,
        name: &Arc<str>,
        client_id: Arc<str>,
        (serial, index): (i64, usize),
        item: Option<PresenceMessage>,
    ) {
        let Some(conn) = self.conn(slot) else {
            return;
        };
        let mut leave = PresenceMessage::new(PresenceAction::Leave);
        leave.id = Some(Arc::from(format!("{}:{serial}:{index}", conn.id)));
        leave.client_id = Some(client_id);
        leave.connection_id = Some(conn.id.clone());
        leave.timestamp = Some(self.now as i64);
        if let Some(item) = item {
            leave.data = item.data;
            leave.encoding = item.encoding.map(intern_encoding);
        }
        let mut message = ProtocolMessage::for_channel(Action::Presence, name.clone());
        message.presence = Some(vec![leave]);
        self.send(slot, &message);
    }

    /// The connection's members leave at once, on one channel or on all: the hub makes the
    /// leaves, with ids that do not start with the connection id, and says why in their
    /// `extras` (`{"reason": "timeout"}`).
    pub(super) fn leave_members(
        &mut self,
        slot: Slot,
        only: Option<&Arc<str>>,
        reason: LeaveReason,
    ) {
        let now = self.now as i64;
        let history_limit = self.config.history_limit;
        let Some(conn) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        let leaving = conn.members.take_channel(only.map(|n| &**n));
        let connection_id = conn.id.clone();
        // What the leaves take off the clientId's quota, counted once.
        let mut left = 0;
        for (name, client_id) in leaving {
            self.counter += 1;
            let Some(channel) = self.channels.get_mut(&name) else {
                continue;
            };
            let key = MemberKey {
                client_id: client_id.clone(),
                connection_id: connection_id.clone(),
            };
            let Some(member) = channel.members.member(&key) else {
                continue;
            };
            let leave = PresenceMessage {
                id: Some(Arc::from(format!(
                    "!{}:{}:0",
                    self.config.server_id, self.counter
                ))),
                action: PresenceAction::Leave,
                // Never older than what it ends, even after a restart on a clock that is
                // behind: clients compare a leave the hub made by time (RTP2b).
                timestamp: Some(member.timestamp.map_or(now, |t| t.max(now))),
                extras: Some(reason.extras()),
                ..member.clone()
            };
            let removed = u64::from(history_bytes(member));
            self.member_bytes = self.member_bytes.saturating_sub(removed);
            channel.members.unset(&leave);
            channel.sync_items = Default::default();
            if let Some(changes) = &mut self.changes {
                changes.note_member(&name, &connection_id, &client_id);
            }
            let recorded = channel.record(leave.clone(), history_limit);
            self.history.recorded(&name, recorded);
            if let Some(changes) = &mut self.changes {
                changes.note_history(&name);
                changes.note_serial(&name);
            }
            self.pending.push((name, leave));
            left += removed;
            self.enforce_history_budget();
        }
        self.count_member_bytes(slot, 0, left);
    }

    /// Tells the subscribers that asked (rollcall clients) that a connection with members was
    /// lost (its members stay for their grace window) or is back. The word goes out with the
    /// presence events of the same turn, after them, and all the statuses of a channel in one
    /// frame: a crowd that drops or comes back at once costs each listener a frame, not one per
    /// connection.
    pub(super) fn announce_connection(&mut self, slot: Slot, lost: bool) {
        let Some(conn) = self.conn(slot) else {
            return;
        };
        let connection_id = conn.id.clone();
        let mut channels: Vec<Arc<str>> = conn.members.iter().map(|(c, _)| c.clone()).collect();
        channels.sort();
        channels.dedup();
        for name in channels {
            self.pending_status
                .push((name, connection_id.clone(), lost));
        }
    }

    /// After a SYNC, or before the ATTACHED that spares a resumed client one: which members of
    /// the channel are in their grace window, for a client that asked. (These statuses are not
    /// numbered in the channel's serial: in a crowd that drops at once, each is sent to sockets
    /// that are already gone, and would cost every client its SYNC. A client told the whole
    /// list again has no need of those it missed.)
    pub(super) fn send_lost_connections(&mut self, slot: Slot, name: &Arc<str>) {
        // Nothing to look for among the members while no connection is told lost.
        if self.told_lost == 0 || !self.conn(slot).is_some_and(|c| c.wants_status) {
            return;
        }
        let Some(channel) = self.channels.get(name) else {
            return;
        };
        let mut lost: Vec<Arc<str>> = channel
            .members
            .members()
            .filter_map(|m| m.connection_id.clone())
            .filter(|id| {
                self.by_id
                    .get(id)
                    .and_then(|&s| self.conn(s))
                    // One that is back is not listed, though its return is told only on
                    // the next tick: a client that attached just after it resumed would show
                    // it lost, then back.
                    .is_some_and(|c| c.lost_told && c.back_notice_at.is_none())
            })
            .collect();
        lost.sort();
        lost.dedup();
        if lost.is_empty() {
            return;
        }
        let Some(format) = self.conn(slot).map(|c| c.format) else {
            return;
        };
        // Told with the attach, not seen as they happen: the client's listeners hear them as
        // `initial`.
        let envelope = ProtocolMessage {
            timestamp: Some(self.now as i64),
            flags: Some(flags::AS_OF_ATTACH),
            ..ProtocolMessage::for_channel(Action::ConnectionStatus, name.clone())
        };
        let items: Vec<Vec<u8>> = lost
            .into_iter()
            .map(|id| codec::encode_item(&status_item(id, true), format))
            .collect();
        let frames = codec::pages(
            &envelope,
            &items,
            format,
            self.config.max_message_size,
            |_, _, _| None,
        );
        for frame in frames {
            self.send_frame(slot, frame);
        }
    }

    /// Sends the queued presence events: for each channel, one frame (or as few as fit in
    /// `maxMessageSize`) encoded once per wire format and sent to every subscriber.
    pub(super) fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        // Grouped by channel in the order they came, the groups found through an index: a
        // crowd that times out at once is one input with events on as many channels.
        let mut groups: Vec<(Arc<str>, Vec<PresenceMessage>)> = Vec::new();
        let mut index: BTreeMap<Arc<str>, usize> = BTreeMap::new();
        for (name, event) in pending {
            let at = *index.entry(name.clone()).or_insert_with(|| {
                groups.push((name, Vec::new()));
                groups.len() - 1
            });
            groups[at].1.push(event);
        }
        for (name, events) in groups {
            self.broadcast(&name, &events);
        }
        // Grace statuses after the events, so that each follows the member it is about; the
        // last word on a connection is the one that counts.
        // Per channel: connection id → lost.
        type Words = std::collections::BTreeMap<Arc<str>, bool>;
        let mut statuses: Vec<(Arc<str>, Words)> = Vec::new();
        index.clear();
        for (name, id, lost) in std::mem::take(&mut self.pending_status) {
            let at = *index.entry(name.clone()).or_insert_with(|| {
                statuses.push((name, Default::default()));
                statuses.len() - 1
            });
            statuses[at].1.insert(id, lost);
        }
        for (name, words) in statuses {
            let items: Vec<PresenceMessage> = words
                .into_iter()
                .map(|(id, lost)| status_item(id, lost))
                .collect();
            let Some(channel) = self.channels.get(&name) else {
                continue;
            };
            // Listeners with a transport: one without is told the whole list before the
            // ATTACHED of its re-attach (as a rollcall client re-attaches every channel after a
            // resume), and a word kept for each would cost a crowd that drops at once N².
            let listeners: Vec<Slot> = channel
                .subscribers
                .iter()
                .copied()
                .filter(|&s| {
                    self.conn(s)
                        .is_some_and(|c| c.wants_status && c.transport.is_some())
                })
                .collect();
            let envelope = ProtocolMessage::for_channel(Action::ConnectionStatus, name);
            self.fan_out(&listeners, &envelope, &items, |_| None);
        }
        // The acknowledgements follow the echoes, so that a client whose enter() has resolved
        // already finds itself in its view.
        for settlement in std::mem::take(&mut self.acks) {
            self.settle(settlement);
        }
    }

    /// Sends one connection's acknowledgements now, ahead of a DETACHED or CLOSED: what it
    /// sent before is answered before that. Everything else waits for the flush, so that the
    /// events of many connections detaching in one turn still go in one frame per subscriber.
    pub(super) fn flush_acks_of(&mut self, slot: Slot) {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.acks)
            .into_iter()
            .partition(|a| a.slot == slot);
        self.acks = rest;
        for settlement in mine {
            self.settle(settlement);
        }
    }

    fn settle(&mut self, settlement: super::Settlement) {
        let action = if settlement.error.is_some() {
            Action::Nack
        } else {
            Action::Ack
        };
        let mut message = ProtocolMessage::new(action);
        // Under the client's own numbers (a negative one, refused, was never moved).
        let offset = self.conn(settlement.slot).map_or(0, |c| c.serial_offset);
        message.msg_serial = Some(match settlement.serial {
            serial if serial < 0 => serial,
            serial => serial.saturating_sub(offset),
        });
        message.count = Some(settlement.count);
        message.error = settlement.error;
        self.send(settlement.slot, &message);
    }

    fn broadcast(&mut self, name: &Arc<str>, events: &[PresenceMessage]) {
        let Some(channel) = self.channels.get_mut(name) else {
            return;
        };
        // Each event is numbered; a frame carries the number of its last.
        let first = channel.serial;
        channel.serial += events.len() as u64;
        // Each event was recorded as it was queued, so its history number is the serial it is
        // sent with: `history({ untilAttach })` relies on it.
        debug_assert_eq!(channel.serial, channel.history_seq);
        // Those that joined since these events were queued have the set as of a later one: the
        // last word on each is the one that counts.
        let mut joined: BTreeMap<Slot, u64> = BTreeMap::new();
        for (slot, at) in std::mem::take(&mut channel.joined) {
            if channel.subscribers.contains(&slot) {
                joined.insert(slot, at);
            }
        }
        let subscribers: Vec<Slot> = channel
            .subscribers
            .iter()
            .copied()
            .filter(|s| !joined.contains_key(s))
            .collect();
        let server_id = self.config.server_id.clone();
        let envelope = ProtocolMessage::for_channel(Action::Presence, name.clone());
        let serial_from = |skip: usize| {
            let server_id = server_id.clone();
            move |end: usize| {
                Some(Arc::from(format!(
                    "{server_id}:{}",
                    first + (skip + end) as u64
                )))
            }
        };
        self.fan_out(&subscribers, &envelope, events, serial_from(0));
        let mut by_start: BTreeMap<u64, Vec<Slot>> = BTreeMap::new();
        for (slot, at) in joined {
            by_start.entry(at).or_default().push(slot);
        }
        for (at, slots) in by_start {
            let skip = usize::try_from(at.saturating_sub(first)).unwrap_or(usize::MAX);
            if skip < events.len() {
                self.fan_out(&slots, &envelope, &events[skip..], serial_from(skip));
            }
        }
        // A connection attached without presence_subscribe still hears its own members'
        // events (RTP17a): a client keeps what it must enter again after a reconnect from
        // them. Without a channel serial: it has not heard the channel's other events.
        let mut own: std::collections::BTreeMap<Slot, Vec<PresenceMessage>> = Default::default();
        for event in events {
            let Some(&slot) = event
                .connection_id
                .as_ref()
                .and_then(|id| self.by_id.get(id))
            else {
                continue;
            };
            let subscribed = self
                .channels
                .get(name)
                .is_some_and(|c| c.subscribers.contains(&slot));
            // Not a channel held for a recovering client that has yet to attach it again.
            let attached = self
                .conn(slot)
                .and_then(|c| c.attachments.get(name))
                .is_some_and(|a| !a.unclaimed);
            if subscribed || !attached {
                continue;
            }
            own.entry(slot).or_default().push(event.clone());
        }
        for (slot, mine) in own {
            self.fan_out(&[slot], &envelope, &mine, |_| None);
        }
    }

    /// Sends `items` to `slots` as frames of `envelope` (stamped with the time) that fit in
    /// `maxMessageSize`, each encoded once per wire format in use; `serial_of(end)` gives the
    /// `channelSerial` of the page that ends before item `end`.
    fn fan_out(
        &mut self,
        slots: &[Slot],
        envelope: &ProtocolMessage,
        items: &[PresenceMessage],
        serial_of: impl Fn(usize) -> Option<Arc<str>>,
    ) {
        let now = self.now;
        let (live, waiting) = audience(&mut self.slots, slots.iter().copied(), now);
        let envelope = ProtocolMessage {
            timestamp: Some(now as i64),
            ..envelope.clone()
        };
        let mut formats: Vec<Format> = live.iter().map(|(f, _)| *f).collect();
        for (format, _) in &waiting {
            if !formats.contains(format) {
                formats.push(*format);
            }
        }
        for format in formats {
            let encoded: Vec<Vec<u8>> = items
                .iter()
                .map(|e| codec::encode_item(e, format))
                .collect();
            let frames = codec::pages(
                &envelope,
                &encoded,
                format,
                self.config.max_message_size,
                |_, end, _| serial_of(end),
            );
            for frame in frames {
                if let Some((_, to)) = live.iter().find(|(f, _)| *f == format) {
                    self.transmit(Transmit {
                        to: to.clone(),
                        frame: frame.clone(),
                    });
                }
                for &(_, slot) in waiting.iter().filter(|(f, _)| *f == format) {
                    self.send_frame(slot, frame.clone());
                }
            }
        }
    }
}

/// The connections a frame goes to, by format: the transports of those that are live (marked
/// as just sent to), and those waiting to resume (which keep the frame for then).
type Audience = (Vec<(Format, Vec<super::TransportId>)>, Vec<(Format, Slot)>);

fn audience(
    slots: &mut [Option<Box<super::connection::Connection>>],
    to: impl Iterator<Item = Slot>,
    now: u64,
) -> Audience {
    let mut live: Vec<(Format, Vec<super::TransportId>)> = Vec::new();
    let mut waiting = Vec::new();
    for slot in to {
        let Some(conn) = slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            continue;
        };
        match conn.transport {
            Some(transport) => {
                conn.last_out = now;
                match live.iter_mut().find(|(f, _)| *f == conn.format) {
                    Some((_, to)) => to.push(transport),
                    None => live.push((conn.format, vec![transport])),
                }
            }
            None => waiting.push((conn.format, slot)),
        }
    }
    (live, waiting)
}
