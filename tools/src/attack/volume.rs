//! `volume-spike`: an internal host with a quarter of an hour of steady traffic suddenly sends
//! over ten times its usual bytes and packets in one minute.
//!
//! The host (`.30`..`.49` of a server network, no role in the mix) runs a telemetry agent:
//! about every second (0.9–1.1 s) it posts a report of `base` × f × U(0.8, 1.2) bytes over
//! HTTPS to a collector in the attack network, which answers with 80–300 bytes; `base` is
//! 6–12 kB per run, f a factor per minute, the values 0.85–1.15 evenly spread in an order
//! with no early outlier (so the per-minute totals vary by about 9 %, the odd packet of other
//! traffic stays far below 3σ, and no minute before the spike reaches mean + 3σ of the minutes
//! before it). Connections are kept alive for 5–25 reports and then replaced, so the host also
//! starts a few flows a minute.
//!
//! The steady traffic starts just after a minute boundary and runs for 13–15 whole one-minute
//! intervals; 3–8 s into the next minute the host opens a TLS connection to a new external
//! address (the exfiltration peer, seen for the first time) and uploads 45–65 MB in 20–35 s
//! — over 50× the usual bytes and packets of a minute, far above mean + 6σ, and over twice
//! the default baselines' floors of 20 MB and 20,000 packets a minute (the floors keep the
//! benign mix's bursts of a few MB quiet). The reports go on for 1–2 more
//! minutes. The truth window is the upload; `attacker` is the host, `target` the
//! exfiltration peer. The collector's own volume does not change, and the exfiltration peer
//! has no history, so neither should alert.

use std::net::IpAddr;

use super::ctx::{AttackCtx, Planned};
use super::packet::{FWD, Peer, Pkt, REV, Session, Tag, TcpConn, phase, quick};
use super::plan::PlanExhausted;
use super::stream::{Pending, Script, Source};
use crate::random::Random;

/// One minute, ns.
const MINUTE: u64 = 60_000_000_000;

/// The upload's size, bytes: 45–65 MB.
const SPIKE_BYTES: (u64, u64) = (45_000_000, 65_000_000);

/// TLS record header of application data.
fn app_data(len: usize) -> [u8; 5] {
    let l = (len.min(16_384) as u16).to_be_bytes();
    [23, 3, 3, l[0], l[1]]
}

/// Opens a connection and runs a TLS handshake over it.
fn tls_open(s: &mut Session<'_>) {
    s.open();
    let q = quick(s.rng);
    s.record(q, FWD, &[22, 3, 1, 2, 0], 512);
    let cert = s.rng.range(2_400, 4_000) as usize;
    let d = s.react(REV);
    s.record(d, REV, &[22, 3, 3, (cert >> 8) as u8, cert as u8], cert);
    let d = s.react(FWD);
    s.record(d, FWD, &[22, 3, 3, 0, 120], 120);
    let d = s.react(REV);
    s.record(d, REV, &[22, 3, 3, 1, 24], 280);
}

/// Activity factors of `n` minutes: the values 0.85..1.15 evenly spread, in an order where
/// no minute after the tenth exceeds the mean of those before it by two standard deviations —
/// so, with the report-to-report noise on top, no interval before the spike reaches
/// mean + 3σ of its history, while the minutes still vary by about 9 % (which keeps an odd
/// packet of other traffic far below 3σ).
fn minute_factors(rng: &mut Random, n: usize) -> Vec<f64> {
    let mut f: Vec<f64> = (0..n).map(|k| 0.85 + 0.3 * (k as f64 + 0.5) / n as f64).collect();
    let calm = |f: &[f64]| {
        (10..f.len()).all(|i| {
            let (before, x) = (&f[..i], f[i]);
            let mean = before.iter().sum::<f64>() / i as f64;
            let var = before.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / i as f64;
            x <= mean + 2.0 * var.sqrt()
        })
    };
    for _ in 0..1000 {
        rng.shuffle(&mut f);
        if calm(&f) {
            return f;
        }
    }
    // Falling values are always calm.
    f.sort_by(|a, b| b.total_cmp(a));
    f
}

