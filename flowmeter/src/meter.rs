//! The flow meter of one worker: decoded packets in, flow records out.
//!
//! It turns each IP packet into a [`FlowKey`] (ports, ICMP port equivalents, or — for later
//! fragments — the ports of their first fragment) and hands it to the [`FlowTable`].
//!
//! # Fragments
//! IPv4 and IPv6 fragments are counted in their flow. A first fragment (offset 0, more
//! fragments) carries the transport header: its ports are remembered under
//! `(source, destination, protocol, identification)` for `fragment_timeout`. Later fragments
//! look their ports up there. A later fragment whose first fragment was not seen (lost,
//! reordered after it, or expired) is counted in `fragments_orphaned` and in a flow without
//! ports (source, destination, protocol, ports 0), so its bytes are not lost. The tracking
//! table holds at most `fragment_capacity` datagrams; when full the oldest entry is dropped
//! (counted).

use std::collections::VecDeque;

use hashbrown::HashMap;
use outpost_decode::meta::ip_proto;
use outpost_decode::{Duration, Fragment, IpAddress, Nanos, Network, PacketMeta, Transport};

use crate::key::{FlowKey, Side, icmp_port_equivalents};
use crate::record::FlowRecord;
use crate::table::{FlowTable, IntervalDelta, Observation, TableConfig, TableStats};

/// Flow meter settings (the `[flows]` section of the sensor configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowConfig {
    /// Table sizes and timeouts.
    pub table: TableConfig,
    /// How long a first fragment's ports are kept for later fragments.
    pub fragment_timeout: Duration,
    /// Most fragmented datagrams tracked at once.
    pub fragment_capacity: usize,
}

impl Default for FlowConfig {
    /// Idle 30 s, active 120 s, close linger 2 s, 1,048,576 flows per worker; fragments kept
    /// 30 s, 65,536 datagrams.
    fn default() -> FlowConfig {
        FlowConfig {
            table: TableConfig {
                capacity: 1 << 20,
                idle_timeout: Duration::from_secs(30),
                active_timeout: Duration::from_secs(120),
                close_linger: Duration::from_secs(2),
            },
            fragment_timeout: Duration::from_secs(30),
            fragment_capacity: 1 << 16,
        }
    }
}

/// Counters of a flow meter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowMeterStats {
    /// IP packets metered.
    pub packets: u64,
    /// Frames that were not IP (ARP, other EtherTypes): not part of any flow.
    pub not_ip: u64,
    /// First fragments seen.
    pub fragments_first: u64,
    /// Later fragments matched to their first fragment's ports.
    pub fragments_matched: u64,
    /// Later fragments whose first fragment was not seen.
    pub fragments_orphaned: u64,
    /// Fragment entries dropped because the tracking table was full.
    pub fragment_table_full: u64,
    /// The flow table's counters.
    pub table: TableStats,
}

