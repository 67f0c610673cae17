//! Abrupt drops, the grace window, resume, heartbeats and idle detection, in simulated time.

mod common;

use common::{code, summary, Sim};
use rollcall::hub::HubConfig;
use rollcall::protocol::{flags, Action, PresenceAction};
use serde_json::json;

const ROOM: &str = "room";

fn key_of(connected: &rollcall::protocol::ProtocolMessage) -> String {
    connected
        .connection_details
        .as_ref()
        .unwrap()
        .connection_key
        .as_deref()
        .unwrap()
        .to_owned()
}

#[test]
fn an_abrupt_drop_leaves_exactly_at_remain_present_for() {
    for remain in [None, Some(1_000u64), Some(30_000)] {
        let mut sim = Sim::new(HubConfig::default());
        let (watcher, _) = sim.join("clientId=w", ROOM);
        let query = match remain {
            Some(ms) => format!("clientId=alice&remainPresentFor={ms}"),
            None => "clientId=alice".to_owned(),
        };
        let (alice, _) = sim.join(&query, ROOM);
        sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "d"}]));
        sim.events(watcher);
        sim.drop_transport(alice);
        let remain = remain.unwrap_or(15_000);
        sim.advance(remain - 1);
        assert!(
            sim.events(watcher).is_empty(),
            "still present before {remain} ms"
        );
        assert_eq!(sim.members(ROOM).len(), 1);
        sim.advance(1);
        let events = sim.events(watcher);
        assert_eq!(
            summary(&events),
            vec![(PresenceAction::Leave, "alice".to_owned())]
        );
        assert_eq!(events[0].timestamp, Some(sim.now as i64));
        assert_eq!(common::data(&events[0]).as_deref(), Some("d"));
        assert!(sim.members(ROOM).is_empty());
    }
}

#[test]
fn a_resume_inside_the_window_gives_no_events_for_anyone() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (alice, connected) = sim.connect("clientId=alice&remainPresentFor=5000");
    let id = connected.connection_id.clone().unwrap();
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "d"}]));
    sim.take(alice);
    sim.events(watcher);

    // ably-js sends DISCONNECT when it tears a transport down, then resumes.
    sim.send(alice, json!({"action": 5}));
    assert!(sim.is_closed(alice));
    sim.advance(4_000);
    let (again, resumed) = sim.connect(&format!(
        "clientId=alice&remainPresentFor=5000&resume={}",
        key_of(&connected)
    ));
    assert_eq!(
        resumed.connection_id,
        Some(id.clone()),
        "the same connection"
    );
    assert!(resumed.error.is_none());
    // The client re-attaches and re-enters, as clients do after every reconnect.
    sim.send(again, json!({"action": 10, "channel": ROOM}));
    let replies = sim.take(again);
    assert!(replies[0].has_flag(flags::RESUMED));
    assert!(replies[0].has_flag(flags::HAS_PRESENCE));
    assert!(replies.iter().any(|m| m.action == Action::Sync));
    sim.presence(
        again,
        ROOM,
        1,
        json!([{"action": 2, "data": "d", "id": format!("{id}:0:0")}]),
    );
    sim.advance(60_000);
    assert!(sim.events(watcher).is_empty(), "no leave and no enter");
    assert_eq!(
        sim.members(ROOM),
        vec![("alice".to_owned(), id.to_string())]
    );
}

#[test]
fn a_resume_after_the_window_follows_a_leave_and_the_re_entry_is_an_enter() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (alice, connected) = sim.connect("clientId=alice&remainPresentFor=2000");
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.events(watcher);
    sim.drop_transport(alice);
    sim.advance(3_000);
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Leave, "alice".to_owned())]
    );
    let (again, resumed) = sim.connect(&format!(
        "clientId=alice&remainPresentFor=2000&resume={}",
        key_of(&connected)
    ));
    assert_eq!(
        resumed.connection_id, connected.connection_id,
        "still within connectionStateTtl"
    );
    sim.send(again, json!({"action": 10, "channel": ROOM}));
    // A re-entry names the enter it restores (RTP17g): the hub's leave was not the client's own,
    // so it brings the member back.
    let id = format!("{}:0:0", connected.connection_id.as_deref().unwrap());
    sim.presence(again, ROOM, 1, json!([{"action": 2, "id": id}]));
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Enter, "alice".to_owned())]
    );
}

#[test]
fn a_resume_after_the_state_ttl_gets_a_new_connection_and_80008() {
    let mut sim = Sim::new(HubConfig::default());
    let (alice, connected) = sim.connect("clientId=alice");
    sim.drop_transport(alice);
    sim.advance(120_001);
    assert_eq!(sim.hub.stats().connections, 0, "the state is gone");
    let (_, resumed) = sim.connect(&format!("clientId=alice&resume={}", key_of(&connected)));
    assert_ne!(resumed.connection_id, connected.connection_id);
    assert_eq!(code(&resumed), Some(80008));
}

#[test]
fn a_long_grace_holds_members_not_an_empty_connection() {
    let config = HubConfig {
        max_connections: 2,
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    // Both ask for an hour's grace; only one has a member to hold.
    let (empty, _) = sim.connect("clientId=e&remainPresentFor=3600000");
    let (held, _) = sim.join("clientId=h&remainPresentFor=3600000", "room");
    sim.presence(held, "room", 0, serde_json::json!([{"action": 2}]));
    sim.drop_transport(empty);
    sim.drop_transport(held);
    sim.advance(120_001);
    assert_eq!(
        sim.hub.stats().connections,
        1,
        "the empty one is gone at the state TTL"
    );
    assert_eq!(
        sim.members("room").len(),
        1,
        "the member is held for its grace"
    );
    let (_, third) = sim.open("clientId=t");
    assert_eq!(third.action, Action::Connected, "its place is free again");
    sim.advance(3_600_000);
    assert!(sim.members("room").is_empty());
}

#[test]
fn a_resume_cannot_change_identity() {
    let mut sim = Sim::new(HubConfig::default());
    let (alice, connected) = sim.connect("clientId=alice");
    sim.drop_transport(alice);
    let (_, other) = sim.connect(&format!("clientId=mallory&resume={}", key_of(&connected)));
    assert_ne!(other.connection_id, connected.connection_id);
    assert_eq!(code(&other), Some(80008));
}

#[test]
fn events_missed_while_dropped_are_delivered_on_resume() {
    let mut sim = Sim::new(HubConfig::default());
    let (bob, _) = sim.join("clientId=bob", ROOM);
    let (watcher, connected) = sim.connect("clientId=w");
    sim.send(watcher, json!({"action": 10, "channel": ROOM}));
    sim.take(watcher);
    sim.drop_transport(watcher);
    sim.presence(bob, ROOM, 0, json!([{"action": 2, "data": "hello"}]));
    let (again, resumed) = sim.connect(&format!("clientId=w&resume={}", key_of(&connected)));
    assert_eq!(resumed.connection_id, connected.connection_id);
    let events = sim.events(again);
    assert_eq!(
        summary(&events),
        vec![(PresenceAction::Enter, "bob".to_owned())]
    );
}

#[test]
fn a_second_transport_resuming_takes_over_the_first() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (alice, connected) = sim.connect("clientId=alice");
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.events(watcher);
    // The client noticed the drop before the hub did.
    let (again, resumed) = sim.connect(&format!("clientId=alice&resume={}", key_of(&connected)));
    assert_eq!(resumed.connection_id, connected.connection_id);
    assert!(sim.is_closed(alice), "the old transport is closed");
    sim.advance(60_000);
    assert!(sim.events(watcher).is_empty());
    assert!(!sim.is_closed(again));
    assert_eq!(sim.members(ROOM).len(), 1);
}

