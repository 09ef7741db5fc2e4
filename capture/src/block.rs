//! [`FrameBlock`]: the unit that crosses from a receive thread to a worker.
//!
//! A block holds the bytes of up to [`BlockLimits::frames`] frames back to back, one
//! descriptor per frame, and the receive thread's event time when the block was sent. Blocks
//! are recycled: a worker returns each block it has processed on a return ring and the receive
//! thread refills it, so in steady state nothing is allocated (a frame larger than the byte
//! capacity grows the block once; the larger buffer is kept).

use outpost_decode::{LinkType, Nanos};

use crate::source::Frame;

/// Capacity of one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLimits {
    /// Most frames per block (default 256).
    pub frames: usize,
    /// Frame bytes per block before it is sent (default 256 KiB).
    pub bytes: usize,
}

impl Default for BlockLimits {
    fn default() -> BlockLimits {
        BlockLimits { frames: 256, bytes: 256 << 10 }
    }
}

/// One frame in a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockFrame {
    /// Position in the input's total order (frames and clock ticks share one counter).
    pub seq: u64,
    /// Frame number: the n-th frame the receive side read (from 0) has `index == n`.
    pub index: u64,
    /// Capture timestamp.
    pub ts: Nanos,
    /// Offset of the frame's bytes in the block.
    pub offset: u32,
    /// Captured length.
    pub len: u32,
    /// Length on the wire.
    pub wire_len: u32,
    /// Link type.
    pub link: LinkType,
    /// The receiving worker's roles.
    pub roles: Roles,
}

/// What a worker is to do with a frame it received (see [`crate::Sharding`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Roles(u8);

impl Roles {
    /// The worker owns the frame's address pair: state kept per conversation (flows).
    pub const PAIR: Roles = Roles(1);
    /// The worker owns the frame's source address: state kept per source (detection rules).
    pub const SOURCE: Roles = Roles(2);
    /// Both (the only value with [`crate::Sharding::Source`]).
    pub const BOTH: Roles = Roles(3);

    /// True when every role of `other` is in `self`.
    #[inline]
    #[must_use]
    pub fn has(self, other: Roles) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Where a frame stands in the input, and what this worker is to do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InputPos {
    /// Position in the total order of frames and clock ticks; records caused by the frame
    /// carry it so the collector can restore input order.
    pub seq: u64,
    /// Frame number from 0 over the whole input (all files of a replay, in order).
    pub frame: u64,
    /// This worker's roles for the frame.
    pub roles: Roles,
}

/// Frames for one worker, with the sender's clock.
#[derive(Debug)]
pub struct FrameBlock {
    bytes: Vec<u8>,
    frames: Vec<BlockFrame>,
    /// Sequence number of the clock tick that ends this block: it is larger than the `seq` of
    /// every frame in the block, and every frame for this worker with a smaller `seq` is in this
    /// block or an earlier one. Blocks of one flush share it.
    pub tick_seq: u64,
    /// The receive side's event time when the block was sent (the latest capture timestamp it
    /// had read, or its idle clock).
    pub clock: Nanos,
    /// The pipeline's epoch when the block was sent (see [`crate::EpochRequest`]): a worker
    /// that receives a block of a newer epoch switches to it before the block's frames.
    pub epoch: u64,
    /// The sequence number the current epoch began at: every frame of an earlier epoch has a
    /// smaller one, every frame of this epoch a larger one (0 for epoch 0).
    pub epoch_seq: u64,
}

impl FrameBlock {
    /// An empty block with room for `limits`.
    #[must_use]
    pub fn new(limits: BlockLimits) -> FrameBlock {
        FrameBlock {
            bytes: Vec::with_capacity(limits.bytes),
            frames: Vec::with_capacity(limits.frames),
            tick_seq: 0,
            clock: Nanos::ZERO,
            epoch: 0,
            epoch_seq: 0,
        }
    }

    /// Empties the block for reuse, keeping its memory.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.frames.clear();
    }

    /// Appends a copy of `frame` with sequence number `seq`, frame number `index` and the
    /// receiving worker's `roles`.
    #[inline]
    pub fn push(&mut self, frame: &Frame<'_>, seq: u64, index: u64, roles: Roles) {
        // Offsets fit u32 because a block is sent once it holds `limits.bytes` (≪ 4 GiB) and a
        // single frame is at most u32::MAX bytes; saturate regardless.
        let offset = u32::try_from(self.bytes.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(frame.data);
        self.frames.push(BlockFrame {
            seq,
            index,
            ts: frame.ts,
            offset,
            len: u32::try_from(frame.data.len()).unwrap_or(u32::MAX),
            wire_len: frame.wire_len,
            link: frame.link,
            roles,
        });
    }

    /// True when the block should be sent before taking another frame.
    #[inline]
    #[must_use]
    pub fn is_full(&self, limits: BlockLimits) -> bool {
        self.frames.len() >= limits.frames || self.bytes.len() >= limits.bytes
    }

    /// Number of frames.
    #[must_use]
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when the block carries no frames (only a clock update).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Starts loading the first 128 bytes of frame `i` (the headers a decoder reads: they
    /// were written by the receive thread, on another core) into this core's caches. A hint:
    /// no effect on results, nothing for an `i` past the end.
    #[inline]
    pub fn prefetch_headers(&self, i: usize) {
        if let Some(d) = self.frames.get(i) {
            let start = d.offset as usize;
            let end = start + (d.len as usize).min(128);
            if let Some(b) = self.bytes.get(start..end) {
                outpost_decode::prefetch_bytes(b);
            }
        }
    }

    /// The frames in the order they were pushed, with their input positions.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (InputPos, Frame<'_>)> + '_ {
        self.frames.iter().map(|d| {
            let start = d.offset as usize;
            let data = self.bytes.get(start..start.saturating_add(d.len as usize)).unwrap_or(&[]);
            (
                InputPos { seq: d.seq, frame: d.index, roles: d.roles },
                Frame { data, ts: d.ts, wire_len: d.wire_len, link: d.link, record: d.index },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_back_in_order_with_their_bytes() {
        let mut b = FrameBlock::new(BlockLimits { frames: 2, bytes: 1 << 10 });
        let f1 = Frame { data: &[1, 2, 3], ts: Nanos(5), wire_len: 3, link: LinkType::Ethernet, record: 0 };
        let f2 = Frame { data: &[9], ts: Nanos(7), wire_len: 60, link: LinkType::Raw, record: 1 };
        b.push(&f1, 10, 0, Roles::BOTH);
        assert!(!b.is_full(BlockLimits { frames: 2, bytes: 1 << 10 }));
        b.push(&f2, 12, 1, Roles::PAIR);
        assert!(b.is_full(BlockLimits { frames: 2, bytes: 1 << 10 }));
        let got: Vec<_> =
            b.iter().map(|(p, f)| (p.seq, p.frame, f.data.to_vec(), f.ts, f.wire_len, f.link)).collect();
        assert_eq!(
            got,
            vec![
                (10, 0, vec![1, 2, 3], Nanos(5), 3, LinkType::Ethernet),
                (12, 1, vec![9], Nanos(7), 60, LinkType::Raw)
            ]
        );
        b.clear();
        assert!(b.is_empty());
    }
}
