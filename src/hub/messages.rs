//! What the hub does with each protocol message a connection sends.

use std::sync::Arc;

use super::channel::valid_name;
use super::presence::LeaveReason;
use super::{auth, codec, malformed, Format, Hub, Slot};
use crate::presence::MemberKey;
use crate::protocol::{
    codes, flags, json, msgpack, Action, ErrorInfo, PresenceMessage, ProtocolMessage,
};

/// What the inbound budget makes of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admit {
    /// Read it now.
    Take,
    /// It waits until the budget has room (see `pacing`).
    Hold,
    /// Refused (or the connection closed for it): nothing more to do.
    Refused,
}

impl Hub {
    pub(super) fn on_text(&mut self, slot: Slot, text: &str) {
        let waits = self.holding(slot) && !self.closes_now(slot, json::salvage(text).action);
        if waits || self.read_text(slot, text) {
            self.hold(slot, Format::Json, text.as_bytes());
        }
    }

    /// A text frame that is not UTF-8 (see [`Hub::handle_text_bytes`]).
    pub(super) fn on_invalid_text(&mut self, slot: Slot, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let waits = self.holding(slot) && !self.closes_now(slot, json::salvage(&text).action);
        if waits || self.read_invalid_text(slot, bytes) {
            self.hold(slot, Format::Json, bytes);
        }
    }

    /// Refuses a text frame that is not UTF-8, as one that is not JSON is refused: from what
    /// can be read of it, a presence message alone (NACK), anything else with its connection.
    /// Returns whether it must wait for the connection's budget.
    fn read_invalid_text(&mut self, slot: Slot, bytes: &[u8]) -> bool {
        let text = String::from_utf8_lossy(bytes);
        if bytes.len() > self.config.max_frame_size() {
            return self.on_oversized(slot, json::salvage(&text), bytes.len());
        }
        self.on_undecodable(slot, json::salvage(&text), "a text frame that is not UTF-8")
    }

    pub(super) fn on_binary(&mut self, slot: Slot, bytes: &[u8]) {
        let waits = self.holding(slot) && !self.closes_now(slot, msgpack::salvage(bytes).action);
        if waits || self.read_binary(slot, bytes) {
            self.hold(slot, Format::Msgpack, bytes);
        }
    }

    /// A CLOSE behind held frames is not held: the client is done, and what waited goes with
    /// it (held, it would be forgotten with its socket, and the members would stay for their
    /// grace window rather than leave at once). Whether `action` is one, the held frames gone.
    fn closes_now(&mut self, slot: Slot, action: Option<u64>) -> bool {
        let closes = action.map(Action::from_number) == Some(Action::Close);
        if closes {
            self.forget_held(slot);
        }
        closes
    }

    /// Reads a frame that was held (see `pacing`). Returns whether it must wait again.
    pub(super) fn read_frame(&mut self, slot: Slot, format: Format, bytes: &[u8]) -> bool {
        match format {
            // Held as the text it came as.
            Format::Json => match core::str::from_utf8(bytes) {
                Ok(text) => self.read_text(slot, text),
                Err(_) => self.read_invalid_text(slot, bytes),
            },
            Format::Msgpack => self.read_binary(slot, bytes),
        }
    }

    /// Reads a text frame. Returns whether it must wait for the connection's budget.
    fn read_text(&mut self, slot: Slot, text: &str) -> bool {
        if text.len() > self.config.max_frame_size() {
            return self.on_oversized(slot, json::salvage(text), text.len());
        }
        match json::decode(text) {
            Ok(message) => self.on_message(slot, message),
            Err(error) => self.on_undecodable(slot, json::salvage(text), &error.to_string()),
        }
    }

    /// Reads a binary frame. Returns whether it must wait for the connection's budget.
    fn read_binary(&mut self, slot: Slot, bytes: &[u8]) -> bool {
        if bytes.len() > self.config.max_frame_size() {
            return self.on_oversized(slot, msgpack::salvage(bytes), bytes.len());
        }
        match msgpack::decode(bytes) {
            Ok(message) => self.on_message(slot, message),
            Err(error) => self.on_undecodable(slot, msgpack::salvage(bytes), &error.to_string()),
        }
    }

