//! Bindings for JavaScript hosts.
