//! NetFlow version 9 (RFC 3954) encoding of flow records.
//!
//! NetFlow v9 records are unidirectional: each flow record gives a forward record
//! (initiator → responder) and, when the reverse direction has packets, a reverse record
//! (responder → initiator, addresses and ports swapped, its own counters, flags, TTLs and
//! times, `SRC_TOS` 0 as it is not measured, the counterpart type for two-way ICMP messages).
//! A flow record whose forward direction had no packets in its period yields only the
//! reverse record.
//!
//! # Packets
//! A 20-byte header (RFC 3954 §5.1): version 9, count (template plus data records in the
//! packet), `sysUptime` (ms), `unix_secs` (export time), sequence number (export packets
//! sent before this one from this source id, modulo 2³²), source id. Then FlowSets, each
//! padded to four bytes (§5.3). Packets are at most [`NetflowV9Options::mtu`] bytes. Templates
//! (FlowSet id 0) open the first packet and are re-sent per [`TemplateRefresh`].
//!
//! # Templates
//! Template 256 (IPv4) and 257 (IPv6), in order: `IPV4_SRC_ADDR` 8 / `IPV6_SRC_ADDR` 27,
//! `IPV4_DST_ADDR` 12 / `IPV6_DST_ADDR` 28, `L4_SRC_PORT` 7, `L4_DST_PORT` 11, `PROTOCOL` 4,
//! `SRC_TOS` 5 (DSCP << 2), `TCP_FLAGS` 6, `SRC_VLAN` 58, `ICMP_TYPE` 32 (type × 256 + code),
//! `FIRST_SWITCHED` 22, `LAST_SWITCHED` 21 (4 bytes each), `IN_BYTES` 1, `IN_PKTS` 2 (8 bytes
//! each), `MIN_TTL` 52, `MAX_TTL` 53, `flowEndReason` 136 (an IPFIX element id, which v9
//! collectors such as nfdump and Wireshark accept).
//!
//! # Time
//! `FIRST_SWITCHED`/`LAST_SWITCHED` are milliseconds of system uptime, so a collector
//! computes absolute times as `unix_secs × 1000 − sysUptime + FIRST_SWITCHED` (nfdump does
//! exactly this per packet). The encoder picks a "boot" time in event time — one day before
//! the first record's start (or the export clock, if earlier) — and writes
//! `sysUptime = unix_secs × 1000 − boot` and `FIRST_SWITCHED = start − boot` (milliseconds),
//! so that computation gives the exact millisecond whatever the sub-second part of the export
//! time. Before the 32-bit uptime could wrap (at 2³¹ ms, about 24.8 days) the boot moves
//! forward to one day before the export clock, at the start of a packet; collectors that track
//! exporter restarts see that as a reboot. A record that started before the boot (more than
//! a day before the export time) has its times clamped to the boot.

use outpost_decode::{Duration, Nanos};
use outpost_flowmeter::FlowRecord;

use crate::ExportError;
use crate::field::{Field, Template, Value, View, iana, millis, write_record};
use crate::message::{Clock, ExportClock, Message, MessageBuf, RefreshState, TemplateRefresh, template_set};

/// NetFlow v9 packet header length (RFC 3954 §5.1).
pub const HEADER_LEN: usize = 20;
/// FlowSet id of a template FlowSet (RFC 3954 §5.2).
pub const TEMPLATE_SET_ID: u16 = 0;
/// NetFlow version number.
pub const VERSION: u16 = 9;
/// Template id of IPv4 records.
pub const IPV4_ID: u16 = 256;
/// Template id of IPv6 records.
pub const IPV6_ID: u16 = 257;

/// How far the chosen boot time lies before the first record (and before the export clock
/// when the boot moves forward).
pub const UPTIME_MARGIN: Duration = Duration::from_secs(86_400);
/// The uptime (ms) at which the boot moves forward, well before the 32-bit field wraps.
const UPTIME_REBASE_MS: u64 = 1 << 31;

