//! Protocol messages to and from JavaScript objects. The host's `JSON.parse` and
//! `JSON.stringify` do the text; this file only reads and writes fields, so that the client's
//! Wasm carries no JSON library.

use crate::prelude::*;
use alloc::sync::Arc;

use js_sys::{Array, Object, JSON};
use wasm_bindgen::{JsCast, JsValue};

use crate::protocol::{
    Action, ConnectionDetails, Data, ErrorInfo, PresenceAction, PresenceMessage, ProtocolMessage,
    RawJson,
};

/// The field names the conversions read and write, made into JavaScript strings once: a key
/// passed as `&str` would be decoded from Wasm memory on every use.
pub(crate) struct Keys([JsValue; 30]);

const NAMES: [&str; 30] = [
    "id",
    "action",
    "clientId",
    "connectionId",
    "data",
    "encoding",
    "extras",
    "timestamp",
    "code",
    "statusCode",
    "message",
    "channel",
    "channelSerial",
    "msgSerial",
    "count",
    "flags",
    "error",
    "connectionDetails",
    "connectionKey",
    "maxMessageSize",
    "maxFrameSize",
    "maxInboundRate",
    "maxIdleInterval",
    "connectionStateTtl",
    "serverId",
    "presence",
    "accessToken",
    "auth",
    "connectionLost",
    "remainPresentFor",
];

pub(crate) const ID: usize = 0;
pub(crate) const ACTION: usize = 1;
pub(crate) const CLIENT_ID: usize = 2;
pub(crate) const CONNECTION_ID: usize = 3;
pub(crate) const DATA: usize = 4;
pub(crate) const ENCODING: usize = 5;
pub(crate) const EXTRAS: usize = 6;
pub(crate) const TIMESTAMP: usize = 7;
pub(crate) const CODE: usize = 8;
pub(crate) const STATUS_CODE: usize = 9;
pub(crate) const MESSAGE: usize = 10;
pub(crate) const CHANNEL: usize = 11;
pub(crate) const CHANNEL_SERIAL: usize = 12;
pub(crate) const MSG_SERIAL: usize = 13;
pub(crate) const COUNT: usize = 14;
pub(crate) const FLAGS: usize = 15;
pub(crate) const ERROR: usize = 16;
pub(crate) const CONNECTION_DETAILS: usize = 17;
pub(crate) const CONNECTION_KEY: usize = 18;
pub(crate) const MAX_MESSAGE_SIZE: usize = 19;
pub(crate) const MAX_FRAME_SIZE: usize = 20;
pub(crate) const MAX_INBOUND_RATE: usize = 21;
pub(crate) const MAX_IDLE_INTERVAL: usize = 22;
pub(crate) const CONNECTION_STATE_TTL: usize = 23;
pub(crate) const SERVER_ID: usize = 24;
pub(crate) const PRESENCE: usize = 25;
pub(crate) const ACCESS_TOKEN: usize = 26;
pub(crate) const AUTH: usize = 27;
pub(crate) const CONNECTION_LOST: usize = 28;
pub(crate) const REMAIN_PRESENT_FOR: usize = 29;

impl Keys {
    pub(crate) fn new() -> Self {
        Keys(NAMES.map(JsValue::from_str))
    }
}

fn get(object: &JsValue, k: &Keys, key: usize) -> JsValue {
    // What `JSON.parse` made: a field of an object cannot throw, and anything else has none.
    if object.is_object() {
        get_field(object, &k.0[key])
    } else {
        JsValue::UNDEFINED
    }
}

pub(crate) fn set(object: &Object, k: &Keys, key: usize, value: &JsValue) {
    set_field(object, &k.0[key], value);
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    // Imported without `catch`: the exception wrapper `js_sys::Reflect` brings made a tenth of
    // the client's time for a SYNC. Neither can throw on the plain objects given to them.

    /// `Reflect.set` on an object the conversions made.
    #[wasm_bindgen(js_namespace = Reflect, js_name = set)]
    fn set_field(target: &Object, key: &JsValue, value: &JsValue) -> bool;

    /// `Reflect.get` on an object `JSON.parse` made.
    #[wasm_bindgen(js_namespace = Reflect, js_name = get)]
    fn get_field(target: &JsValue, key: &JsValue) -> JsValue;
}

fn string(object: &JsValue, k: &Keys, key: usize) -> Option<Arc<str>> {
    get(object, k, key).as_string().map(Arc::from)
}

fn number(object: &JsValue, k: &Keys, key: usize) -> Option<f64> {
    get(object, k, key).as_f64().filter(|n| n.is_finite())
}

