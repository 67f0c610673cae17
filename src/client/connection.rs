//! The connection's life: connecting, resuming, losing the transport, retrying with backoff,
//! suspending, closing, failing; and the acknowledgements of what was sent.

use crate::prelude::*;
use alloc::sync::Arc;

use super::channel::ChannelState;
use super::text::push_encoded;
use super::{
    channel_failed, presence_message, Client, ClientEvent, ConnectionState, InFlight, OpId,
    Transport,
};
use crate::protocol::{codes, Action, ErrorInfo, PresenceMessage, ProtocolMessage};

/// How long a connection can be resumed unless the hub says otherwise.
const DEFAULT_CONNECTION_STATE_TTL: u64 = 120_000;

impl Client {
    pub(super) fn tick(&mut self, now: u64) {
        self.now = self.now.max(now);
    }

    pub(super) fn next_op(&mut self) -> OpId {
        self.next_op = self.next_op.wrapping_add(1);
        OpId(self.next_op)
    }

    pub(super) fn settle(&mut self, op: OpId, result: Result<(), ErrorInfo>) {
        self.events.push(ClientEvent::Settled { op, result });
    }

    pub(super) fn set_state(&mut self, state: ConnectionState, reason: Option<ErrorInfo>) {
        if self.state == state {
            return;
        }
        let previous = self.state;
        self.state = state;
        let retry_in = match state {
            ConnectionState::Disconnected | ConnectionState::Suspended => self.retry_in(),
            _ => None,
        };
        self.events.push(ClientEvent::ConnectionState {
            current: state,
            previous,
            reason,
            retry_in,
        });
    }

    /// The error an operation gets when the connection state forbids it.
    pub(super) fn connection_refusal(&self) -> Option<ErrorInfo> {
        match self.state {
            ConnectionState::Closing | ConnectionState::Closed => Some(super::closed_reason()),
            // Set as it failed (`fail_connection`, the one way to failed).
            ConnectionState::Failed => self.failure.clone(),
            ConnectionState::Suspended => Some(ErrorInfo::new(
                codes::CONNECTION_SUSPENDED,
                400,
                "connection suspended",
            )),
            _ => None,
        }
    }

    /// Closes the transport, if there is one, and forgets the frames meant for it. What still
    /// matters goes again on the next one: presence in flight once connected (resent on a
    /// resumed connection, queued again on a new one), attaches and detaches by channel state.
    pub(super) fn drop_transport(&mut self) {
        if self.transport != Transport::None {
            self.events.push(ClientEvent::CloseTransport);
            self.transport = Transport::None;
        }
        self.transmits.clear();
    }

    pub(super) fn start_connecting(&mut self) {
        self.drop_transport();
        if self.awaiting_token {
            // Connecting starts once the host hands over a token.
            if self.state != ConnectionState::Connecting {
                self.set_state(ConnectionState::Connecting, None);
                self.events.push(ClientEvent::TokenNeeded);
            }
            return;
        }
        let mut url = self.options.url.clone();
        if let Some(key) = &self.connection_key {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(if self.recovering {
                "recover="
            } else {
                "resume="
            });
            push_encoded(&mut url, key);
        }
        self.transport = Transport::Opening;
        self.request_deadline = Some(self.now + self.options.realtime_request_timeout);
        self.set_state(ConnectionState::Connecting, None);
        self.events.push(ClientEvent::OpenTransport { url });
    }

