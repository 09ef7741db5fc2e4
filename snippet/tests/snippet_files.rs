//! Snippet files as tcpdump and tshark read them: exactly the offending key's packets in the
//! alert's window, named and dated as the alert record says, never written twice.

#![expect(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

mod common;

use common::*;
use outpost_decode::{IpAddress, Nanos};
use outpost_snippet::{PacketHistory, PcapSnippetWriter, SnippetConfig, snippet_queue};

const ATTACKER4: &str = "198.51.100.7";
const ATTACKER6: &str = "2001:db8::66";

/// 20 s of traffic: an IPv4 source every 250 ms (654-byte frames), an IPv6 source every
/// 500 ms, five noise sources every 100 ms, and one more noise packet at exactly the first
/// alert's time.
fn traffic() -> Vec<Captured> {
    let mut v = Vec::new();
    for ms in (0..=20_000).step_by(50) {
        if ms % 250 == 0 {
            v.push(Captured {
                ts: at_ms(ms),
                data: syn(ATTACKER4, "203.0.113.9", 1000 + (ms / 250) as u16, 600),
            });
        }
        if ms % 500 == 100 {
            v.push(Captured { ts: at_ms(ms), data: syn(ATTACKER6, "2001:db8::1", 22, 10) });
        }
        if ms % 100 == 50 {
            for n in 1..=5 {
                v.push(Captured { ts: at_ms(ms), data: syn(&format!("192.0.2.{n}"), "203.0.113.9", 80, 20) });
            }
        }
        if ms == 10_000 {
            v.push(Captured { ts: at_ms(ms), data: syn("192.0.2.99", "203.0.113.9", 443, 0) });
        }
    }
    v
}

fn addr(s: &str) -> IpAddress {
    IpAddress::from(s.parse::<std::net::IpAddr>().unwrap())
}

const ID4: u128 = 0x1111_2222_3333_4444_5555_6666_7777_8888;
const ID6: u128 = 0x9999_aaaa_bbbb_cccc_dddd_eeee_ffff_0001;

fn alerts() -> [TestAlert; 2] {
    [
        TestAlert { id: ID4, key: addr(ATTACKER4), ts: at_ms(10_000) },
        TestAlert { id: ID6, key: addr(ATTACKER6), ts: at_ms(12_100) },
    ]
}

#[test]
fn snippet_holds_exactly_the_offending_keys_packets_in_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let config = SnippetConfig { dir: dir.path().to_path_buf(), ..SnippetConfig::default() };
    config.validate().unwrap();
    let (tx, rx) = snippet_queue(config.queue as usize);
    let writer = PcapSnippetWriter::spawn(&config, rx).unwrap();
    let mut history = PacketHistory::new(&config);
    run_worker(&mut history, &tx, &traffic(), &alerts());
    let stats = writer.finish();
    assert_eq!((stats.written, stats.write_failed, stats.dropped_queue_full), (2, 0, 0), "{stats:?}");

    // The paths the alert records carry, known before the files existed.
    let p4 = config.path_for(ID4, at_ms(10_000));
    let p6 = config.path_for(ID6, at_ms(12_100));
    assert_eq!(p4, dir.path().join("2026-03-14/11112222333344445555666677778888.pcapng"));
    assert_eq!(snippet_files(dir.path()), {
        let mut v = vec![p4.clone(), p6.clone()];
        v.sort();
        v
    });
    for p in [&p4, &p6] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(p).unwrap().permissions().mode();
        assert_eq!(mode & 0o007, 0, "{p:?} is world-accessible: {mode:o}");
    }
    let on_disk: u64 = [&p4, &p6].iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert_eq!((stats.files_on_disk, stats.bytes_on_disk), (2, on_disk));

    // IPv4 alert at 10 s: the attacker's packets of 5 s ..= 15 s, every 250 ms.
    let want4: Vec<Nanos> = (5_000..=15_000).step_by(250).map(at_ms).collect();
    assert_eq!(want4.len(), 41);
    let lines = tcpdump(&p4);
    assert_eq!(lines.len(), want4.len(), "{lines:#?}");
    for (line, ts) in lines.iter().zip(&want4) {
        let want =
            format!("{}.{:06} IP {ATTACKER4}.40000 > 203.0.113.9.", ts.secs(), ts.subsec_nanos() / 1000);
        assert!(line.starts_with(&want), "{line} !~ {want}");
    }
    let rows = tshark(&p4, &["frame.time_epoch", "ip.src", "frame.len", "frame.cap_len", "frame.comment"]);
    assert_eq!(rows.len(), want4.len());
    for (row, ts) in rows.iter().zip(&want4) {
        let comment = if *ts == at_ms(10_000) { format!("outpost alert {ID4:032x}") } else { String::new() };
        assert_eq!(row, &[epoch(*ts), ATTACKER4.to_owned(), "654".into(), "256".into(), comment]);
    }
    let shb = capinfos_comment(&p4);
    for part in [&format!("outpost alert {ID4:032x}"), "key 198.51.100.7", "packets 41", "note test-rule"] {
        assert!(shb.contains(part), "{part} not in {shb}");
    }

    // IPv6 alert at 12.1 s: 7.1 s ..= 17.1 s, every 500 ms.
    let want6: Vec<Nanos> = (7_100..=17_100).step_by(500).map(at_ms).collect();
    let lines = tcpdump(&p6);
    assert_eq!(lines.len(), want6.len(), "{lines:#?}");
    assert!(
        lines.iter().all(|l| l.contains(&format!(" IP6 {ATTACKER6}.40000 > 2001:db8::1.22:"))),
        "{lines:#?}"
    );
    let rows = tshark(&p6, &["frame.time_epoch", "ipv6.src", "ip.src"]);
    let got: Vec<_> = rows.iter().map(|r| (r[0].clone(), r[1].clone(), r[2].clone())).collect();
    let want: Vec<_> = want6.iter().map(|t| (epoch(*t), ATTACKER6.to_owned(), String::new())).collect();
    assert_eq!(got, want);
}