#[test]
fn heartbeats_go_out_every_interval_to_connections_that_asked() {
    let mut sim = Sim::new(HubConfig::default());
    let (browser, connected) = sim.connect("clientId=a&heartbeats=true&heartbeatInterval=5000");
    assert_eq!(
        connected.connection_details.unwrap().max_idle_interval,
        Some(5_000),
        "maxIdleInterval tells the client the cadence"
    );
    let start = sim.now;
    let mut seen = Vec::new();
    for _ in 0..40 {
        sim.advance(500);
        for m in sim.take(browser) {
            if m.action == Action::Heartbeat {
                seen.push(sim.now - start);
            }
        }
    }
    assert_eq!(seen, vec![5_000, 10_000, 15_000, 20_000]);
    assert!(!sim.is_closed(browser), "a peer that answers pings stays");
}

#[test]
fn connections_without_protocol_heartbeats_get_pings() {
    let mut sim = Sim::new(HubConfig::default());
    let (node, _) = sim.connect("clientId=a&heartbeats=false&heartbeatInterval=5000");
    sim.advance(20_000);
    assert!(sim.take(node).iter().all(|m| m.action != Action::Heartbeat));
    let pings: Vec<u64> = sim
        .pings
        .iter()
        .filter(|(_, t)| *t == node.0)
        .map(|(at, _)| *at)
        .collect();
    assert!(pings.len() >= 3, "{pings:?}");
    assert!(!sim.is_closed(node));
}

#[test]
fn a_silent_connection_is_dropped_after_its_interval_plus_the_margin_then_leaves() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w&heartbeatInterval=60000", ROOM);
    let (frozen, _) = sim.join(
        "clientId=f&heartbeatInterval=2000&remainPresentFor=3000",
        ROOM,
    );
    sim.presence(frozen, ROOM, 0, json!([{"action": 2}]));
    sim.events(watcher);
    let frozen_at = sim.now;
    sim.frozen.insert(frozen.0);
    // Margin: half the interval, at least one second.
    sim.advance(2_999);
    assert!(!sim.is_closed(frozen));
    sim.advance(1);
    assert!(
        sim.is_closed(frozen),
        "noticed at interval + margin = 3000 ms"
    );
    assert_eq!(sim.now - frozen_at, 3_000);
    assert_eq!(
        sim.members(ROOM).len(),
        1,
        "still present during the grace window"
    );
    sim.advance(2_999);
    assert!(sim.events(watcher).is_empty());
    sim.advance(1);
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Leave, "f".to_owned())]
    );
}

#[test]
fn without_pings_a_rollcall_client_that_freezes_at_once_is_noticed_too() {
    let config = HubConfig {
        host_pings: false,
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    let (watcher, _) = sim.join("clientId=w&heartbeatInterval=60000", ROOM);
    // Frozen before it ever sent a heartbeat: it says it is a rollcall client, which sends them.
    let (frozen, _) = sim.join(
        "clientId=f&heartbeatInterval=2000&remainPresentFor=3000&agent=rollcall-js%2F0.1.0",
        ROOM,
    );
    sim.presence(frozen, ROOM, 0, json!([{"action": 2}]));
    // An ably client that sends no heartbeats cannot be told from an idle one: kept.
    let (quiet, _) = sim.join(
        "clientId=q&heartbeatInterval=2000&agent=ably-js%2F2.28.0",
        ROOM,
    );
    sim.frozen.insert(frozen.0);
    sim.frozen.insert(quiet.0);
    sim.events(watcher);
    sim.advance(3_000);
    assert!(sim.is_closed(frozen), "noticed at interval + margin");
    sim.advance(3_000);
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Leave, "f".to_owned())]
    );
    sim.advance(30_000);
    assert!(!sim.is_closed(quiet));
}

#[test]
fn any_frame_counts_as_a_sign_of_life() {
    let mut sim = Sim::new(HubConfig::default());
    let (chatty, _) = sim.connect("clientId=c&heartbeatInterval=2000");
    sim.frozen.insert(chatty.0);
    for _ in 0..10 {
        sim.advance(1_500);
        sim.send(chatty, json!({"action": 0}));
    }
    assert!(
        !sim.is_closed(chatty),
        "frames arrived even though pings were not answered"
    );
}

#[test]
fn a_ping_is_echoed_with_its_id() {
    let mut sim = Sim::new(HubConfig::default());
    let (alice, _) = sim.connect("clientId=a");
    sim.send(alice, json!({"action": 0, "id": "ping-1"}));
    let replies = sim.take(alice);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].action, Action::Heartbeat);
    assert_eq!(replies[0].id.as_deref(), Some("ping-1"));
}

#[test]
fn a_resent_message_is_acknowledged_once_applied() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (alice, _) = sim.join("clientId=alice", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "a"}]));
    sim.presence(alice, ROOM, 1, json!([{"action": 4, "data": "b"}]));
    sim.events(watcher);
    // After a resume the client resends what it had not seen acknowledged.
    let replies = sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "a"}]));
    assert_eq!(replies[0].action, Action::Ack);
    assert_eq!(replies[0].msg_serial, Some(0));
    assert!(sim.events(watcher).is_empty());
    assert_eq!(
        common::data(&sim.hub.members(ROOM)[0]).as_deref(),
        Some("b")
    );
}

