//! Streaming pcap and pcapng file source.
//!
//! Reads through one fixed buffer (default 4 MiB, grown only for a single block larger than
//! it), parses records with the `pcap-parser` crate's parsers, and hands out batches of frames
//! that point into that buffer — the file is never loaded whole and frames are never copied.
//!
//! Supported: classic pcap in either byte order with microsecond or nanosecond timestamps (and
//! the "modified" Kuznetzov variant), pcapng with any number of sections and interfaces, each
//! interface with its own link type, timestamp resolution (`if_tsresol`) and offset
//! (`if_tsoffset`). Enhanced and simple packet blocks carry frames; other blocks are skipped.
//!
//! A truncated or corrupt file yields every frame before the problem first, then an error
//! that names the file and the byte offset of the bad record.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use outpost_decode::{LinkType, Nanos};
use pcap_parser::nom;
use pcap_parser::pcap::{LegacyPcapBlock, PcapHeader, parse_pcap_frame_modified, parse_pcap_header};
use pcap_parser::pcapng::{Block, parse_block_be, parse_block_le, parse_sectionheaderblock};

use crate::error::SourceError;
use crate::source::{Batch, FrameDesc, PacketSource, SourceStats};

/// Default read buffer size.
pub const DEFAULT_BUFFER: usize = 4 << 20;
/// Largest single block accepted (pcapng blocks carry at most one frame plus options).
const MAX_BLOCK: usize = 64 << 20;
/// Most frames handed out per batch.
pub const DEFAULT_BATCH_FRAMES: usize = 1024;

#[derive(Debug, Clone, Copy)]
enum Format {
    Legacy { big_endian: bool, modified: bool, nanos: bool, link: Option<LinkType> },
    Ng { big_endian: bool },
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    link: Option<LinkType>,
    /// Timestamp units per second.
    resolution: u64,
    /// Seconds added to every timestamp.
    offset_secs: i64,
}

/// A pcap or pcapng file read as a stream of batches.
#[derive(Debug)]
pub struct PcapFileSource {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    /// Parse position in `buf`.
    start: usize,
    /// End of valid bytes in `buf`.
    end: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
    format: Option<Format>,
    interfaces: Vec<Interface>,
    descs: Vec<FrameDesc>,
    max_frames: usize,
    pending_error: Option<SourceError>,
    finished: bool,
    last_ts: Nanos,
    stats: SourceStats,
    /// Record number of this file's first record in a multi-file input.
    first_record: u64,
}

impl PcapFileSource {
    /// Opens `path` with the default buffer and batch sizes.
    ///
    /// # Errors
    /// [`SourceError::Io`] when the file cannot be opened.
    pub fn open(path: impl AsRef<Path>) -> Result<PcapFileSource, SourceError> {
        PcapFileSource::with_sizes(path, DEFAULT_BUFFER, DEFAULT_BATCH_FRAMES)
    }

