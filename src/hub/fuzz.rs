//! Harnesses for hostile input, shared by the `cargo fuzz` targets (`fuzz/`) and by the test
//! that replays their corpus (`tests/fuzz_corpus.rs`). A panic here is a bug.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::connection::Life;
use super::pacing::HELD;
use super::{codec, Format, Hub, HubConfig, RestRequest, Slot, TransportId, SWEEP};
use crate::protocol::{flags, json, msgpack, ProtocolMessage};

/// Checks that the hub's bookkeeping agrees with itself: its indexes (by id, key and
/// transport) with its connections, each connection's life with its transport, its timers with
/// their deadlines, the places counted per clientId, channel subscribers with attachments, and
/// the members each connection holds with the channels' sets. Panics at the first
/// disagreement. The simulated-time tests run it after every step, and so does the fuzzer.
pub fn check_invariants(hub: &Hub) {
    let mut live = 0;
    let mut old_keys = 0;
    let mut told_lost = 0;
    let mut replay_held = 0;
    let mut counted: HashMap<Arc<str>, super::Held> = HashMap::new();
    for (slot, conn) in hub.slots.iter().enumerate() {
        let Some(conn) = conn else {
            continue;
        };
        let slot = slot as Slot;
        let id = &conn.id;
        live += 1;
        assert_eq!(hub.by_id.get(id), Some(&slot), "{id}: not found by its id");
        assert_eq!(
            hub.by_key.get(&conn.key),
            Some(&slot),
            "{id}: not found by its key"
        );
        assert!(conn.old_keys.len() <= super::connection::OLD_KEYS);
        for old in &conn.old_keys {
            assert_eq!(
                hub.by_old_key.get(old),
                Some(&slot),
                "{id}: not found by an earlier key"
            );
        }
        old_keys += conn.old_keys.len();
        if let Some(transport) = conn.transport {
            assert_eq!(
                hub.by_transport.get(&transport),
                Some(&slot),
                "{id}: not found by its transport"
            );
        }
        assert_eq!(
            matches!(conn.life, Life::Live),
            conn.transport.is_some(),
            "{id}: live exactly when it has a transport"
        );
        told_lost += usize::from(conn.lost_told);
        replay_held += conn.replay_bytes;
        assert!(
            !conn.lost_told
                || matches!(conn.life, Life::Dropped { .. })
                || conn.back_notice_at.is_some(),
            "{id}: told lost only while dropped, or until its return is told"
        );
        assert!(
            conn.claim_by.is_some() || conn.attachments.iter().all(|(_, a)| !a.unclaimed),
            "{id}: a channel held for a recovering client with no time to claim it by"
        );
        assert!(
            conn.back_notice_at.is_none() || (conn.lost_told && conn.life == Life::Live),
            "{id}: a return told only for a connection that is back, and was told lost"
        );
        assert_eq!(
            conn.replay_bytes,
            conn.replay.iter().map(|f| f.bytes.len()).sum::<usize>(),
            "{id}: the replay's bytes as counted"
        );
        assert!(
            conn.replay.len() <= hub.config.replay_limit
                && conn.replay_bytes <= hub.config.replay_bytes,
            "{id}: a replay over its limits"
        );
        if let Some(deadline) = conn.deadline {
            assert!(
                hub.timers.contains(&(deadline, slot)),
                "{id}: its deadline has no timer"
            );
        }
        if let Some(client) = &conn.counted {
            counted.entry(client.clone()).or_default().connections += 1;
        }
        for (name, attachment) in conn.attachments.iter() {
            // (A channel held for a recovering client is not delivered until it claims it.)
            let subscribes =
                attachment.modes & flags::PRESENCE_SUBSCRIBE != 0 && !attachment.unclaimed;
            let listed = hub
                .channels
                .get(name)
                .is_some_and(|c| c.subscribers.contains(&slot));
            assert_eq!(
                subscribes, listed,
                "{id}: subscriber of {name} as its attachment says"
            );
            // What the hub knows of the client's view never runs ahead of the channel (but a
            // channel held for a recovering client may be swept, and made again: the client's
            // claim of it is a fresh attach). A channel swept while a connection that does
            // not listen is attached is made again past every serial it had.
            let Some((serial, queued)) = hub.channels.get(name).map(|c| (c.serial, c.history_seq))
            else {
                continue;
            };
            // (Synced as of the events still to send, whose outcome its SYNC held.)
            assert!(
                attachment.synced_at <= queued
                    || attachment.synced_at == u64::MAX
                    || attachment.unclaimed,
                "{id}: synced past the serial of {name}"
            );
            assert!(
                attachment.dropped_at.is_none_or(|d| d <= serial) || attachment.unclaimed,
                "{id}: dropped past the serial of {name}"
            );
        }
        for (name, client_id) in conn.members.iter() {
            let present = hub
                .channels
                .get(name)
                .and_then(|c| c.members.get(client_id, id));
            assert!(
                present.is_some(),
                "{id}: holds {client_id} on {name}, which is not there"
            );
        }
    }
    assert_eq!(hub.told_lost, told_lost, "connections counted as told lost");
    assert_eq!(
        hub.replay_held, replay_held,
        "frames waiting counted hub-wide"
    );
    assert!(
        replay_held <= hub.config.max_replay_bytes,
        "frames waiting over the hub's limit"
    );
    assert_eq!(hub.by_id.len(), live, "ids of connections that are gone");
    assert_eq!(hub.by_key.len(), live, "keys of connections that are gone");
    assert_eq!(
        hub.by_old_key.len(),
        old_keys,
        "earlier keys of connections that are gone"
    );
    for (transport, &slot) in &hub.by_transport {
        let conn = hub.slots.get(slot as usize).and_then(Option::as_ref);
        assert_eq!(
            conn.and_then(|c| c.transport),
            Some(*transport),
            "a transport of no connection"
        );
    }
    for &(deadline, slot) in &hub.timers {
        if slot == HELD {
            assert_eq!(
                hub.held_at,
                Some(deadline),
                "a release of held frames not noted"
            );
        } else if slot != SWEEP {
            let conn = hub.slots.get(slot as usize).and_then(Option::as_ref);
            assert_eq!(
                conn.and_then(|c| c.deadline),
                Some(deadline),
                "a timer of no deadline"
            );
        }
    }
    assert!(
        hub.channels.is_empty() || hub.sweep_at.is_some(),
        "channels that no sweep will look at"
    );
    assert!(
        hub.held.is_empty() || hub.held_at.is_some(),
        "held frames that no timer will read"
    );
    assert_eq!(
        hub.held.values().map(|q| q.bytes()).sum::<usize>(),
        hub.held_bytes,
        "held frames counted wrong"
    );
    for (&slot, queue) in &hub.held {
        let transport = hub
            .slots
            .get(slot as usize)
            .and_then(Option::as_ref)
            .and_then(|c| c.transport);
        assert!(
            transport.is_some(),
            "frames held for a connection with no transport"
        );
        assert_eq!(
            queue.transport(),
            transport,
            "frames held from a transport the connection no longer has"
        );
    }
    assert!(
        !hub.transmits.is_empty() || hub.answered.is_empty(),
        "answers remembered past the drain that took them"
    );
    for (name, channel) in &hub.channels {
        if channel.sync_items.iter().any(Option::is_some) {
            assert!(
                hub.synced.contains(name),
                "{name}: a SYNC encoding not counted"
            );
        }
    }
    let cached: usize = hub.channels.values().map(|c| c.sync_bytes()).sum();
    assert!(cached <= hub.synced_bytes, "SYNC encodings counted short");
    assert!(
        !hub.transmits.is_empty() || hub.synced_bytes <= hub.sync_cache_budget(),
        "SYNC encodings past their budget after a drain"
    );
    let mut member_bytes = 0u64;
    for (name, channel) in &hub.channels {
        for (format, cached) in channel.sync_items.iter().enumerate() {
            let Some((version, items)) = cached else {
                continue;
            };
            if *version == channel.members.version() {
                let format = if format == 0 {
                    Format::Json
                } else {
                    Format::Msgpack
                };
                let fresh: Vec<Vec<u8>> = channel
                    .members
                    .members()
                    .map(|m| codec::encode_item(m, format))
                    .collect();
                assert_eq!(
                    &items[..],
                    &fresh[..],
                    "{name}: a SYNC encoding that is stale"
                );
            }
        }
        for &slot in &channel.subscribers {
            let conn = hub.slots.get(slot as usize).and_then(Option::as_ref);
            assert!(
                conn.is_some_and(|c| c.attachments.get(name).is_some()),
                "{name}: a subscriber not attached"
            );
        }
        let mut present = 0;
        for member in channel.members.members() {
            present += 1;
            member_bytes += u64::from(super::channel::history_bytes(member));
            let (Some(client_id), Some(connection_id)) = (&member.client_id, &member.connection_id)
            else {
                panic!("{name}: a member without its ids");
            };
            let conn = hub
                .by_id
                .get(connection_id)
                .and_then(|&s| hub.slots.get(s as usize))
                .and_then(Option::as_ref);
            if let Some(client) = conn.and_then(|c| c.counted.as_ref()) {
                if let Some(held) = counted.get_mut(client) {
                    held.member_bytes += u64::from(super::channel::history_bytes(member));
                }
            }
            let held =
                conn.is_some_and(|c| c.members.iter().any(|(n, m)| n == name && m == client_id));
            assert!(
                held,
                "{name}: {client_id} on {connection_id} is held by no connection"
            );
        }
        assert_eq!(
            channel.members.len(),
            present,
            "{name}: its count of members"
        );
    }
    assert_eq!(
        hub.member_bytes, member_bytes,
        "the members' bytes as counted"
    );
    assert_eq!(
        counted, hub.per_client,
        "places and member bytes counted per clientId"
    );
}