#[test]
fn a_resent_message_that_was_refused_is_refused_again() {
    let config = HubConfig {
        max_members_per_channel: 1,
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    let (bob, _) = sim.join("clientId=bob", ROOM);
    sim.presence(bob, ROOM, 0, json!([{"action": 2}]));
    let (alice, connected) = sim.connect("clientId=alice&agent=ably-js");
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    let refused = sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    assert_eq!(common::code(refused.last().unwrap()), Some(91003));
    // Its NACK went with a dead transport; after the resume the client sends it again.
    sim.presence(
        alice,
        ROOM,
        1,
        json!([{"action": 2, "clientId": "alice", "data": "x"}]),
    );
    let again = sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    assert_eq!(
        (
            again[0].action,
            again[0].msg_serial,
            common::code(&again[0])
        ),
        (Action::Nack, Some(0), Some(91003)),
        "{again:?}"
    );
    assert_eq!(sim.members(ROOM).len(), 1);
    // A client that recovers the connection (a reloaded page, from a key kept before the
    // refusal) and reuses the serial is not answered with the refusal of the one before it.
    let (second, _) = sim.open(&format!(
        "clientId=alice&agent=ably-js&recover={}",
        key_of(&connected)
    ));
    sim.send(second, json!({"action": 10, "channel": ROOM}));
    sim.take(second);
    let reused = sim.presence(second, ROOM, 0, json!([{"action": 3}]));
    let answer = reused.iter().find(|m| m.msg_serial == Some(0));
    assert_eq!(answer.map(|m| m.action), Some(Action::Ack), "{reused:?}");
}

#[test]
fn a_client_that_recovers_with_an_older_key_has_its_messages_applied_not_taken_for_resends() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    // An agent on the `ably` client keeps its recovery key as it connects (msgSerial 0)...
    let (alice, connected) = sim.connect("clientId=alice&agent=ably-js&remainPresentFor=15000");
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    sim.take(alice);
    // ... enters, updates and leaves (serials 0 to 2), then crashes.
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "v1"}]));
    sim.presence(alice, ROOM, 1, json!([{"action": 4, "data": "v2"}]));
    sim.presence(alice, ROOM, 2, json!([{"action": 3}]));
    sim.events(watcher);
    sim.close_unnoticed(alice);
    // Recovered from that key, it numbers its messages from 1 again (RTN16f).
    let (second, _) = sim.open(&format!(
        "clientId=alice&agent=ably-js&recover={}",
        key_of(&connected)
    ));
    sim.send(second, json!({"action": 10, "channel": ROOM}));
    sim.take(second);
    let replies = sim.presence(second, ROOM, 1, json!([{"action": 2, "data": "v3"}]));
    let ack = replies
        .iter()
        .find(|m| m.action == Action::Ack)
        .expect("an ACK");
    assert_eq!(ack.msg_serial, Some(1), "answered under its own number");
    let heard = sim.events(watcher);
    assert_eq!(
        summary(&heard),
        [(PresenceAction::Enter, "alice".to_owned())]
    );
    assert_eq!(common::data(&heard[0]).as_deref(), Some("v3"));
    // Its id is newer than the member's last event (the leave at serial 2).
    let id = heard[0].id.as_deref().unwrap();
    let serial: i64 = id.split(':').nth(1).unwrap().parse().unwrap();
    assert!(serial > 2, "{id}");
    // Its next message is applied too, and a resend of it (after a resume) is not applied again.
    sim.presence(second, ROOM, 2, json!([{"action": 4, "data": "v4"}]));
    let resent = sim.presence(
        second,
        ROOM,
        2,
        json!([{"action": 4, "data": "v4-differs"}]),
    );
    assert!(resent
        .iter()
        .any(|m| m.action == Action::Ack && m.msg_serial == Some(2)));
    assert_eq!(
        summary(&sim.events(watcher)),
        [(PresenceAction::Update, "alice".to_owned())]
    );
    assert_eq!(sim.members(ROOM).len(), 1);
    // A negative serial is refused under its own number still.
    let refused = sim.presence(second, ROOM, -1, json!([{"action": 4}]));
    let answers: Vec<_> = refused.iter().map(|m| (m.action, m.msg_serial)).collect();
    assert_eq!(answers, [(Action::Nack, Some(-1))]);
}

#[test]
fn timeouts_that_come_early_or_twice_change_nothing() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (alice, _) = sim.join("clientId=alice&remainPresentFor=5000", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.events(watcher);
    sim.drop_transport(alice);
    for _ in 0..10 {
        sim.hub.handle_timeout(sim.now);
        sim.hub.handle_timeout(sim.now - 1_000);
        sim.drain();
    }
    assert!(sim.events(watcher).is_empty());
    assert_eq!(sim.members(ROOM).len(), 1);
}

#[test]
fn rollcall_clients_hear_when_a_members_connection_is_lost_and_back() {
    let mut sim = Sim::new(HubConfig::default());
    let (ours, _) = sim.join("clientId=w&agent=rollcall-js%2F0.1.0", ROOM);
    let (theirs, _) = sim.join("clientId=x&agent=ably-js%2F2.28.0", ROOM);
    let (alice, connected) = sim.connect("clientId=alice&remainPresentFor=5000");
    let id = connected.connection_id.clone().unwrap();
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.take(ours);
    sim.take(theirs);
    // Each item: a connection, and whether it is lost (absent) or back (present).
    let status = |messages: Vec<rollcall::protocol::ProtocolMessage>| -> Vec<(String, u64)> {
        messages
            .into_iter()
            .filter(|m| m.action == Action::ConnectionStatus)
            .flat_map(|m| m.presence.unwrap_or_default())
            .map(|i| {
                let lost = i.action == rollcall::protocol::PresenceAction::Absent;
                (i.connection_id.unwrap().to_string(), u64::from(lost))
            })
            .collect()
    };
    sim.drop_transport(alice);
    // Not at once: a blip is not worth a frame to every listener.
    sim.advance(1_900);
    assert!(status(sim.take(ours)).is_empty());
    sim.advance(100);
    assert_eq!(status(sim.take(ours)), vec![(id.to_string(), 1)]);
    assert!(
        status(sim.take(theirs)).is_empty(),
        "ably clients get no extension frames"
    );
    // A late rollcall joiner learns it after its SYNC.
    let (late, _) = sim.connect("clientId=late&agent=rollcall-js%2F0.1.0");
    sim.send(late, json!({"action": 10, "channel": ROOM}));
    let replies = sim.take(late);
    assert_eq!(replies.last().unwrap().action, Action::ConnectionStatus);
    sim.advance(1_000);
    let key = connected
        .connection_details
        .unwrap()
        .connection_key
        .unwrap();
    sim.connect(&format!(
        "clientId=alice&remainPresentFor=5000&resume={key}"
    ));
    // On the next quarter-second tick, with any others that came back meanwhile.
    sim.advance(250);
    assert_eq!(status(sim.take(ours)), vec![(id.to_string(), 0)]);
}

#[test]
fn a_hub_run_late_asks_before_it_drops_anyone_for_silence() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (alice, _) = sim.join("clientId=alice", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.take(watcher);
    // The host's event loop was blocked for a minute (or its clock stepped forward): its timer
    // runs a minute late, before it reads what the connections sent meanwhile. They are asked
    // (pinged), and answer.
    sim.now += 60_000;
    sim.hub.handle_timeout(sim.now);
    sim.drain();
    assert!(!sim.is_closed(alice) && !sim.is_closed(watcher));
    assert!(
        sim.pings
            .iter()
            .any(|&(at, t)| at == sim.now && t == alice.0),
        "alice was pinged"
    );
    sim.advance(20_000);
    assert!(!sim.is_closed(alice) && !sim.is_closed(watcher));
    assert!(sim.events(watcher).is_empty(), "nobody left");
    // One that does not answer is dropped, a margin after the hub asked.
    sim.frozen.insert(alice.0);
    sim.now += 60_000;
    let late = sim.now;
    sim.hub.handle_timeout(sim.now);
    sim.drain();
    assert!(!sim.is_closed(alice));
    sim.advance(8_000);
    assert!(sim.is_closed(alice), "silent a margin after the ping");
    assert!(sim.now - late <= 8_000);
    assert!(!sim.is_closed(watcher));
}

