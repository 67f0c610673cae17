//! Channels on the client: attach, detach, their deadlines, and the presence messages the hub
//! sends on them.

use crate::prelude::*;
use alloc::sync::Arc;

use super::channel::{Channel, ChannelState, Queued};
use super::{presence_message, Client, ConnectionState, InFlight, OpId};
use crate::protocol::{codes, flags, Action, ErrorInfo, PresenceAction, ProtocolMessage};

impl Client {
    pub(super) fn channel_entry(&mut self, name: &str) -> Arc<str> {
        if let Some(c) = self.channels.get_mut(name) {
            // In use again: kept.
            c.released = false;
            return c.name.clone();
        }
        let key: Arc<str> = Arc::from(name);
        self.channels.insert(Channel::new(key.clone()));
        key
    }

    /// Moves a channel to attaching and sends ATTACH if the connection is up.
    pub(super) fn request_attach(&mut self, name: &Arc<str>) {
        let Some(c) = self.channels.get_mut(name) else {
            return;
        };
        if matches!(c.state, ChannelState::Attaching | ChannelState::Attached) {
            return;
        }
        let superseded = c.state == ChannelState::Detaching;
        let mut events = Vec::new();
        c.set_state(ChannelState::Attaching, None, false, &mut events);
        self.events.extend(events);
        if superseded {
            // As Ably's: the detach is over, unfinished.
            let reason = ErrorInfo::new(
                codes::CHANNEL_OPERATION_FAILED,
                409,
                "detach superseded by an attach",
            );
            let waiters = core::mem::take(&mut c.detach_waiters);
            for op in waiters {
                self.settle(op, Err(reason.clone()));
            }
        }
        if self.state == ConnectionState::Connected {
            self.send_attach(name);
        } else if self.state == ConnectionState::Closed {
            self.start_connecting();
        }
        // Not connected yet (`autoConnect: false`): it attaches once `connect()` is called.
    }

    pub(super) fn send_attach(&mut self, name: &Arc<str>) {
        self.send_attach_with(name, false);
    }

    /// Attaches; `resume`: after a resume, asking to keep the view this client holds when the
    /// hub can vouch that it heard everything (ATTACH_RESUME with how far it heard, a rollcall
    /// extension), which spares it the SYNC.
    pub(super) fn send_attach_with(&mut self, name: &Arc<str>, resume: bool) {
        let Some(c) = self.channels.get_mut(name) else {
            return;
        };
        let mut attach = ProtocolMessage::for_channel(Action::Attach, name.clone());
        attach.channel_serial = c.serial.clone();
        // Sent again while attaching (new modes), it keeps the resume the first asked for: that
        // one's answer comes first.
        c.resuming = if resume {
            c.state == ChannelState::Attached && !c.members.sync_in_progress()
        } else {
            c.resuming && c.state == ChannelState::Attaching
        };
        // The flag goes with the first only: the hub answers that one.
        let modes = u64::from(c.modes)
            | if resume && c.resuming {
                flags::ATTACH_RESUME
            } else {
                0
            };
        attach.flags = (modes != 0).then_some(modes);
        c.told_lost.clear();
        c.deadline = Some(self.now + self.options.realtime_request_timeout);
        if c.state != ChannelState::Attaching {
            let mut events = Vec::new();
            c.set_state(ChannelState::Attaching, None, false, &mut events);
            self.events.extend(events);
        }
        self.transmits.push_back(attach);
    }

