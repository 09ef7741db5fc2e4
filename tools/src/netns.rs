//! Throwaway network namespaces for tests and benchmarks that need real interfaces: a veth
//! pair inside a namespace of its own, deleted — with the pair and any XDP program on it —
//! when the guard drops, also when a test panics.

use std::os::fd::AsRawFd as _;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// True when the process runs as root (effective uid 0).
#[must_use]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `cmd` and returns its standard output; panics with its standard error on failure.
///
/// # Panics
/// When the command cannot start or exits unsuccessfully.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace `PREFIX-<pid>-<n>` (unique per process and call) with a veth pair,
/// both ends and `lo` up, IPv6 off (no neighbour discovery in captures) and segmentation,
/// checksum and GRO offloads off (frames are seen as sent). Deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace and the veth pair `a` ⇄ `b` in it.
    ///
    /// # Panics
    /// When `ip`, `sysctl` or `ethtool` fail (needs root).
    #[must_use]
    pub fn with_veth(prefix: &str, a: &str, b: &str) -> Netns {
        Netns::with_veth_queues(prefix, a, b, 1)
    }

    /// Like [`Netns::with_veth`], with `queues` receive and transmit queues on each end (a
    /// frame sent on `b`'s transmit queue `q` arrives on `a`'s receive queue `q`; the kernel
    /// spreads a sender's flows over the transmit queues by flow hash).
    ///
    /// # Panics
    /// When `ip`, `sysctl` or `ethtool` fail (needs root).
    #[must_use]
    pub fn with_veth_queues(prefix: &str, a: &str, b: &str, queues: u32) -> Netns {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        run(Command::new("ip").args(["netns", "add", &name]));
        // From here on the guard deletes the namespace whatever happens.
        let ns = Netns { name };
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        let q = queues.max(1).to_string();
        let qs = ["numrxqueues", &q, "numtxqueues", &q];
        ns.ip(&[&["link", "add", "name", a][..], &qs, &["type", "veth", "peer", "name", b], &qs].concat());
        for dev in [a, b] {
            ns.exec(&["ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off", "gro", "off"]);
            ns.ip(&["link", "set", "dev", dev, "up"]);
        }
        ns.ip(&["link", "set", "dev", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`, which execs it:
    /// the child's pid is the program's).
    #[must_use]
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `args` inside the namespace; returns standard output, panics on failure.
    pub fn exec(&self, args: &[&str]) -> String {
        let (program, rest) = args.split_first().expect("a command");
        run(self.cmd(program).args(rest))
    }

    /// Runs `ip -n NAME args...`; returns standard output, panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// `ip -d link show dev IF` inside the namespace (shows an attached XDP program as
    /// `prog/xdp id N`).
    #[must_use]
    pub fn link(&self, interface: &str) -> String {
        self.ip(&["-d", "link", "show", "dev", interface])
    }

    /// Runs `f` on a thread that has entered the namespace (setns changes that thread only)
    /// and returns its result; a panic inside is raised again here. Sockets opened there stay
    /// in the namespace wherever they are used afterwards.
    ///
    /// # Panics
    /// When the namespace cannot be entered, or `f` panics.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(move || {
                let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                // SAFETY: `ns` is an open namespace file; setns affects only this thread.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}
