//! The serde mapping of the wire types: JSON text frames, and any other serde format with the
//! same field names (msgpack maps).
//!
//! Reading is tolerant: absent and `null` fields are `None`, unknown fields are ignored, and an
//! unknown protocol action reads as [`Action::Unknown`]. Writing leaves out what is `None`.
//! Binary data is written as base64 (with `base64` appended to the encoding) for human-readable
//! formats and as raw bytes otherwise.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::{
    Action, AuthDetails, ConnectionDetails, Data, ErrorInfo, PresenceAction, PresenceMessage,
    ProtocolMessage, RawJson,
};

/// Reads one JSON text frame.
pub fn decode(text: &str) -> Result<ProtocolMessage, serde_json::Error> {
    serde_json::from_str(text).or_else(|error| {
        // A lone UTF-16 surrogate (half an emoji, cut by code that truncates text) is what
        // `JSON.stringify` writes and serde refuses: it becomes U+FFFD, as it does when a
        // client sends it in a msgpack frame.
        match replace_lone_surrogates(text) {
            Some(fixed) => serde_json::from_str(&fixed),
            None => Err(error),
        }
    })
}

/// The text with each `\u` escape of a lone UTF-16 surrogate written as `\ufffd`, or `None`
/// when it has none.
fn replace_lone_surrogates(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let unit = |at: usize| -> Option<u16> {
        if bytes.get(at) != Some(&b'\\') || bytes.get(at + 1) != Some(&b'u') {
            return None;
        }
        u16::from_str_radix(text.get(at + 2..at + 6)?, 16).ok()
    };
    let (mut out, mut copied, mut at) = (String::new(), 0, 0);
    while at < bytes.len() {
        if bytes[at] != b'\\' {
            at += 1;
            continue;
        }
        let Some(u) = unit(at) else {
            // Another escape (`\\` included): its second character is not the start of one.
            at += 2;
            continue;
        };
        let pair = (0xD800..0xDC00).contains(&u)
            && unit(at + 6).is_some_and(|low| (0xDC00..0xE000).contains(&low));
        if pair {
            at += 12;
        } else if (0xD800..0xE000).contains(&u) {
            out.push_str(&text[copied..at]);
            out.push_str("\\ufffd");
            at += 6;
            copied = at;
        } else {
            at += 6;
        }
    }
    (copied > 0).then(|| {
        out.push_str(&text[copied..]);
        out
    })
}

/// Writes one JSON text frame.
pub fn encode(message: &ProtocolMessage) -> Vec<u8> {
    // Serialising these types cannot fail: every map key is a string and every number fits.
    serde_json::to_vec(message).unwrap_or_default()
}

/// What can still be read from a frame that does not decode as a [`ProtocolMessage`]: enough to
/// answer it with the right error.
#[derive(Debug, Default)]
pub struct Salvage {
    /// The action number, when it is a number.
    pub action: Option<u64>,
    /// The message serial, when it is a number.
    pub msg_serial: Option<i64>,
    /// The channel, when it is a string.
    pub channel: Option<String>,
}