impl FlowMeterStats {
    /// Adds another worker's counters (gauges add up: workers hold disjoint flows).
    pub fn merge(&mut self, o: &FlowMeterStats) {
        self.packets += o.packets;
        self.not_ip += o.not_ip;
        self.fragments_first += o.fragments_first;
        self.fragments_matched += o.fragments_matched;
        self.fragments_orphaned += o.fragments_orphaned;
        self.fragment_table_full += o.fragment_table_full;
        self.table.flows += o.table.flows;
        for (a, b) in self.table.records.iter_mut().zip(o.table.records) {
            *a += b;
        }
        self.table.active += o.table.active;
        self.table.peak += o.table.peak;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FragKey {
    src: IpAddress,
    dst: IpAddress,
    id: u32,
    proto: u8,
}

#[derive(Clone, Copy, Debug)]
struct FragEntry {
    ports: (u16, u16),
    expires: Nanos,
}

/// First-fragment ports, kept for the later fragments of the same datagram.
#[derive(Debug)]
struct FragmentTracker {
    map: HashMap<FragKey, FragEntry, foldhash::fast::RandomState>,
    /// Insertion order with expiry, for O(1) expiry of time-ordered input.
    order: VecDeque<(FragKey, Nanos)>,
    timeout: Duration,
    capacity: usize,
}

impl FragmentTracker {
    fn expire(&mut self, now: Nanos) {
        while let Some(&(k, exp)) = self.order.front() {
            if exp > now {
                break;
            }
            self.order.pop_front();
            if self.map.get(&k).is_some_and(|e| e.expires == exp) {
                self.map.remove(&k);
            }
        }
    }

    /// Remembers a first fragment's ports. Returns true when an old entry had to be dropped.
    /// A repeated first fragment (a retransmission) updates the ports but keeps its original
    /// expiry, so `order` holds each datagram once and stays bounded by the capacity.
    fn insert(&mut self, k: FragKey, ports: (u16, u16), now: Nanos) -> bool {
        if let Some(e) = self.map.get_mut(&k) {
            e.ports = ports;
            return false;
        }
        let mut dropped = false;
        if self.map.len() >= self.capacity {
            while let Some((old, exp)) = self.order.pop_front() {
                if self.map.get(&old).is_some_and(|e| e.expires == exp) {
                    self.map.remove(&old);
                    dropped = true;
                    break;
                }
            }
        }
        let expires = now.saturating_add(self.timeout);
        self.map.insert(k, FragEntry { ports, expires });
        self.order.push_back((k, expires));
        dropped
    }

    fn lookup(&self, k: &FragKey, now: Nanos) -> Option<(u16, u16)> {
        self.map.get(k).filter(|e| e.expires > now).map(|e| e.ports)
    }
}

/// Flows tracked from which [`FlowMeter::prepare`] prefetches: about a core's L2 (1 MiB) at
/// ~124 bytes a flow. Above it the table is not cached in a real sensor, whose packet stream
/// evicts it from the shared L3; below it prefetching only costs. Cheap either way since
/// `prepare` keeps the slot it found for `on_prepared` (BENCHMARKS.md, section 9, item 2).
pub const PREFETCH_MIN_FLOWS: usize = 8_192;

/// The ports (or ICMP port equivalents) of a packet that is not a later fragment.
#[inline]
fn ports_of(m: &PacketMeta) -> (u16, u16) {
    if m.has_ports() {
        (m.src_port, m.dst_port)
    } else if m.transport == Transport::Parsed && matches!(m.ip_proto, ip_proto::ICMP | ip_proto::ICMPV6) {
        let (s, d, _) = icmp_port_equivalents(m.icmp_type, m.icmp_code, m.network == Network::Ipv6);
        (s, d)
    } else {
        (0, 0)
    }
}

/// The key of an IP packet that is not a fragment.
#[inline]
fn key_of_unfragmented(m: &PacketMeta) -> (FlowKey, Side) {
    let (s, d) = ports_of(m);
    let vlan = if m.vlan_count > 0 { m.vlan[0] } else { 0 };
    FlowKey::new(m.src, s, m.dst, d, m.ip_proto, vlan)
}

/// A packet of the batch given to [`FlowMeter::prepare`]: its flow key, the side that sent it,
/// the key's hash and — when the table was prefetched — the slot the index pointed to then.
#[derive(Clone, Copy, Debug)]
struct Prepared {
    key: FlowKey,
    side: Side,
    hash: u64,
    hint: Option<u32>,
}

/// One worker's flow meter.
#[derive(Debug)]
pub struct FlowMeter {
    table: FlowTable,
    fragments: FragmentTracker,
    now: Nanos,
    stats: FlowMeterStats,
    /// Keys of the batch given to `prepare`.
    prepared: Vec<Option<Prepared>>,
}

impl FlowMeter {
    /// A flow meter for worker `worker` (its number goes into flow ids).
    #[must_use]
    pub fn new(config: FlowConfig, worker: u8) -> FlowMeter {
        FlowMeter {
            table: FlowTable::new(config.table, worker),
            fragments: FragmentTracker {
                map: HashMap::with_hasher(foldhash::fast::RandomState::default()),
                order: VecDeque::new(),
                timeout: config.fragment_timeout,
                capacity: config.fragment_capacity.max(1),
            },
            now: Nanos::ZERO,
            stats: FlowMeterStats::default(),
            prepared: Vec::new(),
        }
    }

    /// The key and sender side of a packet, or `None` for non-IP frames.
    #[inline]
    fn key_of(&mut self, m: &PacketMeta) -> Option<(FlowKey, Side)> {
        if !m.is_ip() {
            return None;
        }
        let frag_key = || FragKey { src: m.src, dst: m.dst, id: m.frag_id, proto: m.ip_proto };
        let (sport, dport) = match m.fragment {
            Fragment::Later => match self.fragments.lookup(&frag_key(), m.ts) {
                Some(p) => {
                    self.stats.fragments_matched += 1;
                    p
                }
                None => {
                    self.stats.fragments_orphaned += 1;
                    (0, 0)
                }
            },
            _ => {
                let ports = if m.has_ports() {
                    (m.src_port, m.dst_port)
                } else if m.transport == Transport::Parsed
                    && matches!(m.ip_proto, ip_proto::ICMP | ip_proto::ICMPV6)
                {
                    let (s, d, _) =
                        icmp_port_equivalents(m.icmp_type, m.icmp_code, m.network == Network::Ipv6);
                    (s, d)
                } else {
                    (0, 0)
                };
                if m.fragment == Fragment::First {
                    self.stats.fragments_first += 1;
                    if self.fragments.insert(frag_key(), ports, m.ts) {
                        self.stats.fragment_table_full += 1;
                    }
                }
                ports
            }
        };
        let vlan = if m.vlan_count > 0 { m.vlan[0] } else { 0 };
        Some(FlowKey::new(m.src, sport, m.dst, dport, m.ip_proto, vlan))
    }

    /// Prepares a batch: computes the flow keys of its packets once and, when the table is
    /// large enough to miss the CPU caches, starts loading the index lines and then the slots
    /// they will touch, so the misses of the batch overlap instead of queueing one packet at a
    /// time. Then call [`FlowMeter::on_prepared`] for each packet of the batch, in order.
    pub fn prepare<'a>(&mut self, batch: impl IntoIterator<Item = &'a PacketMeta>) {
        self.prepared.clear();
        for m in batch {
            // Fragments go through the tracker (which has side effects) at metering time.
            let ready = m.is_ip() && m.fragment == Fragment::None;
            self.prepared.push(if ready {
                let (key, side) = key_of_unfragmented(m);
                Some(Prepared { key, side, hash: key.hash64(), hint: None })
            } else {
                None
            });
        }
        if self.table.len() >= PREFETCH_MIN_FLOWS {
            for p in self.prepared.iter().flatten() {
                self.table.prefetch_index(p.hash);
            }
            // The slot each index line points to is kept, so metering need not search the
            // index again (it checks the slot still holds the key).
            for p in self.prepared.iter_mut().flatten() {
                p.hint = self.table.prefetch_slot(p.hash);
            }
        }
    }

    /// Meters packet `i` of the batch last given to [`FlowMeter::prepare`] (`m` must be that
    /// packet, the `i`-th the batch yielded); finished records go to `out`.
    #[inline]
    pub fn on_prepared(&mut self, i: usize, m: &PacketMeta, out: &mut impl FnMut(FlowRecord)) {
        match self.prepared.get(i).copied().flatten() {
            Some(p) => self.meter(m, &p.key, p.side, p.hash, p.hint, out),
            None => self.on_packet(m, out),
        }
    }

    /// Meters one decoded packet; finished records go to `out`.
    #[inline]
    pub fn on_packet(&mut self, m: &PacketMeta, out: &mut impl FnMut(FlowRecord)) {
        let Some((key, side)) = self.key_of(m) else {
            self.stats.not_ip += 1;
            return;
        };
        self.meter(m, &key, side, key.hash64(), None, out);
    }

    /// Counts an IP packet whose key is known.
    #[inline]
    fn meter(
        &mut self,
        m: &PacketMeta,
        key: &FlowKey,
        side: Side,
        hash: u64,
        hint: Option<u32>,
        out: &mut impl FnMut(FlowRecord),
    ) {
        if m.ts > self.now {
            self.now = m.ts;
        }
        self.stats.packets += 1;
        let icmp =
            matches!(m.ip_proto, ip_proto::ICMP | ip_proto::ICMPV6) && m.transport == Transport::Parsed;
        let obs = Observation {
            ts: m.ts,
            ip_len: m.ip_len,
            tcp_flags: if m.ip_proto == ip_proto::TCP { (m.tcp_flags & 0xff) as u8 } else { 0 },
            ttl: m.ttl,
            tos: m.tos,
            icmp_type: if icmp { m.icmp_type } else { 0 },
            icmp_code: if icmp { m.icmp_code } else { 0 },
        };
        self.table.observe_hinted(key, hash, hint, side, &obs, out);
    }

    /// Event time advanced to `now`: export flows that timed out, forget old fragments.
    pub fn on_clock(&mut self, now: Nanos, out: &mut impl FnMut(FlowRecord)) {
        if now > self.now {
            self.now = now;
        }
        self.table.advance(self.now, out);
        self.table.fold_advance(self.now);
        self.fragments.expire(self.now);
    }

    /// Hands over every flow's bytes and packets per interval of `width` event time, or stops
    /// (`None`): see [`FlowTable::fold_intervals`].
    pub fn fold_intervals(&mut self, width: Option<Duration>) {
        self.table.fold_intervals(width);
    }

    /// Takes what the interval fold handed over so far, in order.
    pub fn drain_intervals(&mut self) -> impl Iterator<Item = IntervalDelta> + '_ {
        self.table.drain_intervals()
    }

    /// End of input: flows whose timeouts already passed end with their own reason, then
    /// every flow still tracked is exported.
    pub fn finish(&mut self, out: &mut impl FnMut(FlowRecord)) {
        self.table.advance(self.now, out);
        self.table.flush(out);
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> FlowMeterStats {
        let mut s = self.stats.clone();
        s.table = self.table.stats.clone();
        s
    }

    /// Bytes allocated by the flow table.
    #[must_use]
    pub fn allocated_bytes(&self) -> usize {
        self.table.allocated_bytes()
    }
}
