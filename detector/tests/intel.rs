//! Intel lists: the file format, bad lines, both families, longest-prefix match against a
//! brute-force reference, duplicates, reload, and a million-entry load.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use outpost_decode::{Cidr, IpAddress};
use outpost_detector::intel::{IntelError, IntelMatch, IntelSet, IntelSource};
use outpost_detector::{ConfigError, RuleSet, RulesConfig, SourceText};
use outpost_tools::splitmix::SplitMix64 as Rng;

fn ip(s: &str) -> IpAddress {
    s.parse().expect("test address")
}

fn cidr(s: &str) -> Cidr {
    s.parse().expect("test prefix")
}

fn one_list(text: &str) -> Result<IntelSet, IntelError> {
    IntelSet::from_texts(&[(IntelSource::strict("feed", "lists/feed.txt"), text)])
}

/// A directory removed when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("outpost-intel-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write list");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn v4(bits: u32) -> IpAddress {
    IpAddress::from_v4(bits.to_be_bytes())
}

#[test]
fn comments_blanks_descriptions_and_both_families_parse() {
    let text = "\u{feff}# header comment\r\n\
                ; Spamhaus-style header\n\
                \n\
                192.0.2.7\n\
                \t198.51.100.0/24 ; SBL123   # trailing comment\r\n\
                2001:db8::/32  documentation range\n\
                2001:DB8:0:0:0:0:0:1\n\
                ::ffff:203.0.113.0/120,mapped\n\
                ::1 # loopback\n";
    let set = one_list(text).expect("valid list");
    assert_eq!(set.len(), 6);
    assert_eq!(set.list_name(0), "feed");
    let hit = |a: &str| set.lookup(&ip(a)).map(|m| (m.prefix.to_string(), m.entry));
    assert_eq!(hit("192.0.2.7"), Some(("192.0.2.7/32".into(), 0)));
    assert_eq!(hit("198.51.100.200"), Some(("198.51.100.0/24".into(), 1)));
    assert_eq!(hit("2001:db8:5::9"), Some(("2001:db8::/32".into(), 2)));
    assert_eq!(hit("2001:db8::1"), Some(("2001:db8::1/128".into(), 3)));
    assert_eq!(hit("203.0.113.99"), Some(("203.0.113.0/24".into(), 4)));
    assert_eq!(hit("::1"), Some(("::1/128".into(), 5)));
    assert_eq!(hit("192.0.2.8"), None);
    assert_eq!(hit("2001:db9::"), None);
    assert_eq!(set.entry_description(0, 0), None);
    assert_eq!(set.entry_description(0, 1), Some("SBL123"));
    assert_eq!(set.entry_description(0, 2), Some("documentation range"));
    assert_eq!(set.entry_description(0, 4), Some("mapped"));
    assert_eq!(set.entry_description(0, 5), None);
    assert_eq!(set.entry_description(1, 0), None);
    let stats = set.stats();
    assert_eq!((stats.ipv4_hosts, stats.ipv4_prefixes, stats.ipv6_hosts, stats.ipv6_prefixes), (1, 2, 2, 1));
}

#[test]
fn sets_are_shareable_across_workers() {
    fn shareable<T: Send + Sync>() {}
    shareable::<IntelSet>();
    fn small_copy<T: Copy>() {}
    small_copy::<IntelMatch>();
}

#[test]
fn the_shipped_blocklist_loads_and_lists_nothing() {
    // config/intel/blocklist.txt, the default ruleset's optional `intel-match` list: only
    // comments (its examples are commented out), so a fresh sensor raises no intel alert.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/intel/blocklist.txt");
    let set = IntelSet::load(&[IntelSource::strict("blocklist", &path)]).expect("shipped list loads");
    assert!(set.is_empty());
}

/// Compiles one rule file's text, as if read from `dir/rules.toml`.
fn compile_rules(dir: &Path, text: &str) -> Result<RuleSet, ConfigError> {
    let src = SourceText::new(dir.join("rules.toml"), text);
    let cfg: RulesConfig = src.parse()?;
    RuleSet::compile([(&cfg, &src, "")])
}

