//! Application payloads of the mix scenario, written into a reused buffer: DNS (RFC 1035, with
//! EDNS(0) per RFC 6891), NTP v4 (RFC 5905), syslog (RFC 3164 style), ICMP echo bodies, and
//! filler bytes for TCP segments.
//!
//! Every builder writes exactly the length it is asked for (where it takes one), because the
//! conversation scripts decide packet sizes — and so fragment counts — before bytes exist.

use std::io::Write as _;
use std::net::IpAddr;

/// Names asked for in DNS traffic.
pub(crate) const DNS_NAMES: &[&[&str]] = &[
    &["www", "example", "com"],
    &["api", "example", "net"],
    &["time", "example", "org"],
    &["updates", "example", "com"],
    &["cdn", "example", "net"],
    &["mail", "example", "org"],
    &["_dmarc", "example", "com"],
    &["selector1", "_domainkey", "example", "net"],
];

/// DNS record types used.
pub(crate) mod qtype {
    /// IPv4 address.
    pub(crate) const A: u16 = 1;
    /// Text strings.
    pub(crate) const TXT: u16 = 16;
    /// IPv6 address.
    pub(crate) const AAAA: u16 = 28;
}

/// What a DNS message says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DnsMessage {
    /// A query, with an EDNS(0) OPT record advertising 4096-byte answers when `edns`.
    Query {
        /// Carries an OPT record.
        edns: bool,
    },
    /// An answer with one A or AAAA record (`addr`, by the query type).
    Address,
    /// NXDOMAIN, no records.
    NxDomain,
    /// An answer with one TXT record of several strings, and an OPT record, exactly `len`
    /// bytes long (at least [`dns_txt_min_len`]).
    Txt {
        /// Length of the whole DNS message.
        len: u32,
    },
}

/// Encoded length of a name: a length byte per label, the labels, the root byte.
fn name_len(name: &[&str]) -> usize {
    name.iter().map(|l| 1 + l.len()).sum::<usize>() + 1
}

/// The shortest [`DnsMessage::Txt`] message for `name`.
pub(crate) fn dns_txt_min_len(name: usize) -> u32 {
    let n = DNS_NAMES.get(name).copied().unwrap_or(DNS_NAMES[0]);
    (12 + name_len(n) + 4 + 12 + 1 + 11) as u32
}

/// Length of a DNS message that is not [`DnsMessage::Txt`].
#[cfg(test)]
pub(crate) fn dns_len(name: usize, msg: DnsMessage, v6_answer: bool) -> usize {
    let n = DNS_NAMES.get(name).copied().unwrap_or(DNS_NAMES[0]);
    let q = 12 + name_len(n) + 4;
    match msg {
        DnsMessage::Query { edns } => q + if edns { 11 } else { 0 },
        DnsMessage::Address => q + 12 + if v6_answer { 16 } else { 4 },
        DnsMessage::NxDomain => q,
        DnsMessage::Txt { len } => len as usize,
    }
}

