//! Encodes a [`Snippet`] as one pcapng section, whole, into a caller's buffer.
//!
//! Layout (draft-ietf-opsawg-pcapng, little-endian): a Section Header Block whose comment
//! (`opt_comment`, §3.5) names the alert, key, alert time and window, with `shb_userappl`;
//! one Interface Description Block of the snippet's link type, snap length, and nanosecond
//! timestamps (`if_tsresol` = 9, §4.2); one Enhanced Packet Block per packet, the first
//! packet at the alert's time carrying the comment `outpost alert <id>`. One interface only:
//! libpcap (tcpdump) rejects sections whose interfaces differ in link type.
//!
//! The buffer is built whole before any byte is written, so the file's size is known before
//! the quota check, and the file is written with one `write_all`.

use std::fmt::Write as _;

use outpost_decode::LinkType;

use crate::snippet::Snippet;

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const EPB: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_TSRESOL: u16 = 9;
/// Longest note copied into the section comment, in bytes.
const MAX_NOTE: usize = 1024;

/// The section comment: what the file is about, for people reading it in Wireshark.
#[must_use]
pub(crate) fn section_comment(s: &Snippet) -> String {
    let (start, end) = s.window();
    let mut note = s.note();
    if note.len() > MAX_NOTE {
        let mut cut = MAX_NOTE;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note = note.get(..cut).unwrap_or_default();
    }
    let mut c = format!(
        "outpost alert {:032x}; key {}; alert time {}; window {} .. {}; packets {}",
        s.alert_id(),
        s.key(),
        s.alert_ts(),
        start,
        end,
        s.len()
    );
    if s.omitted() > 0 {
        let _ = write!(c, "; omitted {}", s.omitted());
    }
    if s.cut_short() {
        c.push_str("; cut short");
    }
    if !note.is_empty() {
        let _ = write!(c, "; note {note}");
    }
    c
}

/// Replaces `out`'s contents with the pcapng encoding of `s`.
pub(crate) fn encode(s: &Snippet, out: &mut Vec<u8>) {
    out.clear();
    // Section Header Block.
    let start = begin_block(out, SHB);
    put_u32(out, BYTE_ORDER_MAGIC);
    put_u16(out, 1); // major version
    put_u16(out, 0); // minor version
    out.extend_from_slice(&(-1i64).to_le_bytes()); // section length not given
    put_option(out, OPT_COMMENT, section_comment(s).as_bytes());
    let appl = concat!("outpost-snippet ", env!("CARGO_PKG_VERSION"));
    put_option(out, SHB_USERAPPL, appl.as_bytes());
    put_option(out, OPT_ENDOFOPT, &[]);
    end_block(out, start);

    // Interface Description Block (interface 0).
    let start = begin_block(out, IDB);
    let link = s.link().unwrap_or(LinkType::Ethernet);
    put_u16(out, u16::try_from(link.linktype()).unwrap_or(u16::MAX));
    put_u16(out, 0);
    put_u32(out, s.snaplen());
    put_option(out, IF_TSRESOL, &[9]);
    put_option(out, OPT_ENDOFOPT, &[]);
    end_block(out, start);

    let mut marked = false;
    let mark = format!("outpost alert {:032x}", s.alert_id());
    for p in s.packets() {
        let start = begin_block(out, EPB);
        put_u32(out, 0); // interface id
        put_u32(out, (p.ts.0 >> 32) as u32);
        put_u32(out, p.ts.0 as u32);
        let caplen = u32::try_from(p.data.len()).unwrap_or(u32::MAX);
        put_u32(out, caplen);
        put_u32(out, p.wire_len.max(caplen));
        out.extend_from_slice(p.data);
        pad(out);
        if !marked && p.ts == s.alert_ts() {
            marked = true;
            put_option(out, OPT_COMMENT, mark.as_bytes());
            put_option(out, OPT_ENDOFOPT, &[]);
        }
        end_block(out, start);
    }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Writes the block type and a placeholder length; returns where the block starts.
fn begin_block(out: &mut Vec<u8>, ty: u32) -> usize {
    let start = out.len();
    put_u32(out, ty);
    put_u32(out, 0);
    start
}

/// Writes the trailing length and patches the leading one.
fn end_block(out: &mut Vec<u8>, start: usize) {
    let total = u32::try_from(out.len() - start + 4).unwrap_or(u32::MAX);
    put_u32(out, total);
    if let Some(len) = out.get_mut(start + 4..start + 8) {
        len.copy_from_slice(&total.to_le_bytes());
    }
}

/// An option, its value padded to 32 bits (values longer than 65535 bytes are cut).
fn put_option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    let value = value.get(..usize::from(u16::MAX)).unwrap_or(value);
    put_u16(out, code);
    put_u16(out, value.len() as u16);
    out.extend_from_slice(value);
    pad(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_decode::{IpAddress, Nanos};

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn blocks_are_aligned_and_their_lengths_match_at_both_ends() {
        let mut s = Snippet::new(
            7,
            IpAddress::from_v4([10, 0, 0, 1]),
            Nanos::from_secs(100),
            (Nanos::from_secs(95), Nanos::from_secs(105)),
            256,
            "odd-length note",
        );
        s.push(LinkType::Ethernet, Nanos::from_secs(99), 61, &[1; 61], 10);
        s.push(LinkType::Ethernet, Nanos::from_secs(100), 300, &[2; 256], 10);
        let mut out = Vec::new();
        encode(&s, &mut out);
        let mut at = 0;
        let mut types = Vec::new();
        while at < out.len() {
            let len = u32_at(&out, at + 4) as usize;
            assert_eq!(len % 4, 0);
            assert_eq!(u32_at(&out, at + len - 4) as usize, len);
            types.push(u32_at(&out, at));
            at += len;
        }
        assert_eq!(at, out.len());
        assert_eq!(types, [SHB, IDB, EPB, EPB]);
    }
}
