//! AF_XDP receive sockets: frames the XDP program redirects land in user-space memory (the
//! UMEM) and are handed to the pipeline without a copy.
//!
//! # How it works
//! One [`AfXdpSource`] per receive queue. It owns:
//! - the **UMEM**: `frames × frame_size` bytes of anonymous memory (huge pages when the system
//!   has them), cut into frames the kernel writes packets into;
//! - the **fill ring**: frames user space hands to the kernel to receive into;
//! - the **rx ring**: descriptors (UMEM offset, length) of received frames;
//! - a **completion ring** the kernel requires even for receive-only sockets (never used).
//!
//! [`AfXdpSource::next_batch`] first gives the frames of the previous batch back to the fill
//! ring (the borrow checker has ended that batch's borrow by then), then takes up to
//! `batch` descriptors from the rx ring and returns a [`Batch`] whose data is the whole UMEM
//! and whose descriptors point into it: frames are never copied or allocated here. With
//! `need_wakeup` (the default) the kernel only needs a `recvfrom`/`poll` nudge when it says
//! so in the fill ring's flags, which saves a syscall per batch while traffic flows.
//!
//! The ring protocol is the kernel's (`Documentation/networking/af_xdp.rst`): each ring has a
//! producer and a consumer index shared with the kernel; the producer publishes entries with a
//! release store of its index after writing them, the consumer reads the other side's index
//! with an acquire load before touching entries. Indices are free-running `u32`s; a ring's
//! size is a power of two and entries are at `index & (size - 1)`.
//!
//! **Why not a crate.** `xsk-rs` wraps the C libxdp (and needs it installed); `xdpilone` is
//! pure Rust but EUPL-1.2 licensed. Receive-only AF_XDP needs four rings' index arithmetic and
//! a few socket options, so Outpost keeps its own (tested in `tests/af_xdp.rs` against the
//! kernel, and the index arithmetic in unit tests here).
//!
//! **Timestamps.** AF_XDP gives no per-packet kernel timestamp (only through driver-specific
//! XDP metadata); a batch's frames get the realtime clock read when the batch was taken from
//! the rx ring. At the default batch size that is within microseconds of arrival.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use outpost_decode::{LinkType, Nanos};

use crate::error::SourceError;
use crate::iface;
use crate::source::{Batch, FrameDesc, PacketSource, SourceStats};

/// Whether to ask the driver for zero-copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ZeroCopy {
    /// Zero-copy when the driver supports it, copy mode otherwise (the default).
    #[default]
    Auto,
    /// Zero-copy or fail.
    On,
    /// Copy mode.
    Off,
}

/// Settings of one AF_XDP socket. Sizes are counts of entries or frames and must be powers of
/// two (ring sizes) — [`AfXdpOptions::validate`] says which one is not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfXdpOptions {
    /// Receive queue of the interface to bind to (default 0).
    pub queue: u32,
    /// Bytes per UMEM frame: 2048 or 4096 (default 4096, one page: what every driver takes).
    pub frame_size: u32,
    /// UMEM frames (default 16,384: 64 MiB with 4 KiB frames). At least `fill_size + batch`.
    pub frames: u32,
    /// Rx ring entries (default 4,096).
    pub rx_size: u32,
    /// Fill ring entries (default 8,192: the hardware ring plus the rx ring, as AF_XDP users
    /// recommend, so the NIC never runs out of frames while the rx ring is full).
    pub fill_size: u32,
    /// Completion ring entries (required by the kernel, unused when only receiving; default 64).
    pub completion_size: u32,
    /// Most frames per batch (default 256).
    pub batch: u32,
    /// Zero-copy request (default [`ZeroCopy::Auto`]).
    pub zero_copy: ZeroCopy,
    /// Use the need-wakeup protocol (default true).
    pub need_wakeup: bool,
    /// How long [`PacketSource::next_batch`] waits for frames before returning an empty batch,
    /// in milliseconds (default 100), so the caller can check its stop flag and idle clock.
    pub poll_timeout_ms: i32,
}

impl Default for AfXdpOptions {
    fn default() -> AfXdpOptions {
        AfXdpOptions {
            queue: 0,
            frame_size: 4096,
            frames: 16_384,
            rx_size: 4096,
            fill_size: 8192,
            completion_size: 64,
            batch: 256,
            zero_copy: ZeroCopy::Auto,
            need_wakeup: true,
            poll_timeout_ms: 100,
        }
    }
}

