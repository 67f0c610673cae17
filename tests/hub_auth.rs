//! Keys, tokens and capabilities: nobody appears as someone they are not; refusals carry Ably's
//! codes; a renewed token keeps the member present; limits hold.

mod common;

use common::{code, jwt, summary, Sim};
use rollcall::hub::{ApiKey, HubConfig};
use rollcall::protocol::{flags, Action, PresenceAction};
use serde_json::json;

const ROOM: &str = "room";
const KEY: &str = "app.k1:secret-one";

fn secured() -> HubConfig {
    HubConfig {
        keys: ApiKey::parse_list(KEY).unwrap(),
        ..HubConfig::default()
    }
}

/// Attaches `peer` to `channel`: the first reply's action and error code (checked to name the
/// channel).
fn attach(sim: &mut Sim, peer: common::Peer, channel: &str) -> (Action, Option<u32>) {
    sim.send(peer, json!({"action": 10, "channel": channel}));
    let reply = sim.take(peer).remove(0);
    assert_eq!(reply.channel.as_deref(), Some(channel));
    (reply.action, code(&reply))
}

fn seconds(sim: &Sim) -> u64 {
    sim.now / 1000
}

fn token(sim: &Sim, claims: serde_json::Value) -> String {
    let mut claims = claims;
    let now = seconds(sim);
    claims["iat"] = json!(now);
    if claims.get("exp").is_none() {
        claims["exp"] = json!(now + 3600);
    }
    jwt("app.k1", "secret-one", &claims)
}

#[test]
fn a_token_for_alice_cannot_enter_as_bob_nor_connect_as_bob() {
    let mut sim = Sim::new(secured());
    let t = token(&sim, json!({"x-ably-clientId": "alice"}));
    let (alice, connected) = sim.connect(&format!("access_token={t}"));
    assert_eq!(
        connected.connection_details.unwrap().client_id.as_deref(),
        Some("alice")
    );
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    sim.take(alice);
    let replies = sim.presence(alice, ROOM, 0, json!([{"action": 2, "clientId": "bob"}]));
    assert_eq!(
        (replies[0].action, code(&replies[0])),
        (Action::Nack, Some(40012))
    );
    let replies = sim.presence(alice, ROOM, 1, json!([{"action": 2}]));
    assert_eq!(replies.last().unwrap().action, Action::Ack);
    assert_eq!(sim.members(ROOM)[0].0, "alice");

    let (peer, refused) = sim.open(&format!("access_token={t}&clientId=bob"));
    assert_eq!(
        (refused.action, code(&refused)),
        (Action::Error, Some(40102))
    );
    assert!(sim.is_closed(peer));
}

#[test]
fn expired_malformed_and_badly_signed_tokens_are_refused_with_their_codes() {
    let mut sim = Sim::new(secured());
    let now = seconds(&sim);
    let cases = [
        (
            token(&sim, json!({"exp": now - 10, "x-ably-clientId": "a"})),
            40142,
        ),
        (
            jwt("app.k1", "wrong-secret", &json!({"exp": now + 60})),
            40144,
        ),
        (
            jwt("app.unknown", "secret-one", &json!({"exp": now + 60})),
            40101,
        ),
        ("not.a.jwt".to_owned(), 40144),
        ("garbage".to_owned(), 40144),
        (token(&sim, json!({"x-ably-capability": "not json"})), 40144),
        (token(&sim, json!({"x-ably-clientId": 5})), 40144),
        // Ably's required claims: what it allows, and when it was issued.
        (token(&sim, json!({"x-ably-capability": null})), 40144),
        (
            jwt(
                "app.k1",
                "secret-one",
                &json!({"exp": now + 60, "iat": null}),
            ),
            40144,
        ),
    ];
    for (t, expected) in cases {
        let (peer, refused) = sim.open(&format!("access_token={t}"));
        assert_eq!(
            (refused.action, code(&refused)),
            (Action::Error, Some(expected)),
            "{t}"
        );
        assert_eq!(refused.error.unwrap().status_code, 401);
        assert!(sim.is_closed(peer));
    }
    let (peer, refused) = sim.open("key=app.k1:wrong");
    assert_eq!(code(&refused), Some(40101));
    assert!(sim.is_closed(peer));
}

#[test]
fn capabilities_refuse_presence_on_a_forbidden_channel() {
    let mut sim = Sim::new(secured());
    let capability =
        json!({"public:*": ["subscribe"], "team:*": ["presence", "subscribe"]}).to_string();
    let t = token(
        &sim,
        json!({"x-ably-clientId": "carol", "x-ably-capability": capability}),
    );
    let (carol, _) = sim.connect(&format!("access_token={t}"));
    // Not in the capability at all: the attach is refused.
    assert_eq!(
        attach(&mut sim, carol, "secret"),
        (Action::Error, Some(40160))
    );
    // Subscribe only: attached, but entering is refused.
    sim.send(carol, json!({"action": 10, "channel": "public:lobby"}));
    assert_eq!(sim.take(carol)[0].action, Action::Attached);
    let replies = sim.presence(carol, "public:lobby", 0, json!([{"action": 2}]));
    assert_eq!(
        (replies[0].action, code(&replies[0])),
        (Action::Nack, Some(40160))
    );
    // Presence allowed.
    sim.send(carol, json!({"action": 10, "channel": "team:a"}));
    sim.take(carol);
    let replies = sim.presence(carol, "team:a", 1, json!([{"action": 2}]));
    assert_eq!(replies.last().unwrap().action, Action::Ack);
    assert!(sim.members("public:lobby").is_empty());
}

#[test]
fn a_token_grants_no_more_than_the_key_that_signed_it() {
    let config = HubConfig {
        keys: vec![ApiKey {
            capability: rollcall::hub::Capability::parse(
                &json!({"team:*": ["presence", "subscribe"]}),
            )
            .unwrap(),
            ..ApiKey::parse(KEY).unwrap()
        }],
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    // The token asks for everything; the key allows presence on team:* only.
    let t = token(
        &sim,
        json!({"x-ably-clientId": "dave", "x-ably-capability": {"*": ["*"]}}),
    );
    let (dave, _) = sim.connect(&format!("access_token={t}"));
    assert_eq!(
        attach(&mut sim, dave, "secret"),
        (Action::Error, Some(40160))
    );
    sim.send(dave, json!({"action": 10, "channel": "team:a"}));
    assert_eq!(sim.take(dave)[0].action, Action::Attached);
    let replies = sim.presence(dave, "team:a", 0, json!([{"action": 2}]));
    assert_eq!(replies.last().unwrap().action, Action::Ack);
}

#[test]
fn a_renewed_token_keeps_the_member_present_with_no_leave_or_enter() {
    let mut sim = Sim::new(secured());
    let (watcher, _) = sim.join(&format!("key={KEY}&clientId=w"), ROOM);
    let now = seconds(&sim);
    let short = token(&sim, json!({"x-ably-clientId": "alice", "exp": now + 30}));
    let (alice, _) = sim.join(&format!("access_token={short}"), ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "here"}]));
    sim.events(watcher);
    // A third of the token's life before it expires, the hub asks for a renewal.
    sim.advance(19_000);
    assert!(sim.take(alice).iter().all(|m| m.action != Action::Auth));
    sim.advance(1_000);
    assert!(sim.take(alice).iter().any(|m| m.action == Action::Auth));
    let renewed = token(
        &sim,
        json!({"x-ably-clientId": "alice", "exp": seconds(&sim) + 3600}),
    );
    sim.send(
        alice,
        json!({"action": 17, "auth": {"accessToken": renewed}}),
    );
    let replies = sim.take(alice);
    assert_eq!(replies[0].action, Action::Connected);
    sim.advance(60_000);
    assert!(!sim.is_closed(alice));
    assert!(
        sim.events(watcher).is_empty(),
        "no leave and no enter across the renewal"
    );
    assert_eq!(
        sim.members(ROOM)
            .iter()
            .filter(|(c, _)| c == "alice")
            .count(),
        1
    );
}

#[test]
fn an_expired_token_disconnects_and_a_resume_with_a_new_one_keeps_the_member() {
    let mut sim = Sim::new(secured());
    let (watcher, _) = sim.join(&format!("key={KEY}&clientId=w"), ROOM);
    let now = seconds(&sim);
    let short = token(&sim, json!({"x-ably-clientId": "alice", "exp": now + 10}));
    let (alice, connected) = sim.connect(&format!("access_token={short}&remainPresentFor=5000"));
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.events(watcher);
    sim.advance(10_000);
    let replies = sim.take(alice);
    let disconnected = replies
        .iter()
        .find(|m| m.action == Action::Disconnected)
        .unwrap();
    assert_eq!(code(disconnected), Some(40142));
    assert!(sim.is_closed(alice));
    let key = connected
        .connection_details
        .unwrap()
        .connection_key
        .unwrap();
    let renewed = token(&sim, json!({"x-ably-clientId": "alice"}));
    let (_, resumed) = sim.connect(&format!("access_token={renewed}&resume={key}"));
    assert_eq!(resumed.connection_id, connected.connection_id);
    sim.advance(30_000);
    assert!(sim.events(watcher).is_empty());
}

#[test]
fn a_renewal_naming_someone_else_ends_the_connection() {
    let mut sim = Sim::new(secured());
    let (watcher, _) = sim.join(&format!("key={KEY}&clientId=w"), ROOM);
    let t = token(&sim, json!({"x-ably-clientId": "alice"}));
    let (alice, _) = sim.join(&format!("access_token={t}"), ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.events(watcher);
    let mallory = token(&sim, json!({"x-ably-clientId": "mallory"}));
    sim.send(
        alice,
        json!({"action": 17, "auth": {"accessToken": mallory}}),
    );
    let replies = sim.take(alice);
    assert_eq!(
        (replies[0].action, code(&replies[0])),
        (Action::Error, Some(40102))
    );
    assert!(sim.is_closed(alice));
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Leave, "alice".to_owned())]
    );
}