#[test]
fn a_missing_optional_list_is_empty_and_a_missing_required_list_names_its_key() {
    let scratch = Scratch::new("optional");
    let rule = |optional: bool| {
        format!(
            "[[intel]]\nname = \"feed\"\nlists = [{{ name = \"f\", path = \"nope.txt\", optional = {optional} }}]\n"
        )
    };
    compile_rules(&scratch.0, &rule(true)).expect("an optional list may be missing");
    let err = compile_rules(&scratch.0, &rule(false)).expect_err("a required list must exist").to_string();
    assert!(err.contains("rules.toml:3:") && err.contains("`intel[0].lists[0].path`"), "{err}");
    assert!(err.contains("nope.txt"), "{err}");
}

#[test]
fn a_list_with_stray_non_utf8_bytes_loads_its_good_lines() {
    let scratch = Scratch::new("latin1");
    // A Latin-1 comment (0xe9) and an entry; a lenient list also survives a bad byte in an
    // entry, which becomes a skipped bad line.
    std::fs::write(scratch.0.join("feed.txt"), b"# caf\xe9 feed\n203.0.113.7\n198.51.100.\xff\n").unwrap();
    let set = compile_rules(
        &scratch.0,
        "[[intel]]\nname = \"feed\"\nlists = [{ name = \"f\", path = \"feed.txt\", lenient = true }]\n",
    )
    .expect("loads");
    let outpost_detector::RuleKind::Intel(rule) = &set.rules[0].kind else { panic!("an intel rule") };
    assert!(rule.set.lookup(&ip("203.0.113.7")).is_some());
    assert_eq!((rule.set.len(), rule.set.stats().skipped_lines), (1, 1));
}

#[test]
fn an_empty_list_and_an_empty_set_match_nothing() {
    let set = one_list("# nothing yet\n\n").expect("valid list");
    assert!(set.is_empty());
    assert_eq!(set.lookup(&ip("10.0.0.1")), None);
    assert_eq!(IntelSet::empty().lookup(&ip("2001:db8::1")), None);
}

#[test]
fn bad_lines_name_file_line_column_text_and_count() {
    let text = "10.0.0.1\n\n  10.0.0.300   # typo\n10.1.2.3/8\n2001:db8::/129\n192.0.2.0/24\nfe80::1%eth0\n";
    let err = one_list(text).expect_err("bad lines");
    let IntelError::BadLines { first, count } = &err else { panic!("unexpected {err:?}") };
    assert_eq!(*count, 4);
    assert_eq!((first.path.as_path(), first.line, first.column), (Path::new("lists/feed.txt"), 3, 3));
    assert_eq!(first.key, "10.0.0.300");
    assert_eq!(
        err.to_string(),
        "lists/feed.txt:3:3: `10.0.0.300`: not an IP address or CIDR prefix (and 3 more bad lines)"
    );
}

#[test]
fn host_bits_set_is_a_bad_line_not_a_wider_prefix() {
    let err = one_list("10.1.2.3/8\n").expect_err("host bits");
    let first = err.config_error().expect("located");
    assert_eq!((first.line, first.key.as_str()), (1, "10.1.2.3/8"));
    assert!(first.message.contains("host bits are set (the network is 10.0.0.0/8"), "{}", first.message);
    let err = one_list("2001:db8::1/32\n").expect_err("host bits");
    assert!(err.to_string().contains("2001:db8::/32"), "{err}");
    assert_eq!(err.to_string(), err.config_error().expect("located").to_string());
}

