//! The Ably realtime protocol, version 6: wire types, error codes and (with the `codec`
//! feature) the JSON codec. Shared by the hub and the client.

#[cfg(feature = "codec")]
pub(crate) mod base64;
mod error;
#[cfg(feature = "codec")]
pub mod json;
mod message;
#[cfg(feature = "msgpack")]
pub mod msgpack;

pub use error::{codes, ErrorInfo};
pub use message::{
    flags, Action, AuthDetails, ConnectionDetails, Data, PresenceAction, PresenceMessage,
    ProtocolMessage, RawJson,
};

/// The protocol version this crate speaks (the `v` query parameter).
pub const PROTOCOL_VERSION: u32 = 6;