/// A field that is read when it is a number or a string and skipped otherwise, as it is read:
/// an array of a million items in its place is not held (an untagged enum would copy it whole
/// before trying each type).
enum Lenient {
    Unsigned(u64),
    Signed(i64),
    Text(String),
    Other,
}

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl<'de> Visitor<'de> for Scalar {
            type Value = Lenient;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Lenient, E> {
                Ok(Lenient::Unsigned(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Lenient, E> {
                Ok(Lenient::Signed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Lenient, E> {
                Ok(Lenient::Text(v.to_owned()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Lenient, E> {
                Ok(Lenient::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Lenient, E> {
                Ok(Lenient::Other)
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Lenient, E> {
                Ok(Lenient::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient::Other)
            }
            fn visit_none<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient::Other)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Lenient, D::Error> {
                Lenient::deserialize(d)
            }
            // (msgpack's ext values come as these.)
            fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Lenient, D::Error> {
                de::IgnoredAny::deserialize(d)?;
                Ok(Lenient::Other)
            }
            fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Lenient, A::Error> {
                de::IgnoredAny.visit_enum(data)?;
                Ok(Lenient::Other)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Lenient, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Lenient::Other)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Lenient, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Lenient::Other)
            }
        }
        d.deserialize_any(Scalar)
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawSalvage {
    action: Option<Lenient>,
    msg_serial: Option<Lenient>,
    channel: Option<Lenient>,
}

impl From<RawSalvage> for Salvage {
    fn from(raw: RawSalvage) -> Self {
        Self {
            action: match raw.action {
                Some(Lenient::Unsigned(n)) => Some(n),
                Some(Lenient::Signed(n)) => u64::try_from(n).ok(),
                _ => None,
            },
            msg_serial: match raw.msg_serial {
                Some(Lenient::Signed(n)) => Some(n),
                Some(Lenient::Unsigned(n)) => i64::try_from(n).ok(),
                _ => None,
            },
            channel: match raw.channel {
                Some(Lenient::Text(s)) => Some(s),
                _ => None,
            },
        }
    }
}

/// Reads what it can from a JSON frame that failed to decode.
pub fn salvage(text: &str) -> Salvage {
    serde_json::from_str::<RawSalvage>(text)
        .map(Salvage::from)
        .unwrap_or_default()
}

// ---- actions ----------------------------------------------------------------------------------

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.number())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(Action::from_number)
    }
}

impl Serialize for PresenceAction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.number())
    }
}

impl<'de> Deserialize<'de> for PresenceAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        PresenceAction::from_number(n)
            .ok_or_else(|| de::Error::custom(format_args!("unknown presence action {n}")))
    }
}

// ---- data -------------------------------------------------------------------------------------

struct DataVisitor;