#[test]
fn lenient_lists_skip_and_count_bad_lines() {
    let text = "10.0.0.1\njunk\n10.0.0.2\n<html>\n10.0.0.0/33\n10.0.0.3\n";
    let set = IntelSet::from_texts(&[(IntelSource::lenient("feed", "feed.txt"), text)]).expect("lenient");
    let list = &set.lists()[0];
    assert_eq!((list.len(), list.skipped_lines()), (3, 3));
    let first = list.first_skipped().expect("first skipped line");
    assert_eq!((first.line, first.key.as_str()), (2, "junk"));
    assert_eq!(set.stats().skipped_lines, 3);
    // Entries are numbered by entry line, not file line.
    assert_eq!(set.lookup(&ip("10.0.0.3")).map(|m| m.entry), Some(2));
    assert_eq!(set.lookup(&ip("10.0.0.4")), None);
}

#[test]
fn families_never_match_each_other() {
    let set = IntelSet::from_entries([
        ("v4-all", vec![cidr("0.0.0.0/0")]),
        ("v6-all", vec![cidr("::/0"), cidr("::/64"), cidr("::/96")]),
    ])
    .expect("set");
    for a in ["0.0.0.0", "1.2.3.4", "255.255.255.255", "::ffff:10.0.0.1"] {
        assert_eq!(set.lookup(&ip(a)).map(|m| m.list), Some(0), "{a}");
        assert_eq!(set.lookup(&ip(a)).map(|m| m.prefix), Some(cidr("0.0.0.0/0")), "{a}");
    }
    assert_eq!(set.lookup(&ip("2001:db8::1")).map(|m| m.prefix), Some(cidr("::/0")));
    assert_eq!(set.lookup(&ip("::5")).map(|m| m.prefix), Some(cidr("::/96")));
    assert_eq!(set.lookup(&ip("::1:0:0:5")).map(|m| m.prefix), Some(cidr("::/64")));

    // IPv4 entries written IPv4-mapped are IPv4 entries.
    let set = one_list("::ffff:10.0.0.0/104\n::ffff:192.0.2.1\n").expect("mapped");
    assert_eq!(set.lookup(&ip("10.9.9.9")).map(|m| m.prefix), Some(cidr("10.0.0.0/8")));
    assert_eq!(set.lookup(&ip("192.0.2.1")).map(|m| m.prefix), Some(cidr("192.0.2.1/32")));
    assert_eq!(set.lookup(&ip("::a09:909")), None);
    let stats = set.stats();
    assert_eq!((stats.ipv4_hosts, stats.ipv4_prefixes, stats.ipv6_hosts, stats.ipv6_prefixes), (1, 1, 0, 0));
}

#[test]
fn identical_entries_first_list_then_first_line_wins() {
    let set = IntelSet::from_texts(&[
        (IntelSource::strict("a", "a.txt"), "10.0.0.0/8\n192.0.2.1\n192.0.2.1\n"),
        (IntelSource::strict("b", "b.txt"), "192.0.2.1\n10.0.0.0/8\n10.1.0.0/16\n2001:db8::1\n"),
        (IntelSource::strict("c", "c.txt"), "2001:db8::1\n2001:db8::/32\n2001:db8::/32\n"),
    ])
    .expect("set");
    let at = |a: &str| set.lookup(&ip(a)).map(|m| (set.list_name(m.list).to_string(), m.entry));
    assert_eq!(at("192.0.2.1"), Some(("a".into(), 1)));
    assert_eq!(at("10.0.0.1"), Some(("a".into(), 0)));
    assert_eq!(at("10.1.0.1"), Some(("b".into(), 2)));
    assert_eq!(at("2001:db8::1"), Some(("b".into(), 3)));
    assert_eq!(at("2001:db8::2"), Some(("c".into(), 1)));
    assert_eq!(set.stats().duplicates, 5);
    assert_eq!(set.len(), 10);
}

/// The longest prefix containing `addr` of the same family, ties to the first list and entry.
fn brute_force(entries: &[(Cidr, u16, u32)], addr: &IpAddress) -> Option<IntelMatch> {
    entries
        .iter()
        .filter(|(c, _, _)| c.network().is_v4() == addr.is_v4() && c.contains(addr))
        .min_by_key(|(c, list, entry)| (std::cmp::Reverse(c.len128()), *list, *entry))
        .map(|&(prefix, list, entry)| IntelMatch { prefix, list, entry })
}

