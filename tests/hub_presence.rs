//! Presence on the hub: members, enter, update, leave, re-entry, DETACH and CLOSE.

mod common;

use common::{code, data, summary, Sim};
use rollcall::hub::HubConfig;
use rollcall::protocol::{flags, Action, PresenceAction};
use serde_json::json;

const ROOM: &str = "job-map-new";

#[test]
fn two_connections_of_one_client_are_two_members() {
    let mut sim = Sim::new(HubConfig::default());
    let (agent, _) = sim.join("clientId=agent", ROOM);
    let (desktop, desktop_id) = sim.join("clientId=user-123", ROOM);
    let (mobile, mobile_id) = sim.join("clientId=user-123", ROOM);
    let replies = sim.presence(
        desktop,
        ROOM,
        0,
        json!([{"action": 2, "data": "{\"device\":\"desktop\"}", "encoding": "json"}]),
    );
    assert!(replies
        .iter()
        .any(|m| m.action == Action::Ack && m.msg_serial == Some(0) && m.count == Some(1)));
    sim.presence(
        mobile,
        ROOM,
        0,
        json!([{"action": 2, "data": "{\"device\":\"mobile\"}", "encoding": "json"}]),
    );

    let mut members = sim.members(ROOM);
    members.sort();
    let mut expected = vec![
        ("user-123".to_owned(), desktop_id.clone()),
        ("user-123".to_owned(), mobile_id.clone()),
    ];
    expected.sort();
    assert_eq!(members, expected);

    let events = sim.events(agent);
    assert_eq!(
        summary(&events),
        vec![
            (PresenceAction::Enter, "user-123".to_owned()),
            (PresenceAction::Enter, "user-123".to_owned()),
        ]
    );
    assert_eq!(events[0].connection_id.as_deref(), Some(&*desktop_id));
    assert_eq!(events[1].connection_id.as_deref(), Some(&*mobile_id));
    assert_eq!(events[0].encoding.as_deref(), Some("json"));
}

#[test]
fn every_event_carries_its_own_identity() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (alice, alice_id) = sim.join("clientId=alice", ROOM);
    sim.presence(
        alice,
        ROOM,
        4,
        json!([{"action": 2, "data": "a"}, {"action": 4, "data": "b"}]),
    );
    let events = sim.events(watcher);
    assert_eq!(events.len(), 2);
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event.id.as_deref(), Some(&*format!("{alice_id}:4:{index}")));
        assert_eq!(event.client_id.as_deref(), Some("alice"));
        assert_eq!(event.connection_id.as_deref(), Some(&*alice_id));
        assert_eq!(event.timestamp, Some(sim.now as i64));
    }
    assert_eq!(events[0].action, PresenceAction::Enter);
    assert_eq!(events[1].action, PresenceAction::Update);
}

#[test]
fn explicit_leave_is_immediate_and_carries_its_data() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=agent", ROOM);
    let (desktop, _) = sim.join("clientId=user-123", ROOM);
    sim.presence(desktop, ROOM, 0, json!([{"action": 2, "data": "here"}]));
    sim.events(watcher);
    sim.presence(
        desktop,
        ROOM,
        1,
        json!([{"action": 3, "data": "{\"reason\":\"session-completed\"}", "encoding": "json"}]),
    );
    let events = sim.events(watcher);
    assert_eq!(
        summary(&events),
        vec![(PresenceAction::Leave, "user-123".to_owned())]
    );
    assert_eq!(
        data(&events[0]).as_deref(),
        Some("{\"reason\":\"session-completed\"}")
    );
    assert!(sim.members(ROOM).is_empty());
}

#[test]
fn a_leave_without_data_carries_the_last_data() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=agent", ROOM);
    let (alice, _) = sim.join("clientId=alice", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "typing"}]));
    sim.presence(alice, ROOM, 1, json!([{"action": 3}]));
    let events = sim.events(watcher);
    assert_eq!(events[1].action, PresenceAction::Leave);
    assert_eq!(data(&events[1]).as_deref(), Some("typing"));
}

