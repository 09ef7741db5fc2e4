#!/usr/bin/env bash
# Outpost benchmarks (`make bench`): replay throughput against tcpdump on the same pcap, and the
# decoder against etherparse. See BENCHMARKS.md for what each figure means.
#
#   1. builds release (`outpost` and the `decode`, `stages` and `classify` benchmarks);
#   2. generates the seed scenario (BENCH_EVENTS events, default 2,000,000; 1000 clients, error
#      probability 0.001, 20 % noise, seed 1) into $BENCH_OUT/seed.pcap and reads it once so the
#      page cache holds it;
#   3. BENCH_REPS times (default 5), in an order that rotates every repetition, times:
#        tcpdump -r FILE -w /dev/null                       (the peer: read + write every packet)
#        tcpdump -r FILE -w /dev/null 'udp dst portrange 7001-7007'   (peer with a BPF filter)
#        outpost replay FILE --alerts /dev/null --workers 1 --quiet --summary-json S
#        outpost replay ... --workers $(nproc)
#        the same two with the flow meter off (--config: config/outpost.toml + [flows]
#        enabled = false), to show what flow metering costs
#      Every command is timed from outside the same way (bash's `time`: wall, user and sys
#      seconds, process start-up included); outpost's own wall_seconds (pipeline only) is
#      shown too;
#   4. prints medians and the time ratio to tcpdump measured in the same run;
#   5. times the replay by stage on the same capture (`stages`: pcap reading, decoding, the
#      pipeline's thread handoff without detection);
#   6. runs the decode benchmark (BENCH_DECODE_REPS repetitions, default 11) over 4096-frame
#      sets that stay in cache, then over 1,000,000-frame sets that do not;
#   7. times event classification per event class with the seed rule's filters (`classify`).
#
# Everything printed from step 2 on is also written to $BENCH_OUT/results.txt (default
# out/bench), with every repetition's raw numbers. If the 1-minute load average is above
# BENCH_MAX_LOAD (default 1.5) the script waits up to BENCH_LOAD_WAIT seconds (default 300)
# for it to drop, and notes it in the results when it did not.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

EVENTS=${BENCH_EVENTS:-2000000}
REPS=${BENCH_REPS:-5}
DECODE_REPS=${BENCH_DECODE_REPS:-11}
OUT=${BENCH_OUT:-out/bench}
MAX_LOAD=${BENCH_MAX_LOAD:-1.5}
LOAD_WAIT=${BENCH_LOAD_WAIT:-300}
CARGO=${CARGO:-cargo}
NPROC=$(nproc)
TARGET=${CARGO_TARGET_DIR:-target}
OUTPOST=$TARGET/release/outpost
DECODE=$TARGET/release/decode
STAGES=$TARGET/release/stages
CLASSIFY=$TARGET/release/classify
PCAP=$OUT/seed.pcap
RESULTS=$OUT/results.txt
NOFLOWS=$OUT/noflows.toml
PEER_FILTER='udp dst portrange 7001-7007'

for tool in tcpdump awk sort; do
  command -v "$tool" >/dev/null || { echo "bench: $tool not found (make deps-apt installs it)" >&2; exit 1; }
done

echo "== building release"
"$CARGO" build --release -p outpost-sensor -p outpost-bench

mkdir -p "$OUT"