#[test]
fn a_leave_before_an_enter_does_not_make_room_past_the_member_limit() {
    let config = HubConfig {
        max_members_per_channel: 2,
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    let (a, _) = sim.join("clientId=a", ROOM);
    let (b, _) = sim.join("clientId=b", ROOM);
    sim.presence(a, ROOM, 0, json!([{"action": 2}]));
    sim.presence(b, ROOM, 0, json!([{"action": 2}]));
    // A wildcard connection leaving members it never entered, then entering them.
    let (any, _) = sim.join("key=app.k:s", ROOM);
    let replies = sim.presence(
        any,
        ROOM,
        0,
        json!([{"action": 3, "clientId": "x1"}, {"action": 2, "clientId": "x1"},
               {"action": 3, "clientId": "x2"}, {"action": 2, "clientId": "x2"}]),
    );
    assert_eq!(code(replies.last().unwrap()), Some(91003), "{replies:?}");
    assert_eq!(sim.members(ROOM).len(), 2);
    // Within the limit, a clientId entered, left and entered again in one message counts once.
    let (c, _) = sim.join("clientId=c", "other");
    let replies = sim.presence(
        c,
        "other",
        0,
        json!([{"action": 2}, {"action": 3}, {"action": 2, "data": "again"}]),
    );
    assert_eq!(replies.last().unwrap().action, Action::Ack, "{replies:?}");
}

#[test]
fn a_member_can_leave_after_a_re_attach_without_the_presence_mode() {
    let mut sim = Sim::new(HubConfig::default());
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (alice, _) = sim.join("clientId=alice", ROOM);
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.events(watcher);
    // As ably-js's setOptions({ modes: ['PRESENCE_SUBSCRIBE'] }) does.
    sim.send(
        alice,
        json!({"action": 10, "channel": ROOM, "flags": flags::PRESENCE_SUBSCRIBE}),
    );
    sim.take(alice);
    let refused = sim.presence(alice, ROOM, 1, json!([{"action": 4, "data": "x"}]));
    assert_eq!(code(refused.last().unwrap()), Some(40160), "{refused:?}");
    let replies = sim.presence(alice, ROOM, 2, json!([{"action": 3}]));
    assert_eq!(replies.last().unwrap().action, Action::Ack, "{replies:?}");
    assert_eq!(
        summary(&sim.events(watcher)),
        vec![(PresenceAction::Leave, "alice".to_owned())]
    );
    assert!(sim.members(ROOM).is_empty());
}

#[test]
fn a_clientid_a_message_enters_more_than_once_counts_once_toward_the_member_limit() {
    let mut sim = Sim::new(HubConfig {
        max_members_per_channel: 3,
        ..HubConfig::default()
    });
    let (server, _) = sim.join("", ROOM);
    let enter = |serial: i64, items: &[(&str, u8)]| {
        let items: Vec<_> = items
            .iter()
            .map(|(id, action)| json!({"action": action, "clientId": id, "data": "x"}))
            .collect();
        json!({"action": 14, "channel": ROOM, "msgSerial": serial, "presence": items})
    };
    let outcome = |sim: &mut Sim| {
        let replies = sim.take(server);
        let last = replies.last().unwrap();
        (last.action, code(last))
    };
    sim.send(server, enter(0, &[("a", 2)]));
    assert_eq!(outcome(&mut sim), (Action::Ack, None));
    // x entered, updated and entered again: one member more.
    sim.send(server, enter(1, &[("x", 2), ("x", 4), ("x", 2)]));
    assert_eq!(outcome(&mut sim), (Action::Ack, None));
    // y and z: two more, past the limit of three; the whole message is refused.
    sim.send(server, enter(2, &[("y", 2), ("y", 4), ("z", 2)]));
    assert_eq!(outcome(&mut sim), (Action::Nack, Some(91003)));
    // y updated and entered: one member more, which fits.
    sim.send(server, enter(3, &[("y", 4), ("y", 2)]));
    assert_eq!(outcome(&mut sim), (Action::Ack, None));
    assert_eq!(sim.members(ROOM).len(), 3);
}

#[test]
fn limits_refuse_with_their_codes() {
    let config = HubConfig {
        max_connections: 3,
        max_channels_per_connection: 2,
        max_members_per_channel: 2,
        max_inbound_rate: 10,
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    let (a, _) = sim.join("clientId=a", ROOM);
    let (b, _) = sim.join("clientId=b", ROOM);
    let (c, _) = sim.join("clientId=c", ROOM);
    let (over, refused) = sim.open("clientId=d");
    assert_eq!(
        (refused.action, code(&refused)),
        (Action::Disconnected, Some(40150))
    );
    assert!(sim.is_closed(over));

    sim.presence(a, ROOM, 0, json!([{"action": 2}]));
    sim.presence(b, ROOM, 0, json!([{"action": 2}]));
    let replies = sim.presence(c, ROOM, 0, json!([{"action": 2}]));
    assert_eq!(code(replies.last().unwrap()), Some(91003));

    sim.send(a, json!({"action": 10, "channel": "second"}));
    sim.send(a, json!({"action": 10, "channel": "third"}));
    let replies = sim.take(a);
    assert_eq!(
        (
            replies.last().unwrap().action,
            code(replies.last().unwrap())
        ),
        (Action::Error, Some(90010))
    );

    // A burst beyond twice the rate: refused, then the connection is closed.
    let mut codes = Vec::new();
    for serial in 1..60 {
        for reply in sim.presence(b, ROOM, serial, json!([{"action": 4, "data": "x"}])) {
            if let Some(c) = code(&reply) {
                codes.push(c);
            }
        }
    }
    assert!(codes.contains(&42910), "{codes:?}");
    assert_eq!(codes.last(), Some(&42920));
    assert!(sim.is_closed(b));
    assert!(!sim.is_closed(a), "others carry on");
    // The budget refills with time.
    sim.advance(5_000);
    let replies = sim.presence(c, ROOM, 1, json!([{"action": 3}]));
    assert_eq!(replies.last().unwrap().action, Action::Ack);
}

#[test]
fn a_client_back_from_a_drop_re_attaches_and_re_enters_every_channel_at_once() {
    let config = HubConfig::default();
    let channels = config.max_channels_per_connection;
    let mut sim = Sim::new(config);
    let (peer, _) = sim.connect("clientId=alice");
    // What a reconnecting client sends in one turn: an ATTACH for every channel, then an
    // ENTER on each.
    let attaches = (0..channels).map(|i| json!({"action": 10, "channel": format!("c{i}")}));
    let enters = (0..channels).map(|i| {
        json!({"action": 14, "channel": format!("c{i}"), "msgSerial": i,
            "presence": [{"action": 2}]})
    });
    sim.send_in_one_turn(peer, attaches.chain(enters));
    let replies = sim.take(peer);
    let attached = replies
        .iter()
        .filter(|m| m.action == Action::Attached)
        .count();
    let acked: u64 = replies
        .iter()
        .filter(|m| m.action == Action::Ack)
        .map(|m| m.count.unwrap())
        .sum();
    let refusals: Vec<u32> = replies.iter().filter_map(code).collect();
    assert_eq!(
        (attached, acked as usize),
        (channels, channels),
        "{refusals:?}"
    );
    assert!(refusals.is_empty(), "{refusals:?}");
    assert!(!sim.is_closed(peer));
}

/// What a connection that had `n` members on `ROOM` sends to enter them again, as Ably's client
/// does (RTP17i): one ENTER a frame, in one turn, from `serial` on. The ACKs and refusals.
fn reenter(sim: &mut Sim, peer: common::Peer, n: usize, serial: usize) -> (u64, Vec<u32>) {
    sim.send_in_one_turn(
        peer,
        (0..n).map(|i| {
            json!({"action": 14, "channel": ROOM, "msgSerial": serial + i,
                "presence": [{"action": 2, "clientId": format!("m{i}"), "data": "x"}]})
        }),
    );
    let replies = sim.take(peer);
    let acked = replies
        .iter()
        .filter(|m| m.action == Action::Ack)
        .map(|m| m.count.unwrap())
        .sum();
    (acked, replies.iter().filter_map(code).collect())
}

/// A server's connection enters `n` members on `ROOM` in one frame; its network then goes past
/// their grace window (2 s), and they leave. Its connection key.
fn hold_then_lose(sim: &mut Sim, n: usize) -> String {
    let (peer, connected) = sim.connect("");
    let key = connected
        .connection_details
        .unwrap()
        .connection_key
        .unwrap();
    sim.send(peer, json!({"action": 10, "channel": ROOM}));
    let all: Vec<_> = (0..n)
        .map(|i| json!({"action": 2, "clientId": format!("m{i}"), "data": "x"}))
        .collect();
    sim.send(
        peer,
        json!({"action": 14, "channel": ROOM, "msgSerial": 0, "presence": all}),
    );
    assert!(sim.take(peer).iter().any(|m| m.action == Action::Ack));
    assert_eq!(sim.members(ROOM).len(), n);
    sim.drop_transport(peer);
    sim.advance(3_000);
    assert!(sim.members(ROOM).is_empty());
    key.to_string()
}

/// Its client resumes the connection (which the hub still has) and attaches `ROOM` again.
fn resume_and_attach(sim: &mut Sim, key: &str) -> common::Peer {
    let (back, resumed) = sim.connect(&format!("resume={key}"));
    assert!(resumed.error.is_none(), "{resumed:?}");
    sim.take(back);
    sim.send(back, json!({"action": 10, "channel": ROOM}));
    sim.take(back);
    back
}

#[test]
fn a_client_enters_all_its_members_again_after_their_grace_ran_out_or_its_resume_failed() {
    // A server's connection that holds 600 members (entered in one frame), as Ably's client
    // enters them again: one a frame. Each over the frame budget (100 a second, bursts of 400)
    // was refused, and past 800 refusals the connection closed.
    let config = HubConfig {
        remain_present_for: 2_000,
        ..HubConfig::default()
    };
    let n = 600;
    let mut sim = Sim::new(config.clone());
    let key = hold_then_lose(&mut sim, n);
    let back = resume_and_attach(&mut sim, &key);
    let (acked, refusals) = reenter(&mut sim, back, n, 1);
    assert_eq!((acked, refusals), (n as u64, vec![]));
    assert_eq!(sim.members(ROOM).len(), n);

    // On the edge, the object evicted between the members leaving and the resume: the count of
    // those to enter again is stored with the connection.
    let stored = HubConfig {
        persistence: true,
        ..config.clone()
    };
    let mut sim = Sim::new(stored.clone());
    let key = hold_then_lose(&mut sim, n);
    sim.evict(stored);
    let back = resume_and_attach(&mut sim, &key);
    let (acked, refusals) = reenter(&mut sim, back, n, 1);
    assert_eq!((acked, refusals), (n as u64, vec![]));

    // A hub started afresh (a restart): its resume fails, and it enters them all again.
    let mut sim = Sim::new(config);
    let (fresh, connected) = sim.connect(&format!("resume={key}"));
    assert_eq!(code(&connected), Some(80008));
    sim.send(fresh, json!({"action": 10, "channel": ROOM}));
    sim.take(fresh);
    let (acked, refusals) = reenter(&mut sim, fresh, n, 0);
    assert_eq!((acked, refusals), (n as u64, vec![]));
    // A connection that resumed nothing has the frame budget only.
    let (other, _) = sim.join("", "elsewhere");
    sim.send_in_one_turn(
        other,
        (0..n).map(|i| {
            json!({"action": 14, "channel": "elsewhere", "msgSerial": i,
                "presence": [{"action": 2, "clientId": format!("m{i}")}]})
        }),
    );
    let refused = sim
        .take(other)
        .iter()
        .filter(|m| code(m) == Some(42910))
        .count();
    assert!(refused > 0);
}

#[test]
fn a_failed_resume_buys_no_free_frames() {
    // A bogus resume key: the new connection may enter members again one in a frame, charged
    // as fifty in a frame. Its re-entries of a member it holds, as it is, are not free, as
    // they are after a real resume: it held nothing to enter again.
    let mut sim = ten_a_second();
    let (peer, connected) = sim.connect("clientId=a&resume=made-up");
    assert_eq!(code(&connected), Some(80008));
    let id = connected.connection_id.unwrap();
    sim.send(peer, json!({"action": 10, "channel": ROOM}));
    sim.take(peer);
    sim.send(
        peer,
        json!({"action": 14, "channel": ROOM, "msgSerial": 0, "presence": [{"action": 2, "data": "x"}]}),
    );
    assert!(sim.take(peer).iter().any(|m| m.action == Action::Ack));
    sim.send_in_one_turn(
        peer,
        (1..=100).map(|serial| {
            json!({"action": 14, "channel": ROOM, "msgSerial": serial,
                "presence": [{"action": 2, "data": "x", "id": format!("{id}:0:0")}]})
        }),
    );
    let refused = sim
        .take(peer)
        .iter()
        .filter(|m| code(m) == Some(42910))
        .count();
    // Over its budget: refused, until the flood closes it.
    assert!(refused >= 20, "{refused} refused");
}

/// A hub that lets a connection send ten presence messages a second (bursts of 25).
/// Its control frames: 200 a second, and 605 at once (a burst of 405, and a second's credit).
fn ten_a_second() -> Sim {
    Sim::new(HubConfig {
        max_inbound_rate: 10,
        max_channels_per_connection: 5,
        ..HubConfig::default()
    })
}

#[test]
fn over_its_budget_a_client_still_gets_its_attached_and_its_heartbeat_until_it_floods() {
    let mut sim = ten_a_second();
    let (peer, _) = sim.join("clientId=a", ROOM);
    // The presence budget spent...
    sim.send_in_one_turn(
        peer,
        (0..25).map(|serial| {
            json!({"action": 14, "channel": ROOM, "msgSerial": serial, "presence": [{"action": 4}]})
        }),
    );
    let replies = sim.presence(peer, ROOM, 25, json!([{"action": 4}]));
    assert_eq!(code(replies.last().unwrap()), Some(42910));
    // ...an ATTACH and a ping are answered all the same.
    let (action, error) = attach(&mut sim, peer, "other");
    assert_eq!((action, error), (Action::Attached, None));
    sim.send(peer, json!({"action": 0, "id": "ping-1"}));
    let echo = sim.take(peer);
    assert_eq!(echo.len(), 1);
    assert_eq!(
        (echo[0].action, echo[0].id.as_deref()),
        (Action::Heartbeat, Some("ping-1"))
    );
    // A flood of them, though, ends the connection: answered up to its burst and a second's
    // credit, then held up to a second's worth, then closed.
    sim.send_in_one_turn(
        peer,
        (0..1_000).map(|i| json!({"action": 0, "id": format!("p{i}")})),
    );
    let replies = sim.take(peer);
    let echoes = replies
        .iter()
        .filter(|m| m.action == Action::Heartbeat)
        .count();
    // 605 at once, less the two ATTACHes and the first ping.
    assert_eq!(echoes, CONTROL_AT_ONCE - 3);
    assert_eq!(code(replies.last().unwrap()), Some(42920));
    assert!(sim.is_closed(peer));
}

#[test]
fn a_flood_in_one_turn_gets_its_refusals_before_the_closing_error() {
    let mut sim = ten_a_second();
    let (flooder, _) = sim.join("clientId=f", ROOM);
    // Everything arrives before the host drains, as in one turn of its event loop.
    sim.send_in_one_turn(
        flooder,
        (0..60).map(|serial| {
            json!({"action": 14, "channel": ROOM, "msgSerial": serial, "presence": [{"action": 4}]})
        }),
    );
    let replies = sim.take(flooder);
    let codes: Vec<u32> = replies.iter().filter_map(code).collect();
    assert!(codes.contains(&42910), "{codes:?}");
    assert_eq!(codes.last(), Some(&42920));
    let acks: u64 = replies
        .iter()
        .filter(|m| m.action == Action::Ack)
        .map(|m| m.count.unwrap())
        .sum();
    assert_eq!(
        acks, 25,
        "the burst (twice the rate, one more per channel; the ATTACH had its own) was acknowledged"
    );
    assert!(sim.is_closed(flooder));
}

/// The control frames a connection of [`ten_a_second`] may send at once: a burst of 405 (two
/// seconds' worth at 200 a second, and one for each of its five channels) and a second's credit.
const CONTROL_AT_ONCE: usize = 605;

/// Spends what `peer` may send in control frames now (the burst and a second's credit) on
/// pings, less `spent` frames it sent already.
fn spend_control_budget(sim: &mut Sim, peer: common::Peer, spent: usize) {
    sim.send_in_one_turn(
        peer,
        (spent..CONTROL_AT_ONCE).map(|i| json!({"action": 0, "id": format!("spend-{i}")})),
    );
    assert_eq!(sim.take(peer).len(), CONTROL_AT_ONCE - spent);
}

/// Connects `clientId=a`; the peer and the key that resumes its connection.
fn connect_with_key(sim: &mut Sim) -> (common::Peer, String) {
    let (peer, connected) = sim.connect("clientId=a");
    let key = connected
        .connection_details
        .unwrap()
        .connection_key
        .unwrap();
    (peer, key.to_string())
}

/// The replies to `peer` once some come, waiting up to a minute of the hub's time.
fn await_replies(sim: &mut Sim, peer: common::Peer) -> Vec<rollcall::protocol::ProtocolMessage> {
    for _ in 0..6_000 {
        let replies = sim.take(peer);
        if !replies.is_empty() || sim.is_closed(peer) {
            return replies;
        }
        sim.advance(10);
    }
    panic!("no answer within a minute");
}

#[test]
fn a_client_that_awaits_each_answer_is_slowed_to_the_rate_not_closed() {
    // As an agent sweeps rooms with Ably's client, which does not pace what it sends: each
    // ATTACH and DETACH awaited, sent as soon as the answer comes, far past the budget. It was
    // answered up to its burst and a second's credit, and then closed for good (42920).
    let mut sim = ten_a_second();
    let (agent, _) = sim.join("clientId=a", ROOM);
    let start = sim.now;
    for i in 0..500 {
        let room = format!("room-{i}");
        for (action, answer) in [(10, Action::Attached), (12, Action::Detached)] {
            sim.send(agent, json!({"action": action, "channel": room}));
            let replies = await_replies(&mut sim, agent);
            assert_eq!(
                replies.iter().map(|m| m.action).collect::<Vec<_>>(),
                [answer],
                "room {i}: {replies:?}"
            );
        }
    }
    assert!(!sim.is_closed(agent));
    // 1 000 frames: 604 at once, the rest at 200 a second.
    let took = sim.now - start;
    assert!((1_980..2_100).contains(&took), "{took} ms");
}

#[test]
fn frames_behind_a_held_one_keep_their_order() {
    let mut sim = ten_a_second();
    let (peer, _) = sim.join("clientId=a", ROOM);
    spend_control_budget(&mut sim, peer, 1);
    // An ATTACH over the budget waits; the ENTER on its channel and the ping after it, within
    // their own budgets, wait behind it, rather than being refused as on a channel not
    // attached, or answered first.
    sim.send_in_one_turn(
        peer,
        [
            json!({"action": 10, "channel": "other"}),
            json!({"action": 14, "channel": "other", "msgSerial": 0,
                "presence": [{"action": 2, "data": "x"}]}),
            json!({"action": 0, "id": "after"}),
        ],
    );
    assert!(sim.take(peer).is_empty());
    let mut replies = Vec::new();
    while replies.len() < 4 {
        replies.extend(await_replies(&mut sim, peer));
    }
    let seen: Vec<_> = replies
        .iter()
        .map(|m| (m.action, m.id.as_deref(), code(m)))
        .collect();
    assert_eq!(
        seen,
        [
            (Action::Attached, None, None),
            (Action::Presence, None, None),
            (Action::Ack, None, None),
            (Action::Heartbeat, Some("after"), None),
        ]
    );
    assert_eq!(sim.members("other").len(), 1);
}

#[test]
fn frames_held_when_the_link_drops_are_not_read_and_the_client_sends_them_again() {
    let mut sim = ten_a_second();
    let (peer, key) = connect_with_key(&mut sim);
    spend_control_budget(&mut sim, peer, 0);
    sim.send_in_one_turn(
        peer,
        [
            json!({"action": 10, "channel": ROOM}),
            json!({"action": 14, "channel": ROOM, "msgSerial": 0,
                "presence": [{"action": 2, "data": "x"}]}),
        ],
    );
    sim.drop_transport(peer);
    sim.advance(5_000);
    // Neither was read: a client sends again, on its next transport, what was not answered.
    assert!(sim.members(ROOM).is_empty());
    let (back, resumed) = sim.connect(&format!("clientId=a&resume={key}"));
    assert!(resumed.error.is_none(), "{resumed:?}");
    sim.take(back);
    sim.send_in_one_turn(
        back,
        [
            json!({"action": 10, "channel": ROOM}),
            json!({"action": 14, "channel": ROOM, "msgSerial": 0,
                "presence": [{"action": 2, "data": "x"}]}),
        ],
    );
    let replies = sim.take(back);
    assert!(
        replies.iter().any(|m| m.action == Action::Ack),
        "{replies:?}"
    );
    assert_eq!(sim.members(ROOM).len(), 1);
}

#[test]
fn a_resume_over_a_transport_the_hub_still_holds_leaves_its_held_frames_behind() {
    // The client's link died with frames held, and the hub has not noticed: it resumes on a new
    // socket. What it sent on the old one is its to send again, not the hub's to answer on the
    // new one (nor to count against it).
    let mut sim = ten_a_second();
    let (old, key) = connect_with_key(&mut sim);
    spend_control_budget(&mut sim, old, 0);
    sim.send_in_one_turn(
        old,
        (0..9)
            .map(|i| json!({"action": 0, "id": format!("old-{i}")}))
            .chain([json!({"action": 10, "channel": ROOM})]),
    );
    assert!(sim.take(old).is_empty(), "held");
    let (new, resumed) = sim.connect(&format!("clientId=a&resume={key}"));
    assert!(resumed.error.is_none(), "{resumed:?}");
    sim.take(new);
    sim.advance(3_000);
    assert_eq!(
        sim.take(new),
        [],
        "the old transport's frames answered on the new one"
    );
    // Its own frames, sent again, are answered, and it is not closed for the old ones.
    sim.send_in_one_turn(
        new,
        [
            json!({"action": 10, "channel": ROOM}),
            json!({"action": 10, "channel": "two"}),
        ],
    );
    let answers: Vec<_> = await_replies(&mut sim, new)
        .iter()
        .map(|m| m.action)
        .collect();
    assert!(!sim.is_closed(new));
    assert_eq!(answers[0], Action::Attached, "{answers:?}");
}

#[test]
fn a_close_behind_held_frames_closes_at_once_and_the_members_leave() {
    let mut sim = ten_a_second();
    let (watcher, _) = sim.join("clientId=w", ROOM);
    let (agent, _) = sim.join("clientId=agent", ROOM);
    let entered = sim.presence(agent, ROOM, 0, json!([{"action": 2}]));
    assert_eq!(entered.last().unwrap().action, Action::Ack);
    sim.take(watcher);
    spend_control_budget(&mut sim, agent, 1);
    // A page that unloads: CLOSE behind a held frame, and the socket gone at once.
    sim.send_in_one_turn(
        agent,
        [
            json!({"action": 10, "channel": "other"}),
            json!({"action": 7}),
        ],
    );
    let replies = sim.take(agent);
    assert_eq!(
        replies.iter().map(|m| m.action).collect::<Vec<_>>(),
        [Action::Closed]
    );
    sim.drop_transport(agent);
    assert_eq!(sim.members(ROOM).len(), 0, "the agent left with its CLOSE");
}

#[test]
fn with_no_inbound_rate_a_frame_past_the_burst_closes_the_connection_rather_than_waiting_for_ever()
{
    let mut sim = Sim::new(HubConfig {
        max_inbound_rate: 0,
        max_channels_per_connection: 2,
        ..HubConfig::default()
    });
    let (peer, _) = sim.connect("clientId=a");
    // The burst: one frame for each channel it may attach.
    sim.send_in_one_turn(
        peer,
        (0..3).map(|i| json!({"action": 0, "id": format!("p{i}")})),
    );
    let replies = sim.take(peer);
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert_eq!(code(&replies[2]), Some(42920));
    assert!(sim.is_closed(peer));
}

#[test]
fn connections_that_fill_the_hubs_held_frames_are_closed_not_a_client_that_awaits_its_answers() {
    // The hub holds at most 16 MiB of frames for all its connections. These fill it, each with a
    // frame of up to a quarter of a MiB sent past its budget, but for a few bytes.
    let mut sim = ten_a_second();
    let frame = |pad: usize| {
        json!({"action": 10, "channel": "r", "params": {"pad": "x".repeat(pad)}}).to_string()
    };
    let overhead = frame(0).len();
    let mut room = 16 * 1024 * 1024 - 10;
    let mut hogs = Vec::new();
    while room > overhead {
        let (hog, _) = sim.connect(&format!("clientId=hog{}", hogs.len()));
        spend_control_budget(&mut sim, hog, 0);
        let text = frame((room - overhead).min(250_000));
        room -= text.len();
        sim.send_text(hog, &text);
        hogs.push(hog);
    }
    assert!(hogs.iter().all(|&hog| !sim.is_closed(hog)));
    // A client that awaits each answer, past its own budget: held, and answered, while the
    // hub's room for held frames goes to it rather than to those.
    let (agent, _) = sim.join("clientId=agent", ROOM);
    spend_control_budget(&mut sim, agent, 1);
    sim.send(agent, json!({"action": 10, "channel": "other"}));
    let replies = await_replies(&mut sim, agent);
    assert_eq!(replies[0].action, Action::Attached, "{replies:?}");
    assert!(!sim.is_closed(agent));
    let closed = hogs.iter().filter(|&&hog| sim.is_closed(hog)).count();
    assert!(closed >= 1, "no connection that held the most was closed");
}

#[test]
fn frames_that_do_not_decode_count_toward_the_rate_too() {
    let mut sim = ten_a_second();
    let (flooder, _) = sim.join("clientId=f", ROOM);
    // Presence that does not decode is refused on its own, but not at any rate.
    sim.send_in_one_turn(
        flooder,
        (0..60).map(
            |serial| json!({"action": 14, "channel": ROOM, "msgSerial": serial, "presence": "x"}),
        ),
    );
    let codes: Vec<u32> = sim.take(flooder).iter().filter_map(code).collect();
    assert!(codes.contains(&40000), "{codes:?}");
    assert!(codes.contains(&42910), "{codes:?}");
    assert_eq!(codes.last(), Some(&42920));
    assert!(sim.is_closed(flooder));
    // Frames of an unknown action are ignored, but they cost what any control frame does.
    let (junk, _) = sim.join("clientId=j", ROOM);
    sim.send_in_one_turn(
        junk,
        (0..1_000).map(|_| json!({"action": 77, "channel": 5, "presence": "x"})),
    );
    let codes: Vec<u32> = sim.take(junk).iter().filter_map(code).collect();
    assert_eq!(codes, [42920]);
    assert!(sim.is_closed(junk));
}

/// Resumes the connection `connected` began, with another token (and a long grace).
fn resume_with(
    sim: &mut Sim,
    connected: &rollcall::protocol::ProtocolMessage,
    token: &str,
) -> (common::Peer, rollcall::protocol::ProtocolMessage) {
    let key = connected
        .connection_details
        .as_ref()
        .and_then(|d| d.connection_key.clone())
        .unwrap();
    sim.connect(&format!(
        "access_token={token}&remainPresentFor=60000&resume={key}"
    ))
}

/// The reason a hub-made leave gives, from its extras.
fn leave_reason(m: &rollcall::protocol::PresenceMessage) -> Option<String> {
    let extras: serde_json::Value = serde_json::from_str(&m.extras.as_ref()?.0).ok()?;
    extras["reason"].as_str().map(str::to_owned)
}

#[test]
fn a_resume_with_narrower_credentials_keeps_only_what_they_allow() {
    let mut sim = Sim::new(secured());
    let (watcher, _) = sim.join(&format!("key={KEY}&clientId=w"), "secret");
    let wide = token(
        &sim,
        json!({"x-ably-clientId": "alice", "x-ably-capability": {"*": ["*"]}}),
    );
    let (alice, connected) = sim.connect(&format!("access_token={wide}&remainPresentFor=5000"));
    sim.send(alice, json!({"action": 10, "channel": "secret"}));
    sim.presence(alice, "secret", 0, json!([{"action": 2}]));
    sim.events(watcher);
    sim.drop_transport(alice);
    let key = connected
        .connection_details
        .unwrap()
        .connection_key
        .unwrap();
    let narrow = token(
        &sim,
        json!({"x-ably-clientId": "alice", "x-ably-capability": {"public": ["subscribe"]}}),
    );
    let (alice, resumed) = sim.connect(&format!("access_token={narrow}&resume={key}"));
    assert_eq!(resumed.connection_id, connected.connection_id, "resumed");
    let replies = sim.take(alice);
    let detached = replies
        .iter()
        .find(|m| m.action == Action::Detached && m.channel.as_deref() == Some("secret"))
        .expect("secret detached");
    assert_eq!(code(detached), Some(40160));
    let leaves = sim.events(watcher);
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0].action, PresenceAction::Leave);
    assert_eq!(leave_reason(&leaves[0]).as_deref(), Some("revoked"));
    assert!(sim.members("secret").iter().all(|(c, _)| c != "alice"));
    // What it sends on the channel now is refused like any unattached channel's.
    let replies = sim.presence(alice, "secret", 1, json!([{"action": 4}]));
    assert_eq!(replies.last().unwrap().action, Action::Nack);
}

