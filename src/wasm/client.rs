//! `ClientCore`: the client state machine with its WebSocket and its one timer, for the
//! JavaScript API in `js/`.
//!
//! Every call runs the core, sends what it transmits, opens or closes the socket as it asks,
//! re-arms the timer, and only then, with no borrow held, hands the events to JavaScript: a
//! listener may call back into the client.

use alloc::collections::VecDeque;
use alloc::rc::{Rc, Weak};
use core::cell::RefCell;

use js_sys::{Array, Date, Function, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, WebSocket};

use super::convert;
use crate::client::{Client, ClientEvent, ClientOptions};
use crate::prelude::*;
use crate::protocol::{PresenceAction, PresenceMessage};

/// The socket the core asked for, with the handlers it owns. Dropping it detaches the handlers
/// and closes the socket.
struct Socket {
    ws: WebSocket,
    _handlers: [Closure<dyn FnMut(JsValue)>; 3],
    noop: JsValue,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        // A socket closed while connecting still reports an error: something must hear it.
        self.ws.set_onerror(Some(self.noop.unchecked_ref()));
        let _ = self.ws.close();
    }
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &JsValue, delay: u32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(handle: &JsValue);
}

/// A pending `setTimeout`; dropping it cancels it.
struct Timeout {
    handle: JsValue,
    _callback: Closure<dyn FnMut()>,
}

impl Timeout {
    fn new(delay: u32, callback: impl FnMut() + 'static) -> Timeout {
        let callback = Closure::<dyn FnMut()>::new(callback);
        let handle = set_timeout(callback.as_ref(), delay);
        Timeout {
            handle,
            _callback: callback,
        }
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        clear_timeout(&self.handle);
    }
}

struct Driver {
    core: Client,
    socket: Option<Socket>,
    timer: Option<(u64, Timeout)>,
    websocket: Function,
    on_event: Function,
    noop: JsValue,
    me: Weak<RefCell<Driver>>,
    /// Events waiting to be handed to JavaScript, and whether that is under way.
    outbox: VecDeque<ClientEvent>,
    dispatching: bool,
}

impl Driver {
    /// Carries out the core's outputs: transmits, socket requests and the timer. Events for
    /// JavaScript go to the outbox.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(message) = self.core.poll_transmit() {
                progressed = true;
                if let (Some(socket), Some(text)) =
                    (&self.socket, convert::message_to_json(&message))
                {
                    let _ = socket.ws.send_with_str(&text);
                }
            }
            for event in self.core.take_events() {
                progressed = true;
                match event {
                    ClientEvent::OpenTransport { url } => self.open(&url),
                    ClientEvent::CloseTransport => self.socket = None,
                    other => self.outbox.push_back(other),
                }
            }
            if !progressed {
                break;
            }
        }
        self.arm();
    }

    fn open(&mut self, url: &str) {
        self.socket = None;
        let ws = Reflect::construct(&self.websocket, &Array::of1(&JsValue::from_str(url)))
            .map(JsCast::unchecked_into::<WebSocket>);
        let Ok(ws) = ws else {
            // The URL or the constructor is unusable: report a transport that closed at once.
            let now = Date::now() as u64;
            self.core.handle_transport_closed(now);
            return;
        };
        ws.set_binary_type(BinaryType::Arraybuffer);
        let me = self.me.clone();
        let on_open = Closure::<dyn FnMut(JsValue)>::new(move |_| {
            drive(&me, |core, now| core.handle_transport_open(now));
        });
        let me = self.me.clone();
        let on_message = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            let data = Reflect::get(&event, &JsValue::from_str("data")).unwrap_or_default();
            let Some(text) = data.as_string() else {
                return;
            };
            let Some(message) = js_sys::JSON::parse(&text)
                .ok()
                .and_then(|v| convert::message_from_js(&v))
            else {
                return;
            };
            drive(&me, move |core, now| core.handle_message(now, message));
        });
        let me = self.me.clone();
        let on_close = Closure::<dyn FnMut(JsValue)>::new(move |_| {
            drive(&me, |core, now| core.handle_transport_closed(now));
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        ws.set_onerror(Some(self.noop.unchecked_ref()));
        self.socket = Some(Socket {
            ws,
            _handlers: [on_open, on_message, on_close],
            noop: self.noop.clone(),
        });
    }

    /// Re-arms the one timer when the core's next deadline changed.
    fn arm(&mut self) {
        let next = self.core.poll_timeout();
        if self.timer.as_ref().map(|(d, _)| *d) == next {
            return;
        }
        self.timer = next.map(|deadline| {
            let delay = deadline.saturating_sub(Date::now() as u64).min(0x7fff_ffff) as u32;
            let me = self.me.clone();
            let timeout = Timeout::new(delay, move || {
                if let Some(driver) = me.upgrade() {
                    driver.borrow_mut().timer = None;
                }
                drive(&me, |core, now| core.handle_timeout(now));
            });
            (deadline, timeout)
        });
    }
}

