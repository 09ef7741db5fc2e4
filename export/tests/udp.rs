//! The UDP path: exporters send exactly the encoder's messages as datagrams, a replay sends
//! the same bytes again, and send failures are counted. Only 127.0.0.1 and ports the test
//! picked are used.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{free_udp_port, record, scenario};
use outpost_export::{
    BiflowMode, FlowEncoder, FlowExporter, IpfixEncoder, IpfixExporter, IpfixOptions, NetflowV9Encoder,
    NetflowV9Exporter, NetflowV9Options,
};
use outpost_flowmeter::FlowRecord;

fn receiver() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let addr = s.local_addr().expect("address");
    (s, addr)
}

fn receive(s: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; 65_536];
    (0..n)
        .map(|_| {
            let len = s.recv(&mut buf).expect("datagram");
            buf[..len].to_vec()
        })
        .collect()
}

fn encoded<E: FlowEncoder>(encoder: E, records: &[FlowRecord]) -> Vec<Vec<u8>> {
    let mut e = FlowExporter::new(encoder, Vec::<Vec<u8>>::new());
    for r in records {
        e.export(r).expect("collect");
    }
    e.flush().expect("collect");
    e.into_sink()
}

fn send_all<E: FlowEncoder>(
    mut e: FlowExporter<E, outpost_export::UdpSink>,
    records: &[FlowRecord],
) -> outpost_export::ExportStats {
    for r in records {
        e.export(r).expect("export");
    }
    e.flush().expect("flush");
    e.stats()
}

#[test]
fn ipfix_datagrams_are_the_encoder_messages_and_identical_across_runs() {
    let (_, records) = scenario();
    let options = IpfixOptions { mtu: 600, ..IpfixOptions::default() };
    let want = encoded(IpfixEncoder::new(options).expect("options"), &records);
    let (rx, addr) = receiver();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let stats = send_all(IpfixExporter::connect(addr, options).expect("exporter"), &records);
        assert_eq!(stats.messages, want.len() as u64);
        assert_eq!(stats.bytes, want.iter().map(|m| m.len() as u64).sum::<u64>());
        assert_eq!(
            (stats.flows, stats.records, stats.send_errors),
            (records.len() as u64, records.len() as u64, 0)
        );
        runs.push(receive(&rx, want.len()));
    }
    assert_eq!(runs[0], want, "datagrams are the encoded messages");
    assert_eq!(runs[1], runs[0], "a replay sends the same bytes");
}

#[test]
fn netflow_v9_datagrams_are_identical_across_runs() {
    let (_, records) = scenario();
    let options = NetflowV9Options::default();
    let want = encoded(NetflowV9Encoder::new(options).expect("options"), &records);
    let (rx, addr) = receiver();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let stats = send_all(NetflowV9Exporter::connect(addr, options).expect("exporter"), &records);
        assert_eq!(stats.messages, want.len() as u64);
        runs.push(receive(&rx, want.len()));
    }
    assert_eq!(runs[0], want);
    assert_eq!(runs[1], runs[0]);
}

#[test]
fn refused_datagrams_are_counted_as_send_errors() {
    // Nothing listens on the port: the kernel answers with ICMP port unreachable, and the
    // connected socket reports ECONNREFUSED on a following send.
    let port = free_udp_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let options = IpfixOptions { mtu: IpfixEncoder::min_mtu(BiflowMode::Biflow), ..IpfixOptions::default() };
    let records: Vec<FlowRecord> = (0..400).map(|i| record(i, false, 6, 1)).collect();
    let total = encoded(IpfixEncoder::new(options).expect("options"), &records).len() as u64;
    let mut e = IpfixExporter::connect(addr, options).expect("exporter");
    let mut errors = 0;
    for r in &records {
        if e.export(r).is_err() {
            errors += 1;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    if e.flush().is_err() {
        errors += 1;
    }
    let s = e.stats();
    assert!(s.send_errors > 0, "{s:?}");
    assert_eq!(s.send_errors, errors, "every failure is returned and counted");
    assert_eq!(s.messages + s.send_errors, total, "every message is sent or counted as lost");
    assert_eq!(s.records + s.records_lost, records.len() as u64);
}

#[test]
fn invalid_options_are_refused_before_any_socket() {
    let (_, addr) = receiver();
    let e = IpfixExporter::connect(addr, IpfixOptions { mtu: 100, ..IpfixOptions::default() })
        .expect_err("MTU too small");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let e = NetflowV9Exporter::connect(addr, NetflowV9Options { mtu: 70_000, ..NetflowV9Options::default() })
        .expect_err("MTU too large");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}
