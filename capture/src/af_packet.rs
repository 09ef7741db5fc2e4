//! Live capture from a Linux network interface through an `AF_PACKET` socket with a
//! `TPACKET_V3` memory-mapped receive ring, optionally in a fanout group.
//!
//! # The ring
//!
//! The kernel and this source share a ring of `block_count` blocks of `block_size` bytes
//! (`Documentation/networking/packet_mmap.rst`, "TPACKET_V3"). Each block starts with a
//! `tpacket_block_desc` whose `block_status` says who owns it:
//!
//! - `TP_STATUS_KERNEL`: the kernel owns it and packs arriving frames into it back to back,
//!   each behind a `tpacket3_hdr` (timestamps, lengths, VLAN tag, offset to the next frame).
//! - `TP_STATUS_USER`: the kernel has *retired* it — it was full, or `block_timeout_ms` passed
//!   with frames in it — and user space may read it. The kernel does not touch the block again
//!   until user space writes `TP_STATUS_KERNEL` back.
//!
//! Both sides walk the blocks in ring order, so the source only ever looks at one block: the
//! next in order. [`PacketSource::next_batch`]
//!
//! 1. hands the block of the previous batch back to the kernel (a release store of
//!    `TP_STATUS_KERNEL`: the borrow of that batch has ended, so nothing reads the block any
//!    more) and moves to the next block;
//! 2. if that block is not yet `TP_STATUS_USER`, waits in `poll(2)` for at most
//!    `poll_timeout_ms` and returns an empty batch when nothing came, so the caller can check
//!    its stop flag and advance its idle clock ([`PacketSource::idle_time`]);
//! 3. otherwise walks the block — `num_pkts` frames from `offset_to_first_pkt`, following each
//!    header's `tp_next_offset` — and returns a [`Batch`] over the block's memory whose
//!    descriptors point at the frames. Nothing is copied; every offset is checked against the
//!    block, so even a corrupt block cannot make the walk read outside it.
//!
//! When every block is owned by user space the kernel *freezes* the ring and drops arriving
//! frames; those drops are counted by the kernel and reported in [`SourceStats::dropped`]
//! and [`AfPacketKernelStats`].
//!
//! # VLAN tags
//!
//! The kernel's receive path strips the outer 802.1Q/802.1ad tag of every frame (in hardware
//! or in `skb_vlan_untag`) before a packet socket sees it, and reports it in the frame header
//! (`TP_STATUS_VLAN_VALID`, `tp_vlan_tci`, `tp_vlan_tpid`). Outpost's decoder needs the tag in
//! the frame (VLAN ids map to network ids), so the source puts it back — *in place*, like
//! libpcap: between a frame's 48-byte header and the frame the kernel always writes a
//! 20-byte `sockaddr_ll` (plus alignment padding), which this source does not read, so the two
//! MAC addresses move 4 bytes to the front and the tag goes between them and the EtherType. The block is user-owned while this happens, so tagged
//! blocks stay zero-copy too. The frame is then exactly what was on the wire; captured and
//! wire lengths grow by 4.
//!
//! # Time
//!
//! Frame timestamps are the kernel's receive timestamps (`CLOCK_REALTIME`, nanoseconds). The
//! only other place wall time enters is [`PacketSource::idle_time`], the idle clock of this
//! source (see there).
//!
//! # Requirements
//!
//! Linux ≥ 4.20 (`PACKET_IGNORE_OUTGOING`; fanout groups honour
//! `PACKET_FANOUT_FLAG_IGNORE_OUTGOING` only with a kernel fix from late 2022, so older kernels
//! capture outgoing frames in a group), root or `CAP_NET_RAW`.

use std::cell::Cell;
use std::ffi::CString;
use std::fmt;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use libc::{c_int, c_void};
use outpost_decode::{LinkType, Nanos};

use crate::error::SourceError;
use crate::iface;
use crate::source::{Batch, FrameDesc, PacketSource, SourceStats};

/// How a fanout group spreads frames over its member sockets (`PACKET_FANOUT_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FanoutMode {
    /// `PACKET_FANOUT_HASH`: by the kernel's flow hash. The hash is symmetric (both
    /// directions of a conversation go to the same member) and covers only addresses for IP
    /// fragments, so all fragments of a datagram go to the same member too.
    #[default]
    Hash,
    /// `PACKET_FANOUT_CPU`: by the CPU that received the frame (pair with RSS and IRQ
    /// affinity).
    Cpu,
    /// `PACKET_FANOUT_LB`: round robin. Splits conversations; only for stateless consumers.
    LoadBalance,
}

impl FanoutMode {
    const fn kernel_value(self) -> u32 {
        match self {
            FanoutMode::Hash => libc::PACKET_FANOUT_HASH,
            FanoutMode::Cpu => libc::PACKET_FANOUT_CPU,
            FanoutMode::LoadBalance => libc::PACKET_FANOUT_LB,
        }
    }
}

