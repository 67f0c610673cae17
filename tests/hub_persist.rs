//! Durable state and hosts that cannot ping (a Durable Object): the hub rebuilt from what it
//! stored keeps every member, makes no leave or enter for anyone, and carries on with grace
//! windows and resumes; silence only ends connections that heartbeat themselves.

mod common;

use common::{code, summary, Sim};
use rollcall::hub::HubConfig;
use rollcall::protocol::{flags, Action, PresenceAction};
use serde_json::json;

const ROOM: &str = "room";

fn edge_config() -> HubConfig {
    HubConfig {
        persistence: true,
        host_pings: false,
        ..HubConfig::default()
    }
}

#[test]
fn a_rebuilt_hub_keeps_every_member_and_nobody_sees_a_leave_or_an_enter() {
    let mut sim = Sim::new(edge_config());
    let (watcher, _) = sim.join("clientId=watcher", ROOM);
    let (alice, alice_connected) = sim.connect("clientId=alice&remainPresentFor=5000");
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "laptop"}]));
    let (server, _) = sim.join("key=app.k:s&format=json", ROOM);
    sim.presence(server, ROOM, 0, json!([{"action": 2, "clientId": "bot-1"}, {"action": 2, "clientId": "bot-2", "data": "{\"model\":\"x\"}", "encoding": "json"}]));
    let (dropper, _) = sim.join("clientId=dropper&remainPresentFor=4000", ROOM);
    sim.presence(dropper, ROOM, 0, json!([{"action": 2}]));
    let (closer, _) = sim.join("clientId=closer", ROOM);
    sim.presence(closer, ROOM, 0, json!([{"action": 2}]));
    sim.send(closer, json!({"action": 7}));
    sim.drop_transport(dropper);
    sim.advance(1_000);
    let before = sim.members(ROOM);
    let data_before: Vec<_> = sim.hub.members(ROOM).iter().map(common::data).collect();
    sim.events(watcher);
    for peer in [alice, server] {
        sim.take(peer);
    }
    assert!(sim.store.keys().any(|k| k.starts_with("m:")));
    assert!(
        sim.store.keys().all(|k| !k.contains("closer")),
        "the closed connection's member is gone"
    );

    sim.evict(edge_config());
    assert_eq!(sim.members(ROOM), before);
    let data_after: Vec<_> = sim.hub.members(ROOM).iter().map(common::data).collect();
    assert_eq!(data_after, data_before);
    assert!(
        sim.events(watcher).is_empty(),
        "no leave and no enter on restore"
    );

    // The dropped connection's grace window carries on from when it dropped.
    sim.advance(2_999);
    assert!(sim.events(watcher).is_empty());
    sim.advance(1);
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Leave, "dropper".to_owned())]
    );

    // Live connections carry on: serials continue, updates reach the watcher.
    let replies = sim.presence(alice, ROOM, 1, json!([{"action": 4, "data": "phone"}]));
    assert_eq!(replies.last().unwrap().action, Action::Ack);
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Update, "alice".to_owned())]
    );
    let replies = sim.presence(alice, ROOM, 0, json!([{"action": 4, "data": "stale"}]));
    assert_eq!(
        replies[0].action,
        Action::Ack,
        "a resend of an acknowledged serial"
    );
    assert!(sim.events(watcher).is_empty());

    // A connection dropped after the rebuild can still resume with its key.
    sim.drop_transport(alice);
    let key = alice_connected
        .connection_details
        .unwrap()
        .connection_key
        .unwrap();
    let (_, resumed) = sim.connect(&format!(
        "clientId=alice&remainPresentFor=5000&resume={key}"
    ));
    assert_eq!(resumed.connection_id, alice_connected.connection_id);
    assert!(code(&resumed).is_none());
    sim.advance(60_000);
    assert!(sim.events(watcher).is_empty());
}

#[test]
fn a_socket_that_closed_while_evicted_starts_its_grace_window_on_restore() {
    let mut sim = Sim::new(edge_config());
    let (watcher, _) = sim.join("clientId=watcher", ROOM);
    let (alice, _) = sim.join("clientId=alice&remainPresentFor=2000", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.events(watcher);
    // The socket is gone when the object comes back, and nobody told the hub.
    sim.frozen.insert(alice.0);
    wake(&mut sim, &[watcher]);
    sim.advance(1_999);
    assert_eq!(sim.members(ROOM).len(), 1);
    sim.advance(1);
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Leave, "alice".to_owned())]
    );
}