#[test]
fn a_hub_stalled_just_after_a_frame_at_a_deadline_still_asks_before_it_drops() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (alice, _) = sim.join("clientId=alice", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.take(watcher);
    // A frame arrives as the first deadline falls due, before the host's timer runs; then the
    // host stalls for a minute.
    let due = sim.hub.poll_timeout().expect("a deadline");
    sim.now = due;
    sim.send(watcher, json!({"action": 0}));
    sim.now += 60_000;
    sim.hub.handle_timeout(sim.now);
    sim.drain();
    assert!(!sim.is_closed(alice) && !sim.is_closed(watcher));
    sim.advance(20_000);
    assert!(!sim.is_closed(alice) && !sim.is_closed(watcher));
    assert!(sim.events(watcher).is_empty(), "nobody left");
}

#[test]
fn dropped_connections_together_hold_no_more_than_the_hubs_replay_budget() {
    // Each may keep 1 MiB; together, 40 KB.
    let config = HubConfig {
        max_replay_bytes: 40_000,
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    let mut dropped = Vec::new();
    for i in 0..5 {
        let query = format!("clientId=w{i}&remainPresentFor=60000");
        let (peer, connected) = sim.connect(&query);
        sim.send(peer, json!({"action": 10, "channel": ROOM}));
        sim.take(peer);
        sim.drop_transport(peer);
        dropped.push(format!("{query}&resume={}", key_of(&connected)));
    }
    let (alice, _) = sim.join("clientId=alice", ROOM);
    let big = "x".repeat(5_000);
    for serial in 0..10 {
        sim.presence(alice, ROOM, serial, json!([{"action": 4, "data": big}]));
        assert!(
            sim.hub.stats().replay_bytes <= 40_000,
            "{} bytes waiting",
            sim.hub.stats().replay_bytes
        );
    }
    assert!(
        sim.hub.stats().replay_bytes > 30_000,
        "kept up to the budget"
    );
    // Every one has had a frame given up by now: a small one after it is not kept either (a
    // replay with a hole in it would only hold the budget).
    let held = sim.hub.stats().replay_bytes;
    sim.presence(alice, ROOM, 10, json!([{"action": 4, "data": "small"}]));
    assert_eq!(
        sim.hub.stats().replay_bytes,
        held,
        "nothing kept after a gap"
    );
    // Those whose frames were given up take the channel afresh (RTL12), by SYNC.
    let mut afresh = 0;
    for resume in &dropped {
        let (again, _) = sim.connect(resume);
        let replies = sim.take(again);
        if common::attached_afresh(&replies) {
            afresh += 1;
        } else {
            assert!(
                replies.iter().all(|m| m.action != Action::Attached),
                "{replies:?}"
            );
        }
    }
    assert!(afresh >= 3, "{afresh} attached afresh");
    assert_eq!(
        sim.hub.stats().replay_bytes,
        0,
        "nothing waits once all are back"
    );
}

#[test]
fn a_resume_that_missed_more_than_was_kept_is_attached_afresh_without_resumed() {
    let config = HubConfig {
        replay_limit: 3,
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    let (watcher, connected) = sim.connect("clientId=w&remainPresentFor=60000");
    let resume = format!(
        "clientId=w&remainPresentFor=60000&resume={}",
        key_of(&connected)
    );
    sim.send(watcher, json!({"action": 10, "channel": ROOM}));
    sim.take(watcher);
    let (alice, _) = sim.join("clientId=alice", ROOM);
    let presence_items = |replies: &[rollcall::protocol::ProtocolMessage]| -> usize {
        replies
            .iter()
            .filter(|m| m.action == Action::Presence)
            .map(|m| m.presence.as_ref().map_or(0, Vec::len))
            .sum()
    };

    // What it missed was kept: replayed, and its channel carries on as it was.
    sim.drop_transport(watcher);
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "0"}]));
    let (again, _) = sim.connect(&resume);
    let replies = sim.take(again);
    assert_eq!(presence_items(&replies), 1);
    assert!(replies.iter().all(|m| m.action != Action::Attached));

    // More than was kept: the channel is attached afresh, without RESUMED, with the members
    // as they are now.
    sim.drop_transport(again);
    for serial in 1..10 {
        sim.presence(
            alice,
            ROOM,
            serial,
            json!([{"action": 4, "data": serial.to_string()}]),
        );
    }
    let (again, _) = sim.connect(&resume);
    let replies = sim.take(again);
    assert_eq!(presence_items(&replies), 3, "what was kept is replayed");
    let at = replies
        .iter()
        .position(|m| m.action == Action::Attached)
        .expect("an ATTACHED for the channel");
    let attached = &replies[at];
    assert_eq!(attached.channel.as_deref(), Some(ROOM));
    assert!(!attached.has_flag(flags::RESUMED));
    assert!(attached.has_flag(flags::HAS_PRESENCE));
    let sync = replies[at..]
        .iter()
        .find(|m| m.action == Action::Sync)
        .expect("a SYNC after it");
    let members = sync.presence.as_ref().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(common::data(&members[0]).as_deref(), Some("9"));
}

#[test]
fn a_resume_in_another_format_gets_what_it_missed_as_a_fresh_attach_it_can_read() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, connected) = sim.connect("clientId=w&remainPresentFor=60000");
    sim.send(watcher, json!({"action": 10, "channel": ROOM}));
    sim.take(watcher);
    let (alice, _) = sim.join("clientId=alice", ROOM);
    sim.drop_transport(watcher);
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "missed"}]));
    // Kept as JSON; the client comes back speaking msgpack, with a shorter grace.
    let (again, resumed) = sim.connect(&format!(
        "clientId=w&format=msgpack&remainPresentFor=2000&resume={}",
        key_of(&connected)
    ));
    assert_eq!(resumed.connection_id, connected.connection_id);
    let replies = sim.take(again);
    assert!(
        sim.sizes[&again.0].len() == replies.len() + 1,
        "every frame arrived and was read"
    );
    let attached = replies
        .iter()
        .find(|m| m.action == Action::Attached)
        .expect("the channel attached afresh");
    assert!(!attached.has_flag(flags::RESUMED));
    let synced: Vec<_> = replies
        .iter()
        .filter(|m| m.action == Action::Sync)
        .flat_map(|m| m.presence.clone().unwrap_or_default())
        .collect();
    assert_eq!(synced.len(), 1);
    assert_eq!(common::data(&synced[0]).as_deref(), Some("missed"));
    // The new transport's remainPresentFor holds.
    let (other, _) = sim.join("clientId=other", ROOM);
    sim.presence(again, ROOM, 0, json!([{"action": 2}]));
    sim.events(other);
    sim.drop_transport(again);
    sim.advance(2_000);
    assert_eq!(
        summary(&sim.events(other)),
        vec![(PresenceAction::Leave, "w".to_owned())]
    );
}

