//! SYNC: the presence set sent to a connection that attaches, paged under maxMessageSize.

mod common;

use std::collections::BTreeSet;

use common::Sim;
use rollcall::hub::HubConfig;
use rollcall::protocol::{flags, Action, PresenceAction};
use serde_json::json;

const ROOM: &str = "big-room";

#[test]
fn a_sync_of_2000_members_spans_several_pages_and_is_complete() {
    let mut sim = Sim::new(HubConfig::default());
    let mut expected = BTreeSet::new();
    for n in 0..2_000 {
        let client = format!("user-{n:04}");
        // Enter-only members (no presence-subscribe mode), so that the test is not N² frames.
        let (peer, connected) = sim.connect(&format!("clientId={client}"));
        let connection_id = connected.connection_id.unwrap().to_string();
        sim.send(
            peer,
            json!({"action": 10, "channel": ROOM, "flags": flags::PRESENCE}),
        );
        sim.take(peer);
        let data = format!(
            "{{\"device\":\"laptop\",\"n\":{n},\"pad\":\"{}\"}}",
            "x".repeat(n % 40)
        );
        sim.presence(
            peer,
            ROOM,
            0,
            json!([{"action": 2, "data": data, "encoding": "json"}]),
        );
        expected.insert((client, connection_id));
    }
    let (late, _) = sim.connect("clientId=late");
    sim.take(late);
    sim.sizes.clear();
    sim.send(late, json!({"action": 10, "channel": ROOM}));
    let replies = sim.take(late);
    let sizes = sim.sizes.remove(&late.0).unwrap();
    assert_eq!(replies[0].action, Action::Attached);
    let pages: Vec<_> = replies[1..].iter().collect();
    assert!(pages.len() >= 3, "{} pages", pages.len());
    assert!(sizes.iter().all(|&s| s <= 65_536), "{sizes:?}");

    let mut seen = BTreeSet::new();
    let sync_id = pages[0]
        .channel_serial
        .as_deref()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    for (i, page) in pages.iter().enumerate() {
        assert_eq!(page.action, Action::Sync);
        let serial = page.channel_serial.as_deref().unwrap();
        let (id, cursor) = serial.split_once(':').unwrap();
        assert_eq!(id, sync_id, "one sync id throughout");
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        assert_eq!(
            cursor.is_empty(),
            i + 1 == pages.len(),
            "only the last cursor is empty"
        );
        for item in page.presence.as_ref().unwrap() {
            assert_eq!(item.action, PresenceAction::Present);
            assert!(item.id.is_some() && item.timestamp.is_some());
            assert_eq!(item.encoding.as_deref(), Some("json"));
            let key = (
                item.client_id.as_deref().unwrap().to_owned(),
                item.connection_id.as_deref().unwrap().to_owned(),
            );
            assert!(seen.insert(key), "no member twice");
        }
    }
    assert_eq!(seen, expected);
}

#[test]
fn an_empty_channel_attaches_without_a_sync() {
    let mut sim = Sim::new(HubConfig::default());
    let (peer, _) = sim.connect("clientId=a");
    sim.send(peer, json!({"action": 10, "channel": ROOM}));
    let replies = sim.take(peer);
    assert_eq!(replies.len(), 1);
    assert!(!replies[0].has_flag(flags::HAS_PRESENCE));
}

#[test]
fn a_client_may_ask_for_the_set_again() {
    let mut sim = Sim::new(HubConfig::default());
    let (alice, _) = sim.join("clientId=alice", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.send(alice, json!({"action": 16, "channel": ROOM}));
    let replies = sim.take(alice);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].action, Action::Sync);
    assert_eq!(replies[0].presence.as_ref().unwrap().len(), 1);
    assert!(replies[0].channel_serial.as_deref().unwrap().ends_with(':'));
    // For a channel it has not attached, it is told so rather than left waiting.
    sim.send(alice, json!({"action": 16, "channel": "elsewhere"}));
    let replies = sim.take(alice);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].action, Action::Error);
    assert_eq!(replies[0].channel.as_deref(), Some("elsewhere"));
    assert_eq!(common::code(&replies[0]), Some(90001));
    assert!(!sim.is_closed(alice), "the connection carries on");
}