#[test]
fn a_resume_with_narrower_credentials_is_told_nothing_that_happened_where_they_do_not_reach() {
    let mut sim = Sim::new(secured());
    let wide = token(
        &sim,
        json!({"x-ably-clientId": "w", "x-ably-capability": {"*": ["*"]}}),
    );
    let (watcher, connected) = sim.connect(&format!("access_token={wide}&remainPresentFor=60000"));
    attach(&mut sim, watcher, "secret");
    attach(&mut sim, watcher, "public");
    sim.take(watcher);
    sim.drop_transport(watcher);
    // While it is away, a member enters each channel: both wait in its replay.
    let (bob, _) = sim.connect(&format!("key={KEY}&clientId=bob"));
    for (serial, channel) in ["secret", "public"].into_iter().enumerate() {
        attach(&mut sim, bob, channel);
        sim.presence(
            bob,
            channel,
            serial as i64,
            json!([{"action": 2, "data": "here"}]),
        );
    }
    let narrow = token(
        &sim,
        json!({"x-ably-clientId": "w", "x-ably-capability": {"public": ["subscribe", "presence"]}}),
    );
    let (again, resumed) = resume_with(&mut sim, &connected, &narrow);
    assert_eq!(resumed.connection_id, connected.connection_id, "resumed");
    let replies = sim.take(again);
    assert!(
        !replies
            .iter()
            .any(|m| m.channel.as_deref() == Some("secret")
                && matches!(m.action, Action::Presence | Action::Sync)),
        "nothing of a channel its credentials no longer reach: {replies:?}"
    );
    assert!(replies
        .iter()
        .any(|m| m.action == Action::Detached && m.channel.as_deref() == Some("secret")));
    // The channel it may still hear is whole: bob is in what it is told of it.
    assert!(
        replies
            .iter()
            .any(|m| m.channel.as_deref() == Some("public")
                && m.presence
                    .iter()
                    .flatten()
                    .any(|p| p.client_id.as_deref() == Some("bob"))),
        "bob on the channel it still reaches: {replies:?}"
    );
}