/// Random lists clustered around a few anchors, so prefixes nest, repeat and share `/16`s.
fn random_lists(rng: &mut Rng, lists: usize, per_list: usize) -> Vec<Vec<Cidr>> {
    let anchors4: Vec<u32> = (0..4)
        .map(|i| match i {
            0 => 0,
            1 => u32::MAX,
            _ => rng.next_u64() as u32,
        })
        .collect();
    // Half the time, all IPv6 entries share 2001:db8::/32, as clustered feeds do.
    let clustered = rng.below(2) == 0;
    let (anchors6, spread6): (Vec<u128>, u64) = if clustered {
        ((0..3).map(|_| 0x2001_0db8_u128 << 96 | rng.next_u128() >> 32).collect(), 97)
    } else {
        ((0..3).map(|i| if i == 0 { u128::MAX } else { rng.next_u128() }).collect(), 129)
    };
    (0..lists)
        .map(|_| {
            (0..per_list)
                .map(|_| {
                    if rng.below(3) > 0 {
                        let anchor = anchors4[rng.below(4) as usize];
                        let spread = rng.below(33) as u32;
                        let noise = if spread == 0 { 0 } else { (rng.next_u64() as u32) >> (32 - spread) };
                        let bits = anchor ^ noise;
                        let len = match rng.below(4) {
                            0 => 32,
                            _ => rng.below(33) as u8,
                        };
                        Cidr::new(v4(bits), len).expect("v4 prefix")
                    } else {
                        let anchor = anchors6[rng.below(3) as usize];
                        let spread = rng.below(spread6) as u32;
                        let noise = if spread == 0 { 0 } else { rng.next_u128() >> (128 - spread) };
                        let len = match rng.below(4) {
                            0 => 128,
                            _ => rng.below(129) as u8,
                        };
                        let addr = IpAddress::from_bits(anchor ^ noise);
                        // An address that landed in the IPv4-mapped range is IPv4: shift it out.
                        let addr = if addr.is_v4() {
                            IpAddress::from_bits(anchor ^ noise ^ (1 << 127))
                        } else {
                            addr
                        };
                        Cidr::new(addr, len).expect("v6 prefix")
                    }
                })
                .collect()
        })
        .collect()
}

#[test]
fn longest_prefix_match_agrees_with_brute_force() {
    for seed in 0..24u64 {
        let mut rng = Rng(seed);
        let (count, per_list) = (1 + rng.below(4) as usize, 20 + rng.below(200) as usize);
        let lists = random_lists(&mut rng, count, per_list);
        let names: Vec<String> = (0..lists.len()).map(|i| format!("list{i}")).collect();
        let set =
            IntelSet::from_entries(names.iter().map(String::as_str).zip(lists.iter().cloned())).expect("set");
        let entries: Vec<(Cidr, u16, u32)> = lists
            .iter()
            .zip(0u16..)
            .flat_map(|(l, li)| l.iter().zip(0u32..).map(move |(c, ei)| (*c, li, ei)))
            .collect();

        let mut queries: Vec<IpAddress> =
            vec![v4(0), v4(u32::MAX), IpAddress::UNSPECIFIED, IpAddress::from_bits(u128::MAX)];
        for (c, _, _) in &entries {
            let first = c.network().to_bits();
            let host_bits = u128::MAX.checked_shr(u32::from(c.len128())).unwrap_or(0);
            let last = first | host_bits;
            let inside = first | (rng.next_u128() & host_bits);
            for q in [first, last, first.wrapping_sub(1), last.wrapping_add(1), inside] {
                queries.push(IpAddress::from_bits(q));
            }
        }
        for _ in 0..2000 {
            let (c, _, _) = entries[rng.below(entries.len() as u64) as usize];
            let flip = 1u128 << rng.below(if c.network().is_v4() { 32 } else { 128 });
            queries.push(IpAddress::from_bits(c.network().to_bits() ^ flip));
            queries.push(v4(rng.next_u64() as u32));
            queries.push(IpAddress::from_bits(rng.next_u128()));
        }
        let mut surely = 0;
        for q in &queries {
            let expected = brute_force(&entries, q);
            assert_eq!(set.lookup(q), expected, "seed {seed}, address {q}");
            if set.surely_misses(q) {
                assert_eq!(expected, None, "seed {seed}: {q} is listed");
                surely += 1;
            }
        }
        assert!(
            surely > 0 || entries.iter().any(|e| e.0.network().is_v4() && e.0.family_len() < 8),
            "seed {seed}"
        );
    }
}

