//! The seed scenario (`outpost gen seed`): Apache Flink's "streaming state machine" example
//! (`flink-examples-streaming`, `StateMachineExample` / `EventsGenerator`) reproduced as network
//! traffic, with exact ground truth.
//!
//! # The scenario
//!
//! Each client (a source IP) walks a small state machine by sending events `a`..`g`. An event
//! is one UDP datagram from the client to a server, to destination port `7000 + n`
//! (`a` = 7001, `b` = 7002, … `g` = 7007). The valid machine and the probabilities of the Flink
//! example (plus a self-loop on Z) are:
//!
//! ```text
//! INITIAL --a (0.6)--> W        W --b (1.0)--> Y
//! INITIAL --c (0.4)--> X        Y --e (1.0)--> Z
//! X --b (0.2)--> Y              Z --f (f_prob)--> Z
//! X --d (0.8)--> Z              Z --g (1 - f_prob)--> TERM
//! ```
//!
//! Any other event in a state is an invalid transition. With probability `error_prob` (the
//! example's `errorProbFactor`) a client's next event is replaced by an invalid one, drawn
//! uniformly among the events that are invalid in its current state. Every such event is one
//! line of ground truth ([`TruthRecord`]).
//!
//! # The detector semantics the truth assumes
//!
//! - One alert per invalid transition. The invalid event is consumed and the source's machine
//!   restarts at INITIAL: its *next* event is judged from INITIAL. The generator does the same:
//!   after an invalid event the client stays (same IP, same port) and continues from INITIAL.
//! - TERM releases the source's state; its next event would start at INITIAL.
//! - A source with no event for `idle_timeout` (default 60 s) is released. The generator never
//!   lets a client wait that long (see *Timing*), so idle releases never change the truth.
//!
//! # Clients
//!
//! `clients` clients run concurrently, each with its own source address, a stable ephemeral
//! source port (32768..=60999) and one server it sends every event to (sticky, as a session
//! would be). A client that reaches TERM is replaced, at that moment, by a new client with a
//! new random address (a new walk from INITIAL); addresses are unique among live clients, and
//! an address may come back later after its previous owner terminated, which the detector
//! sees as a released source starting over. So TERM exercises release and invalid events
//! exercise restart-in-place.
//!
//! Client addresses are drawn uniformly from the four client networks of [`NETWORKS`]
//! (`10.1.0.0/16` .. `10.4.0.0/16`, and `2001:db8:1::/48` .. `2001:db8:4::/48` for the
//! `ipv6_fraction` of clients on IPv6); servers are the `.10`..`.13` / `::10`..`::13` hosts of
//! `192.168.1.0/24`, `172.16.5.0/24` and `192.168.7.0/24` (and their IPv6 twins). The demo
//! configuration maps these prefixes to the network ids in [`NETWORKS`].
//!
//! # Timing
//!
//! Each client is a renewal process: after each event it "thinks" for a truncated exponential
//! time whose mean is `clients / rate`, so the clients together send `rate` events per second.
//! The superposition of many such processes is close to a Poisson process (Palm–Khintchine),
//! i.e. aggregate inter-arrival times are close to exponential with mean `1 / rate`; a test
//! checks the rate. Every think time is at most 95 % of `idle_timeout`, so **no client ever
//! waits `idle_timeout` or longer between two of its events**, even after microsecond
//! truncation or a coarse timer in the detector. The mean must stay at most a quarter of that
//! bound ([`SeedParamsError::Overloaded`] otherwise). Each client's first event comes one
//! think time after `start`, so the rate is flat from the start (no burst at `start`).
//!
//! Packets are written in non-decreasing timestamp order: a binary heap holds each client's
//! next event time (ties go to the lower client slot).
//!
//! # Noise
//!
//! With `noise` = P > 0, a fraction P of all packets (on average) are background packets that
//! are not events: DNS, HTTPS, NTP, syslog and ICMP echo between client hosts, servers and an
//! external network. Noise is never UDP on ports 7001..=7007 and uses its own random stream,
//! so it does not change any event packet or the truth.
//!
//! # Guarantees
//!
//! - Same parameters and seed give byte-identical capture and truth files (on one platform:
//!   think times use the platform's `ln`).
//! - Memory is O(`clients`): frames are built through one reused [`FrameBuilder`] and one
//!   reused buffer, and written as they are made.
//! - Every frame decodes cleanly with `outpost_decode::decode` (valid lengths and checksums).
//! - The truth file lists, in packet order, exactly the invalid transitions a detector with
//!   the semantics above finds, with the packets' timestamps as the capture file holds them
//!   (whole microseconds for microsecond pcap).
//!
//! The entry points are [`generate`] (any writers), [`generate_in_memory`] (for tests) and
//! [`generate_seed`] (the command line, from [`SeedArgs`]).

