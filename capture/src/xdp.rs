//! The user-space side of Outpost's XDP program (`xdp-ebpf`): loading it, filling its maps,
//! attaching it to an interface, live blocklist updates, counters, and `BPF_PROG_TEST_RUN`.
//!
//! The program object is built by `capture/build.rs` (aya-build, nightly + bpf-linker) and
//! embedded in this crate, so a sensor binary carries its own XDP program. What the program
//! decides per frame is documented in `xdp-ebpf/src/main.rs`; map layouts and counter indices
//! live in `outpost_xdp_common`.
//!
//! # Attach and detach
//!
//! [`XdpProgram::attach`] attaches through aya 0.14's `Xdp::attach`, which first tries a
//! **`bpf_link`** (`BPF_LINK_CREATE`, Linux ≥ 5.9). A `bpf_link` lives exactly as long as its
//! file descriptor: the program is detached when the [`XdpProgram`] is dropped or
//! [`XdpProgram::detach`]ed, and also when the process dies in any way (`SIGKILL`, a panic
//! with `panic = "abort"`), because the kernel closes the descriptor. Only if the kernel
//! rejects `BPF_LINK_CREATE` with `EINVAL` (kernels before 5.9) does aya fall back to the
//! legacy netlink attach (`IFLA_XDP_FD`), which **survives** its process;
//! [`XdpProgram::attachment`] says which one was used, and [`detach_stale`] removes programs a
//! killed run left behind that way. On this project's test kernels (6.x) every attach is a
//! `bpf_link` (`tests/xdp_program.rs` asserts it).
//!
//! # Privileges
//!
//! Loading and attaching need root, or `CAP_BPF`, `CAP_NET_ADMIN`, `CAP_PERFMON` and
//! `CAP_NET_RAW`, plus locked memory for the maps on kernels before 5.11 (which charge BPF
//! memory to `RLIMIT_MEMLOCK`): [`XdpProgram::load`] raises `RLIMIT_MEMLOCK` itself, which needs
//! `CAP_SYS_RESOURCE` or a high enough hard limit (`CAP_IPC_LOCK` lifts the limit). A refusal
//! surfaces as [`XdpError::PermissionDenied`], which names all of this.

use std::{
    collections::BTreeSet,
    io,
    net::IpAddr,
    os::fd::{AsFd as _, AsRawFd as _, RawFd},
    sync::OnceLock,
};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{
        Array, MapData, MapError, PerCpuArray, XskMap,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{
        ProgramError, TestRun as _, TestRunOptions, Xdp, links::LinkType, loaded_links, loaded_programs,
        xdp::XdpLinkId,
    },
};
use outpost_xdp_common::{
    BLOCKLIST_MAX_ENTRIES, CONFIG_BLOCK_V4, CONFIG_BLOCK_V6, CONFIG_PASS_PORTS, CONFIG_PASS_V4,
    CONFIG_PASS_V6, Counter, IPV4_BITS, IPV6_BITS, MAX_QUEUES, PASS_MAX_ENTRIES, PROGRAM_NAME, XdpConfig,
    maps,
};

/// The XDP object built by `build.rs`, aligned for the ELF parser.
static PROGRAM_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/outpost-xdp"));

/// Which XDP mode [`XdpProgram::attach`] should use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpAttach {
    /// Native (driver) mode, falling back to generic mode when native fails for any reason
    /// other than permissions, a missing interface or another program already attached; the
    /// reason is kept in [`XdpProgram::native_fallback_reason`].
    #[default]
    Auto,
    /// Native (driver) mode only: the driver runs the program before allocating an skb.
    Native,
    /// Generic (skb) mode only: works on every interface, slower, and AF_XDP then copies.
    Generic,
}

/// The XDP mode a program got attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// Generic (skb) mode (`XDP_FLAGS_SKB_MODE`).
    Generic,
}

impl XdpMode {
    fn aya(self) -> aya::programs::XdpMode {
        match self {
            XdpMode::Native => aya::programs::XdpMode::Driver,
            XdpMode::Generic => aya::programs::XdpMode::Skb,
        }
    }

    /// The `ip link` keyword for this mode (`xdpdrv` / `xdpgeneric`).
    fn ip_keyword(self) -> &'static str {
        match self {
            XdpMode::Native => "xdpdrv",
            XdpMode::Generic => "xdpgeneric",
        }
    }
}

impl std::fmt::Display for XdpMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        })
    }
}

/// How the kernel holds an attachment (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttachment {
    /// A `bpf_link` owned by this process: detached when its descriptor closes, whatever ends
    /// the process.
    BpfLink {
        /// Kernel link id (`bpftool link show id N`).
        link_id: u32,
    },
    /// The legacy netlink attach: survives this process; [`detach_stale`] removes it.
    Netlink,
}

/// What [`XdpProgram::load`] puts in the program's maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpSetup {
    /// Mode the caller will pass to [`XdpProgram::attach`] (`load` itself does not attach).
    pub attach: XdpAttach,
    /// Source prefixes (address, prefix length in bits) whose frames are dropped. Host bits
    /// below the prefix length are ignored.
    pub blocklist: Vec<(IpAddr, u8)>,
    /// Capacity of each blocklist trie (IPv4 and IPv6 alike), including entries added later
    /// with [`XdpProgram::block`]. Default [`BLOCKLIST_MAX_ENTRIES`].
    pub blocklist_max_entries: u32,
    /// Prefixes whose frames (source or destination inside) stay with the kernel instead of
    /// being captured.
    pub pass_nets: Vec<(IpAddr, u8)>,
    /// TCP/UDP/SCTP ports whose frames (source or destination port) stay with the kernel.
    pub pass_ports: Vec<u16>,
}

