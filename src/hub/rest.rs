//! The REST reads, as ably-js calls them: `GET /time`, `GET /channels/:name/presence`,
//! `GET /channels/:name/presence/history` and `GET /presence?channels=a,b` (batch presence), with
//! `Link` pagination, envelopes, JSON or msgpack bodies, and CORS.
//! Request in, response out: both hosts serve them through the same code.

use std::fmt::Write as _;

use percent_encoding::percent_decode_str;
use serde::Serialize;

use alloc::sync::Arc;

use super::connection::RateLimit;
use super::{Capability, Hub};
use crate::presence::MemberKey;
use crate::protocol::{base64, codes, ErrorInfo, PresenceMessage};

/// An HTTP request as the hub needs it.
#[derive(Clone, Copy, Debug)]
pub struct RestRequest<'a> {
    /// `GET`, `OPTIONS`, ...
    pub method: &'a str,
    /// The path and query as received, such as `/channels/room/presence?limit=10`.
    pub url: &'a str,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The `Accept` header.
    pub accept: Option<&'a str>,
    /// The `Origin` header (a browser on another origin).
    pub origin: Option<&'a str>,
    /// The body, for a `POST` (a TokenRequest to exchange); empty otherwise. A host reads at
    /// most [`MAX_REQUEST_BODY`] bytes of it.
    pub body: &'a [u8],
}

/// The largest request body a host need read: a TokenRequest.
pub const MAX_REQUEST_BODY: usize = super::tokens::MAX_TOKEN_REQUEST;

/// An HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestResponse {
    /// The HTTP status.
    pub status: u16,
    /// Headers, CORS included.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// The most items one page may hold.
const MAX_LIMIT: usize = 1000;
/// The page size when the request names none.
const DEFAULT_LIMIT: usize = 100;
/// The most channels one batch presence read may name.
const MAX_BATCH_CHANNELS: usize = 100;
/// The most bytes of members one batch presence read answers with (counted as a page's are):
/// a channel whose members do not fit in what is left is answered with 40009, to be read on
/// its own, page by page.
const MAX_BATCH_BYTES: usize = 4 * MAX_PAGE_BYTES;

/// The parameters of a paged read.
#[derive(Debug, Default)]
struct Query {
    limit: usize,
    forwards: bool,
    start: Option<i64>,
    end: Option<i64>,
    /// Where the page starts: after a history event's number, or after a member
    /// (`connectionId:clientId`).
    cursor: Option<String>,
    client_id: Option<String>,
    connection_id: Option<String>,
    /// History up to this channel serial only (`from_serial`: Ably's clients send the serial
    /// of the channel's ATTACHED for `history({ untilAttach: true })`).
    from_serial: Option<String>,
    /// Parameters the hub does not read (a host's, such as the edge's `shard`): carried into
    /// the links, so that a next page is read where this one was.
    other: Vec<(String, String)>,
}

