//! Types shared by Outpost's XDP program (`xdp-ebpf`) and its user-space loader
//! (`outpost_capture::xdp`): map names, key layouts and the per-CPU counter indices.
//!
//! Everything here is `#[repr(C)]` or a plain constant so both sides agree on the bytes.
#![no_std]

/// Name of the XDP program in the object file (and in `bpftool prog`): the loader finds it by
/// this name, and detaches stale programs of this name from an interface at start.
pub const PROGRAM_NAME: &str = "outpost_xdp";

/// Map names in the object file (the eBPF crate's `static` names). Each fits the kernel's
/// 15-character object name, so `bpftool map` shows them whole.
pub mod maps {
    /// `XSKMAP`: receive queue index → AF_XDP socket.
    pub const SOCKETS: &str = "OUTPOST_XSKS";
    /// `LPM_TRIE` of IPv4 key → `u8`: IPv4 source prefixes whose frames are dropped.
    ///
    /// Keys of all four tries have the kernel's `struct bpf_lpm_trie_key` layout, packed: the
    /// prefix length in bits as a host-order `u32`, then the address bytes in network order
    /// (4 for IPv4, 16 for IPv6). Both sides use their aya `lpm_trie::Key<[u8; N]>`, which has
    /// exactly this layout. Values are `1`; the program only tests for presence.
    pub const BLOCK_V4: &str = "OUTPOST_BLK_V4";
    /// `LPM_TRIE` of IPv6 key → `u8`: IPv6 source prefixes whose frames are dropped.
    pub const BLOCK_V6: &str = "OUTPOST_BLK_V6";
    /// `LPM_TRIE` of IPv4 key → `u8`: IPv4 prefixes (source or destination) whose
    /// frames are passed to the kernel instead of captured.
    pub const PASS_V4: &str = "OUTPOST_PASS_V4";
    /// `LPM_TRIE` of IPv6 key → `u8`: as [`PASS_V4`] for IPv6.
    pub const PASS_V6: &str = "OUTPOST_PASS_V6";
    /// `ARRAY` of 65,536 `u8`, indexed by port: non-zero = frames with this TCP/UDP/SCTP source
    /// or destination port are passed to the kernel instead of captured.
    pub const PASS_PORTS: &str = "OUTPOST_PORTS";
    /// `ARRAY` of one [`crate::XdpConfig`].
    pub const CONFIG: &str = "OUTPOST_CONFIG";
    /// `PERCPU_ARRAY` of `u64`, indexed by [`crate::Counter`].
    pub const COUNTERS: &str = "OUTPOST_COUNTS";
}

/// Default capacity of each blocklist trie (entries); the loader may set another before load.
pub const BLOCKLIST_MAX_ENTRIES: u32 = 65_536;
/// Default capacity of each pass-filter trie (entries).
pub const PASS_MAX_ENTRIES: u32 = 1_024;
/// Entries of the pass-port array: one per TCP/UDP/SCTP port.
pub const PASS_PORTS_ENTRIES: u32 = 65_536;
/// Most receive queues (XSKMAP entries).
pub const MAX_QUEUES: u32 = 256;

/// Prefix length of an IPv4 host entry, and the most an IPv4 trie key may carry.
pub const IPV4_BITS: u32 = 32;
/// Prefix length of an IPv6 host entry, and the most an IPv6 trie key may carry.
pub const IPV6_BITS: u32 = 128;

/// Run-time switches of the XDP program (one entry in [`maps::CONFIG`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpConfig {
    /// Bit set of `CONFIG_*` flags.
    pub flags: u32,
}

/// [`XdpConfig::flags`]: the IPv4 blocklist trie holds entries (else it is not looked up).
pub const CONFIG_BLOCK_V4: u32 = 1;
/// [`XdpConfig::flags`]: the IPv6 blocklist trie holds entries.
pub const CONFIG_BLOCK_V6: u32 = 1 << 1;
/// [`XdpConfig::flags`]: the IPv4 pass-filter trie holds entries.
pub const CONFIG_PASS_V4: u32 = 1 << 2;
/// [`XdpConfig::flags`]: the IPv6 pass-filter trie holds entries.
pub const CONFIG_PASS_V6: u32 = 1 << 3;
/// [`XdpConfig::flags`]: the pass-port array marks at least one port.
pub const CONFIG_PASS_PORTS: u32 = 1 << 4;

/// Per-CPU counters of the XDP program, indices into [`maps::COUNTERS`]. Every frame counts
/// in `Seen` and in exactly one verdict counter (`Redirected`, `NoSocket`, `Blocked`,
/// `PassedNotIp`, `PassedFilter`); `Truncated` additionally counts IP frames too short for
/// their headers. A frame whose IP header is cut short (or unusable) is always captured, so
/// the sensor's decoder counts it as malformed; one whose TCP/UDP/SCTP header is cut short
/// can still be blocked or passed by address, but matches no port rule.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Frames the program saw.
    Seen = 0,
    /// Frames redirected to an AF_XDP socket.
    Redirected = 1,
    /// IP frames for which no socket was bound on the receiving queue (passed to the kernel).
    NoSocket = 2,
    /// Frames dropped because their source address is in the blocklist.
    Blocked = 3,
    /// Frames that are not IPv4/IPv6 (ARP, LLDP, ...) or too short for an Ethernet header,
    /// passed to the kernel.
    PassedNotIp = 4,
    /// IP frames the capture filter passes to the kernel (pass subnets / ports).
    PassedFilter = 5,
    /// IP frames whose IP header, or TCP/UDP/SCTP header (TCP < 20, UDP < 8, SCTP < 12 bytes;
    /// IPv4 first fragments and IPv6 without extension headers only), is cut short. Also
    /// counted in their verdict.
    Truncated = 6,
}

impl Counter {
    /// Number of counters (entries of [`maps::COUNTERS`]).
    pub const COUNT: u32 = 7;
    /// All counters in index order.
    pub const ALL: [Counter; 7] = [
        Counter::Seen,
        Counter::Redirected,
        Counter::NoSocket,
        Counter::Blocked,
        Counter::PassedNotIp,
        Counter::PassedFilter,
        Counter::Truncated,
    ];
}

// SAFETY: one u32, no padding, valid for any bit pattern.
#[cfg(feature = "user")]
unsafe impl aya::Pod for XdpConfig {}
