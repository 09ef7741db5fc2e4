//! Reading pcap and pcapng files: formats, timestamps, streaming, and damaged files.

use std::path::{Path, PathBuf};

use outpost_capture::{PacketSource, PcapFileSource, PcapFiles, SourceError};
use outpost_decode::{LinkType, Nanos};
use outpost_tools::pcap::{PcapNgWriter, PcapWriter, Precision};

/// A frame as read back: (link, timestamp, bytes, wire length).
type Got = (LinkType, Nanos, Vec<u8>, u32);

fn frame(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j) as u8).collect()
}

/// Reads every frame; returns them and the error that ended the file, if any.
fn read_all(src: &mut impl PacketSource) -> (Vec<Got>, Option<SourceError>) {
    let mut got = Vec::new();
    loop {
        match src.next_batch() {
            Ok(Some(b)) => got.extend(b.iter().map(|f| (f.link, f.ts, f.data.to_vec(), f.wire_len))),
            Ok(None) => return (got, None),
            Err(e) => return (got, Some(e)),
        }
    }
}

fn write_pcap(path: &Path, link: LinkType, precision: Precision, n: usize) -> Vec<Got> {
    let mut w = PcapWriter::new(std::fs::File::create(path).expect("writes the test pcap"), link, precision)
        .expect("writes the test pcap");
    let mut want = Vec::new();
    for i in 0..n {
        let data = frame(i, 60 + i % 200);
        let ts = Nanos::from_parts(1_700_000_000 + i as u64, 123_456_789);
        let wire = if i % 7 == 0 { data.len() as u32 + 100 } else { data.len() as u32 };
        w.write_packet(ts, &data, wire).expect("writes the test pcap");
        let ts = match precision {
            Precision::Nano => ts,
            Precision::Micro => Nanos::from_parts(ts.secs(), 123_456_000),
        };
        want.push((link, ts, data, wire));
    }
    w.finish().expect("writes the test pcap");
    want
}

#[test]
fn pcap_frames_come_back_with_nanosecond_and_microsecond_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    for (precision, link) in [(Precision::Nano, LinkType::Ethernet), (Precision::Micro, LinkType::LinuxSll)] {
        let p = dir.path().join("f.pcap");
        let want = write_pcap(&p, link, precision, 500);
        let (got, err) = read_all(&mut PcapFileSource::open(&p).unwrap());
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got, want, "{precision:?}");
    }
}

/// Rewrites a little-endian pcap as big-endian (header and record headers byte-swapped).
fn to_big_endian(le: &[u8]) -> Vec<u8> {
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let mut out = Vec::with_capacity(le.len());
    out.extend_from_slice(&u32_at(le, 0).to_be_bytes());
    out.extend_from_slice(&u16::from_le_bytes([le[4], le[5]]).to_be_bytes());
    out.extend_from_slice(&u16::from_le_bytes([le[6], le[7]]).to_be_bytes());
    for o in [8, 12, 16, 20] {
        out.extend_from_slice(&u32_at(le, o).to_be_bytes());
    }
    let mut at = 24;
    while at < le.len() {
        let caplen = u32_at(le, at + 8) as usize;
        for o in 0..4 {
            out.extend_from_slice(&u32_at(le, at + o * 4).to_be_bytes());
        }
        out.extend_from_slice(&le[at + 16..at + 16 + caplen]);
        at += 16 + caplen;
    }
    out
}

#[test]
fn big_endian_pcap_reads_like_little_endian() {
    let dir = tempfile::tempdir().unwrap();
    let le = dir.path().join("le.pcap");
    let want = write_pcap(&le, LinkType::Ethernet, Precision::Micro, 100);
    let be = dir.path().join("be.pcap");
    std::fs::write(&be, to_big_endian(&std::fs::read(&le).unwrap())).unwrap();
    let (got, err) = read_all(&mut PcapFileSource::open(&be).unwrap());
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, want);
}

#[test]
fn pcapng_with_several_interfaces_keeps_each_link_type_and_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("multi.pcapng");
    let mut w = PcapNgWriter::new(std::fs::File::create(&p).unwrap()).unwrap();
    let eth = w.add_interface(LinkType::Ethernet, 9).unwrap();
    let raw = w.add_interface(LinkType::Raw, 6).unwrap();
    let sll2 = w.add_interface(LinkType::LinuxSll2, 3).unwrap();
    let mut want = Vec::new();
    for i in 0..300 {
        let (iface, link, keep_nanos) = match i % 3 {
            0 => (eth, LinkType::Ethernet, 1),
            1 => (raw, LinkType::Raw, 1_000),
            _ => (sll2, LinkType::LinuxSll2, 1_000_000),
        };
        let data = frame(i, 40 + i);
        let ts = Nanos(1_700_000_000_123_456_789 + i as u64 * 1_000_000_007);
        w.write_packet(iface, ts, &data, data.len() as u32, (i == 5).then_some("a comment")).unwrap();
        want.push((link, Nanos(ts.0 / keep_nanos * keep_nanos), data.clone(), data.len() as u32));
    }
    w.finish().unwrap();
    let (got, err) = read_all(&mut PcapFileSource::open(&p).unwrap());
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, want);
}

