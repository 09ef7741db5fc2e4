//! Streaming writers for pcap (microsecond or nanosecond) and pcapng files.
//!
//! Both write through a `BufWriter` and keep no per-packet state, so a generator can write
//! any number of packets in constant memory.

use std::io::{self, BufWriter, Write};

use outpost_decode::{LinkType, Nanos};

/// Timestamp precision of a classic pcap file (its magic number tells readers which).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Microseconds, magic `0xa1b2c3d4`.
    Micro,
    /// Nanoseconds, magic `0xa1b23c4d`.
    Nano,
}

/// The capture file format a generator writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Classic libpcap: nanosecond timestamps when `nanos` is true (the default), else
    /// microseconds (timestamps are truncated to the microsecond).
    Pcap {
        /// Nanosecond rather than microsecond timestamps.
        nanos: bool,
    },
    /// pcapng with one interface at nanosecond resolution.
    PcapNg,
}

impl Default for OutputFormat {
    fn default() -> OutputFormat {
        OutputFormat::Pcap { nanos: true }
    }
}

/// A pcap or pcapng writer with a single interface, the format chosen at run time.
#[derive(Debug)]
pub enum CaptureWriter<W: Write> {
    /// Classic libpcap.
    Pcap(PcapWriter<W>),
    /// pcapng; every packet goes to interface `iface`.
    PcapNg {
        /// The writer.
        writer: PcapNgWriter<W>,
        /// The one interface's id.
        iface: u32,
    },
}

impl<W: Write> CaptureWriter<W> {
    /// Writes the file header (and, for pcapng, the one interface description).
    ///
    /// # Errors
    /// Any I/O error of the underlying writer.
    pub fn new(inner: W, format: OutputFormat, link: LinkType) -> io::Result<CaptureWriter<W>> {
        Ok(match format {
            OutputFormat::Pcap { nanos } => {
                let precision = if nanos { Precision::Nano } else { Precision::Micro };
                CaptureWriter::Pcap(PcapWriter::new(inner, link, precision)?)
            }
            OutputFormat::PcapNg => {
                let mut writer = PcapNgWriter::new(inner)?;
                let iface = writer.add_interface(link, 9)?;
                CaptureWriter::PcapNg { writer, iface }
            }
        })
    }

    /// Appends one whole (untruncated) frame captured at `ts`.
    ///
    /// # Errors
    /// Any I/O error of the underlying writer.
    pub fn write_packet(&mut self, ts: Nanos, data: &[u8]) -> io::Result<()> {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        match self {
            CaptureWriter::Pcap(w) => w.write_packet(ts, data, len),
            CaptureWriter::PcapNg { writer, iface } => writer.write_packet(*iface, ts, data, len, None),
        }
    }

    /// Flushes buffered bytes and returns the inner writer.
    ///
    /// # Errors
    /// Any I/O error while flushing.
    pub fn finish(self) -> io::Result<W> {
        match self {
            CaptureWriter::Pcap(w) => w.finish(),
            CaptureWriter::PcapNg { writer, .. } => writer.finish(),
        }
    }
}

/// Default snap length written to file headers.
pub const SNAPLEN: u32 = 262_144;

/// Writes a classic libpcap file (little-endian, version 2.4).
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: BufWriter<W>,
    precision: Precision,
    packets: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    ///
    /// # Errors
    /// Any I/O error of the underlying writer.
    pub fn new(inner: W, link: LinkType, precision: Precision) -> io::Result<PcapWriter<W>> {
        let mut out = BufWriter::with_capacity(1 << 20, inner);
        let magic: u32 = match precision {
            Precision::Micro => 0xa1b2_c3d4,
            Precision::Nano => 0xa1b2_3c4d,
        };
        out.write_all(&magic.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?; // thiszone
        out.write_all(&0u32.to_le_bytes())?; // sigfigs
        out.write_all(&SNAPLEN.to_le_bytes())?;
        out.write_all(&link.linktype().to_le_bytes())?;
        Ok(PcapWriter { out, precision, packets: 0 })
    }

    /// Appends one packet record. `orig_len` is the on-the-wire length (≥ `data.len()`).
    ///
    /// # Errors
    /// Any I/O error of the underlying writer.
    pub fn write_packet(&mut self, ts: Nanos, data: &[u8], orig_len: u32) -> io::Result<()> {
        let frac = match self.precision {
            Precision::Micro => ts.subsec_nanos() / 1000,
            Precision::Nano => ts.subsec_nanos(),
        };
        let secs = u32::try_from(ts.secs()).unwrap_or(u32::MAX);
        let caplen = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let mut hdr = [0u8; 16];
        hdr[0..4].copy_from_slice(&secs.to_le_bytes());
        hdr[4..8].copy_from_slice(&frac.to_le_bytes());
        hdr[8..12].copy_from_slice(&caplen.to_le_bytes());
        hdr[12..16].copy_from_slice(&orig_len.max(caplen).to_le_bytes());
        self.out.write_all(&hdr)?;
        self.out.write_all(data)?;
        self.packets += 1;
        Ok(())
    }

    /// Packets written so far.
    #[must_use]
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Flushes buffered bytes and returns the inner writer.
    ///
    /// # Errors
    /// Any I/O error while flushing.
    pub fn finish(self) -> io::Result<W> {
        self.out.into_inner().map_err(io::IntoInnerError::into_error)
    }
}

