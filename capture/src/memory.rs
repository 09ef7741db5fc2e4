//! An in-memory packet source: frames held in one buffer, handed out in batches.
//!
//! Used by tests and benchmarks (replay from memory, no I/O) and by tools that build traffic
//! on the fly.

use outpost_decode::{LinkType, Nanos};

use crate::error::SourceError;
use crate::source::{Batch, FrameDesc, PacketSource, SourceStats};

/// Frames in memory, delivered `batch` at a time, optionally several times over.
#[derive(Debug, Clone)]
pub struct MemorySource {
    data: Vec<u8>,
    descs: Vec<FrameDesc>,
    batch: usize,
    pos: usize,
    /// Passes still to deliver after the current one.
    repeats_left: u64,
    stats: SourceStats,
}

impl MemorySource {
    /// An empty source delivering at most `batch` frames per batch.
    #[must_use]
    pub fn new(batch: usize) -> MemorySource {
        MemorySource {
            data: Vec::new(),
            descs: Vec::new(),
            batch: batch.max(1),
            pos: 0,
            repeats_left: 0,
            stats: SourceStats::default(),
        }
    }

    /// Appends a frame captured whole (wire length = captured length).
    pub fn push(&mut self, link: LinkType, ts: Nanos, frame: &[u8]) {
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        self.push_cut(link, ts, frame, len);
    }

    /// Appends a frame that had `wire_len` bytes on the wire.
    pub fn push_cut(&mut self, link: LinkType, ts: Nanos, frame: &[u8], wire_len: u32) {
        let offset = u32::try_from(self.data.len()).unwrap_or(u32::MAX);
        self.data.extend_from_slice(frame);
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let record = self.descs.len() as u64;
        self.descs.push(FrameDesc { ts, offset, len, wire_len: wire_len.max(len), link, record });
    }

    /// Delivers the frames `times` times in all (at least once). Timestamps repeat as stored.
    #[must_use]
    pub fn repeat(mut self, times: u64) -> MemorySource {
        self.repeats_left = times.max(1) - 1;
        self
    }

    /// Number of frames per pass.
    #[must_use]
    pub fn len(&self) -> usize {
        self.descs.len()
    }

    /// True when there are no frames.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.descs.is_empty()
    }
}

impl PacketSource for MemorySource {
    fn next_batch(&mut self) -> Result<Option<Batch<'_>>, SourceError> {
        if self.pos >= self.descs.len() {
            if self.repeats_left == 0 || self.descs.is_empty() {
                return Ok(None);
            }
            self.repeats_left -= 1;
            self.pos = 0;
        }
        let end = (self.pos + self.batch).min(self.descs.len());
        // Record numbers continue across repeated passes.
        let pass_base = self.stats.records - self.pos as u64;
        if let Some(descs) = self.descs.get_mut(self.pos..end) {
            for (i, d) in descs.iter_mut().enumerate() {
                d.record = pass_base + (self.pos + i) as u64;
            }
        }
        let descs = self.descs.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        self.stats.frames += descs.len() as u64;
        self.stats.records += descs.len() as u64;
        self.stats.bytes += descs.iter().map(|d| u64::from(d.len)).sum::<u64>();
        Ok(Some(Batch::new(&self.data, descs)))
    }

    fn stats(&self) -> SourceStats {
        self.stats.clone()
    }
}