/// Appends a DNS message (RFC 1035 §4.1): header, the question for `DNS_NAMES[name]` with
/// `qtype`, and the records `msg` asks for. `answer` is the address an A/AAAA answer carries.
pub(crate) fn dns(p: &mut Vec<u8>, id: u16, name: usize, qtype: u16, msg: DnsMessage, answer: IpAddr) {
    let start = p.len();
    let n = DNS_NAMES.get(name).copied().unwrap_or(DNS_NAMES[0]);
    // QR, opcode 0, RD (+ RA in answers); RCODE 3 for NXDOMAIN.
    let (flags, an, ar): (u16, u16, u16) = match msg {
        DnsMessage::Query { edns } => (0x0100, 0, u16::from(edns)),
        DnsMessage::Address => (0x8180, 1, 0),
        DnsMessage::NxDomain => (0x8183, 0, 0),
        DnsMessage::Txt { .. } => (0x8180, 1, 1),
    };
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&flags.to_be_bytes());
    for count in [1, an, 0, ar] {
        p.extend_from_slice(&count.to_be_bytes());
    }
    for label in n {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes()); // class IN
    let record = |p: &mut Vec<u8>, ty: u16, rdlen: usize| {
        p.extend_from_slice(&[0xc0, 0x0c]); // pointer to the question name
        p.extend_from_slice(&ty.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p.extend_from_slice(&300u32.to_be_bytes()); // TTL
        p.extend_from_slice(&(rdlen as u16).to_be_bytes());
    };
    let opt = |p: &mut Vec<u8>| {
        // OPT pseudo-record (RFC 6891 §6.1.2): root name, type 41, UDP size 4096, no options.
        p.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
    };
    match msg {
        DnsMessage::Query { edns } => {
            if edns {
                opt(p);
            }
        }
        DnsMessage::NxDomain => {}
        DnsMessage::Address => match answer {
            IpAddr::V4(a) => {
                record(p, qtype::A, 4);
                p.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                record(p, qtype::AAAA, 16);
                p.extend_from_slice(&a.octets());
            }
        },
        DnsMessage::Txt { len } => {
            let used = p.len() - start + 12 + 11;
            let rdlen = (len as usize).saturating_sub(used).clamp(1, usize::from(u16::MAX));
            record(p, qtype::TXT, rdlen);
            // Character strings of up to 255 bytes (RFC 1035 §3.3.14), as long DKIM/SPF
            // records are split.
            let mut left = rdlen;
            let mut k = 0u8;
            while left > 0 {
                let s = (left - 1).min(255);
                p.push(s as u8);
                p.extend((0..s).map(|i| b'a' + ((i as u8).wrapping_add(k)) % 26));
                left -= s + 1;
                k = k.wrapping_add(7);
            }
            opt(p);
        }
    }
}

/// Seconds from the NTP era (1900) to the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// An NTP timestamp (RFC 5905 §6): seconds since 1900 and a binary fraction.
fn ntp_time(ns: u64) -> [u8; 8] {
    let secs = (ns / 1_000_000_000 + NTP_UNIX_OFFSET) as u32;
    let frac = (((ns % 1_000_000_000) << 32) / 1_000_000_000) as u32;
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&secs.to_be_bytes());
    out[4..].copy_from_slice(&frac.to_be_bytes());
    out
}

/// Appends a 48-byte NTP v4 packet (RFC 5905 §7.3): a client request (mode 3) sent at `now`,
/// or a server reply (mode 4, stratum 2) to a request sent at `origin`.
pub(crate) fn ntp(p: &mut Vec<u8>, server: bool, now: u64, origin: u64) {
    if server {
        p.extend_from_slice(&[0x24, 2, 6, 0xe9]); // LI 0, VN 4, mode 4; stratum 2; poll; precision
        p.extend_from_slice(&0x0000_0100u32.to_be_bytes()); // root delay
        p.extend_from_slice(&0x0000_0200u32.to_be_bytes()); // root dispersion
        p.extend_from_slice(&[192, 0, 2, 1]); // reference id
        p.extend_from_slice(&ntp_time(now.saturating_sub(16_000_000_000)));
        p.extend_from_slice(&ntp_time(origin));
        p.extend_from_slice(&ntp_time(now));
        p.extend_from_slice(&ntp_time(now));
    } else {
        p.extend_from_slice(&[0x23, 0, 6, 0xe9]);
        p.resize(p.len() + 36, 0);
        p.extend_from_slice(&ntp_time(now));
    }
}

/// Words syslog messages are made of.
const WORDS: &[&str] = &[
    "request",
    "served",
    "in",
    "ms",
    "user",
    "session",
    "opened",
    "closed",
    "for",
    "from",
    "port",
    "ssh2",
    "connection",
    "accepted",
    "GET",
    "/index.html",
    "status=200",
    "bytes=5120",
    "upstream",
    "timeout",
];

