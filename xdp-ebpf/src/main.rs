//! Outpost's XDP program: decides per frame, before the kernel allocates anything for it,
//! whether the sensor captures it (redirect to the AF_XDP socket of the receiving queue), the
//! kernel keeps it (pass), or nobody sees it (drop, for blocklisted sources).
//!
//! Order of decisions, each counted in one verdict counter of `OUTPOST_COUNTS`
//! (`outpost_xdp_common::Counter`):
//!
//! 1. Shorter than an Ethernet header, a VLAN tag cut short, or an EtherType other than
//!    IPv4/IPv6/ARP after at most two 802.1Q / 802.1ad tags → `XDP_PASS` (`PassedNotIp`):
//!    LLDP, STP and the like stay with the kernel, and so does ARP that is not Ethernet/IPv4
//!    or is cut short. ARP for IPv4 over Ethernet is monitored traffic (address-resolution
//!    sweeps show only there): its sender and target protocol addresses take the place of
//!    source and destination in steps 3–5, so ARP from a blocklisted sender is dropped, ARP
//!    about a pass subnet (the sensor's own management address) otherwise stays with the
//!    kernel, and the rest is captured.
//! 2. IP header cut short or unusable (IPv4: fewer than 20 bytes, version not 4, IHL below 5,
//!    or options running past the frame; IPv6: fewer than 40 bytes) → redirected like any captured frame and also counted `Truncated`;
//!    the sensor's decoder counts it as malformed. Without a trustworthy header nothing else
//!    is looked at.
//! 3. Source address in the blocklist trie of its family → `XDP_DROP` (`Blocked`).
//! 4. Capture filter: source or destination address in the pass trie of its family, or a
//!    TCP/UDP/SCTP source or destination port marked in the pass-port array → `XDP_PASS`
//!    (`PassedFilter`). Ports are read only where the transport header follows the IP header
//!    directly: IPv4 first fragments (offset 0), and IPv6 packets whose next header *is*
//!    TCP/UDP/SCTP. IPv6 extension headers are not walked (a packet with any of them is never
//!    matched by a port rule, only by a subnet rule), which keeps the program small and the
//!    verifier's work bounded. A transport header cut short (TCP < 20, UDP < 8, SCTP < 12
//!    bytes) is counted `Truncated` and matches no port rule.
//! 5. Otherwise `bpf_redirect_map` to the `OUTPOST_XSKS` entry of the receive queue, with
//!    `XDP_PASS` as the fallback when no socket is bound there (`Redirected` / `NoSocket`).
//!
//! Lookups that `OUTPOST_CONFIG` says would find nothing (an empty trie or port array) are
//! skipped. Every packet read is preceded by a bounds check against `data_end` the verifier
//! can follow; nothing here loops.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_REDIRECT},
        macros::{map, xdp},
        maps::{Array, LpmTrie, PerCpuArray, XskMap, lpm_trie::Key},
        programs::XdpContext,
    };
    use outpost_xdp_common::{
        BLOCKLIST_MAX_ENTRIES, CONFIG_BLOCK_V4, CONFIG_BLOCK_V6, CONFIG_PASS_PORTS, CONFIG_PASS_V4,
        CONFIG_PASS_V6, Counter, IPV4_BITS, IPV6_BITS, MAX_QUEUES, PASS_MAX_ENTRIES, PASS_PORTS_ENTRIES,
        XdpConfig,
    };

    // Map statics are named exactly as `outpost_xdp_common::maps`; the loader finds them by
    // these names (a mismatch fails `XdpProgram::load`).
    #[map]
    static OUTPOST_XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);
    #[map]
    static OUTPOST_BLK_V4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(BLOCKLIST_MAX_ENTRIES, 0);
    #[map]
    static OUTPOST_BLK_V6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(BLOCKLIST_MAX_ENTRIES, 0);
    #[map]
    static OUTPOST_PASS_V4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(PASS_MAX_ENTRIES, 0);
    #[map]
    static OUTPOST_PASS_V6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(PASS_MAX_ENTRIES, 0);
    #[map]
    static OUTPOST_PORTS: Array<u8> = Array::with_max_entries(PASS_PORTS_ENTRIES, 0);
    #[map]
    static OUTPOST_CONFIG: Array<XdpConfig> = Array::with_max_entries(1, 0);
    #[map]
    static OUTPOST_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

    const ETH_HDR_LEN: usize = 14;
    const VLAN_TAG_LEN: usize = 4;
    const IPV4_MIN_HDR_LEN: usize = 20;
    const IPV6_HDR_LEN: usize = 40;

    const ETHERTYPE_IPV4: u16 = 0x0800;
    const ETHERTYPE_IPV6: u16 = 0x86dd;
    const ETHERTYPE_ARP: u16 = 0x0806;
    /// ARP for IPv4 over Ethernet (RFC 826): 8 fixed bytes, then sender MAC and IPv4 address,
    /// target MAC and IPv4 address.
    const ARP_ETHERNET_IPV4_LEN: usize = 28;
    const ETHERTYPE_VLAN: u16 = 0x8100; // IEEE 802.1Q
    const ETHERTYPE_QINQ: u16 = 0x88a8; // IEEE 802.1ad service tag

    const IPPROTO_TCP: u8 = 6;
    const IPPROTO_UDP: u8 = 17;
    const IPPROTO_SCTP: u8 = 132;

    /// Verdict of the filter stages before the redirect.
    enum Verdict {
        Drop,
        PassFilter,
        Capture,
    }

    /// The per-frame entry point, named [`outpost_xdp_common::PROGRAM_NAME`].
    #[xdp]
    pub fn outpost_xdp(ctx: XdpContext) -> u32 {
        count(Counter::Seen);
        match classify(&ctx) {
            Some(Verdict::Drop) => {
                count(Counter::Blocked);
                XDP_DROP
            }
            Some(Verdict::PassFilter) => {
                count(Counter::PassedFilter);
                XDP_PASS
            }
            Some(Verdict::Capture) => redirect(&ctx),
            None => {
                count(Counter::PassedNotIp);
                XDP_PASS
            }
        }
    }

    /// Redirects to the receive queue's AF_XDP socket, `XDP_PASS` when none is bound.
    #[inline(always)]
    fn redirect(ctx: &XdpContext) -> u32 {
        match OUTPOST_XSKS.redirect(ctx.rx_queue_index(), u64::from(XDP_PASS)) {
            Ok(XDP_REDIRECT) => {
                count(Counter::Redirected);
                XDP_REDIRECT
            }
            Ok(other) | Err(other) => {
                count(Counter::NoSocket);
                other
            }
        }
    }

    #[inline(always)]
    fn count(counter: Counter) {
        if let Some(slot) = OUTPOST_COUNTS.get_ptr_mut(counter as u32) {
            // SAFETY: a per-CPU slot of this program's own map; XDP programs run with
            // preemption disabled, so nothing else writes this CPU's slot meanwhile.
            unsafe { *slot += 1 };
        }
    }

    #[inline(always)]
    fn config_flags() -> u32 {
        OUTPOST_CONFIG.get(0).map_or(0, |config| config.flags)
    }

    /// `N` bytes at `offset`, or `None` when the frame ends before them.
    #[inline(always)]
    fn bytes<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
        let start = ctx.data();
        let end = ctx.data_end();
        if start + offset + N > end {
            return None;
        }
        // SAFETY: `start + offset .. start + offset + N` lies inside the packet, checked
        // above against `data_end` (the verifier sees the same check); `[u8; N]` has
        // alignment 1.
        Some(unsafe { *((start + offset) as *const [u8; N]) })
    }

    #[inline(always)]
    fn be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
        bytes::<2>(ctx, offset).map(u16::from_be_bytes)
    }

    /// `None` = not an IP frame, nor ARP for IPv4 over Ethernet (pass to the kernel).
    #[inline(always)]
    fn classify(ctx: &XdpContext) -> Option<Verdict> {
        let mut ethertype = be16(ctx, 12)?;
        let mut offset = ETH_HDR_LEN;
        // At most two tags (802.1ad outer + 802.1Q inner), unrolled by hand.
        if ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
            ethertype = be16(ctx, offset + 2)?;
            offset += VLAN_TAG_LEN;
            if ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
                ethertype = be16(ctx, offset + 2)?;
                offset += VLAN_TAG_LEN;
            }
        }
        match ethertype {
            ETHERTYPE_IPV4 => Some(classify_ipv4(ctx, offset)),
            ETHERTYPE_IPV6 => Some(classify_ipv6(ctx, offset)),
            ETHERTYPE_ARP => classify_arp(ctx, offset),
            _ => None,
        }
    }

    /// ARP for IPv4 over Ethernet decided like an IPv4 packet from its sender (source) to its
    /// target (destination), without ports; `None` for other or cut-short ARP.
    #[inline(always)]
    fn classify_arp(ctx: &XdpContext, offset: usize) -> Option<Verdict> {
        let a = bytes::<ARP_ETHERNET_IPV4_LEN>(ctx, offset)?;
        // Hardware type 1 (Ethernet), protocol type 0x0800, address lengths 6 and 4.
        if a[0..6] != [0, 1, 0x08, 0x00, 6, 4] {
            return None;
        }
        let sender = [a[14], a[15], a[16], a[17]];
        let target = [a[24], a[25], a[26], a[27]];
        Some(decide(&v4_family(), sender, target, None))
    }

    #[inline(always)]
    fn classify_ipv4(ctx: &XdpContext, offset: usize) -> Verdict {
        let Some(header) = bytes::<IPV4_MIN_HDR_LEN>(ctx, offset) else {
            count(Counter::Truncated);
            return Verdict::Capture;
        };
        let header_len = usize::from(header[0] & 0x0f) * 4;
        // A bad version or IHL, or options running past the frame: the header is unusable.
        if header[0] >> 4 != 4
            || header_len < IPV4_MIN_HDR_LEN
            || ctx.data() + offset + header_len > ctx.data_end()
        {
            count(Counter::Truncated);
            return Verdict::Capture;
        }
        // Fragment offset (RFC 791 section 3.1): only the first fragment carries the
        // transport header.
        let first_fragment = u16::from_be_bytes([header[6], header[7]]) & 0x1fff == 0;
        let ports = if first_fragment { transport_ports(ctx, offset + header_len, header[9]) } else { None };
        let src = [header[12], header[13], header[14], header[15]];
        let dst = [header[16], header[17], header[18], header[19]];
        decide(&v4_family(), src, dst, ports)
    }

    #[inline(always)]
    fn classify_ipv6(ctx: &XdpContext, offset: usize) -> Verdict {
        let Some(header) = bytes::<IPV6_HDR_LEN>(ctx, offset) else {
            count(Counter::Truncated);
            return Verdict::Capture;
        };
        // Extension headers are not walked: ports are read only when the next header is
        // directly TCP/UDP/SCTP.
        let ports = transport_ports(ctx, offset + IPV6_HDR_LEN, header[6]);
        let mut src = [0u8; 16];
        src.copy_from_slice(&header[8..24]);
        let mut dst = [0u8; 16];
        dst.copy_from_slice(&header[24..40]);
        let family = Family {
            block: &OUTPOST_BLK_V6,
            pass: &OUTPOST_PASS_V6,
            block_flag: CONFIG_BLOCK_V6,
            pass_flag: CONFIG_PASS_V6,
            bits: IPV6_BITS,
        };
        decide(&family, src, dst, ports)
    }

    /// IPv4's tables and switches (IPv4 packets and ARP).
    #[inline(always)]
    fn v4_family() -> Family<4> {
        Family {
            block: &OUTPOST_BLK_V4,
            pass: &OUTPOST_PASS_V4,
            block_flag: CONFIG_BLOCK_V4,
            pass_flag: CONFIG_PASS_V4,
            bits: IPV4_BITS,
        }
    }

    /// One address family's tables and switches.
    struct Family<const N: usize> {
        block: &'static LpmTrie<[u8; N], u8>,
        pass: &'static LpmTrie<[u8; N], u8>,
        block_flag: u32,
        pass_flag: u32,
        bits: u32,
    }

    /// The verdict of an IP frame whose headers were read, the same for both families:
    /// blocklisted source → drop; pass subnet (source or destination) or pass port → kernel;
    /// else capture. Each table is looked up only when its switch says it has entries.
    #[inline(always)]
    fn decide<const N: usize>(
        f: &Family<N>,
        src: [u8; N],
        dst: [u8; N],
        ports: Option<(u16, u16)>,
    ) -> Verdict {
        let flags = config_flags();
        if flags & f.block_flag != 0 && f.block.get(Key::new(f.bits, src)).is_some() {
            return Verdict::Drop;
        }
        if flags & f.pass_flag != 0
            && (f.pass.get(Key::new(f.bits, src)).is_some() || f.pass.get(Key::new(f.bits, dst)).is_some())
        {
            return Verdict::PassFilter;
        }
        if flags & CONFIG_PASS_PORTS != 0
            && ports.is_some_and(|(src, dst)| port_marked(src) || port_marked(dst))
        {
            return Verdict::PassFilter;
        }
        Verdict::Capture
    }

    /// Source and destination port of the TCP/UDP/SCTP header at `offset` (all three put them
    /// in their first four bytes); `None` for other protocols and for a header cut short,
    /// which is counted `Truncated`.
    #[inline(always)]
    fn transport_ports(ctx: &XdpContext, offset: usize, protocol: u8) -> Option<(u16, u16)> {
        let min_len = match protocol {
            IPPROTO_TCP => 20,
            IPPROTO_UDP => 8,
            IPPROTO_SCTP => 12,
            _ => return None,
        };
        if ctx.data() + offset + min_len > ctx.data_end() {
            count(Counter::Truncated);
            return None;
        }
        let ports = bytes::<4>(ctx, offset)?;
        Some((u16::from_be_bytes([ports[0], ports[1]]), u16::from_be_bytes([ports[2], ports[3]])))
    }

    #[inline(always)]
    fn port_marked(port: u16) -> bool {
        OUTPOST_PORTS.get(u32::from(port)).is_some_and(|marked| *marked != 0)
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
        loop {}
    }

    /// The program uses no GPL-only helper (map lookups and `bpf_redirect_map` only).
    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 11] = *b"Apache-2.0\0";
}
