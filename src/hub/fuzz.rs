//! Harnesses for hostile input, shared by the `cargo fuzz` targets (`fuzz/`) and by the test
//! that replays their corpus (`tests/fuzz_corpus.rs`). A panic here is a bug.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Hub, HubConfig, RestRequest, TransportId};
use crate::protocol::{json, msgpack, ProtocolMessage};

/// Decodes arbitrary bytes as a JSON and as a msgpack frame; whatever decodes must encode, and
/// decoding what was encoded must give the same message.
pub fn codec(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(message) = json::decode(&text) {
        round_trip_json(&message);
        round_trip_msgpack(&message);
    }
    let _ = json::salvage(&text);
    if let Ok(message) = msgpack::decode(data) {
        round_trip_msgpack(&message);
        round_trip_json(&message);
    }
    let _ = msgpack::salvage(data);
}

fn round_trip_json(message: &ProtocolMessage) {
    let once = json::encode(message);
    let Ok(again) = json::decode(&String::from_utf8_lossy(&once)) else {
        panic!(
            "the hub wrote JSON it cannot read: {}",
            String::from_utf8_lossy(&once)
        );
    };
    let twice = json::encode(&again);
    assert_eq!(once, twice, "JSON encoding is not stable");
}

fn round_trip_msgpack(message: &ProtocolMessage) {
    let once = msgpack::encode(message);
    let Ok(again) = msgpack::decode(&once) else {
        panic!("the hub wrote msgpack it cannot read");
    };
    assert_eq!(
        msgpack::encode(&again),
        once,
        "msgpack encoding is not stable"
    );
}

/// Frames a well-behaved client might send, for the fuzzer to start from and mutate.
const TEMPLATES: &[&str] = &[
    r#"{"action":10,"channel":"room"}"#,
    r#"{"action":10,"channel":"room","flags":524288}"#,
    r#"{"action":12,"channel":"room"}"#,
    r#"{"action":14,"channel":"room","msgSerial":0,"presence":[{"action":2,"data":"{\"a\":1}","encoding":"json"}]}"#,
    r#"{"action":14,"channel":"room","msgSerial":1,"presence":[{"action":4,"data":"x"}]}"#,
    r#"{"action":14,"channel":"room","msgSerial":2,"presence":[{"action":3}]}"#,
    r#"{"action":14,"channel":"room","msgSerial":3,"presence":[{"action":2,"clientId":"bot"}]}"#,
    r#"{"action":16,"channel":"room","channelSerial":"s1:"}"#,
    r#"{"action":0,"id":"ping"}"#,
    r#"{"action":0}"#,
    r#"{"action":17,"auth":{"accessToken":"a.b.c"}}"#,
    r#"{"action":5}"#,
    r#"{"action":7}"#,
];

const QUERIES: &[&str] = &[
    "clientId=alice&v=6",
    "clientId=bob&format=msgpack",
    "key=app.k:s",
    "clientId=carol&heartbeats=true&heartbeatInterval=1000&remainPresentFor=1000",
    "clientId=dave&resume=",
    "",
    "clientId=*",
    "format=xml",
];

/// Drives a hub with a script read from arbitrary bytes: connections open and close, frames
/// (mutated templates or raw bytes) arrive, time passes, REST reads come. After every step the
/// outputs are drained; at the end, a hub rebuilt from what it stored must hold the same members.
pub fn hub(data: &[u8]) {
    let config = HubConfig {
        max_message_size: 2_048,
        max_members_per_channel: 20,
        max_channels_per_connection: 4,
        max_connections: 16,
        max_inbound_rate: 50,
        persistence: true,
        ..HubConfig::default()
    };
    let mut hub = Hub::new(config.clone());
    let mut store: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut now = 1_700_000_000_000u64;
    let mut keys: Vec<Arc<str>> = Vec::new();
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next();
    while let Some(op) = next() {
        let transport = TransportId(u32::from(next().unwrap_or(0) % 8));
        match op % 9 {
            0 => {
                let mut query =
                    QUERIES[usize::from(next().unwrap_or(0)) % QUERIES.len()].to_owned();
                if query.ends_with("resume=") {
                    if let Some(key) =
                        keys.get(usize::from(next().unwrap_or(0)) % keys.len().max(1))
                    {
                        query.push_str(key);
                    }
                }
                let mut entropy = [0u8; 24];
                for byte in entropy.iter_mut() {
                    *byte = next().unwrap_or(7);
                }
                hub.handle_open(now, transport, &query, entropy);
            }
            1 | 2 => {
                let len = usize::from(next().unwrap_or(0)) * 4;
                let frame: Vec<u8> = (0..len).filter_map(|_| next()).collect();
                if op % 9 == 1 {
                    hub.handle_text(now, transport, &String::from_utf8_lossy(&frame));
                } else {
                    hub.handle_binary(now, transport, &frame);
                }
            }
            3 => hub.handle_close(now, transport),
            4 => hub.handle_pong(now, transport),
            5 => {
                now += u64::from(next().unwrap_or(0)) * 250;
                hub.handle_timeout(now);
            }
            6 => {
                let len = usize::from(next().unwrap_or(0) % 64);
                let raw: Vec<u8> = (0..len).filter_map(|_| next()).collect();
                let url = format!("/channels/{}", String::from_utf8_lossy(&raw));
                let request = RestRequest {
                    method: "GET",
                    url: &url,
                    authorization: None,
                    accept: if len % 2 == 0 {
                        None
                    } else {
                        Some("application/x-msgpack")
                    },
                };
                let _ = hub.handle_rest(now, &request);
            }
            _ => {
                let mut frame = TEMPLATES[usize::from(next().unwrap_or(0)) % TEMPLATES.len()]
                    .as_bytes()
                    .to_vec();
                for _ in 0..next().unwrap_or(0) % 4 {
                    let at = usize::from(next().unwrap_or(0)) % frame.len();
                    match next().unwrap_or(0) % 3 {
                        0 => frame[at] = next().unwrap_or(b'0'),
                        1 => {
                            frame.remove(at);
                        }
                        _ => frame.insert(at, next().unwrap_or(b'9')),
                    }
                }
                hub.handle_text(now, transport, &String::from_utf8_lossy(&frame));
            }
        }
        while let Some(transmit) = hub.poll_transmit() {
            // Remember connection keys, to try resumes with them.
            if let Some(text) = transmit.frame.text() {
                if let Ok(message) = json::decode(text) {
                    if let Some(key) = message.connection_details.and_then(|d| d.connection_key) {
                        keys.push(key);
                    }
                }
            }
        }
        while hub.poll_event().is_some() {}
        for change in hub.take_changes() {
            match change.value {
                Some(value) => store.insert(change.key, value),
                None => store.remove(&change.key),
            };
        }
    }
    // The stored state rebuilds the same presence sets.
    let open: Vec<TransportId> = (0..8).map(TransportId).collect();
    let (rebuilt, _) = Hub::restore(config, now, store.into_iter().collect(), &open);
    for channel in hub.channel_names() {
        assert_eq!(
            rebuilt.members(&channel),
            hub.members(&channel),
            "a rebuilt hub disagrees on {channel}"
        );
        // And on its presence history, event for event.
        let history = |h: &Hub| -> Vec<(u64, crate::protocol::PresenceMessage)> {
            h.channels
                .get(&*channel)
                .map(|c| {
                    c.history
                        .iter()
                        .map(|e| (e.seq, e.message.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(
            history(&rebuilt),
            history(&hub),
            "a rebuilt hub disagrees on the history of {channel}"
        );
    }
}