impl Query {
    fn parse(query: &str) -> Result<Self, ErrorInfo> {
        let mut q = Self {
            limit: DEFAULT_LIMIT,
            ..Self::default()
        };
        let bad = |what: &str| ErrorInfo::new(codes::BAD_REQUEST, 400, format!("invalid {what}"));
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*name {
                "limit" => {
                    let limit: usize = value.parse().map_err(|_| bad("limit"))?;
                    q.limit = limit.clamp(1, MAX_LIMIT);
                }
                "direction" => match &*value {
                    "forwards" => q.forwards = true,
                    "backwards" => q.forwards = false,
                    _ => return Err(bad("direction")),
                },
                "start" => q.start = Some(value.parse().map_err(|_| bad("start"))?),
                "end" => q.end = Some(value.parse().map_err(|_| bad("end"))?),
                "cursor" => q.cursor = Some(value.into_owned()),
                // Empty, as `ably` sends a filter of `null` or `''`: no filter, as the
                // realtime `get()` of both clients takes it (no member has an empty id).
                "clientId" => q.client_id = Some(value.into_owned()).filter(|v| !v.is_empty()),
                "connectionId" => {
                    q.connection_id = Some(value.into_owned()).filter(|v| !v.is_empty());
                }
                "from_serial" => q.from_serial = Some(value.into_owned()),
                // A link's own parameters are written anew.
                "envelope" | "format" => {}
                _ => q.other.push((name.into_owned(), value.into_owned())),
            }
        }
        Ok(q)
    }

    /// The relative link to a page of `resource` (`presence` or `history`).
    fn link(&self, resource: &str, cursor: Option<&str>, rel: &str) -> String {
        let mut url = form_urlencoded::Serializer::new(String::new());
        url.append_pair("limit", &self.limit.to_string());
        if resource == "history" {
            url.append_pair(
                "direction",
                if self.forwards {
                    "forwards"
                } else {
                    "backwards"
                },
            );
        }
        if let Some(start) = self.start {
            url.append_pair("start", &start.to_string());
        }
        if let Some(end) = self.end {
            url.append_pair("end", &end.to_string());
        }
        if let Some(client_id) = &self.client_id {
            url.append_pair("clientId", client_id);
        }
        if let Some(connection_id) = &self.connection_id {
            url.append_pair("connectionId", connection_id);
        }
        if let Some(serial) = &self.from_serial {
            url.append_pair("from_serial", serial);
        }
        for (name, value) in &self.other {
            url.append_pair(name, value);
        }
        if let Some(cursor) = cursor {
            url.append_pair("cursor", cursor);
        }
        // A space as %20, not the form encoding's `+`: Ably's clients read links with
        // decodeURIComponent, which leaves `+` as it is (a clientId with a space would page
        // from the wrong place, or filter on the wrong id). A `+` of the text is %2B either way.
        let query = url.finish().replace('+', "%20");
        format!("<./{resource}?{query}>; rel=\"{rel}\"")
    }

    fn links(&self, resource: &str, next: Option<&str>) -> String {
        let mut links = self.link(resource, None, "first");
        let current = self.link(resource, self.cursor.as_deref(), "current");
        let _ = write!(links, ", {current}");
        if let Some(next) = next {
            let _ = write!(links, ", {}", self.link(resource, Some(next), "next"));
        }
        links
    }
}

fn bad_cursor() -> ErrorInfo {
    ErrorInfo::new(codes::BAD_REQUEST, 400, "invalid cursor")
}

/// The headers every hub response carries, so that browsers on other origins may read it. A
/// request with an `Origin` is answered for that origin, with credentials allowed: Ably's
/// clients send their `Authorization` as a credentialed request, which a browser refuses to
/// read under `*`. The hub sets and reads no cookies, so that allows nothing more.
fn cors(origin: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers = match origin {
        Some(origin) => vec![
            ("access-control-allow-origin", origin.to_owned()),
            ("access-control-allow-credentials", "true".to_owned()),
        ],
        None => vec![("access-control-allow-origin", "*".to_owned())],
    };
    // Either way: the answer depends on it, so a cache must not give one origin's to another.
    headers.push(("vary", "Origin".to_owned()));
    headers.extend([
        (
            "access-control-allow-methods",
            "GET, POST, OPTIONS".to_owned(),
        ),
        (
            "access-control-allow-headers",
            "authorization, accept, content-type, x-ably-version, ably-agent, x-ably-clientid"
                .to_owned(),
        ),
        (
            "access-control-expose-headers",
            "link, x-ably-errorcode, x-ably-errormessage".to_owned(),
        ),
    ]);
    headers
}

/// How a response is written: JSON or msgpack (as the request's `Accept` or `envelope` asks),
/// bare or inside an envelope (`{ statusCode, headers, response }`, for clients that cannot read
/// headers).
#[derive(Clone, Copy, Debug)]
struct Shape {
    msgpack: bool,
    envelope: bool,
}