/// Settings of an [`AfPacketSource`]: ring geometry, timeouts and socket options.
///
/// The default ring is 32 blocks of 4 MiB (128 MiB of kernel memory per socket). 4 MiB is the
/// largest block the kernel's page allocator can hand out in one physically contiguous piece
/// on x86-64 (order 10), and large blocks mean one ownership hand-over per several thousand
/// frames. 128 MiB absorbs about 100 ms of a stalled consumer at 10 Gbit/s (≈ 1 s at
/// 1 Gbit/s) before the kernel drops; raise `block_count` for bursty links, lower it for
/// small machines or many fanout members (each member has its own ring).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfPacketOptions {
    /// Bytes per ring block (`tp_block_size`). A multiple of the page size, at least
    /// `frame_size`, at most 1 GiB; a power of two wastes no kernel memory (the kernel
    /// allocates blocks in powers of two pages). Frames are packed into blocks, and a frame
    /// can be as long as a block, so this also bounds the snap length. Default 4 MiB.
    pub block_size: u32,
    /// Blocks in the ring (`tp_block_nr`), at least 2 (one read by the consumer while the
    /// kernel fills another). Default 32.
    pub block_count: u32,
    /// `tp_frame_size` in bytes: a multiple of 16 (`TPACKET_ALIGNMENT`), at least 80. With
    /// `TPACKET_V3` the kernel only uses it to check the request; it does not limit the
    /// snap length. Default 2048.
    pub frame_size: u32,
    /// Milliseconds after which the kernel retires a partly filled block
    /// (`tp_retire_blk_tov`), so frames on a quiet link are not held back; 1..=60000.
    /// Default 10 ms.
    pub block_timeout_ms: u32,
    /// Milliseconds [`PacketSource::next_batch`] waits for a block before it returns an empty
    /// batch, so the caller can check its stop flag and advance its idle clock. 0 polls
    /// without waiting (a busy loop); must not be negative. Default 100 ms.
    pub poll_timeout_ms: i32,
    /// Join fanout group `(id, mode)` after binding (`PACKET_FANOUT`): sockets on the same
    /// interface in the same network namespace with the same id share its frames, each frame
    /// going to one member. All members must use the same mode and the same
    /// `ignore_outgoing`. Default `None`.
    pub fanout: Option<(u16, FanoutMode)>,
    /// Put the interface into promiscuous mode for as long as the socket is open
    /// (`PACKET_MR_PROMISC` via `PACKET_ADD_MEMBERSHIP`; the kernel counts such requests, so
    /// the interface leaves promiscuous mode when the last one goes). Default `true`.
    pub promiscuous: bool,
    /// Do not capture frames the host itself sends on the interface
    /// (`PACKET_IGNORE_OUTGOING`; in a fanout group `PACKET_FANOUT_FLAG_IGNORE_OUTGOING`). A
    /// sensor on a SPAN or TAP port captures what arrives; on loopback this also avoids seeing
    /// each frame twice. Default `true`.
    pub ignore_outgoing: bool,
}

impl Default for AfPacketOptions {
    fn default() -> AfPacketOptions {
        AfPacketOptions {
            block_size: 4 << 20,
            block_count: 32,
            frame_size: 2048,
            block_timeout_ms: 10,
            poll_timeout_ms: 100,
            fanout: None,
            promiscuous: true,
            ignore_outgoing: true,
        }
    }
}

/// Largest accepted block: keeps every frame offset inside a block far below `u32::MAX`.
const MAX_BLOCK_SIZE: u32 = 1 << 30;
/// Bytes of an 802.1Q/802.1ad tag.
const VLAN_TAG_LEN: usize = 4;
/// Bytes of the two MAC addresses that precede the tag.
const MAC_ADDRS_LEN: usize = 12;

/// `tpacket_block_desc` field offsets (`hdr` is a union whose only member is `bh1`).
const BD_STATUS: usize =
    offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, block_status);
const BD_NUM_PKTS: usize =
    offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, num_pkts);
const BD_FIRST_PKT: usize =
    offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt);
/// `tpacket3_hdr` size and field offsets.
const H3_SIZE: usize = size_of::<libc::tpacket3_hdr>();
const H3_NEXT: usize = offset_of!(libc::tpacket3_hdr, tp_next_offset);
const H3_SEC: usize = offset_of!(libc::tpacket3_hdr, tp_sec);
const H3_NSEC: usize = offset_of!(libc::tpacket3_hdr, tp_nsec);
const H3_SNAPLEN: usize = offset_of!(libc::tpacket3_hdr, tp_snaplen);
const H3_LEN: usize = offset_of!(libc::tpacket3_hdr, tp_len);
const H3_STATUS: usize = offset_of!(libc::tpacket3_hdr, tp_status);
const H3_MAC: usize = offset_of!(libc::tpacket3_hdr, tp_mac);
const H3_VLAN_TCI: usize =
    offset_of!(libc::tpacket3_hdr, hv1) + offset_of!(libc::tpacket_hdr_variant1, tp_vlan_tci);
const H3_VLAN_TPID: usize =
    offset_of!(libc::tpacket3_hdr, hv1) + offset_of!(libc::tpacket_hdr_variant1, tp_vlan_tpid);
/// Smallest `tp_frame_size` the kernel accepts (`TPACKET3_HDRLEN`, 68), rounded up to 16.
const MIN_FRAME_SIZE: u32 = (libc::TPACKET3_HDRLEN as u32).next_multiple_of(libc::TPACKET_ALIGNMENT as u32);
/// How often the kernel's reset-on-read counters are folded into the running sums. Frequent
/// enough that the kernel's 32-bit counters cannot wrap in between.
const KERNEL_STATS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// Slack added to twice the block timeout for the idle clock: timer granularity (a jiffy at
/// HZ=100 is 10 ms) and scheduling.
const IDLE_LAG_SLACK_NS: u64 = 20_000_000;

/// The kernel's counters for one socket, summed since it was opened (`PACKET_STATISTICS`,
/// which resets on every read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AfPacketKernelStats {
    /// Frames that reached the socket: put into the ring or dropped (`tp_packets`, which the
    /// kernel reports with the drops included).
    pub packets: u64,
    /// Frames dropped because the ring had no room (`tp_drops`).
    pub drops: u64,
    /// Times the kernel found every block owned by user space and froze the ring
    /// (`tp_freeze_q_cnt`).
    pub freeze_count: u64,
}

/// A live capture source on one network interface: an `AF_PACKET` socket with a `TPACKET_V3`
/// receive ring (see the module documentation).
///
/// Frames are Ethernet frames ([`LinkType::Ethernet`]) with outer VLAN tags restored,
/// timestamped by the kernel; record numbers count delivered frames from 0. The source never
/// ends on its own: [`PacketSource::next_batch`] returns `Ok(Some(_))` (possibly empty) until
/// the caller stops calling.
pub struct AfPacketSource {
    // Field order matters for drop order: the mapping goes before the socket closes.
    ring: Ring,
    fd: OwnedFd,
    interface: String,
    ifindex: u32,
    /// Block to look at next.
    current: usize,
    /// True when `current` was handed out in the last batch and is still user-owned.
    held: bool,
    descs: Vec<FrameDesc>,
    poll_timeout_ms: i32,
    /// How far behind the wall clock the idle clock runs (see `idle_time`).
    idle_lag_ns: u64,
    /// Latest timestamp delivered.
    last_ts: Nanos,
    frames: u64,
    bytes: u64,
    vlan_tags_reinserted: u64,
    vlan_tags_not_reinserted: u64,
    /// Link type of every frame (from the interface's ARPHRD type).
    link: LinkType,
    map_locked: bool,
    fanout: Option<(u16, FanoutMode)>,
    kernel: KernelCounters,
}

