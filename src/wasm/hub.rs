//! `Hub`: the hub state machine for a JavaScript host (Node, a Durable Object).
//!
//! Each input method takes the time (`Date.now()`); after each, the host calls `drain()` and
//! carries out what it returns, then re-arms its one timer for `nextTimeout()`.

use js_sys::{Array, Uint8Array};
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::hub::{
    ApiKey, Capability, Hub, HubConfig, HubEvent, RestRequest, Restoring, Transmit, TransportId,
};

/// Settings as the host passes them (JSON), every field optional. A name it does not know is
/// refused, so that a misspelt setting is not silently a default.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
struct HostConfig {
    server_id: Option<String>,
    keys: Option<Keys>,
    max_message_size: Option<usize>,
    connection_state_ttl: Option<u64>,
    remain_present_for: Option<u64>,
    heartbeat_interval: Option<u64>,
    history_ttl: Option<u64>,
    history_limit: Option<usize>,
    max_history_bytes: Option<u64>,
    max_replay_bytes: Option<usize>,
    max_members_per_channel: Option<usize>,
    max_member_bytes: Option<u64>,
    max_member_bytes_per_client: Option<u64>,
    max_channels_per_connection: Option<usize>,
    host_pings: Option<bool>,
    persistence: Option<bool>,
    max_connections: Option<usize>,
    max_connections_per_client: Option<usize>,
    max_inbound_rate: Option<u32>,
}

/// Keys as `"appId.keyId:secret,..."`, or as `[{ key, capability }]`.
enum Keys {
    List(String),
    Entries(Vec<KeyEntry>),
}

impl<'de> Deserialize<'de> for Keys {
    /// As serde's untagged enum would, but saying what is wrong with an entry (its error names
    /// neither the entry nor the field).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(list) => Ok(Keys::List(list)),
            serde_json::Value::Array(entries) => entries
                .into_iter()
                .enumerate()
                .map(|(i, e)| {
                    let kind = match &e {
                        serde_json::Value::Object(_) => "an object with a key that is no string",
                        serde_json::Value::String(_) => "a string",
                        _ => "another type",
                    };
                    serde_json::from_value(e).map_err(|e| {
                        // serde's own words repeat a string it did not expect, which may be a
                        // secret: they are kept only when they name a field.
                        let text = e.to_string();
                        let why = if text.starts_with("unknown field") || text.starts_with("missing field") {
                            text
                        } else {
                            format!("an entry is {{ \"key\": \"appId.keyId:secret\", \"capability\" }}, not {kind}")
                        };
                        D::Error::custom(format!("keys[{i}]: {why}"))
                    })
                })
                .collect::<Result<_, _>>()
                .map(Keys::Entries),
            _ => Err(D::Error::custom(
                "keys: a string (appId.keyId:secret,...) or a list of { key, capability }",
            )),
        }
    }
}

/// The largest `maxMessageSize`: its frames (`maxFrameSize`, four times it) must fit in the
/// 1 MiB a host reads.
const MAX_MESSAGE_SIZE: usize = 256 * 1024;

/// A misspelt field (`capabilty`) is refused: ignored, it would leave the key every right.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    key: String,
    capability: Option<serde_json::Value>,
}

