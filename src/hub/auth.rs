//! Who a connection is and what it may do: API keys (basic auth), Ably-compatible JWT tokens
//! (HS256 signed with a key's secret, `kid` = the key's name, claims `x-ably-clientId`,
//! `x-ably-capability`, `iat`, `exp`), and capabilities per channel name or pattern.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::config::{ApiKey, HubConfig};
use super::connection::ConnectParams;
use crate::protocol::{base64, codes, flags, ErrorInfo};

/// What a connection may do on which channels: `(pattern, grants)` pairs, where a pattern is a
/// channel name, `prefix*`, or `*`, and grants are `protocol::flags` mode bits plus [`HISTORY`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Capability(Option<Vec<(String, u64)>>);

/// The grant to read a channel's presence history (REST). Not a mode: it is above the bits that
/// `ATTACH` flags carry, and [`Capability::modes_for`] leaves it out.
const HISTORY: u64 = 1 << 32;

/// Every grant.
const ALL: u64 = flags::ALL_MODES | HISTORY;

/// What a pattern's channels begin with, when it is a wildcard: `*` (every channel) or
/// `namespace:*` (every channel in a namespace), as Ably's. Any other `*` is part of a name: a
/// capability written for Ably must not grant more here (`user-1*` is not `user-10`).
fn wildcard(pattern: &str) -> Option<&str> {
    // Ably's every channel, qualified ones (`[meta]…`) included.
    if pattern == "[*]*" {
        return Some("");
    }
    match pattern.strip_suffix('*') {
        Some(prefix) if prefix.is_empty() || prefix.ends_with(':') => Some(prefix),
        _ => None,
    }
}

/// The channel names two patterns both match, as a pattern, if any.
fn intersect<'a>(a: &'a str, b: &'a str) -> Option<&'a str> {
    match (wildcard(a), wildcard(b)) {
        (None, None) => (a == b).then_some(a),
        (None, Some(prefix)) => a.starts_with(prefix).then_some(a),
        (Some(prefix), None) => b.starts_with(prefix).then_some(b),
        (Some(p), Some(q)) if p.starts_with(q) => Some(a),
        (Some(p), Some(q)) if q.starts_with(p) => Some(b),
        _ => None,
    }
}

impl Capability {
    /// Every operation on every channel (and no allocation: most connections have it).
    pub fn all() -> Self {
        Self(None)
    }

    /// Reads Ably's capability JSON: `{"room:*": ["presence", "subscribe"], "*": ["subscribe"]}`.
    pub fn parse(json: &serde_json::Value) -> Result<Self, ErrorInfo> {
        let invalid =
            || ErrorInfo::new(codes::TOKEN_INVALID, 401, "invalid capability in the token");
        let map = json.as_object().ok_or_else(invalid)?;
        let mut grants = Vec::with_capacity(map.len());
        for (pattern, operations) in map {
            let operations = operations.as_array().ok_or_else(invalid)?;
            let mut modes = 0;
            for operation in operations {
                modes |= match operation.as_str().ok_or_else(invalid)? {
                    "*" => ALL,
                    "presence" => flags::PRESENCE,
                    "subscribe" => flags::SUBSCRIBE | flags::PRESENCE_SUBSCRIBE,
                    "publish" => flags::PUBLISH,
                    "history" => HISTORY,
                    _ => 0,
                };
            }
            grants.push((pattern.clone(), modes));
        }
        Ok(Self(Some(grants)))
    }

    /// The grants on a channel: the union of every matching pattern's.
    fn grants(&self, channel: &str) -> u64 {
        let Some(grants) = &self.0 else {
            return ALL;
        };
        grants
            .iter()
            .filter(|(pattern, _)| match wildcard(pattern) {
                Some(prefix) => channel.starts_with(prefix),
                None => pattern == channel,
            })
            .fold(0, |modes, (_, m)| modes | m)
    }

    /// The modes granted on a channel (`protocol::flags`).
    pub fn modes_for(&self, channel: &str) -> u64 {
        self.grants(channel) & flags::ALL_MODES
    }

    /// Whether the channel's members may be read (REST): Ably's `subscribe`.
    pub fn allows_reading_presence(&self, channel: &str) -> bool {
        self.grants(channel) & flags::PRESENCE_SUBSCRIBE != 0
    }

