//! One channel as a client holds it: its state, its view of the presence set (rebuilt by SYNC
//! after every attach), the members this connection entered (for re-entry, RTP17) and the
//! presence operations waiting for the channel to be attached.

use crate::prelude::*;
use alloc::sync::Arc;

use super::{ClientEvent, OpId};
use crate::presence::{is_synthesized, PresenceMap};
use crate::protocol::{ErrorInfo, PresenceAction, PresenceMessage};

/// The state of a channel, with Ably's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelState {
    /// Not yet attached.
    Initialized,
    /// `ATTACH` sent (or waiting for the connection).
    Attaching,
    /// Attached: presence events flow.
    Attached,
    /// `DETACH` sent.
    Detaching,
    /// Detached: the presence view is cleared.
    Detached,
    /// The attach timed out or the connection is suspended; it will be retried.
    Suspended,
    /// The hub refused the channel.
    Failed,
}

impl ChannelState {
    /// Ably's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            Self::Initialized => "initialized",
            Self::Attaching => "attaching",
            Self::Attached => "attached",
            Self::Detaching => "detaching",
            Self::Detached => "detached",
            Self::Suspended => "suspended",
            Self::Failed => "failed",
        }
    }
}

/// A presence operation waiting to be sent.
#[derive(Clone, Debug)]
pub(crate) struct Queued {
    /// Who to tell when it is acknowledged; `None` for the client's own re-entries.
    pub(crate) op: Option<OpId>,
    pub(crate) item: PresenceMessage,
}

/// The channels of a client (a client has a handful).
#[derive(Debug, Default)]
pub(crate) struct Channels(Vec<Channel>);

impl Channels {
    pub(crate) fn get(&self, name: &str) -> Option<&Channel> {
        self.0.iter().find(|c| &*c.name == name)
    }

    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut Channel> {
        self.0.iter_mut().find(|c| &*c.name == name)
    }

    pub(crate) fn insert(&mut self, channel: Channel) {
        self.0.push(channel);
    }

    /// Forgets a channel that holds nothing (initialized, detached or failed), once it is
    /// released (`asked`). One whose DETACH is still owed is forgotten once that is settled.
    pub(crate) fn release(&mut self, name: &str, asked: bool) {
        if let Some(i) = self.0.iter().position(|c| &*c.name == name) {
            let c = &mut self.0[i];
            c.released |= asked;
            if c.released
                && !c.detach_owed
                && matches!(
                    c.state,
                    ChannelState::Initialized | ChannelState::Detached | ChannelState::Failed
                )
            {
                self.0.swap_remove(i);
            }
        }
    }

    pub(crate) fn names(&self) -> Vec<Arc<str>> {
        self.0.iter().map(|c| c.name.clone()).collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Channel> {
        self.0.iter()
    }
}

#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) name: Arc<str>,
    pub(crate) state: ChannelState,
    pub(crate) members: PresenceMap,
    /// The members this connection entered, one per client id (RTP17h).
    pub(crate) own: Vec<PresenceMessage>,
    /// Presence operations to send once attached (RTP16).
    pub(crate) queued: Vec<Queued>,
    /// Callers waiting for the channel to be attached, or detached.
    pub(crate) attach_waiters: Vec<OpId>,
    pub(crate) detach_waiters: Vec<OpId>,
    /// The SYNC in progress, by its id.
    pub(crate) sync_id: Option<String>,
    /// When the pending attach or detach gives up, or a suspended channel retries.
    pub(crate) deadline: Option<u64>,
    /// The `channelSerial` of the last ATTACHED or event heard: how far this client heard the
    /// channel, sent back on re-attach.
    pub(crate) serial: Option<Arc<str>>,
    /// The `channelSerial` of the last ATTACHED: where `history({ untilAttach })` ends.
    pub(crate) attach_serial: Option<Arc<str>>,
    /// A re-attach after a resume asked to keep the view (ATTACH_RESUME).
    pub(crate) resuming: bool,
    /// While attaching (and until the SYNC that follows ends): the connections the hub said
    /// are in their grace window. It says it of every one of them before the ATTACHED.
    pub(crate) told_lost: Vec<Arc<str>>,
    /// Marks are to be put right by `told_lost` once the view is whole.
    pub(crate) reconciling: bool,
    /// Connections whose members are in their grace window, as the hub reported them.
    pub(crate) lost: Vec<Arc<str>>,
    /// The modes it attaches with (`flags::PRESENCE`, ...; none: all its credentials allow).
    pub(crate) modes: u32,
    /// DETACHes sent whose DETACHED has not come: one that comes while attaching again answers
    /// one of them, and the ATTACHED follows.
    pub(crate) detach_sent: u8,
    /// Detached here without its DETACH answered, on a connection the hub may still hold: the
    /// DETACH goes if the connection resumes (and the channel is kept until then).
    pub(crate) detach_owed: bool,
    /// Released while its DETACH was owed: forgotten once that is settled.
    pub(crate) released: bool,
    /// That DETACH went out on the resumed connection and is not answered yet: what the hub
    /// sends the channel until then belongs to the attachment the app ended (the echo of an
    /// enter made before the detach, say), and is not taken.
    pub(crate) owed_detach_sent: bool,
}

