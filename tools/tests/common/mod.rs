//! Reading the generators' captures back, shared by the scenario tests (`mod common;`).

use outpost_decode::{LinkType, Nanos};
use pcap_parser::{Block, PcapBlockOwned, PcapError, create_reader};

/// One packet read back from a capture.
pub struct Packet {
    pub ts: Nanos,
    pub frame: Vec<u8>,
}

/// Reads every packet of a pcap or pcapng file, with its link type.
pub fn read_capture(bytes: &[u8]) -> (LinkType, Vec<Packet>) {
    let mut reader = create_reader(1 << 16, bytes).expect("a pcap or pcapng header");
    let mut link = None;
    let mut nanos = true;
    let mut resolution = 1_000_000_000u64;
    let mut packets = Vec::new();
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        link = LinkType::from_linktype(h.network.0 as u32);
                        nanos = h.is_nanosecond_precision();
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let frac = u64::from(b.ts_usec) * if nanos { 1 } else { 1000 };
                        let ts = Nanos(u64::from(b.ts_sec) * 1_000_000_000 + frac);
                        assert_eq!(b.caplen, b.origlen);
                        packets.push(Packet { ts, frame: b.data.to_vec() });
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        link = LinkType::from_linktype(idb.linktype.0 as u32);
                        resolution = idb.ts_resolution().expect("a valid if_tsresol");
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                        let ts = Nanos(units * (1_000_000_000 / resolution));
                        packets.push(Packet { ts, frame: epb.data[..epb.caplen as usize].to_vec() });
                    }
                    PcapBlockOwned::NG(_) => {}
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => reader.refill().expect("refill"),
            Err(e) => panic!("unreadable capture: {e:?}"),
        }
    }
    (link.expect("capture declares a link type"), packets)
}