    /// Whether the channel's presence history may be read (REST): Ably's `history`.
    pub fn allows_history(&self, channel: &str) -> bool {
        self.grants(channel) & HISTORY != 0
    }

    /// As Ably writes a capability: `{ pattern: [operation, ...] }`.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let Some(grants) = &self.0 else {
            return serde_json::json!({"*": ["*"]});
        };
        let mut merged = std::collections::BTreeMap::<&str, u64>::new();
        for (pattern, modes) in grants {
            *merged.entry(pattern).or_default() |= modes;
        }
        let subscribe = flags::SUBSCRIBE | flags::PRESENCE_SUBSCRIBE;
        let operations = |modes: u64| -> Vec<&str> {
            if modes & ALL == ALL {
                return vec!["*"];
            }
            [
                (flags::PRESENCE, "presence"),
                (subscribe, "subscribe"),
                (flags::PUBLISH, "publish"),
                (HISTORY, "history"),
            ]
            .into_iter()
            .filter(|(bits, _)| modes & bits == *bits)
            .map(|(_, name)| name)
            .collect()
        };
        merged
            .into_iter()
            .map(|(pattern, modes)| (pattern.to_owned(), serde_json::json!(operations(modes))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// Whether it allows nothing at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_some_and(Vec::is_empty)
    }

    /// What both allow: a token may grant no more than the key that signed it.
    pub fn within(self, limit: &Capability) -> Capability {
        let Some(limit) = &limit.0 else {
            return self;
        };
        let Some(own) = self.0 else {
            return Capability(Some(limit.clone()));
        };
        let mut both = Vec::new();
        for (a, m) in &own {
            for (b, n) in limit {
                if let Some(pattern) = intersect(a, b).filter(|_| m & n != 0) {
                    both.push((pattern.to_owned(), m & n));
                }
            }
        }
        Capability(Some(both))
    }
}

/// The longest clientId, in bytes: it is part of the key under which a member is stored, and
/// durable storage bounds keys (2 KiB on Cloudflare), with a channel name of up to 1 KiB.
pub(crate) const MAX_CLIENT_ID_BYTES: usize = 512;

/// Why a clientId a connection or a member asks for cannot be had, if it cannot (40012).
pub(crate) fn invalid_client_id(id: &str) -> Option<ErrorInfo> {
    if id.len() > MAX_CLIENT_ID_BYTES {
        return Some(ErrorInfo::new(
            codes::INVALID_CLIENT_ID,
            400,
            format!("clientId must be at most {MAX_CLIENT_ID_BYTES} bytes"),
        ));
    }
    (id.is_empty() || id == "*" || id.chars().any(char::is_control)).then(|| {
        ErrorInfo::new(
            codes::INVALID_CLIENT_ID,
            400,
            "clientId must be a non-empty string other than *, with no control characters",
        )
    })
}

/// The outcome of checking a connection's credentials.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    /// `None` for an anonymous connection, `*` for one that may act as any client.
    pub(crate) client_id: Option<Arc<str>>,
    pub(crate) capability: Capability,
    /// When the token expires, in milliseconds since the epoch.
    pub(crate) expires: Option<u64>,
    /// When the token was issued, in milliseconds since the epoch.
    pub(crate) issued: Option<u64>,
    /// Whose places (`maxConnectionsPerClient`) a token's connection takes: the clientId it
    /// names, or for a token that names none or `*` the token itself, so that one such token
    /// cannot spread over as many clientIds as it likes. `None` for keys.
    pub(crate) counts_as: Option<Arc<str>>,
}

/// The configured key that `appId.keyId:secret` names, if the secret is right.
pub(crate) fn known_key<'a>(config: &'a HubConfig, text: &str) -> Option<&'a ApiKey> {
    let key = ApiKey::parse(text)?;
    config
        .keys
        .iter()
        .find(|c| c.name == key.name && same_secret(&c.secret, &key.secret))
}

/// Why no key signed something (see [`signer`]).
pub(crate) enum Unsigned {
    /// No key has that name.
    UnknownKey,
    /// Keys have that name, and none of their secrets made the signature.
    Mismatch,
}

