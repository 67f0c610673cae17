//! Frames held back from a connection that is over its budget for control frames.
//!
//! A client waits for the answer to an `ATTACH`, a `DETACH` or a ping, so the hub never drops
//! one in silence. Beyond its burst and a second's credit, such a frame is held, with every
//! frame after it (their order is the client's), and read again as the budget fills: a client
//! that awaits each answer (an agent sweeping rooms one after another, with Ably's client,
//! which does not pace what it sends) is slowed to the rate. Only a client that keeps sending
//! without waiting fills what may be held, and is closed (42920).

use std::collections::VecDeque;

use super::{Format, Hub, Slot, TransportId};
use crate::protocol::{codes, ErrorInfo};

/// The slot the release of held frames uses in the timer set.
pub(super) const HELD: Slot = Slot::MAX - 1;

/// The most bytes of held frames the hub keeps for all its connections together.
const MAX_HELD_BYTES: usize = 16 * 1024 * 1024;

/// Why a connection that sends too much without waiting is closed.
fn flooding(rate: u32) -> ErrorInfo {
    ErrorInfo::new(
        codes::RATE_LIMITED_FATAL,
        429,
        format!(
            "more than {rate} messages per second, sent without waiting for their answers: closing"
        ),
    )
}

/// The frames one connection has waiting, as they came.
#[derive(Debug, Default)]
pub(super) struct HeldFrames {
    frames: VecDeque<(Format, Box<[u8]>)>,
    bytes: usize,
    /// The transport they came on: only its connection's while it has it.
    transport: Option<TransportId>,
}

impl HeldFrames {
    /// The bytes of the frames.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The transport they came on.
    pub(super) fn transport(&self) -> Option<TransportId> {
        self.transport
    }
}

impl Hub {
    /// Whether frames of this connection wait (and so must any that comes after them). Frames
    /// read again (`release`) go straight to `read_frame`, not through this.
    pub(super) fn holding(&self, slot: Slot) -> bool {
        self.held.contains_key(&slot)
    }

    /// Holds a frame behind those already waiting, within a second's worth of frames and a
    /// frame's size at once (beyond, the connection is flooding: closed, 42920).
    pub(super) fn hold(&mut self, slot: Slot, format: Format, bytes: &[u8]) {
        let rate = self.control_rate();
        let (count, held) = self
            .held
            .get(&slot)
            .map_or((0, 0), |q| (q.frames.len(), q.bytes));
        // (With no rate at all, nothing held would ever be read.)
        let mine = u32::try_from(count).is_ok_and(|count| count < rate)
            && (held == 0 || held + bytes.len() <= self.config.max_frame_size());
        if mine {
            self.make_held_room(slot, held + bytes.len());
        }
        if !mine || self.held_bytes + bytes.len() > MAX_HELD_BYTES {
            return self.fail(slot, flooding(rate));
        }
        let first = count == 0;
        let transport = self.conn(slot).and_then(|c| c.transport);
        let queue = self.held.entry(slot).or_default();
        queue.transport = transport;
        queue.frames.push_back((format, bytes.into()));
        queue.bytes += bytes.len();
        self.held_bytes += bytes.len();
        if first {
            self.arm_held();
        }
    }

    /// Makes room for `slot` to hold `bytes` in all, past the hub's bytes for held frames, by
    /// closing the connections that hold more than it would, the most first: those that send
    /// the most without waiting go, not a client that awaits its answers after them.
    fn make_held_room(&mut self, slot: Slot, bytes: usize) {
        let adding = bytes - self.held.get(&slot).map_or(0, HeldFrames::bytes);
        while self.held_bytes + adding > MAX_HELD_BYTES {
            let Some(hog) = self
                .held
                .iter()
                .filter(|&(&other, queue)| other != slot && queue.bytes > bytes)
                .max_by_key(|(_, queue)| queue.bytes)
                .map(|(&other, _)| other)
            else {
                return;
            };
            self.fail(hog, flooding(self.control_rate()));
        }
    }

    /// Forgets what a connection had waiting: it lost its transport (a client sends again, on
    /// the next, what was not answered) or it is gone.
    pub(super) fn forget_held(&mut self, slot: Slot) {
        if let Some(queue) = self.held.remove(&slot) {
            self.held_bytes -= queue.bytes;
            self.arm_held();
        }
    }

    /// The timer fired: the held frames of each connection whose budget has room are read as
    /// far as it allows (those of others are not read again only to be held again).
    pub(super) fn release_held(&mut self) {
        let rate = self.control_rate();
        let slots: Vec<Slot> = self
            .held
            .keys()
            .copied()
            .filter(|&slot| {
                self.conn(slot)
                    .is_some_and(|conn| conn.control.charge_at(rate) <= self.now)
            })
            .collect();
        for slot in slots {
            self.release(slot);
        }
        self.arm_held();
    }

    fn release(&mut self, slot: Slot) {
        loop {
            let Some(queue) = self.held.get_mut(&slot) else {
                return;
            };
            let Some((format, bytes)) = queue.frames.pop_front() else {
                self.held.remove(&slot);
                return;
            };
            queue.bytes -= bytes.len();
            self.held_bytes -= bytes.len();
            let again = self.read_frame(slot, format, &bytes);
            if again {
                // Over budget still: first in line again.
                if let Some(queue) = self.held.get_mut(&slot) {
                    queue.bytes += bytes.len();
                    self.held_bytes += bytes.len();
                    queue.frames.push_front((format, bytes));
                }
                return;
            }
        }
    }

    /// Sets the timer for when the first connection with frames waiting can take one more.
    fn arm_held(&mut self) {
        if let Some(at) = self.held_at.take() {
            self.timers.remove(&(at, HELD));
        }
        let rate = self.control_rate();
        let at = self
            .held
            .keys()
            .filter_map(|&slot| self.conn(slot))
            .map(|conn| conn.control.charge_at(rate))
            .min();
        if let Some(at) = at {
            let at = at.max(self.now);
            self.held_at = Some(at);
            self.timers.insert((at, HELD));
        }
    }
}