#[test]
fn a_burst_of_events_larger_than_a_frame_is_split() {
    let config = HubConfig {
        max_message_size: 2_000,
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (server, _) = sim.connect("key=a.b:c");
    sim.send(server, json!({"action": 10, "channel": ROOM}));
    let items: Vec<_> = (0..20)
        .map(|n| json!({"action": 2, "clientId": format!("c{n}"), "data": "y".repeat(50)}))
        .collect();
    let text =
        json!({"action": 14, "channel": ROOM, "msgSerial": 0, "presence": items}).to_string();
    assert!(text.len() < 2_000);
    sim.send_text(server, &text);
    sim.sizes.clear();
    let _ = sim.take(watcher);
    // A leave of everything at once (the connection closes) makes the burst.
    sim.send(server, json!({"action": 7}));
    let frames = sim.take(watcher);
    let sizes = sim.sizes.remove(&watcher.0).unwrap();
    assert!(frames.len() > 1, "split into {} frames", frames.len());
    assert!(sizes.iter().all(|&s| s <= 2_000), "{sizes:?}");
    let leaves: usize = frames
        .iter()
        .map(|f| f.presence.as_ref().unwrap().len())
        .sum();
    assert_eq!(leaves, 20);
}

#[test]
fn a_sync_shows_the_set_as_it_is_now_after_others_were_sent_before_a_change() {
    let mut sim = Sim::new(HubConfig::default());
    let (alice, _) = sim.join("clientId=alice", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "first"}]));
    let synced = |sim: &mut Sim, query: &str| -> Vec<Option<String>> {
        let (peer, _) = sim.connect(query);
        sim.send(peer, json!({"action": 10, "channel": ROOM}));
        sim.take(peer)
            .iter()
            .filter(|m| m.action == Action::Sync)
            .flat_map(|m| m.presence.clone().unwrap_or_default())
            .map(|m| common::data(&m))
            .collect()
    };
    // Two in each format while nothing changes (the second of each reuses the first's
    // encoding)...
    for query in [
        "clientId=j1",
        "clientId=j2",
        "clientId=m1&format=msgpack",
        "clientId=m2&format=msgpack",
    ] {
        assert_eq!(
            synced(&mut sim, query),
            [Some("first".to_owned())],
            "{query}"
        );
    }
    // ...then a change, an enter, and a leave: each SYNC after it shows it.
    sim.presence(alice, ROOM, 1, json!([{"action": 4, "data": "second"}]));
    for query in ["clientId=j3", "clientId=m3&format=msgpack"] {
        assert_eq!(
            synced(&mut sim, query),
            [Some("second".to_owned())],
            "{query}"
        );
    }
    let (bob, _) = sim.join("clientId=bob", ROOM);
    sim.presence(bob, ROOM, 0, json!([{"action": 2, "data": "bob"}]));
    assert_eq!(synced(&mut sim, "clientId=j4").len(), 2);
    sim.presence(alice, ROOM, 2, json!([{"action": 3}]));
    assert_eq!(
        synced(&mut sim, "clientId=m4&format=msgpack"),
        [Some("bob".to_owned())]
    );
}

// ---- re-attaching after a resume ------------------------------------------------------------

/// The connection key a CONNECTED gives.
fn key_of(connected: &rollcall::protocol::ProtocolMessage) -> String {
    connected
        .connection_details
        .as_ref()
        .and_then(|d| d.connection_key.as_deref())
        .unwrap()
        .to_string()
}

/// The `channelSerial` of the last frame that carried one.
fn last_serial(messages: &[rollcall::protocol::ProtocolMessage]) -> String {
    messages
        .iter()
        .rev()
        .filter(|m| matches!(m.action, Action::Presence | Action::Attached))
        .find_map(|m| m.channel_serial.as_deref())
        .expect("a frame with a channelSerial")
        .to_string()
}

/// A watcher (a rollcall client) attached to a room where bob is present; what it heard, and
/// its key.
/// A rollcall client's re-attach after a resume, having heard up to `serial`.
fn resume_attach(serial: &str) -> serde_json::Value {
    json!({"action": 10, "channel": "lobby", "flags": flags::ATTACH_RESUME, "channelSerial": serial})
}

const ROLLCALL: &str = "rollcall-js%2F0.1.0";

/// The hub as a Durable Object runs it.
fn edge() -> HubConfig {
    HubConfig {
        persistence: true,
        host_pings: false,
        ..HubConfig::default()
    }
}

