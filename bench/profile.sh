#!/usr/bin/env bash
# Where `outpost replay` and the flow meter spend their time, for BENCHMARKS.md ("Profile").
#
#   1. perf, sampling the software cpu-clock event at 10 kHz (hardware counters are often
#      unavailable in VMs), CPU time per thread and per source file, inlined code charged to
#      the code that inlined it (bench/by_source.py), over:
#        seed-w1        the seed scenario (PROFILE_EVENTS events, default 4,000,000), one
#                       worker, only the seed rule ($BENCH_OUT/seed-rule.toml, as in
#                       bench/run.sh): detection only, no flow is metered;
#        seed-w1-flows  the same with --flows /dev/null (flow metering + JSON records);
#        seed-builtin-w1  the seed scenario with the built-in configuration (every rule of
#                       config/rules.d; flows metered because some rules need them);
#        mix-w1-nf9     the mix scenario of bench/run.sh (PROFILE_MIX_FLOWS flows, default
#                       450,000: ~5.4M packets), one worker, no rules ($BENCH_OUT/flows-only.toml),
#                       flows exported as NetFlow v9 to a bound UDP socket nobody reads;
#        mix-w2-nf9     the same with two workers;
#        mix-w1-json    the same with one worker and --flows /dev/null;
#        mix-builtin-w1-nf9  the mix with the built-in configuration, one worker, NetFlow v9;
#        flows-100k / flows-1m   the in-memory benchmark's `batch32` case (decode + prepare +
#                       on_prepared) at 100,000 and 1,000,000 flows (bench/src/bin/flows.rs);
#   2. callgrind over smaller captures: the seed (PROFILE_CALLGRIND_EVENTS events, default
#      100,000; seed rule only) and the mix (PROFILE_CALLGRIND_MIX_FLOWS flows, default 20,000;
#      no rules), one worker, with --flows /dev/null: exact instruction counts per thread and per source file,
#      attributed the same way, divided by the frames to get instructions per packet.
#
# Uses the release binaries (built with line tables). Each perf run first waits (up to
# BENCH_LOAD_WAIT s, default 300) for a 1-minute load average of at most BENCH_MAX_LOAD
# (default 1.5). Output goes to $BENCH_OUT/profile.txt (default out/bench) and the raw data
# files next to it.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

EVENTS=${PROFILE_EVENTS:-4000000}
MIX_FLOWS=${PROFILE_MIX_FLOWS:-450000}
CG_EVENTS=${PROFILE_CALLGRIND_EVENTS:-100000}
CG_MIX_FLOWS=${PROFILE_CALLGRIND_MIX_FLOWS:-20000}
NF_PORT=${BENCH_NF_PORT:-29995}
OUT=${BENCH_OUT:-out/bench}
CARGO=${CARGO:-cargo}
TARGET=${CARGO_TARGET_DIR:-target}
OUTPOST=$TARGET/release/outpost
FLOWSBENCH=$TARGET/release/flows
PCAP=$OUT/profile.pcap
MIXPCAP=$OUT/profile-mix.pcap
CG_PCAP=$OUT/profile-small.pcap
CG_MIXPCAP=$OUT/profile-mix-small.pcap

for tool in perf valgrind addr2line readelf python3; do
  command -v "$tool" >/dev/null || { echo "profile: $tool not found" >&2; exit 1; }
done

"$CARGO" build --release -p outpost-sensor -p outpost-bench
mkdir -p "$OUT"

MAX_LOAD=${BENCH_MAX_LOAD:-1.5}
LOAD_WAIT=${BENCH_LOAD_WAIT:-300}
# Waits (bounded) until the 1-minute load average is at most MAX_LOAD (as bench/run.sh).
wait_for_quiet() {
  local waited=0
  while awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v m="$MAX_LOAD" 'BEGIN { exit !(l > m) }'; do
    if ((waited >= LOAD_WAIT)); then
      echo "WARNING: load average $(cut -d' ' -f1 /proc/loadavg) still above $MAX_LOAD after ${waited}s; profiling anyway"
      return
    fi
    sleep 15
    waited=$((waited + 15))
  done
}

