//! The client core driven against the hub core in simulated time: connection states, attach,
//! presence operations and their acknowledgements, resume, re-entry, SYNC and faults.

mod common;

use std::sync::Arc;

use common::summary;
use common::world::{check_story, item, World};
use rollcall::client::{ChannelState, ClientEvent, ConnectionState};
use rollcall::hub::HubConfig;
use rollcall::protocol::PresenceAction;

const ROOM: &str = "job-map-new";

fn enter(world: &mut World, client: usize, data: &str) -> rollcall::client::OpId {
    world.with(client, |c, now| {
        c.presence(now, ROOM, item(PresenceAction::Enter, None, Some(data)))
    })
}

fn clients_of(world: &World, client: usize) -> Vec<String> {
    world.clients[client]
        .view(ROOM)
        .into_iter()
        .map(|(c, _, _)| c)
        .collect()
}

/// How many SYNCs a client has completed.
fn syncs(world: &World, client: usize) -> usize {
    world.clients[client]
        .events
        .iter()
        .filter(|e| matches!(e, ClientEvent::SyncComplete { .. }))
        .count()
}

/// The client is connected again, on the connection it had (`id`): it resumed.
fn assert_resumed(world: &World, client: usize, id: &Option<Arc<str>>) {
    assert!(world.connected(client));
    assert_eq!(
        world.clients[client].core.connection_id(),
        id.as_ref(),
        "resumed"
    );
}

/// The client marks no connection lost, and holds the hub's members.
fn assert_no_marks_and_the_hubs_view(world: &World, client: usize) {
    let marks = world.clients[client].core.lost_connections(ROOM);
    assert!(marks.is_empty(), "{marks:?}");
    assert_eq!(world.clients[client].view(ROOM), world.hub_view(ROOM));
}

/// A watcher attached to the room, and a phone whose client (asking for no grace of its own)
/// has entered it, after `settle` ms: the world, the watcher, the phone, its connection id and
/// how many presence events the watcher has heard.
fn watched_phone(mut world: World, settle: u64) -> (World, usize, usize, Option<Arc<str>>, usize) {
    world.max_latency = 30;
    let watcher = world.add_client("clientId=agent");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let phone = world.add_client("clientId=user-123");
    enter(&mut world, phone, "phone");
    world.run(settle);
    let id = world.clients[phone].core.connection_id().cloned();
    let seen = world.clients[watcher].presence_events(ROOM).len();
    (world, watcher, phone, id, seen)
}

/// The phone is back on its connection, and the watcher heard nothing of it: no leave, no enter.
fn assert_back_unseen(
    world: &World,
    watcher: usize,
    phone: usize,
    id: &Option<Arc<str>>,
    seen: usize,
) {
    assert_resumed(world, phone, id);
    assert_eq!(
        world.clients[watcher].presence_events(ROOM).len(),
        seen,
        "no leave and no enter"
    );
    assert_eq!(world.clients[watcher].view(ROOM), world.hub_view(ROOM));
}

/// A watcher attached to the room where alice is present with `remain` ms of grace; her laptop
/// drops for `offline` ms, and the watcher marks her connection lost. Returns the world, the
/// watcher, alice and her connection id.
fn watcher_marking_alice(seed: u64, remain: u64, offline: u64) -> (World, usize, usize, Arc<str>) {
    let mut world = World::new(HubConfig::default(), seed);
    let watcher = world.add_client("clientId=watcher");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let alice = world.add_client(&format!("clientId=alice&remainPresentFor={remain}"));
    enter(&mut world, alice, "laptop");
    world.run(500);
    let alice_id = world.clients[alice].core.connection_id().cloned().unwrap();
    world.with(alice, |c, now| c.simulate_drop(now, Some(offline)));
    world.run(2_500);
    assert_eq!(
        world.clients[watcher].core.lost_connections(ROOM),
        std::slice::from_ref(&alice_id)
    );
    (world, watcher, alice, alice_id)
}

#[test]
fn connects_attaches_enters_and_the_ack_settles_the_operation() {
    let mut world = World::new(HubConfig::default(), 1);
    let alice = world.add_client("clientId=alice");
    world.run(10);
    assert!(world.connected(alice));
    let states: Vec<_> = world.clients[alice]
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::ConnectionState { current, .. } => Some(current.name()),
            _ => None,
        })
        .collect();
    assert_eq!(states, ["connecting", "connected"]);
    // enter() attaches implicitly and is sent once attached.
    let op = enter(&mut world, alice, "hi");
    assert_eq!(
        world.clients[alice].core.channel_state(ROOM),
        ChannelState::Attaching
    );
    world.run(10);
    assert_eq!(world.clients[alice].settled.get(&op), Some(&Ok(())));
    assert_eq!(
        world.clients[alice].core.channel_state(ROOM),
        ChannelState::Attached
    );
    assert_eq!(world.hub_view(ROOM), world.clients[alice].view(ROOM));
    assert!(world.clients[alice].core.sync_complete(ROOM));
}

#[test]
fn a_second_client_sees_the_first_by_sync_then_by_events() {
    let mut world = World::new(HubConfig::default(), 2);
    world.max_latency = 20;
    let alice = world.add_client("clientId=alice");
    enter(&mut world, alice, "a");
    world.run(200);
    let bob = world.add_client("clientId=bob");
    world.with(bob, |c, now| c.attach(now, ROOM));
    world.run(200);
    let events = world.clients[bob].presence_events(ROOM);
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].action,
        PresenceAction::Present,
        "a late joiner gets present, by SYNC"
    );
    enter(&mut world, bob, "b");
    world.run(200);
    let seen = world.clients[alice].presence_events(ROOM);
    assert_eq!(seen.last().unwrap().action, PresenceAction::Enter);
    assert_eq!(seen.last().unwrap().client_id.as_deref(), Some("bob"));
    assert_eq!(world.clients[alice].view(ROOM), world.hub_view(ROOM));
    assert_eq!(world.clients[bob].view(ROOM), world.hub_view(ROOM));
    for c in [alice, bob] {
        check_story(&world.clients[c], ROOM).unwrap();
    }
}

#[test]
fn a_nack_rejects_and_local_checks_refuse_early() {
    let mut world = World::new(HubConfig::default(), 3);
    let anon = world.add_client("key=app.k:s");
    // The connection is a wildcard: enter() has no clientId (40012) ...
    let op = enter(&mut world, anon, "x");
    world.run(100);
    assert_eq!(
        world.clients[anon].settled[&op].as_ref().unwrap_err().code,
        40012
    );
    // ... enterClient() names one ...
    let ok = world.with(anon, |c, now| {
        c.presence(now, ROOM, item(PresenceAction::Enter, Some("bob"), None))
    });
    // ... and '*' is refused by the hub.
    let refused = world.with(anon, |c, now| {
        c.presence(now, ROOM, item(PresenceAction::Enter, Some("*"), None))
    });
    world.run(100);
    assert_eq!(world.clients[anon].settled[&ok], Ok(()));
    assert_eq!(
        world.clients[anon].settled[&refused]
            .as_ref()
            .unwrap_err()
            .code,
        40012
    );

    // leave() on a channel that is not attached: 90001, and no attach.
    let alice = world.add_client("clientId=alice");
    let op = world.with(alice, |c, now| {
        c.presence(now, "elsewhere", item(PresenceAction::Leave, None, None))
    });
    assert_eq!(
        world.clients[alice].settled[&op].as_ref().unwrap_err().code,
        90001
    );
    assert_eq!(
        world.clients[alice].core.channel_state("elsewhere"),
        ChannelState::Initialized
    );
}

#[test]
fn a_resume_inside_the_window_is_invisible_to_others() {
    let mut world = World::new(HubConfig::default(), 4);
    world.max_latency = 30;
    let watcher = world.add_client("clientId=agent");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let mobile = world.add_client("clientId=user-123&remainPresentFor=15000");
    enter(&mut world, mobile, "mobile");
    world.run(500);
    let id_before = world.clients[mobile].core.connection_id().cloned();
    let seen_before = world.clients[watcher].presence_events(ROOM).len();

    world.cut(mobile);
    world.run(30_000);
    assert_resumed(&world, mobile, &id_before);
    assert_eq!(
        world.clients[watcher].presence_events(ROOM).len(),
        seen_before,
        "no leave and no enter"
    );
    assert_eq!(world.clients[watcher].view(ROOM), world.hub_view(ROOM));
    assert_eq!(world.clients[mobile].view(ROOM), world.hub_view(ROOM));
}

#[test]
fn a_link_that_dies_silently_is_noticed_and_resumed_within_a_short_grace_window() {
    // The hub's own remainPresentFor (the client asks for none): told in CONNECTED, and the
    // client notices silence in time for it, rather than after realtimeRequestTimeout (10 s).
    let config = HubConfig {
        remain_present_for: 3_000,
        heartbeat_interval: 1_000,
        ..HubConfig::default()
    };
    let (mut world, watcher, phone, id, seen) = watched_phone(World::new(config, 7), 2_000);
    world.vanish(phone);
    world.run(20_000);
    assert_back_unseen(&world, watcher, phone, &id, seen);
}

#[test]
fn a_quiet_client_in_a_busy_room_whose_link_dies_is_back_within_a_grace_shorter_than_half_an_interval(
) {
    // 15 s heartbeats, 2 s of grace. The phone only listens: the hub last heard from it when it
    // last sent, the phone last heard from the hub a moment ago. It sends a heartbeat on the
    // hub's traffic often enough for the hub not to let its member go before it notices.
    let config = HubConfig {
        remain_present_for: 2_000,
        ..HubConfig::default()
    };
    let mut world = World::new(config, 13);
    world.max_latency = 30;
    let watcher = world.add_client("clientId=agent");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let chatty = world.add_client("clientId=chatty");
    enter(&mut world, chatty, "0");
    let phone = world.add_client("clientId=user-123");
    enter(&mut world, phone, "phone");
    world.run(1_000);
    let id_before = world.clients[phone].core.connection_id().cloned();
    let before = world.clients[watcher]
        .presence_events(ROOM)
        .iter()
        .filter(|m| m.client_id.as_deref() == Some("user-123"))
        .count();
    // The room is busy: the phone hears an update every 400 ms, and says nothing itself.
    for round in 0..100 {
        if round == 50 {
            world.vanish(phone);
        }
        world.with(chatty, |c, now| {
            c.presence(
                now,
                ROOM,
                item(PresenceAction::Update, None, Some(&round.to_string())),
            )
        });
        world.run(400);
    }
    world.run(10_000);
    assert_resumed(&world, phone, &id_before);
    let after = world.clients[watcher]
        .presence_events(ROOM)
        .iter()
        .filter(|m| m.client_id.as_deref() == Some("user-123"))
        .count();
    assert_eq!(after, before, "no leave and no enter of the phone");
}

#[test]
fn quick_drops_in_a_row_retry_within_the_hubs_own_grace_window() {
    // The hub keeps members 2 s (its default here; the client asks for none): its retries
    // after a second drop in a row are spaced for that, not for the 15 s it would assume.
    let config = HubConfig {
        remain_present_for: 2_000,
        ..HubConfig::default()
    };
    let mut world = World::new(config, 11);
    // Ably's default spacing of retries, which a short window needs shortened.
    world.retry_timeout = 15_000;
    let (mut world, watcher, phone, id, seen) = watched_phone(world, 1_000);
    for _ in 0..2 {
        world.cut(phone);
        world.run(100);
    }
    world.run(10_000);
    assert_back_unseen(&world, watcher, phone, &id, seen);
}

#[test]
fn an_enter_lost_with_the_link_then_detached_offline_is_not_sent_again() {
    // The enter went out as the link died (the hub never had it); the app then detached the
    // channel before the client was back. The enter fails (90001), and after the resume no one
    // sees the member come and go: it is not sent again only for the owed DETACH to undo it.
    let mut world = World::new(HubConfig::default(), 5);
    world.max_latency = 30;
    let watcher = world.add_client("clientId=agent");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let phone = world.add_client("clientId=user-123");
    world.with(phone, |c, now| c.attach(now, ROOM));
    world.run(500);
    let id_before = world.clients[phone].core.connection_id().cloned();
    world.partition(phone);
    let op = enter(&mut world, phone, "phone");
    world.cut(phone);
    world.heal(phone);
    // As soon as the client sees the drop, before it is back.
    for _ in 0..100 {
        if !world.connected(phone) {
            break;
        }
        world.run(1);
    }
    assert!(!world.connected(phone));
    world.with(phone, |c, now| c.detach(now, ROOM));
    world.run(10_000);
    assert_resumed(&world, phone, &id_before);
    assert_eq!(
        world.clients[phone].settled[&op].as_ref().unwrap_err().code,
        90001
    );
    let heard: Vec<_> = world.clients[watcher]
        .presence_events(ROOM)
        .into_iter()
        .map(|m| m.client_id)
        .collect();
    assert!(heard.is_empty(), "{heard:?}");
    assert!(world.hub_view(ROOM).is_empty());
}

