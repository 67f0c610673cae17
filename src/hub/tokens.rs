//! Ably's TokenRequest exchange (`POST /keys/:keyName/requestToken`, RSA8): an app server signs
//! a TokenRequest with its key (the `ably` SDK's `auth.createTokenRequest()`), hands it to its
//! client through `authUrl` or `authCallback`, and the client exchanges it here for a token
//! (a JWT, as `rollcall/auth`'s `createToken` makes). Apps that give their clients
//! TokenRequests, as Ably advises, then work with a rollcall hub unchanged.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use super::auth::{sign, signer, Capability, Unsigned, MAX_CLIENT_ID_BYTES};
use super::Hub;
use crate::protocol::{base64, codes, ErrorInfo};

/// How far a TokenRequest's timestamp may be from the hub's clock, either way: a request is
/// for use at once, and its nonce is remembered this long, so that it is used once.
pub(crate) const TIMESTAMP_WINDOW: u64 = 10 * 60 * 1000;
/// A token's life when the request names none (Ably's default).
const DEFAULT_TTL: u64 = 60 * 60 * 1000;
/// The longest life a request may ask for (Ably's limit).
const MAX_TTL: u64 = 24 * 60 * 60 * 1000;
/// The most nonces remembered: beyond it, the tenth nearest their end are forgotten.
const MAX_NONCES: usize = 100_000;
/// How often, at most, expired nonces are looked for (as a TokenRequest is exchanged).
const NONCE_SWEEP_EVERY: u64 = 1_000;
/// The longest nonce taken.
const MAX_NONCE: usize = 128;
/// The largest TokenRequest read, in bytes (a capability of many channels fits).
pub(crate) const MAX_TOKEN_REQUEST: usize = 64 * 1024;

/// What the exchange answers (Ably's TokenDetails).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenDetails {
    token: String,
    key_name: String,
    issued: u64,
    expires: u64,
    capability: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
}

fn bad(message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new(codes::BAD_REQUEST, 400, message)
}

/// A field as the signer wrote it into the text it signed: a number as JavaScript prints an
/// integer, a string as it is, nothing as nothing.
fn signed_text(request: &Value, field: &str) -> Result<String, ErrorInfo> {
    match request.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Number(n)) if n.is_u64() => Ok(n.to_string()),
        Some(_) => Err(bad(format!("invalid TokenRequest: {field}"))),
    }
}

impl Hub {
    /// Exchanges the TokenRequest in `body` (JSON) for a token, for the key named in its path.
    pub(super) fn request_token(
        &mut self,
        key_name: &str,
        body: &[u8],
    ) -> Result<TokenDetails, ErrorInfo> {
        let now = self.now;
        let request: Value = serde_json::from_slice(body)
            .map_err(|_| bad("a TokenRequest must be a JSON object"))?;
        if !request.is_object() {
            return Err(bad("a TokenRequest must be a JSON object"));
        }
        if request.get("keyName").and_then(Value::as_str) != Some(key_name) {
            return Err(bad("the TokenRequest's keyName is not the key in the path"));
        }
        let text = |field| signed_text(&request, field);
        let (ttl, capability, client_id) = (text("ttl")?, text("capability")?, text("clientId")?);
        let timestamp = request
            .get("timestamp")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("invalid TokenRequest: timestamp"))?;
        let nonce = text("nonce")?;
        // Remembered for the window: it is held to a length (Ably's are 16 characters).
        if !(16..=MAX_NONCE).contains(&nonce.len()) {
            return Err(bad(format!(
                "invalid TokenRequest: the nonce must be 16 to {MAX_NONCE} characters"
            )));
        }
        let mac = request
            .get("mac")
            .and_then(Value::as_str)
            .unwrap_or_default();

        // The key that signed it (any of that name, so that a secret can be rotated).
        let signed =
            format!("{key_name}\n{ttl}\n{capability}\n{client_id}\n{timestamp}\n{nonce}\n");
        let key = if self.config.development_mode() {
            // Development mode checks no secrets: tokens are not either.
            None
        } else {
            let mac = base64::decode(mac).unwrap_or_default();
            let key =
                signer(&self.config, key_name, &[signed.as_bytes()], &mac).map_err(|why| {
                    let message = match why {
                        Unsigned::UnknownKey => "invalid credentials: unknown key",
                        Unsigned::Mismatch => {
                            "invalid credentials: the TokenRequest's mac does not match its key"
                        }
                    };
                    ErrorInfo::new(codes::UNAUTHORIZED, 401, message)
                })?;
            Some(key.clone())
        };