    /// A frame beyond the maxFrameSize the hub advertises (the hosts read up to four times it,
    /// to answer it): refused unread, as decoding it could take a hundred times its size in
    /// memory (a million empty items), which a Wasm hub never gives back. A presence message
    /// with a serial is refused on its own (NACK, 40009); anything else ends the connection.
    fn on_oversized(&mut self, slot: Slot, salvage: json::Salvage, size: usize) -> bool {
        let max = self.config.max_frame_size();
        let error = ErrorInfo::new(
            codes::MESSAGE_TOO_LARGE,
            400,
            format!("frame of {size} bytes exceeds maxFrameSize of {max} bytes"),
        );
        self.refuse_unread(slot, &salvage, error.clone(), error, false)
    }

    /// A frame that is not a protocol message. A presence message with a serial is refused on its
    /// own (NACK); anything else ends the connection, as a client that sends it is broken.
    fn on_undecodable(&mut self, slot: Slot, salvage: json::Salvage, why: &str) -> bool {
        let error = ErrorInfo::new(codes::BAD_REQUEST, 400, format!("invalid message: {why}"));
        self.refuse_unread(slot, &salvage, error, malformed(why), true)
    }

    /// Answers a frame the hub does not read, from what `salvage` found in it: a message that
    /// awaits an answer (it has a serial) is refused alone with `refusal`; an action this hub
    /// does not know, if `unknown_passes`, is let go; anything else fails the connection with
    /// `fatal`. What the connection survives is charged as the message it says it is, so that
    /// junk is not a way around the rate (over it, `admit` refuses it as it would the message).
    /// Returns whether it must wait for the connection's budget.
    fn refuse_unread(
        &mut self,
        slot: Slot,
        salvage: &json::Salvage,
        refusal: ErrorInfo,
        fatal: ErrorInfo,
        unknown_passes: bool,
    ) -> bool {
        let action = salvage.action.map(Action::from_number);
        let mut charged = ProtocolMessage::new(action.unwrap_or(Action::Unknown(0)));
        charged.msg_serial = salvage.msg_serial.map(|s| self.hub_serial(slot, s));
        match (action, charged.msg_serial) {
            (Some(Action::Presence | Action::Message | Action::Unknown(_)), Some(serial)) => {
                match self.admit(slot, &charged) {
                    Admit::Take => self.nack(slot, serial, refusal),
                    Admit::Hold => return true,
                    Admit::Refused => {}
                }
            }
            (Some(Action::Unknown(_)), _) if unknown_passes => {
                return self.admit(slot, &charged) == Admit::Hold;
            }
            _ => self.fail(slot, fatal),
        }
        false
    }

    /// Returns whether the message must wait for the connection's budget.
    fn on_message(&mut self, slot: Slot, mut message: ProtocolMessage) -> bool {
        message.msg_serial = message.msg_serial.map(|s| self.hub_serial(slot, s));
        match self.admit(slot, &message) {
            Admit::Take => {}
            Admit::Hold => return true,
            Admit::Refused => return false,
        }
        // A token that ran out before its timer fired (a late alarm) allows nothing more but
        // its renewal: the connection is disconnected now, as the timer would have.
        let expired = self
            .conn(slot)
            .and_then(|c| c.token.as_ref())
            .is_some_and(|t| self.now >= t.expires);
        // A CLOSE still closes: its members leave at once, not after their grace.
        if expired && !matches!(message.action, Action::Auth | Action::Close) {
            self.on_deadline(slot);
            if self.conn(slot).is_none_or(|c| c.transport.is_none()) {
                return false;
            }
        }
        match message.action {
            Action::Heartbeat => {
                // A client that sends heartbeats keeps its connection alive itself; one with an
                // id is a ping (Ably's `connection.ping()`), which says nothing of what follows.
                if message.id.is_none() {
                    self.mark_heartbeating(slot);
                }
                if message.id.is_some() {
                    let mut echo = ProtocolMessage::new(Action::Heartbeat);
                    echo.id = message.id;
                    self.send(slot, &echo);
                }
            }
            Action::Attach => self.on_attach(slot, message),
            Action::Detach => self.on_detach(slot, message),
            Action::Presence => self.on_presence(slot, message),
            Action::Sync => self.on_sync_request(slot, message),
            Action::Close => {
                self.flush_acks_of(slot);
                self.send(slot, &ProtocolMessage::new(Action::Closed));
                self.end(slot, 1000, LeaveReason::Closed);
            }
            Action::Disconnect => {
                if let Some(transport) = self.conn(slot).and_then(|c| c.transport) {
                    self.events.push_back(super::HubEvent::Close {
                        transport,
                        code: 1000,
                    });
                }
                self.drop_transport(slot);
            }
            Action::Auth => self.on_auth(slot, message),
            Action::Message => {
                let error = ErrorInfo::new(
                    codes::BAD_REQUEST,
                    400,
                    "this hub carries presence only: channel messages are not supported",
                );
                match message.msg_serial {
                    Some(serial) => self.nack(slot, serial, error),
                    None => self.fail(slot, error),
                }
            }
            // An action this hub does not know that awaits an answer (Ably's objects and
            // annotations carry a msgSerial): refused, so that the caller does not wait forever
            // or take the next ACK for its own.
            Action::Unknown(n) if message.msg_serial.is_some() => {
                let error = ErrorInfo::new(
                    codes::BAD_REQUEST,
                    400,
                    format!("this hub does not handle action {n}"),
                );
                self.nack(slot, message.msg_serial.unwrap_or_default(), error);
            }
            // Actions only a server sends, and unknown ones, are ignored (RSF1).
            _ => {}
        }
        false
    }