#[test]
fn load_reads_files_and_reload_picks_up_changes() {
    let dir = Scratch::new("reload");
    let a = dir.write("a.txt", "192.0.2.1\n");
    let b = dir.write("b.txt", "2001:db8::/32 # docs\n");
    let sources = [IntelSource::strict("a", &a), IntelSource::lenient("b", &b)];
    let set = IntelSet::load(&sources).expect("load");
    assert_eq!(set.sources(), &sources);
    assert_eq!(set.lists()[0].path(), Some(a.as_path()));
    assert!(set.lookup(&ip("192.0.2.1")).is_some());
    assert!(set.lookup(&ip("192.0.2.2")).is_none());

    dir.write("a.txt", "192.0.2.2\n");
    dir.write("b.txt", "junk\n2001:db9::/32\n");
    let reloaded = set.reload().expect("reload");
    assert!(reloaded.lookup(&ip("192.0.2.1")).is_none());
    assert_eq!(reloaded.lookup(&ip("192.0.2.2")).map(|m| m.list), Some(0));
    assert_eq!(reloaded.lookup(&ip("2001:db9::7")).map(|m| m.list), Some(1));
    assert_eq!(reloaded.lists()[1].skipped_lines(), 1);
    // The running set is untouched.
    assert!(set.lookup(&ip("192.0.2.1")).is_some());

    // A failed reload leaves the caller with the set it has.
    dir.write("a.txt", "192.0.2.300\n");
    let err = reloaded.reload().expect_err("bad line");
    assert!(err.to_string().starts_with(&format!("{}:1:1: `192.0.2.300`", a.display())), "{err}");
    std::fs::remove_file(&b).expect("remove");
    dir.write("a.txt", "192.0.2.3\n");
    let err = reloaded.reload().expect_err("missing file");
    assert!(matches!(err, IntelError::Unreadable(_)), "{err:?}");
    assert!(err.to_string().contains("cannot read intel list `b`"), "{err}");

    let in_memory = IntelSet::from_entries([("m", vec![cidr("10.0.0.0/8")])]).expect("set");
    assert_eq!(in_memory.reload().err(), Some(IntelError::NotReloadable));
}