macro_rules! v9_fields {
    ($src:expr, $dst:expr) => {
        &[
            $src,
            $dst,
            iana(7, 2, Value::SrcPort),
            iana(11, 2, Value::DstPort),
            iana(4, 1, Value::Proto),
            iana(5, 1, Value::Tos),
            iana(6, 1, Value::TcpFlags),
            iana(58, 2, Value::Vlan),
            iana(32, 2, Value::IcmpTypeCode),
            iana(22, 4, Value::StartUptime),
            iana(21, 4, Value::EndUptime),
            iana(1, 8, Value::Octets),
            iana(2, 8, Value::Packets),
            iana(52, 1, Value::MinTtl),
            iana(53, 1, Value::MaxTtl),
            iana(136, 1, Value::EndReason),
        ]
    };
}

/// Fields of template 256 (IPv4).
pub const IPV4_FIELDS: &[Field] = v9_fields!(iana(8, 4, Value::SrcV4), iana(12, 4, Value::DstV4));
/// Fields of template 257 (IPv6).
pub const IPV6_FIELDS: &[Field] = v9_fields!(iana(27, 16, Value::SrcV6), iana(28, 16, Value::DstV6));
/// Template 256.
pub const IPV4_TEMPLATE: Template = Template { id: IPV4_ID, fields: IPV4_FIELDS };
/// Template 257.
pub const IPV6_TEMPLATE: Template = Template { id: IPV6_ID, fields: IPV6_FIELDS };
/// Every template, as sent.
pub const TEMPLATES: &[Template] = &[IPV4_TEMPLATE, IPV6_TEMPLATE];

/// NetFlow v9 exporter settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetflowV9Options {
    /// Source id in every packet header (default 1).
    pub source_id: u32,
    /// Largest packet in bytes, NetFlow header included, UDP/IP headers not (default 1400).
    /// At least [`NetflowV9Encoder::min_mtu`], at most 65535.
    pub mtu: usize,
    /// When templates are sent again (default: every 20 packets and every 60 s).
    pub template_refresh: TemplateRefresh,
    /// Where the export time comes from (default: record end times).
    pub clock: ExportClock,
}

impl Default for NetflowV9Options {
    fn default() -> NetflowV9Options {
        NetflowV9Options {
            source_id: 1,
            mtu: 1400,
            template_refresh: TemplateRefresh::default(),
            clock: ExportClock::RecordEnd,
        }
    }
}

/// Encodes flow records into NetFlow v9 export packets (no sockets; see
/// [`crate::IpfixEncoder`] for the shape of the API).
#[derive(Debug)]
pub struct NetflowV9Encoder {
    options: NetflowV9Options,
    msg: MessageBuf,
    templates: Vec<u8>,
    refresh: RefreshState,
    clock: Clock,
    /// Packets finished so far (the next header's sequence number, mod 2³²).
    packets: u64,
    /// "System boot", milliseconds since the epoch; chosen at the first packet.
    boot_ms: Option<u64>,
}

impl NetflowV9Encoder {
    /// The smallest MTU that fits the header, the template FlowSet and one IPv6 record.
    #[must_use]
    pub fn min_mtu() -> usize {
        HEADER_LEN
            + template_set(TEMPLATE_SET_ID, TEMPLATES).len()
            + crate::message::align4(4 + IPV6_TEMPLATE.record_len())
    }

    /// A new encoder.
    ///
    /// # Errors
    /// [`ExportError::Mtu`] when the MTU is outside `min_mtu()..=65535`.
    pub fn new(options: NetflowV9Options) -> Result<NetflowV9Encoder, ExportError> {
        let min = NetflowV9Encoder::min_mtu();
        if options.mtu < min || options.mtu > usize::from(u16::MAX) {
            return Err(ExportError::Mtu { mtu: options.mtu, min, max: usize::from(u16::MAX) });
        }
        Ok(NetflowV9Encoder {
            options,
            msg: MessageBuf::new(options.mtu, HEADER_LEN),
            templates: template_set(TEMPLATE_SET_ID, TEMPLATES),
            refresh: RefreshState { policy: options.template_refresh, last: None },
            clock: Clock { source: options.clock, now: Nanos::ZERO },
            packets: 0,
            boot_ms: None,
        })
    }

    /// The settings.
    #[must_use]
    pub fn options(&self) -> &NetflowV9Options {
        &self.options
    }

    /// The export clock now.
    #[must_use]
    pub fn now(&self) -> Nanos {
        self.clock.now
    }

    /// The boot time in milliseconds since the epoch, once the first packet was started.
    #[must_use]
    pub fn boot_ms(&self) -> Option<u64> {
        self.boot_ms
    }