    /// The number the hub counts a message of this connection's client by (see
    /// `Connection::serial_offset`).
    fn hub_serial(&mut self, slot: Slot, serial: i64) -> i64 {
        let Some(conn) = self.conn_mut(slot).filter(|_| serial >= 0) else {
            return serial;
        };
        if core::mem::take(&mut conn.rebase_serials) {
            conn.serial_offset = conn.next_serial.saturating_sub(serial).max(0);
        }
        serial.saturating_add(conn.serial_offset)
    }

    /// Takes the frame from the connection's inbound budget. Over budget, a presence message is
    /// refused (42910); other frames are taken on credit, and answered, and beyond a second's
    /// credit held until the budget fills again (see `pacing`). A connection that keeps
    /// flooding either is closed (42920).
    fn admit(&mut self, slot: Slot, message: &ProtocolMessage) -> Admit {
        let (now, rate, burst) = (self.now, self.config.max_inbound_rate, self.inbound_burst());
        let (control_rate, control_burst) = (self.control_rate(), self.control_burst());
        let reentries = self.reentries_in(slot, message);
        let Some(conn) = self.conn_mut(slot) else {
            return Admit::Refused;
        };
        // A resend of a message already answered (after a resume) is answered again as it was,
        // and is charged as a control frame: refused here, the refusal would be remembered as
        // its answer although the message was applied, and its every resend refused.
        let resend = message
            .msg_serial
            .is_some_and(|serial| (0..conn.next_serial).contains(&serial));
        if resend || !matches!(message.action, Action::Presence | Action::Message) {
            // Never dropped in silence: a client waits for its ATTACHED or its heartbeat. A
            // CLOSE, which ends the connection, is never held (see `closes_now`).
            return if message.action == Action::Close
                || conn.control.charge(now, control_rate, control_burst)
            {
                Admit::Take
            } else {
                Admit::Hold
            };
        }
        // Its client entering again the members it holds, after a resume, as they are: not
        // charged, up to as many as it held then. Those it no longer holds (their grace ran
        // out, or its resume failed), one in a frame as Ably's client sends them: charged as
        // the same members in one frame would be, so that none is refused for the framing.
        if let Some((same, regained)) =
            reentries.filter(|&(same, regained)| same <= conn.reentries && regained <= conn.regain)
        {
            if regained == 0 || conn.inbound.admit_bundled(now, rate, burst, regained) {
                conn.reentries -= same;
                conn.regain -= regained;
                return Admit::Take;
            }
        }
        // A presence message costs one frame, and one more for every fifty items it carries
        // (one frame of thousands of items is not one frame's work), at most a second's worth,
        // so that any message can pass once the budget has filled again.
        let items = message.presence.as_ref().map_or(0, Vec::len);
        let cost = u32::try_from(1 + items / 50).unwrap_or(u32::MAX).min(rate);
        if conn.inbound.admit(now, rate, burst, cost) {
            return Admit::Take;
        }
        if conn.inbound.flooded(rate) {
            let error = ErrorInfo::new(
                codes::RATE_LIMITED_FATAL,
                429,
                format!("more than {rate} messages per second, persistently: closing"),
            );
            self.fail(slot, error);
        } else if let Some(serial) = message.msg_serial {
            let error = ErrorInfo::new(
                codes::RATE_LIMITED,
                429,
                format!(
                    "rate limit exceeded: at most {rate} messages per second (every fifty \
                     presence items count as one more)"
                ),
            );
            self.nack(slot, serial, error);
        }
        Admit::Refused
    }