#[test]
fn a_transport_id_opened_again_means_its_old_socket_dropped() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (alice, _) = sim.join("clientId=alice&remainPresentFor=1000", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.events(watcher);
    // The host reuses alice's transport id for a new socket (it lost the old one unseen).
    sim.hub
        .handle_open(sim.now, alice.0, "clientId=bob", sim.rng.entropy());
    sim.drain();
    let replies = sim.take(alice);
    assert_eq!(replies.last().unwrap().action, Action::Connected);
    // Alice's connection dropped: her grace runs, then she leaves; bob's is the live one.
    sim.advance(1_000);
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Leave, "alice".to_owned())]
    );
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Enter, "bob".to_owned())]
    );
}

#[test]
fn a_recovered_connection_gets_a_new_key_and_its_earlier_keys_only_recover_it() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (first, connected) = sim.connect("clientId=alice&agent=rollcall-js");
    sim.send(first, json!({"action": 10, "channel": ROOM}));
    let id = connected.connection_id.clone();
    let k1 = key_of(&connected);
    sim.presence(first, ROOM, 0, json!([{"action": 2, "data": "d"}]));
    sim.events(watcher);

    // A new client recovers it: a new key, and the msgSerial reached; the first client's
    // transport is closed, and nothing kept for it is replayed.
    let (second, recovered) = sim.open(&format!("clientId=alice&agent=ably-js&recover={k1}"));
    assert_eq!(recovered.connection_id, id);
    assert!(recovered.error.is_none());
    assert_eq!(recovered.msg_serial, Some(1));
    let k2 = key_of(&recovered);
    assert_ne!(k2, k1);
    assert!(sim.is_closed(first));
    assert!(sim.take(second).is_empty(), "no replay");

    // The first client cannot take it back by resuming with its key: a connection of its own.
    let (_, own) = sim.open(&format!("clientId=alice&resume={k1}"));
    assert_ne!(own.connection_id, id);
    assert_eq!(code(&own), Some(80008));
    let why = own.error.as_ref().unwrap().message.clone();
    assert!(why.contains("recovered by another client"), "{why}");
    assert!(!sim.is_closed(second));

    // A recover retried with the first key (its CONNECTED was lost) still finds it, as does
    // one with the key after it.
    sim.drop_transport(second);
    let (third, again) = sim.open(&format!("clientId=alice&recover={k1}"));
    assert_eq!(again.connection_id, id);
    assert!(again.error.is_none());
    let k3 = key_of(&again);
    sim.drop_transport(third);
    let (fourth, later) = sim.open(&format!("clientId=alice&recover={k2}"));
    assert_eq!(later.connection_id, id);
    assert_ne!(key_of(&later), k3);
    // Its page shows the room too, and attaches it.
    sim.send(fourth, json!({"action": 10, "channel": ROOM}));
    // Another clientId may not.
    let (_, other) = sim.open(&format!("clientId=mallory&recover={k1}"));
    assert_ne!(other.connection_id, id);
    assert!(other.error.unwrap().message.contains("another clientId"));
    sim.advance(60_000);
    assert!(sim.events(watcher).is_empty(), "no leave and no enter");
}

#[test]
fn a_recovered_connection_takes_the_liveness_of_the_client_that_recovered_it() {
    // Without pings (a Durable Object), silence ends a connection whose client heartbeats
    // itself. A rollcall connection recovered by a client that does not (the ably client)
    // must not be ended for a silence that is its normal.
    let config = || HubConfig {
        host_pings: false,
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config());
    let (rollcall, connected) =
        sim.connect("clientId=alice&agent=rollcall-js&heartbeatInterval=2000");
    sim.send(rollcall, json!({"action": 10, "channel": ROOM}));
    let k1 = key_of(&connected);
    let (ably, _) = sim.open(&format!(
        "clientId=alice&agent=ably-js%2F2.0&heartbeatInterval=2000&recover={k1}"
    ));
    sim.take(ably);
    let (watcher, _) = sim.join("clientId=w&agent=rollcall-js&heartbeatInterval=60000", ROOM);
    // Nor does it get rollcall's status frames (a member's connection lost), which the ably
    // client does not know; a rollcall client does.
    let (bob, _) = sim.join("clientId=bob&remainPresentFor=60000", ROOM);
    sim.presence(bob, ROOM, 0, json!([{"action": 2}]));
    sim.take(watcher);
    sim.take(ably);
    sim.drop_transport(bob);
    sim.advance(2_000);
    let status = Action::from_number(100);
    assert!(
        sim.take(watcher).iter().any(|m| m.action == status),
        "the rollcall watcher hears it"
    );
    assert!(sim.take(ably).iter().all(|m| m.action != status));
    sim.advance(20_000);
    assert!(
        !sim.is_closed(ably),
        "silent, as the ably client is, and kept"
    );
}

#[test]
fn a_crowd_that_drops_in_one_turn_is_told_in_one_status_frame_a_moment_later() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w&agent=rollcall-js%2F0.1.0", ROOM);
    let mut crowd = Vec::new();
    for n in 0..4 {
        let (peer, _) = sim.join(&format!("clientId=m{n}"), ROOM);
        sim.presence(peer, ROOM, 0, json!([{"action": 2}]));
        crowd.push(peer);
    }
    sim.take(watcher);
    // One of them updates, then every socket dies, all in one turn of the host's event loop.
    let update = json!({"action": 14, "channel": ROOM, "msgSerial": 1, "presence": [{"action": 4, "data": "last words"}]});
    sim.hub
        .handle_text(sim.now, crowd[0].0, &update.to_string());
    for peer in &crowd {
        sim.hub.handle_close(sim.now, peer.0);
    }
    sim.drain();
    let frames = sim.take(watcher);
    let actions: Vec<Action> = frames.iter().map(|m| m.action).collect();
    assert_eq!(actions, [Action::Presence], "{frames:?}");
    sim.advance(2_000);
    let frames = sim.take(watcher);
    let actions: Vec<Action> = frames.iter().map(|m| m.action).collect();
    assert_eq!(actions, [Action::ConnectionStatus], "{frames:?}");
    let lost = frames[0].presence.clone().unwrap_or_default();
    assert_eq!(lost.len(), 4);
    assert!(lost
        .iter()
        .all(|i| i.action == rollcall::protocol::PresenceAction::Absent));
}

#[test]
fn a_blip_shorter_than_the_notice_delay_is_never_told() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w&agent=rollcall-js%2F0.1.0", ROOM);
    let (alice, connected) = sim.connect("clientId=alice");
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.take(watcher);
    sim.drop_transport(alice);
    sim.advance(1_500);
    sim.connect(&format!("clientId=alice&resume={}", key_of(&connected)));
    sim.advance(5_000);
    let heard: Vec<Action> = sim.take(watcher).into_iter().map(|m| m.action).collect();
    assert!(
        !heard.contains(&Action::ConnectionStatus),
        "neither lost nor back: {heard:?}"
    );
}