#[test]
fn without_pings_silence_ends_only_connections_that_heartbeat() {
    let mut sim = Sim::new(edge_config());
    let (watcher, _) = sim.join("clientId=watcher&heartbeatInterval=60000", ROOM);
    let (quiet, _) = sim.join(
        "clientId=quiet&heartbeats=false&heartbeatInterval=2000&remainPresentFor=1000",
        ROOM,
    );
    let (beating, _) = sim.join(
        "clientId=beating&heartbeatInterval=2000&remainPresentFor=1000",
        ROOM,
    );
    sim.presence(quiet, ROOM, 0, json!([{"action": 2}]));
    sim.presence(beating, ROOM, 0, json!([{"action": 2}]));
    sim.send(beating, json!({"action": 0}));
    sim.events(watcher);
    sim.take(quiet);
    sim.advance(2_999);
    assert!(!sim.is_closed(beating));
    sim.advance(1);
    assert!(
        sim.is_closed(beating),
        "a heartbeating client that goes silent is dropped"
    );
    sim.advance(60_000);
    assert!(
        !sim.is_closed(quiet),
        "a client that never heartbeats is not dropped for silence"
    );
    assert!(
        sim.pings.is_empty(),
        "a host that cannot ping is never asked to"
    );
    let heartbeats = sim
        .take(quiet)
        .iter()
        .filter(|m| m.action == Action::Heartbeat)
        .count();
    assert!(
        heartbeats >= 25,
        "keep-alives are protocol HEARTBEATs: {heartbeats}"
    );
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Leave, "beating".to_owned())]
    );
}

/// The presence history as the REST read returns it: (action, clientId, data), newest first.
fn history(sim: &mut Sim) -> Vec<(String, String, String)> {
    let response = sim.get(&format!("/channels/{ROOM}/presence/history"));
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    body.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
            (m["action"].to_string(), s("clientId"), s("data"))
        })
        .collect()
}

/// `n` updates from `peer`, with data `d0`, `d1`, …
fn updates(sim: &mut Sim, peer: common::Peer, n: i64) {
    for serial in 0..n {
        let data = format!("d{serial}");
        sim.presence(peer, ROOM, serial, json!([{"action": 4, "data": data}]));
    }
}

fn history_keys(sim: &Sim) -> usize {
    sim.store.keys().filter(|k| k.starts_with("h:")).count()
}

#[test]
fn presence_history_survives_eviction_and_expires_from_storage_too() {
    let mut sim = Sim::new(edge_config());
    let (alice, _) = sim.join("clientId=alice", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "laptop"}]));
    sim.presence(alice, ROOM, 1, json!([{"action": 4, "data": "phone"}]));
    let (bob, _) = sim.join("clientId=bob", ROOM);
    sim.presence(bob, ROOM, 0, json!([{"action": 2, "data": "tablet"}]));
    sim.presence(bob, ROOM, 1, json!([{"action": 3}]));
    let before = history(&mut sim);
    assert_eq!(before.len(), 4);
    assert_eq!(history_keys(&sim), 4, "one record per event");

    sim.evict(edge_config());
    assert_eq!(history(&mut sim), before, "history is back, in order");

    // New events carry on after the restored ones, and are stored.
    sim.presence(alice, ROOM, 2, json!([{"action": 4, "data": "desk"}]));
    let after = history(&mut sim);
    assert_eq!(after.len(), 5);
    assert_eq!(after[0].2, "desk");
    assert_eq!(&after[1..], &before[..]);
    assert_eq!(history_keys(&sim), 5);

    // Expired history leaves storage with the hub's copy.
    sim.advance(120_001);
    sim.advance(120_001);
    assert!(history(&mut sim).is_empty());
    assert_eq!(history_keys(&sim), 0, "expired events are deleted");
}