#[test]
fn leaving_when_absent_is_acknowledged_and_heard_by_the_sender_alone() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=agent", ROOM);
    let (alice, _) = sim.join("clientId=alice", ROOM);
    let replies = sim.presence(alice, ROOM, 0, json!([{"action": 3}]));
    let actions: Vec<Action> = replies.iter().map(|m| m.action).collect();
    assert_eq!(actions, [Action::Presence, Action::Ack], "{replies:?}");
    assert!(sim.events(watcher).is_empty());
    assert!(sim.members(ROOM).is_empty());
}

#[test]
fn re_entry_with_the_same_data_is_silent_and_with_new_data_is_an_update() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=agent", ROOM);
    let (alice, alice_id) = sim.join("clientId=alice", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "hi"}]));
    sim.events(watcher);

    // As clients re-enter after every reconnect, with or without the member's id.
    let replies = sim.presence(
        alice,
        ROOM,
        1,
        json!([{"action": 2, "data": "hi", "id": format!("{alice_id}:0:0")}]),
    );
    assert!(replies
        .iter()
        .any(|m| m.action == Action::Ack && m.msg_serial == Some(1)));
    assert!(
        sim.events(watcher).is_empty(),
        "an unchanged re-entry is not broadcast"
    );
    sim.presence(alice, ROOM, 2, json!([{"action": 2, "data": "hi"}]));
    assert!(sim.events(watcher).is_empty());

    sim.presence(alice, ROOM, 3, json!([{"action": 2, "data": "away"}]));
    let events = sim.events(watcher);
    assert_eq!(
        summary(&events),
        vec![(PresenceAction::Update, "alice".to_owned())]
    );
    assert_eq!(data(&events[0]).as_deref(), Some("away"));
    assert_eq!(sim.members(ROOM).len(), 1);
}

#[test]
fn update_of_an_absent_member_enters_it() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=agent", ROOM);
    let (alice, _) = sim.join("clientId=alice", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 4, "data": "x"}]));
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Enter, "alice".to_owned())]
    );
    sim.presence(alice, ROOM, 1, json!([{"action": 4, "data": "x"}]));
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Update, "alice".to_owned())],
        "an explicit update is broadcast even when the data is the same"
    );
}

#[test]
fn presence_is_echoed_to_its_sender() {
    let mut sim = Sim::new(HubConfig::default());
    let (alice, _) = sim.join("clientId=alice", ROOM);
    let replies = sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    assert!(replies.iter().any(|m| m.action == Action::Presence));
}

#[test]
fn detach_leaves_at_once_and_only_that_channel() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=agent", ROOM);
    let (alice, _) = sim.join("clientId=alice", ROOM);
    sim.send(alice, json!({"action": 10, "channel": "other"}));
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.presence(alice, "other", 1, json!([{"action": 2}]));
    sim.events(watcher);
    sim.send(alice, json!({"action": 12, "channel": ROOM}));
    let replies = sim.take(alice);
    assert!(replies
        .iter()
        .any(|m| m.action == Action::Detached && m.channel.as_deref() == Some(ROOM)));
    let events = sim.events(watcher);
    assert_eq!(
        summary(&events),
        vec![(PresenceAction::Leave, "alice".to_owned())]
    );
    assert!(!events[0]
        .id
        .as_deref()
        .unwrap()
        .starts_with(events[0].connection_id.as_deref().unwrap()));
    assert!(sim.members(ROOM).is_empty());
    assert_eq!(sim.members("other").len(), 1);
    let replies = sim.presence(alice, ROOM, 2, json!([{"action": 2}]));
    assert_eq!(replies[0].action, Action::Nack);
    assert_eq!(code(&replies[0]), Some(90001));
}

#[test]
fn close_leaves_at_once_everywhere() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=agent", ROOM);
    let (alice, _) = sim.join("clientId=alice", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "d"}]));
    sim.events(watcher);
    sim.send(alice, json!({"action": 7}));
    assert_eq!(sim.take(alice)[0].action, Action::Closed);
    assert!(sim.is_closed(alice));
    let events = sim.events(watcher);
    assert_eq!(
        summary(&events),
        vec![(PresenceAction::Leave, "alice".to_owned())]
    );
    assert_eq!(data(&events[0]).as_deref(), Some("d"));
    assert!(sim.members(ROOM).is_empty());
    assert_eq!(sim.hub.stats().connections, 1);
}