#[test]
fn drops_within_a_quarter_second_are_told_in_one_frame() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w&agent=rollcall-js%2F0.1.0", ROOM);
    let mut crowd = Vec::new();
    for n in 0..3 {
        let (peer, _) = sim.join(&format!("clientId=m{n}"), ROOM);
        sim.presence(peer, ROOM, 0, json!([{"action": 2}]));
        crowd.push(peer);
    }
    sim.take(watcher);
    // Noticed one at a time, as silences are, 50 ms apart (T0 is on a tick).
    for peer in &crowd {
        sim.advance(50);
        sim.drop_transport(*peer);
    }
    sim.advance(2_500);
    let frames: Vec<_> = sim
        .take(watcher)
        .into_iter()
        .filter(|m| m.action == Action::ConnectionStatus)
        .collect();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].presence.as_ref().map(Vec::len), Some(3));
}

#[test]
fn a_notice_that_falls_due_as_the_members_leave_is_not_sent() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w&agent=rollcall-js%2F0.1.0", ROOM);
    let (alice, _) = sim.join("clientId=alice&remainPresentFor=1000", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.take(watcher);
    sim.drop_transport(alice);
    // The host's timer fires late: past the notice and the grace alike.
    sim.now += 5_000;
    sim.hub.handle_timeout(sim.now);
    sim.drain();
    let heard: Vec<Action> = sim.take(watcher).into_iter().map(|m| m.action).collect();
    assert_eq!(heard, [Action::Presence], "the leave alone: {heard:?}");
}

/// A watcher and `n` members of the room, each in its own connection: their peers and keys.
fn crowd_watched(sim: &mut Sim, n: usize) -> (common::Peer, Vec<(common::Peer, String)>) {
    let (watcher, _) = sim.join("clientId=w&agent=rollcall-js%2F0.1.0", ROOM);
    let mut crowd = Vec::new();
    for i in 0..n {
        let (peer, connected) = sim.connect(&format!("clientId=m{i}"));
        sim.send(peer, json!({"action": 10, "channel": ROOM}));
        sim.presence(peer, ROOM, 0, json!([{"action": 2}]));
        crowd.push((peer, key_of(&connected)));
    }
    sim.take(watcher);
    (watcher, crowd)
}

/// The grace statuses among `messages`: one (connection, lost) list per frame.
fn status_frames(messages: Vec<rollcall::protocol::ProtocolMessage>) -> Vec<Vec<bool>> {
    messages
        .into_iter()
        .filter(|m| m.action == Action::ConnectionStatus)
        .map(|m| {
            m.presence
                .unwrap_or_default()
                .iter()
                .map(|i| i.action == rollcall::protocol::PresenceAction::Absent)
                .collect()
        })
        .collect()
}

#[test]
fn returns_within_a_quarter_second_are_told_in_one_frame() {
    // A crowd whose network was down long enough to be told lost comes back one at a time,
    // as sockets reopen: one frame to each listener, not one per return (N² in all).
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, crowd) = crowd_watched(&mut sim, 3);
    for (peer, _) in &crowd {
        sim.drop_transport(*peer);
    }
    sim.advance(3_000);
    assert_eq!(status_frames(sim.take(watcher)), vec![vec![true; 3]]);
    for (i, (_, key)) in crowd.iter().enumerate() {
        sim.advance(50);
        let (_, resumed) = sim.connect(&format!("clientId=m{i}&resume={key}"));
        assert!(resumed.error.is_none(), "{resumed:?}");
    }
    sim.advance(100);
    assert_eq!(status_frames(sim.take(watcher)), vec![vec![false; 3]]);
}

#[test]
fn a_member_back_before_its_return_is_told_is_not_listed_lost_to_a_late_joiner() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, crowd) = crowd_watched(&mut sim, 1);
    let (alice, key) = crowd[0].clone();
    sim.drop_transport(alice);
    sim.advance(3_000);
    assert_eq!(status_frames(sim.take(watcher)), vec![vec![true]]);
    let (again, _) = sim.connect(&format!("clientId=m0&resume={key}"));
    // A rollcall client that attaches after the return, before the return is told to the
    // others (on the next tick): it is back, so this client is not told it is lost (it showed
    // the member lost, then back).
    let (late, _) = sim.connect("clientId=late&agent=rollcall-js%2F0.1.0");
    sim.send(late, json!({"action": 10, "channel": ROOM}));
    let heard = status_frames(sim.take(late));
    assert!(heard.is_empty(), "{heard:?}");
    sim.drop_transport(again);
    // Gone again before its return was told: not said to be back, and after the usual delay
    // said to be lost to all, so that the late joiner hears it too (to the watcher, for whom
    // it was lost all along, the word changes nothing).
    sim.advance(1_900);
    assert!(status_frames(sim.take(watcher)).is_empty());
    assert!(status_frames(sim.take(late)).is_empty());
    sim.advance(1_100);
    assert_eq!(status_frames(sim.take(watcher)), vec![vec![true]]);
    assert_eq!(status_frames(sim.take(late)), vec![vec![true]]);
    // Its next return is told.
    sim.connect(&format!("clientId=m0&resume={key}"));
    sim.advance(250);
    assert_eq!(status_frames(sim.take(watcher)), vec![vec![false]]);
    assert_eq!(status_frames(sim.take(late)), vec![vec![false]]);
}

#[test]
fn a_listener_without_its_transport_is_told_the_lost_list_on_its_re_attach_not_each_word() {
    // Every word kept for a dropped listener would cost a crowd that drops at once N² in all;
    // the list before its ATTACHED tells it the same, once.
    let mut sim = Sim::new(HubConfig::default());
    let (_, crowd) = crowd_watched(&mut sim, 2);
    let (watcher, connected) = sim.connect("clientId=v&agent=rollcall-js%2F0.1.0");
    sim.send(watcher, json!({"action": 10, "channel": ROOM}));
    sim.take(watcher);
    sim.drop_transport(watcher);
    for (peer, _) in &crowd {
        sim.drop_transport(*peer);
    }
    sim.advance(3_000);
    // One comes back and is told back; the other stays lost.
    sim.connect(&format!("clientId=m0&resume={}", crowd[0].1));
    sim.advance(250);
    let (again, resumed) = sim.connect(&format!(
        "clientId=v&agent=rollcall-js%2F0.1.0&resume={}",
        key_of(&connected)
    ));
    assert!(resumed.error.is_none(), "{resumed:?}");
    assert!(status_frames(sim.take(again)).is_empty(), "no words kept");
    sim.send(again, json!({"action": 10, "channel": ROOM}));
    let replies = sim.take(again);
    let first = replies
        .iter()
        .position(|m| m.action == Action::ConnectionStatus)
        .expect("the lost list");
    assert_eq!(replies[first + 1].action, Action::Attached, "{replies:?}");
    let lost: Vec<String> = replies[first]
        .presence
        .iter()
        .flatten()
        .map(|i| i.connection_id.as_deref().unwrap_or_default().to_string())
        .collect();
    let m1 = sim
        .members(ROOM)
        .into_iter()
        .find(|(c, _)| c == "m1")
        .unwrap()
        .1;
    assert_eq!(lost, [m1]);
}