/// The key named `name` whose secret made `mac` (HMAC-SHA256) of `parts`, one after another.
/// Every key of that name is tried, so that a key's secret can be rotated under its name.
pub(crate) fn signer<'a>(
    config: &'a HubConfig,
    name: &str,
    parts: &[&[u8]],
    mac: &[u8],
) -> Result<&'a ApiKey, Unsigned> {
    let mut named = config.keys.iter().filter(|k| &*k.name == name).peekable();
    if named.peek().is_none() {
        return Err(Unsigned::UnknownKey);
    }
    named
        .find(|key| {
            Hmac::<Sha256>::new_from_slice(key.secret.as_bytes()).is_ok_and(|mut m| {
                parts.iter().for_each(|part| m.update(part));
                m.verify_slice(mac).is_ok()
            })
        })
        .ok_or(Unsigned::Mismatch)
}

/// The HMAC-SHA256 of `parts`, one after another, with `secret` (HMAC takes a key of any
/// length: `None` does not happen).
pub(crate) fn sign(secret: &str, parts: &[&[u8]]) -> Option<Vec<u8>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    parts.iter().for_each(|part| mac.update(part));
    Some(mac.finalize().into_bytes().to_vec())
}

/// Compares secrets in time that depends on their length only, so that timing does not tell
/// how much of a guess was right.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

fn token_error(code: u32, message: &str) -> ErrorInfo {
    ErrorInfo::new(code, 401, message)
}

/// Checks the credentials of a connect query.
pub(crate) fn authenticate(
    config: &HubConfig,
    params: &ConnectParams,
    now: u64,
) -> Result<Identity, ErrorInfo> {
    if let Some(error) = params.client_id.as_deref().and_then(invalid_client_id) {
        return Err(error);
    }
    let requested = params.client_id.as_deref().map(Arc::from);
    if let Some(token) = params.access_token.as_deref() {
        let identity = verify_token(config, token, now)?;
        return resolve_client(identity, requested);
    }
    if !config.development_mode() {
        let Some(key) = params.key.as_deref() else {
            return Err(token_error(
                codes::UNAUTHORIZED,
                "no credentials: this hub needs a key or a token",
            ));
        };
        let Some(key) = known_key(config, key) else {
            return Err(token_error(
                codes::UNAUTHORIZED,
                "invalid credentials: unknown key or wrong secret",
            ));
        };
        return Ok(Identity {
            client_id: Some(requested.unwrap_or_else(|| Arc::from("*"))),
            capability: key.capability.clone(),
            expires: None,
            issued: None,
            counts_as: None,
        });
    }
    Ok(Identity {
        client_id: Some(requested.unwrap_or_else(|| Arc::from("*"))),
        capability: Capability::all(),
        expires: None,
        issued: None,
        counts_as: None,
    })
}

/// A token that names a client id binds the connection to it (40102 if the query names another);
/// a token without one makes an anonymous connection unless it grants `*`.
fn resolve_client(
    mut identity: Identity,
    requested: Option<Arc<str>>,
) -> Result<Identity, ErrorInfo> {
    identity.client_id = match (identity.client_id.take(), requested) {
        (Some(granted), Some(asked)) if &*granted == "*" => Some(asked),
        (Some(granted), Some(asked)) if granted != asked => {
            return Err(token_error(
                codes::INCOMPATIBLE_CREDENTIALS,
                "the clientId contradicts the token's clientId",
            ));
        }
        (Some(granted), _) => Some(granted),
        (None, Some(_)) => {
            return Err(token_error(
                codes::INCOMPATIBLE_CREDENTIALS,
                "the token names no clientId, so the connection cannot take one",
            ));
        }
        (None, None) => None,
    };
    Ok(identity)
}