    /// How many items `message` has, if each is its connection's client entering again a member
    /// it holds, as the member is (see `Connection::is_reentry`), which changes nothing, or
    /// entering as itself (or as anyone, for a connection that may) a member it does not hold
    /// on a channel it has attached (its grace ran out, or its resume failed): how many of
    /// each.
    fn reentries_in(&self, slot: Slot, message: &ProtocolMessage) -> Option<(u32, u32)> {
        // Looked for only while the connection has credit for them (after a resume).
        let conn = self
            .conn(slot)
            .filter(|c| c.reentries > 0 || c.regain > 0)?;
        let name = message.channel.as_ref()?;
        let items = message
            .presence
            .as_ref()
            .filter(|items| !items.is_empty())?;
        let channel = self.channels.get(name)?;
        let unchanged = |item: &PresenceMessage| {
            let client_id = item.client_id.as_ref().or(conn.client_id.as_ref());
            let key = client_id.map(|client_id| MemberKey {
                client_id: client_id.clone(),
                connection_id: conn.id.clone(),
            });
            key.and_then(|key| channel.members.member(&key))
                .is_some_and(|held| {
                    held.data == item.data
                        && held.encoding == item.encoding
                        && held.extras == item.extras
                })
        };
        let regained = |item: &PresenceMessage| {
            let as_itself =
                conn.wildcard() || item.client_id.is_none() || item.client_id == conn.client_id;
            let held = item
                .client_id
                .as_ref()
                .or(conn.client_id.as_ref())
                .is_some_and(|id| conn.members.contains(&(name.clone(), id.clone())));
            item.action == crate::protocol::PresenceAction::Enter
                && as_itself
                && !held
                && conn.attachments.get(name).is_some()
        };
        let (mut same, mut regain) = (0u32, 0u32);
        for item in items {
            if conn.is_reentry(name, item) && unchanged(item) {
                same = same.saturating_add(1);
            } else if regained(item) {
                regain = regain.saturating_add(1);
            } else {
                return None;
            }
        }
        Some((same, regain))
    }

    /// `AUTH` with a renewed token: the identity must stay the same; the capability may change.
    fn on_auth(&mut self, slot: Slot, message: ProtocolMessage) {
        let Some(token) = message.auth.and_then(|a| a.access_token) else {
            return self.send_connected(slot, None);
        };
        let identity = match auth::verify_token(&self.config, &token, self.now) {
            Ok(identity) => identity,
            Err(error) => {
                // The client may get a good token and resume within its window.
                let mut disconnected = ProtocolMessage::new(Action::Disconnected);
                disconnected.error = Some(error);
                self.send(slot, &disconnected);
                if let Some(transport) = self.conn(slot).and_then(|c| c.transport) {
                    self.events.push_back(super::HubEvent::Close {
                        transport,
                        code: 1000,
                    });
                }
                return self.drop_transport(slot);
            }
        };
        let now = self.now;
        let counted = super::counted_client(&self.config, &identity);
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        // Nor another app's: the connection's places are counted under the app it connected
        // with (see `Identity::counts_as`).
        let same = !super::other_app(&counted, &conn.counted)
            && match (&identity.client_id, &conn.client_id) {
                (Some(granted), _) if &**granted == "*" => conn.client_id.is_some(),
                (granted, current) => granted == current,
            };
        if !same {
            let error = ErrorInfo::new(
                codes::INCOMPATIBLE_CREDENTIALS,
                401,
                "the renewed token names another clientId, or another app's",
            );
            return self.fail(slot, error);
        }
        conn.capability = identity.capability;
        conn.token = identity.expires.map(|expires| {
            let mut token = super::connection::Token {
                expires,
                issued: identity.issued,
                renewal_asked: false,
            };
            // A token already due for renewal (the same one again, from a cache) is not asked
            // to be renewed at once again: that loops with a client that answers every AUTH.
            // It is disconnected at its expiry, as any.
            token.renewal_asked = now >= token.renew_at();
            token
        });
        self.apply_capability(slot);
        self.touch_connection(slot);
        self.schedule(slot);
        self.send_connected(slot, None);
    }

