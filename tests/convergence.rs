//! Random fault schedules over many seeds: latency, abrupt cuts, silent partitions, outages,
//! hub restarts, detaches, closes, enters, updates and leaves. After quiescence every client's
//! view equals the hub's set, every client's events tell a consistent story, no member of an
//! ended connection remains, and what each client last did with success (entered with some
//! data, or left) is what the hub holds for it.
//!
//! `ROLLCALL_SEEDS=n` runs n seeds (500 by default), `ROLLCALL_SEED=s` one, and with it
//! `ROLLCALL_DEBUG=1` prints the failing client's events and `ROLLCALL_TRACE=<client>` the
//! frames that client and the hub exchanged.

mod common;

use std::collections::BTreeSet;

use common::world::{check_story, item, World};
use rollcall::client::{ConnectionState, OpId};
use rollcall::hub::{Hub, HubConfig};
use rollcall::protocol::PresenceAction;

const ROOM: &str = "room";

/// The hub as the Node host runs it, or as a Durable Object does (state kept in storage, no
/// pings from the host).
fn config(edge: bool) -> HubConfig {
    HubConfig {
        persistence: edge,
        host_pings: !edge,
        ..HubConfig::default()
    }
}

fn scenario(seed: u64, edge: bool) -> Result<(), String> {
    let mut world = World::new(config(edge), seed);
    world.max_latency = 40;
    // Half the seeds have the hub take what arrives at one moment in one turn, as hosts do.
    world.batch_turns = seed % 2 == 1;
    let clients = 3 + world.rng.below(4) as usize;
    let mut remain_of = Vec::new();
    for i in 0..clients {
        let user = format!("user-{}", i % 3);
        let remain = 1_000 + world.rng.below(4) * 1_000;
        remain_of.push(remain);
        let c = world.add_client(&format!(
            "clientId={user}&remainPresentFor={remain}&heartbeatInterval=2000"
        ));
        world.with(c, |core, now| core.attach(now, ROOM));
    }
    let mut partitioned = BTreeSet::new();
    // Each client's last presence operation and the data it leaves the member with (`None`:
    // absent), while nothing since (a detach, a close) made the outcome a matter of choice.
    let mut intent: Vec<Option<(OpId, Option<String>)>> = vec![None; clients];
    for step in 0..80 {
        let c = world.rng.below(clients as u64) as usize;
        match world.rng.below(12) {
            0..=2 => {
                let data = format!("d{step}");
                let op = world.with(c, |core, now| {
                    core.presence(now, ROOM, item(PresenceAction::Enter, None, Some(&data)))
                });
                intent[c] = Some((op, Some(data)));
            }
            3..=4 => {
                let data = format!("u{step}");
                let op = world.with(c, |core, now| {
                    core.presence(now, ROOM, item(PresenceAction::Update, None, Some(&data)))
                });
                intent[c] = Some((op, Some(data)));
            }
            5 => {
                let op = world.with(c, |core, now| {
                    core.presence(now, ROOM, item(PresenceAction::Leave, None, None))
                });
                intent[c] = Some((op, None));
            }
            6 => world.cut(c),
            7 => {
                let offline = world.rng.below(8_000);
                world.with(c, |core, now| core.simulate_drop(now, Some(offline)));
            }
            8 => {
                world.partition(c);
                partitioned.insert(c);
            }
            9 => {
                world.heal(c);
                partitioned.remove(&c);
            }
            10 => {
                world.with(c, |core, now| core.detach(now, ROOM));
                intent[c] = None;
            }
            _ => {
                match world.rng.below(6) {
                    0 | 1 => {
                        world.with(c, |core, now| core.close(now));
                        intent[c] = None;
                    }
                    2 if edge => {
                        // The Durable Object is evicted and rebuilt from storage; its
                        // hibernated sockets stay open.
                        world.evict(config(edge));
                    }
                    2 => {
                        // The hub restarts: every connection is forgotten and every transport
                        // drops, so no client can resume.
                        world.hub = Hub::new(config(edge));
                        for other in 0..clients {
                            world.cut(other);
                        }
                    }
                    _ => {}
                }
                world.with(c, |core, now| {
                    core.connect(now);
                    core.attach(now, ROOM);
                });
            }
        }
        let pause = world.rng.below(3_000);
        world.run(pause);
    }
    // Heal the network and bring everyone back.
    for c in 0..clients {
        world.heal(c);
        world.with(c, |core, now| {
            core.connect(now);
            core.attach(now, ROOM);
        });
    }
    world.run(200_000);

    let hub = world.hub_view(ROOM);
    let live: BTreeSet<String> = (0..clients)
        .filter_map(|c| {
            world.clients[c]
                .core
                .connection_id()
                .map(|id| id.to_string())
        })
        .collect();
    for (client, connection, _) in &hub {
        if !live.contains(connection) {
            return Err(format!(
                "seed {seed}: {client} on ended connection {connection} remains"
            ));
        }
    }
    // A leave the hub made for lack of a connection: the connection had been gone for its whole
    // grace window (so no connection that resumed inside its window lost its members).
    for c in 0..clients {
        for event in world.clients[c].presence_events(ROOM) {
            let timed_out = event
                .extras
                .as_ref()
                .is_some_and(|x| x.0.contains("timeout"));
            if event.action != PresenceAction::Leave || !timed_out {
                continue;
            }
            let id = event.connection_id.as_deref().unwrap_or_default();
            let at = event.timestamp.unwrap_or(0) as u64;
            let remain = remain_of[world.conn_client[id]];
            for &(_, open, close) in world.live.get(id).into_iter().flatten() {
                if open < at && close > at.saturating_sub(remain) {
                    return Err(format!(
                        "seed {seed}: {id} timed out at {at} but was live from {open} to {close}"
                    ));
                }
            }
        }
    }
    for (c, intent) in intent.iter().enumerate() {
        let Some((op, data)) = intent else { continue };
        if world.clients[c].settled.get(op) != Some(&Ok(())) {
            continue;
        }
        let connection = world.clients[c]
            .core
            .connection_id()
            .map(|id| id.to_string())
            .unwrap_or_default();
        let held: Vec<&Option<String>> = hub
            .iter()
            .filter(|(_, conn, _)| *conn == connection)
            .map(|(_, _, d)| d)
            .collect();
        // One member with that data, or none after a leave.
        let expected: Vec<&Option<String>> = if data.is_some() { vec![data] } else { vec![] };
        if held != expected {
            if std::env::var("ROLLCALL_DEBUG").is_ok() {
                println!("client {c} connection {connection} op {op:?}");
                for e in &world.clients[c].events {
                    println!("{e:?}");
                }
            }
            return Err(format!(
                "seed {seed}: client {c} last made its member {data:?} and was told it worked; \
                 the hub holds {held:?}"
            ));
        }
    }
    for c in 0..clients {
        let client = &world.clients[c];
        if client.core.state() != ConnectionState::Connected {
            return Err(format!(
                "seed {seed}: client {c} is {:?}",
                client.core.state()
            ));
        }
        let view = client.view(ROOM);
        if view != hub {
            return Err(format!(
                "seed {seed}: client {c} sees {view:?}, the hub has {hub:?}"
            ));
        }
        if let Err(e) = check_story(client, ROOM) {
            if std::env::var("ROLLCALL_DEBUG").is_ok() {
                for e in &client.events {
                    println!("{e:?}");
                }
            }
            return Err(format!("seed {seed}: client {c}: {e}"));
        }
    }
    Ok(())
}

fn run_seeds(edge: bool) {
    if let Some(seed) = std::env::var("ROLLCALL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        if let Err(e) = scenario(seed, edge) {
            panic!("{e}");
        }
        return;
    }
    let seeds = std::env::var("ROLLCALL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500u64);
    let failures: Vec<String> = (0..seeds)
        .filter_map(|seed| scenario(seed, edge).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_view_converges_to_the_hub_over_many_fault_schedules() {
    run_seeds(false);
}

#[test]
fn every_view_converges_when_the_hub_is_a_durable_object_that_is_evicted() {
    run_seeds(true);
}