#[test]
fn a_renewal_that_narrows_the_modes_stops_what_they_no_longer_allow() {
    let mut sim = Sim::new(secured());
    let both = json!({"room": ["presence", "subscribe"], "room2": ["presence", "subscribe"]});
    let t = token(
        &sim,
        json!({"x-ably-clientId": "alice", "x-ably-capability": both}),
    );
    let (alice, _) = sim.join(&format!("access_token={t}"), "room");
    sim.send(alice, json!({"action": 10, "channel": "room2"}));
    sim.presence(alice, "room2", 0, json!([{"action": 2}]));
    sim.presence(alice, "room", 1, json!([{"action": 2}]));
    let (watcher, _) = sim.join(&format!("key={KEY}&clientId=w"), "room2");
    sim.take(alice);
    sim.events(watcher);
    // room: presence only (no more hearing); room2: subscribe only (no more being present).
    let narrower = json!({"room": ["presence"], "room2": ["subscribe"]});
    let renewed = token(
        &sim,
        json!({"x-ably-clientId": "alice", "x-ably-capability": narrower}),
    );
    sim.send(
        alice,
        json!({"action": 17, "auth": {"accessToken": renewed}}),
    );
    let replies = sim.take(alice);
    assert!(replies.iter().all(|m| m.action != Action::Detached));
    // Told that room no longer lets it hear: an ATTACHED that is not a resume, with the reason.
    let notice = replies
        .iter()
        .find(|m| m.action == Action::Attached && m.channel.as_deref() == Some("room"))
        .expect("an ATTACHED for room");
    assert_eq!(code(notice), Some(40160));
    assert_eq!(notice.flags.unwrap_or(0) & flags::RESUMED, 0);
    assert_eq!(notice.flags.unwrap_or(0) & flags::PRESENCE_SUBSCRIBE, 0);
    // Her own member in room follows (RTP17a): without it her client would see herself leave.
    assert_ne!(notice.flags.unwrap_or(0) & flags::HAS_PRESENCE, 0);
    let own: Vec<_> = replies
        .iter()
        .filter(|m| m.action == Action::Sync && m.channel.as_deref() == Some("room"))
        .flat_map(|m| m.presence.iter().flatten())
        .filter_map(|m| m.client_id.as_deref())
        .collect();
    assert_eq!(own, ["alice"]);
    let leaves = sim.events(watcher);
    assert_eq!(leaves.len(), 1, "alice left room2");
    assert_eq!(leave_reason(&leaves[0]).as_deref(), Some("revoked"));
    let (bob, _) = sim.join(&format!("key={KEY}&clientId=bob"), "room");
    sim.presence(bob, "room", 0, json!([{"action": 2}]));
    assert!(sim.events(alice).is_empty(), "alice no longer hears room");
    // She still hears room2.
    sim.presence(bob, "room2", 1, json!([{"action": 2}]));
    sim.send(bob, json!({"action": 10, "channel": "room2"}));
    sim.presence(bob, "room2", 2, json!([{"action": 2}]));
    assert!(sim
        .events(alice)
        .iter()
        .any(|m| m.client_id.as_deref() == Some("bob")));
}