#[test]
fn a_wildcard_connection_enters_several_clients() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=agent", ROOM);
    let (server, connected) = sim.connect("key=app.k:s");
    assert_eq!(
        connected.connection_details.unwrap().client_id.as_deref(),
        Some("*")
    );
    sim.send(server, json!({"action": 10, "channel": ROOM}));
    sim.take(server);
    let replies = sim.presence(
        server,
        ROOM,
        0,
        json!([{"action": 2, "clientId": "bob"}, {"action": 2, "clientId": "carol"}]),
    );
    assert!(replies.iter().any(|m| m.action == Action::Ack));
    assert_eq!(sim.members(ROOM).len(), 2);
    assert_eq!(sim.events(watcher).len(), 2);
    // Without a clientId the wildcard has no one to enter.
    let replies = sim.presence(server, ROOM, 1, json!([{"action": 2}]));
    assert_eq!(
        (replies[0].action, code(&replies[0])),
        (Action::Nack, Some(40012))
    );
    sim.presence(server, ROOM, 2, json!([{"action": 3, "clientId": "bob"}]));
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Leave, "bob".to_owned())]
    );
}

#[test]
fn an_identified_connection_cannot_act_for_another_client() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=agent", ROOM);
    let (alice, _) = sim.join("clientId=alice", ROOM);
    let replies = sim.presence(alice, ROOM, 0, json!([{"action": 2, "clientId": "bob"}]));
    assert_eq!(
        (replies[0].action, code(&replies[0])),
        (Action::Nack, Some(40012))
    );
    assert!(sim.members(ROOM).is_empty());
    assert!(sim.events(watcher).is_empty());
    // A message is applied whole or not at all.
    let replies = sim.presence(
        alice,
        ROOM,
        1,
        json!([{"action": 2}, {"action": 2, "clientId": "bob"}]),
    );
    assert_eq!(replies[0].action, Action::Nack);
    assert!(sim.members(ROOM).is_empty());
}

