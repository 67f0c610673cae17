//! # rollcall
//!
//! Presence for apps and AI agents: who is online on a channel, on which devices, and when a
//! user has gone offline on every device. A hub and a client that speak the Ably realtime
//! protocol (version 6), written as sans-IO state machines and compiled to WebAssembly for the
//! hosts (Node, Cloudflare Durable Objects, browsers).
//!
//! ## Semantics
//!
//! - A **member** is one `clientId` on one connection. A user on a laptop and a phone is two
//!   members with one `clientId`; the user is online while any of them is present.
//! - `leave()` is immediate. A connection that drops without closing keeps its members for its
//!   `remainPresentFor` (15 s by default, at least 1 s); then the hub makes a `leave` for each.
//!   A connection that resumes within that window causes no `leave` and no `enter`.
//! - A connection that stays silent (no frame, no pong) for its `heartbeatInterval` plus a margin
//!   of half that interval (at least 1 s) is treated as dropped.
//! - Two messages about one member are ordered by the spec's newness rules (RTP2b): by
//!   `msgSerial` and index for messages the member's connection caused, by timestamp when either
//!   was made by the hub ([`presence::newer_than`]).
//!
//! ## The driving contract
//!
//! The hub ([`hub::Hub`]) and the client never read a clock, a socket or a random source. A host
//! feeds them inputs with the current time, `handle_*(now, …)` or an API call, and after **every**
//! such mutation drains `poll_transmit`, then `poll_event`, until both are empty, then re-arms its
//! one timer for `poll_timeout`. Early or repeated timeouts are no-ops.
//!
//! ## Layout
//!
//! - [`protocol`]: wire types, error codes, the JSON codec.
//! - [`presence`]: the presence set and its newness and SYNC rules, shared by hub and client.
//! - [`hub`]: the hub state machine (feature `hub`).
//! - [`client`]: the client state machine (feature `client`).
//! - `wasm` (wasm32 only): the bindings the JavaScript hosts and API call.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
// The browser client (Wasm, client only) is built without std: a panic then costs one
// `unreachable` instruction instead of std's formatting machinery, which keeps the download
// small. Everything it compiles uses `core` and `alloc` paths and the prelude below.
#![cfg_attr(all(target_arch = "wasm32", not(feature = "codec"), not(test)), no_std)]

extern crate alloc;

/// What std's prelude gives, for the modules the no-std build compiles.
#[allow(unused_imports)]
mod prelude {
    pub(crate) use alloc::borrow::ToOwned;
    pub(crate) use alloc::boxed::Box;
    pub(crate) use alloc::string::{String, ToString};
    pub(crate) use alloc::vec::Vec;
    pub(crate) use alloc::{format, vec};
}

#[cfg(all(target_arch = "wasm32", not(feature = "codec"), not(test)))]
#[global_allocator]
static ALLOCATOR: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> =
    lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());

#[cfg(all(target_arch = "wasm32", not(feature = "codec"), not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

pub mod presence;
pub mod protocol;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "hub")]
pub mod hub;

#[cfg(target_arch = "wasm32")]
pub mod wasm;