fn watching(
    sim: &mut Sim,
) -> (
    common::Peer,
    common::Peer,
    String,
    Vec<rollcall::protocol::ProtocolMessage>,
) {
    watching_as(sim, ROLLCALL)
}

/// As [`watching`], for a watcher whose client says it is `agent`.
fn watching_as(
    sim: &mut Sim,
    agent: &str,
) -> (
    common::Peer,
    common::Peer,
    String,
    Vec<rollcall::protocol::ProtocolMessage>,
) {
    let (bob, _) = sim.join("clientId=bob", "lobby");
    let (watcher, connected) = sim.connect(&format!("clientId=w&agent={agent}"));
    sim.send(watcher, json!({"action": 10, "channel": "lobby"}));
    sim.presence(bob, "lobby", 0, json!([{"action": 2, "data": "here"}]));
    (bob, watcher, key_of(&connected), sim.take(watcher))
}

/// What the watcher gets back for a re-attach after it resumed.
fn reattach(
    sim: &mut Sim,
    key: &str,
    attach: serde_json::Value,
) -> Vec<rollcall::protocol::ProtocolMessage> {
    reattach_as(sim, "w", ROLLCALL, key, attach)
}

#[test]
fn a_client_that_heard_everything_before_its_transport_went_re_attaches_without_a_sync() {
    let mut sim = Sim::new(HubConfig::default());
    let (bob, watcher, key, heard) = watching(&mut sim);
    let serial = last_serial(&heard);
    sim.drop_transport(watcher);
    // While it is away bob changes: the hub keeps the event for its resume.
    sim.presence(bob, "lobby", 1, json!([{"action": 4, "data": "away"}]));
    let (again, resumed) = sim.connect(&format!(
        "clientId=w&agent=rollcall-js%2F0.1.0&resume={key}"
    ));
    assert!(resumed.error.is_none(), "{resumed:?}");
    let replayed = sim.take(again);
    assert!(
        replayed.iter().any(|m| m.action == Action::Presence),
        "{replayed:?}"
    );
    sim.send(again, resume_attach(&serial));
    let replies = sim.take(again);
    assert_eq!(replies.len(), 1, "{replies:?}");
    let flags_of = replies[0].flags.unwrap_or(0);
    assert_eq!(replies[0].action, Action::Attached);
    assert!(flags_of & flags::RESUMED != 0, "{replies:?}");
    assert!(flags_of & flags::HAS_PRESENCE == 0, "{replies:?}");
    // It says how far the channel has got, which the replay brought the client to.
    assert_eq!(
        replies[0].channel_serial.as_deref(),
        Some(last_serial(&replayed).as_str())
    );
}

#[test]
fn a_client_that_missed_a_frame_before_its_transport_went_takes_a_sync() {
    let mut sim = Sim::new(HubConfig::default());
    let (bob, watcher, key, heard) = watching(&mut sim);
    // Bob's update is sent to the watcher's socket, which dies before it arrives.
    let before = last_serial(&heard);
    sim.presence(bob, "lobby", 1, json!([{"action": 4, "data": "away"}]));
    sim.take(watcher);
    sim.drop_transport(watcher);
    let replies = reattach(&mut sim, &key, resume_attach(&before));
    assert_eq!(replies[0].action, Action::Attached, "{replies:?}");
    let flags_of = replies[0].flags.unwrap_or(0);
    // Not RESUMED: the client must not keep its view.
    assert!(flags_of & flags::RESUMED == 0, "{replies:?}");
    assert!(flags_of & flags::HAS_PRESENCE != 0, "{replies:?}");
    let synced: Vec<_> = replies
        .iter()
        .filter(|m| m.action == Action::Sync)
        .flat_map(|m| m.presence.clone().unwrap_or_default())
        .collect();
    assert_eq!(synced.len(), 1);
    assert_eq!(common::data(&synced[0]).as_deref(), Some("away"));
}