/// Writes a pcapng file (little-endian): one section, any number of interfaces, enhanced
/// packet blocks with optional comments.
#[derive(Debug)]
pub struct PcapNgWriter<W: Write> {
    out: BufWriter<W>,
    /// Per interface: timestamp units per second.
    resolutions: Vec<u64>,
}

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const EPB: u32 = 0x0000_0006;
const OPT_COMMENT: u16 = 1;
const OPT_IF_TSRESOL: u16 = 9;

impl<W: Write> PcapNgWriter<W> {
    /// Writes the section header block.
    ///
    /// # Errors
    /// Any I/O error of the underlying writer.
    pub fn new(inner: W) -> io::Result<PcapNgWriter<W>> {
        let mut out = BufWriter::with_capacity(1 << 20, inner);
        let mut body = Vec::new();
        body.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&(-1i64).to_le_bytes()); // section length unknown
        write_block(&mut out, SHB, &body)?;
        Ok(PcapNgWriter { out, resolutions: Vec::new() })
    }

    /// Adds an interface and returns its id. `tsresol_decimal` is the power of ten of the
    /// timestamp unit (6 for microseconds, 9 for nanoseconds).
    ///
    /// # Errors
    /// Any I/O error of the underlying writer.
    pub fn add_interface(&mut self, link: LinkType, tsresol_decimal: u8) -> io::Result<u32> {
        let mut body = Vec::new();
        body.extend_from_slice(&(link.linktype() as u16).to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&SNAPLEN.to_le_bytes());
        push_option(&mut body, OPT_IF_TSRESOL, &[tsresol_decimal]);
        push_option(&mut body, 0, &[]);
        write_block(&mut self.out, IDB, &body)?;
        self.resolutions.push(10u64.pow(u32::from(tsresol_decimal.min(19))));
        Ok(u32::try_from(self.resolutions.len() - 1).unwrap_or(u32::MAX))
    }

    /// Appends an enhanced packet block on interface `iface`, with an optional comment.
    ///
    /// # Errors
    /// An I/O error, or `InvalidInput` for an unknown interface id.
    pub fn write_packet(
        &mut self,
        iface: u32,
        ts: Nanos,
        data: &[u8],
        orig_len: u32,
        comment: Option<&str>,
    ) -> io::Result<()> {
        let res = *self
            .resolutions
            .get(iface as usize)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "unknown pcapng interface"))?;
        let units = u128::from(ts.0) * u128::from(res) / 1_000_000_000;
        let units = u64::try_from(units).unwrap_or(u64::MAX);
        let caplen = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let comment = comment.map(str::as_bytes);
        let comment_len = match comment {
            Some(c) => {
                if u16::try_from(c.len()).is_err() {
                    return Err(io::Error::new(io::ErrorKind::InvalidInput, "pcapng comment too long"));
                }
                4 + c.len() + pad_len(c.len()) + 4 // option, padding, opt_endofopt
            }
            None => 0,
        };
        // Written field by field rather than through a body buffer: no allocation per packet.
        let body_len = 20 + data.len() + pad_len(data.len()) + comment_len;
        let total = u32::try_from(12 + body_len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pcapng block too large"))?;
        let mut hdr = [0u8; 28];
        hdr[0..4].copy_from_slice(&EPB.to_le_bytes());
        hdr[4..8].copy_from_slice(&total.to_le_bytes());
        hdr[8..12].copy_from_slice(&iface.to_le_bytes());
        hdr[12..16].copy_from_slice(&((units >> 32) as u32).to_le_bytes());
        hdr[16..20].copy_from_slice(&(units as u32).to_le_bytes());
        hdr[20..24].copy_from_slice(&caplen.to_le_bytes());
        hdr[24..28].copy_from_slice(&orig_len.max(caplen).to_le_bytes());
        self.out.write_all(&hdr)?;
        self.out.write_all(data)?;
        self.out.write_all(&[0; 3][..pad_len(data.len())])?;
        if let Some(c) = comment {
            self.out.write_all(&OPT_COMMENT.to_le_bytes())?;
            self.out.write_all(&(c.len() as u16).to_le_bytes())?;
            self.out.write_all(c)?;
            self.out.write_all(&[0; 3][..pad_len(c.len())])?;
            self.out.write_all(&[0; 4])?; // opt_endofopt
        }
        self.out.write_all(&total.to_le_bytes())
    }

    /// Flushes buffered bytes and returns the inner writer.
    ///
    /// # Errors
    /// Any I/O error while flushing.
    pub fn finish(self) -> io::Result<W> {
        self.out.into_inner().map_err(io::IntoInnerError::into_error)
    }
}