impl AfXdpOptions {
    /// Checks the sizes; the error names the setting.
    ///
    /// # Errors
    /// A message naming the first setting that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return Err(format!("frame_size {}: must be 2048 or 4096", self.frame_size));
        }
        for (name, v) in [
            ("rx_size", self.rx_size),
            ("fill_size", self.fill_size),
            ("completion_size", self.completion_size),
        ] {
            if !v.is_power_of_two() || v < 2 {
                return Err(format!("{name} {v}: must be a power of two ≥ 2"));
            }
        }
        if self.batch == 0 {
            return Err("batch 0: must be at least 1".to_string());
        }
        if u64::from(self.frames) < u64::from(self.fill_size) + u64::from(self.batch) {
            return Err(format!(
                "frames {}: must be at least fill_size + batch ({})",
                self.frames,
                u64::from(self.fill_size) + u64::from(self.batch)
            ));
        }
        if u64::from(self.frames) * u64::from(self.frame_size) > u64::from(u32::MAX) {
            return Err(format!(
                "frames {} × frame_size {}: the UMEM must stay below 4 GiB",
                self.frames, self.frame_size
            ));
        }
        Ok(())
    }
}

/// The kernel's `XDP_STATISTICS` counters of one socket (cumulative since it was created).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames dropped for reasons other than the two below.
    pub rx_dropped: u64,
    /// Invalid descriptors on the rx side.
    pub rx_invalid_descs: u64,
    /// Frames dropped because the rx ring was full (user space too slow).
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty (no frame to receive into).
    pub rx_fill_ring_empty: u64,
}

/// Kernel ABI structs (`linux/if_xdp.h`), declared here because libc's carry private padding.
#[repr(C)]
#[derive(Default)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct RingOffset {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fr: RingOffset,
    cr: RingOffset,
}

#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct XdpDesc {
    addr: u64,
    len: u32,
    options: u32,
}

#[repr(C)]
#[derive(Default)]
struct XdpStatistics {
    rx_dropped: u64,
    rx_invalid_descs: u64,
    tx_invalid_descs: u64,
    rx_ring_full: u64,
    rx_fill_ring_empty_descs: u64,
    tx_ring_empty_descs: u64,
}

/// An anonymous or ring memory mapping, unmapped on drop.
#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; access is synchronised by the ring
// protocol (atomics) and by `&mut self` on the source.
unsafe impl Send for Mapping {}

impl Mapping {
    fn map(len: usize, prot: i32, flags: i32, fd: RawFd, offset: i64) -> std::io::Result<Mapping> {
        // SAFETY: a fresh mapping (addr NULL) of `len` bytes; the result is checked.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, offset) };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        NonNull::new(p.cast::<u8>())
            .map(|ptr| Mapping { ptr, len })
            .ok_or_else(|| std::io::Error::other("mmap: NULL"))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; nothing borrows the memory past
        // its owner's lifetime.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Free-running ring indices and their arithmetic (kept apart from the memory so the
/// wrap-around logic is unit-tested).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    size: u32,
    /// Producer index as last seen/written by us.
    prod: u32,
    /// Consumer index as last seen/written by us.
    cons: u32,
}

impl Cursor {
    /// Entries available to a consumer.
    fn filled(&self) -> u32 {
        self.prod.wrapping_sub(self.cons)
    }
    /// Free entries for a producer.
    fn free(&self) -> u32 {
        self.size - self.filled()
    }
    /// Slot of index `i`.
    fn slot(&self, i: u32) -> usize {
        (i & (self.size - 1)) as usize
    }
}

/// One mapped ring: shared producer/consumer/flags words and an array of entries of type `T`.
#[derive(Debug)]
struct Ring<T> {
    _map: Mapping,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    entries: NonNull<T>,
    cur: Cursor,
}

// SAFETY: see `Mapping`; the raw pointers point into the owned mapping.
unsafe impl<T> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    fn map(fd: RawFd, off: &RingOffset, size: u32, pgoff: u64) -> std::io::Result<Ring<T>> {
        let len = usize::try_from(off.desc).unwrap_or(usize::MAX) + size as usize * std::mem::size_of::<T>();
        let map = Mapping::map(
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            i64::try_from(pgoff).unwrap_or(i64::MAX),
        )?;
        let at = |o: u64| -> NonNull<u8> {
            // SAFETY: the kernel's offsets lie inside the mapping of `len` bytes.
            unsafe { map.ptr.add(usize::try_from(o).unwrap_or(0)) }
        };
        let (producer, consumer, flags, entries) =
            (at(off.producer).cast(), at(off.consumer).cast(), at(off.flags).cast(), at(off.desc).cast());
        Ok(Ring { _map: map, producer, consumer, flags, entries, cur: Cursor { size, prod: 0, cons: 0 } })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points at the ring's aligned producer word for the mapping's lifetime.
        unsafe { self.producer.as_ref() }
    }
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as above, the consumer word.
        unsafe { self.consumer.as_ref() }
    }
    fn flags(&self) -> u32 {
        // SAFETY: as above, the flags word.
        unsafe { self.flags.as_ref() }.load(Ordering::Relaxed)
    }
    fn read(&self, i: u32) -> T {
        // SAFETY: `slot` < size, inside the entry array of the mapping.
        unsafe { self.entries.as_ptr().add(self.cur.slot(i)).read_volatile() }
    }
    fn write(&mut self, i: u32, v: T) {
        // SAFETY: as above; this side owns the slot (producer between its cached index and
        // the consumer's).
        unsafe { self.entries.as_ptr().add(self.cur.slot(i)).write_volatile(v) }
    }
}