mod args;
mod machine;
mod networks;
mod noise;
mod think;
mod truth;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::fmt;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::ops::RangeInclusive;

use outpost_decode::{Duration, Nanos};
use serde::Serialize;

use crate::frame::{FrameBuilder, Link, udp};
use crate::pcap::{CaptureWriter, OutputFormat};

pub use args::{FormatArg, LinkArg, SeedArgs, generate_seed};
pub use machine::{EVENT_PORT_BASE, EVENT_PORTS, Event, State, Transition, invalid_events, transition};
pub use networks::{
    NETWORKS, NetworkRole, SERVERS_PER_NETWORK, SeedNetwork, client_networks, server_networks,
};
pub use truth::{TruthError, TruthRecord, read_truth, read_truth_file};

use crate::random::Random;
use machine::valid_event;
use noise::Noise;
use think::ThinkTime;

/// Default number of events (`--events`).
pub const DEFAULT_EVENTS: u64 = 1_000_000;
/// Default number of concurrent clients (`--clients`).
pub const DEFAULT_CLIENTS: u32 = 1_000;
/// Default aggregate event rate, events per second (`--rate`).
pub const DEFAULT_RATE: f64 = 10_000.0;
/// Default chance that an event is replaced by an invalid one (`--error-prob`). Flink's example
/// defaults to 0; a small non-zero default gives a plain run something to detect.
pub const DEFAULT_ERROR_PROB: f64 = 0.001;
/// Default chance of `f` (stay in Z) rather than `g` (TERM) in state Z (`--f-prob`): 0.5, so
/// a walk loops on Z once on average and takes about 4.8 events.
pub const DEFAULT_F_PROB: f64 = 0.5;
/// Default idle timeout the detector releases sources after (`--idle-timeout`); must match
/// the detector's default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default start of the capture (`--start`): 2026-01-01T00:00:00Z.
pub const DEFAULT_START: Nanos = Nanos::from_secs(1_767_225_600);
/// Default random seed (`--seed`).
pub const DEFAULT_SEED: u64 = 1;
/// Default fraction of packets that are background noise (`--noise`).
pub const DEFAULT_NOISE: f64 = 0.0;
/// Default fraction of clients that use IPv6 (`--ipv6-fraction`).
pub const DEFAULT_IPV6_FRACTION: f64 = 0.1;
/// Most concurrent clients: a quarter of the IPv4 client addresses, so drawing a free address
/// stays quick.
pub const MAX_CLIENTS: u32 = 65_000;
/// Largest noise fraction (`--noise`): at 0.99 there are 99 noise packets per event.
pub const MAX_NOISE: f64 = 0.99;

/// Source ports clients use (the Linux default ephemeral range).
pub(crate) const EPHEMERAL_PORTS: RangeInclusive<u16> = 32768..=60999;

/// Random stream of the events (noise uses another).
const EVENT_STREAM: u64 = 0;