    /// Brings a connection's attachments within its capability, after it changed (a renewed
    /// token, a resume with other credentials): channels it no longer allows are detached
    /// (40160), members on channels it may no longer be present on leave, and a connection that
    /// may no longer receive presence stops hearing it.
    pub(super) fn apply_capability(&mut self, slot: Slot) {
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        let mut narrowed = Vec::new();
        for (name, attachment) in conn.attachments.iter_mut() {
            let modes = attachment.modes & conn.capability.modes_for(name);
            if modes != attachment.modes {
                narrowed.push((name.clone(), attachment.modes & !modes));
                attachment.modes = modes;
            }
        }
        for (name, lost) in narrowed {
            let detach = self
                .conn(slot)
                .and_then(|c| c.attachments.get(&name))
                .is_none_or(|a| a.modes == 0);
            if detach {
                if let Some(conn) = self.conn_mut(slot) {
                    conn.attachments.remove(&name);
                }
            }
            if detach || lost & flags::PRESENCE_SUBSCRIBE != 0 {
                if let Some(channel) = self.channels.get_mut(&name) {
                    channel.subscribers.remove(&slot);
                }
            }
            if detach || lost & flags::PRESENCE != 0 {
                self.leave_members(slot, Some(&name), LeaveReason::Revoked);
            }
            if !detach && lost & flags::PRESENCE_SUBSCRIBE != 0 {
                // Still attached, hearing no more: an ATTACHED that is not a resume, with the
                // modes left, clears the client's view (RTL12) and says why. Its own members
                // follow in a SYNC (RTP17a), or its client would see itself leave.
                let modes = self
                    .conn(slot)
                    .and_then(|c| c.attachments.get(&name))
                    .map_or(0, |a| a.modes);
                let why = ErrorInfo::new(
                    codes::CAPABILITY_REFUSED,
                    401,
                    "the credentials no longer allow receiving presence on this channel",
                );
                self.send_attached(slot, name.clone(), modes, false, Some(why));
            }
            if detach {
                let mut detached = ProtocolMessage::for_channel(Action::Detached, name);
                detached.error = Some(ErrorInfo::new(
                    codes::CAPABILITY_REFUSED,
                    401,
                    "the credentials no longer allow this channel",
                ));
                self.send(slot, &detached);
            }
        }
    }

