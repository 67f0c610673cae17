//! Bindings for JavaScript hosts: thin wrappers that convert arguments, make one core call and
//! hand the outputs back. Everything else lives in the sans-IO core.

#[cfg(feature = "hub")]
mod hub;
