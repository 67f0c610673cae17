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

pub mod presence;
pub mod protocol;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "hub")]
pub mod hub;

#[cfg(target_arch = "wasm32")]
pub mod wasm;
