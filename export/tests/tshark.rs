//! Wireshark's dissector as an independent reader: the exported IPFIX and NetFlow v9
//! messages, written into a pcap as UDP datagrams to 4739 / 2055, must decode without
//! malformed packets or expert warnings, with the templates found and every data record and
//! field value where the flow records put them.
//!
//! tshark must be installed (`apt-get install tshark`): the tests fail, not skip, without it.

mod common;

use std::net::IpAddr;
use std::path::Path;

use common::{check_records_match_truth, scenario, tshark, write_datagram_pcap};
use outpost_export::{
    BiflowMode, FlowEncoder, FlowExporter, IpfixEncoder, IpfixOptions, NetflowV9Encoder, NetflowV9Options,
    TemplateRefresh,
};
use outpost_flowmeter::FlowRecord;

/// Exports `records` into collected messages.
fn messages<E: FlowEncoder>(encoder: E, records: &[FlowRecord]) -> Vec<Vec<u8>> {
    let mut e = FlowExporter::new(encoder, Vec::<Vec<u8>>::new());
    for r in records {
        e.export(r).expect("collecting cannot fail");
    }
    e.flush().expect("collecting cannot fail");
    e.into_sink()
}

/// `tshark -V` shows no malformed packet, expert info or missing template, and the expert
/// summary has no errors or warnings.
fn check_clean(file: &Path, decode_as: &[&str]) {
    let mut args = decode_as.to_vec();
    args.push("-V");
    let verbose = tshark(file, &args);
    for bad in ["Malformed", "Expert Info", "no template", "Unknown(", "[Short"] {
        assert!(!verbose.contains(bad), "tshark reports `{bad}`:\n{verbose}");
    }
    let mut args = decode_as.to_vec();
    args.extend(["-q", "-z", "expert"]);
    let expert = tshark(file, &args);
    assert!(!expert.contains("Errors") && !expert.contains("Warns"), "tshark expert info:\n{expert}");
}

/// One row per packet, one column per field, each a list of the field's occurrences.
fn fields(file: &Path, decode_as: &[&str], names: &[&str]) -> Vec<Vec<Vec<String>>> {
    let mut args = decode_as.to_vec();
    args.extend(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"]);
    for n in names {
        args.extend(["-e", n]);
    }
    tshark(file, &args)
        .lines()
        .map(|line| {
            let mut cols: Vec<Vec<String>> = line
                .split('\t')
                .map(|c| if c.is_empty() { Vec::new() } else { c.split(',').map(str::to_string).collect() })
                .collect();
            cols.resize(names.len(), Vec::new());
            cols
        })
        .collect()
}

/// `86399.863000000` (seconds, as tshark prints times) in milliseconds.
fn secs_ms(s: &str) -> u64 {
    let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
    let frac = format!("{frac:0<3}");
    int.parse::<u64>().expect("seconds") * 1000 + frac[..3].parse::<u64>().expect("milliseconds")
}

fn column(rows: &[Vec<Vec<String>>], i: usize) -> Vec<String> {
    rows.iter().flat_map(|r| r[i].iter().cloned()).collect()
}

fn strings<T: ToString>(v: impl IntoIterator<Item = T>) -> Vec<String> {
    v.into_iter().map(|x| x.to_string()).collect()
}

#[test]
fn tshark_decodes_ipfix_biflows_with_templates_records_and_values() {
    let (truth, records) = scenario();
    check_records_match_truth(&truth, &records);
    let options = IpfixOptions {
        mtu: 700,
        template_refresh: TemplateRefresh { messages: 3, ..TemplateRefresh::default() },
        ..IpfixOptions::default()
    };
    let msgs = messages(IpfixEncoder::new(options).expect("options"), &records);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("ipfix.pcap");
    write_datagram_pcap(&file, &msgs, 4739);
    let decode_as = ["-d", "udp.port==4739,cflow"];
    check_clean(&file, &decode_as);

    let names = [
        "cflow.version",
        "cflow.sequence",
        "cflow.od_id",
        "cflow.template_id",
        "cflow.srcaddr",
        "cflow.srcaddrv6",
        "cflow.octets",
        "cflow.packets",
        "cflow.protocol",
        "cflow.flow_end_reason",
    ];
    let rows = fields(&file, &decode_as, &names);
    assert_eq!(rows.len(), msgs.len(), "one packet per message");
    let mut sequence = 0usize;
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0], ["10"]);
        assert_eq!(r[1], [sequence.to_string()], "sequence of message {i}");
        assert_eq!(r[2], ["1"]);
        let expected_templates: &[&str] = if i % 3 == 0 { &["256", "257", "258", "259"] } else { &[] };
        assert_eq!(r[3], expected_templates, "templates in message {i}");
        sequence += r[4].len() + r[5].len();
    }
    assert_eq!(sequence, records.len(), "tshark sees every data record");

    // Values in export order: addresses by family, counters forward then reverse.
    let v4: Vec<&FlowRecord> = records.iter().filter(|r| r.src.is_v4()).collect();
    let v6: Vec<&FlowRecord> = records.iter().filter(|r| !r.src.is_v4()).collect();
    assert_eq!(column(&rows, 4), strings(v4.iter().map(|r| r.src)));
    assert_eq!(column(&rows, 5), strings(v6.iter().map(|r| r.src)));
    let both = |f: fn(&outpost_flowmeter::DirectionCounters) -> u64| -> Vec<String> {
        strings(records.iter().flat_map(|r| {
            let mut v = vec![f(&r.fwd)];
            if r.rev.packets > 0 {
                v.push(f(&r.rev));
            }
            v
        }))
    };
    assert_eq!(column(&rows, 6), both(|d| d.bytes));
    assert_eq!(column(&rows, 7), both(|d| d.packets));
    assert_eq!(column(&rows, 8), strings(records.iter().map(|r| r.proto)));
    assert_eq!(column(&rows, 9), strings(records.iter().map(|r| r.end_reason.ipfix_code())));
}