    fn on_attach(&mut self, slot: Slot, message: ProtocolMessage) {
        let Some(name) = message.channel else {
            return self.fail(slot, malformed("ATTACH without a channel"));
        };
        if !valid_name(&name) {
            let error = ErrorInfo::new(codes::INVALID_CHANNEL_NAME, 400, "invalid channel name");
            return self.channel_error(slot, name, error);
        }
        let max_channels = self.config.max_channels_per_connection;
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        let attached = conn.attachments.get(&name);
        // Attached, with nothing missed since it was last told the channel's state (a channel
        // held for a client that recovered the connection is new to that client).
        let continuous = attached.is_some_and(|a| !a.missed && !a.unclaimed);
        let attached_with = attached.map(|a| a.modes);
        let attached = attached.is_some();
        // Channels held for a recovering client that it has not attached again do not count:
        // they go at the end of its grace, and must not keep it from those it shows.
        let held = conn
            .attachments
            .iter()
            .filter(|(_, a)| !a.unclaimed)
            .count();
        if !attached && held >= max_channels {
            let error = ErrorInfo::new(
                codes::TOO_MANY_CHANNELS,
                400,
                format!("a connection may attach at most {max_channels} channels"),
            );
            return self.channel_error(slot, name, error);
        }
        // At the limit with them, one of them goes to make room: held channels wait for the
        // client, but one recover after another must not pile them up without bound. One
        // where the connection has no member goes first: its going is seen by no one.
        let evict = (!attached && conn.attachments.keys().count() >= max_channels)
            .then(|| {
                let held = || conn.attachments.iter().filter(|(_, a)| a.unclaimed);
                let unseen = |name: &Arc<str>| !conn.members.has_channel(name);
                held().find(|(n, _)| unseen(n)).or_else(|| held().next())
            })
            .flatten()
            .map(|(held, _)| held.clone());
        let allowed = conn.capability.modes_for(&name);
        let requested = message.flags.unwrap_or(0) & flags::ALL_MODES;
        let modes = if requested == 0 {
            allowed
        } else {
            requested & allowed
        };
        // Hearing the channel from now on only (modes that add PRESENCE_SUBSCRIBE): not a
        // continuation of what it heard, which was nothing (RTL15c: its attach is a new one).
        let continuous =
            continuous && modes & !attached_with.unwrap_or(0) & flags::PRESENCE_SUBSCRIBE == 0;
        // Credentials that allow neither presence nor reading it (`publish` only) allow nothing
        // here: the channel is refused, rather than held for nothing.
        if modes == 0 || allowed & (flags::PRESENCE | flags::PRESENCE_SUBSCRIBE) == 0 {
            let error = ErrorInfo::new(
                codes::CAPABILITY_REFUSED,
                401,
                format!("the credentials do not allow channel {name}"),
            );
            // The channel fails on the client (RTL14), which forgets its members there: they
            // leave, rather than stay with no one able to take them away. What it sent before
            // is answered first, as before a DETACHED.
            self.flush_acks_of(slot);
            self.let_go(slot, &name, LeaveReason::Revoked);
            return self.channel_error(slot, name, error);
        }
        // Answered already in this drain, with these modes: that ATTACHED and its SYNC answer
        // this one too. A flood of them would otherwise queue a whole copy of the set each.
        if continuous
            && attached_with == Some(modes)
            && self.answered(slot, &name, Action::Attached)
        {
            return;
        }
        if let Some(held) = evict {
            self.detach(slot, held);
        }
        let name = self
            .channels
            .get_key_value(&name)
            .map_or(name, |(k, _)| k.clone());
        // A rollcall client that resumed says, with ATTACH_RESUME, how far it heard the channel
        // (an extension: other Ably SDKs send the flag too, but read an ATTACHED without
        // HAS_PRESENCE as an empty channel, so theirs is not taken as this question).
        let resume_asked = message.flags.unwrap_or(0) & flags::ATTACH_RESUME != 0
            && self.conn(slot).is_some_and(|c| c.wants_status);
        // When the client heard everything sent before its transport went, the replay has
        // brought it the rest, and it is spared the SYNC.
        let holds_members = resume_asked
            && self.conn(slot).is_some_and(|c| {
                c.attachments.get(&name).is_some_and(|a| {
                    a.modes == modes
                        && message
                            .channel_serial
                            .as_deref()
                            .and_then(|s| self.serial_number(s))
                            .is_some_and(|s| a.holds_members_at(s))
                })
            });
        if holds_members {
            self.touch_connection(slot);
            let serial = self.channels.get(&name).map_or(0, |c| c.serial);
            if let Some(a) = self.attachment_mut(slot, &name) {
                a.dropped_at = None;
            }
            self.send_lost_connections(slot, &name);
            // The client keeps its view when this names the last frame it heard.
            let mut reply = ProtocolMessage::for_channel(Action::Attached, name);
            reply.flags = Some(modes | flags::RESUMED);
            reply.channel_serial = Some(self.serial_name(serial));
            return self.send(slot, &reply);
        }
        if let Some(conn) = self.conn_mut(slot) {
            conn.attachments.insert(
                name.clone(),
                super::connection::Attachment {
                    modes,
                    ..Default::default()
                },
            );
        }
        self.touch_connection(slot);
        let subscribe = modes & flags::PRESENCE_SUBSCRIBE != 0;
        let channel = self.channel_or_new(&name);
        if subscribe {
            channel.subscribers.insert(slot);
        } else {
            channel.subscribers.remove(&slot);
        }
        // A client asking to resume whose view cannot be vouched for takes an ATTACHED without
        // RESUMED, so that it does not mistake the absence of HAS_PRESENCE for "nothing changed".
        self.send_attached(slot, name, modes, continuous && !resume_asked, None);
        self.arm_sweep();
    }

    fn attachment_mut(
        &mut self,
        slot: Slot,
        name: &str,
    ) -> Option<&mut super::connection::Attachment> {
        self.conn_mut(slot)?.attachments.get_mut(name)
    }

    /// A channel serial as it is written in `channelSerial`.
    pub(super) fn serial_name(&self, serial: u64) -> Arc<str> {
        Arc::from(format!("{}:{serial}", self.config.server_id))
    }

    /// The number in a `channelSerial` this hub wrote.
    pub(super) fn serial_number(&self, name: &str) -> Option<u64> {
        let (server, serial) = name.rsplit_once(':')?;
        (*server == *self.config.server_id)
            .then(|| serial.parse().ok())
            .flatten()
    }