        // Used at once, and once.
        if timestamp.abs_diff(now) > TIMESTAMP_WINDOW {
            return Err(ErrorInfo::new(
                codes::TIMESTAMP_NOT_CURRENT,
                401,
                "the TokenRequest's timestamp is not current (is a clock wrong?)",
            ));
        }
        if now >= self.nonces_swept_at {
            self.nonces_swept_at = now + NONCE_SWEEP_EVERY;
            self.forget_nonces(|until| until <= now);
        }
        // Kept by a digest: the same length whatever the names, so that it fits a storage key.
        let seen: Arc<str> = sign("", &[key_name.as_bytes(), b"\n", nonce.as_bytes()])
            .map(|digest| Arc::from(base64::encode_url_safe(&digest)))
            .ok_or_else(|| ErrorInfo::new(codes::INTERNAL, 500, "cannot digest"))?;
        if self.token_nonces.contains_key(&seen) {
            return Err(ErrorInfo::new(
                codes::NONCE_REPLAYED,
                401,
                "this TokenRequest was used already: ask for a new one",
            ));
        }
        if self.token_nonces.len() >= MAX_NONCES {
            // Full of nonces still current: a flood of TokenRequests (a public authUrl hands
            // them to anyone). Refusing every TokenRequest until they expire would lock every
            // client out; the tenth nearest their end are forgotten instead. One of those could
            // be exchanged again in what is left of its window (minutes, in a fast flood), for a
            // token with the identity its signer gave already.
            let mut untils: Vec<u64> = self.token_nonces.values().copied().collect();
            let (_, &mut nearest, _) = untils.select_nth_unstable(MAX_NONCES / 10);
            self.forget_nonces(|until| until <= nearest);
        }

        let ttl = match &*ttl {
            "" => DEFAULT_TTL,
            text => text.parse::<u64>().unwrap_or(0),
        };
        if ttl == 0 || ttl > MAX_TTL {
            return Err(bad(
                "invalid TokenRequest: ttl must be from 1 ms to 24 hours",
            ));
        }
        if client_id.len() > MAX_CLIENT_ID_BYTES || client_id.chars().any(char::is_control) {
            return Err(ErrorInfo::new(
                codes::INVALID_CLIENT_ID,
                400,
                format!("clientId must be at most {MAX_CLIENT_ID_BYTES} bytes, with no control characters"),
            ));
        }
        // What it asks for, within what the key allows: what the token says, and the answer.
        let asked = if capability.is_empty() {
            Capability::all()
        } else {
            serde_json::from_str(&capability)
                .ok()
                .and_then(|json: Value| Capability::parse(&json).ok())
                .ok_or_else(|| bad("invalid TokenRequest: capability"))?
        };
        let allowed = match &key {
            Some(key) => asked.within(&key.capability),
            None => asked,
        };
        if allowed.is_empty() {
            return Err(ErrorInfo::new(
                codes::CAPABILITY_REFUSED,
                401,
                "the TokenRequest's capability allows nothing the key does",
            ));
        }
        let capability = allowed.to_json().to_string();
        let until = timestamp.max(now) + TIMESTAMP_WINDOW;
        // Stored too, where the host keeps storage: a request exchanged before a restart (or a
        // Durable Object's eviction) is not exchanged again after it.
        if let Some(changes) = &mut self.changes {
            changes.note_nonce(&seen, Some(until));
        }
        self.token_nonces.insert(seen, until);

        // The token says when it expires in whole seconds: so does the answer, rounded up, so
        // that a ttl under a second does not give a token expired when it is made.
        let expires = (now + ttl).div_ceil(1000) * 1000;
        let mut claims = json!({
            "iat": now / 1000,
            "exp": expires / 1000,
            "x-ably-capability": capability,
        });
        if !client_id.is_empty() {
            claims["x-ably-clientId"] = Value::from(client_id.clone());
        }
        let head = json!({"alg": "HS256", "typ": "JWT", "kid": key_name});
        let head = base64::encode_url_safe(head.to_string().as_bytes());
        let body = base64::encode_url_safe(claims.to_string().as_bytes());
        let secret = key.as_ref().map_or("", |k| &*k.secret);
        let signature = sign(secret, &[head.as_bytes(), b".", body.as_bytes()])
            .ok_or_else(|| ErrorInfo::new(codes::INTERNAL, 500, "cannot sign"))?;
        let signature = base64::encode_url_safe(&signature);
        Ok(TokenDetails {
            token: format!("{head}.{body}.{signature}"),
            key_name: key_name.to_owned(),
            issued: now,
            expires,
            capability,
            client_id: (!client_id.is_empty()).then_some(client_id),
        })
    }

    /// Forgets the nonces whose `until` matches, in storage too.
    fn forget_nonces(&mut self, forget: impl Fn(u64) -> bool) {
        let changes = &mut self.changes;
        self.token_nonces.retain(|seen, until| {
            let keep = !forget(*until);
            if let (false, Some(changes)) = (keep, changes.as_mut()) {
                changes.note_nonce(seen, None);
            }
            keep
        });
    }
}
