#!/usr/bin/env python3
"""Interleaved A/B timing (BENCHMARKS.md sections 6 and 9).

    bench/ab.py [--threads] REPS NAME1 CMD1 NAME2 CMD2 ...

Runs every command REPS times, the order rotating every repetition, each timed from outside
(wall: monotonic clock around the child; CPU: user + sys of the child from os.wait4; peak RSS),
and prints each repetition and the medians, with ratios to the first case. While it runs it binds
127.0.0.1:29997 (UDP) and never reads it, for `--netflow9 127.0.0.1:29997`.

A command containing `{summary}` gets a scratch file's path there (give it to `outpost replay
--summary-json {summary}`); its `wall_seconds` — the pipeline's own time, from its first frame
read to its last record written, without start-up (configuration, rules, intel lists) — is
reported beside the process's wall time, as "pipeline".

With `--threads`, each run's CPU time is also taken per thread (from /proc/PID/task/*/schedstat,
read every 5 ms while the command runs; threads are grouped by name, the main thread as "main",
unnamed helper threads as "other"), and the medians are printed per case: which stage a
difference lands in, and whether the machine's two cores were both busy. The polling costs a
little CPU itself, the same for every case.
"""
import os, sys, time, subprocess, statistics, socket, shlex, json, tempfile, glob
threads = sys.argv[1] == "--threads"
if threads: del sys.argv[1]
reps = int(sys.argv[1]); args = sys.argv[2:]


def thread_cpu(pid, seen):
    """Adds the CPU seconds so far of each thread of `pid` to `seen` ((tid, group) -> s)."""
    for d in glob.glob(f"/proc/{pid}/task/*"):
        try:
            comm = open(d + "/comm").read().strip()
            ns = int(open(d + "/schedstat").read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        tid = d.rsplit("/", 1)[1]
        group = "main" if tid == str(pid) else comm if comm.startswith("outpost-") else "other"
        seen[(tid, group)] = ns / 1e9


def run(cmd):
    """Runs `cmd`; returns (wall, rusage, per-thread-group CPU seconds or None)."""
    t0 = time.monotonic()
    p = subprocess.Popen("exec " + cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = {}
    while True:
        pid, st, ru = os.wait4(p.pid, os.WNOHANG if threads else 0)
        if pid:
            break
        thread_cpu(p.pid, seen)
        time.sleep(0.005)
    w = time.monotonic() - t0
    groups = None
    if threads:
        groups = {}
        for (_, g), sec in seen.items():
            groups[g] = groups.get(g, 0.0) + sec
    return w, st, ru, groups
cases = [(args[i], args[i+1]) for i in range(0, len(args), 2)]
# bound-never-read UDP socket for netflow
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 29997))
res = {n: [] for n, _ in cases}
scratch = tempfile.mkdtemp(prefix="ab-")
for r in range(reps):
    order = cases[r % len(cases):] + cases[:r % len(cases)]
    for n, c in order:
        summary = os.path.join(scratch, "summary.json")
        if os.path.exists(summary): os.remove(summary)
        w, st, ru, groups = run(c.replace("{summary}", summary))
        if st != 0: print("FAIL", n, st, file=sys.stderr)
        pipeline = json.load(open(summary))["wall_seconds"] if "{summary}" in c else None
        res[n].append((w, ru.ru_utime + ru.ru_stime, ru.ru_maxrss/1024, pipeline, groups))
    print(f"rep {r} load {os.getloadavg()[0]:.2f} " + " ".join(f"{n}={res[n][-1][0]:.3f}/{res[n][-1][1]:.3f}" + (f"/{res[n][-1][3]:.3f}" if res[n][-1][3] is not None else "") for n, _ in cases), flush=True)
b = cases[0][0]
bw = statistics.median(x[0] for x in res[b]); bc = statistics.median(x[1] for x in res[b])
for n, _ in cases:
    w = statistics.median(x[0] for x in res[n]); c = statistics.median(x[1] for x in res[n])
    mn = min(x[0] for x in res[n])
    rss = statistics.median(x[2] for x in res[n])
    line = f"{n:24s} wall {w:.3f} (min {mn:.3f}) cpu {c:.3f} rss {rss:.0f}MiB  ratio wall {w/bw:.3f} cpu {c/bc:.3f}"
    if res[n][0][3] is not None and res[b][0][3] is not None:
        pl = statistics.median(x[3] for x in res[n]); bp = statistics.median(x[3] for x in res[b])
        line += f"  pipeline {pl:.3f} (min {min(x[3] for x in res[n]):.3f}) ratio {pl/bp:.3f}"
    if threads:
        names = sorted({g for x in res[n] for g in x[4]})
        line += "  threads " + " ".join(f"{g}={statistics.median(x[4].get(g, 0.0) for x in res[n]):.3f}" for g in names)
    print(line)
