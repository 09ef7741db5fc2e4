//! A small, strict reader of IPFIX and NetFlow v9 messages for the tests: it checks header
//! and set lengths, padding and template references, and returns every field of every data
//! record.

use std::collections::HashMap;
use std::net::IpAddr;

/// A field specifier: (element id, enterprise number, length).
pub type Spec = (u16, u32, u16);

/// A decoded data record: its template id and each field's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub template: u16,
    pub fields: Vec<(u16, u32, Vec<u8>)>,
}

impl Record {
    fn bytes(&self, id: u16, pen: u32) -> &[u8] {
        let mut found = self.fields.iter().filter(|(i, p, _)| *i == id && *p == pen);
        let (_, _, b) = found.next().unwrap_or_else(|| panic!("field {id}/{pen} missing in {self:?}"));
        assert!(found.next().is_none(), "field {id}/{pen} twice");
        b
    }

    /// True when the record has the field.
    pub fn has(&self, id: u16, pen: u32) -> bool {
        self.fields.iter().any(|(i, p, _)| *i == id && *p == pen)
    }

    /// An unsigned field (IANA when `pen` is 0).
    pub fn uint(&self, id: u16, pen: u32) -> u64 {
        let b = self.bytes(id, pen);
        assert!(b.len() <= 8, "field {id} is {} bytes", b.len());
        b.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x))
    }

    /// An IANA unsigned field.
    pub fn u(&self, id: u16) -> u64 {
        self.uint(id, 0)
    }

    /// An address field (4 or 16 bytes).
    pub fn addr(&self, id: u16) -> IpAddr {
        let b = self.bytes(id, 0);
        match b.len() {
            4 => IpAddr::from(<[u8; 4]>::try_from(b).expect("4 bytes")),
            16 => IpAddr::from(<[u8; 16]>::try_from(b).expect("16 bytes")),
            n => panic!("address of {n} bytes"),
        }
    }
}

/// A decoded message.
#[derive(Clone, Debug, Default)]
pub struct Msg {
    pub version: u16,
    /// IPFIX: length; NetFlow v9: count.
    pub length_or_count: u16,
    /// IPFIX: export time; NetFlow v9: sysUptime.
    pub h1: u32,
    /// IPFIX: sequence; NetFlow v9: unix_secs.
    pub h2: u32,
    /// IPFIX: observation domain; NetFlow v9: sequence.
    pub h3: u32,
    /// NetFlow v9: source id.
    pub h4: u32,
    /// (set id, set length) in order.
    pub sets: Vec<(u16, usize)>,
    /// Templates defined in this message.
    pub templates: Vec<(u16, Vec<Spec>)>,
    pub records: Vec<Record>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads one message of either version; `known` holds templates from earlier messages and
/// gains this message's.
pub fn parse(msg: &[u8], known: &mut HashMap<u16, Vec<Spec>>) -> Msg {
    let version = be16(msg, 0);
    let (header, template_set) = match version {
        10 => (16, 2),
        9 => (20, 0),
        v => panic!("version {v}"),
    };
    let mut m = Msg {
        version,
        length_or_count: be16(msg, 2),
        h1: be32(msg, 4),
        h2: be32(msg, 8),
        h3: be32(msg, 12),
        ..Msg::default()
    };
    if version == 10 {
        assert_eq!(usize::from(m.length_or_count), msg.len(), "IPFIX length field");
    } else {
        m.h4 = be32(msg, 16);
    }
    let mut at = header;
    while at < msg.len() {
        assert!(msg.len() - at >= 4, "set header cut at {at}");
        let id = be16(msg, at);
        let len = usize::from(be16(msg, at + 2));
        assert!(len >= 4 && at + len <= msg.len(), "set length {len} at {at} of {}", msg.len());
        assert_eq!(len % 4, 0, "set {id} is padded to four bytes");
        m.sets.push((id, len));
        let body = &msg[at + 4..at + len];
        if id == template_set {
            let mut p = 0;
            while body.len() - p >= 4 {
                let tid = be16(body, p);
                let count = usize::from(be16(body, p + 2));
                p += 4;
                let mut specs = Vec::new();
                for _ in 0..count {
                    let raw = be16(body, p);
                    let flen = be16(body, p + 2);
                    p += 4;
                    let (fid, pen) = if version == 10 && raw & 0x8000 != 0 {
                        let pen = be32(body, p);
                        p += 4;
                        (raw & 0x7fff, pen)
                    } else {
                        (raw, 0)
                    };
                    specs.push((fid, pen, flen));
                }
                known.insert(tid, specs.clone());
                m.templates.push((tid, specs));
            }
            assert!(body[p..].iter().all(|&b| b == 0), "template set padding");
        } else if id >= 256 {
            let specs = known.get(&id).unwrap_or_else(|| panic!("data set {id} before its template")).clone();
            let rec_len: usize = specs.iter().map(|s| usize::from(s.2)).sum();
            let mut p = 0;
            while body.len() - p >= rec_len {
                let mut fields = Vec::new();
                for &(fid, pen, flen) in &specs {
                    fields.push((fid, pen, body[p..p + usize::from(flen)].to_vec()));
                    p += usize::from(flen);
                }
                m.records.push(Record { template: id, fields });
            }
            assert!(body.len() - p < 4, "padding shorter than four bytes");
            assert!(body[p..].iter().all(|&b| b == 0), "padding is zero");
        } else {
            panic!("unexpected set id {id}");
        }
        at += len;
    }
    if version == 9 {
        let n: usize = m.templates.len() + m.records.len();
        assert_eq!(usize::from(m.length_or_count), n, "v9 count = template + data records");
    }
    m
}

/// Reads a whole stream of messages.
pub fn parse_all(msgs: &[Vec<u8>]) -> Vec<Msg> {
    let mut known = HashMap::new();
    msgs.iter().map(|m| parse(m, &mut known)).collect()
}
