#!/usr/bin/env python3
"""Profile costs per thread and per source file, inlined code charged to the code that
inlined it.

Release builds inline nearly everything into each thread's main loop, so per-function
views say little ("std::sys::backtrace::__rust_begin_short_backtrace"). This resolves every
sampled or counted address of the program binary with `addr2line -i` (the inline chain from
the debug line tables). Per source, a cost goes to the innermost frame that is not the Rust
standard library (a `slice::get` inlined into the filter interpreter counts as filter code);
per pipeline stage, to the innermost frame of project code that is not a helper (a hashbrown
probe counts for the detector or the flow meter, whichever inlined it; see STAGES). Costs in
other objects (libc's memcpy, the kernel) are listed by object and function. The hottest
lines are listed too, each as its innermost frame outside the standard library and that
frame's caller in the inline chain (`file:line < caller file:line`).

  by_source.py callgrind BINARY FRAMES PROFILE...
      PROFILE: callgrind output taken with --separate-threads=yes --dump-instr=yes
      --compress-strings=no --compress-pos=no (one file per thread); cost = instructions.
  by_source.py perf BINARY FRAMES HZ PERF_DATA
      PERF_DATA: `perf record -e cpu-clock -F HZ` output; cost = samples, per thread name,
      also shown as CPU nanoseconds per frame (samples / HZ / FRAMES).

FRAMES divides the totals into per-frame figures. Needs only the standard library, addr2line
(binutils) and, for perf data, perf.
"""

import collections
import os
import re
import subprocess
import sys

TOP = 25
LINES = 15


def parse_callgrind(path):
    """Self instructions per (object, function, address) of one callgrind file."""
    cost = collections.Counter()
    ob = fn = ""
    skip_next = False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("ob="):
                ob = line[3:].strip()
            elif line.startswith("fn="):
                fn = line[3:].strip()
            elif line.startswith("calls="):
                skip_next = True  # the next cost line is the call's inclusive cost
            elif line.startswith("0x"):
                if skip_next:
                    skip_next = False
                    continue
                parts = line.split()
                if len(parts) >= 3:
                    cost[(ob, fn, int(parts[0], 16))] += int(parts[-1])
    return cost


def load_segments(binary):
    """(file offset, size, vaddr - offset) of each LOAD segment."""
    out = subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True, check=True).stdout
    segs = []
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == "LOAD":
            off, vaddr, filesz = int(parts[1], 16), int(parts[2], 16), int(parts[4], 16)
            segs.append((off, filesz, vaddr - off))
    return segs


SAMPLE = re.compile(r"^\s*(.+?)\s+(\d+)\s+([0-9a-f]+)\s+(.*?)\s*\((.*)\)\s*$")
MMAP = re.compile(r"PERF_RECORD_MMAP2? .*?\[0x([0-9a-f]+)\(0x([0-9a-f]+)\) @ 0x([0-9a-f]+) .*?\]: \S+ (.*)$")


