#!/usr/bin/env bash
# Where `outpost replay --workers 1` spends its time, for BENCHMARKS.md ("Profile").
#
#   1. perf, sampling the software cpu-clock event (hardware counters are often unavailable in
#      VMs), over the seed scenario with PROFILE_EVENTS events (default 4,000,000), with one
#      worker, with one worker per core, and with one worker and the flow meter off: CPU time
#      per thread and per source file, inlined code charged to the code that inlined it
#      (bench/by_source.py);
#   2. callgrind over a smaller capture (PROFILE_CALLGRIND_EVENTS, default 100,000): exact
#      instruction counts per thread and per source file, attributed the same way, divided
#      by the frames to get instructions per packet.
#
# Uses the release binary (built with line tables). Output goes to $BENCH_OUT/profile.txt
# (default out/bench) and the raw data files next to it. Run `make bench` first or let this
# build.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

EVENTS=${PROFILE_EVENTS:-4000000}
CG_EVENTS=${PROFILE_CALLGRIND_EVENTS:-100000}
OUT=${BENCH_OUT:-out/bench}
CARGO=${CARGO:-cargo}
OUTPOST=${CARGO_TARGET_DIR:-target}/release/outpost
PCAP=$OUT/profile.pcap
CG_PCAP=$OUT/profile-small.pcap

for tool in perf valgrind addr2line readelf python3; do
  command -v "$tool" >/dev/null || { echo "profile: $tool not found" >&2; exit 1; }
done

"$CARGO" build --release -p outpost-sensor
mkdir -p "$OUT"

main() {
  local gen=(gen seed --clients 1000 --error-prob 0.001 --noise 0.2 --seed 1)
  echo "== profile, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (work tree modified)')"
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$OUTPOST" "${gen[@]}" --events "$EVENTS" --out "$PCAP" 2>/dev/null
  "$OUTPOST" "${gen[@]}" --events "$CG_EVENTS" --out "$CG_PCAP" 2>/dev/null
  cat "$PCAP" "$CG_PCAP" >/dev/null

  # The built-in configuration, and the same with the flow meter off.
  awk '/^\[flows\][ \t]*$/ { print; print "enabled = false"; inflows = 1; done = 1; next }
    /^\[/ { inflows = 0 }
    inflows && /^[ \t]*enabled[ \t]*=/ { next }
    { print }
    END { if (!done) { print ""; print "[flows]"; print "enabled = false" } }' config/outpost.toml >"$OUT/noflows.toml"
  local label workers cfg
  for label in w1 "w$(nproc)" w1-noflows; do
    workers=${label#w}
    workers=${workers%-noflows}
    cfg=()
    [[ $label == *-noflows ]] && cfg=(--config "$OUT/noflows.toml")
    echo
    echo "== perf (cpu-clock samples), $EVENTS events, --workers $workers${cfg:+ ${cfg[*]}}"
    local run=("$OUTPOST" replay "$PCAP" "${cfg[@]}" --alerts /dev/null --workers "$workers" --quiet
      --summary-json "$OUT/profile-summary-$label.json")
    echo "\$ perf record -e cpu-clock -F 10000 -o $OUT/perf-$label.data -- ${run[*]}"
    perf record -q -e cpu-clock -F 10000 -o "$OUT/perf-$label.data" -- "${run[@]}"
    echo "summary: $(cat "$OUT/profile-summary-$label.json")"
    echo
    local pframes
    pframes=$(grep -o '"frames":[0-9]*' "$OUT/profile-summary-$label.json" | cut -d: -f2)
    echo "\$ bench/by_source.py perf $OUTPOST $pframes 10000 $OUT/perf-$label.data"
    python3 bench/by_source.py perf "$OUTPOST" "$pframes" 10000 "$OUT/perf-$label.data"
  done
  echo
  echo "== callgrind (instructions), $CG_EVENTS events"
  local cg=("$OUTPOST" replay "$CG_PCAP" --alerts /dev/null --workers 1 --quiet --summary-json "$OUT/profile-small-summary.json")
  local opts=(--tool=callgrind --separate-threads=yes --dump-instr=yes --compress-strings=no --compress-pos=no)
  echo "\$ valgrind ${opts[*]} --callgrind-out-file=$OUT/callgrind.out ${cg[*]}"
  rm -f "$OUT"/callgrind.out*
  valgrind "${opts[@]}" --callgrind-out-file="$OUT/callgrind.out" "${cg[@]}" 2>"$OUT/callgrind.log"
  local frames
  frames=$(grep -o '"frames":[0-9]*' "$OUT/profile-small-summary.json" | cut -d: -f2)
  echo "frames: $frames"
  # Threads are numbered in creation order: 01 the main thread (collector, JSON output),
  # 02 the worker (--workers 1 starts it first), 03 the receive thread.
  echo "threads: -01 main (collector + output), -02 worker 0, -03 receive"
  echo "\$ bench/by_source.py callgrind $OUTPOST $frames $OUT/callgrind.out-0{2,3,1}"
  python3 bench/by_source.py callgrind "$OUTPOST" "$frames" "$OUT/callgrind.out-02" "$OUT/callgrind.out-03" \
    "$OUT/callgrind.out-01"
}

main 2>&1 | tee "$OUT/profile.txt"
echo "profile written to $OUT/profile.txt"
