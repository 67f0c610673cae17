//! Bad input: each gets Ably's error code, the connection is kept or closed as Ably would, other
//! connections and members are unaffected, and nothing panics.

mod common;

use common::{code, Rng, Sim};
use rollcall::hub::HubConfig;
use rollcall::protocol::{Action, PresenceAction};
use serde_json::json;

const ROOM: &str = "room";

/// What a bad frame must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// A connection-level ERROR with this code, then the socket is closed.
    Fatal(u32),
    /// A NACK with this code; the connection carries on.
    Nack(u32),
    /// A channel-level ERROR with this code; the connection carries on.
    ChannelError(u32),
    /// Nothing at all; the connection carries on.
    Ignored,
}

fn corpus() -> Vec<(&'static str, String, Expect)> {
    use Expect::*;
    let nested = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let deep_data = format!(
        r#"{{"action":14,"channel":"room","msgSerial":0,"presence":[{{"action":2,"data":{nested}}}]}}"#
    );
    let big = "x".repeat(70_000);
    vec![
        ("not json", "hello".into(), Fatal(40000)),
        ("truncated json", r#"{"action":14,"chan"#.into(), Fatal(40000)),
        ("json null", "null".into(), Fatal(40000)),
        ("json array", "[1,2,3]".into(), Fatal(40000)),
        ("empty object", "{}".into(), Fatal(40000)),
        ("action as string", r#"{"action":"14"}"#.into(), Fatal(40000)),
        ("negative action", r#"{"action":-1}"#.into(), Fatal(40000)),
        ("float action", r#"{"action":1.5}"#.into(), Fatal(40000)),
        ("unknown action", r#"{"action":99}"#.into(), Ignored),
        ("unknown action with junk", r#"{"action":77,"channel":5,"presence":"x"}"#.into(), Ignored),
        ("server-only action", r#"{"action":4,"connectionId":"x"}"#.into(), Ignored),
        ("attach without channel", r#"{"action":10}"#.into(), Fatal(40000)),
        ("attach with channel as number", r#"{"action":10,"channel":7}"#.into(), Fatal(40000)),
        ("attach with empty name", r#"{"action":10,"channel":""}"#.into(), ChannelError(40010)),
        ("attach with qualifier", r#"{"action":10,"channel":"[?rewind=1]room"}"#.into(), ChannelError(40010)),
        ("attach with control characters", "{\"action\":10,\"channel\":\"a\\u0000b\"}".into(), ChannelError(40010)),
        ("attach to a name no URL can hold", r#"{"action":10,"channel":".."}"#.into(), ChannelError(40010)),
        ("attach to a name no URL can hold", r#"{"action":10,"channel":"."}"#.into(), ChannelError(40010)),
        ("attach with a huge name", format!(r#"{{"action":10,"channel":"{}"}}"#, "n".repeat(5_000)), ChannelError(40010)),
        ("presence without serial", r#"{"action":14,"channel":"room","presence":[]}"#.into(), Fatal(40000)),
        ("presence with float serial", r#"{"action":14,"channel":"room","msgSerial":0.5,"presence":[]}"#.into(), Fatal(40000)),
        ("presence with negative serial", r#"{"action":14,"channel":"room","msgSerial":-3,"presence":[{"action":2}]}"#.into(), Nack(40000)),
        ("presence with unknown presence action", r#"{"action":14,"channel":"room","msgSerial":0,"presence":[{"action":9}]}"#.into(), Nack(40000)),
        ("presence with action present", r#"{"action":14,"channel":"room","msgSerial":0,"presence":[{"action":1}]}"#.into(), Nack(40000)),
        ("presence with action absent", r#"{"action":14,"channel":"room","msgSerial":0,"presence":[{"action":0}]}"#.into(), Nack(40000)),
        ("presence not an array", r#"{"action":14,"channel":"room","msgSerial":0,"presence":"x"}"#.into(), Nack(40000)),
        ("presence item not an object", r#"{"action":14,"channel":"room","msgSerial":0,"presence":[5]}"#.into(), Nack(40000)),
        ("presence clientId as number", r#"{"action":14,"channel":"room","msgSerial":0,"presence":[{"action":2,"clientId":5}]}"#.into(), Nack(40000)),
        ("presence without channel", r#"{"action":14,"msgSerial":0,"presence":[{"action":2}]}"#.into(), Nack(40000)),
        ("presence on unattached channel", r#"{"action":14,"channel":"elsewhere","msgSerial":0,"presence":[{"action":2}]}"#.into(), Nack(90001)),
        ("presence as wildcard clientId", r#"{"action":14,"channel":"room","msgSerial":0,"presence":[{"action":2,"clientId":"*"}]}"#.into(), Nack(40012)),
        ("presence as someone else", r#"{"action":14,"channel":"room","msgSerial":0,"presence":[{"action":2,"clientId":"bob"}]}"#.into(), Nack(40012)),
        ("presence larger than maxMessageSize", format!(r#"{{"action":14,"channel":"room","msgSerial":0,"presence":[{{"action":2,"data":"{big}"}}]}}"#), Nack(40009)),
        ("deeply nested data", deep_data, Nack(40000)),
        // Ably's measure leaves the encoding out: unbounded, it passed maxMessageSize whole.
        ("an encoding longer than any", format!(r#"{{"action":14,"channel":"room","msgSerial":0,"presence":[{{"action":2,"data":"x","encoding":"{}"}}]}}"#, "e".repeat(100_000)), Nack(40013)),
        ("channel message", r#"{"action":15,"channel":"room","msgSerial":0,"messages":[{"data":"x"}]}"#.into(), Nack(40000)),
        ("an action this hub does not know, awaiting an answer", r#"{"action":19,"channel":"room","msgSerial":0,"state":[]}"#.into(), Nack(40000)),
        ("an unknown action with junk, awaiting an answer", r#"{"action":21,"channel":5,"msgSerial":0}"#.into(), Nack(40000)),
        ("serial at the limit", format!(r#"{{"action":14,"channel":"room","msgSerial":{},"presence":[{{"action":4,"data":"max"}}]}}"#, i64::MAX), Ignored),
    ]
}

#[test]
fn a_catalogue_of_bad_frames_gets_ably_errors_and_harms_no_one() {
    let corpus = corpus();
    assert!(corpus.len() >= 30);
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=watcher", ROOM);
    let (good, _) = sim.join("clientId=good", ROOM);
    sim.presence(good, ROOM, 0, json!([{"action": 2, "data": "fine"}]));
    sim.events(watcher);

    for (name, frame, expect) in corpus {
        let (bad, _) = sim.join("clientId=mallory", ROOM);
        sim.send_text(bad, &frame);
        let replies = sim.take(bad);
        let replies: Vec<_> = replies
            .into_iter()
            .filter(|m| m.action != Action::Presence)
            .collect();
        match expect {
            Expect::Fatal(c) => {
                assert_eq!(replies.len(), 1, "{name}: {replies:?}");
                assert_eq!(
                    (replies[0].action, code(&replies[0])),
                    (Action::Error, Some(c)),
                    "{name}"
                );
                assert!(replies[0].channel.is_none(), "{name}: connection-level");
                assert!(sim.is_closed(bad), "{name}: closed");
            }
            Expect::Nack(c) => {
                assert_eq!(replies.len(), 1, "{name}: {replies:?}");
                assert_eq!(
                    (replies[0].action, code(&replies[0])),
                    (Action::Nack, Some(c)),
                    "{name}"
                );
                assert_eq!(replies[0].count, Some(1), "{name}");
                assert!(!sim.is_closed(bad), "{name}: kept");
            }
            Expect::ChannelError(c) => {
                assert_eq!(replies.len(), 1, "{name}: {replies:?}");
                assert_eq!(
                    (replies[0].action, code(&replies[0])),
                    (Action::Error, Some(c)),
                    "{name}"
                );
                assert!(replies[0].channel.is_some(), "{name}: channel-level");
                assert!(!sim.is_closed(bad), "{name}: kept");
            }
            Expect::Ignored => {
                assert!(
                    replies.iter().all(|m| m.action == Action::Ack),
                    "{name}: {replies:?}"
                );
                assert!(!sim.is_closed(bad), "{name}: kept");
            }
        }
        let e = &replies.first().and_then(|m| m.error.clone());
        if let Some(e) = e {
            assert!(
                e.status_code >= 400 && !e.message.is_empty(),
                "{name}: {e:?}"
            );
        }
        // Mallory goes away properly so that only the corpus' own effects remain.
        if !sim.is_closed(bad) {
            sim.send(bad, json!({"action": 7}));
        }
    }

    // The well-behaved connections saw nothing but mallory's own (valid) entries and leaves,
    // and carry on as before.
    let events = sim.events(watcher);
    assert!(
        events
            .iter()
            .all(|e| e.client_id.as_deref() == Some("mallory")),
        "{events:?}"
    );
    assert_eq!(
        sim.members(ROOM)
            .iter()
            .map(|(c, _)| c.as_str())
            .collect::<Vec<_>>(),
        vec!["good"]
    );
    sim.presence(good, ROOM, 1, json!([{"action": 4, "data": "still fine"}]));
    let events = sim.events(watcher);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, PresenceAction::Update);
}

#[test]
fn a_binary_frame_that_is_not_msgpack_is_refused() {
    let mut sim = Sim::new(HubConfig::default());
    let (peer, _) = sim.connect("clientId=a");
    sim.hub.handle_binary(sim.now, peer.0, &[0xc1, 0x00, 0x81]);
    sim.drain();
    let replies = sim.take(peer);
    assert_eq!(
        (replies[0].action, code(&replies[0])),
        (Action::Error, Some(40000))
    );
    assert!(sim.is_closed(peer));
}

#[test]
fn a_text_frame_that_is_not_utf8_is_refused_as_text() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (peer, _) = sim.join("clientId=a", ROOM);
    // A presence message with bytes that are not UTF-8 in its data: refused alone (NACK),
    // saying why, and the connection carries on.
    let mut frame =
        br#"{"action":14,"channel":"room","msgSerial":0,"presence":[{"action":2,"data":"a"#
            .to_vec();
    frame.extend_from_slice(&[0xff, 0xfe]);
    frame.extend_from_slice(br#""}]}"#);
    sim.hub.handle_text_bytes(sim.now, peer.0, &frame);
    sim.drain();
    let replies = sim.take(peer);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(
        (replies[0].action, code(&replies[0])),
        (Action::Nack, Some(40000))
    );
    let why = replies[0].error.as_ref().unwrap().message.to_string();
    assert!(why.contains("not UTF-8"), "{why}");
    assert!(!sim.is_closed(peer));
    sim.presence(peer, ROOM, 1, json!([{"action": 2, "data": "ok"}]));
    assert_eq!(
        sim.events(watcher).len(),
        1,
        "its next presence message is read"
    );
    // Anything else that is not UTF-8 ends the connection with an ERROR, not as a binary frame.
    let mut frame = br#"{"action":10,"channel":"a"#.to_vec();
    frame.extend_from_slice(&[0xc3, 0x28]);
    frame.extend_from_slice(br#""}"#);
    sim.hub.handle_text_bytes(sim.now, peer.0, &frame);
    sim.drain();
    let replies = sim.take(peer);
    assert_eq!(
        (replies[0].action, code(&replies[0])),
        (Action::Error, Some(40000))
    );
    let why = replies[0].error.as_ref().unwrap().message.to_string();
    assert!(why.contains("not UTF-8"), "{why}");
    assert!(sim.is_closed(peer));
    assert!(!sim.is_closed(watcher));
}

#[test]
fn frames_for_unknown_transports_are_ignored() {
    let mut sim = Sim::new(HubConfig::default());
    sim.hub
        .handle_text(sim.now, rollcall::hub::TransportId(999), r#"{"action":7}"#);
    sim.hub
        .handle_close(sim.now, rollcall::hub::TransportId(999));
    sim.hub
        .handle_pong(sim.now, rollcall::hub::TransportId(999));
    sim.drain();
    assert_eq!(sim.hub.stats().connections, 0);
}

#[test]
fn connect_refusals_are_errors_then_close() {
    let mut sim = Sim::new(HubConfig::default());
    for query in ["clientId=*", "clientId=", "format=xml"] {
        let (peer, first) = sim.open(query);
        assert_eq!(first.action, Action::Error, "{query}");
        assert!(
            matches!(code(&first), Some(40012 | 40000)),
            "{query}: {first:?}"
        );
        assert!(sim.is_closed(peer), "{query}");
    }
    let config = HubConfig {
        keys: rollcall::hub::ApiKey::parse_list("app.k:secret").unwrap(),
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    for query in [
        "clientId=a",
        "key=app.k:wrong",
        "key=app.other:secret",
        "key=garbage",
    ] {
        let (peer, first) = sim.open(query);
        assert_eq!(
            (first.action, code(&first)),
            (Action::Error, Some(40101)),
            "{query}"
        );
        assert_eq!(first.error.unwrap().status_code, 401);
        assert!(sim.is_closed(peer));
    }
    sim.connect("key=app.k:secret&clientId=a");
}

/// Mutated versions of valid frames, by the thousand: nothing panics, and the watcher's member
/// stays present throughout.
#[test]
fn mutated_frames_never_panic_the_hub() {
    let seeds = [
        json!({"action": 10, "channel": ROOM}).to_string(),
        json!({"action": 14, "channel": ROOM, "msgSerial": 3, "presence": [{"action": 2, "data": "{\"a\":[1,2]}", "encoding": "json"}]}).to_string(),
        json!({"action": 14, "channel": ROOM, "msgSerial": 4, "presence": [{"action": 3, "clientId": "x", "id": "c:1:0"}]}).to_string(),
        json!({"action": 12, "channel": ROOM}).to_string(),
        json!({"action": 16, "channel": ROOM, "channelSerial": "s1:2"}).to_string(),
        json!({"action": 0, "id": "p"}).to_string(),
    ];
    let mut sim = Sim::seeded(HubConfig::default(), 7);
    let (good, _) = sim.join("clientId=good", ROOM);
    sim.presence(good, ROOM, 0, json!([{"action": 2}]));
    let mut rng = Rng::new(42);
    let mut bad = sim.join("clientId=m", ROOM).0;
    for round in 0..5_000 {
        let mut bytes = seeds[rng.below(seeds.len() as u64) as usize]
            .clone()
            .into_bytes();
        for _ in 0..=rng.below(4) {
            let i = rng.below(bytes.len() as u64) as usize;
            match rng.below(3) {
                0 => bytes[i] = rng.below(128) as u8,
                1 => {
                    bytes.remove(i);
                }
                _ => bytes.insert(i, b"{}[]\",:-09ea\\"[rng.below(13) as usize]),
            }
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        sim.send_text(bad, &text);
        if round % 7 == 0 {
            sim.advance(rng.below(3_000));
        }
        if sim.is_closed(bad) {
            bad = sim.join("clientId=m", ROOM).0;
        }
    }
    assert!(sim.members(ROOM).iter().any(|(c, _)| c == "good"));
}

#[test]
fn repeated_entropy_never_merges_two_connections() {
    let mut sim = Sim::new(HubConfig::default());
    let mut ids = std::collections::BTreeSet::new();
    let mut keys = std::collections::BTreeSet::new();
    for n in 0..5 {
        sim.hub.handle_open(
            sim.now,
            rollcall::hub::TransportId(100 + n),
            "clientId=same",
            [9; 24],
        );
        sim.drain();
        let connected = sim
            .take(common::Peer(rollcall::hub::TransportId(100 + n)))
            .remove(0);
        ids.insert(connected.connection_id.unwrap());
        keys.insert(
            connected
                .connection_details
                .unwrap()
                .connection_key
                .unwrap(),
        );
    }
    assert_eq!((ids.len(), keys.len()), (5, 5));
    assert_eq!(sim.hub.stats().connections, 5);
}

#[test]
fn the_size_that_counts_is_ablys_the_data_not_its_escapes_nor_base64() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (peer, _) = sim.join("clientId=a", ROOM);
    // 60 000 quotes: 60 KB of data, 120 KB of frame once escaped; within maxMessageSize as
    // Ably counts it (TO3l8), and the frame within maxFrameSize.
    let quotes = "\"".repeat(60_000);
    let replies = sim.presence(peer, ROOM, 0, json!([{"action": 2, "data": quotes}]));
    assert_eq!(replies.last().unwrap().action, Action::Ack, "{replies:?}");
    // 50 000 bytes of binary over msgpack: 50 KB, though 66 668 as base64 for JSON subscribers.
    let message = json!({"action": 14, "channel": ROOM, "msgSerial": 1,
        "presence": [{"action": 4}]});
    let mut bytes = rmp_serde::to_vec_named(&message).unwrap();
    // The item with binary data, written by hand: serde_json has no bytes.
    let item = rmp_serde::to_vec_named(&rollcall::protocol::PresenceMessage {
        data: Some(rollcall::protocol::Data::Binary(vec![7u8; 50_000].into())),
        ..rollcall::protocol::PresenceMessage::new(PresenceAction::Update)
    })
    .unwrap();
    let at = bytes.len() - 9; // the one-item array's `{"action": 4}`, as msgpack: 0x81 + 7 + 1
    assert_eq!(bytes[at], 0x81);
    bytes.truncate(at);
    bytes.extend_from_slice(&item);
    sim.hub.handle_binary(sim.now, peer.0, &bytes);
    sim.drain();
    let replies = sim.take(peer);
    assert_eq!(replies.last().unwrap().action, Action::Ack, "{replies:?}");
    assert_eq!(sim.events(watcher).len(), 2);
    // About as many bytes as base64 in a JSON frame (as browsers send binary): 50 KB too,
    // though its text is 66 664 bytes; 70 000 bytes are over. (Three bytes of 7 are `BwcH`.)
    let b64 = |n: usize| "BwcH".repeat(n / 3);
    let replies = sim.presence(
        peer,
        ROOM,
        2,
        json!([{"action": 4, "data": b64(49_998), "encoding": "base64"}]),
    );
    assert_eq!(replies.last().unwrap().action, Action::Ack, "{replies:?}");
    let replies = sim.presence(
        peer,
        ROOM,
        3,
        json!([{"action": 4, "data": b64(69_999), "encoding": "base64"}]),
    );
    assert_eq!(code(replies.last().unwrap()), Some(40009), "{replies:?}");
    assert_eq!(sim.events(watcher).len(), 1);
    // A frame beyond maxFrameSize (4 × maxMessageSize) is refused, though its data is small.
    let updates: Vec<_> = (0..30_000).map(|_| json!({"action": 4})).collect();
    let replies = sim.presence(peer, ROOM, 4, json!(updates));
    assert_eq!(
        (
            replies.last().unwrap().action,
            code(replies.last().unwrap())
        ),
        (Action::Nack, Some(40009))
    );
}

#[test]
fn a_msgpack_frame_is_held_to_the_size_its_json_would_have() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (peer, _) = sim.join("clientId=a", ROOM);
    // 30 000 nulls: 30 KB of msgpack, 150 KB of JSON for every subscriber.
    let message = json!({"action": 14, "channel": ROOM, "msgSerial": 0,
        "presence": [{"action": 2, "data": vec![serde_json::Value::Null; 30_000]}]});
    let bytes = rmp_serde::to_vec_named(&message).unwrap();
    assert!(bytes.len() < 65_536, "{} bytes of msgpack", bytes.len());
    sim.hub.handle_binary(sim.now, peer.0, &bytes);
    sim.drain();
    let replies = sim.take(peer);
    assert_eq!(
        (replies[0].action, code(&replies[0])),
        (Action::Nack, Some(40009))
    );
    assert!(sim.events(watcher).is_empty());
    // A small one passes.
    let small = json!({"action": 14, "channel": ROOM, "msgSerial": 1,
        "presence": [{"action": 2, "data": vec![serde_json::Value::Null; 100]}]});
    sim.hub
        .handle_binary(sim.now, peer.0, &rmp_serde::to_vec_named(&small).unwrap());
    sim.drain();
    assert_eq!(sim.events(watcher).len(), 1);
}

#[test]
fn presence_items_count_toward_the_inbound_rate() {
    let config = HubConfig {
        max_channels_per_connection: 10,
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (agent, _) = sim.join("key=app.any:thing", ROOM);
    // 300 members in one message (a re-entry, say): 7 of the 210 the burst allows (twice the
    // rate, and one for each channel a connection may attach).
    let many: Vec<_> = (0..300)
        .map(|i| json!({"action": 2, "clientId": format!("m{i}")}))
        .collect();
    let replies = sim.presence(agent, ROOM, 0, json!(many));
    assert_eq!(replies.last().unwrap().action, Action::Ack);
    assert_eq!(sim.events(watcher).len(), 300);
    // Messages of 2 000 updates cost 41 each: four pass in one burst, where frames alone
    // would have let 203 through.
    let flood = json!((0..2000)
        .map(|i| json!({"action": 4, "clientId": format!("m{}", i % 300)}))
        .collect::<Vec<_>>());
    let mut serial = 1;
    let mut passed = 0;
    let refusal = loop {
        let replies = sim.presence(agent, ROOM, serial, flood.clone());
        serial += 1;
        let last = replies.last().unwrap().clone();
        if last.action == Action::Ack {
            passed += 1;
            assert!(passed < 10, "the burst never ran out");
        } else {
            break last;
        }
    };
    assert_eq!(passed, 4);
    assert_eq!(
        (refusal.action, code(&refusal)),
        (Action::Nack, Some(42910))
    );
    assert_eq!(sim.events(watcher).len(), 4 * 2000);
    assert!(!sim.is_closed(agent));
    // A second later the budget has room again.
    sim.advance(1_000);
    let replies = sim.presence(agent, ROOM, serial, flood);
    assert_eq!(replies.last().unwrap().action, Action::Ack);
}

#[test]
fn a_timing_that_is_not_a_number_is_refused_not_silently_defaulted() {
    let mut sim = Sim::new(HubConfig::default());
    for query in [
        "clientId=a&remainPresentFor=abc",
        "clientId=a&remainPresentFor=-5",
        "clientId=a&heartbeatInterval=",
    ] {
        let (peer, refused) = sim.open(query);
        assert_eq!(
            (refused.action, code(&refused)),
            (Action::Error, Some(40000)),
            "{query}"
        );
        let message = refused.error.unwrap().message;
        assert!(
            message.contains("remainPresentFor") || message.contains("heartbeatInterval"),
            "{message}"
        );
        assert!(sim.is_closed(peer));
    }
    let (_, connected) = sim.open("clientId=a&remainPresentFor=1500.5");
    assert_eq!(connected.action, Action::Connected);
}

#[test]
fn a_client_id_longer_than_512_bytes_is_refused_where_it_is_given() {
    let mut sim = Sim::new(HubConfig::default());
    let long = "x".repeat(513);
    let (peer, refused) = sim.open(&format!("clientId={long}"));
    assert_eq!(
        (refused.action, code(&refused)),
        (Action::Error, Some(40012))
    );
    assert!(sim.is_closed(peer));
    // As a member a server enters: refused alone; the longest allowed passes.
    let (server, _) = sim.join("key=app.any:thing", ROOM);
    let replies = sim.presence(server, ROOM, 0, json!([{"action": 2, "clientId": long}]));
    assert_eq!(
        (replies[0].action, code(&replies[0])),
        (Action::Nack, Some(40012))
    );
    let replies = sim.presence(
        server,
        ROOM,
        1,
        json!([{"action": 2, "clientId": "y".repeat(512)}]),
    );
    assert_eq!(replies.last().unwrap().action, Action::Ack);
    assert_eq!(sim.members(ROOM).len(), 1);
}

#[test]
fn a_connection_whose_frame_the_host_refuses_fails_alone_and_its_members_leave() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", "room");
    let (mallory, _) = sim.join("clientId=mallory", "room");
    let (alice, _) = sim.join("clientId=alice", "room");
    sim.presence(mallory, "room", 0, serde_json::json!([{"action": 2}]));
    sim.presence(alice, "room", 0, serde_json::json!([{"action": 2}]));
    sim.events(watcher);
    sim.hub
        .handle_refused(sim.now, mallory.0, "this message made the hub fail");
    sim.drain();
    let error = sim
        .take(mallory)
        .into_iter()
        .find(|m| m.action == Action::Error);
    assert_eq!(error.and_then(|m| m.error).map(|e| e.code), Some(50000));
    assert!(sim.is_closed(mallory));
    let leaves = sim.events(watcher);
    assert_eq!(
        common::summary(&leaves),
        vec![(PresenceAction::Leave, "mallory".to_owned())]
    );
    assert_eq!(
        leaves[0].extras.as_ref().map(|e| e.0.contains("failed")),
        Some(true)
    );
    assert!(!sim.is_closed(alice));
    assert_eq!(sim.members("room").len(), 1);
}

#[test]
fn a_connection_cut_off_for_a_frame_too_large_to_read_fails_at_its_resume_rather_than_resend_it() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (alice, connected) = sim.connect("clientId=alice");
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    let (bob, bob_connected) = sim.connect("clientId=bob");
    sim.send(bob, json!({"action": 10, "channel": ROOM}));
    sim.presence(bob, ROOM, 0, json!([{"action": 2}]));
    sim.events(watcher);
    let key = connected
        .connection_details
        .unwrap()
        .connection_key
        .unwrap();
    // The host read no more than the limit of alice's next frame, and closed the socket.
    sim.hub.handle_too_large(sim.now, alice.0, 1 << 20);
    sim.drain();
    assert!(sim.events(watcher).is_empty(), "a drop, in its grace");
    assert_eq!(sim.members(ROOM).len(), 2);
    // Her client resumes to send it again: refused with why, and her members leave now.
    let (again, reply) = sim.open(&format!("clientId=alice&resume={key}"));
    assert_eq!(reply.action, Action::Error, "{reply:?}");
    let error = reply.error.unwrap();
    assert_eq!((error.code, error.status_code), (40009, 400));
    assert!(error.message.contains("1048576"), "{}", error.message);
    assert!(sim.is_closed(again));
    assert_eq!(
        common::summary(&sim.events(watcher)),
        vec![(PresenceAction::Leave, "alice".to_owned())]
    );
    assert_eq!(sim.members(ROOM).len(), 1, "bob stays");
    // A plain drop resumes as before, and a new connection for alice is made as any other.
    sim.drop_transport(bob);
    let bob_key = bob_connected
        .connection_details
        .unwrap()
        .connection_key
        .unwrap();
    let (_, resumed) = sim.connect(&format!("clientId=bob&resume={bob_key}"));
    assert!(resumed.error.is_none(), "{resumed:?}");
    assert_eq!(resumed.connection_id, bob_connected.connection_id);
    let (_, connected) = sim.connect("clientId=alice");
    assert!(connected.error.is_none());
    assert_eq!(sim.members(ROOM).len(), 1);
}

#[test]
fn member_data_is_held_to_a_hub_wide_budget_and_a_leave_makes_room() {
    let config = HubConfig {
        max_member_bytes: 200_000,
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    let big = "x".repeat(60_000);
    let mut peers = Vec::new();
    for n in 0..4 {
        let (peer, _) = sim.join(&format!("clientId=big{n}"), &format!("room{n}"));
        let replies = sim.presence(
            peer,
            &format!("room{n}"),
            0,
            json!([{"action": 2, "data": big}]),
        );
        peers.push((peer, replies.last().unwrap().clone()));
    }
    let outcomes: Vec<_> = peers.iter().map(|(_, r)| (r.action, code(r))).collect();
    assert_eq!(
        outcomes,
        [
            (Action::Ack, None),
            (Action::Ack, None),
            (Action::Ack, None),
            (Action::Nack, Some(91003))
        ]
    );
    assert!(sim.hub.stats().member_bytes <= 200_000);
    // Small members still fit, and a member may change its data within what it held.
    let (small, _) = sim.join("clientId=small", "room0");
    let replies = sim.presence(small, "room0", 0, json!([{"action": 2, "data": "hi"}]));
    assert_eq!(replies.last().unwrap().action, Action::Ack);
    let (first, _) = peers[0];
    let replies = sim.presence(
        first,
        "room0",
        1,
        json!([{"action": 4, "data": "y".repeat(60_000)}]),
    );
    assert_eq!(replies.last().unwrap().action, Action::Ack);
    // A leave makes room for the one refused.
    sim.presence(first, "room0", 2, json!([{"action": 3}]));
    let (last, _) = peers[3];
    let replies = sim.presence(last, "room3", 1, json!([{"action": 2, "data": big}]));
    assert_eq!(replies.last().unwrap().action, Action::Ack, "{replies:?}");
    assert_eq!(sim.members("room3").len(), 1);
}

#[test]
fn updates_that_each_grow_a_little_cannot_pass_the_member_data_budget() {
    // What a member counts once stored includes the ids the hub adds: counted only as sent,
    // an update a little larger than the last looked like no growth at all.
    let max = 4_000;
    let mut sim = Sim::new(HubConfig {
        max_member_bytes: max,
        ..HubConfig::default()
    });
    let (peer, _) = sim.join("clientId=grower", ROOM);
    let mut refused = None;
    for n in 0..100 {
        let data = "x".repeat(2_000 + 50 * n);
        let replies = sim.presence(peer, ROOM, n as i64, json!([{"action": 4, "data": data}]));
        let last = replies.last().unwrap();
        assert!(
            sim.hub.stats().member_bytes <= max,
            "{} bytes",
            sim.hub.stats().member_bytes
        );
        if last.action == Action::Nack {
            refused = code(last);
            break;
        }
    }
    assert_eq!(refused, Some(91003));
}

#[test]
fn attaches_and_sync_requests_repeated_in_one_turn_share_one_answer() {
    // Each would queue the whole set again (a SYNC is encoded for its request): a flood of
    // them in one turn would hold that many copies before the host could send any.
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    for n in 0..50 {
        let (member, _) = sim.join(&format!("clientId=m{n}"), ROOM);
        sim.presence(
            member,
            ROOM,
            0,
            json!([{"action": 2, "data": "x".repeat(500)}]),
        );
    }
    sim.take(watcher);
    let (flooder, _) = sim.join("clientId=f", ROOM);
    sim.send_in_one_turn(
        flooder,
        (0..100).map(|n| {
            if n % 2 == 0 {
                json!({"action": 10, "channel": ROOM})
            } else {
                json!({"action": 16, "channel": ROOM})
            }
        }),
    );
    let replies = sim.take(flooder);
    let count = |action| replies.iter().filter(|m| m.action == action).count();
    assert_eq!(count(Action::Attached), 1, "ATTACHED once");
    let syncs: Vec<_> = replies
        .iter()
        .filter(|m| m.action == Action::Sync)
        .map(|m| m.channel_serial.clone().unwrap_or_default().to_string())
        .collect();
    assert!(syncs.len() <= 2, "one SYNC, in pages: {syncs:?}");
    assert!(!sim.is_closed(flooder));
    // In a later turn, each is answered as usual.
    sim.send(flooder, json!({"action": 16, "channel": ROOM}));
    let members: usize = sim
        .take(flooder)
        .iter()
        .filter(|m| m.action == Action::Sync)
        .map(|m| m.presence.as_ref().map_or(0, Vec::len))
        .sum();
    assert_eq!(members, 50);
}

#[test]
fn a_shared_answer_never_stands_in_for_one_of_another_kind_or_for_another_transport() {
    let mut sim = Sim::new(HubConfig::default());
    let (member, _) = sim.join("clientId=m", ROOM);
    sim.presence(member, ROOM, 0, json!([{"action": 2}]));
    let attach = json!({"action": 10, "channel": ROOM});
    let sync = json!({"action": 16, "channel": ROOM});
    let of = |replies: &[rollcall::protocol::ProtocolMessage], action| {
        replies.iter().filter(|m| m.action == action).count()
    };
    // A SYNC request, then an ATTACH, in one turn: the ATTACH still gets its ATTACHED.
    let (watcher, _) = sim.join("clientId=w", ROOM);
    sim.send_in_one_turn(watcher, [sync.clone(), attach.clone()]);
    let replies = sim.take(watcher);
    assert_eq!(
        of(&replies, Action::Attached),
        1,
        "{} frames",
        replies.len()
    );
    // An ATTACHED without members, then a SYNC request: the request gets its (empty) SYNC.
    let (lonely, _) = sim.connect("clientId=l");
    sim.send_in_one_turn(
        lonely,
        [
            json!({"action": 10, "channel": "empty"}),
            json!({"action": 16, "channel": "empty"}),
        ],
    );
    let replies = sim.take(lonely);
    assert_eq!(of(&replies, Action::Sync), 1, "{} frames", replies.len());
    // An ATTACH, a resume on a new transport and its ATTACH, in one turn: the new transport
    // gets its own ATTACHED.
    let (first, connected) = sim.connect("clientId=r");
    let key = connected
        .connection_details
        .and_then(|d| d.connection_key)
        .unwrap()
        .to_string();
    sim.hub.handle_text(sim.now, first.0, &attach.to_string());
    let second = rollcall::hub::TransportId(1_000);
    let query = format!("clientId=r&resume={key}");
    sim.hub.handle_open(sim.now, second, &query, [7; 24]);
    sim.hub.handle_text(sim.now, second, &attach.to_string());
    sim.drain();
    let replies = sim.take(common::Peer(second));
    assert_eq!(replies[0].action, Action::Connected, "{:?}", replies[0]);
    assert_eq!(
        of(&replies, Action::Attached),
        1,
        "{} frames",
        replies.len()
    );
}

#[test]
fn channel_params_that_are_not_strings_do_not_cost_the_connection() {
    // ably-js sends params as the app gave them: `channels.get(name, { params: { rewind: 1 } })`.
    let mut sim = Sim::new(HubConfig::default());
    let (peer, _) = sim.connect("clientId=a");
    sim.send(
        peer,
        json!({"action": 10, "channel": ROOM, "params": {"rewind": 1, "delta": null}}),
    );
    let replies = sim.take(peer);
    assert_eq!(replies[0].action, Action::Attached, "{replies:?}");
    assert!(!sim.is_closed(peer));
}

#[test]
fn a_lone_surrogate_in_a_json_frame_arrives_as_the_replacement_character() {
    // What `JSON.stringify` writes for half an emoji (a browser that cut text short): refused
    // by a strict parser, taken in a msgpack frame as U+FFFD, and so here too.
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (peer, _) = sim.join("clientId=a", ROOM);
    sim.events(watcher);
    let frame = |serial: u32, data: &str| {
        format!(
            r#"{{"action":14,"channel":"room","msgSerial":{serial},"presence":[{{"action":2,"data":"{data}"}}]}}"#
        )
    };
    for (serial, sent, arrived) in [
        (0, r"a\ud800b", "a\u{FFFD}b"),
        (1, r"\udc00 and \ud83d\ude00", "\u{FFFD} and \u{1F600}"),
        (2, r"\\ud800 is text", r"\ud800 is text"),
    ] {
        sim.hub.handle_text(sim.now, peer.0, &frame(serial, sent));
        sim.drain();
        let replies = sim.take(peer);
        assert_eq!(
            replies.last().unwrap().action,
            Action::Ack,
            "{sent}: {replies:?}"
        );
        let events = sim.events(watcher);
        assert_eq!(
            events[0].data,
            Some(rollcall::protocol::Data::String(arrived.into())),
            "{sent}"
        );
    }
}

#[test]
fn a_re_entry_naming_an_operation_the_hub_refused_changes_nothing() {
    // A client whose NACK was lost with its transport re-enters, after its resume, carrying the
    // operation it still holds in flight: what the hub refused must not get in that way.
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (peer, id) = sim.join("clientId=a", ROOM);
    sim.presence(peer, ROOM, 0, json!([{"action": 2, "data": "a"}]));
    sim.events(watcher);
    let big = "x".repeat(70_000);
    let replies = sim.presence(peer, ROOM, 1, json!([{"action": 4, "data": big}]));
    assert_eq!(code(replies.last().unwrap()), Some(40009));
    let replies = sim.presence(
        peer,
        ROOM,
        2,
        json!([{"action": 2, "id": format!("{id}:1:0"), "data": "carried"}]),
    );
    assert_eq!(replies.last().unwrap().action, Action::Ack);
    assert!(
        sim.events(watcher).is_empty(),
        "the refused data was not applied"
    );
}

#[test]
fn channels_that_hold_nothing_are_forgotten_as_they_empty_not_a_history_ttl_later() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=watcher", ROOM);
    let (mallory, _) = sim.connect("clientId=mallory");
    // Attached and detached, name after name, within the inbound rate.
    for n in 0..500 {
        let name = format!("empty-{n}");
        sim.send(mallory, json!({"action": 10, "channel": name}));
        sim.send(mallory, json!({"action": 12, "channel": name}));
        sim.advance(25);
    }
    let replies = sim.take(mallory);
    assert_eq!(
        replies
            .iter()
            .filter(|m| m.action == Action::Detached)
            .count(),
        500
    );
    assert_eq!(sim.hub.stats().channels, 1, "only the watcher's is held");

    // A channel with history is held for it; one attached by a connection that goes is
    // forgotten with it.
    sim.presence(watcher, ROOM, 0, json!([{"action": 2}]));
    for n in 0..20 {
        sim.send(
            mallory,
            json!({"action": 10, "channel": format!("held-{n}")}),
        );
    }
    assert_eq!(sim.hub.stats().channels, 21);
    sim.send(watcher, json!({"action": 12, "channel": ROOM}));
    assert_eq!(sim.hub.stats().channels, 21, "the room's history keeps it");
    sim.send(mallory, json!({"action": 7}));
    sim.take(mallory);
    assert_eq!(sim.hub.stats().channels, 1);
    let history = sim.get(&format!("/channels/{ROOM}/presence/history"));
    assert_eq!(history.status, 200);
    let events: serde_json::Value = serde_json::from_slice(&history.body).unwrap();
    assert_eq!(events.as_array().map(Vec::len), Some(2), "{events}");
}