#[test]
fn a_client_whose_sync_may_not_have_arrived_whole_takes_a_sync_again() {
    let mut sim = Sim::new(HubConfig::default());
    watching(&mut sim);
    // A second watcher attaches: its ATTACHED and SYNC are the last it is sent, and nothing
    // after them shows that they arrived.
    let (late, connected) = sim.connect(&format!("clientId=late&agent={ROLLCALL}"));
    sim.send(late, json!({"action": 10, "channel": "lobby"}));
    let heard = sim.take(late);
    let serial = last_serial(&heard);
    sim.drop_transport(late);
    let attach = resume_attach(&serial);
    let replies = reattach_as(&mut sim, "late", ROLLCALL, &key_of(&connected), attach);
    assert!(
        replies.iter().any(|m| m.action == Action::Sync),
        "{replies:?}"
    );
}

/// What `client`, saying it is `agent`, gets back for `attach` once it resumed with `key`.
fn reattach_as(
    sim: &mut Sim,
    client: &str,
    agent: &str,
    key: &str,
    attach: serde_json::Value,
) -> Vec<rollcall::protocol::ProtocolMessage> {
    let (again, resumed) = sim.connect(&format!("clientId={client}&agent={agent}&resume={key}"));
    assert!(resumed.error.is_none(), "{resumed:?}");
    sim.take(again);
    sim.send(again, attach);
    sim.take(again)
}

#[test]
fn a_client_that_does_not_ask_to_resume_its_view_takes_a_sync_as_ably_clients_do() {
    let mut sim = Sim::new(HubConfig::default());
    let (_bob, watcher, key, heard) = watching(&mut sim);
    let serial = last_serial(&heard);
    sim.drop_transport(watcher);
    let replies = reattach(
        &mut sim,
        &key,
        json!({"action": 10, "channel": "lobby", "channelSerial": serial}),
    );
    let flags_of = replies[0].flags.unwrap_or(0);
    assert!(flags_of & flags::RESUMED != 0, "{replies:?}");
    assert!(flags_of & flags::HAS_PRESENCE != 0, "{replies:?}");
    assert!(
        replies.iter().any(|m| m.action == Action::Sync),
        "{replies:?}"
    );
}

/// [`watching`] on the hub as a Durable Object runs it: the hub, bob, the watcher, its key and
/// the last serial it heard.
fn watching_on_the_edge() -> (Sim, common::Peer, common::Peer, String, String) {
    let mut sim = Sim::new(edge());
    let (bob, watcher, key, heard) = watching(&mut sim);
    let serial = last_serial(&heard);
    (sim, bob, watcher, key, serial)
}

/// Whether `replies` vouch for the client's view: a RESUMED ATTACHED, no members.
fn vouched(replies: &[rollcall::protocol::ProtocolMessage]) -> bool {
    let attached = replies.iter().find(|m| m.action == Action::Attached);
    attached.is_some_and(|a| {
        let f = a.flags.unwrap_or(0);
        f & flags::RESUMED != 0 && f & flags::HAS_PRESENCE == 0
    }) && !replies.iter().any(|m| m.action == Action::Sync)
}

#[test]
fn a_client_that_missed_nothing_while_the_object_slept_keeps_its_view() {
    let (mut sim, _bob, watcher, key, serial) = watching_on_the_edge();
    sim.drop_transport(watcher);
    sim.evict(edge());
    let replies = reattach(&mut sim, &key, resume_attach(&serial));
    assert!(vouched(&replies), "{replies:?}");
}

#[test]
fn a_client_whose_waiting_frames_went_with_the_object_takes_a_sync() {
    let (mut sim, bob, watcher, key, serial) = watching_on_the_edge();
    sim.drop_transport(watcher);
    // Kept for the watcher's resume, in memory: gone when the object is evicted.
    sim.presence(bob, "lobby", 1, json!([{"action": 4, "data": "away"}]));
    sim.evict(edge());
    let replies = reattach(&mut sim, &key, resume_attach(&serial));
    assert!(common::attached_afresh(&replies), "{replies:?}");
}

#[test]
fn after_a_deploy_closed_every_socket_a_client_that_heard_everything_keeps_its_view() {
    let (mut sim, _bob, watcher, key, serial) = watching_on_the_edge();
    sim.close_unnoticed(watcher);
    sim.evict(edge());
    let replies = reattach(&mut sim, &key, resume_attach(&serial));
    assert!(vouched(&replies), "{replies:?}");
}

