//! Live capture through `AF_PACKET` against the real kernel: each test builds a throwaway
//! network namespace with a veth pair (`a` ⇄ `b`), opens the source on `a` inside it, sends
//! crafted frames into `b` with a raw packet socket and checks what arrives.
//!
//! Needs root (or CAP_NET_ADMIN + CAP_NET_RAW + CAP_SYS_ADMIN), `ip` and `ethtool`.

use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use outpost_capture::PacketSource;
use outpost_capture::SourceError;
use outpost_capture::af_packet::{AfPacketOptions, AfPacketSource, FanoutMode};
use outpost_decode::{LinkType, Nanos};
use outpost_tools::frame::{FrameBuilder, udp};
use outpost_tools::netns::Netns;

/// Source MAC of every frame the tests send (`FrameBuilder`'s default); anything else that
/// shows up is the kernel's own traffic.
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

fn new_netns() -> Netns {
    Netns::with_veth("outpost-afp", "a", "b")
}

/// An AF_PACKET source opened inside `ns`.
fn open(ns: &Netns, interface: &str, options: &AfPacketOptions) -> AfPacketSource {
    ns.run_in(|| AfPacketSource::open(interface, options)).unwrap_or_else(|e| panic!("open {interface}: {e}"))
}

/// A raw sender opened inside `ns`.
fn sender(ns: &Netns, interface: &str) -> RawSender {
    ns.run_in(|| RawSender::open(interface))
}

/// A raw packet socket that transmits whole Ethernet frames on one interface.
struct RawSender {
    fd: OwnedFd,
    ifindex: i32,
}

impl RawSender {
    fn open(interface: &str) -> RawSender {
        let name = CString::new(interface).expect("interface name");
        // SAFETY: `name` is NUL-terminated and outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(ifindex, 0, "{interface}: {}", std::io::Error::last_os_error());
        // SAFETY: plain system call; protocol 0 so the socket receives nothing.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: `raw` is a fresh descriptor owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        RawSender { fd, ifindex: ifindex as i32 }
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: all-zero bytes are a valid `sockaddr_ll`.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: `frame` and `addr` are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::from_ref(&addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert_eq!(n, frame.len() as isize, "sendto: {}", std::io::Error::last_os_error());
    }
}

/// A frame as delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Got {
    data: Vec<u8>,
    ts: Nanos,
    wire_len: u32,
    link: LinkType,
    record: u64,
}

impl Got {
    fn ours(&self) -> bool {
        self.data.get(6..12) == Some(&OUR_MAC[..])
    }
}

/// Takes one batch; returns false when it was empty.
fn pull(src: &mut AfPacketSource, into: &mut Vec<Got>) -> bool {
    let batch = src.next_batch().expect("next_batch").expect("a live source never ends");
    into.extend(batch.iter().map(|f| Got {
        data: f.data.to_vec(),
        ts: f.ts,
        wire_len: f.wire_len,
        link: f.link,
        record: f.record,
    }));
    !batch.is_empty()
}

/// Pulls from `sources` in turn until they delivered `want` of our frames in all, or 10 s.
fn collect(sources: &mut [&mut AfPacketSource], got: &mut [Vec<Got>], want: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.iter().flatten().filter(|g| g.ours()).count() < want {
        assert!(Instant::now() < deadline, "timed out: {} of {want} frames", got.iter().flatten().count());
        for (src, into) in sources.iter_mut().zip(got.iter_mut()) {
            pull(src, into);
        }
    }
}

/// Pulls for `period`, whatever comes.
fn drain_for(src: &mut AfPacketSource, got: &mut Vec<Got>, period: Duration) {
    let end = Instant::now() + period;
    while Instant::now() < end {
        pull(src, got);
    }
}

fn wall_clock() -> Nanos {
    Nanos(SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_nanos() as u64)
}

fn small_ring() -> AfPacketOptions {
    AfPacketOptions {
        block_size: 64 << 10,
        block_count: 8,
        poll_timeout_ms: 20,
        ..AfPacketOptions::default()
    }
}