    pub(super) fn on_connected(&mut self, message: ProtocolMessage) {
        // An answer to an AUTH sent before `close()`: the CLOSED to come is what counts. Or
        // the answer to a connect that `close()` overtook: the CLOSE it owes goes now.
        if self.state == ConnectionState::Closing {
            if core::mem::take(&mut self.close_owed) {
                self.transmits
                    .push_back(ProtocolMessage::new(Action::Close));
            }
            return;
        }
        self.request_deadline = None;
        self.retry_at = None;
        self.attempts = 0;
        self.token_refused = false;
        self.suspended = false;
        self.disconnected_since = None;
        self.connected_at = self.now;
        let resumed = message.connection_id.is_some()
            && (self.recovering || message.connection_id == self.connection_id)
            && message.error.is_none();
        if resumed && self.recovering {
            // The hub says where the connection's messages got to, when its key is older.
            self.msg_serial = self.msg_serial.max(message.msg_serial.unwrap_or(0));
        }
        self.recovering = false;
        self.connection_id = message.connection_id;
        if let Some(details) = message.connection_details {
            self.connection_key = details.connection_key.clone();
            self.details = details;
        }
        self.refresh_idle_deadline();
        // The hub re-sends CONNECTED after an AUTH: an `update`, and nothing else changes
        // (RTN24).
        if self.state == ConnectionState::Connected {
            self.events.push(ClientEvent::ConnectionState {
                current: ConnectionState::Connected,
                previous: ConnectionState::Connected,
                reason: message.error,
                retry_in: None,
            });
            return;
        }
        self.set_state(ConnectionState::Connected, message.error);
        let in_flight = core::mem::take(&mut self.in_flight);
        if resumed {
            // The hub deduplicates by msgSerial (RTN19a).
            for sent in &in_flight {
                self.transmits
                    .push_back(presence_message(&sent.channel, sent.serial, &sent.items));
            }
            self.in_flight = in_flight;
        } else {
            self.msg_serial = 0;
            // DETACHes sent on the old connection will not be answered.
            for sent in in_flight.into_iter().rev() {
                if let Some(c) = self.channels.get_mut(&sent.channel) {
                    // Re-entries not: the attach makes them afresh, without the old
                    // connection's ids (RTP17g1).
                    let mut items = sent.items;
                    items.retain(|q| q.op.is_some());
                    items.append(&mut c.queued);
                    c.queued = items;
                } else {
                    // Its channel failed and was released meanwhile: nothing sends it again, so
                    // it fails, rather than be waited for by the app for good.
                    for op in sent.items.into_iter().filter_map(|q| q.op) {
                        self.settle(op, Err(channel_failed()));
                    }
                }
            }
        }
        for name in self.channels.names() {
            let Some(c) = self.channels.get_mut(&name) else {
                continue;
            };
            if !resumed {
                // DETACHes sent on the old connection will not be answered.
                c.detach_sent = 0;
            }
            // Detached while offline, on a connection that resumed: the hub still holds the
            // channel (an attach since goes after the DETACH). Owed until answered: lost with
            // a transport, it goes again on the next resume. A new connection holds nothing.
            c.detach_owed &= resumed;
            c.owed_detach_sent = c.detach_owed;
            if c.owed_detach_sent {
                self.send_detach(name.clone());
            }
            let Some(c) = self.channels.get(&name) else {
                continue;
            };
            match c.state {
                // Every channel that should be attached attaches again (RTL3d).
                ChannelState::Attaching | ChannelState::Attached | ChannelState::Suspended => {
                    self.send_attach_with(&name, resumed);
                }
                // A detach under way is asked for again.
                ChannelState::Detaching if resumed => self.send_detach(name.clone()),
                // On a new connection, which holds nothing, it is over; and what was sent on
                // a channel detached since fails, as nothing will send it.
                ChannelState::Detaching | ChannelState::Detached => self.detached(&name, None),
                // What was sent on a channel failed since fails too: nothing will send it (an
                // attach much later must not send it then).
                ChannelState::Failed if !c.queued.is_empty() => {
                    self.fail_channel(&name, ChannelState::Failed, &channel_failed());
                }
                _ => {}
            }
            // Released while its DETACH was owed, which a new connection does not owe.
            self.channels.release(&name, false);
        }
    }

    /// The transport is gone (or must go): disconnected, and retry.
    pub(super) fn lose_transport(&mut self, reason: ErrorInfo) {
        self.drop_transport();
        self.request_deadline = None;
        self.idle_deadline = None;
        let since = *self.disconnected_since.get_or_insert(self.now);
        if self.now.saturating_sub(since) >= self.connection_state_ttl() {
            self.suspend(reason);
            return;
        }
        self.attempts += 1;
        let timeout = self.options.disconnected_retry_timeout;
        // Its members stay present for remainPresentFor after the hub notices the drop: while
        // they do, its backoff starts from a quarter of it (a second at least), so that it is
        // back within that window (no leave, no enter) if the network is. (Not the spacing of
        // quick retries: a hub that drops it as soon as it connects is not hammered.)
        let grace = self.grace().clamp(1_000, 3_600_000);
        let mut base = timeout;
        if self.now.saturating_sub(since) < grace && self.channels.iter().any(|c| !c.own.is_empty())
        {
            base = base.min((grace / 4).max(1_000));
        }
        let quick = self.attempts == 1
            && self
                .quick_retry_at
                .is_none_or(|at| self.now.saturating_sub(at) >= timeout);
        let delay = if quick {
            self.quick_retry_at = Some(self.now);
            0
        } else {
            self.backoff(base)
        };
        self.retry_at = Some(self.now + delay);
        self.set_state(ConnectionState::Disconnected, Some(reason));
    }

    fn connection_state_ttl(&self) -> u64 {
        self.details
            .connection_state_ttl
            .unwrap_or(DEFAULT_CONNECTION_STATE_TTL)
    }