/// Everything that shapes a seed capture. Fields mirror the command-line options of
/// [`SeedArgs`]; [`SeedParams::default`] has their defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedParams {
    /// Events to write (noise comes on top). Default [`DEFAULT_EVENTS`].
    pub events: u64,
    /// Concurrent clients, 1..=[`MAX_CLIENTS`]. Default [`DEFAULT_CLIENTS`].
    pub clients: u32,
    /// Aggregate event rate, events per second. Default [`DEFAULT_RATE`].
    pub rate: f64,
    /// Chance in [0, 1] that an event is replaced by an invalid one. Default
    /// [`DEFAULT_ERROR_PROB`].
    pub error_prob: f64,
    /// Chance in [0, 1] of `f` rather than `g` in state Z. Default [`DEFAULT_F_PROB`].
    pub f_prob: f64,
    /// The detector's idle timeout; no client waits 95 % of it between events. Default
    /// [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// Earliest packet time; the first packets come shortly after. Default [`DEFAULT_START`].
    pub start: Nanos,
    /// Random seed. Default [`DEFAULT_SEED`].
    pub seed: u64,
    /// Fraction in [0, [`MAX_NOISE`]] of packets that are background noise. Default
    /// [`DEFAULT_NOISE`].
    pub noise: f64,
    /// Fraction in [0, 1] of clients (and noise hosts) on IPv6. Default
    /// [`DEFAULT_IPV6_FRACTION`].
    pub ipv6_fraction: f64,
    /// Capture file format. Default nanosecond pcap.
    pub format: OutputFormat,
    /// Link framing of every frame. Default Ethernet.
    pub link: Link,
}

impl Default for SeedParams {
    fn default() -> SeedParams {
        SeedParams {
            events: DEFAULT_EVENTS,
            clients: DEFAULT_CLIENTS,
            rate: DEFAULT_RATE,
            error_prob: DEFAULT_ERROR_PROB,
            f_prob: DEFAULT_F_PROB,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            start: DEFAULT_START,
            seed: DEFAULT_SEED,
            noise: DEFAULT_NOISE,
            ipv6_fraction: DEFAULT_IPV6_FRACTION,
            format: OutputFormat::default(),
            link: Link::Ethernet,
        }
    }
}

/// Why [`SeedParams`] were rejected.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SeedParamsError {
    /// `clients` is 0 or above [`MAX_CLIENTS`].
    #[error("--clients must be 1..={MAX_CLIENTS}, got {0}")]
    Clients(u32),
    /// `rate` is not a positive finite number.
    #[error("--rate must be a positive number of events per second, got {0}")]
    Rate(f64),
    /// A probability or fraction is out of its range.
    #[error("--{name} must be in [0, {max}], got {value}")]
    Probability {
        /// The option, e.g. `error-prob`.
        name: &'static str,
        /// The value given.
        value: f64,
        /// Its largest allowed value.
        max: f64,
    },
    /// `idle_timeout` is below one millisecond.
    #[error("--idle-timeout must be at least 1ms, got {0} ns")]
    IdleTimeout(u64),
    /// Too many clients for the rate: the mean think time would not fit under the idle timeout.
    #[error(
        "{clients} clients at {rate} events/s think {mean_s:.3} s on average between events, above \
         the {max_s:.3} s allowed (a quarter of 95 % of --idle-timeout, so no client goes idle): \
         raise --rate, lower --clients or raise --idle-timeout"
    )]
    Overloaded {
        /// Concurrent clients.
        clients: u32,
        /// Events per second.
        rate: f64,
        /// `clients / rate`, seconds.
        mean_s: f64,
        /// The largest allowed mean, seconds.
        max_s: f64,
    },
}

impl SeedParams {
    /// Checks every field.
    ///
    /// # Errors
    /// The first field out of range.
    pub fn validate(&self) -> Result<(), SeedParamsError> {
        self.think_time().map(|_| ())
    }

    /// The largest gap between two events of one client: 95 % of `idle_timeout`.
    #[must_use]
    pub fn max_gap(&self) -> Duration {
        Duration(self.idle_timeout.0 / 20 * 19)
    }