# Median of the numbers on standard input (mean of the middle two for an even count).
median() {
  sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan";
    else if (NR % 2) printf "%.6f\n", v[(NR + 1) / 2];
    else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

load1() { cut -d' ' -f1 /proc/loadavg; }

# Waits (bounded) until the 1-minute load average is at most MAX_LOAD.
wait_for_quiet() {
  local waited=0
  while awk -v l="$(load1)" -v m="$MAX_LOAD" 'BEGIN { exit !(l > m) }'; do
    if ((waited >= LOAD_WAIT)); then
      echo "WARNING: load average $(load1) still above $MAX_LOAD after ${waited}s; measuring anyway"
      return
    fi
    echo "load average $(load1) > $MAX_LOAD; waiting"
    sleep 15
    waited=$((waited + 15))
  done
}

# Runs a command with its output discarded; prints "wall user sys" seconds (bash's `time`,
# measured from outside the process, so start-up counts).
timed() {
  local TIMEFORMAT='%3R %3U %3S' t
  if ! t=$({ time "$@" >/dev/null 2>"$OUT/last.stderr"; } 2>&1); then
    echo "bench: command failed: $*" >&2
    cat "$OUT/last.stderr" >&2
    return 1
  fi
  echo "$t"
}

# A field of the one-line summary JSON `outpost replay --summary-json` writes.
json_field() {
  grep -o "\"$1\":[^,}]*" "$2" | head -n1 | cut -d: -f2
}

# Times replay case $1 (see `names` in main); prints "wall user sys".
run_case() {
  case $1 in
    0) timed tcpdump -r "$PCAP" -w /dev/null ;;
    1) timed tcpdump -r "$PCAP" -w /dev/null "$PEER_FILTER" ;;
    *)
      local workers=1 cfg=()
      (($1 % 2 == 1)) && workers=$NPROC
      (($1 >= 4)) && cfg=(--config "$NOFLOWS")
      timed "$OUTPOST" replay "$PCAP" "${cfg[@]}" --alerts /dev/null --workers "$workers" --quiet \
        --summary-json "$OUT/summary-$1.json"
      ;;
  esac
}