#[test]
fn events_after_a_restore_follow_the_serial_even_when_history_had_expired() {
    let mut sim = Sim::new(edge_config());
    let (alice, _) = sim.join("clientId=alice", ROOM);
    updates(&mut sim, alice, 3);
    sim.advance(120_001);
    sim.advance(120_001);
    assert!(history(&mut sim).is_empty());
    sim.evict(edge_config());

    // A watcher attaches, then alice updates: history up to the attach leaves that out.
    let (_, serial) = sim.attach_with("clientId=watcher", ROOM, 0);
    sim.presence(alice, ROOM, 3, json!([{"action": 4, "data": "late"}]));
    let response = sim.get(&format!(
        "/channels/{ROOM}/presence/history?from_serial={serial}"
    ));
    assert_eq!(response.status, 200);
    assert_eq!(&*response.body, b"[]", "the update came after the attach");
    assert_eq!(history(&mut sim).len(), 1);
}

#[test]
fn only_the_newest_events_are_kept_in_storage_and_a_gap_is_stale() {
    let config = || HubConfig {
        history_limit: 3,
        ..edge_config()
    };
    let mut sim = Sim::new(config());
    let (alice, _) = sim.join("clientId=alice", ROOM);
    updates(&mut sim, alice, 6);
    assert_eq!(history_keys(&sim), 3, "as many records as the hub keeps");
    let kept = history(&mut sim);
    assert_eq!(
        kept.iter().map(|e| e.2.as_str()).collect::<Vec<_>>(),
        ["d5", "d4", "d3"]
    );

    // A record left behind from an older run of events (a write that was lost) is dropped on
    // restore: history stays one unbroken run.
    let newest = sim
        .store
        .keys()
        .filter(|k| k.starts_with("h:"))
        .max()
        .unwrap()
        .clone();
    let value = sim.store[&newest].clone();
    let orphan = newest.replace(&newest[newest.len() - 20..], &format!("{:020}", 1));
    sim.store.insert(orphan.clone(), value);
    sim.evict(config());
    assert!(
        !sim.store.contains_key(&orphan),
        "the stale record is deleted"
    );
    assert_eq!(history(&mut sim), kept);
}

#[test]
fn history_that_a_read_pruned_leaves_storage_at_the_next_sweep() {
    let mut sim = Sim::new(edge_config());
    let (alice, _) = sim.join("clientId=alice&heartbeats=false", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    assert_eq!(history_keys(&sim), 1);
    sim.advance(130_000);
    assert!(history(&mut sim).is_empty(), "the read drops what expired");
    sim.advance(120_000);
    assert_eq!(sim.members(ROOM).len(), 1, "the channel is still in use");
    assert_eq!(history_keys(&sim), 0, "and storage followed");
}

#[test]
fn a_smaller_history_limit_applies_on_restore() {
    let mut sim = Sim::new(edge_config());
    let (alice, _) = sim.join("clientId=alice", ROOM);
    updates(&mut sim, alice, 5);
    assert_eq!(history_keys(&sim), 5);
    sim.evict(HubConfig {
        history_limit: 2,
        ..edge_config()
    });
    let kept: Vec<_> = history(&mut sim).into_iter().map(|e| e.2).collect();
    assert_eq!(kept, ["d4", "d3"]);
    assert_eq!(history_keys(&sim), 2, "the older records are deleted");
}

#[test]
fn a_rebuilt_hub_drops_the_oldest_history_first_whatever_the_channel_names() {
    let mut sim = Sim::new(edge_config());
    let (peer, _) = sim.connect("clientId=p");
    let data = "x".repeat(1000);
    // "z-old" has the oldest events, "a-new" the newest: name order is the reverse of age.
    let mut serial = 0;
    for channel in ["z-old", "a-new"] {
        sim.send(peer, json!({"action": 10, "channel": channel}));
        for _ in 0..10 {
            sim.presence(peer, channel, serial, json!([{"action": 4, "data": data}]));
            serial += 1;
            sim.advance(100);
        }
    }
    let held = sim.hub.stats().history_bytes;
    // Rebuilt with room for a little over half of it.
    sim.evict(HubConfig {
        max_history_bytes: held * 6 / 10,
        ..edge_config()
    });
    assert!(sim.hub.stats().history_bytes <= held * 6 / 10);
    let count = |sim: &mut Sim, channel: &str| {
        let request = rollcall::hub::RestRequest {
            method: "GET",
            url: &format!("/channels/{channel}/presence/history?limit=100"),
            authorization: None,
            accept: Some("application/json"),
            origin: None,
            body: &[],
        };
        let response = sim.hub.handle_rest(sim.now, &request).unwrap();
        serde_json::from_slice::<serde_json::Value>(&response.body)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(count(&mut sim, "a-new"), 10, "the newest history stays");
    assert!(count(&mut sim, "z-old") < 10, "the oldest goes first");
    // What the budget dropped leaves storage too: a second rebuild holds the same.
    let after = (count(&mut sim, "a-new"), count(&mut sim, "z-old"));
    sim.drain();
    sim.evict(edge_config());
    assert_eq!((count(&mut sim, "a-new"), count(&mut sim, "z-old")), after);
}

#[test]
fn a_rebuilt_hub_still_counts_the_places_its_connections_took() {
    let config = || HubConfig {
        keys: rollcall::hub::ApiKey::parse_list("app.k1:secret-one").unwrap(),
        max_connections_per_client: 2,
        ..edge_config()
    };
    let mut sim = Sim::new(config());
    let now = sim.now / 1000;
    let wildcard = common::jwt(
        "app.k1",
        "secret-one",
        &json!({"x-ably-clientId": "*", "iat": now, "exp": now + 3600}),
    );
    sim.connect(&format!("access_token={wildcard}&clientId=u1"));
    sim.connect(&format!("access_token={wildcard}&clientId=u2"));
    sim.evict(config());
    let (_, refused) = sim.open(&format!("access_token={wildcard}&clientId=u3"));
    assert_eq!(code(&refused), Some(40150));
}

/// Rebuilds the hub from its storage at `sim.now` with only `open` sockets surviving, as a
/// Durable Object wakes after some closed unseen.
fn wake(sim: &mut Sim, open: &[common::Peer]) {
    let records: Vec<(String, Vec<u8>)> = sim.store.clone().into_iter().collect();
    let open: Vec<_> = open.iter().map(|p| p.0).collect();
    let (hub, _) = rollcall::hub::Hub::restore(edge_config(), sim.now, records, &open);
    sim.hub = hub;
    sim.drain();
}

#[test]
fn a_grace_window_begun_on_a_wake_carries_on_through_the_next() {
    let mut sim = Sim::new(edge_config());
    let (watcher, _) = sim.join("clientId=watcher", ROOM);
    let (alice, _) = sim.join("clientId=alice&remainPresentFor=10000", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.events(watcher);
    // Alice's socket closes while the object sleeps; it wakes, and sleeps again before her
    // grace window ends.
    wake(&mut sim, &[watcher]);
    sim.advance(6_000);
    wake(&mut sim, &[watcher]);
    sim.advance(3_999);
    assert!(sim.events(watcher).is_empty());
    sim.advance(1);
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Leave, "alice".to_owned())]
    );
}