    /// Validates and returns the think-time distribution.
    fn think_time(&self) -> Result<ThinkTime, SeedParamsError> {
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return Err(SeedParamsError::Clients(self.clients));
        }
        if !(self.rate > 0.0 && self.rate.is_finite()) {
            return Err(SeedParamsError::Rate(self.rate));
        }
        for (name, value, max) in [
            ("error-prob", self.error_prob, 1.0),
            ("f-prob", self.f_prob, 1.0),
            ("noise", self.noise, MAX_NOISE),
            ("ipv6-fraction", self.ipv6_fraction, 1.0),
        ] {
            if !(0.0..=max).contains(&value) {
                return Err(SeedParamsError::Probability { name, value, max });
            }
        }
        if self.idle_timeout < Duration::from_millis(1) {
            return Err(SeedParamsError::IdleTimeout(self.idle_timeout.0));
        }
        let mean_ns = f64::from(self.clients) / self.rate * 1e9;
        let cap_ns = self.max_gap().0 as f64;
        ThinkTime::new(mean_ns, cap_ns).ok_or(SeedParamsError::Overloaded {
            clients: self.clients,
            rate: self.rate,
            mean_s: mean_ns / 1e9,
            max_s: cap_ns / 4e9,
        })
    }
}

/// What a generation wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SeedSummary {
    /// Event packets (UDP to 7001..=7007).
    pub events: u64,
    /// Invalid transitions injected (= truth records).
    pub invalid: u64,
    /// Clients created, the initial ones included.
    pub clients_created: u64,
    /// Background noise packets.
    pub noise_packets: u64,
    /// All packets: `events + noise_packets`.
    pub packets: u64,
    /// Bytes of all frames (without capture-file headers).
    pub frame_bytes: u64,
    /// Timestamp of the first packet, if any.
    pub first_ts: Option<Nanos>,
    /// Timestamp of the last packet, if any.
    pub last_ts: Option<Nanos>,
}

impl fmt::Display for SeedSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} packets ({} events, {} invalid, {} noise) from {} clients",
            self.packets, self.events, self.invalid, self.noise_packets, self.clients_created
        )?;
        if let (Some(first), Some(last)) = (self.first_ts, self.last_ts) {
            write!(f, ", {first} .. {last}")?;
        }
        Ok(())
    }
}