impl Channel {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Self {
            name,
            state: ChannelState::Initialized,
            members: PresenceMap::new(),
            own: Vec::new(),
            queued: Vec::new(),
            attach_waiters: Vec::new(),
            detach_waiters: Vec::new(),
            sync_id: None,
            deadline: None,
            serial: None,
            attach_serial: None,
            resuming: false,
            told_lost: Vec::new(),
            reconciling: false,
            lost: Vec::new(),
            detach_sent: 0,
            detach_owed: false,
            released: false,
            owed_detach_sent: false,
            modes: 0,
        }
    }

    /// Moves to a state, announcing it. Waiters are settled by the caller.
    pub(crate) fn set_state(
        &mut self,
        state: ChannelState,
        reason: Option<ErrorInfo>,
        resumed: bool,
        events: &mut Vec<ClientEvent>,
    ) {
        if self.state == state && reason.is_none() {
            return;
        }
        let previous = self.state;
        self.state = state;
        events.push(ClientEvent::ChannelState {
            channel: self.name.clone(),
            current: state,
            previous,
            reason,
            resumed,
        });
    }

    /// Applies presence messages from the hub (`PRESENCE` or a `SYNC` page) and emits the
    /// events they cause. `own_connection` is this client's connection id.
    pub(crate) fn apply(
        &mut self,
        messages: Vec<PresenceMessage>,
        own_connection: Option<&str>,
        from_sync: bool,
        catching_up: bool,
        events: &mut Vec<ClientEvent>,
    ) {
        // Whether a member left: the grace marks of connections left with none go after.
        let mut removed = false;
        for mut message in messages {
            let Some(client_id) = message.client_id.clone() else {
                continue;
            };
            if catching_up {
                // Events the hub replays while the channel attaches again after a resume may
                // follow a gap (frames lost with the old transport): each is told as what it
                // does to this view, in turn, and the SYNC after completes the view.
                let known = message
                    .connection_id
                    .as_ref()
                    .is_some_and(|c| self.members.get(&client_id, c).is_some());
                message.action = match message.action {
                    PresenceAction::Enter if known => PresenceAction::Update,
                    PresenceAction::Update if !known => PresenceAction::Enter,
                    action => action,
                };
            }
            let own =
                own_connection.is_some() && message.connection_id.as_deref() == own_connection;
            let before = self.members.devices(&client_id).next().is_some();
            let changed = match message.action {
                PresenceAction::Enter | PresenceAction::Update | PresenceAction::Present => {
                    let changed = self.members.put(&message);
                    // What is re-entered is what is newest (RTP17b), not what came last.
                    if own && changed {
                        self.own
                            .retain(|m| m.client_id.as_ref() != Some(&client_id));
                        self.own.push(message.clone());
                    }
                    changed
                }
                PresenceAction::Leave => {
                    if own && !is_synthesized(&message) {
                        self.own
                            .retain(|m| m.client_id.as_ref() != Some(&client_id));
                    }
                    self.members.remove(&message)
                }
                PresenceAction::Absent => false,
            };
            if changed {
                removed |= message.action == PresenceAction::Leave;
                events.push(ClientEvent::Presence {
                    channel: self.name.clone(),
                    message,
                });
                self.announce_client(&client_id, before, from_sync, events);
            }
        }
        if removed {
            self.forget_lost_gone();
        }
    }

    /// Notes that a connection's members are in their grace window, or back (a connection
    /// marked lost has members here: the caller checks, once for a frame of them).
    pub(crate) fn set_lost(
        &mut self,
        connection_id: Arc<str>,
        lost: bool,
        initial: bool,
        events: &mut Vec<ClientEvent>,
    ) {
        // Sorted, and searched: a crowd that drops at once is a frame of thousands.
        if !mark(&mut self.lost, &connection_id, lost) {
            return;
        }
        events.push(ClientEvent::ConnectionStatus {
            channel: self.name.clone(),
            connection_id,
            lost,
            initial,
        });
    }

    /// The connections with members here, sorted: read once for a frame, not once per item.
    pub(crate) fn connections(&self) -> Vec<Arc<str>> {
        // Inserted in order rather than sorted after: a sort's code would weigh more in the
        // browser's download than moving pointers does at thousands of members.
        let mut ids: Vec<Arc<str>> = Vec::new();
        for id in self
            .members
            .members()
            .filter_map(|m| m.connection_id.as_ref())
        {
            if let Err(at) = ids.binary_search(id) {
                ids.insert(at, id.clone());
            }
        }
        ids
    }

    /// Connections with no member left are no longer of interest: after a frame of leaves.
    fn forget_lost_gone(&mut self) {
        if !self.lost.is_empty() {
            let present = self.connections();
            self.lost.retain(|id| present.binary_search(id).is_ok());
        }
    }

    /// Emits a client-level event when a client id came online or went offline.
    fn announce_client(
        &self,
        client_id: &Arc<str>,
        before: bool,
        initial: bool,
        events: &mut Vec<ClientEvent>,
    ) {
        let after = self.members.devices(client_id).next().is_some();
        if before != after {
            events.push(ClientEvent::ClientPresence {
                channel: self.name.clone(),
                client_id: client_id.clone(),
                online: after,
                initial,
            });
        }
    }

    /// Starts a SYNC unless this one is already in progress (RTP18a): the first page of the SYNC
    /// an ATTACHED announced names it, and is not a new one (what was heard live meanwhile
    /// stays).
    pub(crate) fn begin_sync(&mut self, sync_id: Option<&str>) {
        let other = self.sync_id.is_some() && self.sync_id.as_deref() != sync_id;
        if !self.members.sync_in_progress() || other {
            self.members.start_sync();
        }
        self.sync_id = sync_id.map(str::to_owned);
    }

    /// Drops, after an attach, the grace marks the hub did not repeat.
    pub(crate) fn reconcile_lost(&mut self, events: &mut Vec<ClientEvent>) {
        if !core::mem::take(&mut self.reconciling) {
            return;
        }
        let told = core::mem::take(&mut self.told_lost);
        for id in self.lost.clone() {
            if told.binary_search(&id).is_err() {
                self.set_lost(id, false, true, events);
            }
        }
    }

    /// Ends a SYNC: members it did not mention leave (RTP19).
    pub(crate) fn end_sync(&mut self, now: u64, events: &mut Vec<ClientEvent>) {
        self.sync_id = None;
        let gone = self.members.end_sync();
        self.synthesize_leaves(gone, now, true, events);
        self.reconcile_lost(events);
        events.push(ClientEvent::SyncComplete {
            channel: self.name.clone(),
        });
    }

    /// Attached without members: everyone this client held has left (RTP19a).
    pub(crate) fn clear_with_leaves(&mut self, now: u64, events: &mut Vec<ClientEvent>) {
        self.sync_id = None;
        let gone = self.members.clear();
        self.synthesize_leaves(gone, now, true, events);
        events.push(ClientEvent::SyncComplete {
            channel: self.name.clone(),
        });
    }

    /// Members `gone` from the view leave (`told`: with a leave each) and their clients go
    /// offline, each once, after the last of its devices.
    fn synthesize_leaves(
        &mut self,
        gone: Vec<PresenceMessage>,
        now: u64,
        told: bool,
        events: &mut Vec<ClientEvent>,
    ) {
        for (i, member) in gone.iter().enumerate() {
            let Some(client_id) = member.client_id.clone() else {
                continue;
            };
            if told {
                events.push(ClientEvent::Presence {
                    channel: self.name.clone(),
                    message: PresenceMessage {
                        id: None,
                        action: PresenceAction::Leave,
                        timestamp: Some(now as i64),
                        ..member.clone()
                    },
                });
            }
            // Members leave the map sorted by client id: a client's devices are together.
            if gone
                .get(i + 1)
                .is_none_or(|next| next.client_id != member.client_id)
            {
                self.announce_client(&client_id, true, told, events);
            }
        }
        self.forget_lost_gone();
    }

    /// Detached or failed: the view is dropped without member events (RTP5a). Its clients go
    /// offline, so that a listener following who is online holds what `get()` now says.
    pub(crate) fn forget_members(&mut self, events: &mut Vec<ClientEvent>) {
        self.lost.clear();
        self.own.clear();
        self.sync_id = None;
        let gone = self.members.clear();
        self.synthesize_leaves(gone, 0, false, events);
    }

    /// The hub accepted an operation of this connection on one of its members: the member's
    /// state is what re-entry restores (RTP17), even before the operation's echo arrives (it
    /// is not heard while the channel attaches again, and a re-entry with older data would
    /// undo it).
    pub(crate) fn accepted(
        &mut self,
        item: PresenceMessage,
        id: Arc<str>,
        connection_id: Option<Arc<str>>,
    ) {
        let Some(client_id) = item.client_id.clone() else {
            return;
        };
        // A re-entry names the member it restores: when the member has moved on since it was
        // sent (a newer operation's echo), the hub ignored it, and it must not take the
        // newer one's place.
        if item.id.is_some()
            && self
                .own
                .iter()
                .any(|m| m.client_id.as_ref() == Some(&client_id) && m.id != item.id)
        {
            return;
        }
        self.own
            .retain(|m| m.client_id.as_ref() != Some(&client_id));
        if matches!(item.action, PresenceAction::Enter | PresenceAction::Update) {
            self.own.push(PresenceMessage {
                id: Some(id),
                action: PresenceAction::Enter,
                client_id: Some(client_id),
                connection_id,
                ..item
            });
        }
    }

    /// The ENTERs that put this connection's members back (RTP17i), each with the member's id
    /// when it was entered on the current connection (RTP17g1).
    pub(crate) fn reentries(&self, connection_id: Option<&str>) -> Vec<Queued> {
        self.own
            .iter()
            .map(|member| {
                let same_connection =
                    connection_id.is_some() && member.connection_id.as_deref() == connection_id;
                Queued {
                    op: None,
                    item: PresenceMessage {
                        id: if same_connection {
                            member.id.clone()
                        } else {
                            None
                        },
                        action: PresenceAction::Enter,
                        client_id: member.client_id.clone(),
                        connection_id: None,
                        data: member.data.clone(),
                        encoding: member.encoding.clone(),
                        extras: member.extras.clone(),
                        timestamp: None,
                    },
                }
            })
            .collect()
    }
}

/// Puts `id` in the sorted list `ids`, or takes it out; whether that changed the list.
pub(crate) fn mark(ids: &mut Vec<Arc<str>>, id: &Arc<str>, on: bool) -> bool {
    match (ids.binary_search(id), on) {
        (Err(at), true) => ids.insert(at, id.clone()),
        (Ok(at), false) => drop(ids.remove(at)),
        _ => return false,
    }
    true
}