impl<'de> Visitor<'de> for DataVisitor {
    type Value = Data;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("presence data")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Data, E> {
        Ok(Data::String(Arc::from(v)))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Data, E> {
        Ok(Data::Binary(Arc::from(v)))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Data, E> {
        Ok(Data::Json(Arc::from(if v { "true" } else { "false" })))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Data, E> {
        Ok(Data::Json(Arc::from(v.to_string())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Data, E> {
        Ok(Data::Json(Arc::from(v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Data, E> {
        let value = serde_json::Number::from_f64(v)
            .ok_or_else(|| E::custom("data is not a finite number"))?;
        Ok(Data::Json(Arc::from(value.to_string())))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Data, A::Error> {
        let value = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        json_data(&value)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Data, A::Error> {
        let value = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        json_data(&value)
    }
}

/// As deep as structured data may be: JSON text deeper than this could not be read back (the
/// JSON reader's own limit is 128), so it is refused on the way in, whatever the format.
const MAX_DEPTH: usize = 100;

fn depth(value: &serde_json::Value, limit: usize) -> usize {
    if limit == 0 {
        return 1;
    }
    1 + match value {
        serde_json::Value::Array(items) => {
            items.iter().map(|v| depth(v, limit - 1)).max().unwrap_or(0)
        }
        serde_json::Value::Object(map) => {
            map.values().map(|v| depth(v, limit - 1)).max().unwrap_or(0)
        }
        _ => 0,
    }
}

fn json_data<E: de::Error>(value: &serde_json::Value) -> Result<Data, E> {
    if depth(value, MAX_DEPTH) > MAX_DEPTH {
        return Err(E::custom("data nested too deeply"));
    }
    Ok(Data::Json(Arc::from(value.to_string())))
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DataVisitor)
    }
}

/// Writes JSON text as a value of the target format.
struct JsonText<'a>(&'a str);

impl Serialize for JsonText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            // JSON text is copied as it is; the hub checked it when it arrived.
            match serde_json::value::RawValue::from_string(self.0.to_owned()) {
                Ok(raw) => raw.serialize(s),
                Err(_) => s.serialize_unit(),
            }
        } else {
            match serde_json::from_str::<serde_json::Value>(self.0) {
                Ok(value) => value.serialize(s),
                Err(_) => s.serialize_unit(),
            }
        }
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        if depth(&value, MAX_DEPTH) > MAX_DEPTH {
            return Err(de::Error::custom("extras nested too deeply"));
        }
        Ok(RawJson(Arc::from(value.to_string())))
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        JsonText(&self.0).serialize(s)
    }
}

// ---- messages ---------------------------------------------------------------------------------

impl Serialize for PresenceMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let human = s.is_human_readable();
        let mut map = s.serialize_map(None)?;
        if let Some(id) = &self.id {
            map.serialize_entry("id", id)?;
        }
        map.serialize_entry("action", &self.action)?;
        if let Some(client_id) = &self.client_id {
            map.serialize_entry("clientId", client_id)?;
        }
        if let Some(connection_id) = &self.connection_id {
            map.serialize_entry("connectionId", connection_id)?;
        }
        let mut encoding = self.encoding.as_deref().map(str::to_owned);
        match &self.data {
            Some(Data::String(text)) => map.serialize_entry("data", text)?,
            Some(Data::Json(text)) => map.serialize_entry("data", &JsonText(text))?,
            Some(Data::Binary(bytes)) if human => {
                map.serialize_entry("data", &super::base64::encode(bytes))?;
                encoding = Some(match encoding {
                    Some(e) if !e.is_empty() => format!("{e}/base64"),
                    _ => "base64".to_owned(),
                });
            }
            Some(Data::Binary(bytes)) => map.serialize_entry("data", &Bytes(bytes))?,
            None => {}
        }
        if let Some(encoding) = &encoding {
            map.serialize_entry("encoding", encoding)?;
        }
        if let Some(extras) = &self.extras {
            map.serialize_entry("extras", extras)?;
        }
        if let Some(timestamp) = self.timestamp {
            map.serialize_entry("timestamp", &timestamp)?;
        }
        map.end()
    }
}

struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl Serialize for ErrorInfo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("message", &self.message)?;
        map.serialize_entry("code", &self.code)?;
        map.serialize_entry("statusCode", &self.status_code)?;
        if let Some(href) = &self.href {
            map.serialize_entry("href", href)?;
        }
        map.end()
    }
}

/// Writes `key: value` when the value is present.
fn entry<M: SerializeMap, T: Serialize>(
    map: &mut M,
    key: &'static str,
    value: &Option<T>,
) -> Result<(), M::Error> {
    match value {
        Some(value) => map.serialize_entry(key, value),
        None => Ok(()),
    }
}

impl Serialize for ConnectionDetails {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        entry(&mut map, "clientId", &self.client_id)?;
        entry(&mut map, "connectionKey", &self.connection_key)?;
        entry(&mut map, "maxMessageSize", &self.max_message_size)?;
        entry(&mut map, "maxFrameSize", &self.max_frame_size)?;
        entry(&mut map, "maxInboundRate", &self.max_inbound_rate)?;
        entry(&mut map, "maxIdleInterval", &self.max_idle_interval)?;
        entry(&mut map, "connectionStateTtl", &self.connection_state_ttl)?;
        entry(&mut map, "serverId", &self.server_id)?;
        entry(&mut map, "remainPresentFor", &self.remain_present_for)?;
        map.end()
    }
}

impl Serialize for AuthDetails {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        entry(&mut map, "accessToken", &self.access_token)?;
        map.end()
    }
}

