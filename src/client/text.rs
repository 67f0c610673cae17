//! Text the client writes without `core::fmt`, whose machinery would grow the Wasm: the
//! connect URL's query and numbers in decimal.

use crate::prelude::*;

/// Whether the URL's query has a parameter of this name.
pub(super) fn has_param(url: &str, name: &str) -> bool {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .any(|pair| pair.split('=').next() == Some(name))
}

/// The URL with `name=value` in its query, replacing an earlier value.
pub(super) fn with_param(url: &str, name: &str, value: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut out = String::from(base);
    out.push('?');
    let mut first = true;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if pair.split('=').next() == Some(name) {
            continue;
        }
        if !first {
            out.push('&');
        }
        out.push_str(pair);
        first = false;
    }
    if !first {
        out.push('&');
    }
    out.push_str(name);
    out.push('=');
    push_encoded(&mut out, value);
    out
}

/// Appends a number in decimal, without the formatting machinery (it would grow the Wasm).
pub(super) fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// Appends `text` percent-encoded for a URL query.
pub(super) fn push_encoded(url: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            url.push(char::from(byte));
        } else {
            url.push('%');
            url.push(char::from(HEX[usize::from(byte >> 4)]));
            url.push(char::from(HEX[usize::from(byte & 15)]));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimals_match_the_formatter() {
        for n in [0, 7, 10, 12_345, u64::MAX] {
            let mut out = String::from("x:");
            super::push_decimal(&mut out, n);
            assert_eq!(out, format!("x:{n}"));
        }
    }
}
