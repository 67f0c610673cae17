//! The hub core, natively: presence events applied and fanned out to a channel of N members,
//! and the memory a connection and a member cost. Not a test: figures, and ratios against a
//! baseline measured in the same run.
//!
//!   cargo bench --bench hub_core
//!
//! The baseline is the least any hub must do per event: encode one PRESENCE frame with one
//! item (serde_json). `events/s` counts updates applied, encoded and handed to the host for
//! all N subscribers; `deliveries/s` is that times N.

// Counting allocations needs a global allocator, which is unsafe to implement; the library
// itself forbids unsafe code.
#![allow(unsafe_code)]
// A benchmark reads the clock; the sans-IO core never does.
#![allow(clippy::disallowed_methods)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rollcall::hub::{Hub, HubConfig, TransportId};
use rollcall::protocol::{json, Action, Data, PresenceAction, PresenceMessage, ProtocolMessage};

/// Counts live heap bytes, to measure what connections and members cost.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const T0: u64 = 1_700_000_000_000;
const ROOM: &str = "room";

fn entropy(n: u32) -> [u8; 24] {
    let mut e = [0u8; 24];
    e[..4].copy_from_slice(&n.to_le_bytes());
    e[8..12].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_le_bytes());
    e
}

fn drain(hub: &mut Hub) -> usize {
    let mut deliveries = 0;
    while let Some(t) = hub.poll_transmit() {
        deliveries += t.to.len();
        black_box(&t.frame);
    }
    while hub.poll_event().is_some() {}
    deliveries
}

/// A hub with `n` connections on one channel, each present with one member.
fn populated(n: u32) -> Hub {
    // The clock stands still here, so the inbound rate limit would refuse the updates.
    let mut hub = Hub::new(HubConfig {
        max_inbound_rate: u32::MAX / 4,
        ..HubConfig::default()
    });
    for i in 0..n {
        let t = TransportId(i);
        hub.handle_open(T0, t, &format!("clientId=user-{i}&format=json"), entropy(i));
        hub.handle_text(T0, t, r#"{"action":10,"channel":"room"}"#);
        let enter = format!(
            r#"{{"action":14,"channel":"room","msgSerial":0,"presence":[{{"action":2,"data":"{{\"device\":\"laptop\",\"n\":{i}}}","encoding":"json"}}]}}"#
        );
        hub.handle_text(T0, t, &enter);
        drain(&mut hub);
    }
    hub
}

fn baseline_encode_ns() -> f64 {
    let mut message = ProtocolMessage::for_channel(Action::Presence, Arc::from(ROOM));
    let mut item = PresenceMessage::new(PresenceAction::Update);
    item.id = Some(Arc::from("abcdefghijkl:12:0"));
    item.client_id = Some(Arc::from("user-12"));
    item.connection_id = Some(Arc::from("abcdefghijkl"));
    item.data = Some(Data::String(Arc::from(
        r#"{"device":"laptop","status":"typing"}"#,
    )));
    item.encoding = Some(Arc::from("json"));
    item.timestamp = Some(T0 as i64);
    message.presence = Some(vec![item]);
    let rounds = 200_000;
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(json::encode(black_box(&message)));
    }
    start.elapsed().as_nanos() as f64 / f64::from(rounds)
}