#[test]
fn a_hub_woken_on_a_clock_behind_still_ends_its_members_with_leaves_that_count() {
    let mut sim = Sim::new(edge_config());
    sim.advance(120_000);
    let (watcher, _) = sim.join("clientId=watcher", ROOM);
    let (alice, _) = sim.join("clientId=alice&remainPresentFor=1000", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    let entered = sim.events(watcher)[0].timestamp.unwrap();
    // The object wakes on a machine whose clock is a minute behind.
    sim.now -= 60_000;
    wake(&mut sim, &[watcher, alice]);
    sim.drop_transport(alice);
    sim.advance(70_000);
    let events = sim.events(watcher);
    assert_eq!(
        summary(&events),
        vec![(PresenceAction::Leave, "alice".to_owned())]
    );
    assert!(
        events[0].timestamp.unwrap() >= entered,
        "a leave no older than the enter it ends, or clients keep the member (RTP2b)"
    );
    assert!(sim.members(ROOM).is_empty());
}

#[test]
fn a_silent_client_is_noticed_though_the_object_is_evicted_more_often_than_its_interval() {
    let mut sim = Sim::new(edge_config());
    let (watcher, _) = sim.join("clientId=watcher&heartbeatInterval=60000", ROOM);
    let (alice, _) = sim.join(
        "clientId=alice&agent=rollcall-js&heartbeatInterval=2000&remainPresentFor=1000",
        ROOM,
    );
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.events(watcher);
    let last_heard = sim.now;
    // Alice freezes. The object sleeps and wakes every 1.5 s, sooner than her 2 s interval
    // and its margin; the host tells each new hub when it last heard from each socket.
    let mut left_after = None;
    for wake in 1..=8u64 {
        sim.advance(1_500);
        if !summary(&sim.events(watcher)).is_empty() {
            left_after = Some(wake * 1_500);
            break;
        }
        sim.evict(edge_config());
        sim.hub.handle_last_heard(watcher.0, sim.now);
        sim.hub.handle_last_heard(alice.0, last_heard);
        sim.drain();
    }
    // Noticed 3 s after her last word (2 s interval and its 1 s margin), gone 1 s later.
    let left_after = left_after.expect("alice left");
    assert!((4_000..=6_000).contains(&left_after), "{left_after}");
    assert!(sim.members(ROOM).iter().all(|(c, _)| c != "alice"));
}

#[test]
fn a_hub_woken_long_after_a_client_went_silent_drops_it_at_once() {
    let mut sim = Sim::new(edge_config());
    let (watcher, _) = sim.join("clientId=watcher&heartbeatInterval=60000", ROOM);
    let (alice, _) = sim.join(
        "clientId=alice&agent=rollcall-js&heartbeatInterval=10000&remainPresentFor=1000",
        ROOM,
    );
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.events(watcher);
    let last_heard = sim.now;
    // Alice freezes; the object sleeps for a minute (its deadlines restored from storage are
    // all past at the wake, which is no stall of the hub's): the host says when it last heard
    // from each socket, and alice, silent past her interval and margin, is dropped at once.
    sim.now += 60_000;
    sim.evict(edge_config());
    sim.hub.handle_last_heard(watcher.0, sim.now);
    sim.hub.handle_last_heard(alice.0, last_heard);
    sim.drain();
    sim.advance(1_100);
    assert_eq!(
        summary(&sim.events(watcher)),
        [(PresenceAction::Leave, "alice".to_owned())],
        "gone a grace window after the wake, not a margin later"
    );
}

#[test]
fn a_woken_hub_sends_a_keep_alive_at_once_to_clients_that_want_heartbeats() {
    let mut sim = Sim::new(edge_config());
    let (browser, _) = sim.join("clientId=b&heartbeats=true", ROOM);
    sim.take(browser);
    // Evicted for longer than its interval could have run: nothing says when it last heard.
    sim.advance(10_000);
    sim.evict(edge_config());
    sim.advance(0);
    let frames = sim.take(browser);
    assert!(
        frames.iter().any(|m| m.action == Action::Heartbeat),
        "{frames:?}"
    );
}

#[test]
fn a_connection_dropped_before_a_wake_resumes_without_resumed_where_its_kept_frames_are_gone() {
    let mut sim = Sim::new(edge_config());
    let (watcher, connected) = sim.connect("clientId=w&remainPresentFor=60000");
    for channel in [ROOM, "quiet"] {
        sim.send(watcher, json!({"action": 10, "channel": channel}));
    }
    sim.take(watcher);
    let (alice, _) = sim.join("clientId=alice", ROOM);
    sim.drop_transport(watcher);
    // Kept for the watcher in memory, and gone with the object; nothing happens on "quiet".
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.evict(edge_config());
    let key = connected
        .connection_details
        .unwrap()
        .connection_key
        .unwrap();
    let (again, resumed) = sim.connect(&format!("clientId=w&remainPresentFor=60000&resume={key}"));
    assert_eq!(resumed.connection_id, connected.connection_id);
    sim.take(again);
    // It re-attaches each channel, as Ably's clients do after a resume.
    let resumed_on = |sim: &mut Sim, channel: &str| {
        sim.send(again, json!({"action": 10, "channel": channel}));
        let replies = sim.take(again);
        let attached = replies
            .iter()
            .find(|m| m.action == Action::Attached)
            .expect("attached");
        attached.has_flag(rollcall::protocol::flags::RESUMED)
    };
    assert!(!resumed_on(&mut sim, ROOM), "it missed alice's enter");
    assert!(resumed_on(&mut sim, "quiet"), "it missed nothing there");
    assert_eq!(sim.members(ROOM).len(), 1);
}

#[test]
fn a_renewal_asked_for_before_a_wake_is_not_asked_for_again_after_it() {
    let config = || HubConfig {
        keys: rollcall::hub::ApiKey::parse_list("app.k1:secret-one").unwrap(),
        ..edge_config()
    };
    let mut sim = Sim::new(config());
    let now = sim.now / 1000;
    let token = common::jwt(
        "app.k1",
        "secret-one",
        &json!({"x-ably-clientId": "alice", "iat": now, "exp": now + 30}),
    );
    let (alice, _) = sim.join(&format!("access_token={token}&heartbeats=true"), ROOM);
    sim.take(alice);
    // A third of its life before it expires, the hub asks once.
    sim.advance(20_000);
    let auths = |frames: Vec<rollcall::protocol::ProtocolMessage>| {
        frames.iter().filter(|m| m.action == Action::Auth).count()
    };
    assert_eq!(auths(sim.take(alice)), 1);
    // The client is busy getting a token while the object sleeps and wakes: one question is
    // enough (each asks it for another token).
    sim.evict(config());
    sim.advance(2_000);
    sim.evict(config());
    sim.advance(2_000);
    assert_eq!(auths(sim.take(alice)), 0);
}

#[test]
fn the_earlier_keys_of_a_recovered_connection_still_recover_it_after_a_wake() {
    let mut sim = Sim::new(edge_config());
    let key = |m: &rollcall::protocol::ProtocolMessage| {
        m.connection_details
            .as_ref()
            .and_then(|d| d.connection_key.as_deref())
            .unwrap()
            .to_owned()
    };
    let (_, connected) = sim.connect("clientId=alice");
    let k1 = key(&connected);
    let (second, recovered) = sim.connect(&format!("clientId=alice&recover={k1}"));
    assert!(recovered.error.is_none());
    sim.drop_transport(second);
    sim.evict(edge_config());
    let (_, again) = sim.connect(&format!("clientId=alice&recover={k1}"));
    assert_eq!(again.connection_id, connected.connection_id);
    assert!(again.error.is_none(), "{:?}", again.error);
}

#[test]
fn an_object_woken_by_the_alarm_of_a_grace_notice_still_gives_it_and_later_says_back() {
    let mut sim = Sim::new(edge_config());
    let (watcher, _) = sim.join("clientId=w&agent=rollcall-js%2F0.1.0", ROOM);
    let (alice, connected) = sim.connect("clientId=alice&remainPresentFor=15000");
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.take(watcher);
    sim.drop_transport(alice);
    // The object is evicted before the notice, and its alarm wakes it when the notice is due.
    sim.now += 2_250;
    sim.evict(edge_config());
    sim.advance(0);
    let statuses = |messages: Vec<rollcall::protocol::ProtocolMessage>| -> Vec<PresenceAction> {
        messages
            .into_iter()
            .filter(|m| m.action == Action::ConnectionStatus)
            .flat_map(|m| m.presence.unwrap_or_default())
            .map(|i| i.action)
            .collect()
    };
    assert_eq!(statuses(sim.take(watcher)), [PresenceAction::Absent]);
    // Evicted again: the object still knows it told of the drop, and says she is back.
    sim.evict(edge_config());
    let key = connected
        .connection_details
        .unwrap()
        .connection_key
        .unwrap();
    sim.connect(&format!("clientId=alice&resume={key}"));
    // The return is told on the next tick; the object that sleeps before it still tells it.
    assert_eq!(statuses(sim.take(watcher)), []);
    sim.evict(edge_config());
    sim.advance(250);
    assert_eq!(statuses(sim.take(watcher)), [PresenceAction::Present]);
}

#[test]
fn a_channels_serial_is_stored_with_the_member_it_counts_and_goes_with_the_channel() {
    let mut sim = Sim::new(edge_config());
    let key = format!("s:{ROOM}");
    let (alice, _) = sim.join("clientId=alice", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "a"}]));
    let entered = sim.store.get(&key).cloned().expect("the serial is stored");
    sim.presence(alice, ROOM, 1, json!([{"action": 4, "data": "b"}]));
    let updated = sim.store.get(&key).cloned().expect("the serial is stored");
    assert_ne!(entered, updated, "it moves on with each event");
    // A woken object numbers on from it: the next frame is not one a client heard before.
    let serial = |m: &rollcall::protocol::ProtocolMessage| {
        m.channel_serial
            .as_deref()
            .and_then(|s| s.rsplit_once(':'))
            .and_then(|(_, n)| n.parse::<u64>().ok())
    };
    let (watcher, _) = sim.connect("clientId=w");
    sim.send(watcher, json!({"action": 10, "channel": ROOM}));
    let attached: Vec<u64> = sim.take(watcher).iter().filter_map(serial).collect();
    sim.evict(edge_config());
    sim.presence(alice, ROOM, 2, json!([{"action": 4, "data": "c"}]));
    let after: Vec<u64> = sim.take(watcher).iter().filter_map(serial).collect();
    assert_eq!(
        after,
        [attached[0] + 1],
        "the event after the two the watcher attached after"
    );
    // Once everyone has gone and the history expired, the channel is forgotten, and so is its
    // serial.
    sim.send(alice, json!({"action": 7}));
    sim.send(watcher, json!({"action": 7}));
    sim.advance(300_000);
    assert!(
        sim.store.keys().all(|k| !k.starts_with("s:")),
        "{:?}",
        sim.store.keys()
    );
}