/// Verifies an Ably JWT. In development mode the signature is not checked (there are no
/// secrets), but the token must still be well formed and current.
pub(crate) fn verify_token(
    config: &HubConfig,
    token: &str,
    now: u64,
) -> Result<Identity, ErrorInfo> {
    let malformed = |why: &str| token_error(codes::TOKEN_INVALID, &format!("invalid token: {why}"));
    let mut parts = token.split('.');
    let (Some(head), Some(body), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("a JWT has three parts"));
    };
    let decode = |part: &str| -> Result<serde_json::Value, ErrorInfo> {
        let bytes = base64::decode(part).ok_or_else(|| malformed("not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|_| malformed("not JSON"))
    };
    let header = decode(head)?;
    let claims = decode(body)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(malformed("only HS256 is supported"));
    }
    let mut signer = None;
    if !config.development_mode() {
        let kid = header
            .get("kid")
            .and_then(|k| k.as_str())
            .ok_or_else(|| malformed("no kid"))?;
        let decoded = base64::decode(signature);
        let parts: [&[u8]; 3] = [head.as_bytes(), b".", body.as_bytes()];
        signer = Some(
            match self::signer(config, kid, &parts, decoded.as_deref().unwrap_or_default()) {
                Ok(key) => key,
                Err(Unsigned::UnknownKey) => {
                    return Err(token_error(
                        codes::UNAUTHORIZED,
                        "invalid credentials: unknown key",
                    ))
                }
                Err(Unsigned::Mismatch) if decoded.is_none() => {
                    return Err(malformed("bad signature"))
                }
                Err(Unsigned::Mismatch) => return Err(malformed("signature does not match")),
            },
        );
    }

    let seconds = |name: &str| claims.get(name).and_then(serde_json::Value::as_f64);
    let expires = seconds("exp").ok_or_else(|| malformed("no exp"))?;
    let expires = (expires * 1000.0) as u64;
    if expires <= now {
        return Err(token_error(codes::TOKEN_EXPIRED, "token expired"));
    }
    // Ably's required claims: when it was issued, and (below) what it allows.
    let issued = seconds("iat").ok_or_else(|| malformed("iat must be specified"))?;
    let issued = Some((issued * 1000.0) as u64);
    let client_id: Option<Arc<str>> = match claims.get("x-ably-clientId") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(id)) if id.len() > MAX_CLIENT_ID_BYTES => {
            return Err(malformed(&format!(
                "x-ably-clientId is longer than {MAX_CLIENT_ID_BYTES} bytes"
            )));
        }
        Some(serde_json::Value::String(id)) if !id.is_empty() => {
            // As one asked for in the query is held (the wildcard apart): control characters
            // would also reach into the names places are counted under.
            if let Some(error) = invalid_client_id(id).filter(|_| id != "*") {
                return Err(error);
            }
            Some(Arc::from(id.as_str()))
        }
        Some(_) => return Err(malformed("x-ably-clientId must be a string")),
    };
    let capability = match claims.get("x-ably-capability") {
        None | Some(serde_json::Value::Null) => {
            return Err(malformed("x-ably-capability must be specified"));
        }
        // Ably puts the capability in the claim as JSON text.
        Some(serde_json::Value::String(text)) => {
            let json =
                serde_json::from_str(text).map_err(|_| malformed("capability is not JSON"))?;
            Capability::parse(&json)?
        }
        Some(json) => Capability::parse(json)?,
    };
    // A token may grant no more than the key that signed it.
    let capability = match signer {
        Some(key) => capability.within(&key.capability),
        None => capability,
    };
    // A token that names no one client is counted as itself (by its signature, which differs
    // for every token issued, renewals included: each renewal is counted as it connects). By
    // the signature's bytes, not its text: base64 has two spellings of some of them.
    let counts_as = match (&client_id, signer) {
        // Per app (the key name's `appId`), as clientIds are: apps that share a hub do not
        // share the places of their users who happen to have the same clientId.
        (Some(id), Some(key)) if &**id != "*" => {
            let app = key.name.split('.').next().unwrap_or_default();
            Arc::from(format!("{app}{APP_OF_CLIENT}{id}"))
        }
        (Some(id), None) if &**id != "*" => id.clone(),
        _ => {
            let mut name = String::from(TOKEN_PLACES);
            // Its app too, so that such a token of one app neither resumes nor renews another
            // app's connection (see `other_app`).
            if let Some(key) = signer {
                name.push_str(key.name.split('.').next().unwrap_or_default());
                name.push(APP_OF_CLIENT);
            }
            match base64::decode(signature) {
                Some(bytes) => {
                    for b in bytes.iter().take(16) {
                        name.push_str(&format!("{b:02x}"));
                    }
                }
                None => name.push_str(signature.get(..22).unwrap_or(signature)),
            }
            Arc::from(name)
        }
    };
    Ok(Identity {
        client_id,
        capability,
        expires: Some(expires),
        issued,
        counts_as: Some(counts_as),
    })
}

/// What begins the name under which a token that names no one client is counted (no clientId
/// a client asks for can begin with it).
pub(crate) const TOKEN_PLACES: &str = "\0token ";

