//! TCP conversations, seen from a capture point next to the client (RFC 9293 behaviour, sizes
//! from heavy-tailed distributions).
//!
//! - **Complete**: SYN, SYN-ACK one round-trip later, ACK; then request/response rounds —
//!   the client's request and the server's response are each split into segments of at most
//!   one MSS (1460 bytes over IPv4, 1440 over IPv6), the last one with PSH, paced at the
//!   flow's bandwidth; the receiver ACKs every second segment and the last. Clients think
//!   between rounds. The client (60 %) or the server closes: FIN-ACK, FIN-ACK, ACK.
//! - **Reset**: either the port is closed (SYN answered by RST-ACK), or the handshake
//!   completes and one side resets in the middle of the last response.
//! - **Half-open**: a SYN retransmitted after 1, 2, 4 s (RFC 6298 back-off) and never
//!   answered, or a SYN-ACK that the client never acknowledges (the server retransmits it).
//!
//! Nothing follows a RST or the last ACK of a close, and no gap inside a flow reaches the
//! scenario's largest gap, so each conversation stays one flow for a flow meter.

use outpost_decode::meta::tcp_flags::{ACK, FIN, PSH, RST, SYN};

use super::conversation::{Body, Conversation, FWD, REV};

/// Which TCP conversation a script plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TcpVariant {
    /// Handshake, rounds, FIN close.
    Complete,
    /// SYN (and retransmissions) only.
    SynOnly,
    /// SYN and SYN-ACK (and its retransmissions), never completed.
    SynSynAck,
    /// SYN answered by RST-ACK.
    Refused,
    /// Handshake, rounds, and a RST in the middle of the last response.
    MidReset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Open,
    /// Sending `left` more bytes in direction `dir`; the next segment goes `delay` ns after
    /// the last packet queued.
    Burst {
        dir: u8,
        left: u64,
        unacked: u8,
        delay: u64,
    },
    Close,
    Done,
}

/// Timing and size parameters of one TCP conversation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TcpShape {
    /// Round-trip time between the capture point and the server, ns.
    pub(crate) rtt: u64,
    /// Serialization time per byte at the flow's bandwidth, ns.
    pub(crate) ns_per_byte: f64,
    /// Maximum segment size.
    pub(crate) mss: u32,
    /// Request/response rounds.
    pub(crate) rounds: u32,
    /// Mean client think time between rounds, ns.
    pub(crate) think_mean: f64,
    /// Longest silence allowed inside the flow, ns.
    pub(crate) max_gap: u64,
}

/// A TCP conversation queued a few packets at a time.
#[derive(Clone, Debug)]
pub(crate) struct TcpScript {
    variant: TcpVariant,
    shape: TcpShape,
    phase: Phase,
    /// Response bytes of the last round after which a [`TcpVariant::MidReset`] resets.
    reset_after: u64,
    reset_by_client: bool,
    server_closes: bool,
}

/// Delay of an ACK or a reaction at the capture point: tens of microseconds.
fn quick(c: &mut Conversation) -> u64 {
    c.rng.range(8_000, 60_000)
}

impl TcpScript {
    pub(crate) fn new(variant: TcpVariant, shape: TcpShape, c: &mut Conversation) -> TcpScript {
        let server_closes = c.rng.chance(0.4);
        let reset_by_client = c.rng.chance(0.5);
        TcpScript { variant, shape, phase: Phase::Open, reset_after: 0, reset_by_client, server_closes }
    }

    /// Queues the next packets of the conversation; returns false once nothing more will come
    /// (the packets just queued are still to be sent).
    pub(crate) fn refill(&mut self, c: &mut Conversation) -> bool {
        let before = c.queued();
        while c.queued() == before && self.phase != Phase::Done {
            match self.phase {
                Phase::Open => self.open(c),
                Phase::Burst { dir, left, unacked, delay } => self.segment(c, dir, left, unacked, delay),
                Phase::Close => self.close(c),
                Phase::Done => {}
            }
        }
        self.phase != Phase::Done
    }