main() {
  echo "== Outpost benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $NPROC," \
    "$(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
  echo "software: $(rustc --version), $(tcpdump --version 2>&1 | head -n1), $(tcpdump --version 2>&1 | sed -n 2p)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (work tree modified)')"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

  echo
  echo "== generating the seed scenario: $EVENTS events"
  local gen=("$OUTPOST" gen seed --events "$EVENTS" --clients 1000 --error-prob 0.001 --noise 0.2 --seed 1
    --out "$PCAP")
  echo "\$ ${gen[*]}"
  "${gen[@]}" 2>&1 | sed 's/^/  /'
  cat "$PCAP" >/dev/null # into the page cache
  local bytes
  bytes=$(stat -c %s "$PCAP")
  echo "capture: $PCAP, $bytes bytes"

  # The same configuration with the flow meter off, to show what metering costs.
  awk '/^\[flows\][ \t]*$/ { print; print "enabled = false"; inflows = 1; done = 1; next }
    /^\[/ { inflows = 0 }
    inflows && /^[ \t]*enabled[ \t]*=/ { next }
    { print }
    END { if (!done) { print ""; print "[flows]"; print "enabled = false" } }' config/outpost.toml >"$NOFLOWS"
  "$OUTPOST" check-config "$NOFLOWS" >/dev/null

  local names=(tcpdump tcpdump-bpf outpost-w1 "outpost-w$NPROC" outpost-w1-noflows "outpost-w$NPROC-noflows")
  local cmds=(
    "tcpdump -r $PCAP -w /dev/null"
    "tcpdump -r $PCAP -w /dev/null '$PEER_FILTER'"
    "$OUTPOST replay $PCAP --alerts /dev/null --workers 1 --quiet --summary-json $OUT/summary-2.json"
    "$OUTPOST replay $PCAP --alerts /dev/null --workers $NPROC --quiet --summary-json $OUT/summary-3.json"
    "$OUTPOST replay $PCAP --config $NOFLOWS --alerts /dev/null --workers 1 --quiet --summary-json $OUT/summary-4.json"
    "$OUTPOST replay $PCAP --config $NOFLOWS --alerts /dev/null --workers $NPROC --quiet --summary-json $OUT/summary-5.json"
  )
  echo
  echo "== replay: $REPS repetitions, case order rotating; commands (the built-in configuration is"
  echo "   config/outpost.toml; $NOFLOWS is the same with [flows] enabled = false):"
  for i in "${!names[@]}"; do echo "  ${names[$i]}: ${cmds[$i]}"; done
  wait_for_quiet
  echo "load average before timing: $(cut -d' ' -f1-3 /proc/loadavg)"

  # Untimed warm-up (page cache, binaries, CPU frequency).
  run_case 0 >/dev/null
  run_case 2 >/dev/null

  declare -A ext cpu int frames
  local rep k i n=${#names[@]} r w u sy
  for ((rep = 0; rep < REPS; rep++)); do
    for ((k = 0; k < n; k++)); do
      i=$(((k + rep) % n))
      r=$(run_case "$i")
      if ((i >= 2)); then
        int[$i]+="$(json_field wall_seconds "$OUT/summary-$i.json") "
        frames[$i]=$(json_field frames "$OUT/summary-$i.json")
      fi
      read -r w u sy <<<"$r"
      ext[$i]+="$w "
      cpu[$i]+="$(awk -v u="$u" -v s="$sy" 'BEGIN { printf "%.3f", u + s }') "
      echo "raw rep $((rep + 1)) ${names[$i]}: wall $w s, user $u s, sys $sy s${int[$i]:+, outpost wall_seconds $(awk '{ print $NF }' <<<"${int[$i]}") s}"
    done
  done
  echo "load average after timing: $(cut -d' ' -f1-3 /proc/loadavg)"

  local packets=${frames[2]:-0}
  for ((i = 3; i < n; i++)); do
    if [[ ${frames[$i]:-} != "$packets" ]]; then
      echo "bench: ${names[$i]} saw ${frames[$i]:-no} frames, ${names[2]} $packets" >&2
      return 1
    fi
  done
  local peer
  peer=$(tr ' ' '\n' <<<"${ext[0]}" | grep . | median)
  echo
  echo "== replay medians over $REPS repetitions ($packets packets, $bytes bytes of pcap)"
  printf '%-20s %9s %8s %13s %8s %12s %11s %10s\n' case "wall s" Mpps "time/tcpdump" "CPU s" "CPU ns/pkt" \
    "pipeline s" "pipe Mpps"
  for ((i = 0; i < n; i++)); do
    local m c mi=""
    m=$(tr ' ' '\n' <<<"${ext[$i]}" | grep . | median)
    c=$(tr ' ' '\n' <<<"${cpu[$i]}" | grep . | median)
    if [[ -n ${int[$i]:-} ]]; then
      mi=$(tr ' ' '\n' <<<"${int[$i]}" | grep . | median)
    fi
    awk -v name="${names[$i]}" -v m="$m" -v c="$c" -v p="$packets" -v peer="$peer" -v mi="$mi" 'BEGIN {
      pm = (mi == "") ? "-" : sprintf("%.3f", mi); pmpps = (mi == "") ? "-" : sprintf("%.2f", p / mi / 1e6);
      printf "%-20s %9.3f %8.2f %12.2fx %8.3f %12.1f %11s %10s\n", name, m, p / m / 1e6, m / peer, c, c / p * 1e9, pm, pmpps }'
  done
  echo "(wall s: measured outside the process, start-up included; CPU s: user + sys of the process,"
  echo " all threads; pipeline: outpost's own wall_seconds; time/tcpdump: median wall divided by the"
  echo " median wall of plain tcpdump in this run; every column is a median over the repetitions)"

  echo
  echo "== replay cost by stage (same capture; see bench/src/bin/stages.rs)"
  wait_for_quiet
  echo "\$ $STAGES $PCAP --reps $REPS --workers $NPROC"
  "$STAGES" "$PCAP" --reps "$REPS" --workers "$NPROC"

  echo
  echo "== decoder: outpost_decode vs etherparse (in memory, one thread)"
  wait_for_quiet
  echo "\$ $DECODE --reps $DECODE_REPS --raw"
  "$DECODE" --reps "$DECODE_REPS" --raw
  echo
  echo "== decoder, cache-cold variant: 1,000,000 frames per set (137 MB / 60 MB, beyond the caches)"
  echo "\$ $DECODE --reps 5 --frames 1000000 --packets 4000000"
  "$DECODE" --reps 5 --frames 1000000 --packets 4000000
  echo
  echo "== event classification: the seed rule's filters per event class (see bench/src/bin/classify.rs)"
  wait_for_quiet
  echo "\$ $CLASSIFY --reps $DECODE_REPS"
  "$CLASSIFY" --reps "$DECODE_REPS"
  echo
  echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  rm -f "$OUT/last.stderr"
}

main 2>&1 | tee "$RESULTS"
echo "results written to $RESULTS"