    /// When a connection without a transport, and none on the way, is suspended: once it has
    /// been without one for `connectionStateTtl` (an attempt that fails then suspends it too).
    pub(super) fn suspend_at(&self) -> Option<u64> {
        let waiting = !self.suspended
            && matches!(
                self.state,
                ConnectionState::Disconnected | ConnectionState::Connecting
            )
            && self.transport == Transport::None;
        let since = self.disconnected_since.filter(|_| waiting)?;
        Some(since.saturating_add(self.connection_state_ttl()))
    }

    /// The hub refused the token (40140–40149), and a new one can be had: disconnected, and
    /// the first time since the last CONNECTED, a token is asked for at once and the client
    /// connects as soon as it comes (RTN14b, RTN15h2). A second refusal waits for the usual
    /// retry (`disconnectedRetryTimeout`, backing off, and suspended after
    /// `connectionStateTtl`), asking for a token when it comes: a token source that keeps
    /// giving tokens the hub refuses (signed with an old secret, or expired by the hub's clock)
    /// would otherwise make it reconnect in a tight loop.
    pub(super) fn refused_token(&mut self, reason: ErrorInfo) {
        if core::mem::replace(&mut self.token_refused, true) {
            self.attempts = self.attempts.max(1);
            self.lose_transport(reason);
            self.awaiting_token = true;
            return;
        }
        // Set first, so that `disconnected` says no timed retry comes (no retryIn).
        self.awaiting_token = true;
        self.lose_transport(reason);
        if self.state == ConnectionState::Disconnected {
            self.retry_at = None;
            self.events.push(ClientEvent::TokenNeeded);
        }
    }

    pub(super) fn suspend(&mut self, lost: ErrorInfo) {
        // As Ably's (RTN7c, RTL3c): the connection, its channels and what waited on them are
        // suspended with 80002; the message keeps what last went wrong.
        let mut message = String::from("connection suspended: ");
        message.push_str(&lost.message);
        let reason = ErrorInfo::new(codes::CONNECTION_SUSPENDED, 400, &message);
        // The connection is kept, as Ably's client keeps it since its spec 6.1 (RTN14h): the
        // hub says when it resumes whether it is still there, and it is while its members are in
        // their grace. A recovery that never connected is given up.
        if core::mem::take(&mut self.recovering) {
            self.connection_key = None;
            self.connection_id = None;
        }
        self.suspended = true;
        self.retry_at = Some(self.now + self.options.suspended_retry_timeout);
        self.set_state(ConnectionState::Suspended, Some(reason.clone()));
        // What was sent and never acknowledged fails: the connection it was sent on is gone
        // (RTN7c).
        self.fail_in_flight(&reason);
        let names: Vec<Arc<str>> = self.channels.names();
        for name in names {
            let Some(c) = self.channels.get_mut(&name) else {
                continue;
            };
            match c.state {
                ChannelState::Attaching | ChannelState::Attached => {
                    self.fail_channel(&name, ChannelState::Suspended, &reason);
                }
                // Over here; the DETACH goes again should the connection resume.
                ChannelState::Detaching => {
                    c.detach_owed = self.connection_key.is_some();
                    self.detached(&name, None);
                }
                _ => {}
            }
        }
    }

    /// `timeout × min((n + 2) / 3, 2) × (1 − up to 20 % jitter)` (Ably's retry schedule).
    pub(super) fn backoff(&mut self, timeout: u64) -> u64 {
        let n = u64::from(self.attempts.saturating_sub(1));
        let factor_x3 = (n + 2).min(6);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let jitter = self.rng % 200; // per mille, 0..20 %
        timeout * factor_x3 / 3 * (1000 - jitter) / 1000
    }

    /// Ends the connection for good (closed or failed): no transport, no timers, no resume.
    fn stop(&mut self) {
        self.drop_transport();
        self.request_deadline = None;
        self.retry_at = None;
        // A later connect() starts afresh: not suspended at its first failure for an outage
        // before the close, and with its quick first retry.
        self.disconnected_since = None;
        self.attempts = 0;
        self.quick_retry_at = None;
        self.token_refused = false;
        self.suspended = false;
        self.idle_deadline = None;
        self.renew_token_at = None;
        self.offline_until = None;
        self.connection_key = None;
        self.recovering = false;
    }

    pub(super) fn finish_close(&mut self) {
        self.stop();
        self.close_owed = false;
        self.connection_id = None;
        let reason = super::closed_reason();
        self.detach_for_close(&reason);
        self.set_state(ConnectionState::Closed, Some(reason.clone()));
        self.fail_in_flight(&reason);
    }