SINK_PID=
# A bound UDP socket nobody reads, as the NetFlow v9 collector (see bench/run.sh).
start_sink() {
  python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
time.sleep(86400)' "$NF_PORT" >"$OUT/sink.out" 2>&1 &
  SINK_PID=$!
  local i
  for ((i = 0; i < 50; i++)); do
    grep -q ready "$OUT/sink.out" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "profile: cannot bind 127.0.0.1:$NF_PORT (set BENCH_NF_PORT)" >&2
  return 1
}
stop_sink() {
  if [[ -n $SINK_PID ]]; then
    kill "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
    SINK_PID=
  fi
}

# derive_config FILE RULE_FILES: config/outpost.toml with its top-level `rule_files` set to
# RULE_FILES (a TOML array); as in bench/run.sh.
derive_config() {
  awk -v rules="$2" '
    !top && /^rule_files[ \t]*=/ { print "rule_files = " rules; ruled = 1; next }
    !top && /^\[/ { top = 1; if (!ruled) { print "rule_files = " rules; print ""; ruled = 1 } }
    { print }' config/outpost.toml >"$1"
  "$OUTPOST" check-config "$1" >/dev/null
}
SEEDRULE=$OUT/seed-rule.toml
FLOWSONLY=$OUT/flows-only.toml

frames_of() { grep -o '"frames":[0-9]*' "$1" | cut -d: -f2; }

# perf_replay LABEL PCAP ARGS...: outpost replay under perf, then by_source.py.
perf_replay() {
  local label=$1 pcap=$2
  shift 2
  echo
  echo "== perf (cpu-clock samples): $label"
  local run=("$OUTPOST" replay "$pcap" "$@" --alerts /dev/null --quiet --summary-json "$OUT/profile-summary-$label.json")
  wait_for_quiet
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "\$ perf record -e cpu-clock -F 10000 -o $OUT/perf-$label.data -- ${run[*]}"
  perf record -q -e cpu-clock -F 10000 -o "$OUT/perf-$label.data" -- "${run[@]}"
  echo "summary: $(cat "$OUT/profile-summary-$label.json")"
  echo
  local pframes
  pframes=$(frames_of "$OUT/profile-summary-$label.json")
  echo "\$ bench/by_source.py perf $OUTPOST $pframes 10000 $OUT/perf-$label.data"
  python3 bench/by_source.py perf "$OUTPOST" "$pframes" 10000 "$OUT/perf-$label.data"
}

# perf_flows LABEL FLOWS: the in-memory flow benchmark's batch32 case under perf.
perf_flows() {
  local label=$1 flows=$2
  echo
  echo "== perf (cpu-clock samples): $label"
  local run=("$FLOWSBENCH" --flows "$flows" --only batch32 --reps 5)
  wait_for_quiet
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "\$ perf record -e cpu-clock -F 10000 -o $OUT/perf-$label.data -- ${run[*]}"
  perf record -q -e cpu-clock -F 10000 -o "$OUT/perf-$label.data" -- "${run[@]}" | tee "$OUT/profile-$label.txt"
  local packets
  packets=$(grep -o 'packets processed in this phase: [0-9]*' "$OUT/profile-$label.txt" | grep -o '[0-9]*$')
  echo
  echo "\$ bench/by_source.py perf $FLOWSBENCH $packets 10000 $OUT/perf-$label.data"
  python3 bench/by_source.py perf "$FLOWSBENCH" "$packets" 10000 "$OUT/perf-$label.data"
}

# callgrind_replay LABEL PCAP ARGS...: one worker under callgrind, then by_source.py.
callgrind_replay() {
  local label=$1 pcap=$2
  shift 2
  echo
  echo "== callgrind (instructions): $label"
  local cg=("$OUTPOST" replay "$pcap" "$@" --workers 1 --alerts /dev/null --quiet --summary-json "$OUT/profile-$label-summary.json")
  local opts=(--tool=callgrind --separate-threads=yes --dump-instr=yes --compress-strings=no --compress-pos=no)
  echo "\$ valgrind ${opts[*]} --callgrind-out-file=$OUT/callgrind-$label.out ${cg[*]}"
  rm -f "$OUT/callgrind-$label.out"*
  valgrind "${opts[@]}" --callgrind-out-file="$OUT/callgrind-$label.out" "${cg[@]}" 2>"$OUT/callgrind-$label.log"
  local frames
  frames=$(frames_of "$OUT/profile-$label-summary.json")
  echo "frames: $frames"
  # Threads are numbered in creation order: 01 the main thread (collector, JSON output),
  # 02 the worker (--workers 1 starts it first), 03 the receive thread.
  echo "threads: -01 main (collector + output), -02 worker 0, -03 receive"
  echo "\$ bench/by_source.py callgrind $OUTPOST $frames $OUT/callgrind-$label.out-0{2,3,1}"
  python3 bench/by_source.py callgrind "$OUTPOST" "$frames" "$OUT/callgrind-$label.out-02" \
    "$OUT/callgrind-$label.out-03" "$OUT/callgrind-$label.out-01"
}

main() {
  trap stop_sink EXIT
  local seed=(gen seed --clients 1000 --error-prob 0.001 --noise 0.2 --seed 1)
  local mix=(gen mix --concurrency 20000 --clients 5000 --seed 1)
  echo "== profile, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $(nproc)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (work tree modified)')"
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "\$ outpost ${seed[*]} --events $EVENTS --out $PCAP (and --events $CG_EVENTS --out $CG_PCAP)"
  "$OUTPOST" "${seed[@]}" --events "$EVENTS" --out "$PCAP" 2>/dev/null
  "$OUTPOST" "${seed[@]}" --events "$CG_EVENTS" --out "$CG_PCAP" 2>/dev/null
  echo "\$ outpost ${mix[*]} --flows $MIX_FLOWS --out $MIXPCAP (and --flows $CG_MIX_FLOWS --out $CG_MIXPCAP)"
  "$OUTPOST" "${mix[@]}" --flows "$MIX_FLOWS" --out "$MIXPCAP" 2>/dev/null
  "$OUTPOST" "${mix[@]}" --flows "$CG_MIX_FLOWS" --out "$CG_MIXPCAP" 2>/dev/null
  cat "$PCAP" "$CG_PCAP" "$MIXPCAP" "$CG_MIXPCAP" >/dev/null
  derive_config "$SEEDRULE" "[\"$PWD/config/rules.d/seed.toml\"]"
  derive_config "$FLOWSONLY" "[]"
  echo "configurations: $SEEDRULE (rule_files = the seed rule only), $FLOWSONLY (rule_files = [])"
  start_sink

  local nf=(--netflow9 "127.0.0.1:$NF_PORT")
  perf_replay seed-w1 "$PCAP" --config "$SEEDRULE" --workers 1
  perf_replay seed-w1-flows "$PCAP" --config "$SEEDRULE" --workers 1 --flows /dev/null
  perf_replay seed-builtin-w1 "$PCAP" --workers 1
  perf_replay mix-w1-nf9 "$MIXPCAP" --config "$FLOWSONLY" --workers 1 "${nf[@]}"
  perf_replay mix-w2-nf9 "$MIXPCAP" --config "$FLOWSONLY" --workers 2 "${nf[@]}"
  perf_replay mix-w1-json "$MIXPCAP" --config "$FLOWSONLY" --workers 1 --flows /dev/null
  perf_replay mix-builtin-w1-nf9 "$MIXPCAP" --workers 1 "${nf[@]}"
  perf_flows flows-100k 100000
  perf_flows flows-1m 1000000

  callgrind_replay seed-small-flows "$CG_PCAP" --config "$SEEDRULE" --flows /dev/null
  callgrind_replay mix-small-flows "$CG_MIXPCAP" --config "$FLOWSONLY" --flows /dev/null
  stop_sink
}

main 2>&1 | tee "$OUT/profile.txt"
echo "profile written to $OUT/profile.txt"