/// Why a generation failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The parameters are out of range.
    #[error(transparent)]
    Params(#[from] SeedParamsError),
    /// A file could not be created.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Writing the capture or the truth failed.
    #[error("writing the seed scenario: {0}")]
    Io(#[from] io::Error),
}

/// A seed capture held in memory, for tests.
#[derive(Clone, Debug)]
pub struct SeedCapture {
    /// The capture file's bytes (format as in the parameters).
    pub capture: Vec<u8>,
    /// The ground truth, in packet order.
    pub truth: Vec<TruthRecord>,
    /// What was written.
    pub summary: SeedSummary,
}

/// Generates into memory: capture bytes and parsed truth.
///
/// # Errors
/// [`SeedError::Params`] for parameters out of range.
pub fn generate_in_memory(params: &SeedParams) -> Result<SeedCapture, SeedError> {
    let mut capture = Vec::new();
    let mut truth_bytes = Vec::new();
    let summary = generate(params, &mut capture, Some(&mut truth_bytes))?;
    let truth =
        read_truth(truth_bytes.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(SeedCapture { capture, truth, summary })
}

/// Generates the seed scenario: writes the capture to `capture` and, when given, one JSON line
/// per injected invalid transition to `truth` (see the module docs for the guarantees).
/// Both writers are buffered here; pass them unbuffered.
///
/// # Errors
/// [`SeedError::Params`] before anything is written, or the first I/O error.
pub fn generate<W: Write, T: Write>(
    params: &SeedParams,
    capture: W,
    truth: Option<T>,
) -> Result<SeedSummary, SeedError> {
    let think = params.think_time()?;
    let mut out = CaptureWriter::new(capture, params.format, params.link.link_type())?;
    let mut truth = truth.map(|t| BufWriter::with_capacity(64 * 1024, t));
    let mut summary = SeedSummary::default();

    let mut rng = Random::new(params.seed, EVENT_STREAM);
    let mut pool = ClientPool::new(params.ipv6_fraction);
    let invalid: [Vec<Event>; 5] = State::ALL.map(invalid_events);
    let n = params.clients as usize;
    let mut clients = Vec::with_capacity(n);
    let mut due = BinaryHeap::with_capacity(n);
    for slot in 0..params.clients {
        clients.push(pool.spawn(&mut rng));
        // Think times are (nearly) memoryless, so a fresh one is also the time to the next
        // event of a client caught mid-walk: the run starts as if already in steady state.
        due.push(Reverse((params.start.0.saturating_add(think.sample(&mut rng)), slot)));
    }
    let noise_rate = params.rate * params.noise / (1.0 - params.noise);
    let mut noise = Noise::new(params.seed, params.start.0, noise_rate, params.ipv6_fraction);

    // Microsecond pcap keeps only whole microseconds: truncate here, so the truth carries the
    // timestamps the file does.
    let quantum = if params.format == (OutputFormat::Pcap { nanos: false }) { 1_000 } else { 1 };
    let unspecified = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
    let mut fb = FrameBuilder::new(unspecified, unspecified, udp(0, 0)).link(params.link);
    let mut frame = Vec::with_capacity(2048);
    while summary.events < params.events {
        let Some(&Reverse((ts, slot))) = due.peek() else { break };
        if let Some(noise) = noise.as_mut().filter(|n| n.next_ns() < ts) {
            let noise_ts = noise.next_packet(&mut fb);
            write_frame(&mut out, &fb, &mut frame, noise_ts - noise_ts % quantum, &mut summary)?;
            summary.noise_packets += 1;
            continue;
        }
        due.pop();
        let Some(client) = clients.get_mut(slot as usize) else { break };
        client.seq = client.seq.wrapping_add(1);
        let (event, step) = if rng.chance(params.error_prob) {
            let choices = &invalid[client.state.index()];
            (choices[rng.below(choices.len() as u64) as usize], Transition::Invalid)
        } else {
            let event = valid_event(client.state, rng.unit(), params.f_prob);
            (event, transition(client.state, event))
        };
        debug_assert_eq!(step, transition(client.state, event));
        client.fill(&mut fb, event, rng.below(49) as usize);
        let at = ts - ts % quantum;
        write_frame(&mut out, &fb, &mut frame, at, &mut summary)?;
        summary.events += 1;
        match step {
            Transition::To(next) => client.state = next,
            Transition::Invalid => {
                summary.invalid += 1;
                if let Some(t) = truth.as_mut() {
                    client.truth(at, event).write_line(t)?;
                }
                client.state = State::Initial;
            }
            Transition::Terminal => {
                pool.release(client.src);
                *client = pool.spawn(&mut rng);
            }
        }
        due.push(Reverse((ts.saturating_add(think.sample(&mut rng)), slot)));
    }
    summary.clients_created = pool.created;
    out.finish()?;
    if let Some(t) = truth {
        t.into_inner().map_err(io::IntoInnerError::into_error)?.flush()?;
    }
    Ok(summary)
}

/// Builds `fb` into the reused `frame` buffer and writes it at `ts`.
fn write_frame<W: Write>(
    out: &mut CaptureWriter<W>,
    fb: &FrameBuilder,
    frame: &mut Vec<u8>,
    ts: u64,
    summary: &mut SeedSummary,
) -> io::Result<()> {
    frame.clear();
    fb.write_to(frame);
    out.write_packet(Nanos(ts), frame)?;
    summary.packets += 1;
    summary.frame_bytes += frame.len() as u64;
    summary.first_ts.get_or_insert(Nanos(ts));
    summary.last_ts = Some(Nanos(ts));
    Ok(())
}

/// One client walking the machine.
#[derive(Clone, Debug)]
struct Client {
    src: IpAddr,
    dst: IpAddr,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    sport: u16,
    state: State,
    /// Events sent so far (the payload's sequence number).
    seq: u32,
    /// Which client this is, counting from 1 (the payload's key).
    serial: u64,
}

/// Filler the payload is padded with, so datagram sizes vary.
const PAD: &[u8; 48] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL";

impl Client {
    /// Sets `fb` to this client's datagram for `event`. Payload: `FSM1 <event> seq=<n>
    /// key=<serial hex> ` and `pad` filler bytes.
    fn fill(&self, fb: &mut FrameBuilder, event: Event, pad: usize) {
        fb.src = self.src;
        fb.dst = self.dst;
        fb.src_mac = self.src_mac;
        fb.dst_mac = self.dst_mac;
        fb.transport = udp(self.sport, event.port());
        fb.ip_id = self.seq as u16;
        fb.ttl = 64;
        let p = &mut fb.payload;
        p.clear();
        p.extend_from_slice(b"FSM1 ");
        p.push(event.letter() as u8);
        p.extend_from_slice(b" seq=");
        push_decimal(p, u64::from(self.seq));
        p.extend_from_slice(b" key=");
        push_hex(p, self.serial);
        p.push(b' ');
        p.extend_from_slice(&PAD[..pad.min(PAD.len())]);
    }

    /// The truth record of an invalid `event` this client sends at `ts`.
    fn truth(&self, ts: u64, event: Event) -> TruthRecord {
        TruthRecord {
            ts: Nanos(ts).to_string(),
            ts_ns: ts,
            src_ip: self.src,
            dst_ip: self.dst,
            src_port: self.sport,
            dst_port: event.port(),
            state: self.state,
            event,
        }
    }
}

/// Creates clients with addresses unique among the live ones.
#[derive(Debug)]
struct ClientPool {
    live: HashSet<IpAddr>,
    servers_v4: Vec<IpAddr>,
    servers_v6: Vec<IpAddr>,
    ipv6_fraction: f64,
    created: u64,
}

impl ClientPool {
    fn new(ipv6_fraction: f64) -> ClientPool {
        ClientPool {
            live: HashSet::new(),
            servers_v4: server_networks().flat_map(|n| n.servers(false)).collect(),
            servers_v6: server_networks().flat_map(|n| n.servers(true)).collect(),
            ipv6_fraction,
            created: 0,
        }
    }

    fn spawn(&mut self, rng: &mut Random) -> Client {
        let v6 = rng.chance(self.ipv6_fraction);
        let src = loop {
            let a = random_client_addr(rng, v6);
            if self.live.insert(a) {
                break a;
            }
        };
        let servers = if v6 { &self.servers_v6 } else { &self.servers_v4 };
        let dst = servers[rng.below(servers.len() as u64) as usize];
        let sport = rng.range_u16(*EPHEMERAL_PORTS.start(), *EPHEMERAL_PORTS.end());
        self.created += 1;
        Client {
            src,
            dst,
            src_mac: mac_for(src),
            dst_mac: mac_for(dst),
            sport,
            state: State::Initial,
            seq: 0,
            serial: self.created,
        }
    }

    fn release(&mut self, addr: IpAddr) {
        self.live.remove(&addr);
    }
}

/// A random host of a random client network: IPv4 `.1`..`.254` of any /24 of the /16, or
/// IPv6 `prefix:s::iid` with subnet `s` in 0..16 and a random non-zero interface id.
pub(crate) fn random_client_addr(rng: &mut Random, v6: bool) -> IpAddr {
    let count = client_networks().count() as u64;
    let net = client_networks().nth(rng.below(count) as usize).unwrap_or(&NETWORKS[0]);
    if v6 {
        let subnet = rng.below(16) as u16;
        IpAddr::V6(net.v6_addr(subnet, rng.next_u64().max(1)))
    } else {
        IpAddr::V4(net.v4_host(rng.below(net.v4_hosts())))
    }
}

/// A locally administered MAC address derived from an IP address (`02:` and its last five
/// bytes), so each host keeps one MAC.
pub(crate) fn mac_for(addr: IpAddr) -> [u8; 6] {
    let o = match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    };
    [0x02, o[11], o[12], o[13], o[14], o[15]]
}

fn push_decimal(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_hex(out: &mut Vec<u8>, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = (64 - v.leading_zeros()).div_ceil(4).max(1);
    for k in (0..digits).rev() {
        out.push(DIGITS[(v >> (4 * k) & 0xf) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_hex_match_std_formatting() {
        for v in [0u64, 1, 9, 10, 255, 4096, 123_456_789, u64::MAX] {
            let mut d = Vec::new();
            push_decimal(&mut d, v);
            assert_eq!(String::from_utf8(d).unwrap(), v.to_string());
            let mut h = Vec::new();
            push_hex(&mut h, v);
            assert_eq!(String::from_utf8(h).unwrap(), format!("{v:x}"));
        }
    }

    #[test]
    fn defaults_validate_and_match_the_documented_values() {
        let p = SeedParams::default();
        p.validate().unwrap();
        assert_eq!(p.start.to_string(), "2026-01-01T00:00:00.000000000Z");
        assert_eq!(p.idle_timeout, Duration::from_secs(60));
        assert_eq!(p.max_gap(), Duration::from_secs(57));
    }

    #[test]
    fn out_of_range_params_are_rejected() {
        let base = SeedParams::default();
        let cases: Vec<(SeedParams, &str)> = vec![
            (SeedParams { clients: 0, ..base.clone() }, "clients"),
            (SeedParams { clients: MAX_CLIENTS + 1, ..base.clone() }, "clients"),
            (SeedParams { rate: 0.0, ..base.clone() }, "rate"),
            (SeedParams { rate: f64::INFINITY, ..base.clone() }, "rate"),
            (SeedParams { error_prob: 1.5, ..base.clone() }, "error-prob"),
            (SeedParams { f_prob: -0.1, ..base.clone() }, "f-prob"),
            (SeedParams { noise: 1.0, ..base.clone() }, "noise"),
            (SeedParams { ipv6_fraction: f64::NAN, ..base.clone() }, "ipv6-fraction"),
            (SeedParams { idle_timeout: Duration(10), ..base.clone() }, "idle-timeout"),
            (SeedParams { clients: 1000, rate: 50.0, ..base.clone() }, "think"),
        ];
        for (p, needle) in cases {
            let err = p.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle}");
            assert!(generate(&p, io::sink(), None::<io::Sink>).is_err());
        }
        // The boundary of the overload check: mean think = max gap / 4 exactly.
        let edge = SeedParams { clients: 57, rate: 4.0, ..base };
        edge.validate().unwrap();
    }

    #[test]
    fn zero_events_write_just_the_file_header() {
        let p = SeedParams { events: 0, ..SeedParams::default() };
        let mut out = Vec::new();
        let s = generate(&p, &mut out, None::<io::Sink>).unwrap();
        assert_eq!(out.len(), 24, "pcap global header only");
        assert_eq!(s.packets, 0);
        assert_eq!(s.first_ts, None);
        assert_eq!(s.clients_created, u64::from(DEFAULT_CLIENTS));
    }

    #[test]
    fn macs_are_stable_per_address_and_locally_administered() {
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(mac_for(a), [0x02, 0xff, 10, 1, 2, 3]);
        assert_eq!(mac_for(a), mac_for(a));
        let b: IpAddr = "2001:db8:1::abcd:ef01:2345".parse().unwrap();
        assert_eq!(mac_for(b)[0] & 0x03, 0x02);
    }
}
