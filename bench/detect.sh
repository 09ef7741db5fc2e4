#!/usr/bin/env bash
# Detection cost (`make bench`, after bench/run.sh; or alone). See BENCHMARKS.md, section
# "Detection".
#
#   1. builds release (`outpost`, the `detect` benchmark);
#   2. the mix scenario: $BENCH_OUT/mix.pcap if bench/run.sh made it, else
#      `outpost gen mix --flows $BENCH_DETECT_FLOWS --seed 1` (default 450,000 flows, ~5.4M
#      packets, as bench/run.sh) into it; read once into the page cache;
#   3. a 1,000,000-entry intel list ($BENCH_OUT/intel-1m.txt: `outpost gen attacks --intel-out
#      ... --intel-entries 1000000`; 80 % IPv4, 20 % IPv6, hosts and prefixes) and three
#      configurations: flows-only.toml (no rules), the built-in one (config/outpost.toml with
#      every rule file of config/rules.d; its intel list config/intel/blocklist.txt is empty),
#      and $BENCH_OUT/intel1m/outpost.toml (a copy of the built-in one whose
#      intel/blocklist.txt is the million-entry list);
#   4. BENCH_DETECT_REPS times (default 7), interleaved, order rotating:
#        outpost replay mix.pcap --config flows-only.toml --flows /dev/null --workers 1 --alerts /dev/null --quiet
#        outpost replay mix.pcap --flows /dev/null --workers 1 --alerts /dev/null --quiet
#        outpost replay mix.pcap --config intel1m/outpost.toml --flows /dev/null --workers 1 --alerts /dev/null --quiet
#      wall and CPU seconds (bash's `time`, start-up and the list's loading included); medians
#      and throughput relative to flows-only;
#   5. `detect mix.pcap --packets 2000000 --reps 7 [--intel intel-1m.txt]`: the worker's
#      detector beside its flow meter on the same decoded packets in one process;
#   6. `detect --memory 100000`: the detector's heap bytes per tracked source address.
#
# Results go to standard output and $BENCH_OUT/detect-results.txt.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT=${BENCH_OUT:-out/bench}
REPS=${BENCH_DETECT_REPS:-7}
FLOWS=${BENCH_DETECT_FLOWS:-450000}
mkdir -p "$OUT"
RESULTS="$OUT/detect-results.txt"

cargo build --release -q -p outpost-sensor -p outpost-bench --bin outpost --bin detect
OUTPOST=target/release/outpost
DETECT=target/release/detect

MIX="$OUT/mix.pcap"
if [[ ! -s "$MIX" ]]; then
    echo "generating $MIX ($FLOWS flows)"
    "$OUTPOST" gen mix --flows "$FLOWS" --concurrency 20000 --clients 5000 --seed 1 --out "$MIX" >/dev/null
fi
cat "$MIX" >/dev/null

INTEL="$OUT/intel-1m.txt"
if [[ ! -s "$INTEL" ]]; then
    echo "generating $INTEL (1,000,000 entries)"
    "$OUTPOST" gen attacks --attacks intel-contact --benign-flows 10 --seed 1 \
        --out "$OUT/intel-1m-contact.pcap" --intel-out "$INTEL" --intel-entries 1000000 >/dev/null
fi
printf '[sensor]\nname = "bench"\n' >"$OUT/flows-only.toml"
rm -rf "$OUT/intel1m"
mkdir -p "$OUT/intel1m/rules.d" "$OUT/intel1m/intel"
cp config/outpost.toml "$OUT/intel1m/"
cp config/rules.d/*.toml "$OUT/intel1m/rules.d/"
cp "$INTEL" "$OUT/intel1m/intel/blocklist.txt"
"$OUTPOST" check-config "$OUT/intel1m/outpost.toml" >/dev/null

CASES=(flows-only built-in built-in+intel-1m)
run_case() {
    case "$1" in
    flows-only) "$OUTPOST" replay "$MIX" --config "$OUT/flows-only.toml" --flows /dev/null --workers 1 --alerts /dev/null --quiet ;;
    built-in) "$OUTPOST" replay "$MIX" --flows /dev/null --workers 1 --alerts /dev/null --quiet ;;
    built-in+intel-1m) "$OUTPOST" replay "$MIX" --config "$OUT/intel1m/outpost.toml" --flows /dev/null --workers 1 --alerts /dev/null --quiet ;;
    esac
}

{
    echo "# detection cost, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "capture: $MIX ($(stat -L -c %s "$MIX") bytes); $REPS repetitions after one warm-up, interleaved"
} | tee "$RESULTS"

TIMEFORMAT='%R %U %S'
declare -A WALL CPU
for rep in $(seq 0 "$REPS"); do
    for k in "${!CASES[@]}"; do
        c=${CASES[$(((k + rep) % ${#CASES[@]}))]}
        t=$({ time run_case "$c" >/dev/null 2>&1; } 2>&1 | tail -1)
        read -r wall user sys <<<"$t"
        echo "rep $rep $c wall $wall user $user sys $sys" >>"$RESULTS"
        if ((rep > 0)); then
            WALL[$c]+="$wall "
            CPU[$c]+="$(python3 -c "print($user + $sys)") "
        fi
    done
done

python3 - "${CASES[@]}" <<EOF | tee -a "$RESULTS"
import statistics, sys
wall = {$(for c in "${CASES[@]}"; do printf '"%s": [%s], ' "$c" "$(echo "${WALL[$c]}" | sed 's/ $//; s/ /, /g')"; done)}
cpu = {$(for c in "${CASES[@]}"; do printf '"%s": [%s], ' "$c" "$(echo "${CPU[$c]}" | sed 's/ $//; s/ /, /g')"; done)}
base_w = statistics.median(wall["flows-only"])
base_c = statistics.median(cpu["flows-only"])
print("| case | median wall s (min-max) | median CPU s | throughput vs flows-only (wall) | CPU vs flows-only |")
print("|---|---:|---:|---:|---:|")
for c in sys.argv[1:]:
    w, u = statistics.median(wall[c]), statistics.median(cpu[c])
    print(f"| {c} | {w:.3f} ({min(wall[c]):.3f}-{max(wall[c]):.3f}) | {u:.3f} | {base_w / w:.0%} | {u / base_c:.2f}x |")
EOF

echo "## detector beside the flow meter, in memory (detect)" | tee -a "$RESULTS"
"$DETECT" "$MIX" --packets 2000000 --reps 7 --rules config/rules.d | tee -a "$RESULTS"
"$DETECT" "$MIX" --packets 2000000 --reps 7 --rules config/rules.d --intel "$INTEL" | tee -a "$RESULTS"
echo "## memory per tracked source (detect --memory)" | tee -a "$RESULTS"
"$DETECT" --memory 100000 --rules config/rules.d | tee -a "$RESULTS"