#[test]
fn the_public_connection_id_shares_no_bytes_with_the_secret_key() {
    let mut sim = Sim::new(HubConfig::default());
    let decode = |text: &str| -> Vec<u8> {
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in text.bytes() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'-' => 62,
                _ => 63,
            };
            bits = (bits << 6) | u32::from(v);
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
            }
        }
        out
    };
    // Entropy whose 24 bytes all differ: any byte in both would show a shared source.
    let entropy: [u8; 24] = core::array::from_fn(|i| 0x40 + i as u8);
    sim.hub.handle_open(
        sim.now,
        rollcall::hub::TransportId(900),
        "clientId=a",
        entropy,
    );
    let connected = sim.hub.poll_transmit().expect("CONNECTED");
    let text = String::from_utf8(connected.frame.bytes.to_vec()).unwrap();
    let message: serde_json::Value = serde_json::from_str(&text).unwrap();
    let id = decode(message["connectionId"].as_str().unwrap());
    let key = decode(
        message["connectionDetails"]["connectionKey"]
            .as_str()
            .unwrap(),
    );
    assert!(key.len() >= 15, "at least 120 secret bits");
    assert!(
        id.iter().all(|b| !key.contains(b)),
        "id {id:?} and key {key:?} share a byte"
    );
}

#[test]
fn a_token_holder_gets_its_clientids_places_not_the_hubs() {
    let config = HubConfig {
        max_connections_per_client: 2,
        ..secured()
    };
    let mut sim = Sim::new(config);
    let t = token(&sim, json!({"x-ably-clientId": "alice"}));
    let (first, _) = sim.connect(&format!("access_token={t}"));
    sim.connect(&format!("access_token={t}"));
    let (_, refused) = sim.open(&format!("access_token={t}"));
    assert_eq!(
        (refused.action, code(&refused)),
        (Action::Disconnected, Some(40150))
    );
    // Someone else, and a server's key, are not counted against alice.
    let bob = token(&sim, json!({"x-ably-clientId": "bob"}));
    sim.connect(&format!("access_token={bob}"));
    sim.connect(&format!("key={KEY}&clientId=alice"));
    // A place comes back when a connection goes.
    sim.send(first, json!({"action": 7}));
    sim.advance(1);
    sim.connect(&format!("access_token={t}"));
}

#[test]
fn a_capability_to_publish_only_does_not_attach() {
    let mut sim = Sim::new(secured());
    let t = token(
        &sim,
        json!({"x-ably-clientId": "p", "x-ably-capability": {"news": ["publish"], "room": ["subscribe"]}}),
    );
    let (peer, _) = sim.connect(&format!("access_token={t}"));
    assert_eq!(attach(&mut sim, peer, "news"), (Action::Error, Some(40160)));
    assert_eq!(attach(&mut sim, peer, "room").0, Action::Attached);
}

