//! `ClientCore`: the client state machine for the JavaScript API in `js/`, sans I/O as the
//! core is: JavaScript owns the WebSocket and the one timer and carries out what the core asks
//! (see [`WasmClient`]). Keeping sockets, timers and closures out of the Wasm keeps it small.

use alloc::collections::VecDeque;
use core::cell::RefCell;

use js_sys::{Array, Date, Function, Reflect};
use wasm_bindgen::prelude::*;

use super::convert::{self, Keys};
use crate::client::{Client, ClientEvent, ClientOptions};
use crate::prelude::*;
use crate::protocol::{PresenceAction, PresenceMessage};

/// The core and what it has said that JavaScript has not heard yet.
struct Driver {
    core: Client,
    on_event: Function,
    /// The deadline the host's timer is set for.
    armed: Option<u64>,
    /// Outputs waiting to be handed to JavaScript, in order, and whether that is under way.
    outbox: VecDeque<Array>,
    dispatching: bool,
    /// How far the host's clock has gone back, in all: the core is given a time that never
    /// goes back, and its timer set from that time (after a step back of the clock, a timer
    /// set from it would wait that much longer: heartbeats and retries held up).
    behind: u64,
    latest: u64,
}

impl Driver {
    /// Drains the core's outputs into the outbox, in order: transmits, events, then the timer.
    fn pump(&mut self, now: u64, keys: &Keys) {
        loop {
            let mut progressed = false;
            while let Some(message) = self.core.poll_transmit() {
                progressed = true;
                if let Some(text) = convert::message_to_json(keys, &message) {
                    self.outbox
                        .push_back(Array::of2(&SEND.into(), &text.into()));
                }
            }
            for event in self.core.take_events() {
                progressed = true;
                self.outbox.push_back(event_args(keys, &event));
            }
            if !progressed {
                break;
            }
        }
        let next = self.core.poll_timeout();
        if next != self.armed {
            self.armed = next;
            let delay = next.map_or(-1.0, |d| d.saturating_sub(now).min(0x7fff_ffff) as f64);
            self.outbox
                .push_back(Array::of2(&TIMER.into(), &delay.into()));
        }
    }
}

// The kinds of output beyond the core's events (see `event_args`).
const OPEN: u8 = 8;
const CLOSE: u8 = 9;
const SEND: u8 = 10;
const TIMER: u8 = 11;

/// `[kind, ...]` for the JavaScript side's `onEvent`.
fn event_args(keys: &Keys, event: &ClientEvent) -> Array {
    let reason = |r: &Option<crate::protocol::ErrorInfo>| {
        r.as_ref()
            .map_or(JsValue::NULL, |e| convert::error_to_js(keys, e))
    };
    let args = Array::new();
    match event {
        ClientEvent::ConnectionState {
            current,
            previous,
            reason: why,
            retry_in,
        } => {
            args.push(&0.into());
            args.push(&current.name().into());
            args.push(&previous.name().into());
            args.push(&reason(why));
            if let Some(ms) = retry_in {
                args.push(&(*ms as f64).into());
            }
        }
        ClientEvent::ChannelState {
            channel,
            current,
            previous,
            reason: why,
            resumed,
        } => {
            args.push(&1.into());
            args.push(&JsValue::from_str(channel));
            args.push(&current.name().into());
            args.push(&previous.name().into());
            args.push(&reason(why));
            args.push(&(*resumed).into());
        }
        ClientEvent::Presence { channel, message } => {
            args.push(&2.into());
            args.push(&JsValue::from_str(channel));
            args.push(&convert::presence_to_js(keys, message));
        }
        ClientEvent::Settled { op, result } => {
            args.push(&3.into());
            args.push(&op.0.into());
            args.push(
                &result
                    .as_ref()
                    .err()
                    .map_or(JsValue::NULL, |e| convert::error_to_js(keys, e)),
            );
        }
        ClientEvent::SyncComplete { channel } => {
            args.push(&4.into());
            args.push(&JsValue::from_str(channel));
        }
        ClientEvent::ClientPresence {
            channel,
            client_id,
            online,
            initial,
        } => {
            args.push(&5.into());
            args.push(&JsValue::from_str(channel));
            args.push(&JsValue::from_str(client_id));
            args.push(&(*online).into());
            args.push(&(*initial).into());
        }
        ClientEvent::TokenNeeded => {
            args.push(&6.into());
        }
        ClientEvent::ConnectionStatus {
            channel,
            connection_id,
            lost,
            initial,
        } => {
            args.push(&7.into());
            args.push(&JsValue::from_str(channel));
            args.push(&JsValue::from_str(connection_id));
            args.push(&(*lost).into());
            args.push(&(*initial).into());
        }
        ClientEvent::OpenTransport { url } => {
            args.push(&OPEN.into());
            args.push(&JsValue::from_str(url));
        }
        ClientEvent::CloseTransport => {
            args.push(&CLOSE.into());
        }
    }
    args
}

