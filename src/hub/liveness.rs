//! Liveness: when each connection is next due (a heartbeat to send, silence to notice, a grace
//! window to end), what its transport's loss means, and what happens when a deadline comes.

use super::connection::Life;
use super::presence::LeaveReason;
use super::{config, Hub, HubEvent, Slot, TransportId};
use crate::protocol::{codes, Action, ErrorInfo, ProtocolMessage};

impl Hub {
    /// The transport went away without `CLOSE`.
    pub(super) fn drop_transport(&mut self, slot: Slot) {
        let now = self.now;
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        let Some(transport) = conn.transport.take() else {
            return;
        };
        conn.life = Life::Dropped { at: now };
        // Gone again before its return was told: listeners told it was lost still think so,
        // but those that attached since were not told (a connection that is back is not listed
        // to them). It is told lost again, to all, after the usual delay; to those that knew,
        // that word changes nothing.
        let untold = conn.back_notice_at.take().is_some();
        if untold {
            conn.lost_told = false;
        }
        self.told_lost = self.told_lost.saturating_sub(usize::from(untold));
        self.by_transport.remove(&transport);
        self.forget_held(slot);
        self.note_transport_lost(slot);
        self.schedule(slot);
        self.touch_connection(slot);
    }

    /// Notes, for each channel of the connection, how far it was heard on the transport that
    /// is gone (see [`connection::Attachment::holds_members_at`]).
    pub(super) fn note_transport_lost(&mut self, slot: Slot) {
        let Some(conn) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        for (name, attachment) in conn.attachments.iter_mut() {
            attachment.dropped_at = self.channels.get(name).map(|c| c.serial);
        }
    }

    /// Notes activity on a transport and returns its connection.
    pub(super) fn touch(&mut self, transport: TransportId) -> Option<Slot> {
        let slot = *self.by_transport.get(&transport)?;
        let now = self.now;
        let conn = self.conn_mut(slot)?;
        conn.last_in = now;
        conn.probed = false;
        Some(slot)
    }

    /// The client showed it keeps the connection alive itself: its silence now means it is gone.
    pub(super) fn mark_heartbeating(&mut self, slot: Slot) {
        let Some(conn) = self.conn_mut(slot) else {
            return;
        };
        if !conn.heartbeating {
            conn.heartbeating = true;
            self.schedule(slot);
            self.touch_connection(slot);
        }
    }

    /// A connection's deadline came.
    pub(super) fn on_deadline(&mut self, slot: Slot) {
        let now = self.now;
        let heard_since = self.heard_since;
        let Some(conn) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        match conn.life {
            Life::Live => {
                let h = conn.heartbeat_interval;
                let Some(transport) = conn.transport else {
                    return;
                };
                if conn.back_notice_at.is_some_and(|at| now >= at) {
                    conn.back_notice_at = None;
                    conn.lost_told = false;
                    self.told_lost = self.told_lost.saturating_sub(1);
                    self.touch_connection(slot);
                    self.announce_connection(slot, false);
                }
                if self
                    .conn(slot)
                    .and_then(|c| c.claim_by)
                    .is_some_and(|at| now >= at)
                {
                    self.detach_unclaimed(slot);
                }
                let Some(conn) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
                    return;
                };
                if let Some(token) = &mut conn.token {
                    if now >= token.expires {
                        // The token ran out: the client may renew it and resume in its window.
                        let mut message = ProtocolMessage::new(Action::Disconnected);
                        message.error =
                            Some(ErrorInfo::new(codes::TOKEN_EXPIRED, 401, "token expired"));
                        self.send(slot, &message);
                        self.events.push_back(HubEvent::Close {
                            transport,
                            code: 1000,
                        });
                        self.drop_transport(slot);
                        return;
                    }
                    if !token.renewal_asked && now >= token.renew_at() {
                        token.renewal_asked = true;
                        self.send(slot, &ProtocolMessage::new(Action::Auth));
                        self.touch_connection(slot);
                        self.schedule(slot);
                        return;
                    }
                }
                let Some(conn) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
                    return;
                };
                let config = &self.config;
                let enforced = conn.silence_is_death(config);
                if enforced
                    && now >= (conn.last_in + h).max(heard_since) + config::liveness_margin(h)
                {
                    // Silent past its interval and the margin: treat it as dropped.
                    self.events.push_back(HubEvent::Close {
                        transport,
                        code: 1001,
                    });
                    self.drop_transport(slot);
                    return;
                }
                if config.host_pings && !conn.probed && now >= conn.last_in + h {
                    conn.probed = true;
                    if !conn.heartbeats {
                        // A client that did not ask for protocol heartbeats sees pings.
                        conn.last_out = now;
                    }
                    self.events.push_back(HubEvent::Ping { transport });
                }
                if now >= conn.last_out + h {
                    if conn.heartbeats || !config.host_pings {
                        let heartbeat = ProtocolMessage::new(Action::Heartbeat);
                        self.send(slot, &heartbeat);
                    } else {
                        conn.last_out = now;
                        self.events.push_back(HubEvent::Ping { transport });
                    }
                }
                self.schedule(slot);
            }
            Life::Dropped { at } => {
                if !conn.lost_told
                    && !conn.members.is_empty()
                    && now >= conn.lost_notice_at(at, &self.config)
                {
                    conn.lost_told = true;
                    self.told_lost += 1;
                    // A timer that fires late, as its members leave, has nothing left to tell.
                    let late = now >= conn.grace_ends(at, &self.config);
                    self.touch_connection(slot);
                    if !late {
                        self.announce_connection(slot, true);
                    }
                }
                let Some(conn) = self.conn(slot) else {
                    return;
                };
                if now >= conn.grace_ends(at, &self.config) && !conn.members.is_empty() {
                    let n = u32::try_from(conn.members.len()).unwrap_or(u32::MAX);
                    if let Some(conn) = self.conn_mut(slot) {
                        conn.timed_out = conn.timed_out.saturating_add(n);
                    }
                    // Stored with it (an object may be evicted before its client resumes).
                    self.touch_connection(slot);
                    self.leave_members(slot, None, LeaveReason::Timeout);
                    self.schedule(slot);
                } else if conn.members.is_empty()
                    && now >= at.saturating_add(self.config.connection_state_ttl)
                {
                    self.remove(slot);
                } else {
                    self.schedule(slot);
                }
            }
        }
    }

    /// Puts a connection's next deadline in the timer set.
    pub(super) fn schedule(&mut self, slot: Slot) {
        let config = &self.config;
        let Some(conn) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        let deadline = conn.next_deadline(config, self.heard_since);
        if conn.deadline == Some(deadline) {
            return;
        }
        if let Some(old) = conn.deadline.replace(deadline) {
            self.timers.remove(&(old, slot));
        }
        self.timers.insert((deadline, slot));
    }
}