#[test]
fn apps_sharing_a_hub_do_not_share_the_places_of_a_clientid() {
    let config = HubConfig {
        max_connections_per_client: 2,
        keys: ApiKey::parse_list("tena.k:secret-a,tenb.k:secret-b").unwrap(),
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    let now = seconds(&sim);
    let claims = json!({"x-ably-clientId": "bob", "iat": now, "exp": now + 3600});
    let a = jwt("tena.k", "secret-a", &claims);
    let b = jwt("tenb.k", "secret-b", &claims);
    sim.connect(&format!("access_token={a}"));
    sim.connect(&format!("access_token={a}"));
    let (_, refused) = sim.open(&format!("access_token={a}"));
    assert_eq!(
        (refused.action, code(&refused)),
        (Action::Disconnected, Some(40150))
    );
    let message = refused.error.unwrap().message;
    assert!(message.contains("clientId bob "), "{message}");
    // The other app's bob has places of his own.
    let (bob_b, _) = sim.connect(&format!("access_token={b}"));
    sim.connect(&format!("access_token={b}"));
    // A connection cannot move to the other app by renewing its token (its places are counted
    // under the app it connected with); a renewal from its own app is taken.
    let b2 = jwt(
        "tenb.k",
        "secret-b",
        &json!({"x-ably-clientId": "bob", "iat": now, "exp": now + 7200}),
    );
    sim.send(bob_b, json!({"action": 17, "auth": {"accessToken": b2}}));
    assert_eq!(
        sim.take(bob_b).last().map(|m| m.action),
        Some(Action::Connected)
    );
    sim.send(bob_b, json!({"action": 17, "auth": {"accessToken": a}}));
    let replies = sim.take(bob_b);
    assert_eq!(code(replies.last().unwrap()), Some(40102), "{replies:?}");
    assert!(sim.is_closed(bob_b));
    // Nor by resuming with it: the other app's token gets a connection of its own.
    let carol = |app: &str, secret: &str| {
        jwt(
            app,
            secret,
            &json!({"x-ably-clientId": "carol", "iat": now, "exp": now + 3600}),
        )
    };
    let (first, connected) = sim.connect(&format!("access_token={}", carol("tena.k", "secret-a")));
    let key = connected
        .connection_details
        .unwrap()
        .connection_key
        .unwrap();
    sim.drop_transport(first);
    let (_, resumed) = sim.connect(&format!(
        "access_token={}&resume={key}",
        carol("tenb.k", "secret-b")
    ));
    assert_ne!(
        resumed.connection_id, connected.connection_id,
        "{resumed:?}"
    );
    assert!(resumed.error.is_some(), "{resumed:?}");
    // So too with the other app's token for any clientId (`*`), which is counted as itself: it
    // neither renews the connection's token nor resumes it.
    let any_b = jwt(
        "tenb.k",
        "secret-b",
        &json!({"x-ably-clientId": "*", "iat": now, "exp": now + 3600}),
    );
    let (renewed, _) = sim.connect(&format!("access_token={}", carol("tena.k", "secret-a")));
    // Its own app's is taken.
    let any_a = jwt(
        "tena.k",
        "secret-a",
        &json!({"x-ably-clientId": "*", "iat": now, "exp": now + 3600}),
    );
    sim.send(
        renewed,
        json!({"action": 17, "auth": {"accessToken": any_a}}),
    );
    assert_eq!(
        sim.take(renewed).last().map(|m| m.action),
        Some(Action::Connected)
    );
    sim.send(
        renewed,
        json!({"action": 17, "auth": {"accessToken": any_b}}),
    );
    let replies = sim.take(renewed);
    assert_eq!(code(replies.last().unwrap()), Some(40102), "{replies:?}");
    let (first, connected) = sim.connect(&format!("access_token={}", carol("tena.k", "secret-a")));
    let key = connected
        .connection_details
        .clone()
        .unwrap()
        .connection_key
        .unwrap();
    sim.drop_transport(first);
    let (_, resumed) = sim.connect(&format!("access_token={any_b}&clientId=carol&resume={key}"));
    assert_ne!(
        resumed.connection_id, connected.connection_id,
        "{resumed:?}"
    );
    // A clientId with a control character is refused, as it is in a query.
    let odd = jwt(
        "tena.k",
        "secret-a",
        &json!({"x-ably-clientId": "bo\u{1}b", "iat": now, "exp": now + 3600}),
    );
    let (_, refused) = sim.open(&format!("access_token={odd}"));
    assert_eq!(code(&refused), Some(40012), "{refused:?}");
}

#[test]
fn a_token_that_names_no_one_client_holds_its_own_places_whatever_clientids_it_takes() {
    let config = HubConfig {
        max_connections_per_client: 2,
        ..secured()
    };
    let mut sim = Sim::new(config);
    let wildcard = token(&sim, json!({"x-ably-clientId": "*"}));
    sim.connect(&format!("access_token={wildcard}&clientId=u1"));
    sim.connect(&format!("access_token={wildcard}&clientId=u2"));
    let (_, refused) = sim.open(&format!("access_token={wildcard}&clientId=u3"));
    assert_eq!(
        (refused.action, code(&refused)),
        (Action::Disconnected, Some(40150))
    );
    let message = refused.error.unwrap().message;
    assert!(message.contains("this token"), "{message}");
    assert!(!message.contains('\0'), "{message}");
    // An anonymous token is counted as itself too; another token has its own places.
    let anonymous = token(&sim, json!({}));
    sim.connect(&format!("access_token={anonymous}"));
    sim.connect(&format!("access_token={anonymous}"));
    let (_, refused) = sim.open(&format!("access_token={anonymous}"));
    assert_eq!(code(&refused), Some(40150));
    let other = token(
        &sim,
        json!({"x-ably-clientId": "*", "exp": seconds(&sim) + 7200}),
    );
    sim.connect(&format!("access_token={other}&clientId=u3"));
}

#[test]
fn a_connections_place_is_given_back_as_it_was_taken_whatever_it_renews_with() {
    let config = HubConfig {
        max_connections_per_client: 1,
        ..secured()
    };
    // Taken with a token, resumed with a key, closed: the place comes back.
    let mut sim = Sim::new(config.clone());
    let t = token(&sim, json!({"x-ably-clientId": "alice"}));
    let (alice, connected) = sim.connect(&format!("access_token={t}"));
    sim.drop_transport(alice);
    let key = connected
        .connection_details
        .unwrap()
        .connection_key
        .unwrap();
    let (alice, resumed) = sim.connect(&format!("key={KEY}&clientId=alice&resume={key}"));
    assert_eq!(resumed.connection_id, connected.connection_id);
    sim.send(alice, json!({"action": 7}));
    sim.advance(1);
    sim.connect(&format!("access_token={t}"));

    // Not taken by a key connection that renews with a token: closing it gives back nothing.
    let mut sim = Sim::new(config);
    let t = token(&sim, json!({"x-ably-clientId": "alice"}));
    let (server, _) = sim.connect(&format!("key={KEY}&clientId=alice"));
    sim.send(server, json!({"action": 17, "auth": {"accessToken": t}}));
    sim.connect(&format!("access_token={t}"));
    sim.send(server, json!({"action": 7}));
    sim.advance(1);
    let (_, refused) = sim.open(&format!("access_token={t}"));
    assert_eq!(code(&refused), Some(40150));
}

#[test]
fn a_resume_that_lost_events_and_the_channel_with_them_shows_it_no_members() {
    let config = HubConfig {
        replay_limit: 2,
        ..secured()
    };
    let mut sim = Sim::new(config);
    let wide = token(
        &sim,
        json!({"x-ably-clientId": "w", "x-ably-capability": "{\"*\":[\"presence\",\"subscribe\"]}"}),
    );
    let (watcher, connected) = sim.connect(&format!("access_token={wide}&remainPresentFor=60000"));
    attach(&mut sim, watcher, ROOM);
    let (alice, _) = sim.connect(&format!("key={KEY}&clientId=alice"));
    attach(&mut sim, alice, ROOM);
    sim.drop_transport(watcher);
    for serial in 0..5 {
        sim.presence(
            alice,
            ROOM,
            serial,
            json!([{"action": 2, "data": serial.to_string()}]),
        );
    }
    // Back with a token that no longer names the channel, after more than could be kept.
    let narrow = token(
        &sim,
        json!({"x-ably-clientId": "w", "x-ably-capability": "{\"other\":[\"subscribe\"]}"}),
    );
    let (again, resumed) = resume_with(&mut sim, &connected, &narrow);
    assert_eq!(resumed.connection_id, connected.connection_id);
    let replies = sim.take(again);
    assert!(
        !replies.iter().any(|m| m.action == Action::Sync),
        "no members of a channel it may no longer see"
    );
    assert!(replies
        .iter()
        .any(|m| m.action == Action::Detached && code(m) == Some(40160)));
}

#[test]
fn a_token_naming_a_client_id_longer_than_512_bytes_is_malformed() {
    let mut sim = Sim::new(secured());
    let t = token(&sim, json!({"x-ably-clientId": "z".repeat(513)}));
    let (_, refused) = sim.open(&format!("access_token={t}"));
    assert_eq!(
        (refused.action, code(&refused)),
        (Action::Error, Some(40144))
    );
}

#[test]
fn a_keys_secret_can_be_rotated_under_its_name_both_secrets_signing_until_the_old_goes() {
    let config = HubConfig {
        keys: ApiKey::parse_list("app.k1:old-secret,app.k1:new-secret").unwrap(),
        ..HubConfig::default()
    };
    let mut sim = Sim::new(config);
    let exp = seconds(&sim) + 60;
    for secret in ["old-secret", "new-secret"] {
        let t = jwt(
            "app.k1",
            secret,
            &json!({"exp": exp, "x-ably-clientId": "alice"}),
        );
        let (_, connected) = sim.open(&format!("access_token={t}"));
        assert_eq!(connected.action, Action::Connected, "signed with {secret}");
        let (_, connected) = sim.open(&format!("key=app.k1:{secret}"));
        assert_eq!(connected.action, Action::Connected, "key with {secret}");
    }
    let forged = jwt("app.k1", "guess", &json!({"exp": exp}));
    let (_, refused) = sim.open(&format!("access_token={forged}"));
    assert_eq!(code(&refused), Some(40144));
}

#[test]
fn a_token_naming_no_client_counts_as_one_however_its_signature_is_spelled() {
    let config = HubConfig {
        max_connections_per_client: 1,
        ..secured()
    };
    let mut sim = Sim::new(config);
    // Signed until a signature with a character base64 spells two ways (`-` or `+`, `_` or
    // `/`) comes: both spellings verify.
    let exp = seconds(&sim) + 60;
    let (t, respelt) = (0..200)
        .find_map(|n| {
            let t = jwt("app.k1", "secret-one", &json!({"exp": exp, "n": n}));
            let signature = t.rsplit('.').next().unwrap();
            let respelt = signature.replace('-', "+").replace('_', "/");
            (respelt != signature).then(|| {
                let head = &t[..t.len() - signature.len()];
                (t.clone(), format!("{head}{respelt}"))
            })
        })
        .expect("a signature with - or _");
    let (_, first) = sim.open(&format!("access_token={t}"));
    assert_eq!(first.action, Action::Connected);
    let (_, second) = sim.open(&format!(
        "access_token={}",
        respelt.replace('+', "%2B").replace('/', "%2F")
    ));
    assert_eq!(
        (second.action, code(&second)),
        (Action::Disconnected, Some(40150)),
        "the same token, spelt otherwise, takes no second place"
    );
}

#[test]
fn a_frame_after_the_token_expired_is_not_acted_on_even_when_the_timer_is_late() {
    let mut sim = Sim::new(secured());
    let exp = seconds(&sim) + 30;
    let t = jwt(
        "app.k1",
        "secret-one",
        &json!({"exp": exp, "x-ably-clientId": "alice"}),
    );
    let (alice, _) = sim.connect(&format!("access_token={t}"));
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    sim.take(alice);
    // Past the expiry, with no timer run (a host whose alarm is late).
    sim.now = exp * 1000 + 1;
    let replies = sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "late"}]));
    assert!(sim.members(ROOM).is_empty(), "entered on an expired token");
    assert_eq!(
        replies
            .iter()
            .find(|m| m.action == Action::Disconnected)
            .and_then(code),
        Some(40142),
        "{replies:?}"
    );
}