fn fan_out(n: u32, baseline_ns: f64) {
    let mut hub = populated(n);
    let events = (200_000 / n).clamp(200, 20_000);
    let updates: Vec<String> = (0..events)
        .map(|k| {
            format!(
                r#"{{"action":14,"channel":"room","msgSerial":{},"presence":[{{"action":4,"data":"{{\"device\":\"laptop\",\"status\":\"s{k}\"}}","encoding":"json"}}]}}"#,
                k / n + 1
            )
        })
        .collect();
    let start = Instant::now();
    let mut deliveries = 0;
    for (k, update) in updates.iter().enumerate() {
        hub.handle_text(T0 + 1, TransportId(k as u32 % n), update);
        deliveries += drain(&mut hub);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let per_event_ns = elapsed * 1e9 / f64::from(events);
    println!(
        "fan-out N={n:>5}: {:>10.0} events/s {:>12.0} deliveries/s  {:>8.2} µs/event  = {:>5.1} × baseline",
        f64::from(events) / elapsed,
        deliveries as f64 / elapsed,
        per_event_ns / 1e3,
        per_event_ns / baseline_ns,
    );
    assert_eq!(
        deliveries,
        events as usize * (n as usize + 1),
        "every member, ack included"
    );
}

/// A crowd re-attaching at once, as after a hub-side blip: every connection of `n` sends
/// ATTACH again and gets the whole set by SYNC (n² members sent). Reports the time per
/// re-attach against the baseline encode of one frame.
fn reattach_storm(n: u32, baseline_ns: f64) {
    let mut hub = populated(n);
    let start = Instant::now();
    let mut frames = 0;
    for i in 0..n {
        hub.handle_text(T0 + 1, TransportId(i), r#"{"action":10,"channel":"room"}"#);
        frames += drain(&mut hub);
    }
    let per_attach_ns = start.elapsed().as_nanos() as f64 / f64::from(n);
    println!(
        "re-attach N={n:>5}: {:>8.2} µs/attach (a SYNC of {n} members)  = {:>6.1} × baseline",
        per_attach_ns / 1e3,
        per_attach_ns / baseline_ns,
    );
    assert!(frames >= n as usize * 2, "an ATTACHED and a SYNC each");
}

/// One connection (a server entering members for many clients) enters `m` members over five
/// channels, then closes: the cost per member of entering and of the leaves its close makes,
/// against the baseline. Linear in `m` when the connection's own index of its members is.
fn server_members(m: u32, baseline_ns: f64) {
    let mut hub = Hub::new(HubConfig {
        max_inbound_rate: u32::MAX / 4,
        ..HubConfig::default()
    });
    let t = TransportId(0);
    hub.handle_open(T0, t, "key=app.server:secret&format=json", entropy(0));
    for c in 0..5 {
        hub.handle_text(T0, t, &format!(r#"{{"action":10,"channel":"room{c}"}}"#));
    }
    drain(&mut hub);
    let start = Instant::now();
    for (serial, first) in (0..m).step_by(500).enumerate() {
        let items: Vec<String> = (first..(first + 500).min(m))
            .map(|i| format!(r#"{{"action":2,"clientId":"m{i}"}}"#))
            .collect();
        let frame = format!(
            r#"{{"action":14,"channel":"room{}","msgSerial":{serial},"presence":[{}]}}"#,
            serial % 5,
            items.join(",")
        );
        hub.handle_text(T0, t, &frame);
        drain(&mut hub);
    }
    let enter_ns = start.elapsed().as_nanos() as f64 / f64::from(m);
    assert_eq!(hub.stats().members, m as usize, "every member entered");
    let start = Instant::now();
    hub.handle_text(T0, t, r#"{"action":7}"#);
    drain(&mut hub);
    let leave_ns = start.elapsed().as_nanos() as f64 / f64::from(m);
    assert_eq!(hub.stats().members, 0, "every member left");
    println!(
        "one connection, M={m:>6} members: enter {:>6.2} µs/member = {:>5.1} × baseline; close {:>6.2} µs/member = {:>5.1} × baseline",
        enter_ns / 1e3,
        enter_ns / baseline_ns,
        leave_ns / 1e3,
        leave_ns / baseline_ns,
    );
}

fn memory() {
    let n = 10_000u32;
    let before = LIVE.load(Ordering::Relaxed);
    let mut hub = Hub::new(HubConfig::default());
    for i in 0..n {
        hub.handle_open(
            T0,
            TransportId(i),
            &format!("clientId=user-{i}"),
            entropy(i),
        );
        drain(&mut hub);
    }
    let connected = LIVE.load(Ordering::Relaxed);
    for i in 0..n {
        let t = TransportId(i);
        // Rooms of 100, as the benchmark's idle run.
        hub.handle_text(
            T0,
            t,
            &format!(r#"{{"action":10,"channel":"room-{}"}}"#, i / 100),
        );
        hub.handle_text(
            T0,
            t,
            &format!(
                r#"{{"action":14,"channel":"room-{}","msgSerial":0,"presence":[{{"action":2,"data":"{{\"device\":\"laptop\"}}","encoding":"json"}}]}}"#,
                i / 100
            ),
        );
        drain(&mut hub);
    }
    let entered = LIVE.load(Ordering::Relaxed);
    println!(
        "memory: {:.0} bytes per connection; {:.0} bytes per attached member (with its history entry), {n} connections",
        (connected - before) as f64 / f64::from(n),
        (entered - connected) as f64 / f64::from(n),
    );
    black_box(&hub);
}

fn main() {
    let baseline = baseline_encode_ns();
    println!(
        "baseline: encode one PRESENCE frame: {:.2} µs",
        baseline / 1e3
    );
    for n in [10, 100, 1_000] {
        fan_out(n, baseline);
    }
    for n in [100, 1_000] {
        reattach_storm(n, baseline);
    }
    for m in [1_000, 10_000, 50_000] {
        server_members(m, baseline);
    }
    memory();
}