fn unsigned(object: &JsValue, k: &Keys, key: usize) -> Option<u64> {
    number(object, k, key)
        .filter(|n| *n >= 0.0)
        .map(|n| n as u64)
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

pub(crate) fn error_to_js(k: &Keys, error: &ErrorInfo) -> JsValue {
    let object = Object::new();
    set(&object, k, CODE, &error.code.into());
    set(&object, k, STATUS_CODE, &error.status_code.into());
    set(&object, k, MESSAGE, &JsValue::from_str(&error.message));
    object.into()
}

fn error_from_js(k: &Keys, value: &JsValue) -> Option<ErrorInfo> {
    if !value.is_object() {
        return None;
    }
    Some(ErrorInfo {
        code: number(value, k, CODE).unwrap_or(0.0) as u32,
        status_code: number(value, k, STATUS_CODE).unwrap_or(0.0) as u16,
        message: get(value, k, MESSAGE).as_string().unwrap_or_default(),
        href: None,
    })
}

fn presence_from_js(k: &Keys, value: &JsValue) -> Option<PresenceMessage> {
    let action = PresenceAction::from_number(unsigned(value, k, ACTION)?)?;
    Some(PresenceMessage {
        id: string(value, k, ID),
        action,
        client_id: string(value, k, CLIENT_ID),
        connection_id: string(value, k, CONNECTION_ID),
        data: data_from_js(&get(value, k, DATA)),
        encoding: string(value, k, ENCODING),
        extras: extras_from_js(&get(value, k, EXTRAS)),
        timestamp: number(value, k, TIMESTAMP).map(|t| t as i64),
    })
}

/// A presence message for JavaScript, with its action by name and its data as received.
pub(crate) fn presence_to_js(k: &Keys, message: &PresenceMessage) -> JsValue {
    let object = Object::new();
    let put = |key: usize, value: &Option<Arc<str>>| {
        if let Some(v) = value {
            set(&object, k, key, &JsValue::from_str(v));
        }
    };
    put(ID, &message.id);
    set(
        &object,
        k,
        ACTION,
        &JsValue::from_str(message.action.name()),
    );
    put(CLIENT_ID, &message.client_id);
    put(CONNECTION_ID, &message.connection_id);
    if let Some(data) = &message.data {
        set(&object, k, DATA, &data_to_js(data));
    }
    put(ENCODING, &message.encoding);
    if let Some(extras) = &message.extras {
        set(
            &object,
            k,
            EXTRAS,
            &JSON::parse(&extras.0).unwrap_or(JsValue::NULL),
        );
    }
    if let Some(timestamp) = message.timestamp {
        set(&object, k, TIMESTAMP, &(timestamp as f64).into());
    }
    object.into()
}

/// Reads a message parsed by `JSON.parse`; `None` if it is not one.
pub(crate) fn message_from_js(k: &Keys, value: &JsValue) -> Option<ProtocolMessage> {
    if !value.is_object() {
        return None;
    }
    let mut message = ProtocolMessage::new(Action::from_number(unsigned(value, k, ACTION)?));
    message.id = string(value, k, ID);
    message.channel = string(value, k, CHANNEL);
    message.channel_serial = string(value, k, CHANNEL_SERIAL);
    message.connection_id = string(value, k, CONNECTION_ID);
    message.msg_serial = number(value, k, MSG_SERIAL).map(|n| n as i64);
    message.count = unsigned(value, k, COUNT);
    message.flags = unsigned(value, k, FLAGS);
    message.timestamp = number(value, k, TIMESTAMP).map(|n| n as i64);
    message.error = error_from_js(k, &get(value, k, ERROR));
    let details = get(value, k, CONNECTION_DETAILS);
    if details.is_object() {
        message.connection_details = Some(ConnectionDetails {
            client_id: string(&details, k, CLIENT_ID),
            connection_key: string(&details, k, CONNECTION_KEY),
            max_message_size: unsigned(&details, k, MAX_MESSAGE_SIZE),
            max_frame_size: unsigned(&details, k, MAX_FRAME_SIZE),
            max_inbound_rate: unsigned(&details, k, MAX_INBOUND_RATE),
            max_idle_interval: unsigned(&details, k, MAX_IDLE_INTERVAL),
            connection_state_ttl: unsigned(&details, k, CONNECTION_STATE_TTL),
            server_id: string(&details, k, SERVER_ID),
            remain_present_for: unsigned(&details, k, REMAIN_PRESENT_FOR),
        });
    }
    let presence = get(value, k, PRESENCE);
    if let Some(items) = presence.dyn_ref::<Array>() {
        message.presence = Some(
            items
                .iter()
                .filter_map(|i| presence_from_js(k, &i))
                .collect(),
        );
    }
    Some(message)
}

/// Writes a message the client sends, as JSON text.
pub(crate) fn message_to_json(k: &Keys, message: &ProtocolMessage) -> Option<String> {
    let object = Object::new();
    set(&object, k, ACTION, &(message.action.number() as f64).into());
    if let Some(channel) = &message.channel {
        set(&object, k, CHANNEL, &JsValue::from_str(channel));
    }
    if let Some(serial) = &message.channel_serial {
        set(&object, k, CHANNEL_SERIAL, &JsValue::from_str(serial));
    }
    if let Some(serial) = message.msg_serial {
        set(&object, k, MSG_SERIAL, &(serial as f64).into());
    }
    if let Some(flags) = message.flags {
        set(&object, k, FLAGS, &(flags as f64).into());
    }
    if let Some(token) = message.auth.as_ref().and_then(|a| a.access_token.as_ref()) {
        let auth = Object::new();
        set(&auth, k, ACCESS_TOKEN, &JsValue::from_str(token));
        set(&object, k, AUTH, &auth);
    }
    if let Some(items) = &message.presence {
        let array = Array::new();
        for item in items {
            let js = Object::new();
            set(&js, k, ACTION, &(item.action.number() as f64).into());
            if let Some(id) = &item.id {
                set(&js, k, ID, &JsValue::from_str(id));
            }
            if let Some(client_id) = &item.client_id {
                set(&js, k, CLIENT_ID, &JsValue::from_str(client_id));
            }
            if let Some(data) = &item.data {
                set(&js, k, DATA, &data_to_js(data));
            }
            if let Some(encoding) = &item.encoding {
                set(&js, k, ENCODING, &JsValue::from_str(encoding));
            }
            if let Some(extras) = &item.extras {
                set(
                    &js,
                    k,
                    EXTRAS,
                    &JSON::parse(&extras.0).unwrap_or(JsValue::NULL),
                );
            }
            array.push(&js);
        }
        set(&object, k, PRESENCE, &array);
    }
    JSON::stringify(&object).ok()?.as_string()
}