/// A list file too large to be read whole (over a megabyte: read in parts through small
/// buffers, on every core) loads as its text does in memory: the same entries, descriptions,
/// duplicates and bad lines, the first at its line number.
#[test]
fn a_large_list_file_loads_as_its_text_does() {
    let dir = Scratch::new("large");
    let mut rng = Rng(7);
    let mut text = String::from("\u{feff}# a feed\r\n");
    for i in 0..120_000u32 {
        let r = rng.next_u64();
        let [a, b, c, d] = (r as u32).to_be_bytes();
        match i % 50 {
            0 => writeln!(text, "{a}.{b}.0.0/16 ; campaign {i}").expect("write"),
            1 => writeln!(text, "2001:db8:{:x}::/48", r >> 48).expect("write"),
            2 => writeln!(text, "2001:db8::{:x}:{:x}\r", r >> 48, (r >> 32) & 0xffff).expect("write"),
            3 if i % 7_000 == 3 => writeln!(text, "{a}.{b}.{c}.300 not an address").expect("write"),
            _ => writeln!(text, "{a}.{b}.{c}.{d}").expect("write"),
        }
    }
    text.push_str("192.0.2.77");
    assert!(text.len() > 1 << 20, "{} bytes: read in parts", text.len());
    let path = dir.write("large.txt", &text);
    let source = IntelSource::lenient("large", &path);
    let from_file = IntelSet::load(std::slice::from_ref(&source)).expect("load");
    let in_memory = IntelSet::from_texts(&[(source, text.as_str())]).expect("from text");
    assert_eq!(from_file.stats(), in_memory.stats());
    let (f, m) = (&from_file.lists()[0], &in_memory.lists()[0]);
    assert_eq!((f.len(), f.skipped_lines()), (m.len(), m.skipped_lines()));
    assert!(f.skipped_lines() > 10);
    assert_eq!(f.first_skipped(), m.first_skipped());
    for line in text.trim_start_matches('\u{feff}').lines() {
        let Some(Ok(prefix)) = line.split_whitespace().next().map(str::parse::<Cidr>) else { continue };
        let (x, y) = (from_file.lookup(&prefix.network()), in_memory.lookup(&prefix.network()));
        assert_eq!(x, y, "{line}");
        let x = x.expect("listed");
        assert_eq!(
            from_file.entry_description(x.list, x.entry),
            in_memory.entry_description(x.list, x.entry)
        );
    }
    assert!(from_file.lookup(&ip("192.0.2.77")).is_some(), "the last line, without a line feed");
}

/// One line per entry: 900k IPv4 hosts, 50k IPv4 prefixes /8../30, 25k IPv6 hosts and 25k
/// IPv6 prefixes. Returns the text and a sample of (address, expected prefix length).
fn million_line_list(rng: &mut Rng) -> (String, Vec<(IpAddress, u8)>) {
    let mut text = String::with_capacity(20 << 20);
    let mut sample = Vec::new();
    for i in 0..1_000_000u32 {
        match i {
            0..900_000 => {
                let a = rng.next_u64() as u32;
                let _ = writeln!(text, "{}", std::net::Ipv4Addr::from(a));
                if i % 1000 == 0 {
                    sample.push((v4(a), 32));
                }
            }
            900_000..950_000 => {
                let len = 8 + rng.below(23) as u32;
                let net = (rng.next_u64() as u32) & (u32::MAX << (32 - len));
                let _ = writeln!(text, "{}/{len} prefix {i}", std::net::Ipv4Addr::from(net));
            }
            950_000..975_000 => {
                let a = 0x2000_u128 << 112 | rng.next_u128() >> 4;
                let _ = writeln!(text, "{}", std::net::Ipv6Addr::from(a));
                sample.push((IpAddress::from_bits(a), 128));
            }
            _ => {
                let len = 16 + rng.below(112) as u32;
                let net = (0x2000_u128 << 112 | rng.next_u128() >> 4) & (u128::MAX << (128 - len));
                let _ = writeln!(text, "{}/{len}", std::net::Ipv6Addr::from(net));
            }
        }
    }
    (text, sample)
}

#[test]
fn a_million_entries_load() {
    let dir = Scratch::new("million");
    let (text, sample) = million_line_list(&mut Rng(7));
    let path = dir.write("big.txt", &text);
    drop(text);
    let set = IntelSet::load(&[IntelSource::strict("big", &path)]).expect("load");
    let stats = set.stats();
    assert_eq!(stats.entries, 1_000_000);
    assert_eq!(
        stats.ipv4_hosts + stats.ipv4_prefixes + stats.ipv6_hosts + stats.ipv6_prefixes + stats.duplicates,
        1_000_000
    );
    for (addr, len) in sample {
        let m = set.lookup(&addr).expect("listed host");
        assert_eq!(m.prefix.family_len(), len, "{addr}");
    }
    assert!(set.entry_description(0, 900_000).is_some_and(|d| d.starts_with("prefix 900000")));
}

