#!/usr/bin/env bash
# Outpost benchmarks (`make bench`). See BENCHMARKS.md for what each figure means.
#
#   1. builds release (`outpost` and the `decode`, `stages`, `classify` and `flows` benchmarks)
#      and writes two configurations besides the built-in one (config/outpost.toml, which loads
#      every rule file of config/rules.d; some of those rules need flows, so it always meters
#      flows): $BENCH_OUT/seed-rule.toml (only the seed state machine, config/rules.d/seed.toml:
#      no flow is metered unless a flow output is asked for) and $BENCH_OUT/flows-only.toml (no
#      rules: with a flow output, outpost only meters and exports flows, like its peers);
#   2. seed scenario (BENCH_EVENTS events, default 2,000,000; 1000 clients, error probability
#      0.001, 20 % noise, seed 1) into $BENCH_OUT/seed.pcap, read once into the page cache;
#      BENCH_REPS times (default 5), cases interleaved (order rotating every repetition):
#        tcpdump -r FILE -w /dev/null                                  (the peer)
#        tcpdump -r FILE -w /dev/null 'udp dst portrange 7001-7007'    (the peer with a BPF filter)
#        outpost replay FILE --config seed-rule.toml --alerts /dev/null --workers 1|N --quiet ...
#        outpost replay FILE --config seed-rule.toml --flows /dev/null --workers 1 ...
#        outpost replay FILE --alerts /dev/null --workers 1|N ...       (built-in configuration)
#   3. the replay by stage on the same capture (`stages`);
#   4. the decoder against etherparse (`decode`, BENCH_DECODE_REPS repetitions, default 11), in
#      cache and cache-cold; event classification per event class (`classify`);
#   5. decode + flow metering on one core from memory at 10k, 100k and 1M flows (`flows`,
#      BENCH_FLOWS_REPS repetitions, default 11), and the flow meter's memory with 1M flows
#      (`flows --memory 1000000`, a fresh process);
#   6. (BENCH_MIX=1, the default) flow export against its peers on one large capture: the mix
#      scenario (`outpost gen mix`, BENCH_MIX_FLOWS flows, default 450,000: ~5.4M packets,
#      2.3 GB) into $BENCH_OUT/mix.pcap, read once; BENCH_REPS times, interleaved:
#        tcpdump -r FILE -w /dev/null
#        softflowd -r FILE -n 127.0.0.1:PORT -v 9 -d -m 1048576 -t maxlife=120 -p PIDFILE
#        nfpcapd -r FILE -w DIR -e 120,30                   (nfdump; DIR emptied before each run)
#        outpost replay FILE --config flows-only.toml --netflow9 127.0.0.1:PORT --workers 1|2 ...
#        outpost replay FILE --config flows-only.toml --flows /dev/null --workers 1|2 ...
#        outpost replay FILE --netflow9 127.0.0.1:PORT --workers 1|2 ... (built-in configuration)
#      NetFlow v9 goes to a UDP socket that is bound but never read (python3, started and
#      stopped here; BENCH_NF_PORT, default 29995): every datagram is sent, the kernel drops
#      it once the socket buffer is full. Flow counts each tool reports are printed too;
#   7. (BENCH_MIX=1) peak memory at ~1M concurrent flows: a mix capture whose flows all start
#      within 30 s (BENCH_MEM_FLOWS flows, default 1,000,000: UDP, ICMP echo and half-open
#      TCP), replayed with [flows] capacity = 1.25 x that per worker, without rules and with
#      the built-in rules, and the peers on the same file (BENCH_MEM_REPS repetitions,
#      default 3): maximum resident set size of each process.
#
# Every command is timed from outside (bash's `time`: wall, user and sys seconds, start-up
# included) and its peak memory taken by /usr/bin/time -f %M (if installed; else a python3
# getrusage wrapper, whose own ~20 ms of CPU is then counted too).
#
# BENCH_ONLY (comma-separated, default all) runs only some sections: seed, stages, decode,
# classify, flows, mix, mem (mix and mem also need BENCH_MIX=1); stages needs the seed capture.
#
# Everything printed from step 2 on is also written to $BENCH_OUT/results.txt (default
# out/bench; with BENCH_ONLY, results-SECTIONS.txt), with every repetition's raw numbers. If
# the 1-minute load average is above BENCH_MAX_LOAD (default 1.5) the script waits up to
# BENCH_LOAD_WAIT seconds (default 300) for it to drop before each section, and notes it in
# the results when it did not.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