    /// Opens `path` with a read buffer of `buffer` bytes and at most `max_frames` per batch.
    ///
    /// # Errors
    /// [`SourceError::Io`] when the file cannot be opened.
    pub fn with_sizes(
        path: impl AsRef<Path>,
        buffer: usize,
        max_frames: usize,
    ) -> Result<PcapFileSource, SourceError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| SourceError::Io { path: path.clone(), source })?;
        Ok(PcapFileSource {
            path,
            file,
            buf: vec![0; buffer.max(64 << 10)],
            start: 0,
            end: 0,
            base: 0,
            eof: false,
            format: None,
            interfaces: Vec::new(),
            descs: Vec::with_capacity(max_frames.max(1)),
            max_frames: max_frames.max(1),
            pending_error: None,
            finished: false,
            last_ts: Nanos::ZERO,
            stats: SourceStats::default(),
            first_record: 0,
        })
    }

    /// The file being read.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn offset(&self, at: usize) -> u64 {
        self.base + at as u64
    }

    /// Moves unparsed bytes to the front and reads until the buffer is full or the file ends.
    fn refill(&mut self) -> Result<(), SourceError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // One block is larger than the whole buffer: grow (bounded).
            if self.buf.len() >= MAX_BLOCK {
                return Err(self.corrupt(0, format!("a block is larger than {MAX_BLOCK} bytes")));
            }
            let new_len = (self.buf.len() * 2).min(MAX_BLOCK);
            self.buf.resize(new_len, 0);
        }
        while self.end < self.buf.len() && !self.eof {
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => return Err(SourceError::Io { path: self.path.clone(), source }),
            }
        }
        Ok(())
    }

    fn corrupt(&self, at: usize, reason: String) -> SourceError {
        SourceError::Corrupt { path: self.path.clone(), offset: self.offset(at), reason }
    }

    fn truncated(&self, at: usize, needed: u64) -> SourceError {
        SourceError::Truncated { path: self.path.clone(), offset: self.offset(at), needed: needed.max(1) }
    }

    /// Reads the file header (classic) or recognises a section header (pcapng).
    fn read_header(&mut self) -> Result<(), SourceError> {
        let bytes = &self.buf[self.start..self.end];
        let magic = bytes.get(..4).map(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        match magic {
            Some(0x0A0D_0D0A) => {
                // The SHB is parsed as a block in the main loop; its byte-order mark decides.
                self.format = Some(Format::Ng { big_endian: false });
                Ok(())
            }
            Some(0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1 | 0xa1b2_cd34 | 0x34cd_b2a1) => {
                match parse_pcap_header(bytes) {
                    Ok((_, hdr)) => {
                        self.format = Some(legacy_format(&hdr));
                        self.start += 24;
                        Ok(())
                    }
                    Err(nom::Err::Incomplete(_)) => Err(self.truncated(self.start, 24 - bytes.len() as u64)),
                    Err(_) => Err(self.corrupt(self.start, "bad pcap file header".into())),
                }
            }
            _ => Err(SourceError::NotACapture {
                path: self.path.clone(),
                magic: bytes.iter().take(4).copied().collect(),
            }),
        }
    }

    /// Parses as many records as fit in the buffer into `descs`. Returns `Ok(true)` when it
    /// stopped for lack of bytes (more may follow after a refill).
    fn parse_records(&mut self) -> Result<bool, SourceError> {
        while self.descs.len() < self.max_frames {
            // Read per record: a section header block may change the byte order.
            let Some(format) = self.format else { return Ok(false) };
            let at = self.start;
            let input = &self.buf[at..self.end];
            if input.is_empty() {
                return Ok(true);
            }
            match format {
                Format::Legacy { big_endian, modified: false, nanos, link } => {
                    // The 16-byte record header, read by hand (the common case): seconds,
                    // fraction, captured and original length.
                    let Some(h) = input.get(..16) else {
                        return self.incomplete_by(at, 16 - input.len());
                    };
                    let field = |o: usize| {
                        let b = [h[o], h[o + 1], h[o + 2], h[o + 3]];
                        if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
                    };
                    let (ts_sec, ts_frac, caplen, origlen) = (field(0), field(4), field(8), field(12));
                    let caplen = caplen as usize;
                    if input.len() - 16 < caplen {
                        return self.incomplete_by(at, caplen - (input.len() - 16));
                    }
                    let frac = if nanos { u64::from(ts_frac) } else { u64::from(ts_frac) * 1000 };
                    let ts = Nanos(u64::from(ts_sec) * 1_000_000_000 + frac);
                    self.push_frame(link, at + 16, caplen, origlen, ts);
                    self.start = at + 16 + caplen;
                }
                Format::Legacy { modified: true, nanos, link, .. } => {
                    // The modified (Kuznetzov) format's longer record header: pcap-parser.
                    match parse_pcap_frame_modified(input) {
                        Ok((rest, block)) => {
                            let consumed = input.len() - rest.len();
                            let ts = legacy_ts(&block, nanos);
                            let data_off = at + consumed - block.data.len();
                            self.push_frame(link, data_off, block.data.len(), block.origlen, ts);
                            self.start = at + consumed;
                        }
                        Err(nom::Err::Incomplete(n)) => return self.incomplete(at, n),
                        Err(_) => return Err(self.corrupt(at, "unreadable pcap record header".into())),
                    }
                }
                Format::Ng { big_endian } => {
                    // A new section may switch byte order: peek for an SHB first.
                    let is_shb = input.get(..4) == Some(&[0x0A, 0x0D, 0x0D, 0x0A]);
                    let parsed = if is_shb {
                        parse_sectionheaderblock(input).map(|(r, b)| (r, Block::SectionHeader(b)))
                    } else if big_endian {
                        parse_block_be(input)
                    } else {
                        parse_block_le(input)
                    };
                    let (rest, block) = match parsed {
                        Ok(v) => v,
                        Err(nom::Err::Incomplete(n)) => return self.incomplete(at, n),
                        Err(e) => {
                            let reason = match e {
                                nom::Err::Error(pe) | nom::Err::Failure(pe) => {
                                    format!("bad pcapng block: {pe}")
                                }
                                nom::Err::Incomplete(_) => "bad pcapng block".into(),
                            };
                            return Err(self.corrupt(at, reason));
                        }
                    };
                    let consumed = input.len() - rest.len();
                    match block {
                        Block::SectionHeader(shb) => {
                            self.format = Some(Format::Ng { big_endian: shb.big_endian() });
                            self.interfaces.clear();
                            self.start = at + consumed;
                            // Byte order may have changed: the loop re-reads the format.
                            continue;
                        }
                        Block::InterfaceDescription(idb) => {
                            let resolution = idb.ts_resolution().unwrap_or(0);
                            if resolution == 0 {
                                return Err(self.corrupt(at, format!("bad if_tsresol {:#x}", idb.if_tsresol)));
                            }
                            let lt = u32::try_from(idb.linktype.0).unwrap_or(u32::MAX);
                            self.interfaces.push(Interface {
                                link: LinkType::from_linktype(lt),
                                resolution,
                                offset_secs: idb.ts_offset(),
                            });
                        }
                        Block::EnhancedPacket(epb) => {
                            let Some(iface) = self.interfaces.get(epb.if_id as usize).copied() else {
                                return Err(self
                                    .corrupt(at, format!("packet for undeclared interface {}", epb.if_id)));
                            };
                            let caplen = (epb.caplen as usize).min(epb.data.len());
                            let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            let ts = ng_ts(units, iface);
                            let data_off = epb.data.as_ptr() as usize - input.as_ptr() as usize + at;
                            self.push_frame(iface.link, data_off, caplen, epb.origlen, ts);
                        }
                        Block::SimplePacket(spb) => {
                            let Some(iface) = self.interfaces.first().copied() else {
                                return Err(self.corrupt(at, "simple packet before any interface".into()));
                            };
                            let caplen = (spb.origlen as usize).min(spb.data.len());
                            let data_off = spb.data.as_ptr() as usize - input.as_ptr() as usize + at;
                            // Simple packet blocks carry no timestamp: reuse the last one seen.
                            self.push_frame(iface.link, data_off, caplen, spb.origlen, self.last_ts);
                        }
                        _ => {}
                    }
                    self.start = at + consumed;
                }
            }
        }
        Ok(false)
    }

    /// [`Self::incomplete`] with the number of bytes missing known.
    fn incomplete_by(&self, at: usize, missing: usize) -> Result<bool, SourceError> {
        if self.eof { Err(self.truncated(at, missing as u64)) } else { Ok(true) }
    }

    fn incomplete(&self, at: usize, needed: nom::Needed) -> Result<bool, SourceError> {
        if self.eof {
            let n = match needed {
                nom::Needed::Size(n) => n.get() as u64,
                nom::Needed::Unknown => 1,
            };
            Err(self.truncated(at, n))
        } else {
            Ok(true)
        }
    }

    fn push_frame(&mut self, link: Option<LinkType>, off: usize, len: usize, orig: u32, ts: Nanos) {
        self.last_ts = ts;
        let record = self.first_record + self.stats.records;
        self.stats.records += 1;
        let Some(link) = link else {
            self.stats.unsupported_link += 1;
            return;
        };
        let (Ok(offset), Ok(len32)) = (u32::try_from(off), u32::try_from(len)) else {
            self.stats.unsupported_link += 1;
            return;
        };
        self.stats.frames += 1;
        self.stats.bytes += len as u64;
        self.descs.push(FrameDesc { ts, offset, len: len32, wire_len: orig.max(len32), link, record });
    }
}

