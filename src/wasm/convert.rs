//! Protocol messages to and from JavaScript objects. The host's `JSON.parse` and
//! `JSON.stringify` do the text; this file only reads and writes fields, so that the client's
//! Wasm carries no JSON library.

use crate::prelude::*;
use alloc::sync::Arc;

use js_sys::{Array, Object, Reflect, JSON};
use wasm_bindgen::{JsCast, JsValue};

use crate::protocol::{
    Action, ConnectionDetails, Data, ErrorInfo, PresenceAction, PresenceMessage, ProtocolMessage,
    RawJson,
};

fn get(object: &JsValue, key: &str) -> JsValue {
    Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn set(object: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(object, &JsValue::from_str(key), value);
}

fn string(object: &JsValue, key: &str) -> Option<Arc<str>> {
    get(object, key).as_string().map(Arc::from)
}

fn number(object: &JsValue, key: &str) -> Option<f64> {
    get(object, key).as_f64().filter(|n| n.is_finite())
}

fn unsigned(object: &JsValue, key: &str) -> Option<u64> {
    number(object, key).filter(|n| *n >= 0.0).map(|n| n as u64)
}

fn json_text(value: &JsValue) -> Option<Arc<str>> {
    JSON::stringify(value).ok()?.as_string().map(Arc::from)
}

/// Data as it came from JavaScript: a string stays a string, anything else is JSON.
pub(crate) fn data_from_js(value: &JsValue) -> Option<Data> {
    if value.is_undefined() || value.is_null() {
        None
    } else if let Some(text) = value.as_string() {
        Some(Data::String(Arc::from(text)))
    } else {
        json_text(value).map(Data::Json)
    }
}

fn data_to_js(data: &Data) -> JsValue {
    match data {
        Data::String(text) => JsValue::from_str(text),
        Data::Json(text) => JSON::parse(text).unwrap_or(JsValue::NULL),
        Data::Binary(bytes) => js_sys::Uint8Array::from(&bytes[..]).into(),
    }
}

/// Opaque JSON from JavaScript.
pub(crate) fn extras_from_js(value: &JsValue) -> Option<RawJson> {
    if value.is_undefined() || value.is_null() {
        None
    } else {
        json_text(value).map(RawJson)
    }
}

pub(crate) fn error_to_js(error: &ErrorInfo) -> JsValue {
    let object = Object::new();
    set(&object, "code", &error.code.into());
    set(&object, "statusCode", &error.status_code.into());
    set(&object, "message", &JsValue::from_str(&error.message));
    object.into()
}

fn error_from_js(value: &JsValue) -> Option<ErrorInfo> {
    if !value.is_object() {
        return None;
    }
    Some(ErrorInfo {
        code: number(value, "code").unwrap_or(0.0) as u32,
        status_code: number(value, "statusCode").unwrap_or(0.0) as u16,
        message: get(value, "message").as_string().unwrap_or_default(),
        href: None,
    })
}

fn presence_from_js(value: &JsValue) -> Option<PresenceMessage> {
    let action = PresenceAction::from_number(unsigned(value, "action")?)?;
    Some(PresenceMessage {
        id: string(value, "id"),
        action,
        client_id: string(value, "clientId"),
        connection_id: string(value, "connectionId"),
        data: data_from_js(&get(value, "data")),
        encoding: string(value, "encoding"),
        extras: extras_from_js(&get(value, "extras")),
        timestamp: number(value, "timestamp").map(|t| t as i64),
    })
}

/// A presence message for JavaScript, with its action by name and its data as received.
pub(crate) fn presence_to_js(message: &PresenceMessage) -> JsValue {
    let object = Object::new();
    let put = |key: &str, value: &Option<Arc<str>>| {
        if let Some(v) = value {
            set(&object, key, &JsValue::from_str(v));
        }
    };
    put("id", &message.id);
    set(&object, "action", &JsValue::from_str(message.action.name()));
    put("clientId", &message.client_id);
    put("connectionId", &message.connection_id);
    if let Some(data) = &message.data {
        set(&object, "data", &data_to_js(data));
    }
    put("encoding", &message.encoding);
    if let Some(extras) = &message.extras {
        set(
            &object,
            "extras",
            &JSON::parse(&extras.0).unwrap_or(JsValue::NULL),
        );
    }
    if let Some(timestamp) = message.timestamp {
        set(&object, "timestamp", &(timestamp as f64).into());
    }
    object.into()
}

/// Reads a message parsed by `JSON.parse`; `None` if it is not one.
pub(crate) fn message_from_js(value: &JsValue) -> Option<ProtocolMessage> {
    if !value.is_object() {
        return None;
    }
    let mut message = ProtocolMessage::new(Action::from_number(unsigned(value, "action")?));
    message.id = string(value, "id");
    message.channel = string(value, "channel");
    message.channel_serial = string(value, "channelSerial");
    message.connection_id = string(value, "connectionId");
    message.msg_serial = number(value, "msgSerial").map(|n| n as i64);
    message.count = unsigned(value, "count");
    message.flags = unsigned(value, "flags");
    message.timestamp = number(value, "timestamp").map(|n| n as i64);
    message.error = error_from_js(&get(value, "error"));
    let details = get(value, "connectionDetails");
    if details.is_object() {
        message.connection_details = Some(ConnectionDetails {
            client_id: string(&details, "clientId"),
            connection_key: string(&details, "connectionKey"),
            max_message_size: unsigned(&details, "maxMessageSize"),
            max_frame_size: unsigned(&details, "maxFrameSize"),
            max_inbound_rate: unsigned(&details, "maxInboundRate"),
            max_idle_interval: unsigned(&details, "maxIdleInterval"),
            connection_state_ttl: unsigned(&details, "connectionStateTtl"),
            server_id: string(&details, "serverId"),
        });
    }
    let presence = get(value, "presence");
    if let Some(items) = presence.dyn_ref::<Array>() {
        message.presence = Some(items.iter().filter_map(|i| presence_from_js(&i)).collect());
    }
    Some(message)
}

/// Writes a message the client sends, as JSON text.
pub(crate) fn message_to_json(message: &ProtocolMessage) -> Option<String> {
    let object = Object::new();
    set(&object, "action", &(message.action.number() as f64).into());
    if let Some(channel) = &message.channel {
        set(&object, "channel", &JsValue::from_str(channel));
    }
    if let Some(serial) = &message.channel_serial {
        set(&object, "channelSerial", &JsValue::from_str(serial));
    }
    if let Some(serial) = message.msg_serial {
        set(&object, "msgSerial", &(serial as f64).into());
    }
    if let Some(flags) = message.flags {
        set(&object, "flags", &(flags as f64).into());
    }
    if let Some(token) = message.auth.as_ref().and_then(|a| a.access_token.as_ref()) {
        let auth = Object::new();
        set(&auth, "accessToken", &JsValue::from_str(token));
        set(&object, "auth", &auth);
    }
    if let Some(items) = &message.presence {
        let array = Array::new();
        for item in items {
            let js = Object::new();
            set(&js, "action", &(item.action.number() as f64).into());
            if let Some(id) = &item.id {
                set(&js, "id", &JsValue::from_str(id));
            }
            if let Some(client_id) = &item.client_id {
                set(&js, "clientId", &JsValue::from_str(client_id));
            }
            if let Some(data) = &item.data {
                set(&js, "data", &data_to_js(data));
            }
            if let Some(encoding) = &item.encoding {
                set(&js, "encoding", &JsValue::from_str(encoding));
            }
            if let Some(extras) = &item.extras {
                set(
                    &js,
                    "extras",
                    &JSON::parse(&extras.0).unwrap_or(JsValue::NULL),
                );
            }
            array.push(&js);
        }
        set(&object, "presence", &array);
    }
    JSON::stringify(&object).ok()?.as_string()
}