impl HostConfig {
    fn into_config(self) -> Result<HubConfig, String> {
        let mut config = HubConfig::default();
        if let Some(server_id) = self.server_id {
            config.server_id = server_id.into();
        }
        match self.keys {
            Some(Keys::List(keys)) => {
                config.keys = ApiKey::parse_list(&keys)
                    .map_err(|bad| format!("not a key (appId.keyId:secret): {bad}"))?;
            }
            Some(Keys::Entries(entries)) => {
                for entry in entries {
                    let mut key = ApiKey::parse(&entry.key).ok_or_else(|| {
                        let what = ApiKey::unreadable(&entry.key);
                        format!("not a key (appId.keyId:secret): an entry {what}")
                    })?;
                    if let Some(capability) = entry.capability {
                        key.capability = Capability::parse(&capability)
                            .map_err(|e| format!("capability of {}: {}", key.name, e.message))?;
                    }
                    config.keys.push(key);
                }
            }
            None => {}
        }
        if self.max_message_size.is_some_and(|n| n > MAX_MESSAGE_SIZE) {
            return Err(format!(
                "maxMessageSize is at most {MAX_MESSAGE_SIZE} bytes (its frames, four times \
                 it, must fit in the 1 MiB a host reads)"
            ));
        }
        let d = &mut config;
        d.max_message_size = self.max_message_size.unwrap_or(d.max_message_size);
        d.connection_state_ttl = self.connection_state_ttl.unwrap_or(d.connection_state_ttl);
        d.remain_present_for = self.remain_present_for.unwrap_or(d.remain_present_for);
        d.heartbeat_interval = self.heartbeat_interval.unwrap_or(d.heartbeat_interval);
        d.history_ttl = self.history_ttl.unwrap_or(d.history_ttl);
        d.history_limit = self.history_limit.unwrap_or(d.history_limit);
        d.max_history_bytes = self.max_history_bytes.unwrap_or(d.max_history_bytes);
        d.max_replay_bytes = self.max_replay_bytes.unwrap_or(d.max_replay_bytes);
        d.max_member_bytes = self.max_member_bytes.unwrap_or(d.max_member_bytes);
        d.max_member_bytes_per_client = self
            .max_member_bytes_per_client
            .unwrap_or(d.max_member_bytes_per_client);
        d.max_members_per_channel = self
            .max_members_per_channel
            .unwrap_or(d.max_members_per_channel);
        d.max_channels_per_connection = self
            .max_channels_per_connection
            .unwrap_or(d.max_channels_per_connection);
        d.max_connections = self.max_connections.unwrap_or(d.max_connections);
        d.max_connections_per_client = self
            .max_connections_per_client
            .unwrap_or(d.max_connections_per_client);
        // At least one a second: 0 would not mean unlimited but refuse everything after the
        // first burst.
        d.max_inbound_rate = self.max_inbound_rate.unwrap_or(d.max_inbound_rate).max(1);
        d.host_pings = self.host_pings.unwrap_or(d.host_pings);
        d.persistence = self.persistence.unwrap_or(d.persistence);
        Ok(config)
    }
}

/// A hub being rebuilt from storage (`Hub.restoring`).
#[wasm_bindgen(js_name = HubRestoring)]
pub struct WasmRestoring {
    restoring: Restoring,
}

#[wasm_bindgen(js_class = HubRestoring)]
impl WasmRestoring {
    /// A batch of stored records, `[[key, Uint8Array], ...]`, in any order: each is copied in,
    /// decoded and freed in turn.
    pub fn feed(&mut self, records: Array) {
        self.restoring.feed(records.iter().filter_map(|entry| {
            let entry: Array = entry.dyn_into().ok()?;
            let key = entry.get(0).as_string()?;
            let value: Uint8Array = entry.get(1).dyn_into().ok()?;
            Some((key, value.to_vec()))
        }));
    }

    /// The hub, once every record was fed.
    pub fn finish(self) -> WasmHub {
        let (hub, stale) = self.restoring.finish();
        WasmHub {
            hub,
            stale,
            sent: Vec::new(),
        }
    }
}

/// The presence hub, driven by a JavaScript host.
#[wasm_bindgen(js_name = Hub)]
pub struct WasmHub {
    hub: Hub,
    stale: Vec<String>,
    /// What the last `drain()` handed out: its bytes stay here, where the host reads them,
    /// until the next input (or drain), so that they are not kept while the next batch
    /// gathers.
    sent: Vec<Transmit>,
}

fn config_of(config: &str) -> Result<HubConfig, JsError> {
    let host: HostConfig = if config.trim().is_empty() {
        HostConfig::default()
    } else {
        serde_json::from_str(config).map_err(|e| JsError::new(&setting_error(config, &e)))?
    };
    host.into_config().map_err(|e| JsError::new(&e))
}

/// What is wrong with the settings, in the words of whoever gave them: the setting it is in,
/// not where in the JSON text the host wrote, and not offering the settings the host gives
/// itself.
fn setting_error(config: &str, error: &serde_json::Error) -> String {
    let text = error.to_string();
    let text = match text.rfind(" at line ") {
        Some(at) if error.line() > 0 => &text[..at],
        _ => &text,
    };
    if !text.starts_with("unknown field") {
        // Read one by one, the first setting that cannot be read is the one.
        if let Ok(serde_json::Value::Object(settings)) = serde_json::from_str(config) {
            for (name, value) in settings {
                let one = [(name.clone(), value)].into_iter().collect();
                if let Err(e) = serde_json::from_value::<HostConfig>(serde_json::Value::Object(one))
                {
                    let why = e.to_string();
                    return if why.starts_with(&name) {
                        why
                    } else {
                        format!("{name}: {why}")
                    };
                }
            }
        }
    }
    text.replace("`keys`, ", "")
        .replace(", `hostPings`, `persistence`", "")
}