#[test]
fn attached_grants_modes_and_announces_presence() {
    let mut sim = Sim::new(HubConfig::default());
    let (alice, _) = sim.join("clientId=alice", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    let (bob, _) = sim.connect("clientId=bob");
    sim.send(bob, json!({"action": 10, "channel": ROOM}));
    let replies = sim.take(bob);
    let attached = &replies[0];
    assert_eq!(attached.action, Action::Attached);
    assert!(attached.has_flag(flags::HAS_PRESENCE));
    assert!(attached.has_flag(flags::PRESENCE_SUBSCRIBE));
    assert!(attached.has_flag(flags::PRESENCE));
    assert!(!attached.has_flag(flags::RESUMED));
    assert!(attached.channel_serial.is_some());
    assert_eq!(replies[1].action, Action::Sync);
    // Attaching again keeps continuity.
    sim.send(bob, json!({"action": 10, "channel": ROOM}));
    assert!(sim.take(bob)[0].has_flag(flags::RESUMED));
}

#[test]
fn a_mode_subset_is_granted_as_asked() {
    let mut sim = Sim::new(HubConfig::default());
    let (alice, _) = sim.connect("clientId=alice");
    sim.send(
        alice,
        json!({"action": 10, "channel": ROOM, "flags": flags::PRESENCE_SUBSCRIBE}),
    );
    let attached = &sim.take(alice)[0];
    assert_eq!(
        attached.flags.unwrap() & flags::ALL_MODES,
        flags::PRESENCE_SUBSCRIBE
    );
    let replies = sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    assert_eq!(
        (replies[0].action, code(&replies[0])),
        (Action::Nack, Some(40160))
    );
}

#[test]
fn the_seed_scenario_end_to_end() {
    // user-123 enters from desktop and mobile; the agent sees two entries with one clientId;
    // desktop leaves with a reason; mobile drops and leaves after remainPresentFor; the user is
    // then offline on all devices.
    let mut sim = Sim::new(HubConfig::default());
    let (agent, _) = sim.join("clientId=weather-agent", ROOM);
    sim.presence(
        agent,
        ROOM,
        0,
        json!([{"action": 2, "data": "{\"model\":\"gpt-4\"}", "encoding": "json"}]),
    );
    let (desktop, _) = sim.join("clientId=user-123", ROOM);
    let (mobile, _) = sim.join("clientId=user-123&remainPresentFor=2000", ROOM);
    sim.presence(
        desktop,
        ROOM,
        0,
        json!([{"action": 2, "data": "{\"device\":\"desktop\"}", "encoding": "json"}]),
    );
    sim.presence(
        mobile,
        ROOM,
        0,
        json!([{"action": 2, "data": "{\"device\":\"mobile\"}", "encoding": "json"}]),
    );
    sim.events(agent);
    let user = |sim: &Sim| {
        sim.members(ROOM)
            .into_iter()
            .filter(|(c, _)| c == "user-123")
            .count()
    };
    assert_eq!(user(&sim), 2);

    sim.presence(
        desktop,
        ROOM,
        1,
        json!([{"action": 3, "data": "{\"reason\":\"session-completed\"}", "encoding": "json"}]),
    );
    let events = sim.events(agent);
    assert_eq!(
        data(&events[0]).as_deref(),
        Some("{\"reason\":\"session-completed\"}")
    );
    assert_eq!(user(&sim), 1, "one device left; the user is still online");

    sim.drop_transport(mobile);
    sim.advance(1_999);
    assert_eq!(user(&sim), 1);
    assert!(sim.events(agent).is_empty());
    sim.advance(1);
    assert_eq!(
        summary(&sim.events(agent)),
        vec![(PresenceAction::Leave, "user-123".to_owned())]
    );
    assert_eq!(user(&sim), 0, "offline on all devices");
    assert_eq!(sim.members(ROOM).len(), 1, "the agent is still there");
}

#[test]
fn the_leaves_the_hub_makes_say_why() {
    let reason =
        |e: &rollcall::protocol::PresenceMessage| e.extras.as_ref().map(|x| x.0.to_string());
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (closer, _) = sim.join("clientId=closer", ROOM);
    let (detacher, _) = sim.join("clientId=detacher", ROOM);
    let (dropper, _) = sim.join("clientId=dropper&remainPresentFor=1000", ROOM);
    let (explicit, _) = sim.join("clientId=explicit", ROOM);
    for peer in [closer, detacher, dropper, explicit] {
        sim.presence(peer, ROOM, 0, json!([{"action": 2, "data": "d"}]));
    }
    sim.events(watcher);
    sim.send(closer, json!({"action": 7}));
    sim.send(detacher, json!({"action": 12, "channel": ROOM}));
    sim.drop_transport(dropper);
    sim.advance(1_000);
    sim.presence(explicit, ROOM, 1, json!([{"action": 3}]));
    let events = sim.events(watcher);
    let reasons: Vec<_> = events
        .iter()
        .map(|e| (e.client_id.as_deref().unwrap().to_owned(), reason(e)))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (
                "closer".to_owned(),
                Some(r#"{"reason":"closed"}"#.to_owned())
            ),
            (
                "detacher".to_owned(),
                Some(r#"{"reason":"detached"}"#.to_owned())
            ),
            (
                "dropper".to_owned(),
                Some(r#"{"reason":"timeout"}"#.to_owned())
            ),
            ("explicit".to_owned(), None),
        ]
    );
}

#[test]
fn an_enter_on_a_channel_swept_while_only_presence_mode_was_attached_still_counts() {
    let mut sim = Sim::new(HubConfig::default());
    // Attached to enter, not to listen: nothing of the channel needs keeping, and the sweep
    // forgets it.
    let (alice, _) = sim.connect("clientId=alice");
    sim.send(
        alice,
        json!({"action": 10, "channel": ROOM, "flags": flags::PRESENCE}),
    );
    sim.take(alice);
    sim.advance(400_000);
    let replies = sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "here"}]));
    assert_eq!(replies.last().unwrap().action, Action::Ack);
    assert_eq!(
        sim.members(ROOM).len(),
        1,
        "the acknowledged enter is applied"
    );
    // Someone who comes to listen finds alice there.
    let (watcher, _) = sim.connect("clientId=w");
    sim.send(watcher, json!({"action": 10, "channel": ROOM}));
    let sync = sim.take(watcher);
    let synced = sync
        .iter()
        .filter(|m| m.action == Action::Sync)
        .flat_map(|m| m.presence.clone().unwrap_or_default())
        .count();
    assert_eq!(synced, 1);
}