impl Shape {
    fn of(query: &str, accept: Option<&str>) -> Self {
        let envelope = form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "envelope")
            .map(|(_, value)| value.into_owned());
        let msgpack = match envelope.as_deref() {
            Some("msgpack") => true,
            Some(_) => false,
            None => accept.is_some_and(|a| a.contains("application/x-msgpack")),
        };
        Self {
            msgpack,
            envelope: matches!(envelope.as_deref(), Some("json" | "msgpack")),
        }
    }

    fn encode<T: Serialize>(self, value: &T) -> Vec<u8> {
        if self.msgpack {
            rmp_serde::to_vec_named(value).unwrap_or_default()
        } else {
            serde_json::to_vec(value).unwrap_or_default()
        }
    }

    fn respond<T: Serialize>(self, status: u16, body: &T, link: Option<String>) -> RestResponse {
        let mut headers = Vec::new();
        let content_type = if self.msgpack {
            "application/x-msgpack"
        } else {
            "application/json"
        };
        headers.push(("content-type", content_type.to_owned()));
        let body = if self.envelope {
            #[derive(Serialize)]
            struct Envelope<'a, T> {
                #[serde(rename = "statusCode")]
                status_code: u16,
                headers: EnvelopeHeaders,
                response: &'a T,
            }
            #[derive(Serialize)]
            struct EnvelopeHeaders {
                #[serde(skip_serializing_if = "Option::is_none")]
                link: Option<String>,
            }
            self.encode(&Envelope {
                status_code: status,
                headers: EnvelopeHeaders { link },
                response: body,
            })
        } else {
            if let Some(link) = link {
                headers.push(("link", link));
            }
            self.encode(body)
        };
        RestResponse {
            status: if self.envelope { 200 } else { status },
            headers,
            body,
        }
    }

    fn error(self, error: &ErrorInfo) -> RestResponse {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a ErrorInfo,
        }
        let mut response = self.respond(error.status_code, &Body { error }, None);
        response
            .headers
            .push(("x-ably-errorcode", error.code.to_string()));
        // A header carries printable ASCII only (a channel name in the message may hold
        // anything); the body has the message as it is.
        let printable = error
            .message
            .chars()
            .map(|c| {
                if c == ' ' || c.is_ascii_graphic() {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        response.headers.push(("x-ably-errormessage", printable));
        response
    }
}

/// What one reader (a key, a token's user) may be sent by REST reads, in KiB a second, and at
/// once: four batch reads of a hundred channels at their largest, and then 16 MiB a second.
const REST_KIB_PER_SECOND: u32 = 16 * 1024;
const REST_KIB_BURST: u32 = 64 * 1024;

impl Hub {
    pub(super) fn rest(&mut self, request: &RestRequest<'_>) -> Option<RestResponse> {
        let mut response = self.answer(request)?;
        let mut headers = cors(request.origin);
        headers.append(&mut response.headers);
        response.headers = headers;
        Some(response)
    }

    fn answer(&mut self, request: &RestRequest<'_>) -> Option<RestResponse> {
        let (path, query) = request.url.split_once('?').unwrap_or((request.url, ""));
        let route = Route::of(path)?;
        let shape = Shape::of(query, request.accept);
        if request.method == "OPTIONS" {
            return Some(RestResponse {
                status: 204,
                headers: Vec::new(),
                body: Vec::new(),
            });
        }
        if let Route::RequestToken(key_name) = &route {
            if request.method != "POST" {
                let error = ErrorInfo::new(
                    codes::METHOD_NOT_ALLOWED,
                    405,
                    "a TokenRequest is sent with POST",
                );
                return Some(shape.error(&error));
            }
            return Some(match self.request_token(key_name, request.body) {
                Ok(details) => shape.respond(200, &details, None),
                Err(error) => shape.error(&error),
            });
        }
        if request.method != "GET" && request.method != "HEAD" {
            let error = ErrorInfo::new(codes::METHOD_NOT_ALLOWED, 405, "only GET is supported");
            return Some(shape.error(&error));
        }
        // Credentials first: what a request without them is told depends on nothing else (the
        // edge host answers such requests without waking a shard).
        let (capability, reader) = match route {
            Route::Time => (Capability::all(), None),
            _ => match self.authorize_rest(request.authorization) {
                Ok((capability, reader)) => (capability, Some(reader)),
                Err(error) => return Some(shape.error(&error)),
            },
        };
        // What each reader is sent is held to a budget, as what a connection sends is: a read
        // of 400 bytes (a hundred channels' members) can cost megabytes to answer.
        if let Some(reader) = &reader {
            if !self.rest_budget_allows(reader) {
                let error = ErrorInfo::new(
                    codes::RATE_LIMITED,
                    429,
                    format!(
                        "rate limit exceeded: REST reads of more than {} MiB a second",
                        REST_KIB_PER_SECOND / 1024
                    ),
                );
                return Some(shape.error(&error));
            }
        }
        let result = Query::parse(query).and_then(|q| {
            let refused = |what: &str, name: &str| {
                ErrorInfo::new(
                    codes::CAPABILITY_REFUSED,
                    401,
                    format!("the credentials do not allow reading the {what} of channel {name}"),
                )
            };
            Ok(match route {
                Route::Time => shape.respond(200, &[self.now], None),
                Route::Presence(name) if !capability.allows_reading_presence(&name) => {
                    return Err(refused("presence", &name))
                }
                Route::History(name) if !capability.allows_history(&name) => {
                    return Err(refused("presence history", &name))
                }
                Route::Presence(name) => self.rest_presence(&name, &q, shape)?,
                Route::History(name) => self.rest_history(&name, &q, shape)?,
                Route::BatchPresence => self.rest_batch_presence(query, &capability, shape)?,
                Route::NotFound | Route::RequestToken(_) => {
                    shape.error(&ErrorInfo::new(codes::NOT_FOUND, 404, "no such resource"))
                }
            })
        });
        let response = result.unwrap_or_else(|error| shape.error(&error));
        if let Some(reader) = reader {
            self.charge_rest(reader, response.body.len());
        }
        Some(response)
    }

    /// Whether `reader` may be answered now: it owes nothing of its REST budget.
    fn rest_budget_allows(&mut self, reader: &Arc<str>) -> bool {
        let now = self.now;
        self.rest_budgets
            .get_mut(reader)
            .is_none_or(|budget| budget.in_credit(now, REST_KIB_PER_SECOND, REST_KIB_BURST))
    }

    /// Takes an answer of `bytes` from `reader`'s REST budget (it may go into debt: an answer
    /// is not cut short). Readers whose budgets are whole again are forgotten, once there are
    /// many, each time their number doubles (not at every new reader, which would make many
    /// readers quadratic).
    fn charge_rest(&mut self, reader: Arc<str>, bytes: usize) {
        let now = self.now;
        let readers = self.rest_budgets.len();
        if readers >= 1_024 && readers.is_power_of_two() && !self.rest_budgets.contains_key(&reader)
        {
            self.rest_budgets
                .retain(|_, budget| !budget.whole(now, REST_KIB_PER_SECOND, REST_KIB_BURST));
        }
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        self.rest_budgets
            .entry(reader)
            .or_insert_with(|| RateLimit::new(now, REST_KIB_BURST))
            .spend(now, REST_KIB_PER_SECOND, REST_KIB_BURST, kib);
    }

    /// What the request's credentials allow: `Basic` with a key, or `Bearer` with a token
    /// (base64-encoded, as the `ably` client sends it, or as it is); and whose REST budget its
    /// answer is taken from (the key's, the token's user's; in development mode, without
    /// credentials, everyone's one).
    fn authorize_rest(
        &self,
        authorization: Option<&str>,
    ) -> Result<(Capability, Arc<str>), ErrorInfo> {
        let unauthorized = |why: &str| ErrorInfo::new(codes::UNAUTHORIZED, 401, why.to_owned());
        let Some(header) = authorization else {
            return if self.config.development_mode() {
                Ok((Capability::all(), Arc::from("")))
            } else {
                Err(unauthorized("no credentials"))
            };
        };
        // The scheme's name is case-insensitive (RFC 9110), and may be followed by more than
        // one space.
        let header = header.trim();
        let (scheme, encoded) = header
            .split_once(' ')
            .map_or((header, ""), |(s, e)| (s, e.trim()));
        if scheme.eq_ignore_ascii_case("Bearer") {
            let token = base64::decode(encoded)
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_else(|| encoded.to_owned());
            let identity = super::auth::verify_token(&self.config, &token, self.now)?;
            let reader = identity
                .counts_as
                .or(identity.client_id)
                .unwrap_or_else(|| Arc::from(""));
            return Ok((identity.capability, reader));
        }
        if !scheme.eq_ignore_ascii_case("Basic") {
            return Err(unauthorized(
                "unsupported authorization: use Basic with a key or Bearer with a token",
            ));
        }
        if self.config.development_mode() {
            return Ok((Capability::all(), Arc::from("")));
        }
        let key = base64::decode(encoded)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| unauthorized("malformed credentials"))?;
        super::auth::known_key(&self.config, &key)
            .map(|k| (k.capability.clone(), k.name.clone()))
            .ok_or_else(|| unauthorized("invalid credentials: unknown key or wrong secret"))
    }

    fn rest_presence(
        &self,
        name: &str,
        q: &Query,
        shape: Shape,
    ) -> Result<RestResponse, ErrorInfo> {
        // After the last member of the page before (connection ids hold no `:`), wherever the
        // members that came or went since have moved the rest.
        let after = match q.cursor.as_deref().map(|c| c.split_once(':')) {
            None => MemberKey {
                client_id: Arc::from(""),
                connection_id: Arc::from(""),
            },
            Some(Some((connection_id, client_id))) => MemberKey {
                client_id: Arc::from(client_id),
                connection_id: Arc::from(connection_id),
            },
            Some(None) => return Err(bad_cursor()),
        };
        let matching: Vec<&PresenceMessage> = self
            .channels
            .get(name)
            .map(|c| {
                c.members
                    .members_after(&after)
                    .filter(|m| {
                        q.client_id
                            .as_deref()
                            .is_none_or(|id| m.client_id.as_deref() == Some(id))
                    })
                    .filter(|m| {
                        q.connection_id
                            .as_deref()
                            .is_none_or(|id| m.connection_id.as_deref() == Some(id))
                    })
                    .take(q.limit + 1)
                    .collect()
            })
            .unwrap_or_default();
        let fits = page_len(matching.iter().copied(), q.limit);
        let more = matching.len() > fits;
        let page: Vec<&PresenceMessage> = matching.into_iter().take(fits).collect();
        let next = page.last().filter(|_| more).map(|m| {
            let connection_id = m.connection_id.as_deref().unwrap_or_default();
            format!(
                "{connection_id}:{}",
                m.client_id.as_deref().unwrap_or_default()
            )
        });
        Ok(shape.respond(200, &page, Some(q.links("presence", next.as_deref()))))
    }

    /// Ably's batch presence (`GET /presence?channels=a,b`): each channel named (once, however
    /// often named) with its members (the first [`MAX_LIMIT`], within [`MAX_BATCH_BYTES`] in
    /// all), or why they may not be read.
    fn rest_batch_presence(
        &self,
        query: &str,
        capability: &Capability,
        shape: Shape,
    ) -> Result<RestResponse, ErrorInfo> {
        #[derive(Serialize)]
        #[serde(untagged)]
        enum Item<'a> {
            Members {
                channel: &'a str,
                presence: Vec<&'a PresenceMessage>,
            },
            Refused {
                channel: &'a str,
                error: ErrorInfo,
            },
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Batch<'a> {
            success_count: usize,
            failure_count: usize,
            results: Vec<Item<'a>>,
        }
        let bad = |why: String| ErrorInfo::new(codes::BAD_REQUEST, 400, why);
        let too_many = || {
            bad(format!(
                "at most {MAX_BATCH_CHANNELS} channels in one batch presence read"
            ))
        };
        let mut names: Vec<String> = Vec::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if name == "channels" {
                for channel in value.split(',').filter(|n| !n.is_empty()) {
                    if !names.iter().any(|n| n == channel) {
                        // Refused as soon as it names too many: each is compared with those
                        // before it.
                        if names.len() == MAX_BATCH_CHANNELS {
                            return Err(too_many());
                        }
                        names.push(channel.to_owned());
                    }
                }
            }
        }
        if names.is_empty() {
            return Err(bad("name the channels: ?channels=a,b".to_owned()));
        }
        let first = MemberKey {
            client_id: Arc::from(""),
            connection_id: Arc::from(""),
        };
        let mut left = MAX_BATCH_BYTES;
        let results: Vec<Item<'_>> = names
            .iter()
            .map(|name| {
                if !capability.allows_reading_presence(name) {
                    return Item::Refused {
                        channel: name,
                        error: ErrorInfo::new(
                            codes::CAPABILITY_REFUSED,
                            401,
                            format!("the credentials do not allow reading the presence of channel {name}"),
                        ),
                    };
                }
                let presence: Vec<&PresenceMessage> = self
                    .channels
                    .get(name.as_str())
                    .map(|c| c.members.members_after(&first).take(MAX_LIMIT).collect())
                    .unwrap_or_default();
                let bytes: usize = presence
                    .iter()
                    .map(|m| super::channel::history_bytes(m) as usize)
                    .sum();
                if bytes > left {
                    return Item::Refused {
                        channel: name,
                        error: ErrorInfo::new(
                            codes::MESSAGE_TOO_LARGE,
                            400,
                            format!(
                                "the members of channel {name} do not fit in this batch read: \
                                 read them on their own (GET /channels/:name/presence)"
                            ),
                        ),
                    };
                }
                left -= bytes;
                Item::Members {
                    channel: name,
                    presence,
                }
            })
            .collect();
        let failure_count = results
            .iter()
            .filter(|r| matches!(r, Item::Refused { .. }))
            .count();
        let batch = Batch {
            success_count: results.len() - failure_count,
            failure_count,
            results,
        };
        Ok(shape.respond(200, &batch, None))
    }

    fn rest_history(
        &mut self,
        name: &str,
        q: &Query,
        shape: Shape,
    ) -> Result<RestResponse, ErrorInfo> {
        let cursor = match q.cursor.as_deref().map(str::parse::<u64>) {
            None => None,
            Some(Ok(seq)) => Some(seq),
            Some(Err(_)) => return Err(bad_cursor()),
        };
        // An event's history number is the channel serial it was sent with (see
        // `Channel::record`), so the events a client heard before its ATTACHED are those up to
        // that ATTACHED's serial.
        let until = match q.from_serial.as_deref() {
            None => u64::MAX,
            Some(serial) => self.serial_number(serial).ok_or_else(|| {
                ErrorInfo::new(
                    codes::BAD_REQUEST,
                    400,
                    "invalid from_serial: not a channel serial of this hub (attach the channel again)",
                )
            })?,
        };
        let horizon = self.now.saturating_sub(self.config.history_ttl);
        let Some(channel) = self.channels.get_mut(name) else {
            return Ok(shape.respond(200, &[(); 0], Some(q.links("history", None))));
        };
        self.history.freed(channel.prune_history(horizon));
        let in_window = |e: &&super::channel::HistoryEntry| {
            let t = e.message.timestamp.unwrap_or(0);
            e.seq <= until && q.start.is_none_or(|s| t >= s) && q.end.is_none_or(|end| t <= end)
        };
        let entries: Vec<&super::channel::HistoryEntry> = if q.forwards {
            channel
                .history
                .iter()
                .filter(|e| cursor.is_none_or(|c| e.seq > c))
                .filter(in_window)
                .take(q.limit + 1)
                .collect()
        } else {
            channel
                .history
                .iter()
                .rev()
                .filter(|e| cursor.is_none_or(|c| e.seq < c))
                .filter(in_window)
                .take(q.limit + 1)
                .collect()
        };
        let fits = page_len(entries.iter().map(|e| &e.message), q.limit);
        let more = entries.len() > fits;
        let page: Vec<&PresenceMessage> = entries.iter().take(fits).map(|e| &e.message).collect();
        let next = if more {
            entries.get(fits - 1).map(|e| e.seq.to_string())
        } else {
            None
        };
        Ok(shape.respond(200, &page, Some(q.links("history", next.as_deref()))))
    }
}