/// Runs `f` on the core, carries out the outputs, then hands the events to JavaScript with no
/// borrow held.
fn drive<R>(me: &Weak<RefCell<Driver>>, f: impl FnOnce(&mut Client, u64) -> R) -> Option<R> {
    let mut f = Some(f);
    let mut result = None;
    // One copy of the driving loop for every caller: the closure is called through `dyn`.
    drive_dyn(me, &mut |core, now| {
        if let Some(f) = f.take() {
            result = Some(f(core, now));
        }
    });
    result
}

fn drive_dyn(me: &Weak<RefCell<Driver>>, f: &mut dyn FnMut(&mut Client, u64)) {
    let Some(driver) = me.upgrade() else {
        return;
    };
    {
        let Ok(mut d) = driver.try_borrow_mut() else {
            return;
        };
        f(&mut d.core, Date::now() as u64);
        d.pump();
        if d.dispatching {
            // An outer call is handing out events; it will hand these out too, in order.
            return;
        }
        d.dispatching = true;
    }
    loop {
        let next = {
            let mut d = driver.borrow_mut();
            let next = d.outbox.pop_front();
            if next.is_none() {
                d.dispatching = false;
            }
            next.map(|event| (event, d.on_event.clone()))
        };
        let Some((event, on_event)) = next else {
            break;
        };
        let _ = on_event.apply(&JsValue::NULL, &event_args(&event));
    }
}