#[test]
fn many_detaches_and_closes_in_one_turn_reach_a_watcher_in_one_frame_and_each_is_acked_first() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=watcher", ROOM);
    let mut peers = Vec::new();
    for i in 0..40 {
        let (peer, _) = sim.join(&format!("clientId=user-{i}"), ROOM);
        sim.presence(peer, ROOM, 0, json!([{"action": 2}]));
        peers.push(peer);
    }
    sim.take(watcher);
    // Each enters again (a data change) and leaves in the same turn: half by DETACH, half by
    // CLOSE, as a crowd does when a meeting ends.
    let now = sim.now;
    for (i, peer) in peers.iter().enumerate() {
        let update = json!({"action": 14, "channel": ROOM, "msgSerial": 1, "presence": [{"action": 4, "data": "bye"}]});
        sim.hub.handle_text(now, peer.0, &update.to_string());
        let leave = if i % 2 == 0 {
            json!({"action": 12, "channel": ROOM})
        } else {
            json!({"action": 7})
        };
        sim.hub.handle_text(now, peer.0, &leave.to_string());
    }
    sim.drain();
    for peer in &peers {
        let replies = sim.take(*peer);
        let actions: Vec<_> = replies.iter().map(|m| m.action).collect();
        let ack = actions
            .iter()
            .position(|a| *a == Action::Ack)
            .expect("acked");
        let end = actions
            .iter()
            .position(|a| matches!(a, Action::Detached | Action::Closed))
            .expect("detached or closed");
        assert!(ack < end, "the ACK before the end: {actions:?}");
    }
    let frames: Vec<_> = sim
        .take(watcher)
        .into_iter()
        .filter(|m| m.action == Action::Presence)
        .collect();
    let events: usize = frames
        .iter()
        .map(|m| m.presence.as_ref().map_or(0, Vec::len))
        .sum();
    assert_eq!(events, 80, "40 updates and 40 leaves");
    assert!(frames.len() <= 2, "{} frames for one turn", frames.len());
}

#[test]
fn a_re_entry_older_than_the_members_last_update_changes_nothing() {
    // As ably-js does after a resume: an update in flight is sent again first, then the
    // re-entry of what its view held before it (RTP17g), with that operation's id.
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (alice, alice_id) = sim.join("clientId=alice", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "v1"}]));
    sim.presence(alice, ROOM, 1, json!([{"action": 4, "data": "v2"}]));
    sim.events(watcher);
    let replies = sim.presence(
        alice,
        ROOM,
        2,
        json!([{"action": 2, "data": "v1", "id": format!("{alice_id}:0:0")}]),
    );
    assert!(
        replies.iter().any(|m| m.action == Action::Ack),
        "{replies:?}"
    );
    assert!(
        sim.events(watcher).is_empty(),
        "the older re-entry undid the update"
    );
    assert_eq!(
        sim.members(ROOM)
            .iter()
            .filter(|(c, _)| c == "alice")
            .count(),
        1
    );
    // A re-entry that is the newest, or names no operation, applies as before.
    sim.presence(alice, ROOM, 3, json!([{"action": 2, "data": "v3"}]));
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Update, "alice".to_owned())]
    );
}