impl AfPacketSource {
    /// Opens a capture on `interface` (a name like `eth0`, in the calling thread's network
    /// namespace): creates the socket and ring, binds, and applies `options`. The ring is
    /// empty when this returns; frames that arrive from then on are captured.
    ///
    /// The socket is created with protocol 0 so it receives nothing until it is bound to the
    /// interface; with fanout a drop-all socket filter covers the moment between binding and
    /// joining the group, so no frame is delivered both to the group and to this socket.
    ///
    /// # Errors
    /// [`SourceError::Live`] naming the interface and the step that failed: invalid options,
    /// no such interface, a link type other than Ethernet or loopback (naming the `ARPHRD_`
    /// type), missing privileges (root or `CAP_NET_RAW`), or a ring the kernel cannot
    /// allocate.
    pub fn open(interface: &str, options: &AfPacketOptions) -> Result<AfPacketSource, SourceError> {
        let live = |what: &str, source: io::Error| SourceError::Live {
            interface: interface.to_string(),
            what: what.to_string(),
            source,
        };
        let page_size = page_size();
        validate(options, page_size).map_err(|msg| live("invalid capture options", invalid_input(msg)))?;
        let name = iface::c_name(interface).map_err(|e| live("invalid interface name", e))?;
        let ifindex = iface::index(&name).map_err(|e| {
            let what = if e.raw_os_error() == Some(libc::ENODEV) {
                "no such network interface (in this network namespace)"
            } else {
                "looking up the interface index"
            };
            live(what, e)
        })?;

        // Protocol 0: the socket receives nothing until `bind` names the protocol and the
        // interface, so no frame of another interface reaches the ring.
        // SAFETY: plain system call with constant arguments.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let e = io::Error::last_os_error();
            let what = match e.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => "opening an AF_PACKET socket (needs root or CAP_NET_RAW)",
                _ => "opening an AF_PACKET socket",
            };
            return Err(live(what, e));
        }
        // SAFETY: `raw` is a valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let arphrd =
            hardware_type(&fd, &name).map_err(|e| live("reading the link type (SIOCGIFHWADDR)", e))?;
        let link = match arphrd {
            libc::ARPHRD_ETHER | libc::ARPHRD_LOOPBACK => LinkType::Ethernet,
            other => {
                return Err(live(
                    "checking the link type",
                    io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!(
                            "link type ARPHRD {other} ({}) is not supported; only Ethernet \
                             (ARPHRD_ETHER) and loopback interfaces can be captured",
                            arphrd_name(other)
                        ),
                    ),
                ));
            }
        };

        let version = libc::tpacket_versions::TPACKET_V3 as c_int;
        set_option(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version)
            .map_err(|e| live("selecting TPACKET_V3 (PACKET_VERSION)", e))?;

        let frames_per_block = options.block_size / options.frame_size;
        let req = libc::tpacket_req3 {
            tp_block_size: options.block_size,
            tp_block_nr: options.block_count,
            tp_frame_size: options.frame_size,
            tp_frame_nr: frames_per_block * options.block_count,
            tp_retire_blk_tov: options.block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        set_option(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req).map_err(|e| {
            live(
                &format!(
                    "creating the receive ring of {} blocks of {} bytes (PACKET_RX_RING)",
                    options.block_count, options.block_size
                ),
                e,
            )
        })?;

        let block_size = options.block_size as usize;
        let block_count = options.block_count as usize;
        let (ring, map_locked) = Ring::map(&fd, block_size, block_count)
            .map_err(|e| live("mapping the receive ring (mmap)", e))?;

        if options.ignore_outgoing {
            let on: c_int = 1;
            set_option(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &on)
                .map_err(|e| live("ignoring outgoing frames (PACKET_IGNORE_OUTGOING, Linux ≥ 4.20)", e))?;
        }
        if options.fanout.is_some() {
            attach_drop_all_filter(&fd)
                .map_err(|e| live("attaching the drop-all filter (SO_ATTACH_FILTER)", e))?;
        }

        // SAFETY: all-zero bytes are a valid `sockaddr_ll`.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = c_int::try_from(ifindex).map_err(|_| {
            live("binding to the interface", invalid_input(format!("interface index {ifindex}")))
        })?;
        // SAFETY: `addr` is a valid `sockaddr_ll` and the length is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                ptr::from_ref(&addr).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(live("binding to the interface", io::Error::last_os_error()));
        }

        if options.promiscuous {
            let mreq = libc::packet_mreq {
                mr_ifindex: addr.sll_ifindex,
                mr_type: libc::PACKET_MR_PROMISC as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            set_option(&fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
                .map_err(|e| live("enabling promiscuous mode (PACKET_MR_PROMISC)", e))?;
        }

        if let Some((group, mode)) = options.fanout {
            let mut type_flags = mode.kernel_value();
            if options.ignore_outgoing {
                // The group has one receive hook of its own: the socket's
                // PACKET_IGNORE_OUTGOING does not apply to it.
                type_flags |= libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
            }
            let arg = (u32::from(group) | (type_flags << 16)) as c_int;
            set_option(&fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg).map_err(|e| {
                live(
                    &format!(
                        "joining fanout group {group} ({mode:?}; every member needs the same mode and \
                         ignore_outgoing) (PACKET_FANOUT)"
                    ),
                    e,
                )
            })?;
            let zero: c_int = 0;
            set_option(&fd, libc::SOL_SOCKET, libc::SO_DETACH_FILTER, &zero)
                .map_err(|e| live("detaching the drop-all filter (SO_DETACH_FILTER)", e))?;
        }

        Ok(AfPacketSource {
            ring,
            fd,
            interface: interface.to_string(),
            ifindex,
            current: 0,
            held: false,
            descs: Vec::with_capacity(1024),
            poll_timeout_ms: options.poll_timeout_ms,
            idle_lag_ns: 2 * u64::from(options.block_timeout_ms) * 1_000_000 + IDLE_LAG_SLACK_NS,
            last_ts: Nanos::ZERO,
            frames: 0,
            bytes: 0,
            vlan_tags_reinserted: 0,
            vlan_tags_not_reinserted: 0,
            link,
            map_locked,
            fanout: options.fanout,
            kernel: KernelCounters::default(),
        })
    }

    /// The interface name given to [`AfPacketSource::open`].
    #[must_use]
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The interface index the socket is bound to.
    #[must_use]
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The kernel's counters for this socket, summed since it was opened. Reads
    /// `PACKET_STATISTICS` now (it resets on read; the source keeps the sums).
    #[must_use]
    pub fn kernel_stats(&self) -> AfPacketKernelStats {
        self.kernel.refresh(&self.fd, None)
    }

    /// Outer VLAN tags the kernel had stripped and the source put back into frames.
    #[must_use]
    pub fn vlan_tags_reinserted(&self) -> u64 {
        self.vlan_tags_reinserted
    }

    /// Frames that carried a stripped VLAN tag the source could not put back (captured
    /// shorter than the two MAC addresses). Expected to stay 0.
    #[must_use]
    pub fn vlan_tags_not_reinserted(&self) -> u64 {
        self.vlan_tags_not_reinserted
    }

    /// Waits up to the poll timeout for the kernel to retire a block. Interruption by a
    /// signal and timeouts are not errors (the caller gets an empty batch).
    fn wait_for_block(&self) -> Result<(), SourceError> {
        let mut pfd =
            libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN | libc::POLLERR, revents: 0 };
        // SAFETY: `pfd` is one valid `pollfd` for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, self.poll_timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(self.live("waiting for frames (poll)", e));
        }
        if rc > 0 && pfd.revents & libc::POLLERR != 0 {
            // A pending socket error (the interface went down: ENETDOWN). Reading SO_ERROR
            // clears it, so poll does not report it again; capture resumes by itself when the
            // interface comes back up.
            if let Some(e) = take_socket_error(&self.fd) {
                return Err(self.live("socket error (is the interface down?)", e));
            }
        }
        Ok(())
    }

    fn live(&self, what: &str, source: io::Error) -> SourceError {
        SourceError::Live { interface: self.interface.clone(), what: what.to_string(), source }
    }

    /// Hands the block of the previous batch back to the kernel and moves to the next.
    fn release_held(&mut self) {
        if self.held {
            self.ring.status(self.current).store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.held = false;
            self.current = (self.current + 1) % self.ring.block_count;
        }
    }
}