/// The agent's reports, one event each.
#[derive(Debug)]
struct Steady {
    rng: Random,
    tag: Tag,
    host: Peer,
    collector: Peer,
    conn: Option<TcpConn>,
    reports_left: u64,
    next_port: u16,
    next: u64,
    end: u64,
    base: f64,
    /// The first minute (epoch minute number) of the steady traffic.
    first_minute: u64,
    /// The activity factor of each minute from `first_minute` on.
    factors: Vec<f64>,
    rtt: u64,
    mss: usize,
    done: bool,
}

impl Source for Steady {
    fn next_event(&self) -> Option<u64> {
        (!self.done).then_some(self.next)
    }

    fn expand(&mut self, out: &mut Pending) {
        let t = self.next;
        let mut pkts: Vec<Pkt> = Vec::with_capacity(32);
        let (conn, fresh) = match self.conn.take() {
            Some(c) => (c, false),
            None => {
                let client = Peer { port: self.next_port, ..self.host };
                self.next_port = self.next_port.wrapping_add(2);
                self.reports_left = self.rng.range(5, 25);
                (TcpConn::new(client, self.collector, self.tag, &mut self.rng), true)
            }
        };
        let mut s = Session::new(conn, t, self.rtt, self.mss, &mut pkts, &mut self.rng);
        if t >= self.end {
            // The agent stops: the open connection (if any) is closed.
            if !fresh {
                s.close(0, FWD);
            }
            self.done = true;
            out.extend(pkts);
            return;
        }
        if fresh {
            tls_open(&mut s);
        }
        let minute = (t / MINUTE).saturating_sub(self.first_minute) as usize;
        let factor = self.factors.get(minute).or(self.factors.last()).copied().unwrap_or(1.0);
        let size = (self.base * factor * (0.8 + 0.4 * s.rng.unit())) as usize;
        let q = if fresh { quick(s.rng) } else { 0 };
        let body = size.saturating_sub(5).clamp(1, 16_384);
        s.record(q, FWD, &app_data(body), body);
        let answer = s.rng.range(80, 300) as usize;
        let d = s.react(REV) + s.rng.range(1_000_000, 20_000_000);
        s.record(d, REV, &app_data(answer), answer);
        self.reports_left = self.reports_left.saturating_sub(1);
        let clock = s.clock;
        let gap = s.rng.range(900_000_000, 1_100_000_000);
        if self.reports_left == 0 {
            let d = s.rng.range(1_000_000, 50_000_000);
            s.close(d, FWD);
        } else {
            self.conn = Some(s.conn);
        }
        self.next = (t + gap).max(clock + 200_000_000);
        out.extend(pkts);
    }
}

/// Bytes of the upload expanded per event: about 1,400 segments and their ACKs.
const UPLOAD_CHUNK: u64 = 2_000_000;

/// The exfiltration upload over one TLS connection, expanded a chunk at a time so its tens of
/// thousands of packets never wait in memory at once: the handshake, [`UPLOAD_CHUNK`]s of
/// data back to back, then the server's short answer and the close.
#[derive(Debug)]
struct Upload {
    rng: Random,
    conn: Option<TcpConn>,
    rtt: u64,
    mss: usize,
    /// Start of the next event (the last packet's time).
    next: u64,
    /// Bytes to send, and still to send.
    total: u64,
    left: u64,
    ns_per_byte: u64,
    opened: bool,
    done: bool,
}

impl Source for Upload {
    fn next_event(&self) -> Option<u64> {
        (!self.done).then_some(self.next)
    }

    fn expand(&mut self, out: &mut Pending) {
        let Some(conn) = self.conn.take() else {
            self.done = true;
            return;
        };
        let mut pkts: Vec<Pkt> = Vec::with_capacity(2 * (UPLOAD_CHUNK as usize / self.mss.max(64)) + 8);
        let mut s = Session::new(conn, self.next, self.rtt, self.mss, &mut pkts, &mut self.rng);
        if !self.opened {
            tls_open(&mut s);
            self.opened = true;
        } else if self.left > 0 {
            let chunk = self.left.min(UPLOAD_CHUNK);
            let first = self.left == self.total;
            let delay = if first { quick(s.rng) } else { (s.mss as u64 + 54) * self.ns_per_byte };
            s.bulk(delay, FWD, chunk, self.ns_per_byte, true);
            self.left -= chunk;
        } else {
            let d = s.react(REV) + s.rng.range(5_000_000, 50_000_000);
            s.record(d, REV, &app_data(200), 200);
            let d = s.react(FWD);
            s.close(d, FWD);
            self.done = true;
        }
        self.next = s.clock;
        if !self.done {
            self.conn = Some(s.conn);
        }
        out.extend(pkts);
    }
}