    /// Moves the export clock forward to `now` (event time; never backwards).
    pub fn advance(&mut self, now: Nanos) {
        self.clock.advance(now);
    }

    /// Adds one flow record (a forward and possibly a reverse data record). A packet that is
    /// full is finished and handed to `emit` first.
    pub fn encode(&mut self, record: &FlowRecord, emit: &mut impl FnMut(Message<'_>)) {
        self.clock.saw_record(record.end());
        if record.fwd.packets > 0 || record.rev.packets == 0 {
            self.add(&View::forward(record), emit);
        }
        if record.rev.packets > 0 {
            self.add(&View::reverse(record), emit);
        }
    }

    fn add(&mut self, v: &View, emit: &mut impl FnMut(Message<'_>)) {
        let t = if v.is_v4() { &IPV4_TEMPLATE } else { &IPV6_TEMPLATE };
        let len = t.record_len();
        if !self.msg.is_idle() && self.msg.projected_len(t.id, len) > self.msg.mtu {
            self.finish(emit);
        }
        if self.msg.is_idle() {
            self.begin(v.start);
        }
        self.msg.open_set(t.id);
        write_record(&mut self.msg.buf, t.fields, v, self.boot_ms.unwrap_or(0));
        self.msg.data_records += 1;
    }

    fn begin(&mut self, first_start: Nanos) {
        let now_ms = millis(self.clock.now);
        let rebase = match self.boot_ms {
            None => true,
            Some(boot) => now_ms.saturating_sub(boot) >= UPTIME_REBASE_MS,
        };
        if rebase {
            let anchor =
                if self.boot_ms.is_none() { first_start.min(self.clock.now) } else { self.clock.now };
            self.boot_ms = Some(millis(anchor.saturating_sub(UPTIME_MARGIN)));
        }
        self.msg.begin();
        if self.refresh.due(self.packets, self.clock.now) {
            self.msg.push_set(&self.templates, TEMPLATES.len() as u32);
            self.refresh.last = Some((self.packets, self.clock.now));
        }
    }

    /// Finishes the packet being built, if any, and hands it to `emit`.
    pub fn flush(&mut self, emit: &mut impl FnMut(Message<'_>)) {
        if !self.msg.is_idle() {
            self.finish(emit);
        }
    }

    fn finish(&mut self, emit: &mut impl FnMut(Message<'_>)) {
        self.msg.finish();
        let count = u16::try_from(self.msg.data_records + self.msg.template_records).unwrap_or(u16::MAX);
        let unix_secs = self.clock.now.secs();
        // sysUptime chosen so that unix_secs * 1000 - sysUptime is exactly the boot time.
        let uptime = (unix_secs * 1000).saturating_sub(self.boot_ms.unwrap_or(0));
        let mut h = [0u8; HEADER_LEN];
        h[0..2].copy_from_slice(&VERSION.to_be_bytes());
        h[2..4].copy_from_slice(&count.to_be_bytes());
        h[4..8].copy_from_slice(&u32::try_from(uptime).unwrap_or(u32::MAX).to_be_bytes());
        h[8..12].copy_from_slice(&u32::try_from(unix_secs).unwrap_or(u32::MAX).to_be_bytes());
        // RFC 3954 §5.1: export packets sent before this one, modulo 2^32.
        h[12..16].copy_from_slice(&(self.packets as u32).to_be_bytes());
        h[16..20].copy_from_slice(&self.options.source_id.to_be_bytes());
        if let Some(dst) = self.msg.buf.get_mut(..HEADER_LEN) {
            dst.copy_from_slice(&h);
        }
        emit(Message {
            bytes: &self.msg.buf,
            data_records: self.msg.data_records,
            template_records: self.msg.template_records,
        });
        self.packets += 1;
        self.msg.reset();
    }
}

impl crate::exporter::FlowEncoder for NetflowV9Encoder {
    fn encode(&mut self, record: &FlowRecord, emit: &mut impl FnMut(Message<'_>)) {
        NetflowV9Encoder::encode(self, record, emit);
    }
    fn flush(&mut self, emit: &mut impl FnMut(Message<'_>)) {
        NetflowV9Encoder::flush(self, emit);
    }
    fn advance(&mut self, now: Nanos) {
        NetflowV9Encoder::advance(self, now);
    }
}