/// Frame `i` of a test stream: UDP with a payload that starts with `i` and has a length that
/// varies with `i`; some carry one 802.1Q tag, a few are 802.1ad QinQ.
fn test_frame(i: u32) -> (Vec<u8>, bool) {
    let mut payload = i.to_be_bytes().to_vec();
    payload.extend((0..(i * 37) % 1200).map(|j| (i.wrapping_mul(13) + j) as u8));
    let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let dst = IpAddr::V4(Ipv4Addr::new(10, 0, 1, (i % 200) as u8));
    let mut b = FrameBuilder::new(src, dst, udp(1000 + (i % 50) as u16, 53)).payload(&payload);
    let tagged = i % 50 == 7 || i % 250 == 3;
    if i % 250 == 3 {
        b = b.vlans(&[10, 20]);
    } else if i % 50 == 7 {
        b = b.vlans(&[100 + (i % 7) as u16]);
    }
    (b.build(), tagged)
}

#[test]
fn frames_arrive_once_with_identical_bytes_in_order() {
    let ns = new_netns();
    let mut src = open(&ns, "a", &small_ring());
    let tx = sender(&ns, "b");
    let start = wall_clock();

    // 1,000 frames of about 700 bytes on average: several times the 512 KiB ring, so the walk
    // wraps around it. Sent in chunks the ring can hold, each collected before the next.
    let mut sent = Vec::new();
    let mut tagged = 0u64;
    let mut got = vec![Vec::new()];
    for chunk in (0..1000u32).collect::<Vec<_>>().chunks(50) {
        for &i in chunk {
            let (frame, is_tagged) = test_frame(i);
            tx.send(&frame);
            sent.push(frame);
            tagged += u64::from(is_tagged);
        }
        collect(&mut [&mut src], &mut got, sent.len());
    }
    let end = wall_clock();
    let got = got.remove(0);

    let ours: Vec<&Got> = got.iter().filter(|g| g.ours()).collect();
    assert_eq!(ours.len(), sent.len(), "every frame exactly once");
    for (i, (g, want)) in ours.iter().zip(&sent).enumerate() {
        assert_eq!(&g.data, want, "frame {i}: bytes (VLAN tags restored) and order");
        assert_eq!(g.wire_len as usize, want.len(), "frame {i}: wire length");
        assert_eq!(g.link, LinkType::Ethernet);
    }
    for (n, g) in got.iter().enumerate() {
        assert_eq!(g.record, n as u64, "record numbers count delivered frames");
        assert!(g.ts >= Nanos(start.0 - 1_000_000_000) && g.ts <= Nanos(end.0 + 1_000_000_000), "{:?}", g.ts);
    }
    assert!(got.windows(2).all(|w| w[0].ts <= w[1].ts), "timestamps never go backwards");
    assert_eq!(src.vlan_tags_reinserted(), tagged);
    assert_eq!(src.vlan_tags_not_reinserted(), 0);

    let stats = src.stats();
    let kernel = src.kernel_stats();
    assert_eq!(stats.frames, got.len() as u64);
    assert_eq!(stats.records, got.len() as u64);
    assert_eq!(stats.bytes, got.iter().map(|g| g.data.len() as u64).sum::<u64>());
    assert_eq!(stats.unsupported_link, 0);
    assert_eq!((kernel.drops, kernel.packets), (0, got.len() as u64), "{kernel:?}");
    assert_eq!(src.stats().dropped, 0);
}

#[test]
fn an_idle_interface_gives_empty_batches_and_a_moving_idle_clock() {
    let ns = new_netns();
    let mut src = open(&ns, "a", &AfPacketOptions { poll_timeout_ms: 30, ..small_ring() });
    let mut clocks = Vec::new();
    for _ in 0..4 {
        let before = Instant::now();
        let batch = src.next_batch().expect("next_batch").expect("a live source never ends");
        assert!(batch.is_empty(), "nothing was sent");
        let waited = before.elapsed();
        assert!(waited >= Duration::from_millis(25) && waited < Duration::from_secs(2), "{waited:?}");
        let t = src.idle_time().expect("a live source has an idle clock");
        let now = wall_clock();
        // The idle clock trails the wall clock by twice the block timeout plus 20 ms.
        assert!(t <= now && t.0 + 1_000_000_000 > now.0, "idle {t:?} vs now {now:?}");
        clocks.push(t);
    }
    assert!(clocks.windows(2).all(|w| w[0] < w[1]), "the idle clock advances: {clocks:?}");
    assert_eq!(src.stats().frames, 0);
}

