#!/usr/bin/env python3
"""Interleaved A/B timing (BENCHMARKS.md sections 6 and 9).

    bench/ab.py REPS NAME1 CMD1 NAME2 CMD2 ...

Runs every command REPS times, the order rotating every repetition, each timed from outside
(wall: monotonic clock around the child; CPU: user + sys of the child from os.wait4; peak RSS),
and prints each repetition and the medians, with ratios to the first case. While it runs it binds
127.0.0.1:29997 (UDP) and never reads it, for `--netflow9 127.0.0.1:29997`.
"""
import os, sys, time, subprocess, statistics, socket, shlex
reps = int(sys.argv[1]); args = sys.argv[2:]
cases = [(args[i], args[i+1]) for i in range(0, len(args), 2)]
# bound-never-read UDP socket for netflow
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 29997))
res = {n: [] for n, _ in cases}
for r in range(reps):
    order = cases[r % len(cases):] + cases[:r % len(cases)]
    for n, c in order:
        t0 = time.monotonic()
        p = subprocess.Popen(c, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, st, ru = os.wait4(p.pid, 0)
        w = time.monotonic() - t0
        if st != 0: print("FAIL", n, st, file=sys.stderr)
        res[n].append((w, ru.ru_utime + ru.ru_stime, ru.ru_maxrss/1024))
    print(f"rep {r} load {os.getloadavg()[0]:.2f} " + " ".join(f"{n}={res[n][-1][0]:.3f}/{res[n][-1][1]:.3f}" for n, _ in cases), flush=True)
b = cases[0][0]
bw = statistics.median(x[0] for x in res[b]); bc = statistics.median(x[1] for x in res[b])
for n, _ in cases:
    w = statistics.median(x[0] for x in res[n]); c = statistics.median(x[1] for x in res[n])
    mn = min(x[0] for x in res[n])
    rss = statistics.median(x[2] for x in res[n]); print(f"{n:24s} wall {w:.3f} (min {mn:.3f}) cpu {c:.3f} rss {rss:.0f}MiB  ratio wall {w/bw:.3f} cpu {c/bc:.3f}")
