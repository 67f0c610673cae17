//! Bindings for JavaScript hosts: thin wrappers that convert arguments, make one core call and
//! hand the outputs back. Everything else lives in the sans-IO core.

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
mod convert;
#[cfg(feature = "hub")]
mod hub;

#[cfg(feature = "client")]
pub use client::WasmClient;
#[cfg(feature = "hub")]
pub use hub::WasmHub;