EVENTS=${BENCH_EVENTS:-2000000}
REPS=${BENCH_REPS:-5}
DECODE_REPS=${BENCH_DECODE_REPS:-11}
FLOWS_REPS=${BENCH_FLOWS_REPS:-11}
MIX=${BENCH_MIX:-1}
ONLY=${BENCH_ONLY:-seed,stages,decode,classify,flows,mix,mem}
MIX_FLOWS=${BENCH_MIX_FLOWS:-450000}
MEM_FLOWS=${BENCH_MEM_FLOWS:-1000000}
MEM_REPS=${BENCH_MEM_REPS:-3}
NF_PORT=${BENCH_NF_PORT:-29995}
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
FLOWSBENCH=$TARGET/release/flows
PCAP=$OUT/seed.pcap
MIXPCAP=$OUT/mix.pcap
MEMPCAP=$OUT/mix-1m.pcap
RESULTS=$OUT/results.txt
[[ -n ${BENCH_ONLY:-} ]] && RESULTS=$OUT/results-${BENCH_ONLY//,/-}.txt
PEER_FILTER='udp dst portrange 7001-7007'

tools=(tcpdump awk sort python3)
((MIX)) && tools+=(softflowd nfpcapd nfdump)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || { echo "bench: $tool not found (make deps-apt installs it)" >&2; exit 1; }
done
if [[ -x /usr/bin/time ]]; then
  MAXRSS=(/usr/bin/time -f %M -o)
else
  MAXRSS=(python3 -c 'import resource, subprocess, sys
rc = subprocess.run(sys.argv[2:]).returncode
open(sys.argv[1], "w").write("%d\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(rc)')
fi

echo "== building release"
"$CARGO" build --release -p outpost-sensor -p outpost-bench

mkdir -p "$OUT"

# Median of the numbers on standard input (mean of the middle two for an even count).
median() {
  sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan";
    else if (NR % 2) printf "%.6f\n", v[(NR + 1) / 2];
    else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Median of a space-separated list.
med() { tr ' ' '\n' <<<"$1" | grep . | median; }

load1() { cut -d' ' -f1 /proc/loadavg; }

# True when section $1 is to run (BENCH_ONLY).
want() { [[ ,$ONLY, == *,$1,* ]]; }

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

# timed LABEL COMMAND...: runs the command, standard output to $OUT/out-LABEL.txt, standard
# error to $OUT/err-LABEL.txt; prints "wall user sys maxrss_kib" (bash's `time`, measured
# outside the process, so start-up counts; peak RSS from /usr/bin/time).
timed() {
  local label=$1 TIMEFORMAT='%3R %3U %3S' t
  shift
  if ! t=$({ time "${MAXRSS[@]}" "$OUT/maxrss" "$@" >"$OUT/out-$label.txt" 2>"$OUT/err-$label.txt"; } 2>&1); then
    echo "bench: command failed: $*" >&2
    tail -n 20 "$OUT/err-$label.txt" >&2
    return 1
  fi
  echo "$t $(tail -n1 "$OUT/maxrss")"
}

# A top-level field of the one-line summary JSON `outpost replay --summary-json` writes.
json_field() {
  python3 -c 'import json, sys
v = json.load(open(sys.argv[2]))
for k in sys.argv[1].split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else v)' "$1" "$2"
}

# The cases of a set: names, commands (strings, run with eval), and optional commands run
# untimed before each (e.g. emptying an output directory).
declare -a CASE_NAMES CASE_CMDS CASE_PREP
# Samples per case index (space-separated): external wall, CPU (user + sys), peak RSS (KiB),
# outpost's own wall_seconds.
declare -A WALL CPU RSS INT

# run_set TAG REPS: times every case REPS times, interleaved, the order rotating every
# repetition; outpost cases are given --summary-json $OUT/summary-TAG-I.json by their command.
run_set() {
  local tag=$1 reps=$2 n=${#CASE_NAMES[@]} rep k i r w u sy m sj
  WALL=() CPU=() RSS=() INT=()
  for ((rep = 0; rep < reps; rep++)); do
    for ((k = 0; k < n; k++)); do
      i=$(((k + rep) % n))
      if [[ -n ${CASE_PREP[$i]:-} ]]; then eval "${CASE_PREP[$i]}"; fi
      r=$(eval "timed $tag-$i ${CASE_CMDS[$i]}")
      read -r w u sy m <<<"$r"
      WALL[$i]+="$w "
      CPU[$i]+="$(awk -v u="$u" -v s="$sy" 'BEGIN { printf "%.3f", u + s }') "
      RSS[$i]+="$m "
      sj=$OUT/summary-$tag-$i.json
      if [[ ${CASE_CMDS[$i]} == *--summary-json* && -s $sj ]]; then
        INT[$i]+="$(json_field wall_seconds "$sj") "
      fi
      echo "raw rep $((rep + 1)) ${CASE_NAMES[$i]}: wall $w s, user $u s, sys $sy s, max RSS $m KiB${INT[$i]:+, outpost wall_seconds $(awk '{ print $NF }' <<<"${INT[$i]}") s}"
    done
  done
}

# report_set PACKETS PEER...: medians of the last run_set per case, and each case's median
# wall and CPU time divided by each peer's (case indices) medians from the same run.
report_set() {
  local packets=$1 i p
  shift
  local peers=("$@") n=${#CASE_NAMES[@]}
  printf '%-22s %8s %7s %8s %11s %8s %10s %9s\n' case "wall s" Mpps "CPU s" "CPU ns/pkt" "RSS MiB" "pipeline s" "pipe Mpps"
  for ((i = 0; i < n; i++)); do
    local mw mc mr mi=""
    mw=$(med "${WALL[$i]}")
    mc=$(med "${CPU[$i]}")
    mr=$(med "${RSS[$i]}")
    [[ -n ${INT[$i]:-} ]] && mi=$(med "${INT[$i]}")
    awk -v name="${CASE_NAMES[$i]}" -v w="$mw" -v c="$mc" -v r="$mr" -v p="$packets" -v mi="$mi" 'BEGIN {
      pm = (mi == "") ? "-" : sprintf("%.3f", mi); pmpps = (mi == "") ? "-" : sprintf("%.2f", p / mi / 1e6);
      printf "%-22s %8.3f %7.2f %8.3f %11.1f %8.1f %10s %9s\n", name, w, p / w / 1e6, c, c / p * 1e9, r / 1024, pm, pmpps }'
  done
  echo "(medians over the repetitions; wall and CPU (user + sys, all threads) measured outside the"
  echo " process, start-up included; RSS: peak resident set; pipeline: outpost's own wall_seconds)"
  echo
  printf '%-22s' "time ÷ peer (wall|CPU)"
  for p in "${peers[@]}"; do printf ' %22s' "${CASE_NAMES[$p]}"; done
  echo
  for ((i = 0; i < n; i++)); do
    printf '%-22s' "${CASE_NAMES[$i]}"
    for p in "${peers[@]}"; do
      awk -v w="$(med "${WALL[$i]}")" -v c="$(med "${CPU[$i]}")" -v pw="$(med "${WALL[$p]}")" \
        -v pc="$(med "${CPU[$p]}")" 'BEGIN { printf " %10.2fx|%9.2fx", w / pw, c / pc }'
    done
    echo
  done
  echo "(median of the case divided by the median of the peer in the same run; below 1: faster or"
  echo " cheaper than the peer)"
}

# derive_config FILE RULE_FILES [CAPACITY]: config/outpost.toml with its top-level
# `rule_files` set to RULE_FILES (a TOML array) and, if given, [flows] capacity = CAPACITY.
derive_config() {
  awk -v rules="$2" -v cap="${3:-}" '
    !top && /^rule_files[ \t]*=/ { print "rule_files = " rules; ruled = 1; next }
    !top && /^\[/ { top = 1; if (!ruled) { print "rule_files = " rules; print ""; ruled = 1 } }
    cap != "" && /^\[flows\][ \t]*$/ { print; print "capacity = " cap; inflows = 1; done = 1; next }
    /^\[/ { inflows = 0 }
    inflows && /^[ \t]*capacity[ \t]*=/ { next }
    { print }
    END { if (cap != "" && !done) { print ""; print "[flows]"; print "capacity = " cap } }' config/outpost.toml >"$1"
  "$OUTPOST" check-config "$1" >/dev/null
}

# The configurations the replays use besides the built-in one (config/outpost.toml with every
# rule file of config/rules.d):
#   $SEEDRULE    only the seed scenario's state machine (config/rules.d/seed.toml): detection
#                that needs no flows, so nothing is metered unless a flow output is asked for;
#   $FLOWSONLY   no rules at all: with a flow output, outpost only meters and exports flows,
#                which is what softflowd and nfpcapd do.
SEEDRULE=$OUT/seed-rule.toml
FLOWSONLY=$OUT/flows-only.toml
write_configs() {
  derive_config "$SEEDRULE" "[\"$PWD/config/rules.d/seed.toml\"]"
  derive_config "$FLOWSONLY" "[]"
}

SINK_PID=
# A UDP socket bound to 127.0.0.1:NF_PORT that is never read: the NetFlow collector address of
# softflowd and outpost. Datagrams are sent in full; the kernel drops them once its buffer is full.
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
    kill -0 "$SINK_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench: cannot bind the NetFlow sink to 127.0.0.1:$NF_PORT (set BENCH_NF_PORT)" >&2
  cat "$OUT/sink.out" >&2
  return 1
}
stop_sink() {
  if [[ -n $SINK_PID ]]; then
    kill "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
    SINK_PID=
  fi
}

seed_replay() {
  echo
  echo "== generating the seed scenario: $EVENTS events"
  local gen=("$OUTPOST" gen seed --events "$EVENTS" --clients 1000 --error-prob 0.001 --noise 0.2 --seed 1
    --out "$PCAP")
  echo "\$ ${gen[*]}"
  "${gen[@]}" 2>&1 | sed 's/^/  /'
  cat "$PCAP" >/dev/null # into the page cache
  echo "capture: $PCAP, $(stat -c %s "$PCAP") bytes"

  local s="--alerts /dev/null --quiet --summary-json $OUT/summary-seed"
  CASE_NAMES=(tcpdump tcpdump-bpf outpost-seedrule-w1 "outpost-seedrule-w$NPROC" outpost-seedrule-w1-flows
    outpost-builtin-w1 "outpost-builtin-w$NPROC")
  CASE_CMDS=(
    "tcpdump -r $PCAP -w /dev/null"
    "tcpdump -r $PCAP -w /dev/null '$PEER_FILTER'"
    "$OUTPOST replay $PCAP --config $SEEDRULE --workers 1 $s-2.json"
    "$OUTPOST replay $PCAP --config $SEEDRULE --workers $NPROC $s-3.json"
    "$OUTPOST replay $PCAP --config $SEEDRULE --flows /dev/null --workers 1 $s-4.json"
    "$OUTPOST replay $PCAP --workers 1 $s-5.json"
    "$OUTPOST replay $PCAP --workers $NPROC $s-6.json"
  )
  CASE_PREP=()
  echo
  echo "== replay of the seed capture: $REPS repetitions, case order rotating; commands ($SEEDRULE:"
  echo "   the seed rule only, flows metered only with --flows; built-in: config/outpost.toml, every"
  echo "   rule of config/rules.d, flows metered because some rules need them):"
  local i
  for i in "${!CASE_NAMES[@]}"; do echo "  ${CASE_NAMES[$i]}: ${CASE_CMDS[$i]}"; done
  wait_for_quiet
  echo "load average before timing: $(cut -d' ' -f1-3 /proc/loadavg)"
  # Untimed warm-up (page cache, binaries, CPU frequency).
  timed warm tcpdump -r "$PCAP" -w /dev/null >/dev/null
  timed warm "$OUTPOST" replay "$PCAP" --config "$SEEDRULE" --alerts /dev/null --quiet >/dev/null
  run_set seed "$REPS"
  echo "load average after timing: $(cut -d' ' -f1-3 /proc/loadavg)"

  local packets f
  packets=$(json_field frames "$OUT/summary-seed-2.json")
  for i in 3 4 5 6; do
    f=$(json_field frames "$OUT/summary-seed-$i.json")
    if [[ $f != "$packets" ]]; then
      echo "bench: ${CASE_NAMES[$i]} saw $f frames, ${CASE_NAMES[2]} $packets" >&2
      return 1
    fi
  done
  echo
  echo "== seed replay medians over $REPS repetitions ($packets packets, $(stat -c %s "$PCAP") bytes of pcap)"
  report_set "$packets" 0
  echo "flows metered (outpost-seedrule-w1-flows): $(json_field flows.flows "$OUT/summary-seed-4.json") created," \
    "peak $(json_field flows.peak_active "$OUT/summary-seed-4.json") tracked," \
    "$(json_field flows.records_written "$OUT/summary-seed-4.json") records written;" \
    "built-in (outpost-builtin-w1): $(json_field flows.flows "$OUT/summary-seed-5.json") flows metered," \
    "$(json_field alerts "$OUT/summary-seed-5.json") alerts; seed rule only: $(json_field alerts "$OUT/summary-seed-2.json") alerts"
}

mix_replay() {
  echo
  echo "== generating the mix scenario: $MIX_FLOWS flows"
  local gen=("$OUTPOST" gen mix --flows "$MIX_FLOWS" --concurrency 20000 --clients 5000 --seed 1 --out "$MIXPCAP")
  echo "\$ ${gen[*]}"
  "${gen[@]}" 2>&1 | sed 's/^/  /'
  cat "$MIXPCAP" >/dev/null # into the page cache
  echo "capture: $MIXPCAP, $(stat -c %s "$MIXPCAP") bytes"

  local nfdir=$OUT/nfpcapd s="--alerts /dev/null --quiet --summary-json $OUT/summary-mix" nf="--netflow9 127.0.0.1:$NF_PORT"
  local sf=(softflowd -r "$MIXPCAP" -n "127.0.0.1:$NF_PORT" -v 9 -d -m 1048576 -t maxlife=120 -p "$OUT/softflowd.pid")
  CASE_NAMES=(tcpdump softflowd nfpcapd outpost-nf9-w1 outpost-nf9-w2 outpost-json-w1 outpost-json-w2
    outpost-builtin-nf9-w1 outpost-builtin-nf9-w2)
  CASE_CMDS=(
    "tcpdump -r $MIXPCAP -w /dev/null"
    "${sf[*]}"
    "nfpcapd -r $MIXPCAP -w $nfdir -e 120,30"
    "$OUTPOST replay $MIXPCAP --config $FLOWSONLY $nf --workers 1 $s-3.json"
    "$OUTPOST replay $MIXPCAP --config $FLOWSONLY $nf --workers 2 $s-4.json"
    "$OUTPOST replay $MIXPCAP --config $FLOWSONLY --flows /dev/null --workers 1 $s-5.json"
    "$OUTPOST replay $MIXPCAP --config $FLOWSONLY --flows /dev/null --workers 2 $s-6.json"
    "$OUTPOST replay $MIXPCAP $nf --workers 1 $s-7.json"
    "$OUTPOST replay $MIXPCAP $nf --workers 2 $s-8.json"
  )
  CASE_PREP=("" "" "rm -rf $nfdir && mkdir -p $nfdir")
  echo
  echo "== flow export on the mix capture: $REPS repetitions, case order rotating; commands:"
  local i
  for i in "${!CASE_NAMES[@]}"; do echo "  ${CASE_NAMES[$i]}: ${CASE_CMDS[$i]}"; done
  echo "  ($FLOWSONLY: no rules, outpost only meters and exports flows; builtin: config/outpost.toml"
  echo "   with every rule of config/rules.d. NetFlow v9 to 127.0.0.1:$NF_PORT: a bound UDP socket"
  echo "   nobody reads; nfpcapd writes uncompressed nfcapd files into $nfdir, emptied before each"
  echo "   run, untimed)"
  start_sink
  wait_for_quiet
  echo "load average before timing: $(cut -d' ' -f1-3 /proc/loadavg)"
  timed warm tcpdump -r "$MIXPCAP" -w /dev/null >/dev/null
  run_set mix "$REPS"
  echo "load average after timing: $(cut -d' ' -f1-3 /proc/loadavg)"
  stop_sink

  local packets f
  packets=$(json_field frames "$OUT/summary-mix-3.json")
  for i in 4 5 6 7 8; do
    f=$(json_field frames "$OUT/summary-mix-$i.json")
    if [[ $f != "$packets" ]]; then
      echo "bench: ${CASE_NAMES[$i]} saw $f frames, ${CASE_NAMES[3]} $packets" >&2
      return 1
    fi
  done
  echo
  echo "== mix replay medians over $REPS repetitions ($packets packets, $(stat -c %s "$MIXPCAP") bytes of pcap)"
  report_set "$packets" 0 1 2
  echo
  echo "== what each tool counted on the mix capture (last repetition)"
  local o=$OUT/summary-mix-3.json
  echo "outpost (biflows; NetFlow v9 records are per direction): $(json_field flows.flows "$o") flows created," \
    "peak $(json_field flows.peak_active "$o") tracked, records by end reason $(json_field flows.records "$o");" \
    "NetFlow v9: $(json_field netflow9.flows "$o") flow records as $(json_field netflow9.records "$o") data records" \
    "in $(json_field netflow9.messages "$o") datagrams; decoded $(json_field decode.ipv4 "$o") IPv4 + $(json_field decode.ipv6 "$o") IPv6;" \
    "JSON (outpost-json-w1): $(json_field flows.records_written "$OUT/summary-mix-5.json") records written;" \
    "builtin (outpost-builtin-nf9-w1): $(json_field alerts "$OUT/summary-mix-7.json") alerts"
  echo "softflowd (biflows; exports two NetFlow v9 records per flow with reverse traffic):"
  grep -E 'Packets processed|Ignored packets|Fragments|Flows expired|Flows exported' "$OUT/out-mix-1.txt" | sed 's/^/  /' || true
  echo "nfpcapd (uniflows; nfdump -R $nfdir -I):"
  cat "$OUT/out-mix-2.txt" "$OUT/err-mix-2.txt" | grep -E '^Total:' | sed 's/^/  /' || true
  nfdump -R "$nfdir" -I | grep -E '^(Flows|Flows_tcp|Flows_udp|Flows_icmp|Flows_other|Packets):' | tr '\n' ' ' | sed 's/^/  /' || true
  echo
  echo "  nfpcapd lines 'Unsupported link protocol' on standard error: $(grep -c 'Unsupported link' "$OUT/err-mix-2.txt" || true)"
}

mem_replay() {
  echo
  local cap=$((MEM_FLOWS * 5 / 4)) cfg=$OUT/capacity.toml cfgb=$OUT/capacity-builtin.toml
  echo "== generating a capture with ~$MEM_FLOWS concurrent flows"
  local gen=("$OUTPOST" gen mix --flows "$MEM_FLOWS" --concurrency 100000 --mean-gap 100ms --clients 20000
    --mix tcp_complete=0,tcp_half_open=20,tcp_reset=0,udp=60,fragmented_udp=0,icmp_echo=20,icmp_unreach=0
    --seed 1 --out "$MEMPCAP")
  echo "\$ ${gen[*]}"
  "${gen[@]}" 2>&1 | sed 's/^/  /'
  cat "$MEMPCAP" >/dev/null
  echo "capture: $MEMPCAP, $(stat -c %s "$MEMPCAP") bytes"
  derive_config "$cfg" "[]" "$cap"
  derive_config "$cfgb" "[\"$PWD/config/rules.d/*.toml\"]" "$cap"
  echo "$cfg: no rules (as $FLOWSONLY) and [flows] capacity = $cap (per worker); $cfgb: every rule of"
  echo "config/rules.d (as the built-in configuration), same capacity"

  local nfdir=$OUT/nfpcapd s="--alerts /dev/null --quiet --summary-json $OUT/summary-mem"
  CASE_NAMES=(tcpdump softflowd nfpcapd outpost-noflows-w1 outpost-json-w1 outpost-json-w2 outpost-builtin-json-w1)
  CASE_CMDS=(
    "tcpdump -r $MEMPCAP -w /dev/null"
    "softflowd -r $MEMPCAP -n 127.0.0.1:$NF_PORT -v 9 -d -m 2097152 -t maxlife=120 -p $OUT/softflowd.pid"
    "nfpcapd -r $MEMPCAP -w $nfdir -e 120,30"
    "$OUTPOST replay $MEMPCAP --config $cfg --workers 1 $s-3.json"
    "$OUTPOST replay $MEMPCAP --config $cfg --flows /dev/null --workers 1 $s-4.json"
    "$OUTPOST replay $MEMPCAP --config $cfg --flows /dev/null --workers 2 $s-5.json"
    "$OUTPOST replay $MEMPCAP --config $cfgb --flows /dev/null --workers 1 $s-6.json"
  )
  CASE_PREP=("" "" "rm -rf $nfdir && mkdir -p $nfdir")
  echo
  echo "== peak memory at ~$MEM_FLOWS concurrent flows: $MEM_REPS repetitions, interleaved; commands:"
  local i
  for i in "${!CASE_NAMES[@]}"; do echo "  ${CASE_NAMES[$i]}: ${CASE_CMDS[$i]}"; done
  start_sink
  wait_for_quiet
  run_set mem "$MEM_REPS"
  stop_sink
  local packets
  packets=$(json_field frames "$OUT/summary-mem-4.json")
  echo
  echo "== ~$MEM_FLOWS concurrent flows: medians over $MEM_REPS repetitions ($packets packets)"
  report_set "$packets" 0 1 2
  echo
  local peak1 peak2 base r1 r2
  peak1=$(json_field flows.peak_active "$OUT/summary-mem-4.json")
  peak2=$(json_field flows.peak_active "$OUT/summary-mem-5.json")
  base=$(med "${RSS[3]}")
  r1=$(med "${RSS[4]}")
  r2=$(med "${RSS[5]}")
  echo "outpost-json-w1: $(json_field flows.flows "$OUT/summary-mem-4.json") flows, peak $peak1 tracked at once;" \
    "peak RSS $(awk -v r="$r1" 'BEGIN { printf "%.1f", r / 1024 }') MiB, $(awk -v r="$r1" -v b="$base" -v p="$peak1" \
      'BEGIN { printf "%.0f", (r - b) * 1024 / p }') bytes per peak flow over outpost-noflows-w1"
  echo "outpost-json-w2: peak $peak2 tracked (both workers); peak RSS $(awk -v r="$r2" 'BEGIN { printf "%.1f", r / 1024 }') MiB," \
    "$(awk -v r="$r2" -v b="$base" -v p="$peak2" 'BEGIN { printf "%.0f", (r - b) * 1024 / p }') bytes per peak flow over outpost-noflows-w1"
  echo "outpost-builtin-json-w1: peak $(json_field flows.peak_active "$OUT/summary-mem-6.json") tracked;" \
    "peak RSS $(awk -v r="$(med "${RSS[6]}")" 'BEGIN { printf "%.1f", r / 1024 }') MiB; $(json_field alerts "$OUT/summary-mem-6.json") alerts"
  echo "softflowd:"
  grep -E 'Flows expired|Flows exported' "$OUT/out-mem-1.txt" | sed 's/^/  /' || true
  echo "nfpcapd: $(nfdump -R "$nfdir" -I | grep -E '^Flows:' || true)"
}

main() {
  trap stop_sink EXIT
  echo "== Outpost benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), nproc $NPROC," \
    "$(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
  echo "software: $(rustc --version), $(tcpdump --version 2>&1 | head -n1), $(tcpdump --version 2>&1 | sed -n 2p)"
  if ((MIX)); then
    echo "peers: $(softflowd -h 2>&1 | grep -o 'softflowd version [0-9.]*[0-9]'), nfdump $(dpkg-query -W -f '${Version}' nfdump 2>/dev/null || nfdump -V)"
  fi
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (work tree modified)')"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

  write_configs
  if want seed; then seed_replay; fi

  if want stages; then
    echo
    echo "== replay cost by stage (seed capture; see bench/src/bin/stages.rs)"
    wait_for_quiet
    echo "\$ $STAGES $PCAP --reps $REPS --workers $NPROC"
    "$STAGES" "$PCAP" --reps "$REPS" --workers "$NPROC"
  fi

  if want decode; then
    echo
    echo "== decoder: outpost_decode vs etherparse (in memory, one thread)"
    wait_for_quiet
    echo "\$ $DECODE --reps $DECODE_REPS --raw"
    "$DECODE" --reps "$DECODE_REPS" --raw
    echo
    echo "== decoder, cache-cold variant: 1,000,000 frames per set (137 MB / 60 MB, beyond the caches)"
    echo "\$ $DECODE --reps 5 --frames 1000000 --packets 4000000"
    "$DECODE" --reps 5 --frames 1000000 --packets 4000000
  fi

  if want classify; then
    echo
    echo "== event classification: the seed rule's filters per event class (see bench/src/bin/classify.rs)"
    wait_for_quiet
    echo "\$ $CLASSIFY --reps $DECODE_REPS"
    "$CLASSIFY" --reps "$DECODE_REPS"
  fi

  if want flows; then
    echo
    echo "== decode + flow metering on one core, from memory (see bench/src/bin/flows.rs)"
    wait_for_quiet
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "\$ $FLOWSBENCH --reps $FLOWS_REPS --raw"
    "$FLOWSBENCH" --reps "$FLOWS_REPS" --raw
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "== flow meter memory with 1,000,000 flows (fresh process)"
    echo "\$ $FLOWSBENCH --memory 1000000"
    "$FLOWSBENCH" --memory 1000000
  fi

  if ((MIX)) && want mix; then mix_replay; fi
  if ((MIX)) && want mem; then mem_replay; fi
  echo
  echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  rm -f "$OUT"/err-mix-2.txt "$OUT"/err-mem-2.txt "$OUT/maxrss" # nfpcapd's per-frame complaints
}

main 2>&1 | tee "$RESULTS"
echo "results written to $RESULTS"