#[test]
fn a_re_entry_older_than_the_members_own_leave_does_not_bring_it_back() {
    // The echo of a leave went to a transport that was already dead, so the client (ably-js)
    // still holds its member and re-enters it, naming the enter before the leave (RTP17g).
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (alice, alice_id) = sim.join("clientId=alice", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "v1"}]));
    sim.presence(alice, ROOM, 1, json!([{"action": 3}]));
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![
            (PresenceAction::Enter, "alice".to_owned()),
            (PresenceAction::Leave, "alice".to_owned())
        ]
    );
    let replies = sim.presence(
        alice,
        ROOM,
        2,
        json!([{"action": 2, "data": "v1", "id": format!("{alice_id}:0:0")}]),
    );
    // The client is told of its leave again, before the ACK, or it would keep the member as
    // its own and enter it after every reconnect.
    let actions: Vec<Action> = replies.iter().map(|m| m.action).collect();
    assert_eq!(actions, [Action::Presence, Action::Ack], "{replies:?}");
    let echo = &replies[0].presence.as_ref().unwrap()[0];
    assert_eq!(echo.action, PresenceAction::Leave);
    assert_eq!(echo.id.as_deref(), Some(&*format!("{alice_id}:1:0")));
    assert_eq!(echo.client_id.as_deref(), Some("alice"));
    assert_eq!(echo.connection_id.as_deref(), Some(&*alice_id));
    assert!(
        sim.events(watcher).is_empty(),
        "the stale re-entry undid the leave"
    );
    assert!(sim.members(ROOM).is_empty());
    // The client then sends its leave again, as a new message (ably-js): the sender alone
    // hears it, as the echo of that message.
    let replies = sim.presence(alice, ROOM, 3, json!([{"action": 3, "data": "bye"}]));
    let actions: Vec<Action> = replies.iter().map(|m| m.action).collect();
    assert_eq!(actions, [Action::Presence, Action::Ack], "{replies:?}");
    let echo = &replies[0].presence.as_ref().unwrap()[0];
    assert_eq!(echo.action, PresenceAction::Leave);
    assert_eq!(echo.id.as_deref(), Some(&*format!("{alice_id}:3:0")));
    assert_eq!(data(echo).as_deref(), Some("bye"));
    assert!(sim.events(watcher).is_empty(), "no one else hears it");
    // Entering again afterwards is an enter, and so is one that names itself, as a client's
    // first message after a recover may.
    sim.presence(alice, ROOM, 4, json!([{"action": 2, "data": "v2"}]));
    sim.presence(alice, ROOM, 5, json!([{"action": 3}]));
    sim.presence(
        alice,
        ROOM,
        6,
        json!([{"action": 2, "data": "v3", "id": format!("{alice_id}:6:0")}]),
    );
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![
            (PresenceAction::Enter, "alice".to_owned()),
            (PresenceAction::Leave, "alice".to_owned()),
            (PresenceAction::Enter, "alice".to_owned())
        ]
    );
}

#[test]
fn a_connection_attached_without_presence_subscribe_hears_its_own_members_only() {
    let mut sim = Sim::new(HubConfig::default());
    let (alice, connected) = sim.connect("clientId=alice");
    let alice_id = connected.connection_id.unwrap();
    // Ably's advice for a big channel: enter, but do not subscribe to everyone's presence.
    sim.send(
        alice,
        json!({"action": 10, "channel": ROOM, "flags": flags::PRESENCE}),
    );
    sim.take(alice);
    let (bob, _) = sim.join("clientId=bob", ROOM);
    sim.presence(bob, ROOM, 0, json!([{"action": 2}]));
    let mut replies = sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "here"}]));
    replies.extend(sim.presence(alice, ROOM, 1, json!([{"action": 4, "data": "busy"}])));
    sim.presence(bob, ROOM, 1, json!([{"action": 4, "data": "bob's"}]));
    replies.extend(sim.take(alice));
    let heard: Vec<_> = replies
        .into_iter()
        .filter(|m| m.action == Action::Presence)
        .flat_map(|m| m.presence.unwrap_or_default())
        .map(|p| (p.action, p.connection_id.as_deref().map(str::to_owned)))
        .collect();
    // Its own enter and update (RTP17a), from which a client knows what to enter again; not bob.
    assert_eq!(
        heard,
        vec![
            (PresenceAction::Enter, Some(alice_id.to_string())),
            (PresenceAction::Update, Some(alice_id.to_string())),
        ]
    );
}

