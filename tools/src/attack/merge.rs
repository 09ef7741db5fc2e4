//! Merging the benign mix and the attacks into one capture, in time order, while the mix
//! generator runs.
//!
//! The mix generator writes a classic pcap stream; [`MergeSink`] is the writer it writes to.
//! It parses the stream record by record and, before each benign packet, writes every attack
//! packet that is earlier (ties go to the benign packet). The benign frames and timestamps
//! pass through unchanged, so the benign part of the capture is byte for byte what
//! `outpost gen mix` writes with the same options. Memory: one partial record of the mix's
//! output buffer, whatever the file size.

use std::io::{self, Write};

use outpost_decode::Nanos;

use super::packet::{Emitter, Tag, phase};
use super::stream::AttackStream;
use crate::pcap::CaptureWriter;

/// First and last packet time of one phase of one attack.
pub(crate) type Span = Option<(u64, u64)>;

/// What went through a merge.
#[derive(Debug, Default, Clone)]
pub(crate) struct MergeTally {
    pub(crate) packets: u64,
    pub(crate) attack_packets: u64,
    pub(crate) frame_bytes: u64,
    pub(crate) first_ts: Option<u64>,
    pub(crate) last_ts: Option<u64>,
    /// Per attack, per phase: first and last packet time.
    pub(crate) spans: Vec<[Span; 3]>,
    /// Per attack: packets written.
    pub(crate) per_attack: Vec<u64>,
}

impl MergeTally {
    fn count(&mut self, ts: u64, len: usize) {
        self.packets += 1;
        self.frame_bytes += len as u64;
        self.first_ts.get_or_insert(ts);
        self.last_ts = Some(ts);
    }

    fn mark(&mut self, tag: Tag, ts: u64) {
        if let Some(n) = self.per_attack.get_mut(usize::from(tag.attack)) {
            *n += 1;
        }
        let Some(phases) = self.spans.get_mut(usize::from(tag.attack)) else { return };
        let Some(span) = phases.get_mut(usize::from(tag.phase.min(phase::BACKGROUND))) else { return };
        *span = Some(span.map_or((ts, ts), |(first, _)| (first, ts)));
    }
}

/// The writer the mix generator writes its pcap stream to.
#[derive(Debug)]
pub(crate) struct MergeSink<W: Write> {
    out: CaptureWriter<W>,
    attacks: AttackStream,
    emitter: Emitter,
    /// Attack timestamps are truncated to a multiple of this (1000 for microsecond pcap).
    quantum: u64,
    /// Bytes of the mix's stream not yet parsed.
    pending: Vec<u8>,
    /// `Some(nanos)` once the mix's file header was read.
    nanos: Option<bool>,
    pub(crate) tally: MergeTally,
}

impl<W: Write> MergeSink<W> {
    pub(crate) fn new(
        out: CaptureWriter<W>,
        attacks: AttackStream,
        emitter: Emitter,
        quantum: u64,
        attack_count: usize,
    ) -> MergeSink<W> {
        MergeSink {
            out,
            attacks,
            emitter,
            quantum: quantum.max(1),
            pending: Vec::with_capacity(1 << 16),
            nanos: None,
            tally: MergeTally {
                spans: vec![[None; 3]; attack_count],
                per_attack: vec![0; attack_count],
                ..MergeTally::default()
            },
        }
    }

    /// Writes every attack packet earlier than `before` (all of them when `None`).
    fn attacks_until(&mut self, before: Option<u64>) -> io::Result<()> {
        while let Some(ts) = self.attacks.peek_ts() {
            let ts = ts - ts % self.quantum;
            if before.is_some_and(|b| ts >= b) {
                break;
            }
            let Some(p) = self.attacks.pop() else { break };
            let frame = self.emitter.build(&p);
            self.out.write_packet(Nanos(ts), frame)?;
            self.tally.count(ts, frame.len());
            self.tally.attack_packets += 1;
            self.tally.mark(p.tag, ts);
        }
        Ok(())
    }

    /// Parses and writes every complete record in `pending`.
    fn drain_records(&mut self) -> io::Result<()> {
        let mut at = 0;
        if self.nanos.is_none() {
            let Some(magic) = self.pending.get(..4) else { return Ok(()) };
            let magic = u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]);
            self.nanos = Some(match magic {
                0xa1b2_3c4d => true,
                0xa1b2_c3d4 => false,
                _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "the mix stream is not pcap")),
            });
            if self.pending.len() < 24 {
                self.nanos = None;
                return Ok(());
            }
            at = 24;
        }
        let unit = if self.nanos == Some(true) { 1 } else { 1_000 };
        while let Some(hdr) = self.pending.get(at..at + 16) {
            let word = |i: usize| u32::from_le_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
            let (secs, frac, caplen) = (word(0), word(4), word(8) as usize);
            if self.pending.len() < at + 16 + caplen {
                break;
            }
            let ts = u64::from(secs) * 1_000_000_000 + u64::from(frac) * unit;
            self.attacks_until(Some(ts))?;
            let frame = &self.pending[at + 16..at + 16 + caplen];
            self.out.write_packet(Nanos(ts), frame)?;
            self.tally.count(ts, caplen);
            at += 16 + caplen;
        }
        self.pending.drain(..at);
        Ok(())
    }

    /// Writes the attack packets after the last benign one and hands back the writer.
    pub(crate) fn finish(mut self) -> io::Result<(CaptureWriter<W>, MergeTally, usize)> {
        self.drain_records()?;
        if !self.pending.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the mix stream ends inside a record"));
        }
        self.attacks_until(None)?;
        Ok((self.out, self.tally, self.attacks.peak_pending))
    }
}

impl<W: Write> Write for MergeSink<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(data);
        self.drain_records()?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