#[test]
fn tshark_decodes_ipfix_uniflows() {
    let (_, records) = scenario();
    let options = IpfixOptions { mode: BiflowMode::Uniflow, ..IpfixOptions::default() };
    let msgs = messages(IpfixEncoder::new(options).expect("options"), &records);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("ipfix-uniflow.pcap");
    write_datagram_pcap(&file, &msgs, 4739);
    let decode_as = ["-d", "udp.port==4739,cflow"];
    check_clean(&file, &decode_as);
    let rows = fields(&file, &decode_as, &["cflow.template_id", "cflow.octets", "cflow.dstport"]);
    assert_eq!(rows[0][0], ["256", "257"]);
    let expected: Vec<String> = strings(records.iter().flat_map(|r| {
        let mut v = vec![r.fwd.bytes];
        if r.rev.packets > 0 {
            v.push(r.rev.bytes);
        }
        v
    }));
    assert_eq!(column(&rows, 1), expected, "forward and reverse records");
}

#[test]
fn tshark_decodes_netflow_v9_with_templates_records_and_times() {
    let (truth, records) = scenario();
    check_records_match_truth(&truth, &records);
    let options = NetflowV9Options {
        mtu: 600,
        template_refresh: TemplateRefresh { messages: 4, ..TemplateRefresh::default() },
        ..NetflowV9Options::default()
    };
    let msgs = messages(NetflowV9Encoder::new(options).expect("options"), &records);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("netflow-v9.pcap");
    write_datagram_pcap(&file, &msgs, 2055);
    let decode_as = ["-d", "udp.port==2055,cflow"];
    check_clean(&file, &decode_as);

    let names = [
        "cflow.version",
        "cflow.count",
        "cflow.sequence",
        "cflow.source_id",
        "cflow.template_id",
        "cflow.srcaddr",
        "cflow.srcaddrv6",
        "cflow.dstport",
        "cflow.octets",
        "cflow.sysuptime",
        "cflow.unix_secs",
        "cflow.timestart",
    ];
    let rows = fields(&file, &decode_as, &names);
    assert_eq!(rows.len(), msgs.len());
    let mut data = 0;
    let mut starts = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(
            (r[0].as_slice(), r[2].as_slice(), r[3].as_slice()),
            (&["9".to_string()][..], &[i.to_string()][..], &["1".to_string()][..])
        );
        let templates: &[&str] = if i % 4 == 0 { &["256", "257"] } else { &[] };
        assert_eq!(r[4], templates, "templates in packet {i}");
        let n = r[5].len() + r[6].len();
        assert_eq!(r[1], [(n + templates.len()).to_string()], "count = template + data records");
        data += n;
        // Absolute start = unix_secs - sysUptime + FIRST_SWITCHED, to the millisecond.
        let base = secs_ms(&r[10][0]) as i64 - secs_ms(&r[9][0]) as i64;
        starts
            .extend(r[11].iter().map(|t| u64::try_from(base + secs_ms(t) as i64).expect("after the epoch")));
    }
    let expected_starts: Vec<u64> = records
        .iter()
        .flat_map(|r| {
            let mut v = vec![r.fwd.first.0 / 1_000_000];
            if r.rev.packets > 0 {
                v.push(r.rev.first.0 / 1_000_000);
            }
            v
        })
        .collect();
    assert_eq!(starts, expected_starts, "absolute start times");
    let expected: usize = records.iter().map(|r| 1 + usize::from(r.rev.packets > 0)).sum();
    assert_eq!(data, expected, "forward plus reverse records");
    let v4_sources: Vec<IpAddr> = records
        .iter()
        .filter(|r| r.src.is_v4())
        .flat_map(|r| {
            let mut v = vec![r.src.to_std()];
            if r.rev.packets > 0 {
                v.push(r.dst.to_std());
            }
            v
        })
        .collect();
    assert_eq!(column(&rows, 5), strings(v4_sources));
}