#[test]
fn after_a_deploy_a_client_that_lost_the_last_frame_with_its_socket_takes_a_sync() {
    let (mut sim, bob, watcher, key, serial) = watching_on_the_edge();
    // Sent on the watcher's socket, never read: the socket dies with the old object.
    sim.presence(bob, "lobby", 1, json!([{"action": 4, "data": "away"}]));
    sim.take(watcher);
    sim.close_unnoticed(watcher);
    sim.evict(edge());
    let replies = reattach(&mut sim, &key, resume_attach(&serial));
    assert!(
        replies.iter().any(|m| m.action == Action::Sync),
        "{replies:?}"
    );
}

#[test]
fn other_sdks_that_send_attach_resume_get_the_sync_ably_gives_them() {
    // Some Ably SDKs set ATTACH_RESUME on every re-attach and read an ATTACHED without
    // HAS_PRESENCE as an empty channel: they get what they always got.
    let mut sim = Sim::new(HubConfig::default());
    let java = "ably-java%2F1.2.40";
    let (_bob, watcher, key, heard) = watching_as(&mut sim, java);
    let serial = last_serial(&heard);
    sim.drop_transport(watcher);
    let attach = resume_attach(&serial);
    let replies = reattach_as(&mut sim, "w", java, &key, attach);
    let flags_of = replies[0].flags.unwrap_or(0);
    assert!(flags_of & flags::RESUMED != 0, "{replies:?}");
    assert!(flags_of & flags::HAS_PRESENCE != 0, "{replies:?}");
    assert!(
        replies.iter().any(|m| m.action == Action::Sync),
        "{replies:?}"
    );
}

#[test]
fn a_serial_heard_before_a_durable_object_slept_is_not_taken_for_one_after_it_woke() {
    let mut sim = Sim::new(edge());
    let (bob, watcher, key, heard) = watching(&mut sim);
    let before = last_serial(&heard);
    // The object sleeps with the watcher's socket open, and wakes: its channels count on.
    sim.evict(edge());
    sim.presence(bob, "lobby", 1, json!([{"action": 4, "data": "away"}]));
    // That update carries a serial after the one the watcher heard before the sleep, and is
    // lost with its socket.
    assert_ne!(last_serial(&sim.take(watcher)), before);
    sim.drop_transport(watcher);
    let replies = reattach(&mut sim, &key, resume_attach(&before));
    assert!(
        replies.iter().any(|m| m.action == Action::Sync),
        "{replies:?}"
    );
}

#[test]
fn a_grace_status_follows_the_enter_it_is_about_even_within_one_turn() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.connect("clientId=w&agent=rollcall-js%2F0.1.0");
    sim.send(watcher, json!({"action": 10, "channel": "lobby"}));
    sim.take(watcher);
    let (alice, _) = sim.join("clientId=alice", "lobby");
    // Alice enters and her socket dies in the same turn of the host's event loop.
    let enter =
        json!({"action": 14, "channel": "lobby", "msgSerial": 0, "presence": [{"action": 2}]});
    sim.hub.handle_text(sim.now, alice.0, &enter.to_string());
    sim.hub.handle_close(sim.now, alice.0);
    sim.drain();
    sim.advance(2_000);
    let order: Vec<Action> = sim
        .take(watcher)
        .into_iter()
        .map(|m| m.action)
        .filter(|a| matches!(a, Action::Presence | Action::ConnectionStatus))
        .collect();
    assert_eq!(order, [Action::Presence, Action::ConnectionStatus]);
}

/// A rollcall watcher of the lobby, away while bob changes more often than its replay holds,
/// resumed: the hub, bob, the watcher's key, the last serial it heard before it went, and its
/// new transport.
fn overflowed_and_resumed() -> (Sim, common::Peer, String, String, common::Peer) {
    let config = HubConfig {
        replay_limit: 2,
        ..HubConfig::default()
    };
    overflowed_by(config, "")
}

/// The same, with a hub of `config`, and `pad` in each of bob's changes.
fn overflowed_by(
    config: HubConfig,
    pad: &str,
) -> (Sim, common::Peer, String, String, common::Peer) {
    let mut sim = Sim::new(config);
    let (bob, watcher, key, heard) = watching(&mut sim);
    let serial = last_serial(&heard);
    sim.drop_transport(watcher);
    for n in 1..=5 {
        sim.presence(
            bob,
            "lobby",
            n,
            json!([{"action": 4, "data": format!("v{n}{pad}")}]),
        );
    }
    let (again, resumed) = sim.connect(&format!("clientId=w&agent={ROLLCALL}&resume={key}"));
    assert!(resumed.error.is_none(), "{resumed:?}");
    (sim, bob, key, serial, again)
}

