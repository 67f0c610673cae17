//! Binary frames: the same messages and field names as JSON, as msgpack maps. Binary data stays
//! binary.

use super::json::{RawSalvage, Salvage};
use super::ProtocolMessage;

/// How deep a frame may nest: deeper would risk the stack (a Wasm hub has 1 MiB), and JSON
/// readers could not take it anyway (their limit is 128).
const MAX_DEPTH: usize = 128;

fn read<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, rmp_serde::decode::Error> {
    let mut reader = rmp_serde::Deserializer::from_read_ref(bytes);
    reader.set_max_depth(MAX_DEPTH);
    T::deserialize(&mut reader)
}

/// Reads one binary frame.
pub fn decode(bytes: &[u8]) -> Result<ProtocolMessage, rmp_serde::decode::Error> {
    read(bytes)
}

/// Writes one binary frame.
pub fn encode(message: &ProtocolMessage) -> Vec<u8> {
    // As for JSON: these types always serialise.
    rmp_serde::to_vec(message).unwrap_or_default()
}

/// Reads what it can from a binary frame that failed to decode.
pub fn salvage(bytes: &[u8]) -> Salvage {
    read::<RawSalvage>(bytes)
        .map(Salvage::from)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::protocol::{json, Action, Data, PresenceAction, PresenceMessage};

    #[test]
    fn round_trips_with_binary_data_kept_binary() {
        let mut message = ProtocolMessage::for_channel(Action::Presence, Arc::from("room"));
        message.msg_serial = Some(3);
        let mut item = PresenceMessage::new(PresenceAction::Enter);
        item.data = Some(Data::Binary(Arc::from(&[0u8, 159, 146, 150][..])));
        item.extras = Some(crate::protocol::RawJson(Arc::from(
            r#"{"headers":{"a":"b"}}"#,
        )));
        message.presence = Some(vec![item]);
        let bytes = encode(&message);
        assert_eq!(decode(&bytes).unwrap(), message);
        // JSON connections get the same data as base64.
        let text = String::from_utf8(json::encode(&message)).unwrap();
        assert!(
            text.contains(r#""data":"AJ+Slg==","encoding":"base64""#),
            "{text}"
        );
    }

    #[test]
    fn refuses_frames_nested_too_deeply() {
        // { "action": 14, "presence": [[[[...]]]] } a thousand levels down.
        let mut bytes = vec![0x82, 0xa6];
        bytes.extend_from_slice(b"action");
        bytes.push(14);
        bytes.push(0xa8);
        bytes.extend_from_slice(b"presence");
        bytes.extend(std::iter::repeat_n(0x91, 1000));
        bytes.push(0x90);
        assert!(decode(&bytes).is_err());
        assert_eq!(salvage(&bytes).action, None);
    }

    #[test]
    fn salvages_and_refuses_garbage() {
        assert!(decode(&[0xc1, 0xff]).is_err());
        let mut message = ProtocolMessage::for_channel(Action::Presence, Arc::from("c"));
        message.msg_serial = Some(9);
        let s = salvage(&encode(&message));
        assert_eq!((s.action, s.msg_serial), (Some(14), Some(9)));
        assert!(salvage(&[0x93, 1, 2]).action.is_none());
        // { action: 14, msgSerial: 5, channel: <ext 1> }: what is a number is still read.
        let mut bytes = vec![0x83, 0xa6];
        bytes.extend_from_slice(b"action");
        bytes.extend_from_slice(&[14, 0xa9]);
        bytes.extend_from_slice(b"msgSerial");
        bytes.extend_from_slice(&[5, 0xa7]);
        bytes.extend_from_slice(b"channel");
        bytes.extend_from_slice(&[0xd4, 1, 0]);
        let s = salvage(&bytes);
        assert_eq!(
            (s.action, s.msg_serial, s.channel),
            (Some(14), Some(5), None)
        );
        // An action that is an array of a million nils is skipped, not held.
        let mut bytes = vec![0x81, 0xa6];
        bytes.extend_from_slice(b"action");
        bytes.extend_from_slice(&[0xdd, 0, 0x0f, 0x42, 0x40]);
        bytes.extend(std::iter::repeat_n(0xc0, 1_000_000));
        assert_eq!(salvage(&bytes).action, None);
    }
}