#[wasm_bindgen(js_class = Hub)]
impl WasmHub {
    /// A hub with settings given as JSON text (`{"keys": "app.k:secret", ...}`).
    #[wasm_bindgen(constructor)]
    pub fn new(config: &str) -> Result<WasmHub, JsError> {
        Ok(Self {
            hub: Hub::new(config_of(config)?),
            stale: Vec::new(),
            sent: Vec::new(),
        })
    }

    /// A hub to rebuild from stored records, with the transports still open: give it the
    /// records in batches (`feed`), then take the hub (`finish`). The keys of records to
    /// delete are then in `takeStale()`.
    pub fn restoring(config: &str, now: f64, open: &[u32]) -> Result<WasmRestoring, JsError> {
        let open: Vec<TransportId> = open.iter().map(|&t| TransportId(t)).collect();
        Ok(WasmRestoring {
            restoring: Hub::restoring(config_of(config)?, now as u64, &open),
        })
    }

    /// Keys of stored records that no longer mean anything, once, after `restoring`.
    #[wasm_bindgen(js_name = takeStale)]
    pub fn take_stale(&mut self) -> Vec<String> {
        std::mem::take(&mut self.stale)
    }

    /// What to write to storage since the last call: `[[key, Uint8Array | null], ...]`.
    #[wasm_bindgen(js_name = takeChanges)]
    pub fn take_changes(&mut self) -> Array {
        self.hub
            .take_changes()
            .into_iter()
            .map(|change| {
                let value = change
                    .value
                    .map_or(JsValue::NULL, |v| Uint8Array::from(&v[..]).into());
                JsValue::from(Array::of2(&JsValue::from_str(&change.key), &value))
            })
            .collect()
    }

    /// Whether keys are checked (false: development mode).
    #[wasm_bindgen(getter, js_name = checksKeys)]
    pub fn checks_keys(&self) -> bool {
        !self.hub.config().development_mode()
    }

    /// A WebSocket opened with this query; `entropy` is 24 random bytes.
    pub fn open(
        &mut self,
        now: f64,
        transport: u32,
        query: &str,
        entropy: &[u8],
    ) -> Result<(), JsError> {
        self.sent.clear();
        let entropy: [u8; 24] = entropy
            .try_into()
            .map_err(|_| JsError::new("entropy must be 24 bytes"))?;
        self.hub
            .handle_open(now as u64, TransportId(transport), query, entropy);
        Ok(())
    }

    /// A frame arrived: its bytes, and whether it was a binary frame.
    /// Returns the bytes now waiting for a drain (see `Hub::queued_bytes`), so that a host can
    /// drain early without asking.
    pub fn frame(&mut self, now: f64, transport: u32, bytes: &[u8], binary: bool) -> u32 {
        self.sent.clear();
        let transport = TransportId(transport);
        if binary {
            self.hub.handle_binary(now as u64, transport, bytes);
        } else {
            self.hub.handle_text_bytes(now as u64, transport, bytes);
        }
        u32::try_from(self.hub.queued_bytes()).unwrap_or(u32::MAX)
    }

    /// A pong arrived.
    pub fn pong(&mut self, now: f64, transport: u32) {
        self.sent.clear();
        self.hub.handle_pong(now as u64, TransportId(transport));
    }

    /// After `restore`: when the host last heard from this transport (see
    /// `Hub::handle_last_heard`).
    pub fn heard(&mut self, transport: u32, at: f64) {
        self.sent.clear();
        self.hub
            .handle_last_heard(TransportId(transport), at as u64);
    }

    /// The host refuses what came on this transport: its connection fails (50000, `message`),
    /// its members leave (see `Hub::handle_refused`).
    pub fn refuse(&mut self, now: f64, transport: u32, message: &str) {
        self.sent.clear();
        self.hub
            .handle_refused(now as u64, TransportId(transport), message);
    }

    /// The host cut the WebSocket off for a frame over `limit` bytes (see
    /// `Hub::handle_too_large`).
    #[wasm_bindgen(js_name = tooLarge)]
    pub fn too_large(&mut self, now: f64, transport: u32, limit: u32) {
        self.sent.clear();
        self.hub
            .handle_too_large(now as u64, TransportId(transport), limit as usize);
    }

    /// The host could not accept the WebSocket it opened (see `Hub::handle_unaccepted`).
    pub fn unaccepted(&mut self, now: f64, transport: u32) {
        self.sent.clear();
        self.hub
            .handle_unaccepted(now as u64, TransportId(transport));
    }