fn legacy_format(hdr: &PcapHeader) -> Format {
    let lt = u32::try_from(hdr.network.0).unwrap_or(u32::MAX) & 0xffff;
    Format::Legacy {
        big_endian: hdr.is_bigendian(),
        modified: hdr.is_modified_format(),
        nanos: hdr.is_nanosecond_precision(),
        link: LinkType::from_linktype(lt),
    }
}

fn legacy_ts(b: &LegacyPcapBlock<'_>, nanos: bool) -> Nanos {
    let frac = if nanos { u64::from(b.ts_usec) } else { u64::from(b.ts_usec) * 1000 };
    Nanos(u64::from(b.ts_sec) * 1_000_000_000 + frac)
}

fn ng_ts(units: u64, iface: Interface) -> Nanos {
    let ns = u128::from(units) * 1_000_000_000 / u128::from(iface.resolution);
    let ns = i128::try_from(ns).unwrap_or(i128::MAX) + i128::from(iface.offset_secs) * 1_000_000_000;
    Nanos(u64::try_from(ns.max(0)).unwrap_or(u64::MAX))
}

impl PacketSource for PcapFileSource {
    fn next_batch(&mut self) -> Result<Option<Batch<'_>>, SourceError> {
        self.descs.clear();
        if let Some(e) = self.pending_error.take() {
            self.finished = true;
            return Err(e);
        }
        if self.finished {
            return Ok(None);
        }
        loop {
            let need_more = match self.parse_records() {
                Ok(more) => more,
                Err(e) => {
                    if self.descs.is_empty() {
                        self.finished = true;
                        return Err(e);
                    }
                    // Deliver what came before the problem first.
                    self.pending_error = Some(e);
                    break;
                }
            };
            if !self.descs.is_empty() && (!need_more || self.descs.len() >= self.max_frames / 4) {
                break;
            }
            if self.eof && self.start >= self.end {
                if self.format.is_none() {
                    self.finished = true;
                    return Err(SourceError::NotACapture { path: self.path.clone(), magic: Vec::new() });
                }
                break;
            }
            if need_more || self.format.is_none() {
                if !self.descs.is_empty() {
                    // Frames in `descs` point into the buffer; hand them out before compacting.
                    break;
                }
                if let Err(e) = self.refill() {
                    // A read error or an oversized block ends this file: retrying would meet
                    // the same error forever.
                    self.finished = true;
                    return Err(e);
                }
                if self.format.is_none() && (self.end - self.start >= 4 || self.eof) {
                    if let Err(e) = self.read_header() {
                        self.finished = true;
                        return Err(e);
                    }
                }
            }
        }
        if self.descs.is_empty() {
            self.finished = true;
            return Ok(None);
        }
        Ok(Some(Batch::new(&self.buf[..self.end], &self.descs)))
    }

    fn stats(&self) -> SourceStats {
        self.stats.clone()
    }
}