#[test]
fn attached_again_without_presence_subscribe_a_connection_is_sent_its_own_members_only() {
    let mut sim = Sim::new(HubConfig::default());
    let (bob, _) = sim.join("clientId=bob", ROOM);
    sim.presence(bob, ROOM, 0, json!([{"action": 2}]));
    let (alice, connected) = sim.connect("clientId=alice");
    let alice_id = connected.connection_id.unwrap();
    let key = connected
        .connection_details
        .unwrap()
        .connection_key
        .unwrap();
    let attach = json!({"action": 10, "channel": ROOM, "flags": flags::PRESENCE});
    sim.send(alice, attach.clone());
    let first = sim.take(alice);
    // Nothing of its own yet: no SYNC, and not bob.
    assert!(
        first.iter().all(|m| !m.has_flag(flags::HAS_PRESENCE)),
        "{first:?}"
    );
    assert!(first.iter().all(|m| m.action != Action::Sync), "{first:?}");
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "here"}]));
    // The transport drops and the client resumes; it attaches again as it did.
    sim.drop_transport(alice);
    let (again, resumed) = sim.connect(&format!("clientId=alice&resume={key}"));
    assert_eq!(resumed.connection_id.as_deref(), Some(&*alice_id));
    sim.send(again, attach);
    let replies = sim.take(again);
    let attached = replies
        .iter()
        .find(|m| m.action == Action::Attached)
        .expect("ATTACHED");
    assert!(attached.has_flag(flags::HAS_PRESENCE), "{attached:?}");
    let synced: Vec<_> = replies
        .iter()
        .filter(|m| m.action == Action::Sync)
        .flat_map(|m| m.presence.clone().unwrap_or_default())
        .map(|p| (p.client_id.as_deref().map(str::to_owned), data(&p)))
        .collect();
    // Its own member, so that it does not take it for gone; not bob.
    assert_eq!(
        synced,
        vec![(Some("alice".to_owned()), Some("here".to_owned()))]
    );
}

#[test]
fn extras_arrive_as_they_were_sent_keys_in_their_order() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (peer, _) = sim.join("clientId=a", ROOM);
    sim.events(watcher);
    let extras = json!({"z": 1, "a": {"y": 2, "b": 3}, "m": [3, 1]});
    sim.presence(peer, ROOM, 0, json!([{"action": 2, "extras": extras}]));
    let events = sim.events(watcher);
    assert_eq!(
        events[0]
            .extras
            .as_ref()
            .map(|e| e.0.to_string())
            .as_deref(),
        Some(r#"{"z":1,"a":{"y":2,"b":3},"m":[3,1]}"#)
    );
}

#[test]
fn a_leave_of_a_member_the_hub_already_removed_still_stops_an_older_re_entry() {
    // Alice's member timed out while her transport was down. She resumes and leaves: the
    // member is gone, so only she hears the leave, and its echo is lost with her transport.
    // ably-js still holds the member as its own and re-enters it after the next resume,
    // naming the enter before that leave (RTP17g): the user would come back after every
    // reconnect, although she left and the hub acknowledged it.
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (alice, connected) = sim.connect("clientId=alice&remainPresentFor=1000");
    let alice_id = connected.connection_id.unwrap();
    let key = connected
        .connection_details
        .unwrap()
        .connection_key
        .unwrap();
    let attach = json!({"action": 10, "channel": ROOM});
    sim.send(alice, attach.clone());
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "v1"}]));
    sim.drop_transport(alice);
    sim.advance(2_000);
    assert!(sim.members(ROOM).is_empty(), "timed out");
    let (again, _) = sim.connect(&format!("clientId=alice&resume={key}"));
    sim.send(again, attach.clone());
    sim.presence(again, ROOM, 1, json!([{"action": 3}]));
    // The echo went to a transport already dead; the client resumes and re-enters.
    sim.drop_transport(again);
    let (third, _) = sim.connect(&format!("clientId=alice&resume={key}"));
    sim.send(third, attach);
    sim.take(third);
    sim.events(watcher);
    let replies = sim.presence(
        third,
        ROOM,
        2,
        json!([{"action": 2, "data": "v1", "id": format!("{alice_id}:0:0")}]),
    );
    assert!(
        sim.members(ROOM).is_empty(),
        "the stale re-entry undid the leave"
    );
    assert!(sim.events(watcher).is_empty());
    // Told of its leave again, so that it stops holding the member.
    let echo = replies
        .iter()
        .filter_map(|m| m.presence.as_ref())
        .flatten()
        .find(|p| p.action == PresenceAction::Leave)
        .unwrap_or_else(|| panic!("no leave told: {replies:?}"));
    assert_eq!(echo.id.as_deref(), Some(&*format!("{alice_id}:1:0")));
}