#[test]
fn a_close_after_the_token_expired_still_closes_and_its_members_leave_at_once() {
    let mut sim = Sim::new(secured());
    let exp = seconds(&sim) + 30;
    let (watcher, _) = sim.connect("key=app.k1:secret-one&clientId=watcher");
    sim.send(watcher, json!({"action": 10, "channel": ROOM}));
    let t = jwt(
        "app.k1",
        "secret-one",
        &json!({"exp": exp, "x-ably-clientId": "alice"}),
    );
    let (alice, _) = sim.connect(&format!("access_token={t}"));
    sim.send(alice, json!({"action": 10, "channel": ROOM}));
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.take(alice);
    sim.now = exp * 1000 + 1;
    sim.send(alice, json!({"action": 7}));
    assert!(sim.take(alice).iter().any(|m| m.action == Action::Closed));
    assert!(
        sim.members(ROOM).iter().all(|(c, _)| c != "alice"),
        "{:?}",
        sim.members(ROOM)
    );
}

#[test]
fn the_same_token_given_back_for_a_renewal_is_not_asked_to_be_renewed_again_and_again() {
    let mut sim = Sim::new(secured());
    let now = seconds(&sim);
    let cached = token(&sim, json!({"x-ably-clientId": "alice", "exp": now + 30}));
    let (alice, _) = sim.join(&format!("access_token={cached}"), ROOM);
    sim.advance(20_000);
    assert!(sim.take(alice).iter().any(|m| m.action == Action::Auth));
    // An app whose token source caches: the same token again.
    let mut asked = 0;
    for _ in 0..5 {
        sim.send(
            alice,
            json!({"action": 17, "auth": {"accessToken": cached}}),
        );
        sim.advance(1);
        asked += sim
            .take(alice)
            .iter()
            .filter(|m| m.action == Action::Auth)
            .count();
    }
    assert_eq!(asked, 0, "asked again at once, each time it answered");
    assert!(!sim.is_closed(alice));
    // At its expiry it is disconnected, as any token.
    sim.advance(10_000);
    assert!(sim.is_closed(alice));
}

#[test]
fn a_member_entered_for_another_client_is_held_to_the_rules_of_a_client_id() {
    let mut sim = Sim::new(secured());
    let wildcard = token(&sim, json!({"x-ably-clientId": "*"}));
    let (server, _) = sim.connect(&format!("access_token={wildcard}"));
    attach(&mut sim, server, ROOM);
    for (serial, bad) in ["a\u{0}b", "tab\there", "*", ""].into_iter().enumerate() {
        let replies = sim.presence(
            server,
            ROOM,
            serial as i64,
            json!([{"action": 2, "clientId": bad}]),
        );
        let last = replies.last().unwrap();
        assert_eq!(
            (last.action, code(last)),
            (Action::Nack, Some(40012)),
            "{bad:?}"
        );
    }
    assert!(sim.members(ROOM).is_empty());
    let replies = sim.presence(server, ROOM, 4, json!([{"action": 2, "clientId": "alice"}]));
    assert_eq!(replies.last().unwrap().action, Action::Ack);
}

#[test]
fn a_long_grace_ends_the_hubs_remain_present_for_after_the_token_expires() {
    // Alice asks for ten minutes of grace with a token that expires in a minute; bob, with a
    // key, asks for the same.
    let mut sim = Sim::new(secured());
    let (watcher, _) = sim.join(&format!("key={KEY}&clientId=w"), ROOM);
    let alice_token = token(
        &sim,
        json!({"x-ably-clientId": "alice", "exp": seconds(&sim) + 60}),
    );
    let (alice, _) = sim.join(
        &format!("access_token={alice_token}&remainPresentFor=600000"),
        ROOM,
    );
    let (bob, _) = sim.join(
        &format!("key={KEY}&clientId=bob&remainPresentFor=600000"),
        ROOM,
    );
    sim.presence(alice, ROOM, 0, json!([{"action": 2}]));
    sim.presence(bob, ROOM, 0, json!([{"action": 2}]));
    sim.events(watcher);
    let expires = (seconds(&sim) + 60) * 1000;
    sim.drop_transport(alice);
    sim.drop_transport(bob);
    // Present until 15 s (the hub's remainPresentFor) after the token expired, not ten minutes.
    sim.advance(expires + 15_000 - 1 - sim.now);
    assert_eq!(sim.members(ROOM).len(), 2);
    sim.advance(1);
    let left = summary(&sim.events(watcher));
    assert!(
        left.contains(&(PresenceAction::Leave, "alice".to_owned())),
        "{left:?}"
    );
    let present: Vec<String> = sim.members(ROOM).into_iter().map(|m| m.0).collect();
    assert_eq!(
        present,
        ["bob"],
        "a key's connection keeps the grace it asked for"
    );
    sim.advance(600_000);
    assert!(sim.members(ROOM).is_empty());
}

#[test]
fn a_flood_whose_frames_each_come_at_their_own_time_is_closed_too_and_a_client_just_over_the_rate_is_not(
) {
    // As a Durable Object takes frames: each at its own time, so that the budget refills a
    // little between them and some are taken among the refused.
    for (every_ms, closed) in [(2u64, true), (7, false)] {
        let config = HubConfig {
            max_inbound_rate: 100,
            ..HubConfig::default()
        };
        let mut sim = Sim::new(config);
        let (peer, _) = sim.join("clientId=a", ROOM);
        let mut codes = Vec::new();
        for serial in 0..2_000 {
            sim.advance(every_ms);
            for reply in sim.presence(peer, ROOM, serial, json!([{"action": 4, "data": "x"}])) {
                codes.extend(code(&reply));
            }
            if sim.is_closed(peer) {
                break;
            }
        }
        // 500 a second, five times the rate, is closed; 143 a second is only refused beyond it.
        assert_eq!(sim.is_closed(peer), closed, "every {every_ms} ms");
        assert!(codes.contains(&42910), "every {every_ms} ms");
        assert_eq!(codes.last() == Some(&42920), closed, "every {every_ms} ms");
    }
}