#[test]
fn a_rollcall_client_that_missed_more_than_was_kept_takes_one_sync_on_its_re_attach() {
    // More frames than the replay holds, or fewer that are larger than its bytes allow.
    let by_bytes = HubConfig {
        replay_bytes: 4_000,
        ..HubConfig::default()
    };
    for (mut sim, _bob, _key, serial, again) in [
        overflowed_and_resumed(),
        overflowed_by(by_bytes, &"x".repeat(1_500)),
    ] {
        sim.send(again, resume_attach(&serial));
        assert_one_fresh_attach(&sim.take(again));
    }
}

/// One ATTACHED, not RESUMED (events were missed, RTL12), and one SYNC.
fn assert_one_fresh_attach(replies: &[rollcall::protocol::ProtocolMessage]) {
    let attached: Vec<_> = replies
        .iter()
        .filter(|m| m.action == Action::Attached)
        .collect();
    assert_eq!(attached.len(), 1, "{replies:?}");
    assert_eq!(
        attached[0].flags.unwrap_or(0) & flags::RESUMED,
        0,
        "{replies:?}"
    );
    assert_eq!(
        replies.iter().filter(|m| m.action == Action::Sync).count(),
        1,
        "{replies:?}"
    );
}

#[test]
fn a_rollcall_client_that_missed_more_than_was_kept_is_not_told_resumed_on_a_plain_re_attach() {
    // A client that dropped in the middle of a SYNC re-attaches without ATTACH_RESUME (it
    // has no whole view to keep): after a replay that overflowed it must still hear that
    // events were missed (RTL12), not RESUMED.
    let (mut sim, _bob, _key, _serial, again) = overflowed_and_resumed();
    sim.take(again);
    let attach = json!({"action": 10, "channel": "lobby"});
    sim.send(again, attach.clone());
    assert_one_fresh_attach(&sim.take(again));
    // Once told, the channel is continuous again: the next attach on it is a resumed one.
    sim.send(again, attach);
    let replies = sim.take(again);
    assert!(
        replies
            .iter()
            .any(|m| m.action == Action::Attached && m.flags.unwrap_or(0) & flags::RESUMED != 0),
        "{replies:?}"
    );
}

#[test]
fn events_lost_to_a_client_are_not_vouched_for_after_a_second_drop_before_its_re_attach() {
    let (mut sim, bob, key, _serial, again) = overflowed_and_resumed();
    // It resumed (more was missed than kept), hears one more event on its new transport, and
    // loses that transport too before it re-attaches.
    sim.presence(bob, "lobby", 6, json!([{"action": 4, "data": "v6"}]));
    let serial = last_serial(&sim.take(again));
    sim.drop_transport(again);
    let replies = reattach(&mut sim, &key, resume_attach(&serial));
    assert!(!vouched(&replies), "{replies:?}");
    assert!(
        replies.iter().any(|m| m.action == Action::Sync),
        "{replies:?}"
    );
}

#[test]
fn a_channel_held_for_a_recovering_client_is_never_vouched_for() {
    // The client that recovered has no view of the channel: whatever serial it names, its
    // first attach of it is a fresh one, even after it dropped and resumed before claiming it.
    let mut sim = Sim::new(HubConfig::default());
    let (_bob, _watcher, key, heard) = watching(&mut sim);
    let serial = last_serial(&heard);
    let (recovering, recovered) = sim.open(&format!("clientId=w&agent={ROLLCALL}&recover={key}"));
    assert!(recovered.error.is_none(), "{recovered:?}");
    sim.drop_transport(recovering);
    let (again, resumed) = sim.connect(&format!(
        "clientId=w&agent={ROLLCALL}&resume={}",
        key_of(&recovered)
    ));
    assert!(resumed.error.is_none(), "{resumed:?}");
    sim.take(again);
    sim.send(again, resume_attach(&serial));
    let replies = sim.take(again);
    assert!(common::attached_afresh(&replies), "{replies:?}");
}