#[test]
fn channels_a_recovering_client_does_not_attach_again_are_left_after_its_grace() {
    // A page reloaded with `recover` takes the connection over; the channels it no longer
    // shows must not keep its members present for the connection's life.
    let mut sim = Sim::new(HubConfig::default());
    let (in_room, _) = sim.join("clientId=w", ROOM);
    let (elsewhere, _) = sim.join("clientId=v", "elsewhere");
    let (first, connected) = sim.connect("clientId=alice&agent=rollcall-js");
    for (n, channel) in [ROOM, "elsewhere"].into_iter().enumerate() {
        sim.send(first, json!({"action": 10, "channel": channel}));
        sim.presence(
            first,
            channel,
            n as i64,
            json!([{"action": 2, "data": "d"}]),
        );
    }
    sim.events(in_room);
    sim.events(elsewhere);
    let (second, _) = sim.open(&format!(
        "clientId=alice&agent=rollcall-js&remainPresentFor=5000&recover={}",
        key_of(&connected)
    ));
    // The new page attaches the room, a moment later.
    sim.advance(1_000);
    sim.send(second, json!({"action": 10, "channel": ROOM}));
    sim.take(second);
    sim.advance(3_900);
    assert!(
        sim.events(elsewhere).is_empty(),
        "not before its grace is over"
    );
    sim.advance(100);
    let left = sim.events(elsewhere);
    assert_eq!(
        common::summary(&left),
        [(
            rollcall::protocol::PresenceAction::Leave,
            "alice".to_string()
        )]
    );
    let extras: serde_json::Value =
        serde_json::from_str(&left[0].extras.as_ref().expect("a reason").0).unwrap();
    assert_eq!(extras["reason"], "detached");
    // The new client is told, and the room keeps her.
    assert_eq!(
        channels_told(&sim.take(second), Action::Detached),
        ["elsewhere"]
    );
    sim.advance(60_000);
    assert!(
        sim.events(in_room).is_empty(),
        "no leave where she was attached again"
    );
    assert_eq!(sim.members(ROOM).len(), 1);
}

/// The channels that frames of `action` among `replies` name, in order.
fn channels_told(replies: &[rollcall::protocol::ProtocolMessage], action: Action) -> Vec<String> {
    replies
        .iter()
        .filter(|m| m.action == action)
        .map(|m| m.channel.as_deref().unwrap_or_default().to_string())
        .collect()
}

/// A hub where a connection may attach two channels.
fn two_channels_each() -> Sim {
    Sim::new(HubConfig {
        max_channels_per_connection: 2,
        ..HubConfig::default()
    })
}

/// Alice's first client, attached and present on `channels`; its connection key.
fn alice_on(sim: &mut Sim, query: &str, channels: &[&str]) -> String {
    let (first, connected) = sim.connect(&format!("clientId=alice&{query}"));
    for (n, channel) in channels.iter().enumerate() {
        sim.send(first, json!({"action": 10, "channel": channel}));
        sim.presence(first, channel, n as i64, json!([{"action": 2}]));
    }
    key_of(&connected)
}

#[test]
fn a_recovering_client_that_drops_before_it_attaches_again_has_its_grace_again_from_its_resume() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let key = alice_on(&mut sim, "agent=rollcall-js", &[ROOM]);
    sim.events(watcher);
    let (second, recovered) = sim.open(&format!(
        "clientId=alice&agent=rollcall-js&remainPresentFor=5000&recover={key}"
    ));
    // Its transport goes before its ATTACH arrives, and it is back after the first window.
    sim.drop_transport(second);
    sim.advance(4_000);
    let query = format!(
        "clientId=alice&agent=rollcall-js&remainPresentFor=5000&resume={}",
        key_of(&recovered)
    );
    let (third, resumed) = sim.connect(&query);
    assert!(resumed.error.is_none(), "{resumed:?}");
    sim.advance(2_000);
    sim.send(third, json!({"action": 10, "channel": ROOM}));
    sim.advance(60_000);
    assert!(sim.events(watcher).is_empty(), "no leave, no enter");
}

#[test]
fn channels_held_for_a_recovering_client_leave_room_for_those_it_shows() {
    let mut sim = two_channels_each();
    let key = alice_on(&mut sim, "", &["a", "b"]);
    let (second, _) = sim.open(&format!("clientId=alice&recover={key}"));
    sim.send(second, json!({"action": 10, "channel": "c"}));
    let replies = sim.take(second);
    assert_eq!(
        channels_told(&replies, Action::Attached),
        ["c"],
        "{replies:?}"
    );
    // One held channel made room: its member left, the other waits for the client.
    assert_eq!(
        channels_told(&replies, Action::Detached).len(),
        1,
        "{replies:?}"
    );
    assert_eq!(sim.members("a").len() + sim.members("b").len(), 1);
}

#[test]
fn a_held_channel_where_the_connection_has_no_member_makes_room_first() {
    let mut sim = two_channels_each();
    let (watcher, _) = sim.join("clientId=w", "a");
    let (first, connected) = sim.connect("clientId=alice");
    sim.send(first, json!({"action": 10, "channel": "a"}));
    sim.presence(first, "a", 0, json!([{"action": 2}]));
    sim.send(first, json!({"action": 10, "channel": "quiet"}));
    sim.events(watcher);
    let (second, _) = sim.open(&format!("clientId=alice&recover={}", key_of(&connected)));
    sim.send(second, json!({"action": 10, "channel": "c"}));
    assert_eq!(
        channels_told(&sim.take(second), Action::Detached),
        ["quiet"]
    );
    assert!(sim.events(watcher).is_empty(), "alice stays on a");
}

#[test]
fn recover_after_recover_never_holds_more_channels_than_the_limit() {
    // Each new client recovers the connection and attaches channels of its own before the
    // grace of the one before is over: what is held for it must not pile up.
    let mut sim = two_channels_each();
    let query = "remainPresentFor=3600000";
    let mut key = alice_on(&mut sim, query, &["a0", "b0"]);
    for round in 1..10 {
        let (next, connected) = sim.open(&format!("clientId=alice&{query}&recover={key}"));
        let serial = connected.msg_serial.expect("the msgSerial reached");
        for (n, channel) in [format!("a{round}"), format!("b{round}")]
            .iter()
            .enumerate()
        {
            sim.send(next, json!({"action": 10, "channel": channel}));
            let replies = sim.presence(next, channel, serial + n as i64, json!([{"action": 2}]));
            assert_eq!(replies.last().unwrap().action, Action::Ack, "{replies:?}");
        }
        key = key_of(&connected);
    }
    let present: Vec<String> = (0..10)
        .flat_map(|r| [format!("a{r}"), format!("b{r}")])
        .filter(|channel| !sim.members(channel).is_empty())
        .collect();
    assert_eq!(present, ["a9", "b9"]);
}

#[test]
fn a_channel_claimed_by_a_recovering_client_is_attached_afresh_not_resumed() {
    let mut sim = Sim::new(HubConfig::default());
    let key = alice_on(&mut sim, "", &[ROOM]);
    let (second, _) = sim.open(&format!("clientId=alice&recover={key}"));
    sim.send(second, json!({"action": 10, "channel": ROOM}));
    let replies = sim.take(second);
    assert!(common::attached_afresh(&replies), "{replies:?}");
}

