#!/usr/bin/env bash
# Live capture: packets received and dropped by `outpost run` in each capture mode (XDP
# native, XDP generic, AF_PACKET) beside `tcpdump -i IF -w /dev/null`, on one veth pair in a
# network namespace this script creates (and removes on exit), fed by tcpreplay from a
# preloaded pcap of small frames. See BENCHMARKS.md, section "Live capture".
#
#   bench/live.sh            (root; `make bench` runs it)
#
# For each capture tool and each send rate (tcpreplay --pps R, then --topspeed), REPS times:
# start the capture, wait until it is ready, send the capture LOOPS times, wait, stop it, and
# count what it received (outpost: frames that reached a worker, i.e. captured minus
# worker-ring drops; tcpdump: "packets captured") against what tcpreplay sent. The zero-loss
# rate of a tool is the highest rate at which every repetition received every packet.
#
# Environment: BENCH_OUT (out/bench), BENCH_LIVE_REPS (3), BENCH_LIVE_RATES ("50000 100000
# 200000 400000"), BENCH_LIVE_LOOPS (4), BENCH_LIVE_EVENTS (100000 frames per pass).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT=${BENCH_OUT:-out/bench}
REPS=${BENCH_LIVE_REPS:-3}
RATES=${BENCH_LIVE_RATES:-"50000 100000 200000 400000"}
LOOPS=${BENCH_LIVE_LOOPS:-4}
EVENTS=${BENCH_LIVE_EVENTS:-100000}
mkdir -p "$OUT"
RESULTS="$OUT/live-results.txt"

[[ $(id -u) -eq 0 ]] || { echo "bench/live.sh needs root (network namespaces, XDP)"; exit 1; }
cargo build --release -q -p outpost-sensor --bin outpost
OUTPOST=$PWD/target/release/outpost

PCAP="$OUT/live-small.pcap"
if [[ ! -s "$PCAP" ]]; then
    # Small UDP frames (the seed scenario's datagrams, 60-110 bytes) with no noise.
    "$OUTPOST" gen seed --events "$EVENTS" --clients 1000 --rate 1000000 --noise 0 --seed 3 --out "$PCAP" >/dev/null 2>&1
fi
FRAMES=$(tcpdump -n -r "$PCAP" 2>/dev/null | wc -l)

NS="outpost-bench-$$"
cleanup() { ip netns del "$NS" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
ip netns add "$NS"
nsx() { ip netns exec "$NS" "$@"; }
nsx sysctl -q -w net.ipv6.conf.all.disable_ipv6=1
nsx ip link add cap0 type veth peer name tx0
for d in cap0 tx0 lo; do nsx ip link set "$d" up; done
for d in cap0 tx0; do nsx ethtool -K "$d" tx off tso off gso off gro off >/dev/null 2>&1 || true; done

# One measurement: prints "received sent".
measure() {
    local tool=$1 rate=$2 log sum pid sent received
    log=$(mktemp) sum=$(mktemp)
    case "$tool" in
    tcpdump)
        ip netns exec "$NS" tcpdump -i cap0 -n -w /dev/null -B 65536 2>"$log" &
        pid=$!
        until grep -q "listening on" "$log"; do sleep 0.1; done ;;
    *)
        local mode=${tool#outpost-}
        local args=(--mode xdp --xdp-attach "${mode#xdp-}")
        [[ $mode == af_packet ]] && args=(--mode af-packet)
        ip netns exec "$NS" "$OUTPOST" run -i cap0 "${args[@]}" --workers 1 --alerts /dev/null --flows /dev/null \
            --summary-json "$sum" --quiet 2>"$log" &
        pid=$!
        until grep -q "capturing on" "$log"; do
            kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; return 1; }
            sleep 0.1
        done ;;
    esac
    local speed=(--pps "$rate")
    [[ $rate == top ]] && speed=(--topspeed)
    sent=$(nsx tcpreplay -i tx0 --preload-pcap --loop "$LOOPS" "${speed[@]}" "$PCAP" 2>&1 |
        awk '/Actual:/ {print $2; exit}')
    sleep 1
    # SIGTERM: background jobs of a script ignore SIGINT. `ip netns exec` execs the tool, so
    # $pid is the tool itself.
    kill -TERM "$pid"
    wait "$pid" || true
    case "$tool" in
    tcpdump) received=$(awk '/packets captured/ {print $1}' "$log") ;;
    *) received=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["frames"] - sum(s["ring_full_drops"]))' "$sum") ;;
    esac
    rm -f "$log" "$sum"
    echo "$received $sent"
}

{
    echo "# live capture, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r)"
    echo "pcap: $PCAP ($FRAMES frames, sent $LOOPS times per measurement); $REPS repetitions"
    echo "tool rate rep received sent lost"
} | tee "$RESULTS"
TOOLS=(outpost-xdp-native outpost-xdp-generic outpost-af_packet tcpdump)
declare -A ZERO
for rate in $RATES top; do
    for rep in $(seq 1 "$REPS"); do
        # Rotate the order every repetition so no tool always runs first.
        for k in "${!TOOLS[@]}"; do
            tool=${TOOLS[$(((k + rep) % ${#TOOLS[@]}))]}
            read -r received sent < <(measure "$tool" "$rate")
            lost=$((sent - received))
            echo "$tool $rate $rep $received $sent $lost" | tee -a "$RESULTS"
            [[ $lost -ne 0 ]] && ZERO[$tool,$rate]=no
        done
    done
done
echo "# zero-loss rates (highest tested rate at which every repetition lost nothing)" | tee -a "$RESULTS"
for tool in "${TOOLS[@]}"; do
    best=none
    for rate in $RATES top; do
        [[ ${ZERO[$tool,$rate]:-yes} == yes ]] && best=$rate
    done
    echo "$tool $best" | tee -a "$RESULTS"
done