#[test]
fn the_channels_a_recovering_client_has_yet_to_attach_again_are_left_after_a_wake_too() {
    let mut sim = Sim::new(edge_config());
    let (watcher, _) = sim.join("clientId=w", "elsewhere");
    let (first, connected) = sim.connect("clientId=alice");
    sim.send(first, json!({"action": 10, "channel": "elsewhere"}));
    sim.presence(first, "elsewhere", 0, json!([{"action": 2}]));
    sim.events(watcher);
    let key = connected
        .connection_details
        .unwrap()
        .connection_key
        .unwrap();
    sim.open(&format!(
        "clientId=alice&remainPresentFor=5000&recover={key}"
    ));
    sim.advance(1_000);
    sim.evict(edge_config());
    sim.advance(3_999);
    assert!(sim.events(watcher).is_empty());
    sim.advance(1);
    assert_eq!(
        summary(&sim.events(watcher)),
        [(PresenceAction::Leave, "alice".to_string())]
    );
}

#[test]
fn a_woken_object_still_knows_a_clients_own_leaves_and_refusals() {
    let mut sim = Sim::new(edge_config());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (alice, alice_id) = sim.join("clientId=alice", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "v1"}]));
    sim.presence(alice, ROOM, 1, json!([{"action": 3}]));
    // Refused: enter as someone else.
    let refused = sim.presence(alice, ROOM, 2, json!([{"action": 2, "clientId": "bob"}]));
    assert_eq!(code(&refused[0]), Some(40012));
    sim.events(watcher);
    // A deploy: the object is evicted and woken, the sockets stay as they were.
    sim.evict(edge_config());

    // The client never heard its leave's echo, and re-enters the member as it was: ignored,
    // and told of the leave again.
    let replies = sim.presence(
        alice,
        ROOM,
        3,
        json!([{"action": 2, "data": "v1", "id": format!("{alice_id}:0:0")}]),
    );
    let echo = replies
        .iter()
        .find(|m| m.action == Action::Presence)
        .expect("the leave told again");
    assert_eq!(
        echo.presence.as_ref().unwrap()[0].id.as_deref(),
        Some(&*format!("{alice_id}:1:0"))
    );
    assert!(sim.events(watcher).is_empty(), "no ghost came back");
    assert!(sim.members(ROOM).iter().all(|(c, _)| c != "alice"));
    // The refused message sent again (its NACK lost) is refused again, not acknowledged.
    sim.send(
        alice,
        json!({"action": 14, "channel": ROOM, "msgSerial": 2, "presence": [{"action": 2, "clientId": "bob"}]}),
    );
    let again = sim.take(alice);
    assert_eq!(
        (again[0].action, code(&again[0])),
        (Action::Nack, Some(40012))
    );
}