def parse_perf(binary, data):
    """Samples per thread name: Counter of (object, symbol, address)."""
    real = os.path.realpath(binary)
    segs = load_segments(binary)
    maps = []
    per_thread = collections.defaultdict(collections.Counter)
    script = subprocess.run(
        ["perf", "script", "-i", data, "-F", "comm,tid,ip,sym,dso", "--show-mmap-events"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in script.splitlines():
        m = MMAP.search(line)
        if m:
            if os.path.realpath(m.group(4).strip()) == real:
                maps.append((int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16)))
            continue
        s = SAMPLE.match(line)
        if not s:
            continue
        comm, ip, sym, dso = s.group(1), int(s.group(3), 16), s.group(4), s.group(5)
        if os.path.realpath(dso) == real:
            addr = None
            for start, size, pgoff in maps:
                if start <= ip < start + size:
                    off = ip - start + pgoff
                    for soff, ssize, delta in segs:
                        if soff <= off < soff + ssize:
                            addr = off + delta
            per_thread[comm][(dso, sym, addr)] += 1
        else:
            per_thread[comm][(dso, sym, None)] += 1
    return per_thread


def is_std(loc):
    """True for the Rust standard library's frames (including the hashbrown it vendors)."""
    return "/rustc/" in loc or loc.startswith("/rust/deps/")


def resolve(binary, addrs):
    """Maps each address to its inline chain, innermost first: a list of `file:line` without
    the Rust standard library's frames."""
    out = {}
    proc = subprocess.run(
        ["addr2line", "-i", "-a", "-e", binary],
        input="".join(f"{a:#x}\n" for a in sorted(addrs)),
        capture_output=True,
        text=True,
        check=True,
    )
    current, chain = None, []

    def finish():
        if current is None:
            return
        ours = [loc for loc in chain if not is_std(loc) and not loc.startswith("??")]
        out[current] = ours or chain[:1] or ["??"]

    for line in proc.stdout.splitlines():
        if line.startswith("0x"):
            finish()
            current, chain = int(line, 16), []
        else:
            chain.append(line.strip())
    finish()
    return out


# Pipeline stages, matched against the frame that owns a cost (first match wins; frames are
# `path:line`). The owner is the innermost frame of the inline chain that is project code
# and not a helper: code of dependencies (hashbrown, foldhash, nom, ...) and IpAddress's
# derived Hash / Eq (decode/src/addr.rs:13) count for the project code that called them, so
# a hashbrown probe is charged to the detector or to the flow meter, whichever inlined it.
STAGES = [
    ("waiting (spin, yield, park, wake-ups)", ("capture/src/wait.rs", "sched_yield", "do_sched_yield",
                                               "finish_task_switch", "__schedule", "futex",
                                               "_raw_spin_unlock_irqrestore", "try_to_wake_up")),
    ("read() copy from the page cache", ("_copy_to_iter", "copy_page_to_iter", "filemap_",
                                         "__x64_sys_read", "vfs_read")),
    ("pcap record parsing", ("capture/src/pcap_file.rs", "capture/src/source.rs", "crate nom-",
                             "crate pcap-parser-")),
    ("block copy + dispatch", ("capture/src/block.rs", "capture/src/pipeline.rs", "memmove", "memcpy",
                               "crate rtrb-")),
    ("filter evaluation", ("filter/src/", "detector/src/machine.rs:214")),
    ("alert / flow / window output (JSON, NetFlow v9, IPFIX)", ("crate serde", "sensor/src/output.rs",
                                                              "sensor/src/replay.rs", "detector/src/alert.rs",
                                                              "detector/src/window.rs", "library/core/src/fmt",
                                                              "flowmeter/src/record.rs", "export/src/")),
    ("flow metering", ("flowmeter/src/",)),
    ("state machine: per-source map, transitions, timer wheel", ("detector/src/machine.rs",
                                                                 "detector/src/wheel.rs")),
    ("decode (and shard_hash)", ("decode/src/",)),
    ("detector loop + worker glue (PacketMeta moves)", ("detector/src/engine.rs", "sensor/src/worker.rs")),
    ("benchmark harness (block fill, timing)", ("bench/src/",)),
    ("other detection rules (threshold, sketch, baseline, sequence, intel: keys, per-key maps)", ("detector/src/",)),
]

# Frames that are never the owner of a cost (see STAGES).
HELPERS = ("/registry/src/", "decode/src/addr.rs:13")


def stage_of(chain):
    """The stage owning a cost, given its inline chain (innermost first), or "other"."""
    root = os.getcwd() + "/"
    owner = next((loc for loc in chain if loc.startswith(root) and not any(h in loc for h in HELPERS)), None)
    for loc in ([owner] if owner else []) + [short(chain[0])]:
        for name, keys in STAGES:
            if any(k in loc for k in keys):
                return name
    return "other (kernel, libc, start-up)"


def short(path):
    """A readable name for a source path."""
    marker = "/registry/src/"
    if marker in path:
        return "crate " + path.split(marker, 1)[1].split("/", 1)[1]
    root = os.getcwd() + "/"
    return path[len(root):] if path.startswith(root) else path


def report(title, cost, binary, frames, unit, hz=None):
    """Prints one thread's costs by stage and by source file; with `hz`, samples also as CPU
    ns per frame."""
    real = os.path.realpath(binary)
    ours = {a for (ob, _, a) in cost if a is not None and os.path.realpath(ob) == real}
    chains = resolve(binary, ours) if ours else {}
    by_source = collections.Counter()
    by_stage = collections.Counter()
    by_line = collections.Counter()
    for (ob, fn, a), n in cost.items():
        if a is not None and os.path.realpath(ob) == real:
            chain = chains.get(a, ["??"])
            by_source[short(chain[0].rsplit(":", 1)[0])] += n
            by_stage[stage_of(chain)] += n
            by_line[" < ".join(short(loc) for loc in chain[:2])] += n
        else:
            name = f"{os.path.basename(ob)}: {fn}"
            by_source[name] += n
            by_stage[stage_of([name])] += n
    total = sum(by_source.values())
    scale = 1e9 / hz if hz else 1.0
    per = "CPU ns/frame" if hz else f"{unit}/frame"
    print(f"-- {title}: {total:,} {unit}, {total * scale / max(frames, 1):.1f} {per}")
    print(f"{unit:>13} {'share':>6} {per:>12}  stage")
    for stage, n in by_stage.most_common():
        print(f"{n:>13,} {100 * n / total:>5.1f}% {n * scale / max(frames, 1):>12.1f}  {stage}")
    print(f"{unit:>13} {'share':>6} {per:>12}  source (innermost frame outside the standard library)")
    for src, n in by_source.most_common(TOP):
        if n * 200 < total:
            break
        print(f"{n:>13,} {100 * n / total:>5.1f}% {n * scale / max(frames, 1):>12.1f}  {src}")
    print(f"{unit:>13} {'share':>6} {per:>12}  line (innermost frame outside the standard library < its caller)")
    for line, n in by_line.most_common(LINES):
        if n * 100 < total:
            break
        print(f"{n:>13,} {100 * n / total:>5.1f}% {n * scale / max(frames, 1):>12.1f}  {line}")
    print()


def main():
    if len(sys.argv) < 5 or sys.argv[1] not in ("callgrind", "perf"):
        sys.exit(__doc__)
    mode, binary, frames = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "callgrind":
        for path in sys.argv[4:]:
            report(path, parse_callgrind(path), binary, frames, "Ir")
    else:
        if len(sys.argv) < 6:
            sys.exit(__doc__)
        hz = float(sys.argv[4])
        threads = parse_perf(binary, sys.argv[5])
        grand = sum(sum(c.values()) for c in threads.values())
        print(f"perf samples: {grand:,}")
        for comm, c in sorted(threads.items(), key=lambda kv: -sum(kv[1].values())):
            n = sum(c.values())
            print(f"  thread {comm}: {n:,} samples ({100 * n / max(grand, 1):.1f} %), {n / hz:.3f} CPU s")
        print()
        for comm, c in sorted(threads.items(), key=lambda kv: -sum(kv[1].values())):
            report(f"thread {comm}", c, binary, frames, "samples", hz)


if __name__ == "__main__":
    main()