#[test]
fn a_recovering_client_is_not_sent_the_presence_of_channels_it_has_not_attached_again() {
    let mut sim = Sim::new(HubConfig::default());
    let key = alice_on(&mut sim, "", &[ROOM, "elsewhere"]);
    let (bob, _) = sim.connect("clientId=bob");
    let (second, _) = sim.open(&format!("clientId=alice&recover={key}"));
    sim.send(second, json!({"action": 10, "channel": ROOM}));
    sim.take(second);
    for (n, channel) in [ROOM, "elsewhere"].into_iter().enumerate() {
        sim.send(bob, json!({"action": 10, "channel": channel}));
        sim.presence(bob, channel, n as i64, json!([{"action": 2}]));
    }
    let heard: Vec<String> = sim
        .take(second)
        .into_iter()
        .filter(|m| m.action == Action::Presence)
        .map(|m| m.channel.unwrap().to_string())
        .collect();
    assert_eq!(heard, [ROOM]);
}

#[test]
fn a_recovering_client_uses_presence_on_a_held_channel_only_once_it_attached_it() {
    let mut sim = Sim::new(HubConfig::default());
    let key = alice_on(&mut sim, "", &[ROOM]);
    let (second, recovered) = sim.open(&format!("clientId=alice&recover={key}"));
    let serial = recovered.msg_serial.unwrap_or(0);
    let replies = sim.presence(second, ROOM, serial, json!([{"action": 4, "data": "new"}]));
    assert_eq!(replies[0].action, Action::Nack, "{replies:?}");
    assert_eq!(code(&replies[0]), Some(90001));
    sim.send(second, json!({"action": 10, "channel": ROOM}));
    sim.take(second);
    let replies = sim.presence(
        second,
        ROOM,
        serial + 1,
        json!([{"action": 4, "data": "new"}]),
    );
    assert_eq!(replies.last().unwrap().action, Action::Ack, "{replies:?}");
}

#[test]
fn without_pings_an_ably_client_that_pings_once_is_not_then_held_to_send_heartbeats() {
    let config = HubConfig {
        host_pings: false,
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    let (ably, _) = sim.join(
        "clientId=a&heartbeatInterval=2000&agent=ably-js%2F2.28.0",
        ROOM,
    );
    // `connection.ping()`: a HEARTBEAT with an id, answered with it.
    sim.send(ably, json!({"action": 0, "id": "ping-1"}));
    let replies = sim.take(ably);
    assert!(replies
        .iter()
        .any(|m| m.action == Action::Heartbeat && m.id.as_deref() == Some("ping-1")));
    // Then quiet, as an ably client is between its calls: still connected.
    sim.frozen.insert(ably.0);
    sim.advance(20_000);
    assert!(
        !sim.is_closed(ably),
        "ended for a silence that is its normal"
    );
}

#[test]
fn a_recovered_connection_is_not_sent_its_own_leaves_on_a_channel_it_has_yet_to_attach_again() {
    let mut sim = Sim::new(HubConfig::default());
    let (first, connected) = sim.connect("clientId=alice&remainPresentFor=3000");
    sim.send(first, json!({"action": 10, "channel": ROOM}));
    sim.presence(first, ROOM, 0, json!([{"action": 2, "data": "d"}]));
    // Recovered by a page that drops before it attaches the room again; its grace runs out.
    let (second, recovered) = sim.open(&format!(
        "clientId=alice&remainPresentFor=3000&recover={}",
        key_of(&connected)
    ));
    sim.take(second);
    sim.drop_transport(second);
    sim.advance(3_500);
    assert!(sim.members(ROOM).is_empty(), "left at the end of its grace");
    // Resumed, it is not replayed presence of a channel it has not attached.
    let (third, resumed) = sim.open(&format!(
        "clientId=alice&remainPresentFor=3000&resume={}",
        key_of(&recovered)
    ));
    assert_eq!(resumed.connection_id, recovered.connection_id);
    let replayed: Vec<_> = sim
        .take(third)
        .into_iter()
        .filter(|m| m.action == Action::Presence)
        .collect();
    assert!(replayed.is_empty(), "{replayed:?}");
}

#[test]
fn a_crowds_live_deadlines_fall_on_a_few_ticks_not_one_each() {
    // As on the edge host (no pings from the host), where each deadline is an alarm that reads
    // every socket: 300 connections joined a few milliseconds apart.
    let mut sim = Sim::new(HubConfig {
        host_pings: false,
        ..HubConfig::default()
    });
    let mut peers = Vec::new();
    for i in 0..300 {
        peers.push(sim.connect(&format!("clientId=m{i}&heartbeats=true")).0);
        sim.now += 7;
    }
    // Over one heartbeat interval, with every client answering: the distinct times the hub
    // wants to run.
    let until = sim.now + 15_000;
    let mut ticks = std::collections::BTreeSet::new();
    while let Some(at) = sim.hub.poll_timeout().filter(|&at| at <= until) {
        ticks.insert(at);
        sim.now = sim.now.max(at);
        for &peer in &peers {
            sim.send(peer, serde_json::json!({"action": 0}));
        }
        sim.hub.handle_timeout(sim.now);
        sim.drain();
    }
    assert!(
        (1..=20).contains(&ticks.len()),
        "{} ticks for 300 connections",
        ticks.len()
    );
}

#[test]
fn a_transport_the_host_could_not_accept_takes_a_new_connection_with_it_and_leaves_a_resumed_one_its_grace(
) {
    let config = HubConfig {
        max_connections_per_client: 2,
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    let (watcher, _) = sim.join("clientId=w", ROOM);
    // New connections (or ones a failed resume makes) whose sockets the host could not take:
    // none of them holds a place afterwards.
    for query in ["clientId=alice", "clientId=alice&resume=unknown-key"] {
        for _ in 0..3 {
            let (peer, first) = sim.open(query);
            assert_eq!(first.action, Action::Connected);
            sim.hub.handle_unaccepted(sim.now, peer.0);
            sim.drain();
            sim.close_unnoticed(peer);
        }
    }
    assert_eq!(sim.hub.stats().connections, 1, "only the watcher's");
    let (alice, connected) = sim.connect("clientId=alice&remainPresentFor=15000");
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    sim.take(alice);
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.events(watcher);
    sim.drop_transport(alice);
    // A resume with channels whose socket the host could not take keeps its members' grace,
    // and the next resume is seamless.
    let key = key_of(&connected);
    let (refused, _) = sim.open(&format!("clientId=alice&resume={key}"));
    sim.hub.handle_unaccepted(sim.now, refused.0);
    sim.drain();
    sim.close_unnoticed(refused);
    sim.advance(2_000);
    let (back, resumed) = sim.open(&format!("clientId=alice&resume={key}"));
    assert_eq!(resumed.connection_id, connected.connection_id);
    assert!(resumed.error.is_none(), "{resumed:?}");
    assert!(
        summary(&sim.events(watcher)).is_empty(),
        "no leave and no enter"
    );
    assert!(!sim.is_closed(back));
}