#[test]
fn a_missing_interface_is_named_in_the_error() {
    let err =
        AfPacketSource::open("outpost-nope0", &AfPacketOptions::default()).expect_err("no such interface");
    let text = err.to_string();
    assert!(text.contains("outpost-nope0") && text.contains("no such network interface"), "{text}");
    assert!(
        matches!(err, SourceError::Live { ref interface, .. } if interface == "outpost-nope0"),
        "{err:?}"
    );

    let err =
        AfPacketSource::open("a-name-that-is-too-long", &AfPacketOptions::default()).expect_err("too long");
    assert!(err.to_string().contains("a-name-that-is-too-long"), "{err}");
}

#[test]
fn non_ethernet_interfaces_are_refused_naming_their_link_type() {
    let ns = new_netns();
    ns.ip(&["tuntap", "add", "mode", "tun", "name", "t0"]);
    let err =
        ns.run_in(|| AfPacketSource::open("t0", &small_ring())).expect_err("a tun device is not Ethernet");
    let text = err.to_string();
    assert!(text.contains("t0") && text.contains("ARPHRD 65534") && text.contains("ARPHRD_NONE"), "{text}");
}

#[test]
fn invalid_options_are_refused_before_touching_the_interface() {
    let err = AfPacketSource::open("lo", &AfPacketOptions { frame_size: 100, ..AfPacketOptions::default() })
        .expect_err("frame size not a multiple of 16");
    assert!(err.to_string().contains("frame_size 100"), "{err}");
}

#[test]
fn fanout_members_share_the_frames_and_keep_each_flow_together() {
    let ns = new_netns();
    let options = AfPacketOptions { fanout: Some((0x4f50, FanoutMode::Hash)), ..small_ring() };
    let mut one = open(&ns, "a", &options);
    let mut two = open(&ns, "a", &options);
    let tx = sender(&ns, "b");

    // 100 flows, 4 frames each, interleaved.
    let mut sent = Vec::new();
    for round in 0..4u16 {
        for flow in 0..100u16 {
            let src = IpAddr::V4(Ipv4Addr::new(10, 1, 0, flow as u8));
            let dst = IpAddr::V4(Ipv4Addr::new(10, 2, 0, 1));
            let frame = FrameBuilder::new(src, dst, udp(2000 + flow, 80)).payload(&[round as u8; 32]).build();
            tx.send(&frame);
            sent.push((flow, frame));
        }
    }
    let mut got = vec![Vec::new(), Vec::new()];
    collect(&mut [&mut one, &mut two], &mut got, sent.len());
    // Anything extra would show up within a block timeout or two.
    drain_for(&mut one, &mut got[0], Duration::from_millis(50));
    drain_for(&mut two, &mut got[1], Duration::from_millis(50));

    let ours: Vec<Vec<Vec<u8>>> =
        got.iter().map(|g| g.iter().filter(|g| g.ours()).map(|g| g.data.clone()).collect()).collect();
    assert!(
        !ours[0].is_empty() && !ours[1].is_empty(),
        "each member gets a part: {} + {}",
        ours[0].len(),
        ours[1].len()
    );
    let mut all: Vec<&Vec<u8>> = ours.iter().flatten().collect();
    all.sort();
    let mut want: Vec<&Vec<u8>> = sent.iter().map(|(_, f)| f).collect();
    want.sort();
    assert_eq!(all, want, "together they get every frame exactly once");
    for (flow, frame) in &sent {
        let member = usize::from(!ours[0].contains(frame));
        for (other_flow, other) in &sent {
            if other_flow == flow {
                assert!(ours[member].contains(other), "flow {flow} is split between the members");
            }
        }
    }
    assert_eq!(one.stats().frames + two.stats().frames, got.iter().map(|g| g.len() as u64).sum::<u64>());
    assert_eq!(one.kernel_stats().drops + two.kernel_stats().drops, 0);
}

#[test]
fn outgoing_frames_are_ignored_unless_asked_for() {
    let ns = new_netns();
    let mut ignoring = open(&ns, "b", &small_ring());
    let mut ignoring_in_group =
        open(&ns, "b", &AfPacketOptions { fanout: Some((7, FanoutMode::LoadBalance)), ..small_ring() });
    let mut keeping = open(&ns, "b", &AfPacketOptions { ignore_outgoing: false, ..small_ring() });
    let tx = sender(&ns, "b");
    let frames: Vec<Vec<u8>> = (0..20).map(|i| test_frame(i).0).collect();
    for f in &frames {
        tx.send(f);
    }
    let mut got = [Vec::new(), Vec::new(), Vec::new()];
    collect(&mut [&mut keeping], &mut got[2..], frames.len());
    drain_for(&mut ignoring, &mut got[0], Duration::from_millis(100));
    drain_for(&mut ignoring_in_group, &mut got[1], Duration::from_millis(100));
    let ours = |g: &[Got]| g.iter().filter(|g| g.ours()).map(|g| g.data.clone()).collect::<Vec<_>>();
    assert_eq!(ours(&got[2]), frames, "kept outgoing frames arrive whole, tags in place");
    assert_eq!(ours(&got[0]).len(), 0, "PACKET_IGNORE_OUTGOING");
    assert_eq!(ours(&got[1]).len(), 0, "PACKET_FANOUT_FLAG_IGNORE_OUTGOING");
}

