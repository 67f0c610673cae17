//! Frames as the hub sends them: each message encoded once per wire format, presence arrays
//! assembled from items encoded once, and paging so that no frame exceeds a size.

use std::sync::Arc;

use crate::protocol::{json, msgpack, PresenceMessage, ProtocolMessage};

/// The wire format of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// JSON text frames.
    Json,
    /// msgpack binary frames.
    Msgpack,
}

impl Format {
    /// The format a connect query names, if the hub speaks it.
    pub fn from_query(name: Option<&str>) -> Option<Self> {
        match name {
            None | Some("json") => Some(Self::Json),
            Some("msgpack") => Some(Self::Msgpack),
            Some(_) => None,
        }
    }
}

/// The bytes of one WebSocket message, shared by every connection it goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The encoded message.
    pub bytes: Arc<[u8]>,
    /// Whether it goes as a binary frame (msgpack) rather than a text frame (JSON).
    pub binary: bool,
}

impl Frame {
    /// The frame as text, when it is a text frame.
    pub fn text(&self) -> Option<&str> {
        if self.binary {
            None
        } else {
            std::str::from_utf8(&self.bytes).ok()
        }
    }
}

/// Encodes one message.
pub(crate) fn encode(message: &ProtocolMessage, format: Format) -> Frame {
    match format {
        Format::Json => Frame {
            bytes: Arc::from(json::encode(message)),
            binary: false,
        },
        Format::Msgpack => Frame {
            bytes: Arc::from(msgpack::encode(message)),
            binary: true,
        },
    }
}

/// Encodes one presence item, to be assembled into frames by [`pages`].
pub(crate) fn encode_item(item: &PresenceMessage, format: Format) -> Vec<u8> {
    match format {
        Format::Json => serde_json::to_vec(item).unwrap_or_default(),
        Format::Msgpack => rmp_serde::to_vec(item).unwrap_or_default(),
    }
}

/// Assembles items encoded by [`encode_item`] into as few frames as fit in `max_size` bytes,
/// each frame being `envelope` with a `presence` array. `serial_of(page, end, last)` gives the
/// `channelSerial` of each page (`end`: how many items it and the pages before it hold), or
/// `None` to leave it out. At least one frame is made, with an empty array if there are no
/// items.
pub(crate) fn pages(
    envelope: &ProtocolMessage,
    items: &[Vec<u8>],
    format: Format,
    max_size: usize,
    serial_of: impl Fn(usize, usize, bool) -> Option<Arc<str>>,
) -> Vec<Frame> {
    // Each page's end: the items before it belong to it and the pages before.
    let mut ends: Vec<usize> = Vec::new();
    // A generous allowance for the envelope and the cursor, measured once.
    let overhead = json::encode(envelope).len() + 64;
    let budget = max_size.saturating_sub(overhead).max(1);
    let mut start = 0;
    let mut size = 0;
    for (i, item) in items.iter().enumerate() {
        if i > start && size + item.len() + 1 > budget {
            ends.push(i);
            start = i;
            size = 0;
        }
        size += item.len() + 1;
    }
    ends.push(items.len());
    let count = ends.len();
    let mut start = 0;
    ends.into_iter()
        .enumerate()
        .map(|(page, end)| {
            let mut head = envelope.clone();
            head.channel_serial = serial_of(page, end, page + 1 == count);
            let frame = assemble(&head, &items[start..end], format);
            start = end;
            frame
        })
        .collect()
}