#[test]
fn one_token_holder_cannot_take_the_hubs_member_data_from_everyone_else() {
    // The hub's member budget is shared: a token holder with 100 connections of 200 channels
    // each, entering 60 KB on every one, would take all of it. Its clientId holds a share.
    let config = HubConfig {
        max_member_bytes_per_client: 100_000,
        ..secured()
    };
    let mut sim = Sim::new(config.clone());
    let big = "x".repeat(30_000);
    let t = token(&sim, json!({"x-ably-clientId": "mallory"}));
    // Counted across its connections and channels together.
    let (first, _) = sim.connect(&format!("access_token={t}"));
    let (second, _) = sim.connect(&format!("access_token={t}"));
    let mut replies = Vec::new();
    for (n, peer) in [first, second, first, second].into_iter().enumerate() {
        let channel = format!("room{n}");
        assert_eq!(attach(&mut sim, peer, &channel).0, Action::Attached);
        replies.push(sim.presence(
            peer,
            &channel,
            n as i64 / 2,
            json!([{"action": 2, "data": big}]),
        ));
    }
    let outcomes: Vec<_> = replies
        .iter()
        .map(|r| (r.last().unwrap().action, code(r.last().unwrap())))
        .collect();
    assert_eq!(
        outcomes,
        [
            (Action::Ack, None),
            (Action::Ack, None),
            (Action::Ack, None),
            (Action::Nack, Some(91003))
        ]
    );
    let refusal = replies[3].last().unwrap().error.clone().unwrap().message;
    assert!(refusal.contains("clientId mallory"), "{refusal}");
    // Someone else still enters, and so does a server with its key.
    let alice = token(&sim, json!({"x-ably-clientId": "alice"}));
    let (alice, _) = sim.connect(&format!("access_token={alice}"));
    attach(&mut sim, alice, "room3");
    let replies = sim.presence(alice, "room3", 0, json!([{"action": 2, "data": big}]));
    assert_eq!(replies.last().unwrap().action, Action::Ack);
    let (server, _) = sim.connect(&format!("key={KEY}"));
    attach(&mut sim, server, "room3");
    for i in 0..5 {
        let item = json!([{"action": 2, "clientId": format!("bot{i}"), "data": big}]);
        let replies = sim.presence(server, "room3", i, item);
        assert_eq!(replies.last().unwrap().action, Action::Ack, "{replies:?}");
    }
    // A leave makes room again; so does a connection's members going when it closes.
    sim.presence(first, "room0", 2, json!([{"action": 3}]));
    let replies = sim.presence(second, "room3", 2, json!([{"action": 2, "data": big}]));
    assert_eq!(replies.last().unwrap().action, Action::Ack, "{replies:?}");
    sim.send(first, json!({"action": 7}));
    sim.advance(1);
    let (third, _) = sim.connect(&format!("access_token={t}"));
    attach(&mut sim, third, "room4");
    let replies = sim.presence(third, "room4", 0, json!([{"action": 2, "data": big}]));
    assert_eq!(replies.last().unwrap().action, Action::Ack);
}

#[test]
fn a_resend_of_a_message_applied_is_acknowledged_again_even_over_the_budget() {
    // The ACK of an enter was lost with the transport; the client resumes with its budget
    // spent and resends the enter. Refused for the rate, the refusal was remembered as the
    // message's answer: every later resend was refused too, and a re-entry naming it dropped,
    // although the member was there.
    let mut sim = ten_a_second();
    let (peer, _) = sim.join("clientId=a", ROOM);
    let replies = sim.presence(peer, ROOM, 0, json!([{"action": 2, "data": "here"}]));
    assert_eq!(replies.last().unwrap().action, Action::Ack);
    sim.send_in_one_turn(
        peer,
        (1..26).map(|serial| {
            json!({"action": 14, "channel": ROOM, "msgSerial": serial, "presence": [{"action": 4}]})
        }),
    );
    let replies = sim.presence(peer, ROOM, 26, json!([{"action": 4}]));
    assert_eq!(
        code(replies.last().unwrap()),
        Some(42910),
        "the budget is spent"
    );
    let resend = json!([{"action": 2, "data": "here"}]);
    let replies = sim.presence(peer, ROOM, 0, resend.clone());
    assert_eq!(replies.last().unwrap().action, Action::Ack, "{replies:?}");
    sim.advance(5_000);
    let replies = sim.presence(peer, ROOM, 0, resend);
    assert_eq!(replies.last().unwrap().action, Action::Ack, "{replies:?}");
}

/// A key connection that entered `members` clients ("agent0", ...) at its rate (none refused,
/// its budget no fuller than at the start), dropped, and resumed with ROOM attached again:
/// the resumed peer and the connection id.
fn agent_resumed(sim: &mut Sim, members: i64) -> (common::Peer, String) {
    let (server, connected) = sim.connect("key=app.k:s&remainPresentFor=60000");
    sim.send(server, json!({"action": 10, "channel": ROOM}));
    sim.take(server);
    let id = connected.connection_id.clone().unwrap().to_string();
    for serial in 0..members {
        let item = json!([{"action": 2, "clientId": format!("agent{serial}")}]);
        let replies = sim.presence(server, ROOM, serial, item);
        assert_eq!(code(replies.last().unwrap()), None, "enter {serial}");
        sim.advance(100);
    }
    sim.drop_transport(server);
    let key = connected
        .connection_details
        .unwrap()
        .connection_key
        .unwrap();
    let (again, resumed) = sim.connect(&format!("key=app.k:s&resume={key}"));
    assert_eq!(resumed.connection_id.as_deref(), Some(&*id));
    sim.send(again, json!({"action": 10, "channel": ROOM}));
    sim.take(again);
    (again, id)
}

/// Re-entries as ably-js sends them after a resume: agent`i` for each `i` of `members`, one
/// frame each, naming the operation that entered it, with `data`; msgSerials from `serial`.
fn re_entries(
    id: &str,
    members: std::ops::Range<i64>,
    serial: i64,
    data: Option<&str>,
) -> Vec<serde_json::Value> {
    members
        .map(|i| {
            let mut item =
                json!({"action": 2, "clientId": format!("agent{i}"), "id": format!("{id}:{i}:0")});
            if let Some(data) = data {
                item["data"] = json!(data);
            }
            json!({"action": 14, "channel": ROOM, "msgSerial": serial + i, "presence": [item]})
        })
        .collect()
}

#[test]
fn a_connection_holding_many_members_re_enters_them_all_after_a_resume() {
    // As ably-js does after every resume (RTP17g): one frame per member it entered, naming it.
    let mut sim = ten_a_second();
    const MEMBERS: i64 = 60;
    let (again, id) = agent_resumed(&mut sim, MEMBERS);
    sim.send_in_one_turn(again, re_entries(&id, 0..MEMBERS, MEMBERS, None));
    let replies = sim.take(again);
    let refused: Vec<_> = replies.iter().filter_map(code).collect();
    assert!(refused.is_empty(), "re-entries refused: {refused:?}");
    let acked: u64 = replies
        .iter()
        .filter(|m| m.action == Action::Ack)
        .map(|m| m.count.unwrap_or(1))
        .sum();
    assert_eq!(acked, MEMBERS.unsigned_abs());
    assert_eq!(sim.members(ROOM).len(), usize::try_from(MEMBERS).unwrap());
    // Free once per resume, as many as it holds: the same again is charged as any frame.
    sim.send_in_one_turn(again, re_entries(&id, 0..MEMBERS, 2 * MEMBERS, None));
    let codes: Vec<_> = sim.take(again).iter().filter_map(code).collect();
    assert!(codes.contains(&42910), "{codes:?}");
}

#[test]
fn a_re_entry_that_changes_its_member_is_charged_as_any_frame() {
    let mut sim = ten_a_second();
    let (again, id) = agent_resumed(&mut sim, 30);
    // Named as re-entries, but with new data: updates every listener hears, charged as such
    // (the budget, 25 frames, is spent by them)...
    sim.send_in_one_turn(again, re_entries(&id, 0..25, 30, Some("changed")));
    sim.take(again);
    // ...so that what follows at once finds it spent.
    sim.send_in_one_turn(
        again,
        (0..10).map(|i| {
            json!({"action": 14, "channel": ROOM, "msgSerial": 55 + i, "presence": [
                {"action": 4, "clientId": format!("agent{}", 25 + i), "data": "busy"}
            ]})
        }),
    );
    let codes: Vec<_> = sim.take(again).iter().filter_map(code).collect();
    assert!(
        codes.iter().filter(|&&c| c == 42910).count() >= 5,
        "{codes:?}"
    );
}

#[test]
fn a_re_attach_refused_for_its_modes_takes_the_members_of_the_channel_with_it() {
    let mut sim = Sim::new(secured());
    let (watcher, _) = sim.join(&format!("key={KEY}&clientId=watcher"), ROOM);
    let t = token(
        &sim,
        json!({"x-ably-clientId": "alice", "x-ably-capability": {ROOM: ["presence"]}}),
    );
    let (alice, _) = sim.connect(&format!("access_token={t}"));
    assert_eq!(attach(&mut sim, alice, ROOM), (Action::Attached, None));
    sim.presence(alice, ROOM, 0, json!([{"action": 2, "data": "here"}]));
    sim.take(watcher);
    // Asking only for what the token does not grant: refused, and the client's channel fails
    // (RTL14), forgetting its members. They must not stay with no one able to take them away.
    sim.send(
        alice,
        json!({"action": 10, "channel": ROOM, "flags": rollcall::protocol::flags::PRESENCE_SUBSCRIBE}),
    );
    let reply = sim.take(alice).remove(0);
    assert_eq!((reply.action, code(&reply)), (Action::Error, Some(40160)));
    let heard = sim.events(watcher);
    assert_eq!(
        common::summary(&heard),
        [(
            rollcall::protocol::PresenceAction::Leave,
            "alice".to_owned()
        )]
    );
    assert!(sim.members(ROOM).iter().all(|(id, _)| id != "alice"));
    // Attached again as granted, it may enter again.
    assert_eq!(attach(&mut sim, alice, ROOM), (Action::Attached, None));
    let replies = sim.presence(alice, ROOM, 1, json!([{"action": 2}]));
    assert_eq!(replies.last().unwrap().action, Action::Ack);
}
