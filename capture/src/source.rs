//! The `PacketSource` trait: anything that yields batches of captured frames.
//!
//! A source hands out a [`Batch`] of borrowed frames. The frames stay valid for as long as the
//! batch is borrowed; the borrow checker ends that borrow before the next call to
//! [`PacketSource::next_batch`], which is when a source recycles the memory (a pcap reader
//! compacts its buffer, an AF_XDP socket returns the frames to its fill ring). No frame is
//! copied or allocated by the source itself.

use outpost_decode::{LinkType, Nanos};

use crate::error::SourceError;

/// Where one frame lives inside a batch's backing memory, plus its capture metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameDesc {
    /// Capture timestamp.
    pub ts: Nanos,
    /// Byte offset of the frame in the batch's backing memory.
    pub offset: u32,
    /// Captured length in bytes.
    pub len: u32,
    /// Length on the wire in bytes (≥ `len` when a snap length cut the frame).
    pub wire_len: u32,
    /// Link-layer type of the frame.
    pub link: LinkType,
    /// Record number in the input from 0, counting every record the source read — also
    /// those it skipped (unsupported link type) — so `record + 1` is Wireshark's frame number.
    pub record: u64,
}

/// One captured frame, borrowed from its batch.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Captured bytes.
    pub data: &'a [u8],
    /// Capture timestamp.
    pub ts: Nanos,
    /// Length on the wire in bytes.
    pub wire_len: u32,
    /// Link-layer type.
    pub link: LinkType,
    /// Record number in the input from 0 (see [`FrameDesc::record`]).
    pub record: u64,
}

/// A batch of frames borrowed from a source: descriptors into one backing buffer.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    data: &'a [u8],
    descs: &'a [FrameDesc],
}

impl<'a> Batch<'a> {
    /// A batch over `data` described by `descs`. Descriptors that point outside `data` yield
    /// empty frames rather than panicking.
    #[must_use]
    pub fn new(data: &'a [u8], descs: &'a [FrameDesc]) -> Batch<'a> {
        Batch { data, descs }
    }

    /// Number of frames.
    #[must_use]
    pub fn len(&self) -> usize {
        self.descs.len()
    }

    /// True when the batch holds no frames.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.descs.is_empty()
    }

    /// The frames in capture order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Frame<'a>> + 'a {
        let data = self.data;
        self.descs.iter().map(move |d| Frame {
            data: data
                .get(d.offset as usize..(d.offset as usize).saturating_add(d.len as usize))
                .unwrap_or(&[]),
            ts: d.ts,
            wire_len: d.wire_len,
            link: d.link,
            record: d.record,
        })
    }
}

/// Counters a source keeps about its input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Frames delivered in batches.
    pub frames: u64,
    /// Captured bytes delivered.
    pub bytes: u64,
    /// Frames skipped because their link type is not decoded by Outpost.
    pub unsupported_link: u64,
    /// Packet records read, delivered or skipped.
    pub records: u64,
    /// Frames dropped by the source before delivery (kernel or ring drops, for live sources).
    pub dropped: u64,
}

/// A producer of captured frames: pcap files, memory, and (later) AF_XDP and AF_PACKET.
pub trait PacketSource: Send {
    /// The next batch of frames, `Ok(None)` at the end of the input. A live source may return
    /// an empty batch when nothing arrived within its poll interval, so callers can advance
    /// time.
    ///
    /// After an `Err`, the frames before the error have all been delivered; calling again
    /// continues with the next input if the source has one (a list of files) or returns
    /// `Ok(None)`.
    ///
    /// # Errors
    /// A [`SourceError`] naming the input and, for files, the byte offset of the problem.
    fn next_batch(&mut self) -> Result<Option<Batch<'_>>, SourceError>;

    /// Counters so far.
    fn stats(&self) -> SourceStats;

    /// The current event time of the source when it has no frames to give (live sources
    /// report their idle clock here); `None` for offline sources.
    fn idle_time(&self) -> Option<Nanos> {
        None
    }

    /// A descriptor that becomes readable when frames arrive (live sources), for a caller
    /// that waits on several sources at once; `None` for offline sources.
    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }

    /// How long [`PacketSource::next_batch`] may wait for frames before returning an empty
    /// batch, in milliseconds (live sources; 0 = never wait). Offline sources ignore it.
    fn set_poll_timeout(&mut self, _ms: i32) {}

    /// True when [`PacketSource::next_batch`] would return frames without waiting (a live
    /// source also hands back the frames of its previous batch here). Offline sources: true.
    fn has_pending(&mut self) -> bool {
        true
    }

    /// Called once when the capture stops (not at the end of the input): stops any reading
    /// the source does on its own threads. Returns true when frames it already took from the
    /// kernel are still waiting in it; the caller then takes them with
    /// [`PacketSource::next_batch`] until `Ok(None)`, so they are delivered rather than lost
    /// uncounted. Sources that read only when asked (the default) return false.
    fn shutdown(&mut self) -> bool {
        false
    }
}

impl<S: PacketSource + ?Sized> PacketSource for Box<S> {
    fn next_batch(&mut self) -> Result<Option<Batch<'_>>, SourceError> {
        (**self).next_batch()
    }
    fn stats(&self) -> SourceStats {
        (**self).stats()
    }
    fn idle_time(&self) -> Option<Nanos> {
        (**self).idle_time()
    }
    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        (**self).poll_fd()
    }
    fn set_poll_timeout(&mut self, ms: i32) {
        (**self).set_poll_timeout(ms);
    }
    fn has_pending(&mut self) -> bool {
        (**self).has_pending()
    }
    fn shutdown(&mut self) -> bool {
        (**self).shutdown()
    }
}
