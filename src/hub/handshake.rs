//! A transport becomes a connection: the connect request checked (format, credentials,
//! limits), a new connection made or an earlier one resumed or recovered, and CONNECTED sent.
//! A transport refused here never becomes a connection.

use std::collections::VecDeque;
use std::sync::Arc;

use super::connection::{self, Connection, Life};
use super::{
    auth, codec, counted_client, ConnectParams, Format, Hub, HubEvent, Slot, Transmit, TransportId,
};
use crate::protocol::{base64, codes, Action, ErrorInfo, ProtocolMessage};

impl Hub {
    pub(super) fn open(
        &mut self,
        transport: TransportId,
        params: &ConnectParams,
        entropy: [u8; 24],
    ) {
        let Some(format) = Format::from_query(params.format.as_deref()) else {
            let error = ErrorInfo::new(codes::BAD_REQUEST, 400, "unsupported format");
            return self.refuse(transport, Format::Json, error);
        };
        if let Some(name) = params.invalid {
            let error = ErrorInfo::new(
                codes::BAD_REQUEST,
                400,
                format!("invalid {name}: a number of milliseconds is needed"),
            );
            return self.refuse(transport, format, error);
        }
        let identity = match auth::authenticate(&self.config, params, self.now) {
            Ok(identity) => identity,
            Err(error) => return self.refuse(transport, format, error),
        };
        let resumable = params
            .resume
            .as_deref()
            .map(|k| self.resumable(k, params.recover, &identity));
        if let Some(Ok(slot)) = resumable {
            return self.resume(slot, transport, format, params, identity, entropy);
        }
        if self.by_id.len() >= self.config.max_connections {
            let error = ErrorInfo::new(
                codes::CONNECTION_LIMIT,
                503,
                format!(
                    "this hub holds its limit of {} connections",
                    self.config.max_connections
                ),
            );
            return self.refuse(transport, format, error);
        }
        let per_client = self.config.max_connections_per_client;
        let counted = counted_client(&self.config, &identity);
        if let Some(client) = &counted {
            if self.per_client.get(client).map_or(0, |h| h.connections) as usize >= per_client {
                let error = ErrorInfo::new(
                    codes::CONNECTION_LIMIT,
                    503,
                    format!(
                        "{} holds its limit of {per_client} connections",
                        super::counted_as(client)
                    ),
                );
                return self.refuse(transport, format, error);
            }
        }
        // Disjoint bytes: the public id tells nothing of the secret key (120 bits).
        let mut id = base64::encode_url_safe(&entropy[..9]);
        // Entropy that repeats (a broken random source) must not merge two connections.
        while self.by_id.contains_key(id.as_str()) {
            let n = self.next_counter();
            id.push_str(&base64::encode_url_safe(&n.to_le_bytes()[..3]));
        }
        let id: Arc<str> = Arc::from(id);
        let key = self.unused_key(&entropy);
        let rollcall_client = params.is_rollcall_client();
        let conn = Connection {
            id: id.clone(),
            key: key.clone(),
            client_id: identity.client_id,
            capability: identity.capability,
            token: identity.expires.map(|expires| connection::Token {
                expires,
                issued: identity.issued,
                renewal_asked: false,
            }),
            inbound: connection::RateLimit::new(self.now, self.inbound_burst()),
            control: connection::RateLimit::new(self.now, self.control_burst()),
            transport: Some(transport),
            format,
            heartbeats: params.heartbeats,
            remain_present_for: params.remain_present_for(&self.config),
            heartbeat_interval: params.heartbeat_interval(&self.config),
            life: Life::Live,
            last_in: self.now,
            last_out: self.now,
            probed: false,
            lost_told: false,
            back_notice_at: None,
            claim_by: None,
            // A rollcall client keeps its connection alive itself (it sends a heartbeat when it
            // has sent nothing for the interval): from the start, its silence means it is gone,
            // also where the host cannot ping.
            heartbeating: rollcall_client,
            wants_status: rollcall_client,
            counted,
            next_serial: 0,
            serial_offset: 0,
            rebase_serials: false,
            attachments: Default::default(),
            members: Default::default(),
            own_leaves: Vec::new(),
            refused: Vec::new(),
            cut_for_size: None,
            deadline: None,
            replay: VecDeque::new(),
            replay_bytes: 0,
            replay_overflowed: false,
            old_keys: Vec::new(),
            reentries: 0,
            // A client whose resume fails enters its members again.
            regain: if resumable.is_some() {
                super::connection::regain_credit(&self.config)
            } else {
                0
            },
            timed_out: 0,
        };
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(Box::new(conn));
                slot
            }
            None => {
                self.slots.push(Some(Box::new(conn)));
                (self.slots.len() - 1) as Slot
            }
        };
        self.by_id.insert(id, slot);
        self.by_key.insert(key, slot);
        self.by_transport.insert(transport, slot);
        self.count_client(slot, 1);
        let error = resumable
            .and_then(Result::err)
            .map(|why| ErrorInfo::new(codes::UNABLE_TO_RESUME, 400, why));
        self.send_connected(slot, error);
        self.schedule(slot);
        self.touch_connection(slot);
    }

    /// Prepares a connection for a new client that recovers it (RTN16): the client before it
    /// is gone or must let go, so
    /// - the connection gets a new key: the client before cannot take it back by resuming (a
    ///   process still running, a page in the back-forward cache), and is given a connection
    ///   of its own instead of the two taking it from each other;
    /// - what was kept for the client before (events, acknowledgements) is not replayed: the
    ///   new client attaches the channels it wants and takes their members by SYNC.
    fn hand_over(&mut self, slot: Slot, params: &ConnectParams, entropy: [u8; 24]) {
        let key = self.unused_key(&entropy);
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        let old = std::mem::replace(&mut conn.key, key.clone());
        // What the new client says of itself holds from now on (whether it heartbeats, whether
        // it hears of lost connections), not what the client before said.
        let rollcall_client = params.is_rollcall_client();
        conn.heartbeating = rollcall_client;
        conn.wants_status = rollcall_client;
        conn.replay.clear();
        let replayed = std::mem::take(&mut conn.replay_bytes);
        conn.replay_overflowed = false;
        // Its refusals were answers to the client before: a new client's message under a serial
        // it reuses is not one of them. Nor is such a message a resend: it is counted on from
        // the connection's (see `Connection::serial_offset`).
        conn.refused.clear();
        conn.rebase_serials = true;
        // The new client holds no view of its own to resume, and may not show every channel
        // the one before it did: those it does not attach again are detached in its grace, and
        // until it does, it is not sent their presence.
        conn.forget_where_heard();
        let mut held = Vec::new();
        for (name, attachment) in conn.attachments.iter_mut() {
            attachment.unclaimed = true;
            held.push(name.clone());
        }
        for name in held {
            if let Some(channel) = self.channels.get_mut(&name) {
                channel.subscribers.remove(&slot);
            }
        }
        self.replay_held = self.replay_held.saturating_sub(replayed);
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        conn.old_keys.push(old.clone());
        // One key is added at a time, so at most the oldest is one too many.
        let forgotten =
            (conn.old_keys.len() > connection::OLD_KEYS).then(|| conn.old_keys.remove(0));
        self.by_key.remove(&old);
        self.by_key.insert(key, slot);
        self.by_old_key.insert(old, slot);
        if let Some(gone) = forgotten {
            self.by_old_key.remove(&gone);
        }
    }

    /// A connection key from the last 15 bytes of `entropy` (120 bits, disjoint from the
    /// public id's), that no connection has or had: entropy that repeats (a broken random
    /// source) must not merge two connections.
    fn unused_key(&mut self, entropy: &[u8; 24]) -> Arc<str> {
        let mut key = base64::encode_url_safe(&entropy[9..]);
        while self.by_key.contains_key(key.as_str()) || self.by_old_key.contains_key(key.as_str()) {
            let n = self.next_counter();
            key.push_str(&base64::encode_url_safe(&n.to_le_bytes()[..3]));
        }
        Arc::from(key)
    }

    /// The connection a `resume` (or, with `recover`, a `recover`) key names, if this identity
    /// may take it; else why not.
    fn resumable(
        &self,
        key: &str,
        recover: bool,
        identity: &auth::Identity,
    ) -> Result<Slot, &'static str> {
        let counted = counted_client(&self.config, identity);
        let slot = self
            .by_key
            .get(key)
            .or_else(|| recover.then(|| self.by_old_key.get(key)).flatten())
            .copied()
            .ok_or(if self.by_old_key.contains_key(key) {
                "unable to resume: the connection was recovered by another client, and this key \
                 no longer resumes it"
            } else {
                "unable to resume: the connection is unknown or has expired"
            })?;
        match self.conn(slot) {
            Some(conn) if super::other_app(&counted, &conn.counted) => {
                Err("unable to resume: the connection belongs to another app")
            }
            Some(conn) if conn.client_id == identity.client_id => Ok(slot),
            Some(_) => Err("unable to resume: the connection belongs to another clientId"),
            None => Err("unable to resume: the connection is unknown or has expired"),
        }
    }

    fn resume(
        &mut self,
        slot: Slot,
        transport: TransportId,
        format: Format,
        params: &ConnectParams,
        identity: auth::Identity,
        entropy: [u8; 24],
    ) {
        // Its last transport was cut off for a frame too large to read, which it would send
        // again (see `Hub::handle_too_large`): the connection fails instead, with why.
        let cut = self.conn_mut(slot).and_then(|c| c.cut_for_size.take());
        if let Some(limit) = cut.filter(|_| !params.recover) {
            let message = format!(
                "a frame exceeded the {limit} bytes the hub reads (maxFrameSize is {}): the \
                 connection was cut off, and cannot resume to send it again",
                self.config.max_frame_size()
            );
            let error = ErrorInfo::new(codes::MESSAGE_TOO_LARGE, 400, message);
            self.refuse(transport, format, error);
            self.end(slot, 1008, super::LeaveReason::Failed);
            return;
        }
        if params.recover {
            self.hand_over(slot, params, entropy);
        }
        // What waited for the old transport is not an answer for the new one.
        if !self.answered.is_empty() {
            self.answered.retain(|(s, _, _)| *s != slot);
        }
        let now = self.now;
        let (remain_present_for, heartbeat_interval) = (
            params.remain_present_for(&self.config),
            params.heartbeat_interval(&self.config),
        );
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        // The new transport's parameters hold from now on.
        conn.heartbeats = params.heartbeats;
        conn.remain_present_for = remain_present_for;
        conn.heartbeat_interval = heartbeat_interval;
        // Frames kept in the old format cannot be read in a new one: given up, as if more had
        // happened than could be kept (the channels are attached afresh below).
        let format_changed = conn.format != format;
        conn.capability = identity.capability;
        conn.token = identity.expires.map(|expires| connection::Token {
            expires,
            issued: identity.issued,
            renewal_asked: false,
        });
        let old = conn.transport.replace(transport);
        conn.format = format;
        conn.life = Life::Live;
        conn.last_in = now;
        conn.last_out = now;
        conn.probed = false;
        // A recovering client has its grace to attach again the channels it still shows; one
        // that lost its transport meanwhile has it again from its resume, as it could not
        // claim them while it was away.
        let claim_by = now.saturating_add(remain_present_for);
        if params.recover {
            conn.claim_by = Some(claim_by);
        } else if let Some(by) = &mut conn.claim_by {
            *by = (*by).max(claim_by);
        }
        // Listeners told that it dropped are told that it is back, on the next tick.
        if conn.lost_told {
            conn.back_notice_at = Some(Connection::back_notice_at(now));
        }
        let mut replay = std::mem::take(&mut conn.replay);
        let replayed = std::mem::take(&mut conn.replay_bytes);
        // Credentials that allow less than the old ones are not told what happened where they
        // no longer reach: the replay is given up, and the channels they still allow are
        // attached afresh, as after an overflow.
        let narrowed = conn
            .attachments
            .iter()
            .any(|(name, a)| a.modes & !conn.capability.modes_for(name) != 0);
        let unreadable = (format_changed || narrowed) && !replay.is_empty();
        let overflowed = std::mem::take(&mut conn.replay_overflowed) || unreadable;
        if unreadable {
            replay.clear();
        }
        self.replay_held = self.replay_held.saturating_sub(replayed);
        if let Some(old) = old {
            // What the old transport had waiting is its client's to send again on this one
            // (or, recovered, a new client's business, not its own).
            self.forget_held(slot);
            // The client left the old transport before the hub noticed.
            if !params.recover {
                self.note_transport_lost(slot);
            }
            self.by_transport.remove(&old);
            self.events.push_back(HubEvent::Close {
                transport: old,
                code: 1000,
            });
        }
        self.by_transport.insert(transport, slot);
        // Its client enters each of its members again at once, in a frame of its own
        // (RTP17g), and those whose grace ran out (RTP17i): those frames are not charged, up to
        // as many as it held.
        if let Some(conn) = self.conn_mut(slot) {
            conn.reentries = u32::try_from(conn.members.len()).unwrap_or(u32::MAX);
            conn.regain = std::mem::take(&mut conn.timed_out);
        }
        self.touch_connection(slot);
        self.send_connected_at(slot, None, params.recover);
        for frame in replay {
            self.transmit(Transmit {
                to: vec![transport],
                frame,
            });
        }
        // The credentials it resumed with may allow less than those it connected with.
        self.apply_capability(slot);
        // More happened than could be kept for it: every channel is attached afresh, without
        // RESUMED and with the members as they are now, so that the client knows it missed
        // events and takes the SYNC (RTL12) rather than believe its view whole.
        if overflowed && self.conn(slot).is_some_and(|c| c.wants_status) {
            // A rollcall client re-attaches every channel after a resume, asking to keep its
            // view: that view can no longer be vouched for, and its re-attach takes the one SYNC
            // (an ATTACHED from here as well would make it two), without RESUMED even when it
            // does not ask to keep a view.
            if let Some(conn) = self.conn_mut(slot) {
                conn.missed_events();
            }
        } else if overflowed {
            let attachments: Vec<(Arc<str>, u64)> = self
                .conn(slot)
                .map(|c| {
                    c.attachments
                        .iter()
                        .filter(|(_, a)| !a.unclaimed)
                        .map(|(n, a)| (n.clone(), a.modes))
                        .collect()
                })
                .unwrap_or_default();
            for (name, modes) in attachments {
                self.send_attached(slot, name, modes, false, None);
            }
        }
        self.schedule(slot);
    }

    pub(super) fn send_connected(&mut self, slot: Slot, error: Option<ErrorInfo>) {
        self.send_connected_at(slot, error, false);
    }

    /// CONNECTED; for a recovered connection (`recovered`), with the msgSerial it has reached:
    /// a client whose key is older than the last message sent on the connection continues
    /// from there, so that its messages are not taken for resends and their ids come after
    /// those already sent (a rollcall extension; other clients continue from their key's
    /// msgSerial, as Ably's do).
    fn send_connected_at(&mut self, slot: Slot, error: Option<ErrorInfo>, recovered: bool) {
        let Some(conn) = self.conn(slot) else {
            return;
        };
        let mut message = ProtocolMessage::new(Action::Connected);
        message.connection_id = Some(conn.id.clone());
        message.msg_serial = recovered.then_some(conn.next_serial);
        message.connection_details = Some(crate::protocol::ConnectionDetails {
            client_id: conn.client_id.clone(),
            connection_key: Some(conn.key.clone()),
            max_message_size: Some(self.config.max_message_size as u64),
            max_frame_size: Some(self.config.max_frame_size() as u64),
            max_inbound_rate: None,
            max_idle_interval: Some(conn.heartbeat_interval),
            connection_state_ttl: Some(self.config.connection_state_ttl),
            server_id: Some(self.config.server_id.clone()),
            remain_present_for: Some(conn.remain_present_for),
        });
        message.error = error;
        self.send(slot, &message);
    }

    /// Refuses a transport that has no connection: `ERROR`, then close.
    pub(super) fn refuse(&mut self, transport: TransportId, format: Format, error: ErrorInfo) {
        // A full hub, or a client at its limit, may have room later: DISCONNECTED, which
        // clients (Ably's included) try again after, rather than an ERROR that fails them.
        let action = if error.code == codes::CONNECTION_LIMIT {
            Action::Disconnected
        } else {
            Action::Error
        };
        let mut message = ProtocolMessage::new(action);
        message.error = Some(error);
        self.transmit(Transmit {
            to: vec![transport],
            frame: codec::encode(&message, format),
        });
        self.events.push_back(HubEvent::Close {
            transport,
            code: 1008,
        });
    }
}
