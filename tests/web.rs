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