    /// `ATTACHED` with the channel's modes, `RESUMED` when the client has missed nothing on
    /// it, then the members (a SYNC) when it may see them.
    pub(super) fn send_attached(
        &mut self,
        slot: Slot,
        name: Arc<str>,
        modes: u64,
        resumed: bool,
        error: Option<ErrorInfo>,
    ) {
        self.answered.insert((slot, name.clone(), Action::Attached));
        // Without PRESENCE_SUBSCRIBE a connection still hears its own members (RTP17a): attached
        // again, it is sent them, or its client would take them for gone and show them leave.
        let subscribes = modes & flags::PRESENCE_SUBSCRIBE != 0;
        let own: Vec<PresenceMessage> = if subscribes {
            Vec::new()
        } else {
            self.own_members(slot, &name)
        };
        let channel = self.channel_or_new(&name);
        let serial = channel.synced(slot, subscribes);
        // Resumed, an empty channel is said with an empty SYNC too: a client whose last SYNC was
        // cut off with its transport waits for one to end (ably-js's get() would wait for ever).
        let has_presence =
            (subscribes && (resumed || !channel.members.is_empty())) || !own.is_empty();
        // Which connections are in their grace window, before every ATTACHED: the client keeps
        // only the marks it is told again (it may have missed the word that one is back, with
        // a transport that went or a connection it could not resume). It hears them again
        // after the SYNC, for the members it did not yet hold.
        if modes & flags::PRESENCE_SUBSCRIBE != 0 {
            self.send_lost_connections(slot, &name);
        }
        let mut reply = ProtocolMessage::for_channel(Action::Attached, name.clone());
        reply.flags = Some(
            modes
                | if resumed { flags::RESUMED } else { 0 }
                | if has_presence { flags::HAS_PRESENCE } else { 0 },
        );
        reply.channel_serial = Some(self.serial_name(serial));
        reply.error = error;
        self.send(slot, &reply);
        if let Some(a) = self.attachment_mut(slot, &name) {
            a.synced_at = serial;
            a.dropped_at = None;
        }
        self.touch_connection(slot);
        if has_presence && subscribes {
            self.send_sync(slot, &name);
            self.send_lost_connections(slot, &name);
        } else if has_presence {
            self.send_sync_of(slot, &name, &own);
        }
        self.arm_sweep();
    }

    /// The members a connection holds on a channel, as the channel has them.
    fn own_members(&self, slot: Slot, name: &Arc<str>) -> Vec<PresenceMessage> {
        let (Some(conn), Some(channel)) = (self.conn(slot), self.channels.get(name)) else {
            return Vec::new();
        };
        conn.members
            .iter()
            .filter(|(channel_name, _)| channel_name == name)
            .filter_map(|(_, client_id)| {
                channel.members.member(&MemberKey {
                    client_id: client_id.clone(),
                    connection_id: conn.id.clone(),
                })
            })
            .cloned()
            .collect()
    }

    /// Whether an ATTACHED (or a SYNC: `what`) of this channel waits for this connection in
    /// the current drain.
    fn answered(&self, slot: Slot, name: &Arc<str>, what: Action) -> bool {
        !self.answered.is_empty() && self.answered.contains(&(slot, name.clone(), what))
    }

    /// The recover's grace is over: the channels its client did not attach again are
    /// detached, and their members leave.
    pub(super) fn detach_unclaimed(&mut self, slot: Slot) {
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        conn.claim_by = None;
        let unclaimed: Vec<Arc<str>> = conn
            .attachments
            .iter()
            .filter(|(_, a)| a.unclaimed)
            .map(|(name, _)| name.clone())
            .collect();
        for name in unclaimed {
            self.detach(slot, name);
        }
        self.touch_connection(slot);
        self.arm_sweep();
    }

    /// Detaches a channel of the connection, if attached (its members leave), and says so.
    fn detach(&mut self, slot: Slot, name: Arc<str>) {
        // What the connection sent before its DETACH is answered before the DETACHED, as a
        // CLOSE's: a client must not hear an ACK for a channel it has detached.
        self.flush_acks_of(slot);
        self.let_go(slot, &name, LeaveReason::Detached);
        self.send(slot, &ProtocolMessage::for_channel(Action::Detached, name));
    }

    /// Ends a connection's attachment to a channel, if it has one: it hears the channel no
    /// more, and its members there leave, for `reason`.
    fn let_go(&mut self, slot: Slot, name: &Arc<str>, reason: LeaveReason) {
        let was_attached = self
            .conn_mut(slot)
            .and_then(|c| c.attachments.remove(name))
            .is_some();
        if was_attached {
            self.touch_connection(slot);
            if let Some(channel) = self.channels.get_mut(name) {
                channel.subscribers.remove(&slot);
            }
            self.leave_members(slot, Some(name), reason);
            self.forget_if_idle(name);
        }
    }

    fn on_detach(&mut self, slot: Slot, message: ProtocolMessage) {
        let Some(name) = message.channel else {
            return self.fail(slot, malformed("DETACH without a channel"));
        };
        self.detach(slot, name);
    }