#[test]
fn a_client_attaching_in_the_turn_of_an_enter_and_its_leave_sees_neither() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (alice, _) = sim.join("clientId=alice", ROOM);
    let (bob, _) = sim.join("clientId=bob", ROOM);
    let (late, _) = sim.connect("clientId=late");
    let enter = |serial: i64, action: u8| json!({"action": 14, "channel": ROOM, "msgSerial": serial, "presence": [{"action": action}]});
    // One turn of the host: alice enters and leaves, the late client attaches, bob enters.
    let frames = [
        (alice, enter(0, 2)),
        (alice, enter(1, 3)),
        (late, json!({"action": 10, "channel": ROOM})),
        (bob, enter(0, 2)),
    ];
    for (peer, frame) in frames {
        sim.hub.handle_text(sim.now, peer.0, &frame.to_string());
    }
    sim.drain();
    // Those listening before hear all three; the late client's SYNC holds the outcome of
    // those before it attached (nobody), and it is told only of what came after: bob.
    let watched = sim.take(watcher);
    let heard = sim.take(late);
    assert_eq!(heard[0].action, Action::Attached);
    let events = |frames: &[rollcall::protocol::ProtocolMessage]| -> Vec<(PresenceAction, String)> {
        frames
            .iter()
            .filter(|m| m.action == Action::Presence)
            .flat_map(|m| m.presence.iter().flatten())
            .map(|m| {
                (
                    m.action,
                    m.client_id.as_deref().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(events(&watched).len(), 3);
    assert_eq!(events(&heard), [(PresenceAction::Enter, "bob".to_owned())]);
    // Numbered as the others hear it: the frame names the channel's serial after bob's enter.
    let last = |frames: &[rollcall::protocol::ProtocolMessage]| {
        frames
            .iter()
            .rev()
            .find(|m| m.action == Action::Presence)
            .and_then(|m| m.channel_serial.clone())
    };
    assert!(last(&heard).is_some());
    assert_eq!(last(&heard), last(&watched));
}

#[test]
fn a_resumed_attach_of_an_empty_channel_still_ends_a_sync() {
    // A SYNC cut off with the transport, every member gone meanwhile: the client (an Ably SDK,
    // which asks no ATTACH_RESUME) must still see a SYNC end, or it waits for one for ever.
    let mut sim = Sim::new(HubConfig::default());
    let (alice, connected) = sim.connect("clientId=alice&remainPresentFor=60000");
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    sim.take(alice);
    sim.drop_transport(alice);
    let key = key_of(&connected);
    let (again, resumed) = sim.connect(&format!("clientId=alice&resume={key}"));
    assert_eq!(resumed.connection_id, connected.connection_id);
    sim.send(again, json!({"action": 10, "channel": ROOM}));
    let replies = sim.take(again);
    let attached = replies
        .iter()
        .find(|m| m.action == Action::Attached)
        .expect("an ATTACHED");
    assert!(attached.has_flag(flags::RESUMED));
    assert!(attached.has_flag(flags::HAS_PRESENCE));
    let sync = replies
        .iter()
        .find(|m| m.action == Action::Sync)
        .expect("a SYNC");
    assert!(sync
        .channel_serial
        .as_deref()
        .is_some_and(|c| c.ends_with(':')));
    assert!(sync.presence.as_ref().is_none_or(Vec::is_empty));
}

#[test]
fn an_attach_that_adds_presence_subscribe_is_not_a_resumed_one() {
    // As ably-js's setOptions() does, on a channel attached without PRESENCE_SUBSCRIBE: it
    // heard nothing of the channel until now, so the attach is a new one (RTL15c).
    let mut sim = Sim::new(HubConfig::default());
    let (alice, _) = sim.connect("clientId=alice");
    let mut attach = |modes: u64| {
        sim.send(
            alice,
            json!({"action": 10, "channel": ROOM, "flags": modes}),
        );
        let replies = sim.take(alice);
        let attached = replies.iter().find(|m| m.action == Action::Attached);
        attached.expect("an ATTACHED").has_flag(flags::RESUMED)
    };
    attach(flags::PRESENCE);
    let both = flags::PRESENCE | flags::PRESENCE_SUBSCRIBE;
    assert!(!attach(both), "resumed, adding PRESENCE_SUBSCRIBE");
    // The same modes again: continuous, as before.
    assert!(attach(both), "not resumed, with the same modes");
}