    fn request(&self, c: &mut Conversation, delay: u64) -> Phase {
        // HTTP/TLS requests: median about 425 bytes, rare uploads up to 256 KiB.
        let left = c.rng.pareto(250.0, 262_144.0, 1.3);
        Phase::Burst { dir: FWD, left, unacked: 0, delay }
    }

    fn open(&mut self, c: &mut Conversation) {
        let rtt = self.shape.rtt;
        c.push(0, 0, FWD, Body::Tcp { flags: SYN, len: 0 });
        match self.variant {
            TcpVariant::SynOnly => {
                let retries = c.rng.weighted(&[4, 3, 2, 1]) as u32;
                for k in 0..retries {
                    c.push(1_000_000_000 << k, 0, FWD, Body::Tcp { flags: SYN, len: 0 });
                }
                self.phase = Phase::Done;
            }
            TcpVariant::SynSynAck => {
                c.push(rtt, 0, REV, Body::Tcp { flags: SYN | ACK, len: 0 });
                let retries = c.rng.weighted(&[3, 3, 2]) as u32;
                for k in 0..retries {
                    c.push(1_000_000_000 << k, 0, REV, Body::Tcp { flags: SYN | ACK, len: 0 });
                }
                self.phase = Phase::Done;
            }
            TcpVariant::Refused => {
                c.push(rtt, 0, REV, Body::Tcp { flags: RST | ACK, len: 0 });
                self.phase = Phase::Done;
            }
            TcpVariant::Complete | TcpVariant::MidReset => {
                c.push(rtt, 0, REV, Body::Tcp { flags: SYN | ACK, len: 0 });
                let d = quick(c);
                c.push(d, 0, FWD, Body::Tcp { flags: ACK, len: 0 });
                let d = quick(c);
                self.phase = self.request(c, d);
            }
        }
    }

    fn segment(&mut self, c: &mut Conversation, dir: u8, left: u64, unacked: u8, delay: u64) {
        let len = left.min(u64::from(self.shape.mss)) as u32;
        let last = u64::from(len) == left;
        let flags = if last { PSH | ACK } else { ACK };
        c.push(delay, 0, dir, Body::Tcp { flags, len });
        let left = left - u64::from(len);
        let unacked = unacked + 1;
        let final_round = self.shape.rounds <= 1;
        if self.variant == TcpVariant::MidReset && dir == REV && final_round {
            self.reset_after = self.reset_after.saturating_sub(u64::from(len));
            if self.reset_after == 0 || last {
                let d = quick(c);
                let from = if self.reset_by_client { FWD } else { REV };
                c.push(d, 0, from, Body::Tcp { flags: RST | ACK, len: 0 });
                self.phase = Phase::Done;
                return;
            }
        }
        let unacked = if unacked >= 2 || last {
            let d = quick(c);
            c.push(d, 0, 1 - dir, Body::Tcp { flags: ACK, len: 0 });
            0
        } else {
            unacked
        };
        let serialize = ((f64::from(len) + 40.0) * self.shape.ns_per_byte) as u64;
        self.phase = if !last {
            Phase::Burst { dir, left, unacked, delay: serialize.max(1_000) }
        } else if dir == FWD {
            // The server answers after a round trip and its own processing time.
            let server = c.rng.log_uniform(50_000.0, 20_000_000.0) as u64;
            let delay = (self.shape.rtt + server).min(self.shape.max_gap);
            // Web objects: median about 750 bytes, heavy tail up to 4 MiB.
            let left = c.rng.pareto(400.0, 4_194_304.0, 1.1);
            if self.variant == TcpVariant::MidReset && final_round {
                self.reset_after = 1 + c.rng.below(left);
            }
            Phase::Burst { dir: REV, left, unacked: 0, delay }
        } else {
            self.shape.rounds = self.shape.rounds.saturating_sub(1);
            let think = c.rng.exponential(self.shape.think_mean, self.shape.max_gap as f64) as u64;
            if self.shape.rounds == 0 { Phase::Close } else { self.request(c, think.max(1_000)) }
        };
    }