/// Zero bytes that pad `len` to a multiple of four.
const fn pad_len(len: usize) -> usize {
    (4 - len % 4) % 4
}

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

fn push_option(body: &mut Vec<u8>, code: u16, value: &[u8]) {
    body.extend_from_slice(&code.to_le_bytes());
    body.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_le_bytes());
    body.extend_from_slice(value);
    pad4(body);
}

fn write_block<W: Write>(out: &mut W, ty: u32, body: &[u8]) -> io::Result<()> {
    let total = u32::try_from(12 + body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pcapng block too large"))?;
    out.write_all(&ty.to_le_bytes())?;
    out.write_all(&total.to_le_bytes())?;
    out.write_all(body)?;
    out.write_all(&total.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_parser::{PcapBlockOwned, PcapError, create_reader};

    fn read_all(bytes: &[u8]) -> Vec<(u32, u32, usize)> {
        let mut r = create_reader(65536, bytes).unwrap();
        let mut v = Vec::new();
        loop {
            match r.next() {
                Ok((off, block)) => {
                    match block {
                        PcapBlockOwned::Legacy(b) => v.push((b.ts_sec, b.ts_usec, b.data.len())),
                        PcapBlockOwned::NG(pcap_parser::Block::EnhancedPacket(b)) => {
                            v.push((b.ts_high, b.ts_low, b.caplen as usize));
                        }
                        _ => {}
                    }
                    r.consume(off);
                }
                Err(PcapError::Eof) => break,
                Err(PcapError::Incomplete(_)) => r.refill().unwrap(),
                Err(e) => panic!("{e:?}"),
            }
        }
        v
    }

    #[test]
    fn pcap_writer_output_is_read_back_by_pcap_parser() {
        let mut w = PcapWriter::new(Vec::new(), LinkType::Ethernet, Precision::Nano).unwrap();
        w.write_packet(Nanos::from_parts(10, 123_456_789), &[1, 2, 3], 60).unwrap();
        w.write_packet(Nanos::from_parts(11, 5), &[4; 70], 70).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(read_all(&bytes), vec![(10, 123_456_789, 3), (11, 5, 70)]);
    }

    #[test]
    fn capture_writer_formats_carry_the_same_packets() {
        let frames: [&[u8]; 3] = [&[1; 7], &[2; 60], &[3; 1]];
        let ts = [Nanos::from_parts(5, 1_000), Nanos::from_parts(5, 2_000), Nanos::from_parts(6, 0)];
        let mut want = Vec::new();
        for format in
            [OutputFormat::Pcap { nanos: true }, OutputFormat::Pcap { nanos: false }, OutputFormat::PcapNg]
        {
            let mut w = CaptureWriter::new(Vec::new(), format, LinkType::Raw).unwrap();
            for (t, f) in ts.iter().zip(frames) {
                w.write_packet(*t, f).unwrap();
            }
            let got: Vec<(u64, usize)> = read_all(&w.finish().unwrap())
                .into_iter()
                .map(|(a, b, len)| match format {
                    OutputFormat::Pcap { nanos: true } => (u64::from(a) * 1_000_000_000 + u64::from(b), len),
                    OutputFormat::Pcap { nanos: false } => {
                        (u64::from(a) * 1_000_000_000 + u64::from(b) * 1000, len)
                    }
                    OutputFormat::PcapNg => ((u64::from(a) << 32) | u64::from(b), len),
                })
                .collect();
            if want.is_empty() {
                want = got.clone();
            }
            assert_eq!(got, want, "{format:?}");
        }
        assert_eq!(want.len(), 3);
    }

    #[test]
    fn pcapng_comment_of_odd_length_is_padded_and_read_back() {
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        let i = w.add_interface(LinkType::Ethernet, 9).unwrap();
        w.write_packet(i, Nanos(3), &[7; 3], 3, Some("abcde")).unwrap();
        w.write_packet(i, Nanos(4), &[8; 4], 4, None).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(read_all(&bytes), vec![(0, 3, 3), (0, 4, 4)]);
        assert!(bytes.windows(5).any(|x| x == b"abcde"));
    }

    #[test]
    fn pcapng_writer_output_is_read_back_by_pcap_parser() {
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        let i0 = w.add_interface(LinkType::Ethernet, 6).unwrap();
        let i1 = w.add_interface(LinkType::Raw, 9).unwrap();
        w.write_packet(i0, Nanos::from_parts(1, 2_000), &[9; 5], 5, Some("alert 42")).unwrap();
        w.write_packet(i1, Nanos::from_parts(1, 7), &[8; 6], 6, None).unwrap();
        let bytes = w.finish().unwrap();
        let got = read_all(&bytes);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (0, 1_000_002, 5));
        assert_eq!(got[1], (0, 1_000_000_007, 6));
    }
}