/// Takes everything the hub has for its host: frames (remembering the connection keys they
/// give, to try resumes with them), events, and the changes to store.
fn drain_into(hub: &mut Hub, store: &mut BTreeMap<String, Vec<u8>>, keys: &mut Vec<Arc<str>>) {
    while let Some(transmit) = hub.poll_transmit() {
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
    r#"{"action":10,"channel":"room","flags":32,"channelSerial":"rollcall:1"}"#,
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
    "clientId=dave&recover=",
    "clientId=erin&agent=rollcall-js&heartbeats=true&resume=",
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
        replay_limit: 40,
        replay_bytes: 4_096,
        max_replay_bytes: 12_288,
        max_member_bytes: 16_384,
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
        let target = next().unwrap_or(0);
        let transport = TransportId(u32::from(target % 8));
        // Its high bit: the turn goes on, and the host drains after a later input (several
        // frames in one turn of its event loop).
        let turn_goes_on = target & 0x80 != 0;
        match op % 9 {
            0 => {
                let mut query =
                    QUERIES[usize::from(next().unwrap_or(0)) % QUERIES.len()].to_owned();
                if query.ends_with("resume=") || query.ends_with("recover=") {
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
                    origin: None,
                    body: &raw,
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
        if !turn_goes_on {
            drain_into(&mut hub, &mut store, &mut keys);
            check_invariants(&hub);
        }
    }
    // A rebuilt hub sweeps at once (expired history, idle channels): so does this one here,
    // and storage follows, so that the two can be compared.
    hub.sweep();
    drain_into(&mut hub, &mut store, &mut keys);
    check_invariants(&hub);
    // The stored state rebuilds the same presence sets. The input's last byte says which
    // sockets closed while the object slept (as in a deploy).
    let closed = data.last().copied().unwrap_or(0);
    let open: Vec<TransportId> = (0..8u32)
        .filter(|t| closed & (1 << t) == 0)
        .map(TransportId)
        .collect();
    // Fed in pages and in another order, as a host that reads its storage in pages may, it
    // rebuilds the same.
    let mut restoring = Hub::restoring(config.clone(), now, &open);
    let mut records: Vec<(String, Vec<u8>)> = store.clone().into_iter().collect();
    records.reverse();
    for page in records.chunks(3) {
        restoring.feed(page.to_vec());
    }
    let (paged, _) = restoring.finish();
    check_invariants(&paged);
    let (rebuilt, _) = Hub::restore(config, now, store, &open);
    check_invariants(&rebuilt);
    for name in rebuilt.channel_names() {
        assert_eq!(rebuilt.members(&name), paged.members(&name), "{name}");
    }
    // And what it knows of each client's view: as it was, or for a socket that closed while it
    // slept, heard up to the channel's serial.
    for conn in hub.slots.iter().flatten() {
        let Some(again) = rebuilt.by_id.get(&conn.id).and_then(|&s| rebuilt.conn(s)) else {
            continue;
        };
        assert_eq!(
            again.claim_by, conn.claim_by,
            "{}: claim_by restored",
            conn.id
        );
        let closed_asleep = conn.transport.is_some() && again.transport.is_none();
        for (name, attachment) in conn.attachments.iter() {
            let restored = again.attachments.get(name);
            assert!(restored.is_some(), "{}: {name} is not restored", conn.id);
            let Some(restored) = restored else {
                continue;
            };
            // (A channel the hub no longer holds, as one held only for a recovering client may
            // be swept, is made again by the rebuilt hub, from its time.)
            let Some(serial) = hub
                .channels
                .get(name)
                .or_else(|| rebuilt.channels.get(name))
                .map(|c| c.serial)
            else {
                // Swept by both (an idle channel held only for a recovering client): where
                // its client dropped no longer counts, as the channel is made afresh.
                assert_eq!(restored.modes, attachment.modes, "{}: {name}", conn.id);
                continue;
            };
            let dropped_at = if closed_asleep {
                Some(serial)
            } else {
                attachment.dropped_at
            };
            // What waited in memory for a connection already dropped is gone: where the channel
            // moved on since it dropped, it missed events.
            let missed = attachment.missed
                || (conn.transport.is_none() && attachment.dropped_at != Some(serial));
            assert_eq!(
                (
                    restored.modes,
                    restored.synced_at,
                    restored.dropped_at,
                    restored.missed,
                    restored.unclaimed
                ),
                (
                    attachment.modes,
                    attachment.synced_at,
                    dropped_at,
                    missed,
                    attachment.unclaimed
                ),
                "a rebuilt hub disagrees on what {} heard of {name}",
                conn.id
            );
        }
    }
    for channel in hub.channel_names() {
        assert_eq!(
            rebuilt.members(&channel),
            hub.members(&channel),
            "a rebuilt hub disagrees on {channel}"
        );
        // (Swept when rebuilt, as it held nothing but listeners whose sockets closed while
        // the object slept: made again from its time when they come back.)
        let Some(again) = rebuilt.channels.get(&channel) else {
            let held = hub.channels.get(&channel);
            assert!(
                held.is_none_or(|c| c.members.is_empty() && c.history.is_empty()),
                "a rebuilt hub dropped {channel}, which holds members or history"
            );
            continue;
        };
        assert_eq!(
            again.serial,
            hub.channels.get(&channel).map_or(0, |c| c.serial),
            "a rebuilt hub disagrees on the serial of {channel}"
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