/// `[kind, ...]` for the JavaScript side's `onEvent`.
fn event_args(event: &ClientEvent) -> Array {
    let reason = |r: &Option<crate::protocol::ErrorInfo>| {
        r.as_ref().map_or(JsValue::NULL, convert::error_to_js)
    };
    let args = Array::new();
    match event {
        ClientEvent::ConnectionState {
            current,
            previous,
            reason: why,
        } => {
            args.push(&0.into());
            args.push(&current.name().into());
            args.push(&previous.name().into());
            args.push(&reason(why));
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
            args.push(&convert::presence_to_js(message));
        }
        ClientEvent::Settled { op, result } => {
            args.push(&3.into());
            args.push(&op.0.into());
            args.push(
                &result
                    .as_ref()
                    .err()
                    .map_or(JsValue::NULL, convert::error_to_js),
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
        } => {
            args.push(&7.into());
            args.push(&JsValue::from_str(channel));
            args.push(&JsValue::from_str(connection_id));
            args.push(&(*lost).into());
        }
        ClientEvent::OpenTransport { .. } | ClientEvent::CloseTransport => {}
    }
    args
}

/// The client for the JavaScript API: one connection, its channels and their presence.
#[wasm_bindgen(js_name = ClientCore)]
pub struct WasmClient {
    driver: Rc<RefCell<Driver>>,
}

fn option(options: &JsValue, key: &str) -> Option<u64> {
    Reflect::get(options, &JsValue::from_str(key))
        .ok()?
        .as_f64()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(|n| n as u64)
}

#[wasm_bindgen(js_class = ClientCore)]
impl WasmClient {
    /// `options`: `{ url, clientId, realtimeRequestTimeout, disconnectedRetryTimeout,
    /// suspendedRetryTimeout, channelRetryTimeout, seed }`; `websocket`: the WebSocket
    /// constructor to use; `onEvent(kind, ...)`: where events go.
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue, websocket: Function, on_event: Function) -> WasmClient {
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
        o.renewable_auth = Reflect::get(&options, &JsValue::from_str("renewableAuth"))
            .ok()
            .is_some_and(|v| v.is_truthy());
        let noop = Closure::<dyn FnMut(JsValue)>::new(|_| {}).into_js_value();
        let driver = Rc::new_cyclic(|me| {
            RefCell::new(Driver {
                core: Client::new(core_options),
                socket: None,
                timer: None,
                websocket,
                on_event,
                noop,
                me: me.clone(),
                outbox: VecDeque::new(),
                dispatching: false,
            })
        });
        WasmClient { driver }
    }

    fn run<R: Default>(&self, f: impl FnOnce(&mut Client, u64) -> R) -> R {
        drive(&Rc::downgrade(&self.driver), f).unwrap_or_default()
    }

    fn read<R: Default>(&self, f: impl FnOnce(&Client) -> R) -> R {
        self.driver
            .try_borrow()
            .map(|d| f(&d.core))
            .unwrap_or_default()
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

    /// Drops the transport without closing, and stays offline for `offline_for` milliseconds
    /// (or until `connect()` when not given).
    #[wasm_bindgen(js_name = simulateDrop)]
    pub fn simulate_drop(&self, offline_for: Option<f64>) {
        let offline_for = offline_for
            .filter(|d| d.is_finite() && *d >= 0.0)
            .map(|d| d as u64);
        self.run(|c, now| c.simulate_drop(now, offline_for));
    }

    /// Attaches a channel; returns the operation id.
    pub fn attach(&self, channel: &str) -> u32 {
        self.run(|c, now| c.attach(now, channel).0)
    }

    /// Detaches a channel; returns the operation id.
    pub fn detach(&self, channel: &str) -> u32 {
        self.run(|c, now| c.detach(now, channel).0)
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
                    let js = convert::presence_to_js(m);
                    if m.connection_id.as_ref().is_some_and(|id| lost.contains(id)) {
                        let _ =
                            Reflect::set(&js, &JsValue::from_str("connectionLost"), &JsValue::TRUE);
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

    /// A channel's state by name.
    #[wasm_bindgen(js_name = channelState)]
    pub fn channel_state(&self, channel: &str) -> String {
        self.read(|c| c.channel_state(channel).name().to_owned())
    }

    /// The connection's state by name.
    #[wasm_bindgen(getter)]
    pub fn state(&self) -> String {
        self.read(|c| c.state().name().to_owned())
    }

    /// The connection id, once connected.
    #[wasm_bindgen(getter, js_name = connectionId)]
    pub fn connection_id(&self) -> Option<String> {
        self.read(|c| c.connection_id().map(|id| String::from(&**id)))
    }

    /// The key that resumes the connection.
    #[wasm_bindgen(getter, js_name = connectionKey)]
    pub fn connection_key(&self) -> Option<String> {
        self.read(|c| c.connection_key().map(|k| String::from(&**k)))
    }

    /// The connection's identity.
    #[wasm_bindgen(getter, js_name = clientId)]
    pub fn client_id(&self) -> Option<String> {
        self.read(|c| c.client_id().map(|id| String::from(&**id)))
    }

    /// Closes the socket and cancels the timer at once (the client is being thrown away).
    pub fn dispose(&self) {
        if let Ok(mut d) = self.driver.try_borrow_mut() {
            d.socket = None;
            d.timer = None;
        }
    }
}
