#!/usr/bin/env python3
"""Interleaved A/B timing (BENCHMARKS.md sections 6 and 9).

    bench/ab.py REPS NAME1 CMD1 NAME2 CMD2 ...

Runs every command REPS times, the order rotating every repetition, each timed from outside
(wall: monotonic clock around the child; CPU: user + sys of the child from os.wait4; peak RSS),
and prints each repetition and the medians, with ratios to the first case. While it runs it binds
127.0.0.1:29997 (UDP) and never reads it, for `--netflow9 127.0.0.1:29997`.

A command containing `{summary}` gets a scratch file's path there (give it to `outpost replay
--summary-json {summary}`); its `wall_seconds` — the pipeline's own time, from its first frame
read to its last record written, without start-up (configuration, rules, intel lists) — is
reported beside the process's wall time, as "pipeline".
"""
import os, sys, time, subprocess, statistics, socket, shlex, json, tempfile
reps = int(sys.argv[1]); args = sys.argv[2:]
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
        t0 = time.monotonic()
        p = subprocess.Popen(c.replace("{summary}", summary), shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, st, ru = os.wait4(p.pid, 0)
        w = time.monotonic() - t0
        if st != 0: print("FAIL", n, st, file=sys.stderr)
        pipeline = json.load(open(summary))["wall_seconds"] if "{summary}" in c else None
        res[n].append((w, ru.ru_utime + ru.ru_stime, ru.ru_maxrss/1024, pipeline))
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
    print(line)