/// Plans the steady traffic and the spike.
pub(crate) fn volume_spike(ctx: &mut AttackCtx<'_>) -> Result<Planned, PlanExhausted> {
    let host_addr: IpAddr = ctx.plan.quiet_host(&mut ctx.rng, ctx.v6);
    let collector_addr = ctx.plan.attacker(ctx.v6)?;
    let exfil_addr = ctx.plan.attacker(ctx.v6)?;
    let minutes = ctx.rng.range(13, 15);
    let offset = ctx.rng.range(3_000_000_000, 8_000_000_000);
    let first_minute =
        ctx.origin.div_ceil(MINUTE).max(ctx.start.saturating_sub(minutes * MINUTE + offset).div_ceil(MINUTE));
    let steady_start = first_minute * MINUTE + ctx.rng.range(200_000_000, 900_000_000);
    let spike_minute = (first_minute + minutes) * MINUTE;
    let spike_at = spike_minute + offset;
    let steady_end = spike_minute + MINUTE + ctx.rng.range(60_000_000_000, 120_000_000_000);
    let base = ctx.rng.range(6_000, 12_000);
    let mss = if ctx.v6 { 1440 } else { 1460 };
    let host = Peer { addr: host_addr, port: 0, ttl: 64, window: 64240, external: false };
    let collector =
        Peer { addr: collector_addr, port: 443, ttl: ctx.external_ttl(), window: 65535, external: true };
    let steady = Steady {
        rng: ctx.sub_rng(0),
        tag: ctx.tag(phase::BACKGROUND),
        host,
        collector,
        conn: None,
        reports_left: 0,
        next_port: ctx.rng.range(32_768, 45_000) as u16,
        next: steady_start,
        end: steady_end,
        base: base as f64,
        first_minute,
        factors: minute_factors(&mut ctx.rng, minutes as usize + 4),
        rtt: ctx.external_rtt(),
        mss,
        done: false,
    };

    let rtt = ctx.external_rtt();
    let exfil = Peer { addr: exfil_addr, port: 443, ttl: ctx.external_ttl(), window: 65535, external: true };
    let client = Peer { port: ctx.rng.range(45_001, 60_999) as u16, ..host };
    let conn = TcpConn::new(client, exfil, ctx.tag(phase::SECOND), &mut ctx.rng);
    let total = ctx.rng.range(SPIKE_BYTES.0, SPIKE_BYTES.1);
    let duration = ctx.rng.range(20_000_000_000, 35_000_000_000);
    let upload = Upload {
        rng: ctx.sub_rng(1),
        conn: Some(conn),
        rtt,
        mss,
        next: spike_at,
        total,
        left: total,
        ns_per_byte: (duration / total).max(1),
        opened: false,
        done: false,
    };
    let mut spike = Planned::eager(Vec::new(), Some(host_addr), Some(exfil_addr), None);
    spike.scripts.clear();
    // The upload takes `duration` for its payload, plus headers (54 of ~1,500 bytes a
    // segment), the handshake and the close.
    spike.end = spike_at + duration + duration / 16 + 2_000_000_000;
    spike.scripts.push(Script::new(Box::new(upload)));
    spike.scripts.push(Script::new(Box::new(steady)));
    spike.last = spike.end.max(steady_end + 1_000_000_000);
    Ok(spike)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minute_factors_spread_evenly_without_an_early_outlier() {
        for seed in 0..200 {
            let mut rng = Random::attack(seed, 0);
            let f = minute_factors(&mut rng, 18);
            let mut sorted = f.clone();
            sorted.sort_by(f64::total_cmp);
            assert!((sorted[0] - 0.858).abs() < 0.001 && (sorted[17] - 1.142).abs() < 0.001);
            for i in 10..f.len() {
                let mean = f[..i].iter().sum::<f64>() / i as f64;
                let sd = (f[..i].iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / i as f64).sqrt();
                assert!(f[i] <= mean + 2.0 * sd, "seed {seed}: minute {i}");
            }
        }
    }

    #[test]
    fn app_data_headers_carry_the_length() {
        assert_eq!(app_data(300), [23, 3, 3, 1, 44]);
        assert_eq!(app_data(100_000), [23, 3, 3, 0x40, 0]);
    }
}