impl PacketSource for AfPacketSource {
    /// The frames of the next retired ring block, zero-copy; an empty batch when no block was
    /// retired within `poll_timeout_ms`. Never `Ok(None)`: a live interface has no end.
    ///
    /// # Errors
    /// [`SourceError::Live`] when `poll` fails or the socket reports an error (for example
    /// `ENETDOWN` when the interface goes down). Capturing continues on the next call.
    fn next_batch(&mut self) -> Result<Option<Batch<'_>>, SourceError> {
        // The borrow of the previous batch has ended: its block goes back to the kernel.
        self.release_held();
        self.kernel.refresh(&self.fd, Some(KERNEL_STATS_INTERVAL));
        self.descs.clear();
        if !self.ring.is_user(self.current) {
            self.wait_for_block()?;
            if !self.ring.is_user(self.current) {
                return Ok(Some(Batch::new(&[], &self.descs)));
            }
        }
        // The kernel retired the block (acquire load in `is_user`): it is ours until we store
        // TP_STATUS_KERNEL, which happens at the start of the next call.
        self.held = true;
        let walk = walk_block(self.ring.block_mut(self.current), self.link, self.frames, &mut self.descs);
        self.frames += walk.frames;
        self.bytes += walk.bytes;
        self.vlan_tags_reinserted += walk.vlan_reinserted;
        self.vlan_tags_not_reinserted += walk.vlan_not_reinserted;
        self.last_ts = self.last_ts.max(walk.last_ts);
        Ok(Some(Batch::new(self.ring.block(self.current), &self.descs)))
    }

    /// Frames and captured bytes delivered (bytes include restored VLAN tags); `dropped` is
    /// the kernel's `tp_drops` summed since the socket was opened.
    ///
    /// Reads `PACKET_STATISTICS` afresh (one `getsockopt`), so a final report includes the
    /// last drops; `next_batch` also folds the counters in every 100 ms, so the kernel's
    /// 32-bit counters cannot wrap however rarely this is called.
    fn stats(&self) -> SourceStats {
        let kernel = self.kernel.refresh(&self.fd, None);
        SourceStats {
            frames: self.frames,
            bytes: self.bytes,
            unsupported_link: 0,
            records: self.frames,
            dropped: kernel.drops,
        }
    }

    /// The idle clock: the wall clock (`CLOCK_REALTIME`) minus twice the block timeout and
    /// 20 ms, but never earlier than the latest timestamp delivered. Always `Some`.
    ///
    /// A frame may sit in a partly filled block for up to about twice the block timeout before
    /// the kernel retires it, so reporting the bare wall clock could move event time past
    /// frames that are still to come. This value is a lower bound for their timestamps (on a
    /// system that is not overloaded), and it never goes backwards.
    fn idle_time(&self) -> Option<Nanos> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Some(self.last_ts.max(Nanos(now.saturating_sub(self.idle_lag_ns))))
    }

    /// The socket: it polls readable (`POLLIN`) when the kernel has retired a block.
    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.fd.as_raw_fd())
    }

    /// Sets `poll_timeout_ms` (negative values count as 0: never wait).
    fn set_poll_timeout(&mut self, ms: i32) {
        self.poll_timeout_ms = ms.max(0);
    }

    /// Hands the block of the previous batch back to the kernel, then tells whether the next
    /// block is already retired (so `next_batch` returns frames without waiting).
    fn has_pending(&mut self) -> bool {
        self.release_held();
        self.ring.is_user(self.current)
    }
}