/// An AF_XDP socket bound to one queue, as a [`PacketSource`].
#[derive(Debug)]
pub struct AfXdpSource {
    interface: String,
    queue: u32,
    fd: OwnedFd,
    umem: Mapping,
    fill: Ring<u64>,
    rx: Ring<XdpDesc>,
    _completion: Ring<u64>,
    /// UMEM frame addresses neither in the fill ring nor handed out.
    free: Vec<u64>,
    /// Addresses of the frames of the batch handed out last.
    lent: Vec<u64>,
    descs: Vec<FrameDesc>,
    options: AfXdpOptions,
    zero_copy: bool,
    stats: SourceStats,
    wakeups: u64,
    idle: bool,
}

fn last_err(interface: &str, what: &str) -> SourceError {
    live_err(interface, what, std::io::Error::last_os_error())
}

fn live_err(interface: &str, what: &str, e: std::io::Error) -> SourceError {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => {
            " (AF_XDP needs root or CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF and locked memory: CAP_IPC_LOCK or a large RLIMIT_MEMLOCK)"
        }
        Some(libc::ENOBUFS | libc::ENOMEM) => {
            " (not enough lockable memory: raise RLIMIT_MEMLOCK or shrink capture.af_xdp frames)"
        }
        _ => "",
    };
    SourceError::Live { interface: interface.to_string(), what: format!("{what}{hint}"), source: e }
}

fn setsockopt<T>(fd: RawFd, opt: i32, v: &T) -> std::io::Result<()> {
    // SAFETY: `v` is a valid `T` for the duration of the call, its size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            std::ptr::from_ref(v).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(0),
        )
    };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

fn getsockopt<T: Default>(fd: RawFd, opt: i32) -> std::io::Result<T> {
    let mut v = T::default();
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(0);
    // SAFETY: `v` has room for `len` bytes; the kernel writes at most that many.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_XDP, opt, std::ptr::from_mut(&mut v).cast(), &mut len) };
    if r == 0 { Ok(v) } else { Err(std::io::Error::last_os_error()) }
}

/// The kernel's counters of the AF_XDP socket `fd` (also through a duplicate of its
/// descriptor, which keeps the socket open after its source is gone).
///
/// # Errors
/// The OS error of `getsockopt(XDP_STATISTICS)` (e.g. `fd` is not an AF_XDP socket).
pub fn socket_stats(fd: RawFd) -> std::io::Result<XskStats> {
    let s: XdpStatistics = getsockopt(fd, libc::XDP_STATISTICS)?;
    Ok(XskStats {
        rx_dropped: s.rx_dropped,
        rx_invalid_descs: s.rx_invalid_descs,
        rx_ring_full: s.rx_ring_full,
        rx_fill_ring_empty: s.rx_fill_ring_empty_descs,
    })
}