fn assemble(envelope: &ProtocolMessage, items: &[Vec<u8>], format: Format) -> Frame {
    match format {
        Format::Json => {
            let mut bytes = json::encode(envelope);
            // The envelope is a JSON object: reopen it and append the array.
            bytes.pop();
            let len: usize = items.iter().map(|i| i.len() + 1).sum();
            bytes.reserve(len + 16);
            bytes.extend_from_slice(br#","presence":["#);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    bytes.push(b',');
                }
                bytes.extend_from_slice(item);
            }
            bytes.extend_from_slice(b"]}");
            Frame {
                bytes: Arc::from(bytes),
                binary: false,
            }
        }
        Format::Msgpack => {
            let mut head = msgpack::encode(envelope);
            // The envelope is a small map (fixmap): one more entry, then the array.
            match head.first().copied() {
                Some(first @ 0x80..=0x8e) => head[0] = first + 1,
                _ => {
                    // Not a small map: encode the whole frame the slow way.
                    let mut whole = envelope.clone();
                    whole.presence = Some(
                        items
                            .iter()
                            .filter_map(|i| rmp_serde::from_slice(i).ok())
                            .collect(),
                    );
                    return encode(&whole, Format::Msgpack);
                }
            }
            let len: usize = items.iter().map(Vec::len).sum();
            head.reserve(len + 16);
            head.extend_from_slice(&[0xa8]);
            head.extend_from_slice(b"presence");
            match u32::try_from(items.len()) {
                Ok(n @ 0..=15) => head.push(0x90 | n as u8),
                Ok(n @ 16..=0xffff) => {
                    head.push(0xdc);
                    head.extend_from_slice(&(n as u16).to_be_bytes());
                }
                Ok(n) => {
                    head.push(0xdd);
                    head.extend_from_slice(&n.to_be_bytes());
                }
                Err(_) => {}
            }
            for item in items {
                head.extend_from_slice(item);
            }
            Frame {
                bytes: Arc::from(head),
                binary: true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Action, PresenceAction};

    fn item(n: usize) -> PresenceMessage {
        PresenceMessage {
            id: Some(Arc::from(format!("c:{n}:0"))),
            client_id: Some(Arc::from(format!("client-{n}"))),
            connection_id: Some(Arc::from("c")),
            timestamp: Some(1),
            ..PresenceMessage::new(PresenceAction::Present)
        }
    }

    #[test]
    fn pages_stay_under_the_size_and_decode_whole() {
        let items: Vec<Vec<u8>> = (0..500)
            .map(|n| encode_item(&item(n), Format::Json))
            .collect();
        let envelope = ProtocolMessage::for_channel(Action::Sync, Arc::from("room"));
        let frames = pages(&envelope, &items, Format::Json, 4096, |page, _, last| {
            Some(Arc::from(if last {
                "s1:".to_owned()
            } else {
                format!("s1:{}", page + 1)
            }))
        });
        assert!(frames.len() > 5, "{} pages", frames.len());
        let mut seen = 0;
        for (i, frame) in frames.iter().enumerate() {
            assert!(
                frame.bytes.len() <= 4096,
                "page {i} is {} bytes",
                frame.bytes.len()
            );
            let m = json::decode(frame.text().unwrap()).unwrap();
            assert_eq!(m.action, Action::Sync);
            let last = i + 1 == frames.len();
            assert_eq!(m.channel_serial.as_deref() == Some("s1:"), last);
            for p in m.presence.unwrap() {
                assert_eq!(p, item(seen));
                seen += 1;
            }
        }
        assert_eq!(seen, 500);
    }

    #[test]
    fn msgpack_pages_decode_whole() {
        let items: Vec<Vec<u8>> = (0..100)
            .map(|n| encode_item(&item(n), Format::Msgpack))
            .collect();
        let envelope = ProtocolMessage::for_channel(Action::Sync, Arc::from("room"));
        let frames = pages(&envelope, &items, Format::Msgpack, 1500, |_, _, last| {
            Some(Arc::from(if last { "s:" } else { "s:1" }))
        });
        assert!(frames.len() > 2);
        let mut seen = 0;
        for frame in &frames {
            assert!(frame.binary && frame.bytes.len() <= 1500);
            let m = msgpack::decode(&frame.bytes).unwrap();
            for p in m.presence.unwrap() {
                assert_eq!(p, item(seen));
                seen += 1;
            }
        }
        assert_eq!(seen, 100);
        let empty = pages(&envelope, &[], Format::Msgpack, 1500, |_, _, _| None);
        assert_eq!(
            msgpack::decode(&empty[0].bytes).unwrap().presence,
            Some(vec![])
        );
    }

    #[test]
    fn no_items_make_one_frame_with_an_empty_array() {
        let envelope = ProtocolMessage::for_channel(Action::Sync, Arc::from("room"));
        let frames = pages(&envelope, &[], Format::Json, 1000, |_, _, _| {
            Some(Arc::from("s:"))
        });
        assert_eq!(frames.len(), 1);
        assert_eq!(
            frames[0].text().unwrap(),
            r#"{"action":16,"channel":"room","channelSerial":"s:","presence":[]}"#
        );
    }
}