impl Default for XdpSetup {
    fn default() -> Self {
        Self {
            attach: XdpAttach::Auto,
            blocklist: Vec::new(),
            blocklist_max_entries: BLOCKLIST_MAX_ENTRIES,
            pass_nets: Vec::new(),
            pass_ports: Vec::new(),
        }
    }
}

/// The program's counters, summed over CPUs (meanings: [`outpost_xdp_common::Counter`]).
/// Serialized with these field names into `outpost run`'s summary (`capture.xdp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct XdpCounters {
    /// Frames the program saw.
    pub seen: u64,
    /// Frames redirected to an AF_XDP socket.
    pub redirected: u64,
    /// IP frames passed to the kernel because no socket is bound on their receive queue.
    pub no_socket: u64,
    /// Frames dropped for a blocklisted source.
    pub blocked: u64,
    /// Non-IP or runt frames passed to the kernel.
    pub passed_not_ip: u64,
    /// IP frames the capture filter (pass subnets / ports) left to the kernel.
    pub passed_filter: u64,
    /// IP frames with the IP or transport header cut short (also in their verdict counter).
    pub truncated: u64,
}

impl XdpCounters {
    /// The counts since `earlier` (an earlier reading of the same program).
    #[must_use]
    pub fn since(&self, earlier: &XdpCounters) -> XdpCounters {
        XdpCounters {
            seen: self.seen.saturating_sub(earlier.seen),
            redirected: self.redirected.saturating_sub(earlier.redirected),
            no_socket: self.no_socket.saturating_sub(earlier.no_socket),
            blocked: self.blocked.saturating_sub(earlier.blocked),
            passed_not_ip: self.passed_not_ip.saturating_sub(earlier.passed_not_ip),
            passed_filter: self.passed_filter.saturating_sub(earlier.passed_filter),
            truncated: self.truncated.saturating_sub(earlier.truncated),
        }
    }

    fn slot(&mut self, counter: Counter) -> &mut u64 {
        match counter {
            Counter::Seen => &mut self.seen,
            Counter::Redirected => &mut self.redirected,
            Counter::NoSocket => &mut self.no_socket,
            Counter::Blocked => &mut self.blocked,
            Counter::PassedNotIp => &mut self.passed_not_ip,
            Counter::PassedFilter => &mut self.passed_filter,
            Counter::Truncated => &mut self.truncated,
        }
    }
}

