//! Tests that run in headless Chromium (`wasm-pack test --headless --chrome`): the cores
//! compiled to Wasm behave as they do natively.

#![cfg(target_arch = "wasm32")]

mod common;

use common::{summary, Sim};
use rollcall::hub::HubConfig;
use rollcall::protocol::PresenceAction;
use serde_json::json;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn the_hub_core_keeps_a_dropped_member_for_its_grace_window_in_the_browser() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", "room");
    let (alice, _) = sim.join("clientId=alice&remainPresentFor=1000", "room");
    sim.presence(alice, "room", 0, json!([{"action": 2, "data": "d"}]));
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Enter, "alice".to_owned())]
    );
    sim.drop_transport(alice);
    sim.advance(999);
    assert!(sim.events(watcher).is_empty());
    sim.advance(1);
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Leave, "alice".to_owned())]
    );
}

/// The client binding against a real hub over a real WebSocket, in Chromium. The hub is started
/// by `scripts/test`; its address is fixed when the test is compiled.
mod live {
    use std::cell::RefCell;
    use std::rc::{Rc, Weak};

    use gloo_timers::callback::Timeout;
    use gloo_timers::future::TimeoutFuture;
    use js_sys::{Array, Object, Reflect};
    use rollcall::wasm::WasmClient;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen_test::wasm_bindgen_test;
    use web_sys::WebSocket;

    const HUB: &str = match option_env!("ROLLCALL_TEST_HUB") {
        Some(url) => url,
        None => "ws://127.0.0.1:18181",
    };

    type Handler = Closure<dyn FnMut(JsValue)>;
    type Listener = Closure<dyn FnMut(JsValue, JsValue, JsValue, JsValue, JsValue, JsValue)>;

    /// A client with what a host gives it, as `js/realtime.js` does: a WebSocket and a timer,
    /// opened, used and set as its outputs ask.
    struct Host {
        core: WasmClient,
        socket: RefCell<Option<(WebSocket, [Handler; 3])>>,
        timer: RefCell<Option<Timeout>>,
        _listener: Listener,
    }

    impl Host {
        fn output(self: &Rc<Self>, kind: f64, arg: &JsValue) {
            match kind as u8 {
                8 => {
                    self.drop_socket();
                    let ws = WebSocket::new(&arg.as_string().unwrap()).unwrap();
                    let me = Rc::downgrade(self);
                    let on = |f: fn(&Host, JsValue)| -> Handler {
                        let me: Weak<Host> = me.clone();
                        Closure::new(move |event| {
                            if let Some(host) = me.upgrade() {
                                f(&host, event);
                            }
                        })
                    };
                    let open = on(|h, _| h.core.transport_opened());
                    let message = on(|h, event| {
                        let data = Reflect::get(&event, &"data".into()).unwrap();
                        if let Some(text) = data.as_string() {
                            h.core
                                .transport_message(js_sys::JSON::parse(&text).unwrap());
                        }
                    });
                    let close = on(|h, _| h.core.transport_closed());
                    ws.set_onopen(Some(open.as_ref().unchecked_ref()));
                    ws.set_onmessage(Some(message.as_ref().unchecked_ref()));
                    ws.set_onclose(Some(close.as_ref().unchecked_ref()));
                    *self.socket.borrow_mut() = Some((ws, [open, message, close]));
                }
                9 => self.drop_socket(),
                10 => {
                    if let Some((ws, _)) = self.socket.borrow().as_ref() {
                        ws.send_with_str(&arg.as_string().unwrap()).unwrap();
                    }
                }
                11 => {
                    let delay = arg.as_f64().unwrap();
                    let me = Rc::downgrade(self);
                    *self.timer.borrow_mut() = (delay >= 0.0).then(|| {
                        Timeout::new(delay as u32, move || {
                            if let Some(host) = me.upgrade() {
                                host.core.timeout();
                            }
                        })
                    });
                }
                _ => {}
            }
        }

        fn drop_socket(&self) {
            if let Some((ws, _)) = self.socket.borrow_mut().take() {
                ws.set_onopen(None);
                ws.set_onmessage(None);
                ws.set_onclose(None);
                let _ = ws.close();
            }
        }
    }

    /// Starts a client; `on_event(core, [kind, ...args])` hears every output first.
    fn host(
        client_id: &str,
        params: &str,
        mut on_event: impl FnMut(&WasmClient, &Array) + 'static,
    ) -> Rc<Host> {
        let options = Object::new();
        let url = format!("{HUB}/?clientId={client_id}&format=json&heartbeats=true&v=6&{params}");
        Reflect::set(&options, &"url".into(), &url.into()).unwrap();
        Reflect::set(&options, &"clientId".into(), &client_id.into()).unwrap();
        let host = Rc::new_cyclic(|me: &Weak<Host>| {
            let me = me.clone();
            let listener = Listener::new(move |a: JsValue, b: JsValue, c, d, e, f| {
                let Some(host) = me.upgrade() else {
                    return;
                };
                let kind = a.as_f64().unwrap();
                let args = Array::new();
                for v in [a, b.clone(), c, d, e, f] {
                    args.push(&v);
                }
                on_event(&host.core, &args);
                host.output(kind, &b);
            });
            Host {
                core: WasmClient::new(options.into(), listener.as_ref().clone().into()),
                socket: RefCell::default(),
                timer: RefCell::default(),
                _listener: listener,
            }
        });
        host.core.connect();
        host
    }

    /// Everything a client reported: `[kind, ...args]`.
    type Log = Rc<RefCell<Vec<Array>>>;

    struct TestClient {
        host: Rc<Host>,
        log: Log,
    }