/// The most bytes of items (as history counts them) one page holds, whatever its `limit`:
/// a thousand items of 64 KiB each would be a body of 64 MiB.
const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// How many of `items` (at most `limit`) one page holds: at least one, and no more than
/// [`MAX_PAGE_BYTES`] of them; the rest are on the next page.
fn page_len<'a>(items: impl Iterator<Item = &'a PresenceMessage>, limit: usize) -> usize {
    let mut bytes = 0;
    items
        .take(limit)
        .take_while(|m| {
            let first = bytes == 0;
            bytes += super::channel::history_bytes(m) as usize;
            first || bytes <= MAX_PAGE_BYTES
        })
        .count()
}

/// The hub's REST resources.
enum Route {
    Time,
    Presence(String),
    History(String),
    /// `POST /keys/:keyName/requestToken`: a TokenRequest exchanged for a token.
    RequestToken(String),
    /// `GET /presence?channels=a,b`.
    BatchPresence,
    NotFound,
}

impl Route {
    /// The resource a path names, or `None` when the path is not the hub's.
    fn of(path: &str) -> Option<Self> {
        if path == "/time" {
            return Some(Self::Time);
        }
        if path == "/presence" {
            return Some(Self::BatchPresence);
        }
        // Ably's other REST resources, which a presence hub does not have: said as Ably would.
        if path == "/stats" || path == "/messages" || path.starts_with("/push/") {
            return Some(Self::NotFound);
        }
        if let Some(rest) = path.strip_prefix("/keys/") {
            let route = match rest.split_once('/') {
                Some((name, "requestToken")) => percent_decode_str(name)
                    .decode_utf8()
                    .ok()
                    .filter(|n| !n.is_empty())
                    .map_or(Self::NotFound, |n| Self::RequestToken(n.into_owned())),
                _ => Self::NotFound,
            };
            return Some(route);
        }
        let rest = path.strip_prefix("/channels/")?;
        let mut parts = rest.split('/');
        let name = percent_decode_str(parts.next().unwrap_or_default())
            .decode_utf8()
            .ok()
            .map(|n| n.into_owned());
        let route = match (name, parts.next(), parts.next(), parts.next()) {
            (Some(name), Some("presence"), None, None) if !name.is_empty() => Self::Presence(name),
            (Some(name), Some("presence"), Some("history"), None) if !name.is_empty() => {
                Self::History(name)
            }
            _ => Self::NotFound,
        };
        Some(route)
    }
}