/// The client for the JavaScript API: one connection, its channels and their presence.
///
/// It does no I/O. Every call runs the core, then hands its outputs to `onEvent(kind, ...)`
/// in order, with no borrow held (a listener may call back in): the core's events (0–7), and
/// what the host must do: open a WebSocket (8, url), close it (9), send a text frame (10, text),
/// and set its one timer (11, delay in ms, or -1 for none) and call `timeout()` when it fires.
#[wasm_bindgen(js_name = ClientCore)]
pub struct WasmClient {
    driver: RefCell<Driver>,
    keys: Keys,
}

fn option(options: &JsValue, key: &str) -> Option<u64> {
    Reflect::get(options, &JsValue::from_str(key))
        .ok()?
        .as_f64()
        .filter(|n| n.is_finite() && *n >= 0.0)
        // At most about 24 days (a timer's limit), so that deadlines never wrap.
        .map(|n| n.min(2_147_483_647.0) as u64)
}

#[wasm_bindgen(js_class = ClientCore)]
impl WasmClient {
    /// `options`: `{ url, clientId, realtimeRequestTimeout, disconnectedRetryTimeout,
    /// suspendedRetryTimeout, channelRetryTimeout, seed, renewableAuth }`; `onEvent(kind, ...)`:
    /// where outputs go.
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue, on_event: Function) -> WasmClient {
        let url = Reflect::get(&options, &JsValue::from_str("url"))
            .ok()
            .and_then(|u| u.as_string())
            .unwrap_or_default();
        let client_id = Reflect::get(&options, &JsValue::from_str("clientId"))
            .ok()
            .and_then(|c| c.as_string());
        let mut core_options = ClientOptions::new(url, client_id.as_deref());
        let o = &mut core_options;
        o.realtime_request_timeout =
            option(&options, "realtimeRequestTimeout").unwrap_or(o.realtime_request_timeout);
        o.disconnected_retry_timeout =
            option(&options, "disconnectedRetryTimeout").unwrap_or(o.disconnected_retry_timeout);
        o.suspended_retry_timeout =
            option(&options, "suspendedRetryTimeout").unwrap_or(o.suspended_retry_timeout);
        o.channel_retry_timeout =
            option(&options, "channelRetryTimeout").unwrap_or(o.channel_retry_timeout);
        o.seed = option(&options, "seed").unwrap_or(o.seed);
        o.remain_present_for = option(&options, "remainPresentFor").unwrap_or(o.remain_present_for);
        o.renewable_auth = Reflect::get(&options, &JsValue::from_str("renewableAuth"))
            .ok()
            .is_some_and(|v| v.is_truthy());
        WasmClient {
            driver: RefCell::new(Driver {
                core: Client::new(core_options),
                on_event,
                armed: None,
                outbox: VecDeque::new(),
                dispatching: false,
                behind: 0,
                latest: 0,
            }),
            keys: Keys::new(),
        }
    }

    fn run<R: Default>(&self, f: impl FnOnce(&mut Client, u64) -> R) -> R {
        let mut f = Some(f);
        let mut result = R::default();
        // One copy of the driving loop for every caller: the closure is called through `dyn`.
        self.drive(&mut |core, now| {
            if let Some(f) = f.take() {
                result = f(core, now);
            }
        });
        result
    }

    /// Runs `f` on the core, then hands the outputs to JavaScript with no borrow held.
    fn drive(&self, f: &mut dyn FnMut(&mut Client, u64)) {
        {
            let Ok(mut d) = self.driver.try_borrow_mut() else {
                return;
            };
            let wall = Date::now() as u64;
            let now = wall.saturating_add(d.behind).max(d.latest);
            d.behind = now - wall;
            d.latest = now;
            f(&mut d.core, now);
            d.pump(now, &self.keys);
            if d.dispatching {
                // An outer call is handing out outputs; it will hand these out too, in order.
                return;
            }
            d.dispatching = true;
        }
        loop {
            let next = {
                let Ok(mut d) = self.driver.try_borrow_mut() else {
                    return;
                };
                let next = d.outbox.pop_front();
                if next.is_none() {
                    d.dispatching = false;
                }
                next.map(|args| (args, d.on_event.clone()))
            };
            let Some((args, on_event)) = next else {
                break;
            };
            let _ = on_event.apply(&JsValue::NULL, &args);
        }
    }

    fn read<R: Default>(&self, f: impl FnOnce(&Client) -> R) -> R {
        self.driver
            .try_borrow()
            .map(|d| f(&d.core))
            .unwrap_or_default()
    }

    /// The WebSocket the core asked for is open.
    #[wasm_bindgen(js_name = transportOpened)]
    pub fn transport_opened(&self) {
        self.run(|c, now| c.handle_transport_open(now));
    }

    /// A protocol message arrived on it, parsed by `JSON.parse`; anything else is ignored.
    #[wasm_bindgen(js_name = transportMessage)]
    pub fn transport_message(&self, message: JsValue) {
        if let Some(message) = convert::message_from_js(&self.keys, &message) {
            self.run(move |c, now| c.handle_message(now, message));
        }
    }

    /// It closed, or could not be opened.
    #[wasm_bindgen(js_name = transportClosed)]
    pub fn transport_closed(&self) {
        self.run(|c, now| c.handle_transport_closed(now));
    }

    /// The timer fired. Early or repeated calls change nothing in the core, and the timer is
    /// asked for again (11) whenever a deadline is still pending, so that a timer that fired a
    /// little early is not the last one.
    pub fn timeout(&self) {
        if let Ok(mut d) = self.driver.try_borrow_mut() {
            d.armed = None;
        }
        self.run(|c, now| c.handle_timeout(now));
    }

    /// Connects, or reconnects now.
    pub fn connect(&self) {
        self.run(|c, now| c.connect(now));
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.run(|c, now| c.close(now));
    }

    /// Uses a new token (`expires` in ms since the epoch, when known): at once by `AUTH` when
    /// connected, and for every later connection.
    #[wasm_bindgen(js_name = setToken)]
    pub fn set_token(&self, token: &str, expires: Option<f64>) {
        let expires = expires
            .filter(|e| e.is_finite() && *e > 0.0)
            .map(|e| e as u64);
        self.run(|c, now| c.set_token(now, token, expires));
    }

    /// Takes over an earlier client's connection from its recovery key's `connectionKey` and
    /// `msgSerial`, if given before the client first connects.
    pub fn recover(&self, connection_key: &str, msg_serial: f64) {
        // Nothing to hand out: it only changes how the client will connect.
        if let Ok(mut d) = self.driver.try_borrow_mut() {
            d.core.recover(connection_key, msg_serial as i64);
        }
    }

    /// The host could not get a token: a client waiting for one to connect is disconnected
    /// (80019; the host knows why, and says so), and asks again when it next tries. Returns
    /// whether it was waiting for one.
    #[wasm_bindgen(js_name = tokenFailed)]
    pub fn token_failed(&self) -> bool {
        let reason = crate::protocol::ErrorInfo::new(
            crate::protocol::codes::AUTH_FAILED,
            401,
            "unable to get a token",
        );
        self.run(|c, now| c.token_failed(now, reason))
    }

    /// Drops the transport without closing, and stays offline for `offline_for` milliseconds
    /// (or until `connect()` when not given).
    #[wasm_bindgen(js_name = simulateDrop)]
    pub fn simulate_drop(&self, offline_for: Option<f64>) {
        let offline_for = offline_for
            .filter(|d| d.is_finite() && *d >= 0.0)
            .map(|d| d as u64);
        self.run(|c, now| c.simulate_drop(now, offline_for));
    }

    /// Attaches a channel with modes (Ably's flags; 0: all); returns the operation id.
    pub fn attach(&self, channel: &str, modes: u32) -> u32 {
        self.run(|c, now| c.attach_with(now, channel, modes).0)
    }

    /// Detaches a channel; returns the operation id.
    pub fn detach(&self, channel: &str) -> u32 {
        self.run(|c, now| c.detach(now, channel).0)
    }

    /// Forgets a channel the app released, once it holds nothing.
    pub fn release(&self, channel: &str) {
        self.run(|c, _| c.release(channel));
    }

    /// A presence operation (action 2 enter, 3 leave, 4 update) with wire-encoded data;
    /// returns the operation id.
    pub fn presence(
        &self,
        channel: &str,
        action: u8,
        client_id: Option<String>,
        data: JsValue,
        encoding: Option<String>,
        extras: JsValue,
    ) -> u32 {
        let action =
            PresenceAction::from_number(u64::from(action)).unwrap_or(PresenceAction::Absent);
        let item = PresenceMessage {
            client_id: client_id.map(Into::into),
            data: convert::data_from_js(&data),
            encoding: encoding.map(Into::into),
            extras: convert::extras_from_js(&extras),
            ..PresenceMessage::new(action)
        };
        self.run(|c, now| c.presence(now, channel, item).0)
    }

    /// The members of a channel as this client sees them, or only those with `client_id` (a
    /// lookup, not a scan); members whose connection is in its grace window carry
    /// `connectionLost: true`.
    pub fn members(&self, channel: &str, client_id: Option<String>) -> Array {
        self.read(|c| {
            let lost = c.lost_connections(channel);
            let members = match &client_id {
                Some(id) => c.devices(channel, id),
                None => c.members(channel),
            };
            members
                .into_iter()
                .map(|m| {
                    let js = convert::presence_to_js(&self.keys, m);
                    if m.connection_id
                        .as_ref()
                        .is_some_and(|id| lost.binary_search(id).is_ok())
                    {
                        convert::set(
                            js.unchecked_ref(),
                            &self.keys,
                            convert::CONNECTION_LOST,
                            &JsValue::TRUE,
                        );
                    }
                    js
                })
                .collect()
        })
    }

    /// Whether the channel is attached and its SYNC complete.
    #[wasm_bindgen(js_name = syncComplete)]
    pub fn sync_complete(&self, channel: &str) -> bool {
        self.read(|c| c.sync_complete(channel))
    }

    /// What the connection is known by: 0 its id, once connected; 1 who it is, once connected
    /// (the hub's word: a token may bind it), or the clientId it was made with; 2 the key that
    /// resumes it; 3 the `channelSerial` of `channel`'s last ATTACHED, while it is attached.
    /// One export for them all: each string getter costs the Wasm a shim.
    pub fn text(&self, which: u8, channel: &str) -> Option<String> {
        self.read(|c| {
            match which {
                0 => c.connection_id(),
                1 => c.client_id(),
                2 => c.connection_key(),
                _ => c.attach_serial(channel),
            }
            .map(|s| String::from(&**s))
        })
    }

    /// The serial of the next presence message, for a recovery key.
    #[wasm_bindgen(getter, js_name = msgSerial)]
    pub fn msg_serial(&self) -> f64 {
        self.read(|c| c.msg_serial() as f64)
    }
}