/// Several capture files read one after another as a single source.
///
/// Frames keep the order of the files and, within a file, of the records. An error in one
/// file is reported (after that file's earlier frames) and reading continues with the next.
#[derive(Debug)]
pub struct PcapFiles {
    paths: std::vec::IntoIter<PathBuf>,
    current: Option<PcapFileSource>,
    done: SourceStats,
}

impl PcapFiles {
    /// A source over `paths`, opened lazily in order.
    #[must_use]
    pub fn new(paths: Vec<PathBuf>) -> PcapFiles {
        PcapFiles { paths: paths.into_iter(), current: None, done: SourceStats::default() }
    }
}

impl PacketSource for PcapFiles {
    fn next_batch(&mut self) -> Result<Option<Batch<'_>>, SourceError> {
        loop {
            if self.current.is_none() {
                let Some(path) = self.paths.next() else { return Ok(None) };
                let mut next = PcapFileSource::open(path)?;
                next.first_record = self.done.records;
                self.current = Some(next);
            }
            // Decide first whether the current file is exhausted, then borrow it for the batch
            // (two steps keep the borrow checker happy about returning the borrowed batch).
            let exhausted = match self.current.as_mut() {
                Some(cur) => match cur.next_batch() {
                    Ok(Some(_)) => false,
                    Ok(None) => true,
                    Err(e) => {
                        if cur.finished {
                            let stats = cur.stats();
                            add_stats(&mut self.done, &stats);
                            self.current = None;
                        }
                        return Err(e);
                    }
                },
                None => true,
            };
            if exhausted {
                if let Some(cur) = self.current.take() {
                    add_stats(&mut self.done, &cur.stats());
                }
                continue;
            }
            return Ok(self.current.as_ref().map(|c| Batch::new(&c.buf[..c.end], &c.descs)));
        }
    }

    fn stats(&self) -> SourceStats {
        let mut s = self.done.clone();
        if let Some(c) = &self.current {
            add_stats(&mut s, &c.stats);
        }
        s
    }
}

fn add_stats(into: &mut SourceStats, s: &SourceStats) {
    into.frames += s.frames;
    into.bytes += s.bytes;
    into.unsupported_link += s.unsupported_link;
    into.records += s.records;
    into.dropped += s.dropped;
}