    pub(super) fn on_attached(&mut self, message: ProtocolMessage) {
        let now = self.now;
        let own_connection = self.connection_id.clone();
        let Some(name) = message.channel.clone() else {
            return;
        };
        let Some(c) = self.channels.get_mut(&name) else {
            return;
        };
        if !matches!(c.state, ChannelState::Attaching | ChannelState::Attached) {
            return;
        }
        let resumed = message.has_flag(flags::RESUMED);
        // The hub vouched for the view this client asked to keep (naming the last frame the
        // client heard): its members stand, with what the hub replayed. Its own are entered
        // again as after any resume (RTP17i): they may have left on the hub while it was away.
        let resuming = core::mem::take(&mut c.resuming);
        let kept = resuming
            && resumed
            && !message.has_flag(flags::HAS_PRESENCE)
            && message.channel_serial == c.serial;
        let was_attached = c.state == ChannelState::Attached;
        c.deadline = None;
        c.serial = message.channel_serial.clone();
        // Where it attached: an ATTACHED that resumes the channel is not a new attach (RTL15c),
        // unless it is the first this client heard (its ATTACH was answered after it gave up).
        if !resumed || c.attach_serial.is_none() {
            c.attach_serial = message.channel_serial.clone();
        }
        let mut events = Vec::new();
        // The hub told again every connection in its grace window before this: a mark it did
        // not repeat is one whose end this client missed. With a SYNC to come, that waits for
        // its end, when members that left have gone with their marks.
        c.reconciling = c.state == ChannelState::Attaching;
        if !kept && message.has_flag(flags::HAS_PRESENCE) {
            c.begin_sync(None);
        } else {
            if !kept {
                c.clear_with_leaves(now, &mut events);
            }
            c.reconcile_lost(&mut events);
        }
        // An ATTACHED with an error while attached says what changed (RTL12): an update.
        c.set_state(
            ChannelState::Attached,
            message.error.clone(),
            resumed,
            &mut events,
        );
        // Put this connection's members back unless continuity was kept (RTP17i), but not
        // those with an operation of their own still to go: it is newer (a leave made while
        // offline must not be undone by the re-entry of what was there before).
        let mut outgoing = if was_attached && resumed {
            Vec::new()
        } else {
            let own_client = self
                .details
                .client_id
                .clone()
                .or_else(|| self.options.client_id.clone());
            let about = |q: &Queued, id: &Arc<str>| {
                q.item.client_id.as_ref().or(own_client.as_ref()) == Some(id)
            };
            let mut reentries = c.reentries(own_connection.as_deref());
            reentries.retain_mut(|r| {
                let Some(id) = r.item.client_id.clone() else {
                    return true;
                };
                // The newest operation in flight for this member (sent again on the resumed
                // connection, or waiting for an ACK lost with the transport).
                let mut newest = None;
                for f in &self.in_flight {
                    if f.channel != name {
                        continue;
                    }
                    for (i, q) in f.items.iter().enumerate() {
                        if about(q, &id) {
                            newest = Some((f.serial, i, q));
                        }
                    }
                }
                match newest {
                    _ if c.queued.iter().any(|q| about(q, &id)) => false,
                    None => true,
                    // On a new connection the re-entry names nothing the hub could weigh it
                    // against: the operation in flight goes alone.
                    Some(_) if r.item.id.is_none() => false,
                    Some((_, _, q)) if q.item.action == PresenceAction::Leave => false,
                    // On the same connection, the member is entered as that operation leaves
                    // it, naming it: the hub ignores it if it applied the operation and holds
                    // the member, and restores the member if its grace ran out meanwhile (the
                    // operation sent again is acknowledged, not applied twice).
                    Some((serial, index, q)) => {
                        r.item.id = Some(operation_id(own_connection.as_deref(), serial, index));
                        r.item.data = q.item.data.clone();
                        r.item.encoding = q.item.encoding.clone();
                        r.item.extras = q.item.extras.clone();
                        true
                    }
                }
            });
            reentries
        };
        outgoing.append(&mut c.queued);
        let waiters = core::mem::take(&mut c.attach_waiters);
        self.events.extend(events);
        for op in waiters {
            self.settle(op, Ok(()));
        }
        // Re-entries go together; each caller's operation goes alone, so that the hub's
        // refusal of one does not fail another.
        let (reentries, operations): (Vec<Queued>, Vec<Queued>) =
            outgoing.into_iter().partition(|q| q.op.is_none());
        // As few frames as fit under the hub's maxMessageSize.
        let max = self.max_message_size();
        let mut frame = Vec::new();
        let mut size = 0;
        for q in reentries {
            let item = super::frame_size(&q.item);
            if !frame.is_empty() && size + item > max {
                self.send_presence(&name, core::mem::take(&mut frame));
                size = 0;
            }
            size += item;
            frame.push(q);
        }
        if !frame.is_empty() {
            self.send_presence(&name, frame);
        }
        for queued in operations {
            self.send_presence(&name, vec![queued]);
        }
    }