    fn close(&mut self, c: &mut Conversation) {
        let linger = c.rng.exponential(30_000_000.0, self.shape.max_gap as f64) as u64;
        let (first, second) = if self.server_closes { (REV, FWD) } else { (FWD, REV) };
        c.push(linger.max(1_000), 0, first, Body::Tcp { flags: FIN | ACK, len: 0 });
        // From next to the client, the server's packets show up one round trip after the
        // client's; the client reacts at once.
        let d = if first == FWD { self.shape.rtt } else { quick(c) };
        c.push(d, 0, second, Body::Tcp { flags: FIN | ACK, len: 0 });
        let d = if first == FWD { quick(c) } else { self.shape.rtt };
        c.push(d, 0, first, Body::Tcp { flags: ACK, len: 0 });
        self.phase = Phase::Done;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Random;

    fn shape(rounds: u32) -> TcpShape {
        TcpShape {
            rtt: 20_000_000,
            ns_per_byte: 80.0,
            mss: 1460,
            rounds,
            think_mean: 400_000_000.0,
            max_gap: 22_000_000_000,
        }
    }

    /// Runs a script to the end and returns (dir, flags, len, ts) of every packet.
    fn play(variant: TcpVariant, rounds: u32, seed: u64) -> Vec<(u8, u16, u32, u64)> {
        let mut c = Conversation::new(1_000, Random::new(seed, 9));
        let s = TcpScript::new(variant, shape(rounds), &mut c);
        c.tcp = Some(s);
        let mut out = Vec::new();
        let mut peak = 0;
        while c.next_ts().is_some() {
            peak = peak.max(c.queued());
            let p = c.pop_for_test().unwrap();
            if let Body::Tcp { flags, len } = p.body {
                out.push((p.dir, flags, len, p.ts));
            }
        }
        assert!(peak <= 4, "a TCP script queues a few packets at a time, not {peak}");
        out
    }

    #[test]
    fn complete_conversations_handshake_transfer_and_close() {
        for seed in 0..50 {
            let p = play(TcpVariant::Complete, 3, seed);
            assert_eq!(
                &p[..3].iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(),
                &[(FWD, SYN), (REV, SYN | ACK), (FWD, ACK)]
            );
            let n = p.len();
            let tail: Vec<u16> = p[n - 3..].iter().map(|x| x.1).collect();
            assert_eq!(tail, [FIN | ACK, FIN | ACK, ACK]);
            assert!(p.windows(2).all(|w| w[0].3 <= w[1].3), "time order");
            assert!(p.iter().all(|x| x.2 <= 1460));
            assert_eq!(p.iter().filter(|x| x.1 == PSH | ACK).count(), 6, "3 requests + 3 responses");
            assert!(p.iter().all(|x| x.1 & RST == 0));
            assert!(p.windows(2).all(|w| w[1].3 - w[0].3 < 22_000_000_000));
        }
    }

    #[test]
    fn resets_end_the_conversation_and_half_open_never_completes() {
        for seed in 0..50 {
            let p = play(TcpVariant::MidReset, 2, seed);
            assert_eq!(p.last().unwrap().1, RST | ACK);
            assert_eq!(p.iter().filter(|x| x.1 & RST != 0).count(), 1);
            let r = play(TcpVariant::Refused, 1, seed);
            assert_eq!(r.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(), [(FWD, SYN), (REV, RST | ACK)]);
            let s = play(TcpVariant::SynOnly, 1, seed);
            assert!(s.iter().all(|x| x.0 == FWD && x.1 == SYN) && (1..=4).contains(&s.len()));
            let sa = play(TcpVariant::SynSynAck, 1, seed);
            assert_eq!(sa[0].1, SYN);
            assert!(sa[1..].iter().all(|x| x.0 == REV && x.1 == SYN | ACK));
        }
    }
}