/// Between the app and the clientId in the name a token's places are counted under (a character
/// no clientId has).
pub(crate) const APP_OF_CLIENT: char = '\u{1}';

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_match_names_and_patterns() {
        let json = serde_json::json!({"room:*": ["presence", "subscribe"], "lobby": ["subscribe"], "other": ["history"]});
        let c = Capability::parse(&json).unwrap();
        assert_eq!(
            c.modes_for("room:1"),
            flags::PRESENCE | flags::SUBSCRIBE | flags::PRESENCE_SUBSCRIBE
        );
        assert_eq!(
            c.modes_for("lobby"),
            flags::SUBSCRIBE | flags::PRESENCE_SUBSCRIBE
        );
        assert_eq!(c.modes_for("lobby2"), 0);
        assert_eq!(c.modes_for("other"), 0);
        assert!(c.allows_history("other"));
        assert!(!c.allows_history("room:1"));
        assert!(c.allows_reading_presence("lobby"));
        assert!(!c.allows_reading_presence("other"));
        assert_eq!(Capability::all().modes_for("anything"), flags::ALL_MODES);
        assert!(Capability::all().allows_history("anything"));
        assert!(Capability::parse(&serde_json::json!(["x"])).is_err());
    }

    #[test]
    fn only_a_whole_star_or_a_namespace_star_is_a_wildcard_as_on_ably() {
        let c = Capability::parse(&serde_json::json!({"user-1*": ["*"], "team:*": ["subscribe"]}))
            .unwrap();
        assert_eq!(
            c.modes_for("user-1*"),
            flags::ALL_MODES,
            "a name with a star in it"
        );
        for other in ["user-10", "user-1-private", "user-1"] {
            assert_eq!(c.modes_for(other), 0, "{other}");
        }
        assert_ne!(c.modes_for("team:red"), 0);
        assert_ne!(c.modes_for("team:red:blue"), 0);
        assert_eq!(c.modes_for("teams"), 0);
        // Within a key that names `user-1*` only, a token asking for `*` gets that one name.
        let key = Capability::parse(&serde_json::json!({"user-1*": ["*"]})).unwrap();
        let token = Capability::parse(&serde_json::json!({"*": ["*"]})).unwrap();
        let both = token.within(&key);
        assert_eq!(both.modes_for("user-1*"), flags::ALL_MODES);
        assert_eq!(both.modes_for("user-10"), 0);
        // Ably's `[*]*`: every channel, qualified or not; within a namespace key, that namespace.
        let every = Capability::parse(&serde_json::json!({"[*]*": ["presence"]})).unwrap();
        for name in ["room", "team:red", "[meta]log"] {
            assert_eq!(every.modes_for(name), flags::PRESENCE, "{name}");
        }
        let team = Capability::parse(&serde_json::json!({"team:*": ["*"]})).unwrap();
        let both = every.within(&team);
        assert_eq!(both.modes_for("team:red"), flags::PRESENCE);
        assert_eq!(both.modes_for("room"), 0);
    }

    #[test]
    fn a_capability_within_another_allows_only_what_both_do() {
        let cap = |json| Capability::parse(&json).unwrap();
        let key = cap(serde_json::json!({"room:*": ["presence", "subscribe"], "lobby": ["*"]}));
        let token = cap(serde_json::json!({"*": ["*"], "room:1": ["history"]}));
        let both = token.within(&key);
        for (channel, modes, history) in [
            (
                "room:1",
                flags::PRESENCE | flags::SUBSCRIBE | flags::PRESENCE_SUBSCRIBE,
                false,
            ),
            (
                "room:2",
                flags::PRESENCE | flags::SUBSCRIBE | flags::PRESENCE_SUBSCRIBE,
                false,
            ),
            ("lobby", flags::ALL_MODES, true),
            ("lobby2", 0, false),
            ("secret", 0, false),
        ] {
            assert_eq!(both.modes_for(channel), modes, "{channel}");
            assert_eq!(both.allows_history(channel), history, "{channel}");
        }
        // Prefixes narrow to the longer; an unrestricted side leaves the other as it is.
        let narrow = cap(serde_json::json!({"room:1:*": ["subscribe"]}))
            .within(&cap(serde_json::json!({"room:*": ["*"]})));
        assert_eq!(
            narrow.modes_for("room:1:2"),
            flags::SUBSCRIBE | flags::PRESENCE_SUBSCRIBE
        );
        assert_eq!(narrow.modes_for("room:2"), 0);
        assert_eq!(Capability::all().within(&key), key);
        assert_eq!(key.clone().within(&Capability::all()), key);
    }
}