#[test]
fn snippet_already_on_disk_is_not_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = SnippetConfig { dir: dir.path().to_path_buf(), ..SnippetConfig::default() };
    let input = traffic();
    let run = || {
        let (tx, rx) = snippet_queue(16);
        let writer = PcapSnippetWriter::spawn(&config, rx).unwrap();
        let mut history = PacketHistory::new(&config);
        run_worker(&mut history, &tx, &input, &alerts());
        writer.finish()
    };
    let first = run();
    assert_eq!(first.written, 2);
    let p4 = config.path_for(ID4, at_ms(10_000));
    let mtime = std::fs::metadata(&p4).unwrap().modified().unwrap();
    // A replay of the same input by a restarted sensor raises the same alert ids.
    let second = run();
    assert_eq!((second.written, second.already_written, second.files_on_disk), (0, 2, 2));
    assert_eq!(std::fs::metadata(&p4).unwrap().modified().unwrap(), mtime);
}

#[test]
fn alert_without_packets_still_gets_a_readable_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = SnippetConfig { dir: dir.path().to_path_buf(), ..SnippetConfig::default() };
    let (tx, rx) = snippet_queue(4);
    let writer = PcapSnippetWriter::spawn(&config, rx).unwrap();
    let mut history = PacketHistory::new(&config);
    history.on_alert(5, addr("192.0.2.200"), at_ms(0), "", &mut |s| assert!(tx.send(s)));
    history.finish(&mut |s| assert!(tx.send(s)));
    assert_eq!(writer.finish().written, 1);
    let p = config.path_for(5, at_ms(0));
    assert!(tcpdump(&p).is_empty());
    assert!(tshark(&p, &["frame.number"]).is_empty());
    assert!(capinfos_comment(&p).contains("key 192.0.2.200"));
}

#[test]
fn full_queue_drops_snippets_without_waiting_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = SnippetConfig { dir: dir.path().to_path_buf(), ..SnippetConfig::default() };
    let (tx, rx) = snippet_queue(2);
    let mut sent = Vec::new();
    // The writer is not running yet: nothing drains the queue.
    for s in make_snippets(&[(1, 1000), (2, 2000), (3, 3000)], 3) {
        sent.push(tx.send(s));
    }
    assert_eq!(sent, [true, true, false]);
    let writer = PcapSnippetWriter::spawn(&config, rx).unwrap();
    let stats = writer.finish();
    assert_eq!((stats.queued, stats.dropped_queue_full, stats.written), (2, 1, 2));
    // After finish the writer is gone: sending drops and counts, never blocks.
    assert!(!tx.send(make_snippets(&[(4, 4000)], 1).remove(0)));
}