impl fmt::Debug for AfPacketSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfPacketSource")
            .field("interface", &self.interface)
            .field("ifindex", &self.ifindex)
            .field("fd", &self.fd.as_raw_fd())
            .field("block_size", &self.ring.block_size)
            .field("block_count", &self.ring.block_count)
            .field("map_locked", &self.map_locked)
            .field("fanout", &self.fanout)
            .field("current_block", &self.current)
            .field("frames", &self.frames)
            .field("bytes", &self.bytes)
            .field("vlan_tags_reinserted", &self.vlan_tags_reinserted)
            .field("kernel", &self.kernel.sum.get())
            .finish_non_exhaustive()
    }
}

/// The shared ring mapping.
struct Ring {
    base: NonNull<u8>,
    len: usize,
    block_size: usize,
    block_count: usize,
}

// SAFETY: `Ring` owns its mapping exclusively (no other handle to it exists in the process)
// and has no thread-affine state; moving it to another thread moves that ownership.
unsafe impl Send for Ring {}

impl Ring {
    /// Maps the ring of `fd`, with `MAP_LOCKED` when allowed. Returns the ring and whether
    /// `MAP_LOCKED` was accepted. (The kernel inserts every ring page at mmap time and the
    /// pages are kernel memory that is never swapped, so the flag changes nothing but the
    /// `RLIMIT_MEMLOCK` check; it is not worth failing over.)
    fn map(fd: &OwnedFd, block_size: usize, block_count: usize) -> io::Result<(Ring, bool)> {
        let len = block_size
            .checked_mul(block_count)
            .ok_or_else(|| invalid_input("ring size overflows the address space".to_string()))?;
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let mut locked = true;
        // SAFETY: a fresh shared mapping of the socket's ring (no fixed address); the kernel
        // checks `len` against the ring it allocated.
        let mut p = unsafe {
            libc::mmap(ptr::null_mut(), len, prot, libc::MAP_SHARED | libc::MAP_LOCKED, fd.as_raw_fd(), 0)
        };
        if p == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::EPERM | libc::EAGAIN | libc::ENOMEM)) {
                return Err(e);
            }
            locked = false;
            // SAFETY: as above, without MAP_LOCKED.
            p = unsafe { libc::mmap(ptr::null_mut(), len, prot, libc::MAP_SHARED, fd.as_raw_fd(), 0) };
            if p == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
        }
        let base =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok((Ring { base, len, block_size, block_count }, locked))
    }

    /// The status word of block `i`.
    fn status(&self, i: usize) -> &AtomicU32 {
        debug_assert!(i < self.block_count);
        // SAFETY: block `i` lies inside the mapping (i < block_count, checked by the callers'
        // ring arithmetic), blocks start page-aligned and the status word is at offset 8, so
        // the pointer is valid and 4-byte aligned for as long as `self` lives. The word is
        // shared with the kernel, which writes it with plain aligned 32-bit stores; here it is
        // only accessed atomically, and never while a slice of the block is borrowed (see
        // `block`).
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(i * self.block_size + BD_STATUS).cast::<u32>()) }
    }

    /// True when the kernel has handed block `i` to user space. Acquire: the block's contents
    /// written before the status are visible after it.
    fn is_user(&self, i: usize) -> bool {
        self.status(i).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    /// Block `i` as bytes. Callers only ask for a block they own (`is_user` returned true and
    /// the block has not been handed back): the kernel does not write it then, and handing it
    /// back needs `&mut self` of the source, which ends this borrow first.
    fn block(&self, i: usize) -> &[u8] {
        debug_assert!(i < self.block_count);
        // SAFETY: the range is inside the mapping, which lives as long as `self`; the block is
        // user-owned (see above), so nothing writes it while the slice is borrowed.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(i * self.block_size), self.block_size) }
    }

    /// Block `i` as mutable bytes, under the same ownership rule as `block`.
    fn block_mut(&mut self, i: usize) -> &mut [u8] {
        debug_assert!(i < self.block_count);
        // SAFETY: as in `block`; `&mut self` makes this the only borrow of the mapping.
        unsafe {
            std::slice::from_raw_parts_mut(self.base.as_ptr().add(i * self.block_size), self.block_size)
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly the mapping made in `map`, and no borrow of it can
        // outlive `self`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast::<c_void>(), self.len);
        }
    }
}

/// Running sums of the kernel's reset-on-read counters.
#[derive(Default)]
struct KernelCounters {
    sum: Cell<AfPacketKernelStats>,
    last_read: Cell<Option<Instant>>,
}

impl KernelCounters {
    /// Reads `PACKET_STATISTICS` into the sums unless the last read is younger than
    /// `min_interval`; returns the sums.
    fn refresh(&self, fd: &OwnedFd, min_interval: Option<std::time::Duration>) -> AfPacketKernelStats {
        let now = Instant::now();
        if let (Some(interval), Some(last)) = (min_interval, self.last_read.get())
            && now.duration_since(last) < interval
        {
            return self.sum.get();
        }
        self.last_read.set(Some(now));
        let mut sum = self.sum.get();
        if let Ok(st) = read_kernel_stats(fd) {
            sum.packets += u64::from(st.tp_packets);
            sum.drops += u64::from(st.tp_drops);
            sum.freeze_count += u64::from(st.tp_freeze_q_cnt);
            self.sum.set(sum);
        }
        sum
    }
}

/// What one walk over a block found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct BlockWalk {
    frames: u64,
    bytes: u64,
    vlan_reinserted: u64,
    vlan_not_reinserted: u64,
    last_ts: Nanos,
}

/// The fields of one `tpacket3_hdr` the walk uses.
#[derive(Clone, Copy, Debug)]
struct FrameHeader {
    next: u32,
    sec: u32,
    nsec: u32,
    snaplen: u32,
    len: u32,
    status: u32,
    mac: u16,
    vlan_tci: u32,
    vlan_tpid: u16,
}