#[test]
fn a_close_while_reconnecting_closes_on_the_hub_and_its_members_leave_at_once() {
    let mut world = World::new(HubConfig::default(), 5);
    world.max_latency = 30;
    let watcher = world.add_client("clientId=watcher");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let alice = world.add_client("clientId=alice&remainPresentFor=15000");
    enter(&mut world, alice, "laptop");
    world.run(500);
    let heard_before = world.clients[watcher].presence_events(ROOM).len();
    world.cut(alice);
    // Reconnecting (a resume under way): the app closes the client, as a process that stops.
    for _ in 0..1_000 {
        if world.clients[alice].core.state() == ConnectionState::Connecting {
            break;
        }
        world.run(1);
    }
    assert_eq!(
        world.clients[alice].core.state(),
        ConnectionState::Connecting
    );
    world.with(alice, |c, now| c.close(now));
    world.run(1_000);
    // RTN12f: CLOSE once the hub answers, so the member leaves now, not after its grace.
    assert_eq!(world.clients[alice].core.state(), ConnectionState::Closed);
    let heard = world.clients[watcher].presence_events(ROOM);
    let after: Vec<_> = heard[heard_before..]
        .iter()
        .map(|m| (m.action, m.extras.as_ref().map(|x| x.0.to_string())))
        .collect();
    assert_eq!(
        after,
        [(
            PresenceAction::Leave,
            Some(r#"{"reason":"closed"}"#.to_owned())
        )]
    );
    assert_eq!(world.clients[watcher].view(ROOM), world.hub_view(ROOM));
}

#[test]
fn an_enter_missed_while_dropped_is_heard_as_an_enter_after_the_resume() {
    let mut world = World::new(HubConfig::default(), 9);
    let alice = world.add_client("clientId=alice&remainPresentFor=15000");
    world.with(alice, |c, now| c.attach(now, ROOM));
    world.run(500);
    world.with(alice, |c, now| c.simulate_drop(now, Some(3_000)));
    world.run(500);
    let bob = world.add_client("clientId=bob");
    enter(&mut world, bob, "here");
    world.run(10_000);
    assert!(world.connected(alice));
    let heard: Vec<(PresenceAction, String)> = world.clients[alice]
        .presence_events(ROOM)
        .iter()
        .map(|m| (m.action, m.client_id.as_deref().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(heard, vec![(PresenceAction::Enter, "bob".to_owned())]);
    assert_eq!(world.clients[alice].view(ROOM), world.hub_view(ROOM));
}

#[test]
fn a_watcher_that_resumes_keeps_its_view_without_a_sync_and_hears_what_it_missed() {
    let mut world = World::new(HubConfig::default(), 12);
    let watcher = world.add_client("clientId=watcher");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let alice = world.add_client("clientId=alice");
    enter(&mut world, alice, "laptop");
    let bob = world.add_client("clientId=bob");
    enter(&mut world, bob, "phone");
    world.run(500);
    assert_eq!(clients_of(&world, watcher), ["alice", "bob"]);
    let id = world.clients[watcher].core.connection_id().cloned();
    let (syncs_before, heard_before) = (
        syncs(&world, watcher),
        world.clients[watcher].presence_events(ROOM).len(),
    );
    world.with(watcher, |c, now| c.simulate_drop(now, Some(2_000)));
    world.run(500);
    world.with(bob, |c, now| {
        c.presence(now, ROOM, item(PresenceAction::Leave, None, None))
    });
    let carol = world.add_client("clientId=carol");
    enter(&mut world, carol, "tablet");
    world.run(5_000);
    assert_resumed(&world, watcher, &id);
    assert_eq!(
        syncs(&world, watcher),
        syncs_before,
        "no SYNC: the hub vouched for its view"
    );
    let heard: Vec<(PresenceAction, String)> = world.clients[watcher].presence_events(ROOM)
        [heard_before..]
        .iter()
        .map(|m| (m.action, m.client_id.as_deref().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(
        heard,
        vec![
            (PresenceAction::Leave, "bob".to_owned()),
            (PresenceAction::Enter, "carol".to_owned())
        ]
    );
    assert_eq!(world.clients[watcher].view(ROOM), world.hub_view(ROOM));
    assert_eq!(clients_of(&world, watcher), ["alice", "carol"]);
}

#[test]
fn a_watcher_that_resumes_without_a_sync_drops_the_grace_marks_it_missed_the_end_of() {
    let (mut world, watcher, alice, alice_id) = watcher_marking_alice(14, 15_000, 4_000);
    let syncs_before = syncs(&world, watcher);
    // She is back while the watcher's own socket is dying: the word of it never arrives.
    world.partition(watcher);
    world.run(3_000);
    assert!(world.connected(alice));
    world.cut(watcher);
    world.heal(watcher);
    world.run(10_000);
    assert!(world.connected(watcher));
    assert_eq!(
        syncs(&world, watcher),
        syncs_before,
        "resumed without a SYNC"
    );
    assert!(
        world.clients[watcher]
            .core
            .lost_connections(ROOM)
            .is_empty(),
        "{:?}",
        world.clients[watcher].core.lost_connections(ROOM)
    );
    // Learned from what the re-attach no longer repeats, not seen: `initial`.
    assert!(world.clients[watcher].events.iter().any(|e| matches!(
        e,
        ClientEvent::ConnectionStatus { connection_id, lost: false, initial: true, .. } if *connection_id == alice_id
    )));
    assert_eq!(world.clients[watcher].view(ROOM), world.hub_view(ROOM));
}

#[test]
fn a_grace_window_seen_begin_is_live_and_one_learned_on_attaching_is_initial() {
    let (mut world, watcher, _, alice_id) = watcher_marking_alice(20, 15_000, 60_000);
    let lost_told = |world: &World, who: usize| -> Vec<bool> {
        world.clients[who]
            .events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::ConnectionStatus {
                    connection_id,
                    lost: true,
                    initial,
                    ..
                } if *connection_id == alice_id => Some(*initial),
                _ => None,
            })
            .collect()
    };
    assert_eq!(lost_told(&world, watcher), [false], "seen as it happened");
    let late = world.add_client("clientId=late");
    world.with(late, |c, now| c.attach(now, ROOM));
    world.run(500);
    assert_eq!(lost_told(&world, late), [true], "learned on attaching");
}

#[test]
fn a_watcher_that_resumes_and_takes_a_sync_drops_the_grace_marks_it_missed_the_end_of() {
    let (mut world, watcher, alice, _) = watcher_marking_alice(16, 15_000, 4_000);
    let syncs_before = syncs(&world, watcher);
    // Alice is back and carol enters while the watcher's socket is dying: neither arrives, and
    // the lost enter costs the watcher a SYNC.
    world.partition(watcher);
    let carol = world.add_client("clientId=carol");
    enter(&mut world, carol, "tablet");
    world.run(3_000);
    assert!(world.connected(alice));
    world.cut(watcher);
    world.heal(watcher);
    world.run(10_000);
    assert!(world.connected(watcher));
    assert_eq!(syncs(&world, watcher), syncs_before + 1, "a SYNC");
    assert_no_marks_and_the_hubs_view(&world, watcher);
}

#[test]
fn a_watcher_that_comes_back_on_a_new_connection_drops_the_grace_marks_it_missed_the_end_of() {
    // Alice is held for ten minutes when her connection drops, and is back within one.
    let (mut world, watcher, alice, _) = watcher_marking_alice(17, 600_000, 60_000);
    let id = world.clients[watcher].core.connection_id().cloned();
    // The watcher is away for longer than its connection is kept; alice is back meanwhile.
    world.with(watcher, |c, now| c.simulate_drop(now, Some(150_000)));
    world.run(160_000);
    assert!(world.connected(watcher) && world.connected(alice));
    assert_ne!(
        world.clients[watcher].core.connection_id().cloned(),
        id,
        "a new connection"
    );
    assert_no_marks_and_the_hubs_view(&world, watcher);
}

#[test]
fn a_member_whose_leave_the_watcher_missed_is_not_said_to_be_back() {
    // Alice's grace ends while the watcher's socket is dying: her leave never arrives, and the
    // watcher learns of it from the SYNC after its resume, never hearing that she is back.
    let (mut world, watcher, _, alice_id) = watcher_marking_alice(19, 3_000, 600_000);
    // Bob stays, so that the watcher's re-attach comes with a SYNC.
    let bob = world.add_client("clientId=bob");
    enter(&mut world, bob, "desk");
    world.run(200);
    let heard = world.clients[watcher].events.len();
    world.partition(watcher);
    world.run(1_000);
    world.cut(watcher);
    world.heal(watcher);
    world.run(10_000);
    assert!(world.connected(watcher));
    let since = &world.clients[watcher].events[heard..];
    assert!(
        !since
            .iter()
            .any(|e| matches!(e, ClientEvent::ConnectionStatus { lost: false, .. })),
        "{since:?}"
    );
    assert!(since.iter().any(|e| matches!(
        e,
        ClientEvent::Presence { message, .. }
            if message.action == PresenceAction::Leave && message.connection_id.as_ref() == Some(&alice_id)
    )));
    // Her going offline is learned from the SYNC, not seen: `initial`.
    assert!(
        since.iter().any(|e| matches!(
            e,
            ClientEvent::ClientPresence { client_id, online: false, initial: true, .. } if &**client_id == "alice"
        )),
        "{since:?}"
    );
    assert_no_marks_and_the_hubs_view(&world, watcher);
}

#[test]
fn a_watcher_that_comes_back_on_a_new_connection_keeps_the_grace_marks_that_still_hold() {
    let (mut world, watcher, _, alice_id) = watcher_marking_alice(18, 600_000, 500_000);
    let heard = world.clients[watcher].events.len();
    world.with(watcher, |c, now| c.simulate_drop(now, Some(150_000)));
    world.run(160_000);
    assert!(world.connected(watcher));
    assert_eq!(
        world.clients[watcher].core.lost_connections(ROOM),
        std::slice::from_ref(&alice_id)
    );
    let statuses: Vec<&ClientEvent> = world.clients[watcher].events[heard..]
        .iter()
        .filter(|e| matches!(e, ClientEvent::ConnectionStatus { .. }))
        .collect();
    assert!(statuses.is_empty(), "no flicker: {statuses:?}");
}

#[test]
fn a_watcher_that_resumes_without_a_sync_keeps_the_grace_marks_that_still_hold() {
    let (mut world, watcher, _, alice_id) = watcher_marking_alice(15, 15_000, 60_000);
    let heard_before = world.clients[watcher].events.len();
    world.with(watcher, |c, now| c.simulate_drop(now, Some(1_000)));
    world.run(3_000);
    assert!(world.connected(watcher));
    let since: Vec<&ClientEvent> = world.clients[watcher].events[heard_before..]
        .iter()
        .collect();
    assert!(
        !since
            .iter()
            .any(|e| matches!(e, ClientEvent::SyncComplete { .. })),
        "resumed without a SYNC: {since:?}"
    );
    assert!(
        !since
            .iter()
            .any(|e| matches!(e, ClientEvent::ConnectionStatus { .. })),
        "alice is still in her grace window: {since:?}"
    );
    assert_eq!(
        world.clients[watcher].core.lost_connections(ROOM),
        [alice_id]
    );
}

#[test]
fn after_a_long_outage_the_client_comes_back_as_a_new_connection_and_re_enters() {
    let mut world = World::new(HubConfig::default(), 5);
    let watcher = world.add_client("clientId=agent");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let alice = world.add_client("clientId=alice&remainPresentFor=2000");
    enter(&mut world, alice, "laptop");
    world.run(100);
    let old_id = world.clients[alice].core.connection_id().cloned().unwrap();

    world.with(alice, |c, now| c.simulate_drop(now, Some(130_000)));
    assert_eq!(
        world.clients[alice].core.state(),
        ConnectionState::Disconnected
    );
    world.run(5_000);
    assert!(
        clients_of(&world, watcher).is_empty(),
        "alice left after her grace"
    );
    // Suspended after connectionStateTtl (120 s), it tries again every 30 s once back online.
    world.run(156_000);
    assert!(world.connected(alice));
    let new_id = world.clients[alice].core.connection_id().cloned().unwrap();
    assert_ne!(new_id, old_id, "the hub forgot the old connection");
    world.run(1_000);
    // Re-entered automatically, with the same data, as a new member.
    assert_eq!(world.hub_view(ROOM).len(), 1);
    let (client, connection, data) = world.hub_view(ROOM).into_iter().next().unwrap();
    assert_eq!(
        (client.as_str(), data.as_deref()),
        ("alice", Some("laptop"))
    );
    assert_eq!(connection, &*new_id);
    assert_eq!(world.clients[watcher].view(ROOM), world.hub_view(ROOM));
    check_story(&world.clients[watcher], ROOM).unwrap();
    check_story(&world.clients[alice], ROOM).unwrap();
}

#[test]
fn a_leave_made_while_offline_is_not_undone_by_the_re_entry_after() {
    for wait in [1_000, 5_000] {
        // Back within the grace window, and after it.
        let mut world = World::new(HubConfig::default(), 12);
        // The leave is resent with the re-attach, and its ACK follows the ATTACHED.
        world.batch_turns = true;
        let watcher = world.add_client("clientId=agent");
        world.with(watcher, |c, now| c.attach(now, ROOM));
        let alice = world.add_client("clientId=alice&remainPresentFor=3000");
        enter(&mut world, alice, "available");
        world.run(500);
        world.with(alice, |c, now| c.simulate_drop(now, None));
        world.run(100);
        world.with(alice, |c, now| {
            c.presence(now, ROOM, item(PresenceAction::Update, None, Some("away")))
        });
        world.with(alice, |c, now| {
            c.presence(now, ROOM, item(PresenceAction::Leave, None, None))
        });
        world.run(wait);
        world.with(alice, |c, now| c.connect(now));
        world.run(5_000);
        assert!(world.connected(alice));
        assert!(
            world.hub_view(ROOM).is_empty(),
            "after {wait} ms: {:?}",
            world.hub_view(ROOM)
        );
        assert!(clients_of(&world, watcher).is_empty());
        assert!(clients_of(&world, alice).is_empty());
        check_story(&world.clients[watcher], ROOM).unwrap();
    }
}

#[test]
fn simulate_drop_keeps_the_member_for_the_window_then_it_leaves() {
    let mut world = World::new(HubConfig::default(), 6);
    let watcher = world.add_client("clientId=agent");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let alice = world.add_client("clientId=alice&remainPresentFor=3000");
    enter(&mut world, alice, "tab");
    world.run(100);
    world.with(alice, |c, now| c.simulate_drop(now, None));
    world.run(2_900);
    assert_eq!(clients_of(&world, watcher), ["alice"]);
    world.run(200);
    assert!(clients_of(&world, watcher).is_empty());
    assert_eq!(
        world.clients[alice].core.state(),
        ConnectionState::Disconnected,
        "still offline"
    );
    world.with(alice, |c, now| c.connect(now));
    world.run(200);
    assert_eq!(
        clients_of(&world, watcher),
        ["alice"],
        "back, and re-entered"
    );
}

#[test]
fn close_makes_members_leave_at_once_and_detaches_channels() {
    let mut world = World::new(HubConfig::default(), 7);
    let watcher = world.add_client("clientId=agent");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let alice = world.add_client("clientId=alice");
    enter(&mut world, alice, "x");
    world.run(100);
    world.with(alice, |c, now| c.close(now));
    world.run(50);
    assert_eq!(world.clients[alice].core.state(), ConnectionState::Closed);
    assert_eq!(
        world.clients[alice].core.channel_state(ROOM),
        ChannelState::Detached
    );
    assert!(clients_of(&world, watcher).is_empty());
    let op = enter(&mut world, alice, "again");
    assert_eq!(
        world.clients[alice].settled[&op].as_ref().unwrap_err().code,
        80017
    );
}

#[test]
fn detach_leaves_and_clears_the_view() {
    let mut world = World::new(HubConfig::default(), 8);
    let watcher = world.add_client("clientId=agent");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let alice = world.add_client("clientId=alice");
    enter(&mut world, alice, "x");
    world.run(100);
    let op = world.with(alice, |c, now| c.detach(now, ROOM));
    world.run(100);
    assert_eq!(world.clients[alice].settled[&op], Ok(()));
    assert!(world.clients[alice].view(ROOM).is_empty());
    assert!(clients_of(&world, watcher).is_empty());
}

/// The client-level events among `events`: (client id, online).
fn transitions(events: &[ClientEvent]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::ClientPresence {
                client_id, online, ..
            } => Some((client_id.to_string(), *online)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_watcher_that_detaches_sees_its_users_go_offline_and_online_again_when_it_attaches() {
    // A listener that follows who is online must hold what get() says once the view is
    // dropped, and hear of a user who left meanwhile.
    let mut world = World::new(HubConfig::default(), 11);
    let watcher = world.add_client("clientId=agent");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let alice = world.add_client("clientId=alice");
    let bob = world.add_client("clientId=bob");
    enter(&mut world, alice, "a");
    enter(&mut world, bob, "b");
    world.run(100);
    world.with(watcher, |c, now| c.detach(now, ROOM));
    world.run(100);
    world.with(alice, |c, now| {
        c.presence(now, ROOM, item(PresenceAction::Leave, None, None))
    });
    world.run(100);
    world.with(watcher, |c, now| c.attach(now, ROOM));
    world.run(100);
    let seen = transitions(&world.clients[watcher].events);
    let of = |who: &str| -> Vec<bool> {
        seen.iter()
            .filter(|(c, _)| c == who)
            .map(|(_, o)| *o)
            .collect()
    };
    assert_eq!(of("alice"), [true, false], "{seen:?}");
    assert_eq!(of("bob"), [true, false, true], "{seen:?}");
}

#[test]
fn a_sync_that_drops_every_device_of_a_user_says_offline_once_after_the_last_leave() {
    let mut core = rollcall::client::Client::new(rollcall::client::ClientOptions::new(
        "ws://hub/?v=6&agent=rollcall-test",
        Some("w"),
    ));
    core.connect(0);
    core.handle_transport_open(0);
    core.handle_message(
        0,
        frame(r#"{"action":4,"connectionId":"c0","connectionDetails":{"connectionKey":"k0","clientId":"w"}}"#),
    );
    core.attach(0, ROOM);
    core.handle_message(
        1,
        frame(&format!(r#"{{"action":11,"channel":"{ROOM}","flags":1}}"#)),
    );
    let member = |client: &str, connection: &str| {
        format!(
            r#"{{"action":1,"clientId":"{client}","connectionId":"{connection}","id":"{connection}:0:0","timestamp":1}}"#
        )
    };
    let sync = |id: &str, members: &[String]| {
        frame(&format!(
            r#"{{"action":16,"channel":"{ROOM}","channelSerial":"{id}:","presence":[{}]}}"#,
            members.join(",")
        ))
    };
    core.handle_message(
        1,
        sync(
            "s1",
            &[
                member("alice", "c1"),
                member("alice", "c2"),
                member("bob", "c3"),
            ],
        ),
    );
    core.take_events();
    // A later SYNC (as after a re-attach that lost continuity) without either of alice's devices.
    core.handle_message(2, sync("s2", &[member("bob", "c3")]));
    let told: Vec<String> = core
        .take_events()
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Presence { message, .. } => Some(format!(
                "{:?} {}",
                message.action,
                message.connection_id.as_deref().unwrap_or_default()
            )),
            ClientEvent::ClientPresence {
                client_id, online, ..
            } => Some(format!("{client_id} online={online}")),
            _ => None,
        })
        .collect();
    assert_eq!(told, ["Leave c1", "Leave c2", "alice online=false"]);
}

#[test]
fn client_level_presence_online_on_first_device_offline_after_last() {
    let mut world = World::new(HubConfig::default(), 9);
    let agent = world.add_client("clientId=agent");
    world.with(agent, |c, now| c.attach(now, ROOM));
    let desktop = world.add_client("clientId=user-123");
    let mobile = world.add_client("clientId=user-123&remainPresentFor=1000");
    enter(&mut world, desktop, "desktop");
    world.run(50);
    enter(&mut world, mobile, "mobile");
    world.run(50);
    world.with(desktop, |c, now| {
        c.presence(now, ROOM, item(PresenceAction::Leave, None, Some("bye")))
    });
    world.run(50);
    world.with(mobile, |c, now| c.simulate_drop(now, None));
    world.run(2_000);
    assert_eq!(
        transitions(&world.clients[agent].events),
        [
            ("user-123".to_owned(), true),
            ("user-123".to_owned(), false)
        ],
        "one online when the first device entered, one offline when the last left"
    );
}

#[test]
fn a_silent_hub_is_noticed_by_the_idle_timer_and_the_client_resumes() {
    let mut world = World::new(HubConfig::default(), 10);
    let alice = world.add_client("clientId=alice&heartbeatInterval=5000&remainPresentFor=30000");
    enter(&mut world, alice, "x");
    world.run(100);
    let id = world.clients[alice].core.connection_id().cloned();
    // The network swallows everything, both ways, without closing anything.
    world.partition(alice);
    world.run(15_200);
    assert_ne!(
        world.clients[alice].core.state(),
        ConnectionState::Connected,
        "noticed"
    );
    world.heal(alice);
    world.run(5_000);
    assert_resumed(&world, alice, &id);
    assert_eq!(world.hub_view(ROOM).len(), 1);
}

#[test]
fn an_enter_queued_while_connecting_is_sent_once_attached() {
    let mut world = World::new(HubConfig::default(), 11);
    world.max_latency = 50;
    let alice = world.add_client("clientId=alice");
    let op = enter(&mut world, alice, "early");
    let update = world.with(alice, |c, now| {
        c.presence(now, ROOM, item(PresenceAction::Update, None, Some("later")))
    });
    world.run(1_000);
    assert_eq!(world.clients[alice].settled[&op], Ok(()));
    assert_eq!(world.clients[alice].settled[&update], Ok(()));
    let view = world.hub_view(ROOM);
    assert_eq!(view.into_iter().next().unwrap().2.as_deref(), Some("later"));
}

/// A world whose hub cannot ping (as on the edge): only heartbeats keep connections alive.
fn world_without_pings(seed: u64) -> World {
    let config = HubConfig {
        host_pings: false,
        ..HubConfig::default()
    };
    World::new(config, seed)
}

#[test]
fn an_idle_client_heartbeats_so_a_hub_that_cannot_ping_keeps_it_and_notices_its_silence() {
    let mut world = world_without_pings(12);
    let watcher = world.add_client("clientId=agent&heartbeatInterval=60000");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let alice = world.add_client("clientId=alice&heartbeatInterval=2000&remainPresentFor=1000");
    enter(&mut world, alice, "x");
    world.run(30_000);
    assert!(world.connected(alice));
    assert_eq!(
        clients_of(&world, watcher),
        ["alice"],
        "kept alive by its own heartbeats"
    );
    world.partition(alice);
    world.run(4_100);
    assert!(
        clients_of(&world, watcher).is_empty(),
        "silent past 2000 + 1000 ms, then 1000 ms of grace"
    );
}

#[test]
fn a_tab_whose_timers_fire_once_a_minute_stays_connected_to_a_hub_that_cannot_ping() {
    let mut world = world_without_pings(13);
    let watcher = world.add_client("clientId=watcher");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    // A hidden tab: its heartbeat timer (every 15 s) fires once a minute; the hub drops a
    // client that heartbeats after 15 + 7.5 s of its silence.
    let alice = world.add_client("clientId=alice");
    world.clients[alice].timer_period = Some(60_000);
    enter(&mut world, alice, "x");
    world.run(1_000);
    let opens = |world: &World| {
        world.clients[alice]
            .events
            .iter()
            .filter(|e| matches!(e, ClientEvent::OpenTransport { .. }))
            .count()
    };
    let first = opens(&world);
    world.run(300_000);
    assert_eq!(opens(&world), first, "the same transport throughout");
    assert!(world.connected(alice));
    assert_eq!(
        summary(&world.clients[watcher].presence_events(ROOM)),
        [(PresenceAction::Enter, "alice".to_owned())],
        "never seen to leave"
    );
}

/// A world whose hub checks the key `app.k:s3cret`.
fn keyed_world(seed: u64) -> World {
    let config = HubConfig {
        keys: rollcall::hub::ApiKey::parse_list("app.k:s3cret").unwrap(),
        ..HubConfig::default()
    };
    World::new(config, seed)
}

/// Adds a client that connects with `token` and can be given new ones (as with `authUrl`).
fn renewable_client(world: &mut World, token: &str, client_id: &str) -> usize {
    let mut options = rollcall::client::ClientOptions::new(
        format!("ws://hub/?v=6&access_token={token}"),
        Some(client_id),
    );
    options.renewable_auth = true;
    world.add_client_with(options)
}

/// Runs the world, answering every `TokenNeeded` of `client` with a fresh token from `mint`.
fn run_with_tokens(world: &mut World, client: usize, ms: u64, mint: &dyn Fn(u64) -> (String, u64)) {
    answer_token_requests(world, client, ms, &mut |world| {
        let (token, expires) = mint(world.now);
        world.with(client, |c, now| c.set_token(now, &token, Some(expires)));
    });
}

/// Runs the world for `ms`, calling `answer` once for every `TokenNeeded` of `client`.
fn answer_token_requests(
    world: &mut World,
    client: usize,
    ms: u64,
    answer: &mut dyn FnMut(&mut World),
) {
    let mut answered = 0;
    for _ in 0..ms / 100 {
        world.run(100);
        let asked = world.clients[client]
            .events
            .iter()
            .filter(|e| matches!(e, ClientEvent::TokenNeeded))
            .count();
        while answered < asked {
            answered += 1;
            answer(world);
        }
    }
}

#[test]
fn short_lived_tokens_are_renewed_in_place_with_no_leave_or_enter() {
    let config = HubConfig {
        keys: rollcall::hub::ApiKey::parse_list("app.k:s3cret").unwrap(),
        ..HubConfig::default()
    };
    let mint = |now: u64| {
        let exp = now / 1000 + 9;
        let claims = serde_json::json!({"iat": now / 1000, "exp": exp, "x-ably-clientId": "alice"});
        (common::jwt("app.k", "s3cret", &claims), exp * 1000)
    };
    let mut world = World::new(config, 13);
    let watcher = world.add_client("key=app.k:s3cret&clientId=agent");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    // The client starts without a token: it asks for one before connecting.
    let alice = world.clients.len();
    let (first, expires) = mint(world.now);
    let mut options = rollcall::client::ClientOptions::new(
        format!("ws://hub/?v=6&heartbeats=true&access_token={first}"),
        Some("alice"),
    );
    options.renewable_auth = true;
    let _ = expires;
    world.add_client_with(options);
    enter(&mut world, alice, "here");
    run_with_tokens(&mut world, alice, 1_000, &mint);
    assert_eq!(clients_of(&world, watcher), ["alice"]);
    let seen = world.clients[watcher].presence_events(ROOM).len();
    // Tokens live 9 s; over a minute the client renews several times, in place.
    run_with_tokens(&mut world, alice, 60_000, &mint);
    let renewals = world.clients[alice]
        .events
        .iter()
        .filter(|e| matches!(e, ClientEvent::TokenNeeded))
        .count();
    assert!(renewals >= 6, "{renewals} renewals");
    assert!(world.connected(alice));
    assert_eq!(
        world.clients[watcher].presence_events(ROOM).len(),
        seen,
        "no leave, no enter"
    );
}

#[test]
fn a_refused_token_asks_for_another_instead_of_failing() {
    let mut world = keyed_world(14);
    let expired = common::jwt(
        "app.k",
        "s3cret",
        &serde_json::json!({"exp": 1, "x-ably-clientId": "bob"}),
    );
    let mut options = rollcall::client::ClientOptions::new(
        format!("ws://hub/?v=6&access_token={expired}"),
        Some("bob"),
    );
    options.renewable_auth = true;
    let bob = world.clients.len();
    world.add_client_with(options);
    world.run(100);
    assert_eq!(
        world.clients[bob].core.state(),
        ConnectionState::Disconnected
    );
    assert!(world.clients[bob]
        .events
        .iter()
        .any(|e| matches!(e, ClientEvent::TokenNeeded)));
    // It waits for a token, not for a time: its disconnected state names no retry.
    assert_eq!(
        retries(&world, bob, 0).last(),
        Some(&("disconnected", None))
    );
    let good = common::jwt(
        "app.k",
        "s3cret",
        &serde_json::json!({"exp": world.now / 1000 + 600, "x-ably-clientId": "bob"}),
    );
    world.with(bob, |c, now| c.set_token(now, &good, None));
    world.run(100);
    assert!(world.connected(bob));
}

#[test]
fn a_closed_or_failed_client_holds_no_timer() {
    let mut world = keyed_world(15);
    let token = common::jwt(
        "app.k",
        "s3cret",
        &serde_json::json!({"exp": world.now / 1000 + 600, "x-ably-clientId": "alice"}),
    );
    let mut options = rollcall::client::ClientOptions::new(
        format!("ws://hub/?v=6&access_token={token}&clientId=mallory"),
        None,
    );
    options.renewable_auth = false;
    let failed = world.clients.len();
    world.add_client_with(options);
    let closed = world.add_client("key=app.k:s3cret&clientId=bob");
    world.run(100);
    assert_eq!(world.clients[failed].core.state(), ConnectionState::Failed);
    world.with(closed, |c, now| c.close(now));
    world.run(100);
    assert_eq!(world.clients[closed].core.state(), ConnectionState::Closed);
    // A host process may exit once its clients are done: nothing keeps a timer armed.
    assert_eq!(world.clients[failed].core.poll_timeout(), None);
    assert_eq!(world.clients[closed].core.poll_timeout(), None);
    // Nor a token that arrives after the close (a renewal in flight as the app closed), nor an
    // outage simulated before it.
    let token = common::jwt(
        "app.k",
        "s3cret",
        &serde_json::json!({"exp": world.now / 1000 + 3600, "x-ably-clientId": "carol"}),
    );
    let carol = renewable_client(&mut world, &token, "carol");
    world.run(100);
    world.with(carol, |c, now| c.simulate_drop(now, Some(60_000)));
    world.with(carol, |c, now| c.close(now));
    world.with(carol, |c, now| {
        c.set_token(now, &token, Some(now + 3_600_000))
    });
    world.run(100);
    assert_eq!(world.clients[carol].core.state(), ConnectionState::Closed);
    assert_eq!(world.clients[carol].core.poll_timeout(), None);
}

#[test]
fn a_watcher_sees_a_members_connection_lost_during_its_grace_window_then_gone() {
    let mut world = World::new(HubConfig::default(), 16);
    let watcher = world.add_client("clientId=agent");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let alice = world.add_client("clientId=alice&remainPresentFor=3000");
    enter(&mut world, alice, "x");
    world.run(100);
    assert!(world.clients[watcher]
        .core
        .lost_connections(ROOM)
        .is_empty());
    world.with(alice, |c, now| c.simulate_drop(now, None));
    // Listeners are told after a moment (half her grace at most), not of every blip.
    world.run(1_000);
    assert!(world.clients[watcher]
        .core
        .lost_connections(ROOM)
        .is_empty());
    world.run(900);
    let alice_id = world.clients[watcher]
        .view(ROOM)
        .into_iter()
        .next()
        .unwrap()
        .1;
    assert_eq!(
        world.clients[watcher]
            .core
            .lost_connections(ROOM)
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
        vec![alice_id]
    );
    world.run(3_000);
    assert!(clients_of(&world, watcher).is_empty());
    assert!(world.clients[watcher]
        .core
        .lost_connections(ROOM)
        .is_empty());
    let statuses = world.clients[watcher]
        .events
        .iter()
        .filter(|e| matches!(e, ClientEvent::ConnectionStatus { lost: true, .. }))
        .count();
    assert_eq!(statuses, 1);
}

#[test]
fn presence_queued_while_disconnected_fails_when_the_connection_is_suspended() {
    let mut world = World::new(HubConfig::default(), 13);
    let alice = world.add_client("clientId=alice");
    let op = enter(&mut world, alice, "here");
    world.run(1_000);
    assert_eq!(world.clients[alice].settled[&op], Ok(()));
    world.partition(alice);
    world.run(30_000);
    assert!(!world.connected(alice), "the silent link is noticed");
    let update = world.with(alice, |c, now| {
        c.presence(
            now,
            ROOM,
            item(PresenceAction::Update, None, Some("queued")),
        )
    });
    assert!(
        !world.clients[alice].settled.contains_key(&update),
        "queued while disconnected (RTP16b)"
    );
    world.run(150_000);
    assert_eq!(
        world.clients[alice].core.channel_state(ROOM),
        ChannelState::Suspended
    );
    let settled = world.clients[alice].settled.get(&update);
    assert!(
        matches!(settled, Some(Err(_))),
        "queued presence fails once the channel is suspended (RTP5f), got {settled:?}"
    );
}

#[test]
fn presence_sent_while_disconnected_goes_once_on_a_new_connection() {
    let mut world = World::new(HubConfig::default(), 14);
    world.max_latency = 20;
    let alice = world.add_client("clientId=alice");
    let watcher = world.add_client("clientId=agent");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let op = enter(&mut world, alice, "first");
    world.run(1_000);
    assert_eq!(world.clients[alice].settled[&op], Ok(()));
    // The hub restarts and forgets every connection, so alice cannot resume: her next
    // connection is a new one.
    world.hub = rollcall::hub::Hub::new(HubConfig::default());
    world.cut(alice);
    world.cut(watcher);
    let mut waited = 0;
    while world.connected(alice) && waited < 1_000 {
        world.run(1);
        waited += 1;
    }
    assert!(!world.connected(alice), "alice notices the cut");
    let update = world.with(alice, |c, now| {
        c.presence(now, ROOM, item(PresenceAction::Update, None, Some("later")))
    });
    world.run(5_000);
    assert!(world.connected(alice));
    assert_eq!(world.clients[alice].settled[&update], Ok(()));
    assert_eq!(
        world.clients[alice].core.channel_state(ROOM),
        ChannelState::Attached,
        "nothing meant for the old connection reaches the new one"
    );
    let view = world.hub_view(ROOM);
    assert_eq!(view.len(), 1);
    assert_eq!(view.into_iter().next().unwrap().2.as_deref(), Some("later"));
    assert_eq!(world.clients[watcher].view(ROOM), world.hub_view(ROOM));
}

#[test]
fn an_update_made_while_disconnected_is_not_undone_by_re_entry() {
    let mut world = World::new(HubConfig::default(), 15);
    world.max_latency = 20;
    let alice = world.add_client("clientId=alice&heartbeatInterval=2000&remainPresentFor=4000");
    let op = enter(&mut world, alice, "first");
    world.run(1_000);
    assert_eq!(world.clients[alice].settled[&op], Ok(()));
    world.partition(alice);
    let update = world.with(alice, |c, now| {
        c.presence(
            now,
            ROOM,
            item(PresenceAction::Update, None, Some("second")),
        )
    });
    world.run(20_000);
    assert!(!world.connected(alice), "the silent link is noticed");
    world.heal(alice);
    world.run(20_000);
    assert!(world.connected(alice));
    assert_eq!(world.clients[alice].settled[&update], Ok(()));
    let view = world.hub_view(ROOM);
    assert_eq!(
        view.into_iter().map(|m| m.2).collect::<Vec<_>>(),
        [Some("second".to_string())],
        "the hub ends with the update, not a re-entry of the data before it"
    );
}

/// `(state, retry_in)` of the connection state changes since `from`.
fn retries(world: &World, client: usize, from: usize) -> Vec<(&'static str, Option<u64>)> {
    world.clients[client].events[from..]
        .iter()
        .filter_map(|e| match e {
            ClientEvent::ConnectionState {
                current, retry_in, ..
            } => Some((current.name(), *retry_in)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_disconnected_or_suspended_state_says_when_the_client_tries_again() {
    let mut world = World::new(HubConfig::default(), 21);
    let alice = world.add_client("clientId=alice");
    world.run(100);
    assert!(world.connected(alice));
    assert!(retries(&world, alice, 0).iter().all(|(_, r)| r.is_none()));

    // Offline for 5 s: the retry waits for it; offline until told: no retry.
    let from = world.clients[alice].events.len();
    world.with(alice, |c, now| c.simulate_drop(now, Some(5_000)));
    assert_eq!(
        retries(&world, alice, from),
        [("disconnected", Some(5_000))]
    );
    world.run(6_000);
    assert!(world.connected(alice));
    let from = world.clients[alice].events.len();
    world.with(alice, |c, now| c.simulate_drop(now, None));
    assert_eq!(retries(&world, alice, from), [("disconnected", None)]);
    world.with(alice, |c, now| c.connect(now));
    world.run(100);
    assert!(world.connected(alice));

    // A hub that stopped answering: the first retry is at once, later ones back off (the
    // world's 2 s less up to 20 % jitter, growing to twice that), and suspended retries every
    // 30 s.
    let from = world.clients[alice].events.len();
    world.partition(alice);
    world.run(200_000);
    let seen = retries(&world, alice, from);
    let disconnected: Vec<u64> = seen
        .iter()
        .filter(|(s, _)| *s == "disconnected")
        .map(|(_, r)| r.expect("a retry time"))
        .collect();
    assert_eq!(disconnected.first(), Some(&0), "{seen:?}");
    assert!(disconnected.len() >= 3, "{seen:?}");
    assert!(
        disconnected[1..]
            .iter()
            .all(|r| (1_600..=4_000).contains(r)),
        "{seen:?}"
    );
    assert!(seen.contains(&("suspended", Some(30_000))), "{seen:?}");
    assert!(
        seen.iter()
            .filter(|(s, _)| *s == "connecting")
            .all(|(_, r)| r.is_none()),
        "{seen:?}"
    );
}

#[test]
fn a_client_dropped_again_soon_after_it_reconnected_waits_before_it_tries_again() {
    let mut world = World::new(HubConfig::default(), 22);
    let alice = world.add_client("clientId=alice");
    world.run(100);
    let from = world.clients[alice].events.len();
    world.cut(alice);
    world.run(100);
    assert!(world.connected(alice), "back at once the first time");
    // Dropped again straight away (a hub that cuts it off as soon as it connects): the next
    // try waits, rather than hammering the hub.
    world.cut(alice);
    world.run(50);
    let seen = retries(&world, alice, from);
    let waits: Vec<u64> = seen
        .iter()
        .filter(|(s, _)| *s == "disconnected")
        .map(|(_, r)| r.unwrap())
        .collect();
    assert_eq!(waits.len(), 2, "{seen:?}");
    assert_eq!(waits[0], 0);
    assert!((1_000..=2_000).contains(&waits[1]), "{seen:?}");
    // Once a timeout has passed, a drop is retried at once again.
    world.run(5_000);
    assert!(world.connected(alice));
    let from = world.clients[alice].events.len();
    world.cut(alice);
    world.run(50);
    assert_eq!(
        retries(&world, alice, from).first(),
        Some(&("disconnected", Some(0)))
    );
}

#[test]
fn presence_data_too_large_for_the_hub_is_refused_at_once_and_the_connection_carries_on() {
    let mut world = World::new(HubConfig::default(), 23);
    let alice = world.add_client("clientId=alice");
    world.run(100);
    let big = "x".repeat(70_000);
    let op = enter(&mut world, alice, &big);
    let settled = world.clients[alice].settled.get(&op).cloned();
    let error = settled.expect("settled at once").unwrap_err();
    assert_eq!((error.code, error.status_code), (40009, 400));
    let op = enter(&mut world, alice, "small");
    world.run(100);
    assert_eq!(world.clients[alice].settled.get(&op), Some(&Ok(())));
    assert!(world.connected(alice));
    // Measured as Ably measures (TO3l8), escapes aside: 60 000 quotes fit, as the hub agrees.
    let quotes = "\"".repeat(60_000);
    let op = enter(&mut world, alice, &quotes);
    world.run(100);
    assert_eq!(world.clients[alice].settled.get(&op), Some(&Ok(())));
}

#[test]
fn events_come_out_in_order_whether_polled_one_by_one_or_taken_together() {
    use rollcall::client::{Client, ClientOptions};
    let names = |events: Vec<ClientEvent>| -> Vec<String> {
        events
            .into_iter()
            .map(|e| match e {
                ClientEvent::ChannelState {
                    channel, current, ..
                } => {
                    format!("{channel}:{}", current.name())
                }
                ClientEvent::ConnectionState { current, .. } => current.name().to_owned(),
                ClientEvent::OpenTransport { .. } => "open".to_owned(),
                other => format!("{other:?}"),
            })
            .collect()
    };
    let mut client = Client::new(ClientOptions::new("ws://hub/", Some("alice")));
    client.connect(0);
    client.attach(0, "a");
    let first = client.poll_event().into_iter().collect::<Vec<_>>();
    client.attach(0, "b");
    let second = client.poll_event().into_iter().collect::<Vec<_>>();
    let rest = client.take_events();
    let all: Vec<String> = [first, second, rest].into_iter().flat_map(names).collect();
    assert_eq!(
        all,
        ["connecting", "open", "a:attaching", "b:attaching"],
        "in the order they happened"
    );
    assert!(client.poll_event().is_none());
}

#[test]
fn re_entries_too_large_for_one_frame_go_in_several_and_all_are_back() {
    let mut world = World::new(HubConfig::default(), 24);
    let watcher = world.add_client("clientId=watcher");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    // A server entering ten members of 20 KB each: 200 KB, where a frame holds 64 KB.
    let server = world.add_client("key=app.any:thing&remainPresentFor=1000");
    let big = "x".repeat(20_000);
    for i in 0..10 {
        let client = format!("bot-{i}");
        world.with(server, |c, now| {
            c.presence(
                now,
                ROOM,
                item(PresenceAction::Enter, Some(&client), Some(&big)),
            )
        });
    }
    world.run(1_000);
    assert_eq!(world.hub_view(ROOM).len(), 10);
    // Gone for longer than its grace and the connection's state: a new connection, which
    // enters every member again.
    world.with(server, |c, now| c.simulate_drop(now, Some(130_000)));
    world.run(160_000);
    assert!(world.connected(server));
    world.run(1_000);
    assert_eq!(world.hub_view(ROOM).len(), 10, "every member entered again");
    let refused = world.clients[server]
        .events
        .iter()
        .any(|e| matches!(e, ClientEvent::ChannelState { reason: Some(r), .. } if r.code == 91004));
    assert!(!refused, "no re-entry was refused");
    assert_eq!(world.clients[watcher].view(ROOM), world.hub_view(ROOM));
}

#[test]
fn back_after_its_grace_but_within_the_connection_state_its_members_are_present_again() {
    let mut world = World::new(HubConfig::default(), 25);
    let watcher = world.add_client("clientId=watcher");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let alice = world.add_client("clientId=alice&remainPresentFor=2000");
    enter(&mut world, alice, "laptop");
    world.run(500);
    let id = world.clients[alice].core.connection_id().cloned();
    world.with(alice, |c, now| c.simulate_drop(now, Some(5_000)));
    world.run(4_000);
    assert!(
        clients_of(&world, watcher).is_empty(),
        "gone after its grace"
    );
    world.run(3_000);
    assert_resumed(&world, alice, &id);
    world.run(1_000);
    assert_eq!(clients_of(&world, watcher), ["alice"], "present again");
    assert_eq!(world.clients[watcher].view(ROOM), world.hub_view(ROOM));
}

fn recovering(world: &mut World, query: &str, key: &str, serial: i64) -> usize {
    let client_id = query
        .split('&')
        .find_map(|p| p.strip_prefix("clientId="))
        .map(String::from);
    let options = rollcall::client::ClientOptions::new(
        format!("ws://hub/?v=6&heartbeats=true&{query}"),
        client_id.as_deref(),
    );
    world.add_client_prepared(options, |c| c.recover(key, serial))
}

/// What a client's recovery key holds: its connection key and next msgSerial.
fn recovery_key(world: &World, client: usize) -> (String, i64) {
    let core = &world.clients[client].core;
    (
        core.connection_key().unwrap().to_string(),
        core.msg_serial(),
    )
}

#[test]
fn a_new_client_recovering_a_dropped_connection_keeps_its_members_with_no_leave_or_enter() {
    let mut world = World::new(HubConfig::default(), 21);
    let watcher = world.add_client("clientId=agent");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let query = "clientId=alice&remainPresentFor=3000";
    let page = world.add_client(query);
    enter(&mut world, page, "loading");
    enter(&mut world, page, "tab");
    world.run(200);
    let (key, serial) = recovery_key(&world, page);
    let id = world.clients[page].core.connection_id().cloned();
    assert_eq!(serial, 2, "two messages sent");
    // The page unloads: its socket closes with no CLOSE, and it never comes back.
    world.with(page, |c, now| c.simulate_drop(now, None));
    world.run(500);
    let seen = world.clients[watcher].presence_events(ROOM).len();

    // The reloaded page recovers the connection and enters as the page before it did.
    let reloaded = recovering(&mut world, query, &key, serial);
    let asked = world.clients[reloaded].events.iter().any(|e| {
        matches!(e, ClientEvent::OpenTransport { url } if url.contains("recover=") && !url.contains("resume="))
    });
    assert!(asked, "the first connection asks with recover");
    enter(&mut world, reloaded, "tab");
    world.run(6_000);
    assert_eq!(world.clients[reloaded].core.connection_id().cloned(), id);
    assert_eq!(
        world.clients[watcher].presence_events(ROOM).len(),
        seen,
        "no leave and no enter, past the grace window"
    );
    assert_eq!(clients_of(&world, watcher), ["alice"]);
    assert_eq!(world.hub_view(ROOM).len(), 1, "one device, not two");

    // Its messages continue from the recovered serial: a change is applied, not taken for a
    // resend of one the page before sent.
    enter(&mut world, reloaded, "moved");
    world.run(200);
    let last = world.clients[watcher].presence_events(ROOM).pop().unwrap();
    assert_eq!(last.action, PresenceAction::Update);
    assert_eq!(common::data(&last).as_deref(), Some("moved"));
    assert_eq!(world.clients[reloaded].view(ROOM), world.hub_view(ROOM));
}

#[test]
fn a_recovery_key_the_hub_does_not_know_gives_a_new_connection_with_the_reason() {
    let mut world = World::new(HubConfig::default(), 22);
    let watcher = world.add_client("clientId=agent");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let page = recovering(&mut world, "clientId=alice", "gone!key", 42);
    world.run(200);
    let reason = world.clients[page].events.iter().find_map(|e| match e {
        ClientEvent::ConnectionState {
            current: ConnectionState::Connected,
            reason,
            ..
        } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(
        reason.flatten().map(|r| r.code),
        Some(rollcall::protocol::codes::UNABLE_TO_RESUME)
    );
    assert_eq!(
        world.clients[page].core.msg_serial(),
        0,
        "a new connection starts at 0"
    );
    enter(&mut world, page, "tab");
    world.run(200);
    assert_eq!(clients_of(&world, watcher), ["alice"]);
    // Only before the first connection: a connected client keeps its own.
    let id = world.clients[page].core.connection_id().cloned();
    world.with(page, |c, _| c.recover("other!key", 7));
    assert_eq!(world.clients[page].core.msg_serial(), 1);
    world.cut(page);
    world.run(5_000);
    assert_eq!(
        world.clients[page].core.connection_id().cloned(),
        id,
        "resumed its own"
    );
}

#[test]
fn a_recovery_key_taken_before_the_last_message_still_carries_the_next_ones() {
    let mut world = World::new(HubConfig::default(), 23);
    let watcher = world.add_client("clientId=agent");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let query = "clientId=alice&remainPresentFor=3000";
    let agent = world.add_client(query);
    enter(&mut world, agent, "v1");
    world.run(200);
    // Kept once, early: the process sends more before it dies.
    let (key, serial) = recovery_key(&world, agent);
    enter(&mut world, agent, "v2");
    world.run(200);
    world.with(agent, |c, now| c.simulate_drop(now, None));
    world.run(500);

    let restarted = recovering(&mut world, query, &key, serial);
    enter(&mut world, restarted, "v3");
    world.run(200);
    let last = world.clients[watcher].presence_events(ROOM).pop().unwrap();
    assert_eq!(
        common::data(&last).as_deref(),
        Some("v3"),
        "applied, not taken for a resend"
    );
    assert_eq!(world.clients[restarted].view(ROOM), world.hub_view(ROOM));
}

#[test]
fn a_client_whose_connection_was_recovered_elsewhere_gets_one_of_its_own() {
    let mut world = World::new(HubConfig::default(), 24);
    world.max_latency = 20;
    let watcher = world.add_client("clientId=agent");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let query = "clientId=alice&remainPresentFor=3000";
    let first = world.add_client(query);
    enter(&mut world, first, "first");
    world.run(200);
    let (key, serial) = recovery_key(&world, first);
    let id = world.clients[first].core.connection_id().cloned();

    // A second process recovers the connection while the first still runs (an overlap in a
    // restart): the second has it, and the first cannot take it back.
    let second = recovering(&mut world, query, &key, serial);
    enter(&mut world, second, "second");
    world.run(10_000);
    assert_eq!(world.clients[second].core.connection_id().cloned(), id);
    let first_id = world.clients[first].core.connection_id().cloned();
    assert!(
        first_id.is_some() && first_id != id,
        "a connection of its own"
    );
    world.run(20_000);
    assert_eq!(
        world.clients[second].core.connection_id().cloned(),
        id,
        "still"
    );
    assert_eq!(
        world.clients[first].core.connection_id().cloned(),
        first_id,
        "still"
    );
    // Both run, so alice is on two devices, each with its own data.
    let devices: Vec<_> = world
        .hub_view(ROOM)
        .into_iter()
        .filter(|(c, _, _)| c == "alice")
        .collect();
    assert_eq!(devices.len(), 2, "{devices:?}");
    assert_eq!(world.clients[watcher].view(ROOM), world.hub_view(ROOM));
}

#[test]
fn a_token_that_cannot_be_had_while_connecting_disconnects_and_asks_again_on_schedule() {
    let mut world = World::new(HubConfig::default(), 25);
    let mut options =
        rollcall::client::ClientOptions::new("ws://hub/?v=6&clientId=carol", Some("carol"));
    options.renewable_auth = true;
    let carol = world.add_client_with(options);
    let asked = |world: &World| {
        world.clients[carol]
            .events
            .iter()
            .filter(|e| matches!(e, ClientEvent::TokenNeeded))
            .count()
    };
    assert_eq!(asked(&world), 1);
    assert_eq!(
        world.clients[carol].core.state(),
        ConnectionState::Connecting
    );
    // The auth server is down (RSA4c2): disconnected, with the reason and when it tries again.
    let down = rollcall::protocol::ErrorInfo::new(80019, 401, "auth server down");
    assert!(world.with(carol, |c, now| c.token_failed(now, down.clone())));
    let last = |world: &World| {
        world.clients[carol]
            .events
            .iter()
            .rev()
            .find_map(|e| match e {
                ClientEvent::ConnectionState {
                    current,
                    reason,
                    retry_in,
                    ..
                } => Some((*current, reason.as_ref().map(|r| r.code), *retry_in)),
                _ => None,
            })
    };
    let (state, code, retry) = last(&world).unwrap();
    assert_eq!((state, code), (ConnectionState::Disconnected, Some(80019)));
    // Not at once (it would most likely fail the same way): after the retry timeout (2 s in
    // this world, less up to 20 % jitter).
    assert!(retry.is_some_and(|ms| ms >= 1_600), "{retry:?}");
    world.run(retry.unwrap() - 10);
    assert_eq!(asked(&world), 1, "not before");
    world.run(20);
    assert_eq!(asked(&world), 2, "asked again");
    assert!(world.with(carol, |c, now| c.token_failed(now, down.clone())));
    let retry = last(&world).and_then(|(_, _, retry)| retry);
    assert!(
        retry.is_some_and(|ms| ms > 1_000),
        "then on the backoff: {retry:?}"
    );
    world.run(retry.unwrap() + 10);
    assert_eq!(asked(&world), 3);
    // The token comes: connected.
    let token = common::jwt(
        "app.k",
        "s3cret",
        &serde_json::json!({"x-ably-clientId": "carol", "exp": world.now / 1000 + 3600}),
    );
    world.with(carol, |c, now| c.set_token(now, &token, None));
    world.run(100);
    assert!(world.connected(carol));
    // A connected client is not waiting for a token: a failure leaves it as it is.
    assert!(!world.with(carol, |c, now| c.token_failed(now, down.clone())));
    assert!(world.connected(carol));
}

/// A frame as a hub would send it.
fn frame(text: &str) -> rollcall::protocol::ProtocolMessage {
    rollcall::protocol::json::decode(text).expect("a valid frame")
}

/// The transport drops at `at`; the core retries on its own timers and is connected again
/// with `connected`. Returns the time it reconnected.
fn drop_and_reconnect(core: &mut rollcall::client::Client, at: u64, connected: &str) -> u64 {
    core.take_events();
    core.handle_transport_closed(at);
    let mut now = at;
    while !core
        .take_events()
        .iter()
        .any(|e| matches!(e, ClientEvent::OpenTransport { .. }))
    {
        now = core.poll_timeout().expect("a retry");
        core.handle_timeout(now);
    }
    core.handle_transport_open(now);
    core.handle_message(now, frame(connected));
    now
}

#[test]
fn a_client_holding_members_retries_within_their_grace_window() {
    // Ably's 15 s between retries (after the first, at once) would come back after a grace of
    // 8 s: seen by everyone as leaving and entering again.
    let retry_after_two_failures = |enter: bool| -> u64 {
        let mut core = alice_attached(Some(8_000));
        if enter {
            entered(&mut core);
        }
        // The network goes: the transport closes, and the first retry (at once) fails too.
        core.handle_transport_closed(10);
        let now = core.poll_timeout().expect("a retry");
        core.handle_timeout(now);
        core.take_events();
        core.handle_transport_closed(now);
        let events = core.take_events();
        let retry_in = events.iter().find_map(|e| match e {
            ClientEvent::ConnectionState { retry_in, .. } => *retry_in,
            _ => None,
        });
        retry_in.expect("a retry time")
    };
    let holding = retry_after_two_failures(true);
    assert!(holding <= 2_000, "holding members: retries in {holding} ms");
    let empty = retry_after_two_failures(false);
    assert!(empty >= 12_000, "holding none: Ably's schedule, {empty} ms");
}

#[test]
fn a_client_holding_members_dropped_again_as_soon_as_it_reconnects_does_not_hammer_the_hub() {
    let mut core = alice_attached(Some(8_000));
    entered(&mut core);
    let connected = ALICE_CONNECTED;
    // Dropped; back at once (the quick retry); dropped again as soon as it is back, twice.
    let mut now = drop_and_reconnect(&mut core, 10, connected);
    let mut waits = Vec::new();
    for _ in 0..4 {
        core.take_events();
        core.handle_transport_closed(now);
        waits.extend(core.take_events().iter().find_map(|e| match e {
            ClientEvent::ConnectionState { retry_in, .. } => *retry_in,
            _ => None,
        }));
        now = drop_and_reconnect(&mut core, now, connected).max(now + 1);
    }
    // No quick retry until Ably's 15 s have passed since the last: the shorter backoff of its
    // grace window, not an immediate try each time.
    assert_eq!(waits.len(), 4);
    assert!(now < 15_000, "{now}");
    assert!(
        waits.iter().all(|&w| (1_000..=2_000).contains(&w)),
        "{waits:?}"
    );
}

#[test]
fn an_enter_in_flight_on_a_channel_released_meanwhile_is_settled_on_a_new_connection() {
    let mut core = alice_attached(None);
    let op = core.presence(1, ROOM, item(PresenceAction::Enter, None, Some("x")));
    while core.poll_transmit().is_some() {}
    // The hub fails the channel before it answers; the app releases it.
    core.handle_message(2, frame(&format!(r#"{{"action":9,"channel":"{ROOM}","error":{{"code":90000,"statusCode":500,"message":"gone"}}}}"#)));
    core.release(ROOM);
    let mut events = core.take_events();
    // A new connection (the old one could not be resumed).
    drop_and_reconnect(
        &mut core,
        3,
        r#"{"action":4,"connectionId":"c2","connectionDetails":{"connectionKey":"k2","clientId":"alice"}}"#,
    );
    events.extend(core.take_events());
    let settled = events.iter().find_map(|e| match e {
        ClientEvent::Settled { op: o, result } if *o == op => Some(result.clone()),
        _ => None,
    });
    assert!(matches!(settled, Some(Err(_))), "{events:?}");
}

const ALICE_CONNECTED: &str = r#"{"action":4,"connectionId":"c1","connectionDetails":{"connectionKey":"k1","clientId":"alice"}}"#;

/// A client "alice" connected (c1) and attached to ROOM, asking the hub to hold its members for
/// `remain_present_for` if given.
fn alice_attached(remain_present_for: Option<u64>) -> rollcall::client::Client {
    let url = match remain_present_for {
        Some(ms) => format!("ws://hub/?v=6&remainPresentFor={ms}"),
        None => "ws://hub/?v=6".to_owned(),
    };
    let mut options = rollcall::client::ClientOptions::new(url, Some("alice"));
    if let Some(ms) = remain_present_for {
        options.remain_present_for = ms;
    }
    let mut core = rollcall::client::Client::new(options);
    core.connect(0);
    core.handle_transport_open(0);
    core.handle_message(0, frame(ALICE_CONNECTED));
    core.attach(0, ROOM);
    core.handle_message(
        1,
        frame(&format!(
            r#"{{"action":11,"channel":"{ROOM}","flags":1,"channelSerial":"s:1"}}"#
        )),
    );
    core
}

/// Alice enters, and the hub acknowledges it.
fn entered(core: &mut rollcall::client::Client) {
    core.presence(1, ROOM, item(PresenceAction::Enter, None, Some("x")));
    while core.poll_transmit().is_some() {}
    core.handle_message(2, frame(r#"{"action":1,"msgSerial":0,"count":1}"#));
}

const WATCHER_CONNECTED: &str =
    r#"{"action":4,"connectionId":"c1","connectionDetails":{"connectionKey":"k1","clientId":"w"}}"#;

/// A client "w" attached to ROOM (serial "old:1"), whose SYNC held bob.
fn watching_bob() -> rollcall::client::Client {
    let mut core = rollcall::client::Client::new(rollcall::client::ClientOptions::new(
        "ws://hub/?v=6&agent=rollcall-test",
        Some("w"),
    ));
    core.connect(0);
    core.handle_transport_open(0);
    core.handle_message(0, frame(WATCHER_CONNECTED));
    core.attach(0, ROOM);
    core.handle_message(
        1,
        frame(&format!(
            r#"{{"action":11,"channel":"{ROOM}","flags":1,"channelSerial":"old:1"}}"#
        )),
    );
    core.handle_message(
        1,
        frame(&format!(
            r#"{{"action":16,"channel":"{ROOM}","channelSerial":"s1:","presence":[{{"action":1,"clientId":"bob","connectionId":"c2","id":"c2:0:0","timestamp":1}}]}}"#
        )),
    );
    core
}

#[test]
fn a_resumed_attached_that_does_not_name_the_last_frame_heard_is_not_taken_as_a_kept_view() {
    // A hub that does not know ATTACH_RESUME answers a re-attach to a channel that emptied
    // with RESUMED and no HAS_PRESENCE: the client must hear that bob left, not keep him.
    let mut core = watching_bob();
    let connected = WATCHER_CONNECTED;
    assert_eq!(core.members(ROOM).len(), 1);
    while core.poll_transmit().is_some() {}
    let now = drop_and_reconnect(&mut core, 2, connected);
    let attach = std::iter::from_fn(|| core.poll_transmit())
        .find(|m| m.action == rollcall::protocol::Action::Attach)
        .expect("a re-attach");
    assert_eq!(attach.flags, Some(rollcall::protocol::flags::ATTACH_RESUME));
    assert_eq!(attach.channel_serial.as_deref(), Some("old:1"));
    core.handle_message(
        now,
        frame(&format!(
            r#"{{"action":11,"channel":"{ROOM}","flags":4,"channelSerial":"old:2"}}"#
        )),
    );
    assert!(core.members(ROOM).is_empty(), "{:?}", core.members(ROOM));
}

#[test]
fn a_channels_modes_go_with_each_attach_and_with_the_resume_flag_after_a_drop() {
    use rollcall::protocol::{flags, Action};
    let mut core = rollcall::client::Client::new(rollcall::client::ClientOptions::new(
        "ws://hub/?v=6&agent=rollcall-test",
        Some("agent"),
    ));
    let connected = r#"{"action":4,"connectionId":"c1","connectionDetails":{"connectionKey":"k1","clientId":"agent"}}"#;
    core.connect(0);
    core.handle_transport_open(0);
    core.handle_message(0, frame(connected));
    core.attach_with(0, ROOM, flags::PRESENCE as u32);
    let attach = std::iter::from_fn(|| core.poll_transmit())
        .find(|m| m.action == Action::Attach)
        .expect("an attach");
    assert_eq!(attach.flags, Some(flags::PRESENCE));
    core.handle_message(
        1,
        frame(&format!(
            r#"{{"action":11,"channel":"{ROOM}","flags":{},"channelSerial":"a:1"}}"#,
            flags::PRESENCE
        )),
    );
    drop_and_reconnect(&mut core, 2, connected);
    let attach = std::iter::from_fn(|| core.poll_transmit())
        .find(|m| m.action == Action::Attach)
        .expect("a re-attach");
    assert_eq!(attach.flags, Some(flags::PRESENCE | flags::ATTACH_RESUME));
}

// ---- detach, re-attach and failure as Ably's spec has them (RTL3, RTL5, RTL13, RTN7c) ----

/// A client core against a hub scripted frame by frame: connected as `c1`, `ROOM` attached,
/// its frames so far taken.
fn scripted_attached() -> rollcall::client::Client {
    scripted_attached_with(0)
}

/// As [`scripted_attached`], with these flags on the ATTACHED.
fn scripted_attached_with(flags: u64) -> rollcall::client::Client {
    let mut core = rollcall::client::Client::new(rollcall::client::ClientOptions::new(
        "ws://hub/?v=6",
        Some("alice"),
    ));
    core.connect(0);
    core.handle_transport_open(0);
    core.handle_message(0, frame(SCRIPTED_CONNECTED));
    core.attach(0, ROOM);
    core.handle_message(0, attached_frame(flags));
    while core.poll_transmit().is_some() {}
    core.take_events();
    core
}

const SCRIPTED_CONNECTED: &str = r#"{"action":4,"connectionId":"c1","connectionDetails":{"connectionKey":"k1","clientId":"alice"}}"#;

fn attached_frame(flags: u64) -> rollcall::protocol::ProtocolMessage {
    frame(&format!(
        r#"{{"action":11,"channel":"{ROOM}","flags":{flags},"channelSerial":"a:1"}}"#
    ))
}

fn detached_frame(error: Option<u32>) -> rollcall::protocol::ProtocolMessage {
    let error = error.map_or(String::new(), |code| {
        format!(r#","error":{{"code":{code},"statusCode":401,"message":"refused"}}"#)
    });
    frame(&format!(r#"{{"action":13,"channel":"{ROOM}"{error}}}"#))
}

fn transmitted(core: &mut rollcall::client::Client) -> Vec<rollcall::protocol::ProtocolMessage> {
    std::iter::from_fn(|| core.poll_transmit()).collect()
}

/// The actions of what the core has to send.
fn sent_actions(core: &mut rollcall::client::Client) -> Vec<rollcall::protocol::Action> {
    transmitted(core).into_iter().map(|m| m.action).collect()
}

fn settled_with(
    core: &mut rollcall::client::Client,
    op: rollcall::client::OpId,
) -> Option<Result<(), u32>> {
    core.take_events().into_iter().find_map(|e| match e {
        ClientEvent::Settled { op: o, result } if o == op => Some(result.map_err(|e| e.code)),
        _ => None,
    })
}

/// The reason of the last change of a channel to `state`.
fn channel_reason(events: &[ClientEvent], state: ChannelState) -> Option<u32> {
    events.iter().rev().find_map(|e| match e {
        ClientEvent::ChannelState {
            current, reason, ..
        } if *current == state => Some(reason.as_ref().map_or(0, |r| r.code)),
        _ => None,
    })
}

#[test]
fn a_detach_made_offline_is_sent_once_connected_again_so_that_its_members_leave() {
    // Then attached again before the network is back, or released (a page that left the room).
    for then in ["nothing", "attach", "release"] {
        let attach_again = then == "attach";
        let mut world = World::new(HubConfig::default(), 31);
        let alice = world.add_client("clientId=alice");
        enter(&mut world, alice, "laptop");
        world.run(500);
        let id = world.clients[alice].core.connection_id().cloned();
        world.with(alice, |c, now| c.simulate_drop(now, Some(1_000)));
        world.run(100);
        assert!(!world.connected(alice));
        // Detached at once, as Ably's (RTL5l): a page's cleanup does not wait for the network.
        let op = world.with(alice, |c, now| c.detach(now, ROOM));
        assert_eq!(
            world.clients[alice].core.channel_state(ROOM),
            ChannelState::Detached
        );
        assert_eq!(world.clients[alice].settled.get(&op), Some(&Ok(())));
        // Attached again before the network is back: the DETACH goes all the same, first.
        if attach_again {
            world.with(alice, |c, now| c.attach(now, ROOM));
        }
        if then == "release" {
            world.with(alice, |c, _| c.release(ROOM));
        }
        world.run(3_000);
        assert_resumed(&world, alice, &id);
        let expected = match then {
            "attach" => ChannelState::Attached,
            // Kept until its DETACH was answered, then forgotten (as a new channel is).
            "release" => ChannelState::Initialized,
            _ => ChannelState::Detached,
        };
        assert_eq!(world.clients[alice].core.channel_state(ROOM), expected);
        assert!(
            world.hub_view(ROOM).is_empty(),
            "alice stayed ({then}): {:?}",
            world.hub_view(ROOM)
        );
        assert!(world.clients[alice].view(ROOM).is_empty());
    }
}

#[test]
fn an_enter_then_a_detach_in_one_turn_leaves_nothing_to_enter_again() {
    let mut world = World::new(HubConfig::default(), 32);
    // The hub reads both frames in one turn, as a host does when they come together.
    world.batch_turns = true;
    let alice = world.add_client("clientId=alice");
    world.with(alice, |c, now| c.attach(now, ROOM));
    world.run(200);
    let (entered, detached) = world.with(alice, |c, now| {
        let e = c.presence(now, ROOM, item(PresenceAction::Enter, None, Some("laptop")));
        (e, c.detach(now, ROOM))
    });
    world.run(200);
    assert_eq!(world.clients[alice].settled.get(&entered), Some(&Ok(())));
    assert_eq!(world.clients[alice].settled.get(&detached), Some(&Ok(())));
    // Attached again, alice is not put back: she went with the detach.
    world.with(alice, |c, now| c.attach(now, ROOM));
    world.run(500);
    assert_eq!(
        world.clients[alice].core.channel_state(ROOM),
        ChannelState::Attached
    );
    assert!(
        world.hub_view(ROOM).is_empty(),
        "re-entered: {:?}",
        world.hub_view(ROOM)
    );
}

#[test]
fn an_ack_heard_after_the_detached_does_not_make_the_member_one_to_enter_again() {
    let mut core = scripted_attached();
    let entered = core.presence(1, ROOM, item(PresenceAction::Enter, None, Some("laptop")));
    core.detach(1, ROOM);
    transmitted(&mut core);
    // A hub that answers the DETACH before the ACK of what came before it.
    core.handle_message(2, detached_frame(None));
    core.handle_message(2, frame(r#"{"action":1,"msgSerial":0,"count":1}"#));
    assert_eq!(settled_with(&mut core, entered), Some(Ok(())));
    core.attach(3, ROOM);
    transmitted(&mut core);
    core.handle_message(4, attached_frame(0));
    let after = transmitted(&mut core);
    assert!(
        after
            .iter()
            .all(|m| m.action != rollcall::protocol::Action::Presence),
        "entered again after the detach: {after:?}"
    );
}

#[test]
fn a_detach_superseded_by_an_attach_fails_with_90000_and_the_channel_attaches() {
    let mut core = scripted_attached();
    let detach = core.detach(1, ROOM);
    core.attach(1, ROOM);
    assert_eq!(settled_with(&mut core, detach), Some(Err(90000)));
    let sent = sent_actions(&mut core);
    use rollcall::protocol::Action;
    assert_eq!(sent, [Action::Detach, Action::Attach]);
    // The DETACHED answers the DETACH: no second ATTACH, and the ATTACHED follows.
    core.handle_message(2, detached_frame(None));
    assert_eq!(core.channel_state(ROOM), ChannelState::Attaching);
    assert!(transmitted(&mut core).is_empty());
    core.handle_message(2, attached_frame(0));
    assert_eq!(core.channel_state(ROOM), ChannelState::Attached);
}

#[test]
fn a_hub_error_for_a_connect_that_close_overtook_ends_closed() {
    for code in [40142, 40101, 50000] {
        let mut core = scripted_attached();
        core.handle_transport_closed(1);
        if core.state() != ConnectionState::Connecting {
            let retry = core.poll_timeout().expect("a retry");
            core.handle_timeout(retry);
        }
        assert_eq!(core.state(), ConnectionState::Connecting);
        let now = core.poll_timeout().unwrap_or(2).min(2);
        core.handle_transport_open(now);
        core.close(now);
        assert_eq!(core.state(), ConnectionState::Closing);
        core.take_events();
        let error =
            format!(r#"{{"action":9,"error":{{"code":{code},"statusCode":401,"message":"no"}}}}"#);
        core.handle_message(now, frame(&error));
        // Closed, as asked: not disconnected to fetch a token and connect again, nor failed.
        assert_eq!(core.state(), ConnectionState::Closed, "{code}");
        let events = core.take_events();
        assert!(
            !events.iter().any(|e| matches!(
                e,
                ClientEvent::OpenTransport { .. } | ClientEvent::TokenNeeded
            )),
            "{code}: {events:?}"
        );
        core.set_token(now, "a.b.c", None);
        core.handle_timeout(now + 60_000);
        assert_eq!(core.state(), ConnectionState::Closed, "{code}");
    }
}

#[test]
fn a_detached_from_the_hub_reattaches_with_its_reason_and_while_attaching_waits_to_retry() {
    use rollcall::protocol::Action;
    let mut core = scripted_attached();
    // Attached: attaching again at once, saying why (RTL13a).
    core.handle_message(1, detached_frame(Some(40160)));
    assert_eq!(core.channel_state(ROOM), ChannelState::Attaching);
    assert_eq!(
        channel_reason(&core.take_events(), ChannelState::Attaching),
        Some(40160)
    );
    let sent = sent_actions(&mut core);
    assert_eq!(sent, [Action::Attach]);
    // Refused again while attaching: suspended, and no ATTACH until channelRetryTimeout
    // (RTL13b), rather than a loop.
    core.handle_message(2, detached_frame(Some(40160)));
    assert_eq!(core.channel_state(ROOM), ChannelState::Suspended);
    assert_eq!(
        channel_reason(&core.take_events(), ChannelState::Suspended),
        Some(40160)
    );
    assert!(transmitted(&mut core).is_empty());
    let retry = core.poll_timeout().expect("a retry");
    assert!(retry >= 2 + 15_000, "{retry}");
    core.handle_timeout(retry);
    let sent = sent_actions(&mut core);
    assert_eq!(sent, [Action::Attach]);
}

#[test]
fn a_connected_that_answers_an_auth_sent_before_close_does_not_reopen_the_connection() {
    let mut core = scripted_attached();
    core.set_token(1, "new.token", None);
    core.close(1);
    transmitted(&mut core);
    assert_eq!(core.state(), ConnectionState::Closing);
    core.handle_message(2, frame(SCRIPTED_CONNECTED));
    assert_eq!(core.state(), ConnectionState::Closing);
    assert!(
        transmitted(&mut core).is_empty(),
        "nothing is sent again after CLOSE"
    );
    core.handle_message(3, frame(r#"{"action":8}"#));
    assert_eq!(core.state(), ConnectionState::Closed);
}

#[test]
fn a_failed_connection_fails_the_channels_in_use_only() {
    let mut core = scripted_attached();
    core.attach(1, "other");
    core.handle_message(1, frame(r#"{"action":11,"channel":"other"}"#));
    core.detach(1, "other");
    core.handle_message(1, frame(r#"{"action":13,"channel":"other"}"#));
    assert_eq!(core.channel_state("other"), ChannelState::Detached);
    core.handle_message(
        2,
        frame(r#"{"action":9,"error":{"code":50000,"statusCode":500,"message":"broken"}}"#),
    );
    assert_eq!(core.state(), ConnectionState::Failed);
    assert_eq!(core.channel_state(ROOM), ChannelState::Failed);
    assert_eq!(core.channel_state("other"), ChannelState::Detached, "RTL3a");
}

#[test]
fn a_suspended_connection_and_its_channels_say_80002() {
    let mut core = scripted_attached();
    let mut now = 1;
    core.handle_transport_closed(now);
    let mut events = Vec::new();
    while core.state() != ConnectionState::Suspended {
        now = core.poll_timeout().expect("a retry");
        core.handle_timeout(now);
        let new = core.take_events();
        if new
            .iter()
            .any(|e| matches!(e, ClientEvent::OpenTransport { .. }))
        {
            core.handle_transport_closed(now);
        }
        events.extend(new);
        assert!(now < 10 * 60_000, "never suspended");
    }
    events.extend(core.take_events());
    assert_eq!(
        channel_reason(&events, ChannelState::Suspended),
        Some(80002)
    );
    let op = core.presence(now, ROOM, item(PresenceAction::Enter, None, None));
    assert_eq!(settled_with(&mut core, op), Some(Err(80002)));
}

#[test]
fn re_entries_sent_on_a_connection_that_is_then_lost_go_again_without_its_ids() {
    use rollcall::protocol::Action;
    let mut core = scripted_attached();
    core.presence(1, ROOM, item(PresenceAction::Enter, None, Some("laptop")));
    transmitted(&mut core);
    core.handle_message(1, frame(r#"{"action":1,"msgSerial":0,"count":1}"#));
    // Resumed, and the channel attached afresh: alice is entered again with her id (RTP17g1).
    let reconnect = |core: &mut rollcall::client::Client, now: u64, connected: &str| {
        let at = drop_and_reconnect(core, now, connected);
        transmitted(core);
        core.handle_message(at, attached_frame(0));
        transmitted(core)
    };
    let first = reconnect(&mut core, 2, SCRIPTED_CONNECTED);
    let reentry = first
        .iter()
        .find(|m| m.action == Action::Presence)
        .expect("a re-entry");
    assert_eq!(
        reentry.presence.as_ref().unwrap()[0].id.as_deref(),
        Some("c1:0:0")
    );
    // Lost before its ACK, and the resume fails: a new connection, c2.
    let new = r#"{"action":4,"connectionId":"c2","connectionDetails":{"connectionKey":"k2","clientId":"alice"}}"#;
    let second = reconnect(&mut core, 10_000, new);
    let reentries: Vec<_> = second
        .iter()
        .filter(|m| m.action == Action::Presence)
        .flat_map(|m| m.presence.clone().unwrap_or_default())
        .collect();
    assert_eq!(reentries.len(), 1, "{reentries:?}");
    assert_eq!(
        reentries[0].id, None,
        "no id of the old connection on the new one"
    );
}

#[test]
fn a_detach_lost_with_its_transport_goes_again_on_the_resume_however_long_that_takes() {
    use rollcall::protocol::Action;
    let mut core = scripted_attached();
    let op = core.detach(1, ROOM);
    transmitted(&mut core);
    // The DETACH is lost with the transport, and no retry connects for 30 s.
    core.handle_transport_closed(2);
    let mut now = 2;
    while now < 30_000 {
        now = core.poll_timeout().expect("a timer");
        core.handle_timeout(now);
        if core
            .take_events()
            .iter()
            .any(|e| matches!(e, ClientEvent::OpenTransport { .. }))
            && now < 30_000
        {
            core.handle_transport_closed(now);
        }
    }
    assert_eq!(
        core.channel_state(ROOM),
        ChannelState::Detaching,
        "not detached by its deadline offline"
    );
    assert_eq!(settled_with(&mut core, op), None);
    core.handle_transport_open(now);
    core.handle_message(now, frame(SCRIPTED_CONNECTED));
    let sent = sent_actions(&mut core);
    assert_eq!(
        sent,
        [Action::Detach],
        "asked again on the resumed connection"
    );
    core.handle_message(now, detached_frame(None));
    assert_eq!(settled_with(&mut core, op), Some(Ok(())));
    assert_eq!(core.channel_state(ROOM), ChannelState::Detached);
}

#[test]
fn a_detached_without_a_reason_while_attaching_waits_for_the_attached_that_follows() {
    let mut core = scripted_attached();
    core.detach(1, ROOM);
    core.handle_message(1, detached_frame(None));
    core.attach(2, ROOM);
    transmitted(&mut core);
    // The hub gave the channel up (a recovered connection's) as the ATTACH went out.
    core.handle_message(3, detached_frame(None));
    assert_eq!(core.channel_state(ROOM), ChannelState::Attaching);
    core.handle_message(3, attached_frame(0));
    assert_eq!(core.channel_state(ROOM), ChannelState::Attached);
}

#[test]
fn a_disconnected_while_closing_closes() {
    let mut core = scripted_attached();
    core.close(1);
    transmitted(&mut core);
    core.handle_message(
        2,
        frame(r#"{"action":6,"error":{"code":40142,"statusCode":401,"message":"token expired"}}"#),
    );
    assert_eq!(core.state(), ConnectionState::Closed);
    assert!(core.poll_timeout().is_none(), "no retry after close()");
}

#[test]
fn tokens_the_hub_keeps_refusing_are_retried_on_schedule_not_in_a_tight_loop() {
    let mut world = keyed_world(31);
    // Signed with a secret the hub no longer has: each is refused (40144).
    let mint = |now: u64| {
        let claims = serde_json::json!({"exp": now / 1000 + 600, "x-ably-clientId": "dan"});
        (common::jwt("app.k", "rotated", &claims), now + 600_000)
    };
    let (first, _) = mint(world.now);
    let dan = renewable_client(&mut world, &first, "dan");
    run_with_tokens(&mut world, dan, 10_000, &mint);
    let opened = world.clients[dan]
        .events
        .iter()
        .filter(|e| matches!(e, ClientEvent::OpenTransport { .. }))
        .count();
    // The first refusal gets a new token at once (RTN14b); then the retry timeout (2 s in this
    // world) backs off: a handful of tries in 10 s, not one per round trip.
    assert!(
        (3..=8).contains(&opened),
        "{opened} connection attempts in 10 s"
    );
    assert_eq!(
        world.clients[dan].core.state(),
        ConnectionState::Disconnected
    );
}

#[test]
fn a_token_expired_by_a_clock_ahead_of_its_issuer_is_not_renewed_in_a_loop() {
    let mut world = keyed_world(32);
    let claims = serde_json::json!({"exp": world.now / 1000 + 3_600, "x-ably-clientId": "eve"});
    let token = common::jwt("app.k", "s3cret", &claims);
    let eve = renewable_client(&mut world, &token, "eve");
    world.run(500);
    assert!(world.connected(eve));
    // Its clock is two hours ahead of the issuer's: by it, each token has already expired.
    let expires = world.now - 3_600_000;
    world.with(eve, |c, now| c.set_token(now, &token, Some(expires)));
    run_with_tokens(&mut world, eve, 5_000, &|_| (token.clone(), expires));
    let asked = world.clients[eve]
        .events
        .iter()
        .filter(|e| matches!(e, ClientEvent::TokenNeeded))
        .count();
    assert!(asked <= 1, "{asked} renewals in 5 s");
    assert!(world.connected(eve));
}

#[test]
fn a_connect_after_close_starts_afresh_rather_than_from_the_outage_before_it() {
    let mut world = World::new(HubConfig::default(), 33);
    let fay = world.add_client("clientId=fay");
    world.run(500);
    assert!(world.connected(fay));
    // Offline past connectionStateTtl (120 s), then closed.
    world.with(fay, |c, now| c.simulate_drop(now, None));
    world.run(130_000);
    assert_eq!(world.clients[fay].core.state(), ConnectionState::Suspended);
    world.with(fay, |c, now| c.close(now));
    assert_eq!(world.clients[fay].core.state(), ConnectionState::Closed);
    // Later it connects again, and its first attempt fails: disconnected and a quick retry,
    // not suspended for the outage before the close.
    world.with(fay, |c, now| c.connect(now));
    world.with(fay, |c, now| c.simulate_drop(now, Some(100)));
    assert_eq!(
        world.clients[fay].core.state(),
        ConnectionState::Disconnected
    );
    world.run(1_000);
    assert!(world.connected(fay));
}

#[test]
fn a_token_that_cannot_be_had_after_a_refusal_is_asked_for_on_schedule_and_the_connection_suspends()
{
    let mut world = keyed_world(34);
    let expired = common::jwt(
        "app.k",
        "s3cret",
        &serde_json::json!({"exp": 1, "x-ably-clientId": "gil"}),
    );
    let gil = renewable_client(&mut world, &expired, "gil");
    world.run(100);
    assert_eq!(
        world.clients[gil].core.state(),
        ConnectionState::Disconnected
    );
    // The auth server is down: each time a token is asked for, none comes.
    let down = rollcall::protocol::ErrorInfo::new(80019, 401, "auth server down");
    let mut answered = 0;
    answer_token_requests(&mut world, gil, 200_000, &mut |world| {
        answered += 1;
        assert!(
            world.with(gil, |c, now| c.token_failed(now, down.clone())),
            "it was waiting"
        );
    });
    // Asked again on the retry schedule (2 s, backing off to 4 s), then suspended once the
    // connection's state would be gone on the hub (120 s), and asked again on the suspended
    // schedule (30 s), waiting for the token each time rather than suspended again at once.
    assert!((15..=70).contains(&answered), "{answered} tokens asked for");
    let suspended_asks = world.clients[gil]
        .events
        .iter()
        .skip_while(|e| {
            !matches!(
                e,
                ClientEvent::ConnectionState {
                    current: ConnectionState::Suspended,
                    ..
                }
            )
        })
        .filter(|e| matches!(e, ClientEvent::TokenNeeded))
        .count();
    assert!(suspended_asks >= 2, "{suspended_asks} asks once suspended");
    assert_eq!(world.clients[gil].core.state(), ConnectionState::Suspended);
}

#[test]
fn attach_detach_attach_in_one_turn_ends_attached_without_a_spurious_re_attach() {
    let mut world = World::new(HubConfig::default(), 35);
    let hal = world.add_client("clientId=hal");
    world.run(500);
    world.with(hal, |c, now| {
        c.attach(now, ROOM);
        c.detach(now, ROOM);
        c.attach(now, ROOM)
    });
    world.run(1_000);
    let states: Vec<ChannelState> = world.clients[hal]
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::ChannelState {
                current, previous, ..
            } if current != previous => Some(*current),
            _ => None,
        })
        .collect();
    use ChannelState::{Attached, Attaching, Detaching};
    // As called, then attached once: the hub's DETACHED (between its two ATTACHEDs) answers the
    // superseded detach and is not the hub detaching the channel (RTL13a).
    assert_eq!(states, [Attaching, Detaching, Attaching, Attached]);
    assert_eq!(
        world.clients[hal].core.channel_state(ROOM),
        ChannelState::Attached
    );
}

#[test]
fn a_member_entered_between_attached_and_the_first_sync_page_stays() {
    // A hub that sends ATTACHED (HAS_PRESENCE) and the SYNC apart, with a live ENTER between:
    // the first page's sync id is not a new SYNC (RTP18a), and the member heard live is kept.
    let mut core = scripted_attached_with(1);
    core.handle_message(
        1,
        frame(&format!(
            r#"{{"action":14,"channel":"{ROOM}","presence":[{{"action":2,"clientId":"x","connectionId":"cx","id":"cx:0:0","timestamp":1}}]}}"#
        )),
    );
    core.handle_message(
        2,
        frame(&format!(
            r#"{{"action":16,"channel":"{ROOM}","channelSerial":"s1:","presence":[{{"action":1,"clientId":"y","connectionId":"cy","id":"cy:0:0","timestamp":1}}]}}"#
        )),
    );
    assert!(core.sync_complete(ROOM));
    let mut ids: Vec<String> = core
        .members(ROOM)
        .iter()
        .map(|m| m.client_id.as_deref().unwrap_or("").to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["x", "y"]);
}

#[test]
fn an_operation_in_flight_on_a_channel_that_failed_fails_when_the_connection_is_new() {
    let mut core = scripted_attached();
    let op = core.presence(1, ROOM, item(PresenceAction::Enter, None, None));
    while core.poll_transmit().is_some() {}
    // The channel fails before the hub answers; then the transport drops, and the client comes
    // back on a new connection (its ACK will never come).
    core.handle_message(
        2,
        frame(&format!(
            r#"{{"action":9,"channel":"{ROOM}","error":{{"code":90000,"statusCode":400,"message":"gone"}}}}"#
        )),
    );
    assert_eq!(core.channel_state(ROOM), ChannelState::Failed);
    drop_and_reconnect(
        &mut core,
        3,
        r#"{"action":4,"connectionId":"c2","connectionDetails":{"connectionKey":"k2","clientId":"alice"}}"#,
    );
    assert_eq!(settled_with(&mut core, op), Some(Err(90001)));
}

#[test]
fn the_attach_serial_is_the_attached_ones_and_only_while_attached() {
    let mut core = scripted_attached();
    assert_eq!(core.attach_serial(ROOM).map(|s| &**s), Some("a:1"));
    // Events move the channel serial on, not the attach point.
    core.handle_message(
        1,
        frame(&format!(
            r#"{{"action":14,"channel":"{ROOM}","channelSerial":"a:2","presence":[{{"action":2,"clientId":"x","connectionId":"cx","id":"cx:0:0","timestamp":1}}]}}"#
        )),
    );
    assert_eq!(core.attach_serial(ROOM).map(|s| &**s), Some("a:1"));
    // Nor does an ATTACHED that resumes the channel (RTL15c); one that does not, does.
    core.handle_message(
        1,
        frame(&format!(
            r#"{{"action":11,"channel":"{ROOM}","flags":4,"channelSerial":"a:3"}}"#
        )),
    );
    assert_eq!(core.attach_serial(ROOM).map(|s| &**s), Some("a:1"));
    core.handle_message(
        1,
        frame(&format!(
            r#"{{"action":11,"channel":"{ROOM}","flags":0,"channelSerial":"a:4"}}"#
        )),
    );
    assert_eq!(core.attach_serial(ROOM).map(|s| &**s), Some("a:4"));
    assert_eq!(core.attach_serial("elsewhere"), None);
    core.detach(2, ROOM);
    transmitted(&mut core);
    core.handle_message(3, detached_frame(None));
    assert_eq!(core.attach_serial(ROOM), None, "not attached");
}

#[test]
fn a_first_attached_that_says_resumed_still_gives_the_attach_serial() {
    // The ATTACH was answered after the client gave up on it; its retry finds the attachment
    // on the hub, which resumes it.
    let core = scripted_attached_with(rollcall::protocol::flags::RESUMED);
    assert_eq!(core.attach_serial(ROOM).map(|s| &**s), Some("a:1"));
}

#[test]
fn a_released_channel_is_forgotten_once_it_holds_nothing_and_only_then() {
    let mut core = scripted_attached();
    core.attach(1, "other");
    core.handle_message(1, frame(r#"{"action":11,"channel":"other"}"#));
    core.release("other");
    assert_eq!(
        core.channel_state("other"),
        ChannelState::Attached,
        "an attached channel is kept"
    );
    core.detach(1, "other");
    core.handle_message(1, frame(r#"{"action":13,"channel":"other"}"#));
    core.release("other");
    assert_eq!(
        core.channel_state("other"),
        ChannelState::Initialized,
        "a detached channel is forgotten"
    );
    transmitted(&mut core);
    core.attach(2, "other");
    assert!(
        transmitted(&mut core)
            .iter()
            .any(|m| m.action == rollcall::protocol::Action::Attach
                && m.channel.as_deref() == Some("other")),
        "a released channel attaches afresh"
    );
    core.handle_message(
        3,
        frame(r#"{"action":9,"error":{"code":50000,"statusCode":500,"message":"broken"}}"#),
    );
    assert_eq!(core.channel_state(ROOM), ChannelState::Failed);
    core.release(ROOM);
    assert_eq!(core.channel_state(ROOM), ChannelState::Initialized);
}

#[test]
fn a_channel_released_while_its_detach_is_owed_is_forgotten_on_a_new_connection() {
    let mut core = scripted_attached();
    core.handle_transport_closed(1);
    core.detach(2, ROOM);
    core.release(ROOM);
    assert_eq!(
        core.channel_state(ROOM),
        ChannelState::Detached,
        "kept while its DETACH is owed"
    );
    // Not resumed: the new connection owes nothing, and the channel is let go of.
    let connected = SCRIPTED_CONNECTED.replace("\"c1\"", "\"c2\"");
    drop_and_reconnect(&mut core, 3, &connected);
    assert!(
        !transmitted(&mut core)
            .iter()
            .any(|m| m.channel.as_deref() == Some(ROOM)),
        "nothing sent on the released channel"
    );
    assert_eq!(core.channel_state(ROOM), ChannelState::Initialized);
}

#[test]
fn a_client_back_after_its_grace_but_within_the_connections_life_is_present_again() {
    let mut world = World::new(HubConfig::default(), 31);
    let watcher = world.add_client("clientId=watcher");
    world.with(watcher, |c, now| c.attach(now, ROOM));
    let alice = world.add_client("clientId=alice&remainPresentFor=1000");
    enter(&mut world, alice, "laptop");
    world.run(500);
    let id = world.clients[alice].core.connection_id().cloned();
    world.with(alice, |c, now| c.simulate_drop(now, Some(4_000)));
    world.run(20_000);
    assert!(world.connected(alice));
    assert_eq!(
        world.clients[alice].core.connection_id().cloned(),
        id,
        "resumed"
    );
    let hub = world.hub_view(ROOM);
    assert!(
        hub.iter().any(|(client, _, _)| client == "alice"),
        "alice is present again: {hub:?}"
    );
}

#[test]
fn a_suspended_connection_resumes_when_its_members_outlive_the_outage_and_nobody_sees_it_leave() {
    // As Ably's client since its spec 6.1 (RTN14h): the connection is kept through `suspended`,
    // and the hub says whether it is still there.
    let (mut world, alice) = suspendable_alice(21);
    let bob = world.add_client("clientId=bob");
    enter(&mut world, alice, "laptop");
    world.with(bob, |c, now| c.attach(now, ROOM));
    world.run(500);
    let id = world.clients[alice].core.connection_id().cloned();
    world.cut(alice);
    world.partition(alice);
    world.run(5_000);
    assert_eq!(
        world.clients[alice].core.state(),
        ConnectionState::Suspended
    );
    world.heal(alice);
    world.run(3_000);
    assert_resumed(&world, alice, &id);
    assert_eq!(world.hub_view(ROOM).len(), 1, "{:?}", world.hub_view(ROOM));
    assert_eq!(world.clients[bob].view(ROOM).len(), 1);
    let left: Vec<_> = world.clients[bob]
        .presence_events(ROOM)
        .into_iter()
        .filter(|m| m.action == PresenceAction::Leave)
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Its channel attached again, and it can go on.
    let op = world.with(alice, |c, now| {
        c.presence(now, ROOM, item(PresenceAction::Update, None, Some("back")))
    });
    world.run(500);
    assert_eq!(world.clients[alice].settled[&op], Ok(()));
}

#[test]
fn operations_on_a_failed_connection_say_why_it_failed_and_a_close_says_80017() {
    // Refused by the hub (a wrong secret): what is asked of it afterwards says so, as Ably's.
    let mut core = rollcall::client::Client::new(rollcall::client::ClientOptions::new(
        "ws://hub/?v=6",
        Some("alice"),
    ));
    core.connect(0);
    core.handle_transport_open(0);
    core.handle_message(
        0,
        frame(r#"{"action":9,"error":{"code":40101,"statusCode":401,"message":"wrong secret"}}"#),
    );
    assert_eq!(core.state(), ConnectionState::Failed);
    core.take_events();
    let op = core.attach(1, ROOM);
    assert_eq!(settled_with(&mut core, op), Some(Err(40101)));

    // Closed: the connection's changes say 80017, and a failed channel stays failed (RTL3b).
    let mut core = scripted_attached();
    core.attach(1, "other");
    core.handle_message(
        1,
        frame(r#"{"action":9,"channel":"other","error":{"code":40160,"statusCode":401,"message":"no"}}"#),
    );
    assert_eq!(core.channel_state("other"), ChannelState::Failed);
    core.close(2);
    core.handle_message(2, frame(r#"{"action":8}"#));
    let events = core.take_events();
    let reasons: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::ConnectionState {
                current, reason, ..
            } => Some((*current, reason.as_ref().map(|r| r.code))),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (ConnectionState::Closing, Some(80017)),
            (ConnectionState::Closed, Some(80017))
        ]
    );
    assert_eq!(channel_reason(&events, ChannelState::Detached), Some(80017));
    assert_eq!(core.channel_state("other"), ChannelState::Failed);
    assert_eq!(core.channel_state(ROOM), ChannelState::Detached);
}

#[test]
fn a_detach_lost_before_the_connection_is_suspended_goes_when_it_resumes() {
    let (mut world, alice) = suspendable_alice(22);
    enter(&mut world, alice, "laptop");
    world.run(500);
    let id = world.clients[alice].core.connection_id().cloned();
    // The DETACH goes into a network that swallows it, and the connection is suspended.
    world.partition(alice);
    let op = world.with(alice, |c, now| c.detach(now, ROOM));
    world.cut(alice);
    world.run(5_000);
    assert_eq!(
        world.clients[alice].core.state(),
        ConnectionState::Suspended
    );
    assert_eq!(world.clients[alice].settled.get(&op), Some(&Ok(())));
    world.heal(alice);
    world.run(3_000);
    assert_resumed(&world, alice, &id);
    assert!(
        world.hub_view(ROOM).is_empty(),
        "alice stayed: {:?}",
        world.hub_view(ROOM)
    );
}

/// A world whose hub keeps connection state for 2 s, and alice in it, with a grace of 20 s and
/// retries every second once suspended: her connection is suspended by an outage of a few
/// seconds, while the hub still holds it.
fn suspendable_alice(seed: u64) -> (World, usize) {
    let config = HubConfig {
        connection_state_ttl: 2_000,
        ..HubConfig::default()
    };
    let mut world = World::new(config, seed);
    let mut options = rollcall::client::ClientOptions::new(
        "ws://hub/?v=6&heartbeats=true&clientId=alice&remainPresentFor=20000".to_owned(),
        None,
    );
    options.client_id = Some("alice".into());
    options.suspended_retry_timeout = 1_000;
    let alice = world.add_client_with(options);
    (world, alice)
}

#[test]
fn an_enter_made_offline_then_detached_and_attached_again_offline_does_not_come_back() {
    // The app entered, detached and attached again while offline. Sent again on the resume,
    // before the owed DETACH, the enter's ACK and echo came once the channel was attaching
    // again, and made alice a member to enter again after the ATTACHED: she went with the
    // detach. On a new connection, the enter was queued again and sent after the attach.
    for resume in [false, true] {
        let mut world = World::new(HubConfig::default(), 33);
        let watcher = world.add_client("clientId=watcher");
        world.with(watcher, |c, now| c.attach(now, ROOM));
        let alice = world.add_client("clientId=alice");
        world.with(alice, |c, now| c.attach(now, ROOM));
        world.run(500);
        world.with(alice, |c, now| c.simulate_drop(now, None));
        world.run(100);
        if !resume {
            // The hub restarts without storage: it no longer knows the connection.
            world.evict(HubConfig::default());
        }
        let (entered, detached) = world.with(alice, |c, now| {
            let e = c.presence(now, ROOM, item(PresenceAction::Enter, None, Some("laptop")));
            let d = c.detach(now, ROOM);
            c.attach(now, ROOM);
            (e, d)
        });
        world.with(alice, |c, now| c.connect(now));
        world.run(5_000);
        assert_eq!(world.clients[alice].settled.get(&detached), Some(&Ok(())));
        // The enter went with the detach (90001), as what was queued on the channel does.
        let outcome = world.clients[alice]
            .settled
            .get(&entered)
            .map(|r| r.as_ref().err().map(|e| e.code));
        assert_eq!(outcome, Some(Some(90001)), "resume {resume}");
        assert_eq!(
            world.clients[alice].core.channel_state(ROOM),
            ChannelState::Attached
        );
        assert!(
            world.hub_view(ROOM).iter().all(|(c, _, _)| c != "alice"),
            "resume {resume}: alice came back: {:?}",
            world.hub_view(ROOM)
        );
    }
}

#[test]
fn a_detach_owed_since_an_offline_detach_is_sent_again_if_lost_with_the_transport() {
    // Detached while offline; the connection resumes and the DETACH goes, but the transport
    // drops before its answer. The hub may never have had it: on the next resume it goes
    // again, or the member would stay present as long as the connection.
    let mut core = scripted_attached();
    let detaches = |core: &mut rollcall::client::Client| {
        let mut n = 0;
        while let Some(m) = core.poll_transmit() {
            n += usize::from(
                m.action == rollcall::protocol::Action::Detach
                    && m.channel.as_deref() == Some(ROOM),
            );
        }
        n
    };
    core.simulate_drop(1, None);
    core.detach(2, ROOM);
    for round in 0..2 {
        let now = 10 + round * 10;
        core.connect(now);
        core.handle_transport_open(now);
        core.handle_message(now, frame(SCRIPTED_CONNECTED));
        assert_eq!(
            detaches(&mut core),
            1,
            "round {round}: the owed DETACH is sent"
        );
        core.handle_transport_closed(now + 1);
    }
    // Answered, it is owed no more.
    core.connect(40);
    core.handle_transport_open(40);
    core.handle_message(40, frame(SCRIPTED_CONNECTED));
    assert_eq!(detaches(&mut core), 1);
    core.handle_message(41, frame(&format!(r#"{{"action":13,"channel":"{ROOM}"}}"#)));
    core.handle_transport_closed(42);
    core.connect(50);
    core.handle_transport_open(50);
    core.handle_message(50, frame(SCRIPTED_CONNECTED));
    assert_eq!(detaches(&mut core), 0);
}

#[test]
fn new_modes_while_attaching_go_in_another_attach() {
    // As ably-js's setOptions() while the first ATTACH is unanswered (RTL16a).
    let mut core = scripted_attached();
    core.attach(0, "other");
    transmitted(&mut core);
    let modes = rollcall::protocol::flags::PRESENCE | rollcall::protocol::flags::PRESENCE_SUBSCRIBE;
    core.attach_with(1, "other", u32::try_from(modes).unwrap());
    let sent = transmitted(&mut core);
    assert!(
        sent.iter()
            .any(|m| m.action == rollcall::protocol::Action::Attach
                && m.flags.unwrap_or(0) & modes == modes),
        "{sent:?}"
    );
    // The same modes again: nothing more to send.
    core.attach_with(2, "other", u32::try_from(modes).unwrap());
    assert!(transmitted(&mut core).is_empty());
}

#[test]
fn new_modes_asked_for_during_a_resumed_re_attach_keep_the_view_the_hub_vouches_for() {
    let mut core = watching_bob();
    let connected = WATCHER_CONNECTED;
    while core.poll_transmit().is_some() {}
    let now = drop_and_reconnect(&mut core, 2, connected);
    transmitted(&mut core);
    core.take_events();
    // The app changes the modes while the re-attach asking to keep the view is unanswered.
    let modes = rollcall::protocol::flags::PRESENCE | rollcall::protocol::flags::PRESENCE_SUBSCRIBE;
    core.attach_with(now, ROOM, u32::try_from(modes).unwrap());
    // The new ATTACH asks nothing of the resume: the hub answers the first about it.
    let sent = transmitted(&mut core);
    let attach = sent
        .iter()
        .find(|m| m.action == rollcall::protocol::Action::Attach)
        .expect("an ATTACH with the new modes");
    assert_eq!(attach.flags, Some(modes), "{attach:?}");
    // The hub vouches for the view in answer to the first.
    core.handle_message(
        now,
        frame(&format!(
            r#"{{"action":11,"channel":"{ROOM}","flags":4,"channelSerial":"old:1"}}"#
        )),
    );
    let left = core.take_events().into_iter().any(|e| {
        matches!(e, ClientEvent::Presence { ref message, .. } if message.action == PresenceAction::Leave)
    });
    assert!(!left, "bob was shown leaving");
    assert_eq!(core.members(ROOM).len(), 1);
}

#[test]
fn a_token_that_arrives_during_a_handshake_starts_it_again_within_the_first_attempts_time() {
    let mut core = rollcall::client::Client::new(rollcall::client::ClientOptions::new(
        "ws://hub/?v=6&access_token=old",
        Some("alice"),
    ));
    core.connect(0);
    core.handle_transport_open(0);
    let first_deadline = core.poll_timeout().expect("a deadline for the handshake");
    core.take_events();
    // The handshake under way carries the old token: it is begun again with the new one.
    core.set_token(first_deadline - 1_000, "new", None);
    let reopened = core.take_events().into_iter().find_map(|e| match e {
        ClientEvent::OpenTransport { url } => Some(url),
        _ => None,
    });
    assert!(
        reopened
            .as_deref()
            .is_some_and(|u| u.contains("access_token=new")),
        "{reopened:?}"
    );
    // Within the first attempt's time: tokens renewed faster than the link answers cannot
    // keep it connecting for good.
    core.handle_transport_open(first_deadline - 900);
    assert_eq!(core.poll_timeout(), Some(first_deadline));
}

#[test]
fn a_detach_unanswered_on_a_link_that_died_unnoticed_goes_again_on_the_resume() {
    use rollcall::protocol::Action;
    let mut core = scripted_attached();
    let op = core.detach(1, ROOM);
    transmitted(&mut core);
    // No answer, and no sign yet that the link is dead: the DETACH's own deadline comes first.
    let deadline = core.poll_timeout().expect("the detach's deadline");
    core.handle_timeout(deadline);
    assert_eq!(core.channel_state(ROOM), ChannelState::Detached);
    assert_eq!(settled_with(&mut core, op), Some(Ok(())));
    // The link is found dead; the connection resumes: the DETACH goes again.
    let now = drop_and_reconnect(&mut core, deadline + 1, SCRIPTED_CONNECTED);
    let sent = sent_actions(&mut core);
    assert_eq!(
        sent,
        [Action::Detach],
        "asked again on the resumed connection"
    );
    core.handle_message(now, detached_frame(None));
    assert_eq!(core.channel_state(ROOM), ChannelState::Detached);
}