#[test]
fn a_large_file_streams_through_a_small_buffer_in_bounded_batches() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.pcap");
    let mut want = write_pcap(&p, LinkType::Ethernet, Precision::Nano, 20_000);
    // One jumbo frame larger than the whole buffer: the buffer grows for it.
    {
        let mut bytes = std::fs::read(&p).unwrap();
        let jumbo = frame(7, 100_000);
        let ts = Nanos::from_secs(1_800_000_000);
        bytes.extend_from_slice(&(ts.secs() as u32).to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&(jumbo.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(jumbo.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&jumbo);
        std::fs::write(&p, bytes).unwrap();
        want.push((LinkType::Ethernet, ts, jumbo, 100_000));
    }
    let mut src = PcapFileSource::with_sizes(&p, 64 << 10, 100).unwrap();
    let mut got = Vec::new();
    let mut batches = 0;
    while let Some(b) = src.next_batch().unwrap() {
        assert!(b.len() <= 100);
        batches += 1;
        got.extend(b.iter().map(|f| (f.link, f.ts, f.data.to_vec(), f.wire_len)));
    }
    assert!(batches >= 200);
    assert_eq!(got.len(), want.len());
    assert!(got == want);
    assert_eq!(src.stats().frames, 20_001);
}

#[test]
fn a_truncated_record_is_reported_with_its_offset_after_every_frame_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.pcap");
    let want = write_pcap(&p, LinkType::Ethernet, Precision::Nano, 1_000);
    let bytes = std::fs::read(&p).unwrap();
    let last_len = want.last().unwrap().2.len();
    let last_record = bytes.len() - 16 - last_len;
    std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
    let mut src = PcapFileSource::with_sizes(&p, 64 << 10, 64).unwrap();
    let (got, err) = read_all(&mut src);
    assert_eq!(got[..], want[..999]);
    match err {
        Some(SourceError::Truncated { path, offset, needed }) => {
            assert_eq!(path, p);
            assert_eq!(offset, last_record as u64);
            assert!(needed >= 5, "needed {needed}");
        }
        other => panic!("expected a truncation error, got {other:?}"),
    }
    let msg = SourceError::Truncated { path: p.clone(), offset: 7, needed: 3 }.to_string();
    assert!(msg.contains("t.pcap: truncated at byte offset 7"), "{msg}");
    assert!(src.next_batch().unwrap().is_none(), "the source ends after its error");
}

#[test]
fn a_file_cut_inside_its_header_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("h.pcap");
    write_pcap(&p, LinkType::Ethernet, Precision::Nano, 3);
    let bytes = std::fs::read(&p).unwrap();
    for cut in [0, 2, 4, 10, 23] {
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let (got, err) = read_all(&mut PcapFileSource::open(&p).unwrap());
        assert!(got.is_empty());
        assert!(err.is_some(), "cut at {cut}: no error");
    }
}

#[test]
fn a_corrupt_pcapng_block_names_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.pcapng");
    let mut w = PcapNgWriter::new(std::fs::File::create(&p).unwrap()).unwrap();
    let i = w.add_interface(LinkType::Ethernet, 9).unwrap();
    for n in 0..10 {
        w.write_packet(i, Nanos::from_secs(n), &frame(n as usize, 64), 64, None).unwrap();
    }
    w.finish().unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    // Blocks: SHB (28 bytes), IDB (32), then EPBs of 96 bytes. Corrupt the 6th EPB's length.
    let sixth = 28 + 32 + 5 * 96;
    bytes[sixth + 4..sixth + 8].copy_from_slice(&7u32.to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    let (got, err) = read_all(&mut PcapFileSource::open(&p).unwrap());
    assert_eq!(got.len(), 5);
    match err {
        Some(SourceError::Corrupt { offset, .. }) => assert_eq!(offset, sixth as u64),
        other => panic!("expected a corrupt-block error, got {other:?}"),
    }
}