#[test]
fn loopback_frames_are_captured_once_as_ethernet() {
    let ns = new_netns();
    let mut src = open(&ns, "lo", &small_ring());
    let tx = sender(&ns, "lo");
    let frames: Vec<Vec<u8>> = (0..10).map(|i| test_frame(i * 3).0).collect();
    for f in &frames {
        tx.send(f);
    }
    let mut got = vec![Vec::new()];
    collect(&mut [&mut src], &mut got, frames.len());
    drain_for(&mut src, &mut got[0], Duration::from_millis(50));
    let ours: Vec<Vec<u8>> = got[0].iter().filter(|g| g.ours()).map(|g| g.data.clone()).collect();
    assert_eq!(ours, frames);
    assert!(got[0].iter().all(|g| g.link == LinkType::Ethernet));
}

#[test]
fn a_full_ring_drops_and_counts_then_recovers() {
    let ns = new_netns();
    // Two blocks of 64 KiB, nobody reading: the kernel fills both, freezes and drops.
    let mut src = open(&ns, "a", &AfPacketOptions { block_count: 2, ..small_ring() });
    let tx = sender(&ns, "b");
    let payload = [0x5au8; 1000];
    let frame = |i: u32| {
        let src = IpAddr::V4(Ipv4Addr::new(10, 3, 0, 1));
        let dst = IpAddr::V4(Ipv4Addr::new(10, 3, 0, 2));
        let mut p = payload.to_vec();
        p[..4].copy_from_slice(&i.to_be_bytes());
        FrameBuilder::new(src, dst, udp(5000, 5001)).payload(&p).build()
    };
    let sent = 500u32;
    for i in 0..sent {
        tx.send(&frame(i));
    }
    std::thread::sleep(Duration::from_millis(50));
    let mut got = Vec::new();
    drain_for(&mut src, &mut got, Duration::from_millis(200));
    let kernel = src.kernel_stats();
    assert!(kernel.drops > 0 && kernel.freeze_count > 0, "{kernel:?}");
    assert_eq!(got.len() as u64 + kernel.drops, u64::from(sent), "delivered + dropped = sent ({kernel:?})");
    assert_eq!(kernel.packets, u64::from(sent), "tp_packets includes the drops");
    assert_eq!(src.stats().dropped, kernel.drops);
    // What was delivered is a prefix of what was sent, in order.
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.data, frame(i as u32));
    }

    // Reading again thawed the ring: new frames arrive.
    let more: Vec<Vec<u8>> = (sent..sent + 20).map(frame).collect();
    for f in &more {
        tx.send(f);
    }
    let mut after = vec![Vec::new()];
    collect(&mut [&mut src], &mut after, more.len());
    assert_eq!(after[0].iter().map(|g| g.data.clone()).collect::<Vec<_>>(), more);
}

#[test]
fn the_socket_polls_readable_once_a_block_is_retired() {
    let ns = new_netns();
    let mut src = open(&ns, "a", &small_ring());
    src.set_poll_timeout(0);
    assert!(!src.has_pending(), "nothing sent yet");
    let fd = src.poll_fd().expect("a live source has a descriptor");
    let tx = sender(&ns, "b");
    let frames: Vec<Vec<u8>> = (0..5).map(|i| test_frame(i).0).collect();
    for f in &frames {
        tx.send(f);
    }
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, 2000) };
    assert_eq!(rc, 1, "readable within the block timeout");
    assert!(src.has_pending());
    let mut got = Vec::new();
    assert!(pull(&mut src, &mut got), "frames without waiting");
    assert_eq!(got.iter().filter(|g| g.ours()).map(|g| g.data.clone()).collect::<Vec<_>>(), frames);
    assert!(!src.has_pending(), "the block went back to the kernel");
}