impl FrameHeader {
    /// The header at `at`, `None` when it does not fit in `block`.
    fn read(block: &[u8], at: usize) -> Option<FrameHeader> {
        let h = block.get(at..at.checked_add(H3_SIZE)?)?;
        Some(FrameHeader {
            next: read_u32(h, H3_NEXT)?,
            sec: read_u32(h, H3_SEC)?,
            nsec: read_u32(h, H3_NSEC)?,
            snaplen: read_u32(h, H3_SNAPLEN)?,
            len: read_u32(h, H3_LEN)?,
            status: read_u32(h, H3_STATUS)?,
            mac: read_u16(h, H3_MAC)?,
            vlan_tci: read_u32(h, H3_VLAN_TCI)?,
            vlan_tpid: read_u16(h, H3_VLAN_TPID)?,
        })
    }

    /// The stripped outer tag as (TPID, TCI), if the kernel reported one. Old kernels set
    /// `TP_STATUS_VLAN_VALID` only for non-zero TCIs, hence the second test (as libpcap).
    fn vlan(&self) -> Option<(u16, u16)> {
        let tci = (self.vlan_tci & 0xffff) as u16;
        if self.status & libc::TP_STATUS_VLAN_VALID == 0 && tci == 0 {
            return None;
        }
        let tpid = if self.status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
            self.vlan_tpid
        } else {
            libc::ETH_P_8021Q as u16
        };
        Some((tpid, tci))
    }
}

/// Walks the frames of a user-owned block, appends their descriptors (offsets relative to the
/// block) to `descs` with record numbers from `first_record`, and puts stripped VLAN tags back
/// in place. Stops at the first header or frame that does not lie inside the block.
fn walk_block(block: &mut [u8], link: LinkType, first_record: u64, descs: &mut Vec<FrameDesc>) -> BlockWalk {
    let mut walk = BlockWalk::default();
    let (Some(num_pkts), Some(first)) = (read_u32(block, BD_NUM_PKTS), read_u32(block, BD_FIRST_PKT)) else {
        return walk;
    };
    let mut at = first as usize;
    for _ in 0..num_pkts {
        let Some(h) = FrameHeader::read(block, at) else { break };
        let Some(mac) = at.checked_add(usize::from(h.mac)) else { break };
        let snaplen = h.snaplen as usize;
        if mac.checked_add(snaplen).is_none_or(|end| end > block.len()) {
            break;
        }
        let (mut start, mut len, mut wire_len) = (mac, h.snaplen, h.len);
        if let Some((tpid, tci)) = h.vlan() {
            // Room before the frame: everything after the 48-byte header is ours to reuse
            // (the kernel's sockaddr_ll and alignment padding, at least 20 bytes).
            if snaplen >= MAC_ADDRS_LEN && usize::from(h.mac) >= H3_SIZE + VLAN_TAG_LEN {
                start = mac - VLAN_TAG_LEN;
                block.copy_within(mac..mac + MAC_ADDRS_LEN, start);
                let tag_at = start + MAC_ADDRS_LEN;
                if let Some(tag) = block.get_mut(tag_at..tag_at + VLAN_TAG_LEN) {
                    tag[..2].copy_from_slice(&tpid.to_be_bytes());
                    tag[2..].copy_from_slice(&tci.to_be_bytes());
                }
                len += VLAN_TAG_LEN as u32;
                wire_len = wire_len.saturating_add(VLAN_TAG_LEN as u32);
                walk.vlan_reinserted += 1;
            } else {
                walk.vlan_not_reinserted += 1;
            }
        }
        let Ok(offset) = u32::try_from(start) else { break };
        let ts = Nanos::from_parts(u64::from(h.sec), h.nsec);
        descs.push(FrameDesc {
            ts,
            offset,
            len,
            wire_len: wire_len.max(len),
            link,
            record: first_record + walk.frames,
        });
        walk.frames += 1;
        walk.bytes += u64::from(len);
        walk.last_ts = walk.last_ts.max(ts);
        if h.next == 0 {
            break;
        }
        let Some(next) = at.checked_add(h.next as usize) else { break };
        at = next;
    }
    walk
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    bytes.get(at..)?.first_chunk::<4>().map(|b| u32::from_ne_bytes(*b))
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    bytes.get(at..)?.first_chunk::<2>().map(|b| u16::from_ne_bytes(*b))
}

/// Checks `options` against the kernel's rules for a `TPACKET_V3` ring (and ours), so
/// mistakes get a message rather than a bare `EINVAL`.
fn validate(o: &AfPacketOptions, page_size: u32) -> Result<(), String> {
    if o.frame_size < MIN_FRAME_SIZE || !o.frame_size.is_multiple_of(libc::TPACKET_ALIGNMENT as u32) {
        return Err(format!(
            "frame_size {} must be a multiple of {} and at least {MIN_FRAME_SIZE}",
            o.frame_size,
            libc::TPACKET_ALIGNMENT
        ));
    }
    if o.block_size == 0 || !o.block_size.is_multiple_of(page_size) || o.block_size > MAX_BLOCK_SIZE {
        return Err(format!(
            "block_size {} must be a non-zero multiple of the page size ({page_size}) and at most {MAX_BLOCK_SIZE}",
            o.block_size
        ));
    }
    if o.block_size < o.frame_size {
        return Err(format!("block_size {} is smaller than frame_size {}", o.block_size, o.frame_size));
    }
    if o.block_count < 2 {
        return Err(format!("block_count {} must be at least 2", o.block_count));
    }
    let frames_per_block = o.block_size / o.frame_size;
    if frames_per_block.checked_mul(o.block_count).is_none() {
        return Err(format!(
            "{} blocks of {} frames of {} bytes: too many frames for the kernel (more than 2^32)",
            o.block_count, frames_per_block, o.frame_size
        ));
    }
    if u64::from(o.block_size) * u64::from(o.block_count) > isize::MAX as u64 {
        return Err("the ring is larger than the address space".to_string());
    }
    if !(1..=60_000).contains(&o.block_timeout_ms) {
        return Err(format!("block_timeout_ms {} must be between 1 and 60000", o.block_timeout_ms));
    }
    if o.poll_timeout_ms < 0 {
        return Err(format!(
            "poll_timeout_ms {} must not be negative (the receive thread must wake up to see its stop flag)",
            o.poll_timeout_ms
        ));
    }
    Ok(())
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

fn invalid_input(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// The interface's `ARPHRD_*` hardware type (`SIOCGIFHWADDR`), asked in the socket's network
/// namespace.
fn hardware_type(fd: &OwnedFd, name: &CString) -> io::Result<u16> {
    // SAFETY: all-zero bytes are a valid `ifreq`.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `ifr` is a valid, NUL-terminated `ifreq` the kernel fills for SIOCGIFHWADDR.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR as _, &mut ifr) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFHWADDR succeeded, so the kernel wrote the `ifru_hwaddr` member.
    Ok(unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_family })
}

/// A readable name for common `ARPHRD_*` types in error messages.
fn arphrd_name(t: u16) -> &'static str {
    match t {
        libc::ARPHRD_ETHER => "ARPHRD_ETHER",
        libc::ARPHRD_LOOPBACK => "ARPHRD_LOOPBACK",
        libc::ARPHRD_NONE => "ARPHRD_NONE, e.g. a tun device or WireGuard",
        libc::ARPHRD_IEEE80211_RADIOTAP => "ARPHRD_IEEE80211_RADIOTAP, a monitor-mode Wi-Fi interface",
        libc::ARPHRD_IEEE80211 => "ARPHRD_IEEE80211",
        libc::ARPHRD_PPP => "ARPHRD_PPP",
        libc::ARPHRD_TUNNEL => "ARPHRD_TUNNEL, an IPIP tunnel",
        libc::ARPHRD_TUNNEL6 => "ARPHRD_TUNNEL6, an IPv6 tunnel",
        libc::ARPHRD_IPGRE => "ARPHRD_IPGRE, a GRE tunnel",
        libc::ARPHRD_SIT => "ARPHRD_SIT, a 6in4 tunnel",
        libc::ARPHRD_INFINIBAND => "ARPHRD_INFINIBAND",
        libc::ARPHRD_CAN => "ARPHRD_CAN",
        _ => "see linux/if_arp.h",
    }
}