/// Why loading, attaching or updating the XDP program failed. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The interface does not exist (in this network namespace).
    #[error(
        "network interface `{ifname}` not found (see `ip link`; it must exist in this network namespace)"
    )]
    InterfaceNotFound {
        /// The name asked for.
        ifname: String,
    },
    /// The interface name cannot name an interface (empty, too long, or containing NUL).
    #[error("invalid network interface name {ifname:?}: 1 to 15 bytes, no NUL")]
    InvalidInterfaceName {
        /// The name asked for.
        ifname: String,
    },
    /// The kernel refused (EPERM / EACCES).
    #[error(
        "{action}: permission denied. XDP needs root, or the capabilities CAP_BPF, CAP_NET_ADMIN, \
         CAP_PERFMON and CAP_NET_RAW, and on kernels before 5.11 enough locked memory for the maps \
         (CAP_IPC_LOCK, or raise RLIMIT_MEMLOCK, e.g. `ulimit -l unlimited` / systemd \
         `LimitMEMLOCK=infinity`){memlock}"
    )]
    PermissionDenied {
        /// What was refused.
        action: String,
        /// A note on the `RLIMIT_MEMLOCK` raise, when it failed.
        memlock: String,
    },
    /// The driver has no native XDP support.
    #[error(
        "interface `{ifname}`: the driver does not support native XDP ({reason}); attach in generic \
         mode (`Generic`, or `Auto` to fall back automatically)"
    )]
    NativeUnsupported {
        /// The interface.
        ifname: String,
        /// The kernel's answer.
        reason: String,
    },
    /// Another XDP program occupies the interface.
    #[error("interface `{ifname}` already has an XDP program attached: {existing}")]
    AlreadyAttached {
        /// The interface.
        ifname: String,
        /// What is attached, and how to remove it.
        existing: String,
    },
    /// This [`XdpProgram`] is attached already.
    #[error("the Outpost XDP program is already attached to `{ifname}`; detach it before attaching again")]
    AttachedTwice {
        /// Where it is attached.
        ifname: String,
    },
    /// Attaching failed for another reason.
    #[error("attaching XDP to `{ifname}` in {mode} mode failed{fallback}: {source}")]
    Attach {
        /// The interface.
        ifname: String,
        /// The mode tried last.
        mode: XdpMode,
        /// Why native mode was given up, for [`XdpAttach::Auto`].
        fallback: String,
        /// aya's error.
        #[source]
        source: Box<ProgramError>,
    },
    /// The verifier rejected the program: a bug in `xdp-ebpf` or a kernel too old for it.
    #[error("the kernel verifier rejected the XDP program ({errno}); its log:\n{log}")]
    Verifier {
        /// The `BPF_PROG_LOAD` error.
        errno: io::Error,
        /// The verifier log.
        log: String,
    },
    /// The embedded object is empty: the crate was built with `AYA_BUILD_SKIP=1`.
    #[error(
        "this build carries no XDP program (built with AYA_BUILD_SKIP=1); rebuild without it after `make deps`"
    )]
    NotBuilt,
    /// The object lacks a program or map the loader expects (xdp-ebpf and xdp-common disagree).
    #[error("the XDP object has no {kind} named `{name}` (xdp-ebpf and xdp-common disagree)")]
    Missing {
        /// "program" or "map".
        kind: &'static str,
        /// The name looked for.
        name: &'static str,
    },
    /// Loading the object failed otherwise.
    #[error("loading the XDP program failed: {0}")]
    Load(#[source] Box<EbpfError>),
    /// A map operation failed.
    #[error("XDP map `{map}`: {what}: {source}")]
    Map {
        /// The map.
        map: &'static str,
        /// The operation.
        what: String,
        /// aya's error.
        #[source]
        source: Box<MapError>,
    },
    /// A blocklist trie is full.
    #[error(
        "the XDP blocklist is full ({max_entries} prefixes per address family); raise `blocklist_max_entries`"
    )]
    BlocklistFull {
        /// The trie capacity.
        max_entries: u32,
    },
    /// A prefix longer than its address.
    #[error("invalid prefix {addr}/{prefix_len}: an {family} prefix has at most {max} bits")]
    InvalidPrefix {
        /// The address given.
        addr: IpAddr,
        /// The prefix length given.
        prefix_len: u8,
        /// "IPv4" / "IPv6".
        family: &'static str,
        /// 32 or 128.
        max: u32,
    },
    /// A receive queue beyond the socket map.
    #[error("receive queue {queue} is beyond the XDP socket map ({max} queues)")]
    QueueOutOfRange {
        /// The queue.
        queue: u32,
        /// [`MAX_QUEUES`].
        max: u32,
    },
    /// The kernel refused a socket for the socket map.
    #[error(
        "registering the AF_XDP socket for queue {queue} failed (it must be an AF_XDP socket bound to \
         that queue, with its rings set up): {source}"
    )]
    Socket {
        /// The queue.
        queue: u32,
        /// aya's error.
        #[source]
        source: Box<MapError>,
    },
    /// `BPF_PROG_TEST_RUN` refuses frames shorter than an Ethernet header.
    #[error("BPF_PROG_TEST_RUN needs at least 14 bytes (an Ethernet header), got {len}")]
    FrameTooShort {
        /// Frame length.
        len: usize,
    },
    /// `BPF_PROG_TEST_RUN` failed.
    #[error("BPF_PROG_TEST_RUN of a {len}-byte frame failed: {source}")]
    TestRun {
        /// Frame length.
        len: usize,
        /// aya's error.
        #[source]
        source: Box<ProgramError>,
    },
    /// Reading the interface's XDP state over netlink or the program list failed.
    #[error("{what}: {source}")]
    Query {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The attachment of a loaded program.
#[derive(Debug)]
struct Attached {
    ifname: String,
    mode: XdpMode,
    link: XdpLinkId,
    attachment: XdpAttachment,
}

/// Outpost's XDP program, loaded into the kernel with its maps filled.
///
/// Dropping it detaches the program (if attached) and unloads it with its maps. Everything
/// that changes the kernel's state takes `&mut self`, so one owner serialises blocklist
/// updates with the config flags they keep right; counters and test runs take `&self`.
#[derive(Debug)]
pub struct XdpProgram {
    ebpf: Ebpf,
    /// Blocklist entries (network address with host bits cleared, prefix length), mirrored
    /// here so the config flags follow the tries without reading them back.
    blocked: BTreeSet<(IpAddr, u8)>,
    /// `CONFIG_*` flags as last written.
    flags: u32,
    blocklist_max_entries: u32,
    attached: Option<Attached>,
    native_fallback: Option<String>,
}

impl XdpProgram {
    /// Loads the program (verifier included) and fills its maps from `setup`; does not attach.
    ///
    /// Guarantees: on `Ok` every blocklist entry, pass subnet and pass port is in place and
    /// the config flags say which lookups are worth doing; nothing is attached anywhere.
    pub fn load(setup: &XdpSetup) -> Result<XdpProgram, XdpError> {
        if PROGRAM_OBJECT.is_empty() {
            return Err(XdpError::NotBuilt);
        }
        let memlock = raise_memlock_limit();
        let pass_max = u32::try_from(setup.pass_nets.len()).unwrap_or(u32::MAX).max(PASS_MAX_ENTRIES);
        let blocklist_max_entries = setup.blocklist_max_entries.max(1);
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(maps::BLOCK_V4, blocklist_max_entries)
            .map_max_entries(maps::BLOCK_V6, blocklist_max_entries)
            .map_max_entries(maps::PASS_V4, pass_max)
            .map_max_entries(maps::PASS_V6, pass_max)
            .load(PROGRAM_OBJECT)
            .map_err(|err| load_error(err, &memlock))?;
        let program = xdp_program_mut(&mut ebpf)?;
        program.load().map_err(|err| match err {
            ProgramError::LoadError { io_error, verifier_log } => {
                if is_permission(io_error.raw_os_error()) {
                    XdpError::PermissionDenied {
                        action: "loading the XDP program".into(),
                        memlock: memlock.clone(),
                    }
                } else {
                    XdpError::Verifier { errno: io_error, log: verifier_log.to_string() }
                }
            }
            other => load_error(EbpfError::ProgramError(other), &memlock),
        })?;

        let mut xdp = XdpProgram {
            ebpf,
            blocked: BTreeSet::new(),
            flags: 0,
            blocklist_max_entries,
            attached: None,
            native_fallback: None,
        };
        let mut flags = 0;
        for &(addr, prefix_len) in &setup.pass_nets {
            let (net, prefix_len) = network(addr, prefix_len)?;
            match net {
                IpAddr::V4(v4) => {
                    let mut trie = xdp.trie_v4(maps::PASS_V4)?;
                    insert_prefix(&mut trie, maps::PASS_V4, Key::new(u32::from(prefix_len), v4.octets()))?;
                    flags |= CONFIG_PASS_V4;
                }
                IpAddr::V6(v6) => {
                    let mut trie = xdp.trie_v6(maps::PASS_V6)?;
                    insert_prefix(&mut trie, maps::PASS_V6, Key::new(u32::from(prefix_len), v6.octets()))?;
                    flags |= CONFIG_PASS_V6;
                }
            }
        }
        if !setup.pass_ports.is_empty() {
            let map = xdp.ebpf.map_mut(maps::PASS_PORTS).ok_or(missing_map(maps::PASS_PORTS))?;
            let mut ports: Array<&mut MapData, u8> =
                Array::try_from(map).map_err(|source| map_error(maps::PASS_PORTS, "opening", source))?;
            for &port in &setup.pass_ports {
                ports
                    .set(u32::from(port), 1, 0)
                    .map_err(|source| map_error(maps::PASS_PORTS, format!("marking port {port}"), source))?;
            }
            flags |= CONFIG_PASS_PORTS;
        }
        xdp.write_flags(flags)?;
        for &(addr, prefix_len) in &setup.blocklist {
            xdp.block(addr, prefix_len)?;
        }
        Ok(xdp)
    }

    /// Attaches the program to `ifname` in the requested mode and returns the mode it got.
    ///
    /// The attachment is a `bpf_link` on kernels ≥ 5.9 (see the module documentation), so it
    /// ends with this value or this process. [`XdpAttach::Auto`] tries native mode first and
    /// falls back to generic mode; [`XdpProgram::native_fallback_reason`] then says why.
    pub fn attach(&mut self, ifname: &str, attach: XdpAttach) -> Result<XdpMode, XdpError> {
        if let Some(attached) = &self.attached {
            return Err(XdpError::AttachedTwice { ifname: attached.ifname.clone() });
        }
        let ifindex = interface_index(ifname)?;
        self.native_fallback = None;
        match attach {
            XdpAttach::Native => self.attach_mode(ifname, ifindex, XdpMode::Native, String::new()),
            XdpAttach::Generic => self.attach_mode(ifname, ifindex, XdpMode::Generic, String::new()),
            XdpAttach::Auto => match self.attach_mode(ifname, ifindex, XdpMode::Native, String::new()) {
                Ok(mode) => Ok(mode),
                Err(
                    err @ (XdpError::InterfaceNotFound { .. }
                    | XdpError::PermissionDenied { .. }
                    | XdpError::AlreadyAttached { .. }),
                ) => Err(err),
                Err(native) => {
                    let reason = native.to_string();
                    let fallback = format!(" (after native mode failed: {reason})");
                    let mode = self.attach_mode(ifname, ifindex, XdpMode::Generic, fallback)?;
                    self.native_fallback = Some(reason);
                    Ok(mode)
                }
            },
        }
    }

    fn attach_mode(
        &mut self,
        ifname: &str,
        ifindex: u32,
        mode: XdpMode,
        fallback: String,
    ) -> Result<XdpMode, XdpError> {
        let program = xdp_program_mut(&mut self.ebpf)?;
        let link = match program.attach_to_if_index(ifindex, mode.aya()) {
            Ok(link) => link,
            Err(source) => return Err(attach_error(ifname, ifindex, mode, fallback, source)),
        };
        let program_id = program.info().map(|info| info.id()).unwrap_or(0);
        let attachment = find_link(program_id)
            .map_or(XdpAttachment::Netlink, |link_id| XdpAttachment::BpfLink { link_id });
        self.attached = Some(Attached { ifname: ifname.to_owned(), mode, link, attachment });
        Ok(mode)
    }

    /// The mode the program is attached in, `None` when not attached.
    pub fn mode(&self) -> Option<XdpMode> {
        self.attached.as_ref().map(|attached| attached.mode)
    }

    /// How the kernel holds the attachment, `None` when not attached.
    pub fn attachment(&self) -> Option<XdpAttachment> {
        self.attached.as_ref().map(|attached| attached.attachment)
    }

    /// After an [`XdpAttach::Auto`] attach that ended in generic mode: why native mode failed.
    pub fn native_fallback_reason(&self) -> Option<&str> {
        self.native_fallback.as_deref()
    }

    /// The kernel's id of the loaded program (`bpftool prog show id N`).
    pub fn program_id(&self) -> Result<u32, XdpError> {
        let program = xdp_program(&self.ebpf)?;
        program.info().map(|info| info.id()).map_err(|err| XdpError::Query {
            what: "reading the XDP program's id".into(),
            source: io::Error::other(err.to_string()),
        })
    }

    /// Binds the AF_XDP socket `fd` to receive queue `queue`: from now on frames the program
    /// captures on that queue go to it. `fd` must be an AF_XDP socket bound to `queue` of the
    /// interface the program is attached to (the kernel checks the socket is set up; a socket
    /// bound to another queue gets nothing — the kernel drops such redirects).
    pub fn register_socket(&mut self, queue: u32, fd: RawFd) -> Result<(), XdpError> {
        if queue >= MAX_QUEUES {
            return Err(XdpError::QueueOutOfRange { queue, max: MAX_QUEUES });
        }
        let map = self.ebpf.map_mut(maps::SOCKETS).ok_or(missing_map(maps::SOCKETS))?;
        let mut sockets =
            XskMap::try_from(map).map_err(|source| map_error(maps::SOCKETS, "opening", source))?;
        sockets.set(queue, fd, 0).map_err(|source| XdpError::Socket { queue, source: Box::new(source) })
    }

    /// Removes the socket of `queue` (its frames then go to the kernel, counted `NoSocket`).
    pub fn unregister_socket(&mut self, queue: u32) -> Result<(), XdpError> {
        if queue >= MAX_QUEUES {
            return Err(XdpError::QueueOutOfRange { queue, max: MAX_QUEUES });
        }
        let map = self.ebpf.map_mut(maps::SOCKETS).ok_or(missing_map(maps::SOCKETS))?;
        let mut sockets =
            XskMap::try_from(map).map_err(|source| map_error(maps::SOCKETS, "opening", source))?;
        match sockets.unset(queue) {
            Ok(()) => Ok(()),
            Err(err) if errno_in(&err) == Some(libc::ENOENT) => Ok(()),
            Err(source) => Err(map_error(maps::SOCKETS, format!("removing queue {queue}"), source)),
        }
    }

    /// Drops frames from `net/prefix_len` (host bits ignored) from now on, attached or not.
    /// Takes effect for the next frame; adding an entry twice is harmless.
    pub fn block(&mut self, net: IpAddr, prefix_len: u8) -> Result<(), XdpError> {
        let (net, prefix_len) = network(net, prefix_len)?;
        let max_entries = self.blocklist_max_entries;
        let full = |err: &MapError| matches!(errno_in(err), Some(libc::E2BIG | libc::ENOSPC));
        match net {
            IpAddr::V4(v4) => {
                let mut trie = self.trie_v4(maps::BLOCK_V4)?;
                trie.insert(&Key::new(u32::from(prefix_len), v4.octets()), 1, 0).map_err(|source| {
                    if full(&source) {
                        XdpError::BlocklistFull { max_entries }
                    } else {
                        map_error(maps::BLOCK_V4, format!("adding {net}/{prefix_len}"), source)
                    }
                })?;
            }
            IpAddr::V6(v6) => {
                let mut trie = self.trie_v6(maps::BLOCK_V6)?;
                trie.insert(&Key::new(u32::from(prefix_len), v6.octets()), 1, 0).map_err(|source| {
                    if full(&source) {
                        XdpError::BlocklistFull { max_entries }
                    } else {
                        map_error(maps::BLOCK_V6, format!("adding {net}/{prefix_len}"), source)
                    }
                })?;
            }
        }
        // Entry first, flag second: a frame never sees the flag without the entry.
        self.blocked.insert((net, prefix_len));
        self.write_flags(self.flags | block_flag(net))
    }

    /// Stops dropping frames from exactly `net/prefix_len` (host bits ignored; a longer or
    /// shorter entry covering the same addresses stays). Removing an absent entry is a no-op.
    pub fn unblock(&mut self, net: IpAddr, prefix_len: u8) -> Result<(), XdpError> {
        let (net, prefix_len) = network(net, prefix_len)?;
        self.blocked.remove(&(net, prefix_len));
        let family_left = self.blocked.iter().any(|(other, _)| other.is_ipv4() == net.is_ipv4());
        if !family_left {
            // Flag first: the program stops looking before the last entry goes.
            self.write_flags(self.flags & !block_flag(net))?;
        }
        let result = match net {
            IpAddr::V4(v4) => {
                let mut trie = self.trie_v4(maps::BLOCK_V4)?;
                trie.remove(&Key::new(u32::from(prefix_len), v4.octets()))
            }
            IpAddr::V6(v6) => {
                let mut trie = self.trie_v6(maps::BLOCK_V6)?;
                trie.remove(&Key::new(u32::from(prefix_len), v6.octets()))
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(err) if errno_in(&err) == Some(libc::ENOENT) => Ok(()),
            Err(source) => Err(map_error(block_map(net), format!("removing {net}/{prefix_len}"), source)),
        }
    }

    /// The program's counters, summed over all CPUs. Monotonic while the program is loaded.
    pub fn counters(&self) -> Result<XdpCounters, XdpError> {
        let map = self.ebpf.map(maps::COUNTERS).ok_or(missing_map(maps::COUNTERS))?;
        let array: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(|source| map_error(maps::COUNTERS, "opening", source))?;
        let mut counters = XdpCounters::default();
        for counter in Counter::ALL {
            let values = array
                .get(&(counter as u32), 0)
                .map_err(|source| map_error(maps::COUNTERS, format!("reading {counter:?}"), source))?;
            *counters.slot(counter) = values.iter().fold(0u64, |sum, value| sum.wrapping_add(*value));
        }
        Ok(counters)
    }

    /// Runs the program once on `frame` through `BPF_PROG_TEST_RUN` (no interface needed) and
    /// returns its action (`XDP_ABORTED` 0, `XDP_DROP` 1, `XDP_PASS` 2, `XDP_TX` 3,
    /// `XDP_REDIRECT` 4). Counters and maps are the real ones. The kernel sees receive queue 0;
    /// `XDP_REDIRECT` is reported, not performed. The kernel accepts frames of 14 bytes (an
    /// Ethernet header) up to about 3,500 bytes (a page minus XDP head- and tailroom); shorter
    /// ones are refused with [`XdpError::FrameTooShort`] before the syscall (Linux 6.x refuses
    /// them even when the shortfall is passed as XDP metadata).
    pub fn test_run(&self, frame: &[u8]) -> Result<u32, XdpError> {
        const ETH_HLEN: usize = 14;
        if frame.len() < ETH_HLEN {
            return Err(XdpError::FrameTooShort { len: frame.len() });
        }
        let program = xdp_program(&self.ebpf)?;
        let options = TestRunOptions { data_in: Some(frame), ..TestRunOptions::default() };
        program
            .test_run(options)
            .map(|result| result.return_value)
            .map_err(|source| XdpError::TestRun { len: frame.len(), source: Box::new(source) })
    }

    /// Detaches the program from its interface (no-op when not attached). The program stays
    /// loaded with its maps and counters; [`XdpProgram::attach`] may attach it again.
    pub fn detach(&mut self) {
        if let Some(attached) = self.attached.take()
            && let Ok(program) = xdp_program_mut(&mut self.ebpf)
        {
            // A bpf_link detaches when its descriptor closes; the netlink variant asks the
            // kernel to remove exactly this program. Neither can usefully fail here.
            let _ = program.detach(attached.link);
        }
    }

    fn trie_v4(&mut self, name: &'static str) -> Result<LpmTrie<&mut MapData, [u8; 4], u8>, XdpError> {
        let map = self.ebpf.map_mut(name).ok_or(missing_map(name))?;
        LpmTrie::try_from(map).map_err(|source| map_error(name, "opening", source))
    }

    fn trie_v6(&mut self, name: &'static str) -> Result<LpmTrie<&mut MapData, [u8; 16], u8>, XdpError> {
        let map = self.ebpf.map_mut(name).ok_or(missing_map(name))?;
        LpmTrie::try_from(map).map_err(|source| map_error(name, "opening", source))
    }

    fn write_flags(&mut self, flags: u32) -> Result<(), XdpError> {
        let map = self.ebpf.map_mut(maps::CONFIG).ok_or(missing_map(maps::CONFIG))?;
        let mut config: Array<&mut MapData, XdpConfig> =
            Array::try_from(map).map_err(|source| map_error(maps::CONFIG, "opening", source))?;
        config
            .set(0, XdpConfig { flags }, 0)
            .map_err(|source| map_error(maps::CONFIG, "writing the flags", source))?;
        self.flags = flags;
        Ok(())
    }
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Detaches every XDP program named [`PROGRAM_NAME`] that an earlier run left attached to
/// `ifname` through netlink (such attachments outlive their process) and returns how many.
///
/// Attachments held by a live `bpf_link` (a running Outpost, or a pinned link) are left
/// alone: their owner detaches them, and attaching next to them fails with
/// [`XdpError::AlreadyAttached`] naming them. Programs of other names are never touched.
/// The removal names the exact program (`XDP_FLAGS_REPLACE` with its descriptor), so a
/// program attached in the meantime is not removed by mistake.
pub fn detach_stale(ifname: &str) -> Result<usize, XdpError> {
    let ifindex = interface_index(ifname)?;
    let attached = netlink::xdp_programs(ifindex).map_err(|source| XdpError::Query {
        what: format!("reading the XDP state of `{ifname}` over netlink"),
        source,
    })?;
    let mut detached = 0;
    for (mode_flag, prog_id) in attached {
        let Some(info) = loaded_programs().filter_map(Result::ok).find(|info| info.id() == prog_id) else {
            continue;
        };
        if info.name_as_str() != Some(PROGRAM_NAME) || find_link(prog_id).is_some() {
            continue;
        }
        let fd = info.fd().map_err(|err| XdpError::Query {
            what: format!("opening XDP program {prog_id} on `{ifname}`"),
            source: io::Error::other(err.to_string()),
        })?;
        match netlink::detach(ifindex, mode_flag, fd.as_fd().as_raw_fd()) {
            Ok(()) => detached += 1,
            Err(err) if is_permission(err.raw_os_error()) => {
                return Err(XdpError::PermissionDenied {
                    action: format!("detaching a stale XDP program from `{ifname}`"),
                    memlock: String::new(),
                });
            }
            // Gone or replaced since we looked: not ours to remove any more.
            Err(err) if matches!(err.raw_os_error(), Some(libc::EEXIST | libc::ENOENT)) => {}
            Err(source) => {
                return Err(XdpError::Query {
                    what: format!("detaching stale XDP program {prog_id} from `{ifname}`"),
                    source,
                });
            }
        }
    }
    Ok(detached)
}

fn xdp_program(ebpf: &Ebpf) -> Result<&Xdp, XdpError> {
    let program =
        ebpf.program(PROGRAM_NAME).ok_or(XdpError::Missing { kind: "program", name: PROGRAM_NAME })?;
    program.try_into().map_err(|_| XdpError::Missing { kind: "XDP program", name: PROGRAM_NAME })
}

fn xdp_program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, XdpError> {
    let program =
        ebpf.program_mut(PROGRAM_NAME).ok_or(XdpError::Missing { kind: "program", name: PROGRAM_NAME })?;
    program.try_into().map_err(|_| XdpError::Missing { kind: "XDP program", name: PROGRAM_NAME })
}

fn missing_map(name: &'static str) -> XdpError {
    XdpError::Missing { kind: "map", name }
}

fn map_error(map: &'static str, what: impl Into<String>, source: MapError) -> XdpError {
    XdpError::Map { map, what: what.into(), source: Box::new(source) }
}

fn insert_prefix<K: aya::Pod>(
    trie: &mut LpmTrie<&mut MapData, K, u8>,
    name: &'static str,
    key: Key<K>,
) -> Result<(), XdpError> {
    trie.insert(&key, 1, 0).map_err(|source| map_error(name, "adding a pass prefix", source))
}

fn block_flag(net: IpAddr) -> u32 {
    if net.is_ipv4() { CONFIG_BLOCK_V4 } else { CONFIG_BLOCK_V6 }
}

fn block_map(net: IpAddr) -> &'static str {
    if net.is_ipv4() { maps::BLOCK_V4 } else { maps::BLOCK_V6 }
}

/// `addr/prefix_len` with the host bits cleared, or an error for a prefix longer than the
/// address.
fn network(addr: IpAddr, prefix_len: u8) -> Result<(IpAddr, u8), XdpError> {
    let invalid = |family, max| XdpError::InvalidPrefix { addr, prefix_len, family, max };
    match addr {
        IpAddr::V4(v4) => {
            if u32::from(prefix_len) > IPV4_BITS {
                return Err(invalid("IPv4", IPV4_BITS));
            }
            let mask = u32::MAX.checked_shl(IPV4_BITS - u32::from(prefix_len)).unwrap_or(0);
            Ok((IpAddr::V4((u32::from(v4) & mask).into()), prefix_len))
        }
        IpAddr::V6(v6) => {
            if u32::from(prefix_len) > IPV6_BITS {
                return Err(invalid("IPv6", IPV6_BITS));
            }
            let mask = u128::MAX.checked_shl(IPV6_BITS - u32::from(prefix_len)).unwrap_or(0);
            Ok((IpAddr::V6((u128::from(v6) & mask).into()), prefix_len))
        }
    }
}

/// The interface's index, or why there is none.
fn interface_index(ifname: &str) -> Result<u32, XdpError> {
    let name = crate::iface::c_name(ifname)
        .map_err(|_| XdpError::InvalidInterfaceName { ifname: ifname.to_owned() })?;
    crate::iface::index(&name).map_err(|_| XdpError::InterfaceNotFound { ifname: ifname.to_owned() })
}

/// The id of the XDP `bpf_link` that holds program `program_id`, if any.
fn find_link(program_id: u32) -> Option<u32> {
    loaded_links()
        .filter_map(Result::ok)
        .find(|link| {
            link.program_id() == program_id && link.link_type().is_ok_and(|kind| kind == LinkType::Xdp)
        })
        .map(|link| link.id())
}

/// The first OS error code in `err`'s source chain.
fn errno_in(err: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(io_error) = err.downcast_ref::<io::Error>()
            && let Some(code) = io_error.raw_os_error()
        {
            return Some(code);
        }
        if let Some(netlink) = err.downcast_ref::<aya::sys::NetlinkError>()
            && let Some(code) = netlink.raw_os_error()
        {
            return Some(code);
        }
        current = err.source();
    }
    None
}

fn is_permission(errno: Option<i32>) -> bool {
    matches!(errno, Some(libc::EPERM | libc::EACCES))
}

fn load_error(err: EbpfError, memlock: &str) -> XdpError {
    if is_permission(errno_in(&err)) {
        XdpError::PermissionDenied { action: "loading the XDP program".into(), memlock: memlock.to_owned() }
    } else {
        XdpError::Load(Box::new(err))
    }
}

fn attach_error(
    ifname: &str,
    ifindex: u32,
    mode: XdpMode,
    fallback: String,
    source: ProgramError,
) -> XdpError {
    if let ProgramError::UnknownInterface { .. } = source {
        return XdpError::InterfaceNotFound { ifname: ifname.to_owned() };
    }
    match errno_in(&source) {
        code if is_permission(code) => XdpError::PermissionDenied {
            action: format!("attaching XDP to `{ifname}` in {mode} mode"),
            memlock: String::new(),
        },
        Some(libc::EBUSY | libc::EEXIST) => XdpError::AlreadyAttached {
            ifname: ifname.to_owned(),
            existing: describe_attached(ifname, ifindex),
        },
        Some(libc::EOPNOTSUPP) if mode == XdpMode::Native => {
            XdpError::NativeUnsupported { ifname: ifname.to_owned(), reason: source.to_string() }
        }
        Some(libc::ENODEV) => XdpError::InterfaceNotFound { ifname: ifname.to_owned() },
        _ => XdpError::Attach { ifname: ifname.to_owned(), mode, fallback, source: Box::new(source) },
    }
}

/// What occupies `ifname` and how to remove it, for [`XdpError::AlreadyAttached`].
fn describe_attached(ifname: &str, ifindex: u32) -> String {
    let attached = match netlink::xdp_programs(ifindex) {
        Ok(attached) if !attached.is_empty() => attached,
        Ok(_) => {
            return "the kernel reports a conflict, but no program is attached now; retry".into();
        }
        Err(err) => return format!("(could not read it over netlink: {err})"),
    };
    let mut parts = Vec::new();
    for (mode_flag, prog_id) in attached {
        let name = loaded_programs()
            .filter_map(Result::ok)
            .find(|info| info.id() == prog_id)
            .and_then(|info| info.name_as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".into());
        let (mode, keyword) = match mode_flag {
            netlink::XDP_FLAGS_SKB_MODE => ("generic", XdpMode::Generic.ip_keyword()),
            netlink::XDP_FLAGS_DRV_MODE => ("native", XdpMode::Native.ip_keyword()),
            _ => ("offload", "xdpoffload"),
        };
        let how = match find_link(prog_id) {
            Some(link_id) => format!(
                "held by bpf_link {link_id} of a running process or a pin (find it with `bpftool link show id {link_id}` and stop that process{})",
                if name == PROGRAM_NAME { ", probably another Outpost" } else { "" }
            ),
            None if name == PROGRAM_NAME => format!(
                "left by an earlier Outpost run; `detach_stale` (done by `outpost run` at start) or `ip link set dev {ifname} {keyword} off` removes it"
            ),
            None => format!("remove it with `ip link set dev {ifname} {keyword} off` if it is not needed"),
        };
        parts.push(format!("program `{name}` (id {prog_id}) in {mode} mode, {how}"));
    }
    parts.join("; ")
}

/// Raises `RLIMIT_MEMLOCK` to unlimited once per process (kernels before 5.11 charge map
/// memory against it). Returns a note for [`XdpError::PermissionDenied`] when that failed.
fn raise_memlock_limit() -> String {
    static NOTE: OnceLock<String> = OnceLock::new();
    NOTE.get_or_init(|| {
        let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
        // SAFETY: a valid `rlimit` passed by pointer for the duration of the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } == 0 {
            String::new()
        } else {
            format!("; raising RLIMIT_MEMLOCK to unlimited failed: {}", io::Error::last_os_error())
        }
    })
    .clone()
}

/// The few rtnetlink requests [`detach_stale`] and error messages need: read an interface's
/// `IFLA_XDP` state, and remove one exact program (`include/uapi/linux/if_link.h`,
/// `net/core/rtnetlink.c`).
mod netlink {
    use std::{io, mem::size_of};

    pub(super) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
    pub(super) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
    pub(super) const XDP_FLAGS_HW_MODE: u32 = 1 << 3;
    const XDP_FLAGS_REPLACE: u32 = 1 << 4;

    const IFLA_XDP: u16 = 43;
    const IFLA_XDP_FD: u16 = 1;
    const IFLA_XDP_FLAGS: u16 = 3;
    const IFLA_XDP_DRV_PROG_ID: u16 = 5;
    const IFLA_XDP_SKB_PROG_ID: u16 = 6;
    const IFLA_XDP_HW_PROG_ID: u16 = 7;
    const IFLA_XDP_EXPECTED_FD: u16 = 8;
    const NLA_F_NESTED: u16 = 1 << 15;
    const NLA_TYPE_MASK: u16 = 0x3fff;

    const NLMSG_HDR_LEN: usize = 16;
    const IFINFOMSG_LEN: usize = 16;

    /// `(mode flag, program id)` of every XDP program attached to `ifindex`, per mode.
    pub(super) fn xdp_programs(ifindex: u32) -> io::Result<Vec<(u32, u32)>> {
        let request = message(libc::RTM_GETLINK, 0, ifindex, &[]);
        let reply = transact(&request)?;
        let mut found = Vec::new();
        let Some(xdp) = attributes(reply.get(NLMSG_HDR_LEN + IFINFOMSG_LEN..).unwrap_or_default())
            .find(|(kind, _)| *kind == IFLA_XDP)
            .map(|(_, payload)| payload)
        else {
            return Ok(found);
        };
        for (kind, payload) in attributes(xdp) {
            let mode = match kind {
                IFLA_XDP_SKB_PROG_ID => XDP_FLAGS_SKB_MODE,
                IFLA_XDP_DRV_PROG_ID => XDP_FLAGS_DRV_MODE,
                IFLA_XDP_HW_PROG_ID => XDP_FLAGS_HW_MODE,
                _ => continue,
            };
            if let Some(id) = payload.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_ne_bytes)
                && id != 0
            {
                found.push((mode, id));
            }
        }
        Ok(found)
    }

    /// Removes the program behind `prog_fd` from `ifindex` in mode `mode_flag`, only if it is
    /// still the one attached (`XDP_FLAGS_REPLACE` + `IFLA_XDP_EXPECTED_FD`, Linux ≥ 5.7).
    pub(super) fn detach(ifindex: u32, mode_flag: u32, prog_fd: i32) -> io::Result<()> {
        let mut nested = Vec::new();
        push_attribute(&mut nested, IFLA_XDP_FD, &(-1i32).to_ne_bytes());
        push_attribute(&mut nested, IFLA_XDP_FLAGS, &(mode_flag | XDP_FLAGS_REPLACE).to_ne_bytes());
        push_attribute(&mut nested, IFLA_XDP_EXPECTED_FD, &prog_fd.to_ne_bytes());
        let mut attrs = Vec::new();
        push_attribute(&mut attrs, IFLA_XDP | NLA_F_NESTED, &nested);
        let flags = u16::try_from(libc::NLM_F_ACK).unwrap_or(0);
        let request = message(libc::RTM_SETLINK, flags, ifindex, &attrs);
        transact(&request).map(|_| ())
    }

    fn message(kind: u16, flags: u16, ifindex: u32, attrs: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDR_LEN + IFINFOMSG_LEN + attrs.len();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        let request = u16::try_from(libc::NLM_F_REQUEST).unwrap_or(1);
        out.extend_from_slice(&(flags | request).to_ne_bytes());
        out.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
        out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        // struct ifinfomsg { family, pad, type, index, flags, change }
        out.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        out.extend_from_slice(&ifindex.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(attrs);
        out
    }

    fn push_attribute(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
        let len = 4 + payload.len();
        out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(out.len().next_multiple_of(4), 0);
    }

    /// `(type, payload)` of each attribute in `bytes` (type without the nested/byte-order
    /// bits); stops at the first malformed one.
    fn attributes(bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
        let mut rest = bytes;
        std::iter::from_fn(move || {
            let len = usize::from(u16::from_ne_bytes(rest.get(0..2)?.try_into().ok()?));
            let kind = u16::from_ne_bytes(rest.get(2..4)?.try_into().ok()?) & NLA_TYPE_MASK;
            let payload = rest.get(4..len)?;
            rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
            Some((kind, payload))
        })
    }

    /// Sends `request` on a fresh `NETLINK_ROUTE` socket and returns the first reply message
    /// (header included), or the error an `NLMSG_ERROR` reply carries.
    fn transact(request: &[u8]) -> io::Result<Vec<u8>> {
        // SAFETY: plain socket(2) call; the descriptor is owned below.
        let fd = unsafe {
            libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE)
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let raw = std::os::fd::AsRawFd::as_raw_fd(&socket);
        // SAFETY: an all-zero sockaddr_nl addresses the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `request` and `kernel` are valid for the given lengths during the call.
        let sent = unsafe {
            libc::sendto(
                raw,
                request.as_ptr().cast(),
                request.len(),
                0,
                std::ptr::addr_of!(kernel).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buffer = vec![0u8; 64 * 1024];
        // SAFETY: `buffer` is valid for writes of its length during the call.
        let received = unsafe { libc::recv(raw, buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        buffer.truncate(usize::try_from(received).unwrap_or(0));
        let invalid = || io::Error::new(io::ErrorKind::InvalidData, "short netlink reply");
        let len = usize::try_from(u32::from_ne_bytes(
            buffer.get(0..4).ok_or_else(invalid)?.try_into().map_err(|_| invalid())?,
        ))
        .map_err(|_| invalid())?;
        let kind =
            u16::from_ne_bytes(buffer.get(4..6).ok_or_else(invalid)?.try_into().map_err(|_| invalid())?);
        if kind == libc::NLMSG_ERROR as u16 {
            let code = i32::from_ne_bytes(
                buffer.get(16..20).ok_or_else(invalid)?.try_into().map_err(|_| invalid())?,
            );
            return if code == 0 { Ok(Vec::new()) } else { Err(io::Error::from_raw_os_error(-code)) };
        }
        buffer.truncate(len.min(buffer.len()));
        Ok(buffer)
    }
}