/// The interface's index, or an error naming it.
///
/// # Errors
/// [`SourceError::Live`] when the name is invalid or there is no such interface.
pub fn interface_index(interface: &str) -> Result<u32, SourceError> {
    let name = iface::c_name(interface).map_err(|e| live_err(interface, "interface name", e))?;
    iface::index(&name).map_err(|e| live_err(interface, "no such network interface", e))
}

/// The realtime clock as [`Nanos`]: a live source's idle clock and AF_XDP's batch timestamp
/// (the only places wall time enters the pipeline).
#[must_use]
pub fn realtime_now() -> Nanos {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl AfXdpSource {
    /// Creates a socket on `interface`'s queue `options.queue` with its own UMEM and binds it.
    /// The XDP program must then be told about it (`XdpProgram::register_socket(queue, fd)`)
    /// before frames arrive.
    ///
    /// With [`ZeroCopy::Auto`] it binds in zero-copy mode and falls back to copy mode when the
    /// driver refuses; [`AfXdpSource::zero_copy`] says which one is in use.
    ///
    /// # Errors
    /// [`SourceError::Live`] naming the interface and the step that failed (with the
    /// capabilities needed when the kernel said `EPERM`).
    pub fn open(interface: &str, options: &AfXdpOptions) -> Result<AfXdpSource, SourceError> {
        options.validate().map_err(|m| {
            live_err(interface, &format!("capture.af_xdp: {m}"), std::io::ErrorKind::InvalidInput.into())
        })?;
        let ifindex = interface_index(interface)?;
        let attempts: &[ZeroCopy] = match options.zero_copy {
            ZeroCopy::Auto => &[ZeroCopy::On, ZeroCopy::Off],
            ZeroCopy::On => &[ZeroCopy::On],
            ZeroCopy::Off => &[ZeroCopy::Off],
        };
        let mut last = None;
        for &zc in attempts {
            match AfXdpSource::open_with(interface, ifindex, options, zc) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| live_err(interface, "bind", std::io::ErrorKind::Unsupported.into())))
    }

    fn open_with(
        interface: &str,
        ifindex: u32,
        o: &AfXdpOptions,
        zc: ZeroCopy,
    ) -> Result<AfXdpSource, SourceError> {
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(last_err(interface, "AF_XDP socket"));
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let len = o.frames as usize * o.frame_size as usize;
        let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
        let umem = Mapping::map(len, libc::PROT_READ | libc::PROT_WRITE, anon | libc::MAP_HUGETLB, -1, 0)
            .or_else(|_| Mapping::map(len, libc::PROT_READ | libc::PROT_WRITE, anon, -1, 0))
            .map_err(|e| live_err(interface, "UMEM allocation", e))?;
        let reg = UmemReg {
            addr: umem.ptr.as_ptr() as u64,
            len: len as u64,
            chunk_size: o.frame_size,
            ..UmemReg::default()
        };
        let f = fd.as_raw_fd();
        setsockopt(f, libc::XDP_UMEM_REG, &reg).map_err(|e| live_err(interface, "UMEM registration", e))?;
        setsockopt(f, libc::XDP_UMEM_FILL_RING, &o.fill_size)
            .map_err(|e| live_err(interface, "fill ring size", e))?;
        setsockopt(f, libc::XDP_UMEM_COMPLETION_RING, &o.completion_size)
            .map_err(|e| live_err(interface, "completion ring size", e))?;
        setsockopt(f, libc::XDP_RX_RING, &o.rx_size).map_err(|e| live_err(interface, "rx ring size", e))?;
        let off: MmapOffsets =
            getsockopt(f, libc::XDP_MMAP_OFFSETS).map_err(|e| live_err(interface, "ring offsets", e))?;
        let mut fill = Ring::<u64>::map(f, &off.fr, o.fill_size, libc::XDP_UMEM_PGOFF_FILL_RING)
            .map_err(|e| live_err(interface, "fill ring mmap", e))?;
        let completion =
            Ring::<u64>::map(f, &off.cr, o.completion_size, libc::XDP_UMEM_PGOFF_COMPLETION_RING)
                .map_err(|e| live_err(interface, "completion ring mmap", e))?;
        let rx =
            Ring::<XdpDesc>::map(f, &off.rx, o.rx_size, u64::try_from(libc::XDP_PGOFF_RX_RING).unwrap_or(0))
                .map_err(|e| live_err(interface, "rx ring mmap", e))?;

        // Every frame starts free; the fill ring gets as many as it holds before bind, so the
        // kernel has frames from the first packet on.
        let mut free: Vec<u64> =
            (0..u64::from(o.frames)).rev().map(|i| i * u64::from(o.frame_size)).collect();
        fill.cur.prod = fill.producer().load(Ordering::Relaxed);
        fill.cur.cons = fill.consumer().load(Ordering::Acquire);
        let n = fill.cur.free().min(u32::try_from(free.len()).unwrap_or(u32::MAX));
        for _ in 0..n {
            if let Some(a) = free.pop() {
                let i = fill.cur.prod;
                fill.write(i, a);
                fill.cur.prod = i.wrapping_add(1);
            }
        }
        fill.producer().store(fill.cur.prod, Ordering::Release);

        let mut flags = match zc {
            ZeroCopy::On => libc::XDP_ZEROCOPY,
            _ => libc::XDP_COPY,
        };
        if o.need_wakeup {
            flags |= libc::XDP_USE_NEED_WAKEUP;
        }
        let sa = SockaddrXdp {
            family: u16::try_from(libc::AF_XDP).unwrap_or(44),
            flags,
            ifindex,
            queue_id: o.queue,
            shared_umem_fd: 0,
        };
        // SAFETY: `sa` is a valid sockaddr_xdp of the size passed.
        let r = unsafe {
            libc::bind(
                f,
                std::ptr::from_ref(&sa).cast(),
                libc::socklen_t::try_from(std::mem::size_of::<SockaddrXdp>()).unwrap_or(0),
            )
        };
        if r != 0 {
            let mode = if zc == ZeroCopy::On { "zero-copy" } else { "copy" };
            return Err(last_err(interface, &format!("bind to queue {} in {mode} mode", o.queue)));
        }
        let opts: u32 = getsockopt(f, libc::XDP_OPTIONS).unwrap_or(0);
        let mut rx = rx;
        rx.cur.cons = rx.consumer().load(Ordering::Relaxed);
        rx.cur.prod = rx.cur.cons;
        Ok(AfXdpSource {
            interface: interface.to_string(),
            queue: o.queue,
            fd,
            umem,
            fill,
            rx,
            _completion: completion,
            free,
            lent: Vec::with_capacity(o.batch as usize),
            descs: Vec::with_capacity(o.batch as usize),
            options: o.clone(),
            zero_copy: opts & libc::XDP_OPTIONS_ZEROCOPY != 0,
            stats: SourceStats::default(),
            wakeups: 0,
            idle: false,
        })
    }

    /// The socket's descriptor (for the XDP program's socket map).
    #[must_use]
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The receive queue it is bound to.
    #[must_use]
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The interface.
    #[must_use]
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// True when the driver runs the socket in zero-copy mode (false: copy mode).
    #[must_use]
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Times the kernel had to be woken (need-wakeup protocol).
    #[must_use]
    pub fn wakeups(&self) -> u64 {
        self.wakeups
    }

    /// The kernel's counters for this socket.
    ///
    /// # Errors
    /// The OS error of `getsockopt(XDP_STATISTICS)`.
    pub fn kernel_stats(&self) -> std::io::Result<XskStats> {
        socket_stats(self.fd.as_raw_fd())
    }

    /// Gives lent and free frames to the fill ring (as many as it has room for), publishes
    /// them, and wakes the kernel if it asked for it.
    fn refill(&mut self) {
        self.free.append(&mut self.lent);
        if !self.free.is_empty() {
            self.fill.cur.cons = self.fill.consumer().load(Ordering::Acquire);
            let n = self.fill.cur.free().min(u32::try_from(self.free.len()).unwrap_or(u32::MAX));
            if n > 0 {
                for _ in 0..n {
                    if let Some(a) = self.free.pop() {
                        let i = self.fill.cur.prod;
                        self.fill.write(i, a);
                        self.fill.cur.prod = i.wrapping_add(1);
                    }
                }
                self.fill.producer().store(self.fill.cur.prod, Ordering::Release);
            }
        }
        if self.options.need_wakeup && self.fill.flags() & libc::XDP_RING_NEED_WAKEUP != 0 {
            self.wake();
        }
    }

    fn wake(&mut self) {
        self.wakeups += 1;
        // SAFETY: a zero-length non-blocking recvfrom on our socket: the documented way to kick
        // the kernel's receive processing.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    }

    /// Takes up to `batch` descriptors from the rx ring into `descs` / `lent`.
    fn take(&mut self) -> u32 {
        self.rx.cur.prod = self.rx.producer().load(Ordering::Acquire);
        let n = self.rx.cur.filled().min(self.options.batch);
        if n == 0 {
            return 0;
        }
        let ts = realtime_now();
        let umem_len = self.umem.len as u64;
        for k in 0..n {
            let d = self.rx.read(self.rx.cur.cons.wrapping_add(k));
            // In aligned mode the address may carry a headroom offset inside its frame; the
            // frame to give back is the aligned base.
            let base = d.addr - d.addr % u64::from(self.options.frame_size);
            self.lent.push(base);
            let ok = d.addr.checked_add(u64::from(d.len)).is_some_and(|end| end <= umem_len);
            let record = self.stats.records;
            self.stats.records += 1;
            if !ok {
                continue;
            }
            self.stats.frames += 1;
            self.stats.bytes += u64::from(d.len);
            self.descs.push(FrameDesc {
                ts,
                offset: u32::try_from(d.addr).unwrap_or(u32::MAX),
                len: d.len,
                wire_len: d.len,
                link: LinkType::Ethernet,
                record,
            });
        }
        self.rx.cur.cons = self.rx.cur.cons.wrapping_add(n);
        // The descriptors are copied: their slots go back to the kernel now; the frames they
        // point at stay ours until `refill`.
        self.rx.consumer().store(self.rx.cur.cons, Ordering::Release);
        n
    }

    fn poll(&mut self) -> Result<(), SourceError> {
        let mut p = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, self.options.poll_timeout_ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(live_err(&self.interface, "poll", e));
            }
        }
        Ok(())
    }
}