#[test]
fn a_feed_update_keeps_the_intel_rules_state_over_a_reload_and_a_new_list_file_does_not() {
    let scratch = Scratch::new("feed-update");
    let feed = scratch.0.join("feed.txt");
    let rule = |path: &str, cooldown: &str| {
        format!(
            "[[intel]]\nname = \"feed\"\ncooldown = \"{cooldown}\"\nlists = [{{ name = \"f\", path = \"{path}\" }}]\n"
        )
    };
    std::fs::write(&feed, "203.0.113.7\n").unwrap();
    let before = compile_rules(&scratch.0, &rule("feed.txt", "5m")).expect("loads");
    // The feed grows (a refresh), then the rules are reloaded: the same rule, with the new
    // entries — its cooldowns and dedup intervals carry over.
    std::fs::write(&feed, "203.0.113.7\n198.51.100.0/24\n2001:db8::/48\n").unwrap();
    let after = compile_rules(&scratch.0, &rule("feed.txt", "5m")).expect("loads");
    let outpost_detector::RuleKind::Intel(r) = &after.rules[0].kind else { panic!("an intel rule") };
    assert!(r.set.lookup(&ip("198.51.100.9")).is_some(), "the reload read the new entries");
    assert_eq!(after.carried_over_from(&before), [Some(outpost_detector::RuleId(0))]);
    // Another list file, or another cooldown: another rule, which starts fresh.
    std::fs::copy(&feed, scratch.0.join("other.txt")).unwrap();
    let moved = compile_rules(&scratch.0, &rule("other.txt", "5m")).expect("loads");
    assert_eq!(moved.carried_over_from(&before), [None]);
    let cooler = compile_rules(&scratch.0, &rule("feed.txt", "10m")).expect("loads");
    assert_eq!(cooler.carried_over_from(&before), [None]);
}

/// The occupancy test the detector runs on every packet reads an IPv4 packet's addresses as
/// 32-bit numbers; it answers as the per-address test does, for each direction, on addresses
/// in, beside and far from the listed ones.
#[test]
fn the_occupancy_test_of_an_ipv4_packet_is_that_of_its_addresses() {
    let scratch = Scratch::new("gate");
    let mut rng = Rng(11);
    for direction in ["either", "src", "dst"] {
        let text = format!(
            "[[intel]]\nname = \"feed\"\ndirection = \"{direction}\"\n\
             lists = [{{ name = \"f\", entries = [\"10.9.0.0/16\", \"192.0.2.7\", \"198.51.100.0/24\", \"2001:db8::/32\"] }}]\n"
        );
        let rules = compile_rules(&scratch.0, &text).expect("rules");
        let Some(outpost_detector::RuleKind::Intel(rule)) = rules.rules.first().map(|r| &r.kind) else {
            panic!("an intel rule");
        };
        let gate = rule.gate();
        let near = [0x0a09_0000u32, 0xc000_0207, 0xc633_6400, 0x0a0a_0000, 0xc000_0300];
        for _ in 0..20_000 {
            let mut pick = || match rng.below(3) {
                0 => near[rng.below_usize(near.len())] ^ (rng.below(1 << 12) as u32),
                _ => rng.next_u64() as u32,
            };
            let (src, dst) = (v4(pick()), v4(pick()));
            let m = outpost_decode::PacketMeta {
                src,
                dst,
                network: outpost_decode::Network::Ipv4,
                ..outpost_decode::PacketMeta::default()
            };
            let (s, d) = (rule.set.surely_misses(&src), rule.set.surely_misses(&dst));
            let expected = match direction {
                "either" => s && d,
                "src" => s,
                _ => d,
            };
            assert_eq!(gate.surely_misses(&m), expected, "{direction} {src:?} {dst:?}");
            assert_eq!(rule.surely_misses(&m), expected, "{direction} {src:?} {dst:?}");
        }
    }
}