#[test]
fn a_channel_rebuilt_with_no_stored_serial_numbers_on_from_the_time_not_from_0() {
    let mut sim = Sim::new(edge_config());
    // Attached to enter, not to listen: the channel is forgotten (and its serial with it)
    // while the attachment stays.
    let (_, serial) = sim.attach_with("clientId=agent", ROOM, flags::PRESENCE);
    sim.advance(400_000);
    assert!(sim.store.keys().all(|k| !k.starts_with("s:")));
    sim.evict(edge_config());
    let (late, _) = sim.join("clientId=late", ROOM);
    sim.presence(late, ROOM, 0, json!([{"action": 2, "data": "after"}]));
    let response = sim.get(&format!(
        "/channels/{ROOM}/presence/history?from_serial={serial}"
    ));
    assert_eq!(
        &*response.body, b"[]",
        "the enter came after the agent attached"
    );
}

#[test]
fn the_ids_of_leaves_the_hub_makes_are_not_made_again_after_a_wake() {
    // They are stored in history; made again from 1 after each wake, two leaves in one
    // channel's history had one id (an id is unique, TP3a).
    let mut sim = Sim::new(edge_config());
    let (watcher, _) = sim.join("clientId=watcher", ROOM);
    let mut ids = Vec::new();
    for name in ["alice", "bob"] {
        let (peer, _) = sim.join(&format!("clientId={name}&remainPresentFor=1000"), ROOM);
        sim.presence(peer, ROOM, 0, json!([{"action": 2}]));
        sim.drop_transport(peer);
        sim.advance(2_000);
        let leaves: Vec<_> = sim
            .events(watcher)
            .into_iter()
            .filter(|e| e.action == rollcall::protocol::PresenceAction::Leave)
            .filter_map(|e| e.id.as_deref().map(str::to_owned))
            .collect();
        assert_eq!(leaves.len(), 1, "{name}'s leave");
        ids.extend(leaves);
        sim.evict(edge_config());
    }
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn an_object_evicted_more_often_than_its_history_lives_still_forgets_its_channels() {
    let mut sim = Sim::new(edge_config());
    let (alice, _) = sim.join("clientId=alice", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.presence(alice, ROOM, 1, json!([{"action": 3}]));
    // She closes; the object is evicted, and woken (by its alarm, a keep-alive or a request)
    // sooner than history_ttl (120 s) each time. The sweep was armed a whole ttl after each
    // wake, so it never came: the channel's records stayed, and woke the object for ever.
    sim.send(alice, json!({"action": 7}));
    for _ in 0..6 {
        sim.advance(50_000);
        wake(&mut sim, &[]);
    }
    let left: Vec<&String> = sim.store.keys().collect();
    assert!(
        left.iter()
            .all(|k| !k.starts_with("h:") && !k.starts_with("s:")),
        "expired history and its idle channel leave storage: {left:?}"
    );
    assert_eq!(
        sim.hub.poll_timeout(),
        None,
        "an object that holds nothing sets no alarm"
    );
}

#[test]
fn a_recovered_clients_numbering_outlives_an_eviction() {
    let mut sim = Sim::new(edge_config());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (alice, connected) = sim.connect("clientId=alice&agent=ably-js");
    let key = connected
        .connection_details
        .and_then(|d| d.connection_key)
        .unwrap();
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    sim.take(alice);
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "v1"}]));
    sim.presence(alice, ROOM, 1, json!([{"action": 3}]));
    sim.close_unnoticed(alice);
    // Recovered from its first key: its messages are numbered from 1 again, and counted on.
    let (second, _) = sim.open(&format!("clientId=alice&agent=ably-js&recover={key}"));
    sim.send(second, json!({"action": 10, "channel": ROOM}));
    sim.take(second);
    sim.presence(second, ROOM, 1, json!([{"action": 2, "data": "v2"}]));
    sim.events(watcher);
    sim.evict(edge_config());
    // A resend of it is still a resend (not applied: its data here differs, which would be
    // heard as an update), and the next is still applied.
    let resent = sim.presence(
        second,
        ROOM,
        1,
        json!([{"action": 2, "data": "v2-differs"}]),
    );
    assert!(resent
        .iter()
        .any(|m| m.action == Action::Ack && m.msg_serial == Some(1)));
    sim.presence(second, ROOM, 2, json!([{"action": 4, "data": "v3"}]));
    assert_eq!(
        summary(&sim.events(watcher)),
        [(PresenceAction::Update, "alice".to_owned())]
    );
}

#[test]
fn a_connection_cut_off_for_a_frame_too_large_still_cannot_resume_after_an_eviction() {
    let mut sim = Sim::new(edge_config());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (alice, connected) = sim.connect("clientId=alice");
    let key = connected
        .connection_details
        .and_then(|d| d.connection_key)
        .unwrap();
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.events(watcher);
    sim.hub.handle_too_large(sim.now, alice.0, 1 << 20);
    sim.drain();
    sim.evict(edge_config());
    // Its client would send the frame again: refused with why, and its member leaves now.
    let (_, reply) = sim.open(&format!("clientId=alice&resume={key}"));
    assert_eq!(reply.action, Action::Error, "{reply:?}");
    assert_eq!(reply.error.map(|e| e.code), Some(40009));
    assert_eq!(
        summary(&sim.events(watcher)),
        [(PresenceAction::Leave, "alice".to_owned())]
    );
}