/// Appends a syslog message (RFC 3164 layout) of exactly `len` bytes (at least 40): priority,
/// timestamp, host, tag, then words until the length is reached.
pub(crate) fn syslog(p: &mut Vec<u8>, len: usize, host: u32, pid: u32, now: u64) {
    let start = p.len();
    let secs = now / 1_000_000_000 % 86_400;
    // Writing into a Vec cannot fail.
    let _ = write!(
        p,
        "<134>Jan  1 {:02}:{:02}:{:02} host{host} app[{pid}]: ",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    let mut i = (host as usize + pid as usize) % WORDS.len();
    while p.len() - start < len {
        p.extend_from_slice(WORDS[i % WORDS.len()].as_bytes());
        p.push(b' ');
        i += 7;
    }
    p.truncate(start + len);
}

/// Appends line `n` of the text plain-HTTP bodies are cut from: words and a CRLF.
pub(crate) fn push_text_line(p: &mut Vec<u8>, n: usize) {
    for k in 0..12 {
        p.extend_from_slice(WORDS[(n * 7 + k * 3) % WORDS.len()].as_bytes());
        p.push(b' ');
    }
    p.extend_from_slice(b"\r\n");
}

/// Appends an echo body: Linux `ping` (a 16-byte `struct timeval` of the send time, then bytes
/// 0x10, 0x11, … to 56 bytes) or Windows `ping` (32 letters).
pub(crate) fn echo_body(p: &mut Vec<u8>, windows: bool, sent: u64) {
    if windows {
        p.extend_from_slice(b"abcdefghijklmnopqrstuvwabcdefghi");
    } else {
        p.extend_from_slice(&(sent / 1_000_000_000).to_le_bytes());
        p.extend_from_slice(&(sent % 1_000_000_000 / 1_000).to_le_bytes());
        p.extend((0x10u8..0x38).take(40));
    }
}

/// Length of an echo body.
pub(crate) const fn echo_len(windows: bool) -> u32 {
    if windows { 32 } else { 56 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_answers_have_exactly_the_requested_length_and_valid_strings() {
        for (name, labels) in DNS_NAMES.iter().enumerate() {
            for len in [dns_txt_min_len(name), 1600, 1601, 4000, 8191] {
                let mut p = vec![0xee; 3];
                dns(&mut p, 7, name, qtype::TXT, DnsMessage::Txt { len }, IpAddr::from([0, 0, 0, 0]));
                let m = &p[3..];
                assert_eq!(m.len(), len as usize, "name {name} len {len}");
                assert_eq!(&m[4..12], &[0, 1, 0, 1, 0, 0, 0, 1], "QD, AN, NS, AR counts");
                // Walk the TXT strings: they must end exactly where the OPT record starts.
                let rd_at = 12 + name_len(labels) + 4 + 12;
                let rdlen = usize::from(u16::from_be_bytes([m[rd_at - 2], m[rd_at - 1]]));
                let mut i = rd_at;
                while i < rd_at + rdlen {
                    i += 1 + usize::from(m[i]);
                }
                assert_eq!(i, rd_at + rdlen);
                assert_eq!(m.len() - i, 11, "OPT record last");
            }
        }
    }

    #[test]
    fn other_messages_have_the_computed_length() {
        let a4 = IpAddr::from([198, 51, 100, 7]);
        let a6: IpAddr = "2001:db8:ffff::7".parse().unwrap();
        for (msg, addr) in [
            (DnsMessage::Query { edns: false }, a4),
            (DnsMessage::Query { edns: true }, a4),
            (DnsMessage::Address, a4),
            (DnsMessage::Address, a6),
            (DnsMessage::NxDomain, a4),
        ] {
            let mut p = Vec::new();
            dns(&mut p, 1, 2, qtype::A, msg, addr);
            assert_eq!(p.len(), dns_len(2, msg, addr.is_ipv6()), "{msg:?}");
        }
    }

    #[test]
    fn ntp_syslog_and_echo_sizes() {
        let mut p = Vec::new();
        ntp(&mut p, false, 1_767_225_600_500_000_000, 0);
        assert_eq!(p.len(), 48);
        assert_eq!(p[0], 0x23);
        p.clear();
        ntp(&mut p, true, 1_767_225_600_600_000_000, 1_767_225_600_500_000_000);
        assert_eq!(p.len(), 48);
        assert_eq!(&p[24..32], &ntp_time(1_767_225_600_500_000_000));
        for len in [40, 41, 300, 7999] {
            p.clear();
            syslog(&mut p, len, 12, 345, 1_767_225_600_000_000_000);
            assert_eq!(p.len(), len);
            assert!(p.starts_with(b"<134>Jan  1 00:00:00 host12 app[345]: "));
        }
        for windows in [false, true] {
            p.clear();
            echo_body(&mut p, windows, 1_767_225_600_123_456_789);
            assert_eq!(p.len() as u32, echo_len(windows));
        }
    }
}
