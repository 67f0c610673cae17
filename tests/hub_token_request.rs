//! Ably's TokenRequest exchange (`POST /keys/:keyName/requestToken`): a request signed with a
//! key, as the `ably` SDK's `auth.createTokenRequest()` makes it, becomes a token the hub
//! accepts, once, while its timestamp is current, for no more than the key allows.

mod common;

use common::{code, Sim};
use hmac::{Hmac, Mac};
use rollcall::hub::{ApiKey, Capability, HubConfig, RestRequest, RestResponse};
use rollcall::protocol::Action;
use serde_json::{json, Value};
use sha2::Sha256;

const KEY_NAME: &str = "app.k1";
const SECRET: &str = "secret-one";

fn secured() -> HubConfig {
    let mut keys = ApiKey::parse_list(&format!("{KEY_NAME}:{SECRET}")).unwrap();
    keys[0].capability = Capability::parse(&json!({"room:*": ["presence", "subscribe"]})).unwrap();
    HubConfig {
        keys,
        ..HubConfig::default()
    }
}

/// A TokenRequest signed as ably-js signs one (`Auth.createTokenRequest`).
fn signed(secret: &str, params: Value, timestamp: u64, nonce: &str) -> Value {
    let text = |field: &str| match params.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    let signed = format!(
        "{KEY_NAME}\n{}\n{}\n{}\n{timestamp}\n{nonce}\n",
        text("ttl"),
        text("capability"),
        text("clientId")
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    let mac = base64(&mac.finalize().into_bytes());
    let mut request = params;
    request["keyName"] = json!(KEY_NAME);
    request["timestamp"] = json!(timestamp);
    request["nonce"] = json!(nonce);
    request["mac"] = json!(mac);
    request
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn exchange(sim: &mut Sim, method: &str, key_name: &str, request: &Value) -> RestResponse {
    let body = request.to_string();
    let request = RestRequest {
        method,
        url: &format!("/keys/{key_name}/requestToken"),
        authorization: None,
        accept: Some("application/json"),
        origin: None,
        body: body.as_bytes(),
    };
    sim.hub.handle_rest(sim.now, &request).expect("a hub path")
}

fn error_code(response: &RestResponse) -> Option<u64> {
    let body: Value = serde_json::from_slice(&response.body).ok()?;
    body["error"]["code"].as_u64()
}

#[test]
fn a_signed_token_request_becomes_a_token_bound_to_its_client_and_capability() {
    let mut sim = Sim::new(secured());
    let params = json!({
        "clientId": "alice",
        "ttl": 60_000,
        "capability": r#"{"room:a":["presence","subscribe"]}"#,
    });
    let request = signed(SECRET, params, sim.now, "0123456789abcdef");
    let response = exchange(&mut sim, "POST", KEY_NAME, &request);
    assert_eq!(
        response.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
    let details: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(details["clientId"], "alice");
    assert_eq!(details["keyName"], KEY_NAME);
    assert_eq!(details["issued"], json!(sim.now));
    assert_eq!(
        details["capability"],
        r#"{"room:a":["presence","subscribe"]}"#
    );
    let expires = details["expires"].as_u64().unwrap();
    assert!(
        expires >= sim.now + 60_000 && expires < sim.now + 61_000,
        "{expires}"
    );

    // The token connects as alice, and allows what was asked within what the key allows.
    let token = details["token"].as_str().unwrap();
    let (peer, connected) = sim.connect(&format!("access_token={token}"));
    assert_eq!(
        connected.connection_details.unwrap().client_id.as_deref(),
        Some("alice")
    );
    sim.send(peer, json!({"action": 10, "channel": "room:a"}));
    assert_eq!(sim.take(peer)[0].action, Action::Attached);
    sim.send(peer, json!({"action": 10, "channel": "room:b"}));
    let refused = sim.take(peer).remove(0);
    assert_eq!(
        (refused.action, code(&refused)),
        (Action::Error, Some(40160))
    );

    // Once only: the same request again is a replay.
    let again = exchange(&mut sim, "POST", KEY_NAME, &request);
    assert_eq!((again.status, error_code(&again)), (401, Some(40105)));

    // A ttl under a second gives a token that has not expired yet: it connects.
    let brief = signed(SECRET, json!({"ttl": 1}), sim.now, "fedcba9876543210");
    let response = exchange(&mut sim, "POST", KEY_NAME, &brief);
    let details: Value = serde_json::from_slice(&response.body).unwrap();
    let token = details["token"].as_str().unwrap();
    let (_, connected) = sim.connect(&format!("access_token={token}"));
    assert_eq!(connected.action, Action::Connected);
}

#[test]
fn token_requests_that_prove_nothing_or_ask_too_much_are_refused_with_their_codes() {
    let mut sim = Sim::new(secured());
    let now = sim.now;
    let nonce = |n: u32| format!("nonce-{n:0>16}");
    let cases = [
        // Signed with another secret.
        (
            signed("guess", json!({"clientId": "a"}), now, &nonce(1)),
            KEY_NAME,
            401,
            40101,
        ),
        // For a key the hub does not have.
        (
            {
                let mut request = signed(SECRET, json!({}), now, &nonce(2));
                request["keyName"] = json!("app.other");
                request
            },
            "app.other",
            401,
            40101,
        ),
        // Too old, and from a clock too far ahead.
        (
            signed(SECRET, json!({}), now - 11 * 60_000, &nonce(3)),
            KEY_NAME,
            401,
            40104,
        ),
        (
            signed(SECRET, json!({}), now + 11 * 60_000, &nonce(4)),
            KEY_NAME,
            401,
            40104,
        ),
        // More than a day.
        (
            signed(SECRET, json!({"ttl": 86_400_001u64}), now, &nonce(5)),
            KEY_NAME,
            400,
            40000,
        ),
        // Nothing the key allows.
        (
            signed(
                SECRET,
                json!({"capability": r#"{"other":["*"]}"#}),
                now,
                &nonce(6),
            ),
            KEY_NAME,
            401,
            40160,
        ),
        // A nonce too short to be one, or too long to remember.
        (
            signed(SECRET, json!({}), now, "short"),
            KEY_NAME,
            400,
            40000,
        ),
        (
            signed(SECRET, json!({}), now, &"n".repeat(129)),
            KEY_NAME,
            400,
            40000,
        ),
    ];
    for (request, key_name, status, expected) in cases {
        let response = exchange(&mut sim, "POST", key_name, &request);
        assert_eq!(
            (response.status, error_code(&response)),
            (status, Some(expected)),
            "{request}"
        );
    }
    // Its keyName must be the path's; it is sent with POST; its body is JSON.
    let request = signed(SECRET, json!({}), now, &nonce(7));
    let response = exchange(&mut sim, "POST", "app.k2", &request);
    assert_eq!(error_code(&response), Some(40000));
    let response = exchange(&mut sim, "GET", KEY_NAME, &request);
    assert_eq!((response.status, error_code(&response)), (405, Some(40500)));
    let garbage = RestRequest {
        method: "POST",
        url: &format!("/keys/{KEY_NAME}/requestToken"),
        authorization: None,
        accept: None,
        origin: None,
        body: b"\xff not json",
    };
    let response = sim.hub.handle_rest(sim.now, &garbage).unwrap();
    assert_eq!((response.status, error_code(&response)), (400, Some(40000)));
    // None of those used the nonce up: the request itself still works. Asking for everything,
    // it is given what the key allows, and says so, as Ably's does.
    let response = exchange(&mut sim, "POST", KEY_NAME, &request);
    assert_eq!(response.status, 200);
    let details: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(
        details["capability"],
        r#"{"room:*":["presence","subscribe"]}"#
    );
}

#[test]
fn in_development_mode_any_token_request_becomes_a_token() {
    let mut sim = Sim::new(HubConfig::default());
    let request = signed(
        "anything",
        json!({"clientId": "dev"}),
        sim.now,
        "0123456789abcdef",
    );
    let response = exchange(&mut sim, "POST", KEY_NAME, &request);
    assert_eq!(response.status, 200);
    let details: Value = serde_json::from_slice(&response.body).unwrap();
    let (_, connected) = sim.connect(&format!(
        "access_token={}",
        details["token"].as_str().unwrap()
    ));
    assert_eq!(
        connected.connection_details.unwrap().client_id.as_deref(),
        Some("dev")
    );
}

#[test]
fn a_token_request_used_before_a_restart_is_not_exchanged_again_after_it() {
    // A host with storage (a Durable Object, evicted whenever it is idle) keeps the nonces.
    let config = || HubConfig {
        persistence: true,
        ..secured()
    };
    let mut sim = Sim::new(config());
    let request = signed(
        SECRET,
        json!({"clientId": "alice"}),
        sim.now,
        "0123456789abcdef",
    );
    assert_eq!(exchange(&mut sim, "POST", KEY_NAME, &request).status, 200);
    sim.drain();
    assert_eq!(sim_nonces(&sim).len(), 1, "{:?}", sim.store.keys());
    sim.evict(config());
    let again = exchange(&mut sim, "POST", KEY_NAME, &request);
    assert_eq!((again.status, error_code(&again)), (401, Some(40105)));
    // Forgotten once it could no longer be used: a wake after its window deletes it.
    sim.now += 11 * 60 * 1000;
    sim.evict(config());
    assert!(sim_nonces(&sim).is_empty(), "{:?}", sim.store.keys());
}

fn sim_nonces(sim: &Sim) -> Vec<&String> {
    sim.store.keys().filter(|k| k.starts_with("n:")).collect()
}

#[test]
fn a_flood_of_token_requests_does_not_lock_everyone_else_out() {
    // The hub remembers at most 100 000 nonces. A public authUrl hands signed TokenRequests to
    // anyone: one who exchanges them by the hundred a second fills that table, and a hub that
    // refused every TokenRequest until they expired would let no one connect for minutes.
    let config = || HubConfig {
        persistence: true,
        ..secured()
    };
    let mut sim = Sim::new(config());
    // The flood, as stored: 100 000 nonces exchanged over the last minutes.
    let window = 10 * 60 * 1000;
    for i in 0..100_000u64 {
        let until = sim.now + window - 60_000 + i % 60_000;
        sim.store.insert(
            format!("n:flood-{i:06}"),
            rmp_serde::to_vec(&until).unwrap(),
        );
    }
    sim.evict(config());
    let request = signed(
        SECRET,
        json!({"clientId": "alice"}),
        sim.now,
        "0123456789abcdef",
    );
    let answer = exchange(&mut sim, "POST", KEY_NAME, &request);
    assert_eq!(answer.status, 200, "{:?}", error_code(&answer));
    // What made room: the tenth of the flood nearest its end, forgotten in storage too.
    sim.drain();
    let held = sim_nonces(&sim);
    assert!(
        (89_000..=91_000).contains(&held.len()),
        "{} nonces held",
        held.len()
    );
    let earliest = held
        .iter()
        .filter_map(|k| k.strip_prefix("n:flood-"))
        .filter_map(|i| i.parse::<u64>().ok())
        .map(|i| i % 60_000)
        .min();
    assert!(earliest >= Some(5_000), "{earliest:?}");
    // And the one exchanged is still exchanged once.
    let again = exchange(&mut sim, "POST", KEY_NAME, &request);
    assert_eq!((again.status, error_code(&again)), (401, Some(40105)));
}

#[test]
fn used_nonces_are_forgotten_once_their_window_is_over_however_few() {
    // However few: a hub that exchanges a few a minute must not keep every one it ever saw
    // (in memory on Node; as storage keys on the edge, while the object stays awake).
    let config = || HubConfig {
        persistence: true,
        ..secured()
    };
    let mut sim = Sim::new(config());
    for n in 0..10 {
        let request = signed(
            SECRET,
            json!({"clientId": "alice"}),
            sim.now,
            &format!("nonce-{n:012}"),
        );
        assert_eq!(exchange(&mut sim, "POST", KEY_NAME, &request).status, 200);
    }
    sim.drain();
    assert_eq!(sim_nonces(&sim).len(), 10);
    sim.advance(11 * 60 * 1000);
    let request = signed(
        SECRET,
        json!({"clientId": "alice"}),
        sim.now,
        "the-next-one-0000",
    );
    assert_eq!(exchange(&mut sim, "POST", KEY_NAME, &request).status, 200);
    sim.drain();
    assert_eq!(sim_nonces(&sim).len(), 1, "{:?}", sim_nonces(&sim));
}