    pub(super) fn on_detached(&mut self, message: ProtocolMessage) {
        let Some(name) = message.channel.clone() else {
            return;
        };
        let Some(c) = self.channels.get_mut(&name) else {
            return;
        };
        // The hub's answers to a DETACH carry no error; one that does is the hub detaching the
        // channel (a count left over from a DETACH lost with a transport must not hide it).
        let answered = c.detach_sent > 0 && message.error.is_none();
        c.detach_sent = c.detach_sent.saturating_sub(1);
        c.owed_detach_sent = false;
        c.detach_owed = false;
        match c.state {
            // With Ably's reason when the hub gives none (RTL5d: ably-js says 90001 too).
            ChannelState::Detaching => {
                let reason = message.error.unwrap_or_else(|| {
                    ErrorInfo::new(codes::CHANNEL_STATE, 404, "Channel detached")
                });
                self.detached(&name, Some(reason));
            }
            // The answer to a DETACH an attach superseded: its ATTACHED follows.
            ChannelState::Attaching if answered => {}
            // The answer to a DETACH an attach superseded, after the ATTACHED of an attach
            // before it: the ATTACHED of the later attach follows.
            ChannelState::Attached if answered => {}
            // The hub detached us: attach again at once, saying why (RTL13a).
            ChannelState::Attached if self.state == ConnectionState::Connected => {
                if let Some(c) = self.channels.get_mut(&name) {
                    let mut events = Vec::new();
                    c.set_state(ChannelState::Attaching, message.error, false, &mut events);
                    self.events.extend(events);
                }
                self.send_attach(&name);
            }
            // Refused while attaching: suspended, and tried again later (RTL13b), not at once
            // in a loop. Detached without a reason (a recovered connection's channel given up
            // as its ATTACH went out): the ATTACHED follows.
            ChannelState::Attaching if self.state == ConnectionState::Connected => {
                if let Some(reason) = message.error {
                    if let Some(c) = self.channels.get_mut(&name) {
                        c.deadline = Some(self.now + self.options.channel_retry_timeout);
                    }
                    self.fail_channel(&name, ChannelState::Suspended, &reason);
                }
            }
            _ => {}
        }
        self.channels.release(&name, false);
    }

    /// Sends DETACH, and gives it until the request timeout.
    pub(super) fn send_detach(&mut self, name: Arc<str>) {
        if let Some(c) = self.channels.get_mut(&name) {
            c.detach_sent = c.detach_sent.saturating_add(1);
            c.deadline = Some(self.now + self.options.realtime_request_timeout);
        }
        self.transmits
            .push_back(ProtocolMessage::for_channel(Action::Detach, name));
    }

    /// The channel is detached: its view and own members are dropped without member events.
    pub(super) fn detached(&mut self, name: &Arc<str>, reason: Option<ErrorInfo>) {
        let Some(c) = self.channels.get_mut(name) else {
            return;
        };
        c.deadline = None;
        let queued = core::mem::take(&mut c.queued);
        let waiters = core::mem::take(&mut c.detach_waiters);
        let mut events = Vec::new();
        if !matches!(c.state, ChannelState::Initialized | ChannelState::Detached) {
            c.set_state(ChannelState::Detached, reason, false, &mut events);
        }
        c.forget_members(&mut events);
        self.events.extend(events);
        let error = ErrorInfo::new(codes::CHANNEL_STATE, 400, "channel detached");
        for q in queued {
            if let Some(op) = q.op {
                self.settle(op, Err(error.clone()));
            }
        }
        for op in waiters {
            self.settle(op, Ok(()));
        }
        self.fail_waiters(name, &error);
    }

    pub(super) fn fail_waiters(&mut self, name: &str, reason: &ErrorInfo) {
        let Some(c) = self.channels.get_mut(name) else {
            return;
        };
        let waiters: Vec<OpId> = c
            .attach_waiters
            .drain(..)
            .chain(c.detach_waiters.drain(..))
            .collect();
        for op in waiters {
            self.settle(op, Err(reason.clone()));
        }
    }

    /// Moves a channel to `Suspended` or `Failed` for `reason`. Its queued presence fails
    /// (RTP5f) and so do its attach and detach waiters; a failed channel also forgets its
    /// members, as nothing will keep them current.
    pub(super) fn fail_channel(
        &mut self,
        name: &Arc<str>,
        state: ChannelState,
        reason: &ErrorInfo,
    ) {
        let Some(c) = self.channels.get_mut(name) else {
            return;
        };
        let queued = core::mem::take(&mut c.queued);
        let mut events = Vec::new();
        c.set_state(state, Some(reason.clone()), false, &mut events);
        if state == ChannelState::Failed {
            c.deadline = None;
            c.forget_members(&mut events);
        }
        self.events.extend(events);
        for q in queued {
            if let Some(op) = q.op {
                self.settle(op, Err(reason.clone()));
            }
        }
        self.fail_waiters(name, reason);
    }

    pub(super) fn on_channel_deadline(&mut self, name: &Arc<str>) {
        let Some(c) = self.channels.get_mut(name) else {
            return;
        };
        c.deadline = None;
        match c.state {
            ChannelState::Attaching => {
                c.deadline = Some(self.now + self.options.channel_retry_timeout);
                let reason = ErrorInfo::new(codes::ATTACH_TIMEOUT, 408, "attach timed out");
                self.fail_channel(name, ChannelState::Suspended, &reason);
            }
            // Offline, the DETACH went with the transport: it goes again once connected, with a
            // deadline of its own (the hub would otherwise keep the channel on a resume).
            // Connected, it may be in a transport that died unnoticed: owed until answered, and
            // sent again on a resume (the hub would keep the channel and its members otherwise).
            ChannelState::Detaching if self.state == ConnectionState::Connected => {
                c.detach_owed = self.connection_key.is_some();
                self.detached(name, None);
            }
            ChannelState::Suspended if self.state == ConnectionState::Connected => {
                self.send_attach(name);
            }
            _ => {}
        }
    }