fn set_option<T>(fd: &OwnedFd, level: c_int, name: c_int, value: &T) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| invalid_input("option too large".to_string()))?;
    // SAFETY: `value` points to an initialised `T` of `len` bytes that the kernel only reads.
    let rc =
        unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, ptr::from_ref(value).cast::<c_void>(), len) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// A classic BPF filter of one instruction, `ret #0`: every frame is dropped before it reaches
/// the ring. Used while joining a fanout group.
fn attach_drop_all_filter(fd: &OwnedFd) -> io::Result<()> {
    const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let mut insn = [libc::sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: 0 }];
    let prog = libc::sock_fprog { len: 1, filter: insn.as_mut_ptr() };
    // The kernel copies the program during the call; `insn` outlives it.
    set_option(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

/// Reads and clears the socket's pending error (`SO_ERROR`).
fn take_socket_error(fd: &OwnedFd) -> Option<io::Error> {
    let mut err: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            ptr::from_mut(&mut err).cast(),
            &mut len,
        )
    };
    (rc == 0 && err != 0).then(|| io::Error::from_raw_os_error(err))
}

fn read_kernel_stats(fd: &OwnedFd) -> io::Result<libc::tpacket_stats_v3> {
    let mut st = libc::tpacket_stats_v3 { tp_packets: 0, tp_drops: 0, tp_freeze_q_cnt: 0 };
    let mut len = size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
    // SAFETY: `st` and `len` are valid for writes; the kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            ptr::from_mut(&mut st).cast(),
            &mut len,
        )
    };
    if rc == 0 { Ok(st) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offset of the frame after its header, as the kernel lays out an Ethernet frame on a
    /// SOCK_RAW socket (TPACKET_ALIGN(68 + 16) - 14).
    const MAC_OFF: u16 = 82;

    struct TestFrame {
        bytes: Vec<u8>,
        wire: u32,
        sec: u32,
        nsec: u32,
        vlan: Option<(Option<u16>, u16)>,
    }

    /// Builds a block the way the kernel does: header, then frames with 16-byte aligned
    /// `tp_next_offset`s, the last one 0.
    fn block_with(frames: &[TestFrame], size: usize) -> Vec<u8> {
        let mut b = vec![0u8; size];
        let first = 48usize;
        b[BD_NUM_PKTS..BD_NUM_PKTS + 4].copy_from_slice(&(frames.len() as u32).to_ne_bytes());
        b[BD_FIRST_PKT..BD_FIRST_PKT + 4].copy_from_slice(&(first as u32).to_ne_bytes());
        b[BD_STATUS..BD_STATUS + 4].copy_from_slice(&libc::TP_STATUS_USER.to_ne_bytes());
        let mut at = first;
        for (i, f) in frames.iter().enumerate() {
            let total = (usize::from(MAC_OFF) + f.bytes.len()).next_multiple_of(16);
            let next = if i + 1 == frames.len() { 0 } else { total as u32 };
            let put32 = |b: &mut Vec<u8>, off: usize, v: u32| {
                b[at + off..at + off + 4].copy_from_slice(&v.to_ne_bytes())
            };
            put32(&mut b, H3_NEXT, next);
            put32(&mut b, H3_SEC, f.sec);
            put32(&mut b, H3_NSEC, f.nsec);
            put32(&mut b, H3_SNAPLEN, f.bytes.len() as u32);
            put32(&mut b, H3_LEN, f.wire);
            let mut status = libc::TP_STATUS_USER;
            if let Some((tpid, tci)) = f.vlan {
                status |= libc::TP_STATUS_VLAN_VALID;
                put32(&mut b, H3_VLAN_TCI, u32::from(tci));
                if let Some(tpid) = tpid {
                    status |= libc::TP_STATUS_VLAN_TPID_VALID;
                    b[at + H3_VLAN_TPID..at + H3_VLAN_TPID + 2].copy_from_slice(&tpid.to_ne_bytes());
                }
            }
            put32(&mut b, H3_STATUS, status);
            b[at + H3_MAC..at + H3_MAC + 2].copy_from_slice(&MAC_OFF.to_ne_bytes());
            let mac = at + usize::from(MAC_OFF);
            b[mac..mac + f.bytes.len()].copy_from_slice(&f.bytes);
            at += total;
        }
        b
    }

    fn eth(i: u8, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        for (j, b) in f.iter_mut().enumerate().skip(14) {
            *b = i.wrapping_mul(7).wrapping_add(j as u8);
        }
        f
    }

    fn frames_of(block: &[u8], descs: &[FrameDesc]) -> Vec<Vec<u8>> {
        Batch::new(block, descs).iter().map(|f| f.data.to_vec()).collect()
    }

    #[test]
    fn header_layout_matches_the_kernel_abi() {
        assert_eq!(H3_SIZE, 48);
        assert_eq!(BD_STATUS, 8);
        assert_eq!(BD_NUM_PKTS, 12);
        assert_eq!(BD_FIRST_PKT, 16);
        assert_eq!(
            (H3_NEXT, H3_SEC, H3_NSEC, H3_SNAPLEN, H3_LEN, H3_STATUS, H3_MAC),
            (0, 4, 8, 12, 16, 20, 24)
        );
        assert_eq!((H3_VLAN_TCI, H3_VLAN_TPID), (32, 36));
        assert_eq!(MIN_FRAME_SIZE, 80);
    }

    #[test]
    fn a_block_walk_yields_every_frame_with_offsets_lengths_and_times() {
        let frames: Vec<TestFrame> = (0..5u8)
            .map(|i| TestFrame {
                bytes: eth(i, 60 + usize::from(i) * 100),
                wire: 60 + u32::from(i) * 100 + u32::from(i % 2) * 1000,
                sec: 1_700_000_000 + u32::from(i),
                nsec: 999_999_999 - u32::from(i),
                vlan: None,
            })
            .collect();
        let mut block = block_with(&frames, 8192);
        let mut descs = Vec::new();
        let walk = walk_block(&mut block, LinkType::Ethernet, 10, &mut descs);
        assert_eq!(walk.frames, 5);
        assert_eq!(walk.vlan_reinserted, 0);
        assert_eq!(frames_of(&block, &descs), frames.iter().map(|f| f.bytes.clone()).collect::<Vec<_>>());
        for (i, (d, f)) in descs.iter().zip(&frames).enumerate() {
            assert_eq!(d.record, 10 + i as u64);
            assert_eq!(d.wire_len, f.wire);
            assert_eq!(d.ts, Nanos::from_parts(u64::from(f.sec), f.nsec));
            assert_eq!(d.link, LinkType::Ethernet);
        }
        assert_eq!(walk.bytes, frames.iter().map(|f| f.bytes.len() as u64).sum::<u64>());
        assert_eq!(walk.last_ts, descs.iter().map(|d| d.ts).max().unwrap_or_default());
    }

    #[test]
    fn stripped_vlan_tags_are_put_back_in_place() {
        let plain = eth(1, 80);
        let frames = vec![
            TestFrame { bytes: plain.clone(), wire: 80, sec: 1, nsec: 0, vlan: Some((None, 0x2064)) },
            TestFrame { bytes: plain.clone(), wire: 80, sec: 1, nsec: 1, vlan: None },
            TestFrame { bytes: plain.clone(), wire: 80, sec: 1, nsec: 2, vlan: Some((Some(0x88a8), 0)) },
        ];
        let mut block = block_with(&frames, 4096);
        let mut descs = Vec::new();
        let walk = walk_block(&mut block, LinkType::Ethernet, 0, &mut descs);
        assert_eq!((walk.frames, walk.vlan_reinserted, walk.vlan_not_reinserted), (3, 2, 0));
        let tagged = |tpid: u16, tci: u16| {
            let mut f = plain[..12].to_vec();
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
            f.extend_from_slice(&plain[12..]);
            f
        };
        let got = frames_of(&block, &descs);
        assert_eq!(got[0], tagged(0x8100, 0x2064));
        assert_eq!(got[1], plain);
        assert_eq!(got[2], tagged(0x88a8, 0));
        assert_eq!((descs[0].len, descs[0].wire_len), (84, 84));
        assert_eq!(walk.bytes, 84 + 80 + 84);
    }

    #[test]
    fn a_corrupt_block_is_never_read_outside_its_bounds() {
        let frames: Vec<TestFrame> = (0..4u8)
            .map(|i| TestFrame { bytes: eth(i, 100), wire: 100, sec: 1, nsec: 0, vlan: None })
            .collect();
        let good = block_with(&frames, 2048);
        // Every single-byte corruption of the descriptors and headers, and random garbage.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..20_000usize {
            let mut block = good.clone();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if round < 10_000 {
                let at = round % 700;
                block[at] = (state >> 8) as u8;
            } else {
                for b in &mut block {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    *b = state as u8;
                }
            }
            let mut descs = Vec::new();
            walk_block(&mut block, LinkType::Ethernet, 0, &mut descs);
            for d in &descs {
                assert!(d.offset as usize + d.len as usize <= block.len());
            }
        }
        let mut empty: [u8; 0] = [];
        assert_eq!(walk_block(&mut empty, LinkType::Ethernet, 0, &mut Vec::new()).frames, 0);
    }

    #[test]
    fn options_the_kernel_would_refuse_are_explained() {
        let ok = AfPacketOptions::default();
        assert_eq!(validate(&ok, 4096), Ok(()));
        let bad = [
            AfPacketOptions { frame_size: 2008, ..ok.clone() },
            AfPacketOptions { frame_size: 64, ..ok.clone() },
            AfPacketOptions { block_size: 4097, ..ok.clone() },
            AfPacketOptions { block_size: 0, ..ok.clone() },
            AfPacketOptions { block_size: 4096, frame_size: 8192, ..ok.clone() },
            AfPacketOptions { block_count: 1, ..ok.clone() },
            AfPacketOptions { block_timeout_ms: 0, ..ok.clone() },
            AfPacketOptions { poll_timeout_ms: -1, ..ok.clone() },
            AfPacketOptions { block_size: 1 << 30, block_count: 1 << 20, frame_size: 80, ..ok.clone() },
        ];
        for o in bad {
            assert!(validate(&o, 4096).is_err(), "{o:?}");
        }
    }
}