    fn on_sync_request(&mut self, slot: Slot, message: ProtocolMessage) {
        let Some(name) = message.channel else {
            return self.fail(slot, malformed("SYNC without a channel"));
        };
        let Some(modes) = self
            .conn(slot)
            .and_then(|c| c.attachments.get(&name).map(|a| a.modes))
        else {
            // Answered, so that a client waiting for the members is not left waiting.
            let error = ErrorInfo::new(
                codes::CHANNEL_STATE,
                400,
                format!("channel {name} is not attached: attach it before asking for its members"),
            );
            return self.channel_error(slot, name, error);
        };
        // The members are on their way already, in this drain (see `on_attach`).
        if modes & flags::PRESENCE_SUBSCRIBE != 0 && !self.answered(slot, &name, Action::Sync) {
            let serial = self
                .channels
                .get_mut(&name)
                .map_or(0, |c| c.synced(slot, true));
            if let Some(a) = self.attachment_mut(slot, &name) {
                a.synced_at = serial;
            }
            self.touch_connection(slot);
            self.send_sync(slot, &name);
        }
    }

    /// Sends some members of a channel (a connection's own) as SYNC pages.
    fn send_sync_of(&mut self, slot: Slot, name: &Arc<str>, members: &[PresenceMessage]) {
        let Some(format) = self.conn(slot).map(|c| c.format) else {
            return;
        };
        let items: Vec<Vec<u8>> = members
            .iter()
            .map(|m| codec::encode_item(m, format))
            .collect();
        self.send_sync_pages(slot, name, &items, format);
    }

    /// Sends the whole presence set of a channel as SYNC pages that each fit in
    /// `maxMessageSize`, the last one with an empty cursor.
    pub(super) fn send_sync(&mut self, slot: Slot, name: &Arc<str>) {
        let Some(format) = self.conn(slot).map(|c| c.format) else {
            return;
        };
        let Some(channel) = self.channels.get_mut(name) else {
            return;
        };
        let version = channel.members.version();
        let cached = &mut channel.sync_items[format as usize];
        let items = match cached {
            Some((at, items)) if *at == version => items.clone(),
            _ => {
                let items: Arc<[Vec<u8>]> = channel
                    .members
                    .members()
                    .map(|m| codec::encode_item(m, format))
                    .collect();
                *cached = Some((version, items.clone()));
                // Counted with the entry's own cost, so that encodings of empty sets made
                // again and again cannot grow the list unreckoned.
                self.synced_bytes += super::channel::encoded_bytes(&items) + name.len() + 64;
                self.synced.push(name.clone());
                items
            }
        };
        self.send_sync_pages(slot, name, &items, format);
    }

    /// Sends encoded members as SYNC pages that each fit in `maxMessageSize`, the last one
    /// with an empty cursor.
    fn send_sync_pages(&mut self, slot: Slot, name: &Arc<str>, items: &[Vec<u8>], format: Format) {
        self.answered.insert((slot, name.clone(), Action::Sync));
        let sync_id = format!("s{}", self.next_counter());
        let envelope = ProtocolMessage::for_channel(Action::Sync, name.clone());
        let frames = codec::pages(
            &envelope,
            items,
            format,
            self.config.max_message_size,
            |page, _, last| {
                Some(Arc::from(if last {
                    format!("{sync_id}:")
                } else {
                    format!("{sync_id}:{}", page + 1)
                }))
            },
        );
        for frame in frames {
            self.send_frame(slot, frame);
        }
    }

    /// An error that concerns one channel: the client's channel fails, the connection carries on.
    fn channel_error(&mut self, slot: Slot, channel: Arc<str>, error: ErrorInfo) {
        let mut message = ProtocolMessage::for_channel(Action::Error, channel);
        message.error = Some(error);
        self.send(slot, &message);
    }

    /// Acknowledges a message once the events it caused have gone out; contiguous serials of
    /// one connection become one ACK with a count.
    pub(super) fn ack(&mut self, slot: Slot, serial: i64) {
        if let Some(last) = self.acks.iter_mut().rev().find(|a| a.slot == slot) {
            if last.error.is_none() && last.serial.saturating_add(last.count as i64) == serial {
                last.count += 1;
                return;
            }
        }
        self.acks.push(super::Settlement {
            slot,
            serial,
            count: 1,
            error: None,
        });
    }

    /// Refuses a message, in order with the acknowledgements before it.
    pub(super) fn nack(&mut self, slot: Slot, serial: i64, error: ErrorInfo) {
        self.acks.push(super::Settlement {
            slot,
            serial,
            count: 1,
            error: Some(error.clone()),
        });
        if let Some(conn) = self.conn_mut(slot) {
            conn.next_serial = conn.next_serial.max(serial.saturating_add(1));
            conn.note_refused(serial, error);
        }
        self.touch_connection(slot);
    }
}