impl Serialize for ProtocolMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("action", &self.action)?;
        entry(&mut map, "id", &self.id)?;
        entry(&mut map, "channel", &self.channel)?;
        entry(&mut map, "channelSerial", &self.channel_serial)?;
        entry(&mut map, "connectionId", &self.connection_id)?;
        entry(&mut map, "connectionDetails", &self.connection_details)?;
        entry(&mut map, "msgSerial", &self.msg_serial)?;
        entry(&mut map, "count", &self.count)?;
        entry(&mut map, "error", &self.error)?;
        entry(&mut map, "flags", &self.flags)?;
        entry(&mut map, "presence", &self.presence)?;
        entry(&mut map, "auth", &self.auth)?;
        entry(&mut map, "params", &self.params)?;
        entry(&mut map, "timestamp", &self.timestamp)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::flags;

    #[test]
    fn reads_what_ably_js_sends() {
        let text = r#"{"action":14,"channel":"room","presence":[{"data":"{\"model\":\"gpt-4\"}",
            "action":2,"encoding":"json"}],"msgSerial":0}"#;
        let m = decode(text).unwrap();
        assert_eq!(m.action, Action::Presence);
        assert_eq!(m.channel.as_deref(), Some("room"));
        assert_eq!(m.msg_serial, Some(0));
        let p = &m.presence.unwrap()[0];
        assert_eq!(p.action, PresenceAction::Enter);
        assert_eq!(
            p.data,
            Some(Data::String(Arc::from(r#"{"model":"gpt-4"}"#)))
        );
        assert_eq!(p.encoding.as_deref(), Some("json"));
    }

    #[test]
    fn tolerates_null_absent_and_unknown_fields_and_actions() {
        let m =
            decode(r#"{"action":99,"channel":null,"whatever":{"a":[1,2]},"flags":null}"#).unwrap();
        assert_eq!(m.action, Action::Unknown(99));
        assert_eq!(m.channel, None);
        assert_eq!(m.flags, None);
    }

    #[test]
    fn rejects_frames_that_are_not_messages() {
        assert!(decode("not json").is_err());
        assert!(decode("[1,2]").is_err());
        assert!(decode(r#"{"channel":"x"}"#).is_err());
        assert!(decode(r#"{"action":"14"}"#).is_err());
        assert!(decode(r#"{"action":14,"presence":[{"action":9}]}"#).is_err());
    }

    #[test]
    fn salvages_enough_to_answer() {
        let s = salvage(r#"{"action":14,"msgSerial":7,"channel":"c","presence":[{"action":9}]}"#);
        assert_eq!(
            (s.action, s.msg_serial, s.channel.as_deref()),
            (Some(14), Some(7), Some("c"))
        );
        assert!(salvage("{{{").action.is_none());
    }

    #[test]
    fn keeps_object_data_and_extras_as_json() {
        let m =
            decode(r#"{"action":14,"presence":[{"action":2,"data":{"a":1},"extras":{"h":{}}}]}"#)
                .unwrap();
        let p = &m.presence.as_ref().unwrap()[0];
        assert_eq!(p.data, Some(Data::Json(Arc::from(r#"{"a":1}"#))));
        let text = String::from_utf8(encode(&m)).unwrap();
        assert!(text.contains(r#""data":{"a":1}"#), "{text}");
        assert!(text.contains(r#""extras":{"h":{}}"#), "{text}");
    }

    #[test]
    fn writes_binary_as_base64_for_json() {
        let mut p = PresenceMessage::new(PresenceAction::Enter);
        p.data = Some(Data::Binary(Arc::from(&b"hi!\xff"[..])));
        p.encoding = Some(Arc::from("utf-8"));
        let mut m = ProtocolMessage::new(Action::Presence);
        m.presence = Some(vec![p]);
        let text = String::from_utf8(encode(&m)).unwrap();
        assert!(text.contains(r#""data":"aGkh/w==""#), "{text}");
        assert!(text.contains(r#""encoding":"utf-8/base64""#), "{text}");
    }

    #[test]
    fn round_trips_a_connected_message() {
        let mut m = ProtocolMessage::new(Action::Connected);
        m.connection_id = Some(Arc::from("c1"));
        m.connection_details = Some(ConnectionDetails {
            client_id: Some(Arc::from("alice")),
            connection_key: Some(Arc::from("k")),
            max_message_size: Some(65536),
            remain_present_for: Some(3000),
            ..Default::default()
        });
        m.flags = Some(flags::HAS_PRESENCE);
        m.error = Some(ErrorInfo::new(80008, 400, "x"));
        let back = decode(std::str::from_utf8(&encode(&m)).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}