impl PacketSource for AfXdpSource {
    fn next_batch(&mut self) -> Result<Option<Batch<'_>>, SourceError> {
        self.descs.clear();
        self.refill();
        let mut n = self.take();
        if n == 0 && self.options.poll_timeout_ms != 0 {
            self.poll()?;
            self.refill();
            n = self.take();
        }
        self.idle = n == 0;
        // SAFETY: the UMEM mapping lives as long as `self`; the kernel writes only frames that
        // are in the fill ring, never the ones described in `descs` (lent to the caller until
        // the next call).
        let data = unsafe { std::slice::from_raw_parts(self.umem.ptr.as_ptr(), self.umem.len) };
        Ok(Some(Batch::new(data, &self.descs)))
    }

    fn stats(&self) -> SourceStats {
        let mut s = self.stats.clone();
        if let Ok(k) = self.kernel_stats() {
            s.dropped = k.rx_dropped + k.rx_ring_full + k.rx_invalid_descs;
        }
        s
    }

    fn idle_time(&self) -> Option<Nanos> {
        Some(realtime_now())
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn set_poll_timeout(&mut self, ms: i32) {
        self.options.poll_timeout_ms = ms;
    }

    fn has_pending(&mut self) -> bool {
        self.refill();
        self.rx.producer().load(Ordering::Acquire) != self.rx.cur.cons
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_counts_across_index_wraparound() {
        let c = Cursor { size: 8, prod: 2, cons: u32::MAX - 1 };
        assert_eq!(c.filled(), 4);
        assert_eq!(c.free(), 4);
        assert_eq!(c.slot(u32::MAX), 7);
        assert_eq!(c.slot(2), 2);
        let full = Cursor { size: 8, prod: 8, cons: 0 };
        assert_eq!(full.free(), 0);
    }

    #[test]
    fn options_name_the_bad_setting() {
        let bad = AfXdpOptions { rx_size: 1000, ..AfXdpOptions::default() };
        assert!(bad.validate().is_err_and(|m| m.starts_with("rx_size 1000")));
        let few = AfXdpOptions { frames: 100, ..AfXdpOptions::default() };
        assert!(few.validate().is_err_and(|m| m.starts_with("frames 100")));
        assert!(AfXdpOptions::default().validate().is_ok());
    }

    #[test]
    fn missing_interface_is_named() {
        let e = AfXdpSource::open("outpost-nope0", &AfXdpOptions::default()).err().map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("outpost-nope0") && m.contains("no such network interface")));
    }
}