#[test]
fn frames_of_unsupported_link_types_are_counted_not_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("u.pcapng");
    let mut w = PcapNgWriter::new(std::fs::File::create(&p).unwrap()).unwrap();
    let eth = w.add_interface(LinkType::Ethernet, 9).unwrap();
    w.finish().unwrap();
    // Append an interface with LINKTYPE_IEEE802_11 (105) by hand, and packets on both.
    let mut bytes = std::fs::read(&p).unwrap();
    let idb: [u8; 20] = {
        let mut b = [0u8; 20];
        b[0..4].copy_from_slice(&1u32.to_le_bytes());
        b[4..8].copy_from_slice(&20u32.to_le_bytes());
        b[8..10].copy_from_slice(&105u16.to_le_bytes());
        b[12..16].copy_from_slice(&65535u32.to_le_bytes());
        b[16..20].copy_from_slice(&20u32.to_le_bytes());
        b
    };
    bytes.extend_from_slice(&idb);
    std::fs::write(&p, &bytes).unwrap();
    let mut w2 = Vec::new();
    {
        let mut ng = PcapNgWriter::new(&mut w2).unwrap();
        ng.add_interface(LinkType::Ethernet, 6).unwrap();
        ng.add_interface(LinkType::Ethernet, 6).unwrap();
        ng.write_packet(eth, Nanos::from_secs(1), &frame(1, 60), 60, None).unwrap();
        ng.write_packet(1, Nanos::from_secs(2), &frame(2, 60), 60, None).unwrap();
        ng.finish().unwrap();
    }
    // Keep only the two EPBs of the second writer (skip its SHB and two IDBs).
    bytes.extend_from_slice(&w2[28 + 32 + 32..]);
    std::fs::write(&p, &bytes).unwrap();
    let mut src = PcapFileSource::open(&p).unwrap();
    let (got, err) = read_all(&mut src);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got.len(), 1);
    assert_eq!(src.stats().unsupported_link, 1);
}

#[test]
fn several_files_read_as_one_input_and_a_bad_one_does_not_stop_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let a: PathBuf = dir.path().join("a.pcap");
    let b: PathBuf = dir.path().join("b.pcap");
    let c: PathBuf = dir.path().join("c.pcap");
    let wa = write_pcap(&a, LinkType::Ethernet, Precision::Nano, 50);
    std::fs::write(&b, b"garbage, not a capture").unwrap();
    let wc = write_pcap(&c, LinkType::Raw, Precision::Micro, 30);
    let mut src = PcapFiles::new(vec![a, b.clone(), c]);
    let mut got = Vec::new();
    let mut errors = Vec::new();
    loop {
        match src.next_batch() {
            Ok(Some(batch)) => got.extend(batch.iter().map(|f| (f.link, f.ts, f.data.to_vec(), f.wire_len))),
            Ok(None) => break,
            Err(e) => errors.push(e),
        }
    }
    assert_eq!(got.len(), 80);
    assert_eq!(got[..50], wa[..]);
    assert_eq!(got[50..], wc[..]);
    assert_eq!(errors.len(), 1);
    assert!(matches!(&errors[0], SourceError::NotACapture { path, .. } if *path == b));
    assert_eq!(src.stats().frames, 80);
}

#[test]
fn a_block_claiming_more_than_the_largest_block_ends_the_file_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.pcap");
    let want = write_pcap(&p, LinkType::Ethernet, Precision::Nano, 10);
    let mut bytes = std::fs::read(&p).unwrap();
    // A record header claiming 100 MiB, followed by more than the 64 MiB block limit.
    bytes.extend_from_slice(&1_700_000_100u32.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&(100u32 << 20).to_le_bytes());
    bytes.extend_from_slice(&(100u32 << 20).to_le_bytes());
    bytes.resize(bytes.len() + (65 << 20), 0);
    std::fs::write(&p, &bytes).unwrap();
    let mut src = PacketSourceLoop::new(PcapFiles::new(vec![p.clone()]));
    let (got, errors) = src.run(10);
    assert_eq!(got, want);
    assert_eq!(errors, 1, "one error, then the input ends (no endless retry)");
}

#[test]
fn thousands_of_section_headers_in_a_row_do_not_overflow_the_stack() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("shb.pcapng");
    let mut w = PcapNgWriter::new(Vec::new()).unwrap();
    w.add_interface(LinkType::Ethernet, 9).unwrap();
    let one = w.finish().unwrap();
    // The first 28 bytes are a section header block: repeat it 200,000 times (5.6 MB).
    let shb = &one[..28];
    let mut bytes = Vec::with_capacity(shb.len() * 200_000 + one.len());
    for _ in 0..200_000 {
        bytes.extend_from_slice(shb);
    }
    bytes.extend_from_slice(&one);
    std::fs::write(&p, &bytes).unwrap();
    let (got, err) = read_all(&mut PcapFileSource::open(&p).unwrap());
    assert!(got.is_empty());
    assert!(err.is_none(), "{err:?}");
}

/// Reads a source to its end, counting errors, with a bound on how many errors it may give.
struct PacketSourceLoop<S> {
    src: S,
}

impl<S: PacketSource> PacketSourceLoop<S> {
    fn new(src: S) -> Self {
        PacketSourceLoop { src }
    }

    fn run(&mut self, max_errors: usize) -> (Vec<Got>, usize) {
        let mut got = Vec::new();
        let mut errors = 0;
        loop {
            match self.src.next_batch() {
                Ok(Some(b)) => got.extend(b.iter().map(|f| (f.link, f.ts, f.data.to_vec(), f.wire_len))),
                Ok(None) => return (got, errors),
                Err(_) => {
                    errors += 1;
                    assert!(errors <= max_errors, "the source keeps failing: it must end after an error");
                }
            }
        }
    }
}