    fn client(client_id: &str, params: &str) -> TestClient {
        let log: Log = Rc::default();
        let sink = log.clone();
        let host = host(client_id, params, move |_, args| {
            sink.borrow_mut().push(args.clone())
        });
        TestClient { host, log }
    }

    impl TestClient {
        fn core(&self) -> &WasmClient {
            &self.host.core
        }

        /// Presence events seen: (action, clientId).
        fn presence(&self) -> Vec<(String, String)> {
            self.log
                .borrow()
                .iter()
                .filter(|e| e.get(0).as_f64() == Some(2.0))
                .map(|e| {
                    let m = e.get(2);
                    let get = |k: &str| {
                        Reflect::get(&m, &k.into())
                            .unwrap()
                            .as_string()
                            .unwrap_or_default()
                    };
                    (get("action"), get("clientId"))
                })
                .collect()
        }

        /// The connection's state, as its last state event said.
        fn state(&self) -> String {
            self.log
                .borrow()
                .iter()
                .rev()
                .find(|e| e.get(0).as_f64() == Some(0.0))
                .and_then(|e| e.get(1).as_string())
                .unwrap_or_default()
        }

        fn settled(&self, op: u32) -> Option<bool> {
            self.log
                .borrow()
                .iter()
                .find(|e| {
                    e.get(0).as_f64() == Some(3.0) && e.get(1).as_f64() == Some(f64::from(op))
                })
                .map(|e| e.get(2).is_null())
        }
    }

    async fn until(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            TimeoutFuture::new(20).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn now() -> f64 {
        js_sys::Date::now()
    }

    #[wasm_bindgen_test]
    async fn enter_is_seen_leave_is_seen_and_a_drop_leaves_after_the_grace_window() {
        let room = format!("web-{}", now());
        let alice = client("alice", "remainPresentFor=1000");
        until("alice connected", || alice.state() == "connected").await;
        let op = alice
            .core()
            .presence(&room, 2, None, "laptop".into(), None, JsValue::UNDEFINED);
        until("the enter acknowledged", || alice.settled(op) == Some(true)).await;

        let bob = client("bob", "");
        bob.core().attach(&room, 0);
        until("bob in sync", || bob.core().sync_complete(&room)).await;
        assert_eq!(
            bob.core().members(&room, None).length(),
            1,
            "bob sees alice by SYNC"
        );
        assert_eq!(bob.core().members(&room, Some("alice".into())).length(), 1);
        assert_eq!(bob.core().members(&room, Some("carol".into())).length(), 0);
        assert_eq!(
            bob.presence(),
            vec![("present".to_owned(), "alice".to_owned())]
        );

        let op = alice
            .core()
            .presence(&room, 3, None, "bye".into(), None, JsValue::UNDEFINED);
        until("the leave acknowledged", || alice.settled(op) == Some(true)).await;
        until("bob sees the leave", || bob.presence().len() == 2).await;
        assert_eq!(bob.presence()[1], ("leave".to_owned(), "alice".to_owned()));

        let op = alice
            .core()
            .presence(&room, 2, None, "back".into(), None, JsValue::UNDEFINED);
        until("the enter acknowledged", || alice.settled(op) == Some(true)).await;
        until("bob sees the enter", || bob.presence().len() == 3).await;
        let dropped = now();
        alice.core().simulate_drop(None);
        assert_eq!(alice.state(), "disconnected");
        until("bob sees the leave the hub makes", || {
            bob.presence().len() == 4
        })
        .await;
        let waited = now() - dropped;
        assert!(
            waited >= 1_000.0,
            "alice stayed for remainPresentFor, not {waited} ms"
        );
        assert_eq!(bob.presence()[3], ("leave".to_owned(), "alice".to_owned()));
        assert_eq!(bob.core().members(&room, None).length(), 0);
        alice.core().close();
        bob.core().close();
    }

    #[wasm_bindgen_test]
    async fn a_timer_that_fires_early_is_asked_for_again() {
        let alice = client("alice", "");
        until("alice connected", || alice.state() == "connected").await;
        let timers = || {
            alice
                .log
                .borrow()
                .iter()
                .filter(|e| e.get(0).as_f64() == Some(11.0))
                .count()
        };
        let before = timers();
        assert!(
            before > 0,
            "a connected client has a deadline (its idle check)"
        );
        // The host's timer fires before the deadline: nothing is due, but the deadline still is.
        alice.core().timeout();
        assert_eq!(timers(), before + 1, "the timer is set again");
        let last = alice.log.borrow().last().unwrap().clone();
        assert_eq!(last.get(0).as_f64(), Some(11.0));
        assert!(last.get(1).as_f64().unwrap() > 0.0);
        alice.core().close();
    }

    #[wasm_bindgen_test]
    async fn a_listener_can_read_the_client_from_inside_its_callback() {
        let room = format!("reentrant-{}", now());
        let log: Rc<RefCell<Vec<u32>>> = Rc::default();
        let seen = log.clone();
        let carol = host("carol", "", move |core, args| {
            if args.get(0).as_f64() == Some(2.0) {
                // Called back while the client is handing out events: it must not be borrowed.
                let channel = args.get(1).as_string().unwrap();
                seen.borrow_mut()
                    .push(core.members(&channel, None).length());
            }
        });
        carol
            .core
            .presence(&room, 2, None, JsValue::UNDEFINED, None, JsValue::UNDEFINED);
        until("the echo of carol's enter", || !log.borrow().is_empty()).await;
        assert_eq!(
            log.borrow()[0],
            1,
            "the listener read the view, with carol in it"
        );
        carol.core.close();
    }
}