    /// Detaches every channel as the connection closes, before the connection says so (as
    /// Ably's client does: its listeners of `closing` and `closed` see the channels detached).
    pub(super) fn detach_for_close(&mut self, reason: &ErrorInfo) {
        let names: Vec<Arc<str>> = self.channels.names();
        for name in names {
            // What waited on the connection fails for its closing (80017), not as a detach.
            let mut waiting = Vec::new();
            if let Some(c) = self.channels.get_mut(&name) {
                for q in core::mem::take(&mut c.queued) {
                    waiting.extend(q.op);
                }
                waiting.append(&mut c.attach_waiters);
            }
            for op in waiting {
                self.settle(op, Err(reason.clone()));
            }
            // A failed channel stays failed (RTL3b).
            if self
                .channels
                .get(&name)
                .is_some_and(|c| !matches!(c.state, ChannelState::Failed | ChannelState::Detached))
            {
                self.detached(&name, Some(reason.clone()));
            }
        }
    }

    pub(super) fn on_error(&mut self, message: ProtocolMessage) {
        let reason = message
            .error
            .unwrap_or_else(|| ErrorInfo::new(codes::INTERNAL, 500, "error without a reason"));
        match message.channel {
            // A channel error: that channel fails, the connection carries on.
            Some(name) => self.fail_channel(&name, ChannelState::Failed, &reason),
            None => self.fail_connection(reason),
        }
    }

    /// The hub refused the connection: failed, unless a new token may fix it.
    pub(super) fn fail_connection(&mut self, mut reason: ErrorInfo) {
        if super::is_token_error(&reason) {
            if self.options.renewable_auth {
                // A token problem on connecting: a new token may fix it.
                return self.refused_token(reason);
            }
            // Nothing to get another from: failed, saying so (RSA4a2).
            reason.code = codes::TOKEN_NOT_RENEWABLE;
            reason.status_code = 403;
            reason
                .message
                .push_str("; no means to renew the token (give authUrl or authCallback)");
        }
        self.stop();
        self.failure = Some(reason.clone());
        self.set_state(ConnectionState::Failed, Some(reason.clone()));
        self.fail_in_flight(&reason);
        // Channels in use fail with it (RTL3a); one never attached, or detached, stays so.
        let names: Vec<Arc<str>> = self.channels.names();
        for name in names {
            let in_use = self.channels.get(&name).is_some_and(|c| {
                !matches!(c.state, ChannelState::Initialized | ChannelState::Detached)
            });
            if in_use {
                self.fail_channel(&name, ChannelState::Failed, &reason);
            }
        }
    }

    pub(super) fn on_ack(&mut self, message: ProtocolMessage, result: Result<(), ErrorInfo>) {
        let Some(first) = message.msg_serial else {
            return;
        };
        let count = i64::try_from(message.count.unwrap_or(1)).unwrap_or(i64::MAX);
        let last = first.saturating_add(count);
        let (done, rest): (Vec<InFlight>, Vec<InFlight>) = core::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|m| m.serial >= first && m.serial < last);
        self.in_flight = rest;
        let identity = self.client_id().cloned();
        let connection = self.connection_id.clone();
        for sent in done {
            let mut reentry_failed = None;
            for (index, q) in sent.items.into_iter().enumerate() {
                // Not on a channel detached since (its DETACHED can come before the ACK): what
                // it accepted there has gone with the detach, and must not be entered again.
                // Nor before the answer to a DETACH owed since an offline detach.
                let channel = self.channels.get_mut(&sent.channel).filter(|c| {
                    !c.owed_detach_sent
                        && matches!(
                            c.state,
                            ChannelState::Attaching
                                | ChannelState::Attached
                                | ChannelState::Detaching
                        )
                });
                if let (Ok(()), Some(c)) = (&result, channel) {
                    let id =
                        super::channels::operation_id(connection.as_deref(), sent.serial, index);
                    let item = PresenceMessage {
                        client_id: q.item.client_id.or_else(|| identity.clone()),
                        ..q.item
                    };
                    c.accepted(item, id, connection.clone());
                }
                match q.op {
                    Some(op) => self.settle(op, result.clone()),
                    None => {
                        if let Err(e) = &result {
                            reentry_failed = Some(e.clone());
                        }
                    }
                }
            }
            if let Some(cause) = reentry_failed {
                // RTP17e: the channel reports that its automatic re-entry failed.
                if let Some(c) = self.channels.get(&sent.channel) {
                    self.events.push(ClientEvent::ChannelState {
                        channel: c.name.clone(),
                        current: c.state,
                        previous: c.state,
                        reason: Some(ErrorInfo::new(
                            codes::REENTRY_FAILED,
                            400,
                            String::from("automatic re-entry failed: ") + &cause.message,
                        )),
                        resumed: true,
                    });
                }
            }
        }
    }

    pub(super) fn fail_in_flight(&mut self, reason: &ErrorInfo) {
        for sent in core::mem::take(&mut self.in_flight) {
            for q in sent.items {
                if let Some(op) = q.op {
                    self.settle(op, Err(reason.clone()));
                }
            }
        }
    }
}
