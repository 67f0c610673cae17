//! Ably-style errors: a numeric `code`, an HTTP-like `statusCode` and a message.

use crate::prelude::*;
use core::fmt;

/// An error as it travels on the wire (`{ message, code, statusCode, href }`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "codec",
    derive(serde::Deserialize),
    serde(rename_all = "camelCase", default)
)]
pub struct ErrorInfo {
    /// Ably's error code, such as 40012.
    pub code: u32,
    /// The HTTP status that goes with it, such as 400.
    pub status_code: u16,
    /// What went wrong, for a person.
    pub message: String,
    /// A link explaining the code.
    pub href: Option<String>,
}

impl ErrorInfo {
    /// An error with a code, a status and a message.
    pub fn new(code: u32, status_code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            status_code,
            message: message.into(),
            href: None,
        }
    }
}

impl fmt::Display for ErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (code {}, status {})",
            self.message, self.code, self.status_code
        )
    }
}

impl core::error::Error for ErrorInfo {}

/// The error codes rollcall uses, with their Ably meanings.
pub mod codes {
    /// Bad request: a malformed message or argument.
    pub const BAD_REQUEST: u32 = 40000;
    /// The message is larger than `maxMessageSize`.
    pub const MESSAGE_TOO_LARGE: u32 = 40009;
    /// Data or encoding that cannot be taken (an encoding too long to be one).
    pub const INVALID_MESSAGE_DATA: u32 = 40013;
    /// The client id is missing, a wildcard where one is needed, or not the connection's.
    pub const INVALID_CLIENT_ID: u32 = 40012;
    /// Invalid channel name.
    pub const INVALID_CHANNEL_NAME: u32 = 40010;
    /// Unauthorized: wrong secret or unknown key.
    pub const UNAUTHORIZED: u32 = 40101;
    /// The client id contradicts the credentials.
    pub const INCOMPATIBLE_CREDENTIALS: u32 = 40102;
    /// A TokenRequest's timestamp is too far from the hub's clock.
    pub const TIMESTAMP_NOT_CURRENT: u32 = 40104;
    /// A TokenRequest was used already.
    pub const NONCE_REPLAYED: u32 = 40105;
    /// Token error (40140–40149 are token problems).
    pub const TOKEN_ERROR: u32 = 40140;
    /// The token has expired.
    pub const TOKEN_EXPIRED: u32 = 40142;
    /// The token is malformed or badly signed.
    pub const TOKEN_INVALID: u32 = 40144;
    /// A token error with no means to renew the token (no authUrl or authCallback).
    pub const TOKEN_NOT_RENEWABLE: u32 = 40171;
    /// The operation is refused by the credentials' capability.
    pub const CAPABILITY_REFUSED: u32 = 40160;
    /// Not found.
    pub const NOT_FOUND: u32 = 40400;
    /// Method not allowed.
    pub const METHOD_NOT_ALLOWED: u32 = 40500;
    /// Rate limit exceeded.
    pub const RATE_LIMITED: u32 = 42910;
    /// Internal error.
    pub const INTERNAL: u32 = 50000;
    /// Connection failed.
    pub const CONNECTION_FAILED: u32 = 80000;
    /// The connection has been suspended.
    pub const CONNECTION_SUSPENDED: u32 = 80002;
    /// The connection was lost (transport disconnected).
    pub const DISCONNECTED: u32 = 80003;
    /// A resume was not possible: the connection state was not found or had expired.
    pub const UNABLE_TO_RESUME: u32 = 80008;
    /// The client's `authUrl` or `authCallback` failed while it was connecting (RSA4c2).
    pub const AUTH_FAILED: u32 = 80019;
    /// The connection is closed.
    pub const CONNECTION_CLOSED: u32 = 80017;
    /// The operation needs an identified client.
    pub const IDENTIFIED_CLIENT_REQUIRED: u32 = 40161;
    /// The hub holds as many connections as it may (connection blocked, limits exceeded).
    pub const CONNECTION_LIMIT: u32 = 40150;
    /// Fatal rate limit: the connection is closed.
    pub const RATE_LIMITED_FATAL: u32 = 42920;
    /// A channel operation did not complete (a detach superseded by an attach).
    pub const CHANNEL_OPERATION_FAILED: u32 = 90000;
    /// The channel operation failed because of the channel's state.
    pub const CHANNEL_STATE: u32 = 90001;
    /// Attach timed out.
    pub const ATTACH_TIMEOUT: u32 = 90007;
    /// Too many channels on one connection.
    pub const TOO_MANY_CHANNELS: u32 = 90010;
    /// The presence operation failed.
    pub const PRESENCE_FAILED: u32 = 91000;
    /// Too many presence members on the channel.
    pub const TOO_MANY_MEMBERS: u32 = 91003;
    /// Automatic re-entry failed.
    pub const REENTRY_FAILED: u32 = 91004;
    /// Presence is out of sync because the channel is suspended.
    pub const PRESENCE_OUT_OF_SYNC: u32 = 91005;
}