    /// The WebSocket closed.
    pub fn closed(&mut self, now: f64, transport: u32) {
        self.sent.clear();
        self.hub.handle_close(now as u64, TransportId(transport));
    }

    /// The timer fired.
    pub fn timeout(&mut self, now: f64) {
        self.sent.clear();
        self.hub.handle_timeout(now as u64);
    }

    /// An HTTP request for the hub's REST reads. Returns `undefined` when the path is not the
    /// hub's, else `[status, [[name, value], ...], body: Uint8Array]`. `origin`: the `Origin`
    /// header, if any; `body`: a POST's (a TokenRequest), at most `MAX_REQUEST_BODY` bytes.
    // One argument per part of the request, as the host has them: a struct would cost each
    // request an object across the boundary.
    #[allow(clippy::too_many_arguments)]
    pub fn rest(
        &mut self,
        now: f64,
        method: &str,
        url: &str,
        authorization: Option<String>,
        accept: Option<String>,
        origin: Option<String>,
        body: Option<Vec<u8>>,
    ) -> JsValue {
        self.sent.clear();
        let request = RestRequest {
            method,
            url,
            authorization: authorization.as_deref(),
            accept: accept.as_deref(),
            origin: origin.as_deref(),
            body: body.as_deref().unwrap_or_default(),
        };
        let Some(response) = self.hub.handle_rest(now as u64, &request) else {
            return JsValue::UNDEFINED;
        };
        let headers: Array = response
            .headers
            .iter()
            .map(|(name, value)| Array::of2(&(*name).into(), &value.into()))
            .collect();
        Array::of3(
            &response.status.into(),
            &headers,
            &Uint8Array::from(&response.body[..]),
        )
        .into()
    }

    /// Everything to do now, in order: `[0, to, toLength, bytes, length, binary]` to send,
    /// `[1, transport, code]` to close, `[2, transport]` to ping.
    ///
    /// A send names where its recipients (`u32`s) and its bytes lie in the Wasm memory, for the
    /// host to read in place rather than have each frame copied into a new array. Read them
    /// before calling the hub again (any call may move or grow its memory; an input or a drain
    /// frees them): `new Uint32Array(memory.buffer, to, toLength)` and
    /// `new Uint8Array(memory.buffer, bytes, length)`, copying the bytes that must outlive that.
    pub fn drain(&mut self) -> Array {
        self.sent.clear();
        let out = Array::new();
        while let Some(transmit) = self.hub.poll_transmit() {
            self.sent.push(transmit);
        }
        for transmit in &self.sent {
            let entry = Array::new_with_length(6);
            entry.set(0, 0.into());
            // Addresses in a 32-bit memory.
            entry.set(1, (transmit.to.as_ptr() as u32).into());
            entry.set(2, (transmit.to.len() as u32).into());
            entry.set(3, (transmit.frame.bytes.as_ptr() as u32).into());
            entry.set(4, (transmit.frame.bytes.len() as u32).into());
            entry.set(5, transmit.frame.binary.into());
            out.push(&entry);
        }
        while let Some(event) = self.hub.poll_event() {
            let entry = match event {
                HubEvent::Close { transport, code } => {
                    Array::of3(&1.into(), &transport.0.into(), &code.into())
                }
                HubEvent::Ping { transport } => Array::of2(&2.into(), &transport.0.into()),
            };
            out.push(&entry);
        }
        out
    }

    /// When to call `timeout` next, in milliseconds since the epoch, or -1 for never.
    #[wasm_bindgen(js_name = nextTimeout)]
    pub fn next_timeout(&self) -> f64 {
        self.hub.poll_timeout().map_or(-1.0, |t| t as f64)
    }

    /// How many keys the hub checks credentials against: 0 is development mode, whatever the
    /// settings looked like (`","` names no key).
    #[wasm_bindgen(getter, js_name = keyCount)]
    pub fn key_count(&self) -> u32 {
        self.hub.config().keys.len() as u32
    }

    /// `[connections, liveConnections, channels, members, historyBytes, memberBytes]`.
    pub fn stats(&self) -> Array {
        let s = self.hub.stats();
        let stats = Array::of5(
            &(s.connections as u32).into(),
            &(s.live_connections as u32).into(),
            &(s.channels as u32).into(),
            &(s.members as u32).into(),
            &(s.history_bytes as f64).into(),
        );
        stats.push(&(s.member_bytes as f64).into());
        stats
    }
}