    pub(super) fn on_presence(&mut self, mut message: ProtocolMessage, is_sync: bool) {
        let now = self.now;
        let own = self.connection_id.clone();
        let Some(name) = message.channel.clone() else {
            return;
        };
        // Events can also come while a channel attaches again after a resume: the hub replays
        // what the connection missed, then answers the ATTACH. They are the events it missed
        // (an `enter`, not a `present` from the SYNC after). A SYNC needs the ATTACHED first.
        let Some(c) = self.channels.get_mut(&name).filter(|c| {
            !c.owed_detach_sent
                && (c.state == ChannelState::Attached
                    || (!is_sync && c.state == ChannelState::Attaching))
        }) else {
            return;
        };
        let mut events = Vec::new();
        let cursor_done = if is_sync {
            let serial = message.channel_serial.as_deref();
            let (sync_id, cursor) = match serial.and_then(|s| s.split_once(':')) {
                Some((id, cursor)) => (Some(id), cursor),
                None => (None, ""),
            };
            c.begin_sync(sync_id);
            cursor.is_empty()
        } else {
            false
        };
        let catching_up = c.state == ChannelState::Attaching;
        if !is_sync && message.channel_serial.is_some() {
            c.serial = message.channel_serial.take();
        }
        let mut items = message.presence.unwrap_or_default();
        for item in &mut items {
            // Fields an item leaves out are its message's (TP3).
            if item.connection_id.is_none() {
                item.connection_id = message.connection_id.clone();
            }
            if item.timestamp.is_none() {
                item.timestamp = message.timestamp;
            }
        }
        c.apply(items, own.as_deref(), is_sync, catching_up, &mut events);
        if cursor_done {
            c.end_sync(now, &mut events);
        }
        self.events.extend(events);
    }

    /// Grace statuses (rollcall's own frame): each item names a connection, `absent` while its
    /// members wait out their grace window, `present` when it is back.
    pub(super) fn on_connection_status(&mut self, message: ProtocolMessage) {
        let (Some(name), Some(items)) = (message.channel, message.presence) else {
            return;
        };
        let own = self.connection_id.clone();
        // Also while attaching again after a resume, as the hub replays what was missed.
        let Some(c) = self
            .channels
            .get_mut(&name)
            .filter(|c| matches!(c.state, ChannelState::Attached | ChannelState::Attaching))
        else {
            return;
        };
        let mut events = Vec::new();
        let initial = c.state == ChannelState::Attaching
            || message.flags.unwrap_or(0) & flags::AS_OF_ATTACH != 0;
        // Only connections with members here are marked: read once for the frame.
        let present = c.connections();
        for item in items {
            // The hub tells every listener, this client included, of a crowd at once.
            let Some(connection_id) = item.connection_id.filter(|id| Some(id) != own.as_ref())
            else {
                continue;
            };
            let lost = item.action == PresenceAction::Absent;
            if c.state == ChannelState::Attaching || c.reconciling {
                // Sorted, as `lost` is, and searched.
                super::channel::mark(&mut c.told_lost, &connection_id, lost);
            }
            if !lost || present.binary_search(&connection_id).is_ok() {
                c.set_lost(connection_id, lost, initial, &mut events);
            }
        }
        self.events.extend(events);
    }

    pub(super) fn queue(&mut self, name: &Arc<str>, queued: Queued) {
        if let Some(c) = self.channels.get_mut(name) {
            c.queued.push(queued);
        }
    }

    /// Sends presence items as one message, to be settled by its ACK.
    pub(super) fn send_presence(&mut self, name: &Arc<str>, items: Vec<Queued>) {
        let serial = self.msg_serial;
        self.msg_serial += 1;
        // Without a connection it waits in flight: `on_connected` sends it.
        if self.state == ConnectionState::Connected {
            self.transmits
                .push_back(presence_message(name, serial, &items));
        }
        self.in_flight.push(InFlight {
            serial,
            channel: name.clone(),
            items,
        });
    }
}

/// An operation's id as the hub names it (TP3a): `connectionId:msgSerial:index`.
pub(super) fn operation_id(connection: Option<&str>, serial: i64, index: usize) -> Arc<str> {
    let mut id = String::from(connection.unwrap_or_default());
    id.push(':');
    super::text::push_decimal(&mut id, u64::try_from(serial).unwrap_or(0));
    id.push(':');
    super::text::push_decimal(&mut id, index as u64);
    Arc::from(id)
}
