#!/usr/bin/env bash
# Live capture: packets received and dropped by `outpost run` in each capture mode (XDP
# native, XDP generic, AF_PACKET) beside `tcpdump -i IF -w /dev/null`, on one veth pair in a
# network namespace this script creates (and removes on exit), fed by tcpreplay from a
# preloaded pcap of small frames. See BENCHMARKS.md, section "Live capture".
#
#   bench/live.sh            (root; `make bench` runs it)
#
# For each capture tool and each send rate (tcpreplay --pps R, then tcpreplay --topspeed, then
# "trafgen": netsniff-ng's trafgen as fast as it can, BENCH_LIVE_TRAFGEN_PACKETS 60-byte
# UDP frames from random sources in 10.1.0.0/16), REPS times: start the capture, wait until it
# is ready, send, wait, stop it, and count what it received (outpost: frames that reached a
# worker, i.e. captured minus worker-ring drops; tcpdump: "packets captured") against what was
# sent. The zero-loss rate of a tool is the highest rate at which every repetition received
# every packet. tcpdump runs as `tcpdump -i IF -n -w /dev/null` (its default 2 MiB buffer);
# outpost as `outpost run -i IF --mode ... --workers 1` with the built-in configuration (every
# default rule, flows metered).
#
# Environment: BENCH_OUT (out/bench), BENCH_LIVE_REPS (3), BENCH_LIVE_RATES ("50000 100000
# 200000 400000"), BENCH_LIVE_LOOPS (4), BENCH_LIVE_EVENTS (100000 frames per pass),
# BENCH_LIVE_TRAFGEN_PACKETS (2000000).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT=${BENCH_OUT:-out/bench}
REPS=${BENCH_LIVE_REPS:-3}
RATES=${BENCH_LIVE_RATES:-"50000 100000 200000 400000"}
LOOPS=${BENCH_LIVE_LOOPS:-4}
EVENTS=${BENCH_LIVE_EVENTS:-100000}
TRAFGEN_PACKETS=${BENCH_LIVE_TRAFGEN_PACKETS:-2000000}
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
command -v trafgen >/dev/null || { apt-get install -y -qq netsniff-ng >/dev/null; }
TRAFGEN_CONF="$OUT/live-trafgen.cfg"
# Ethernet, IPv4 (checksummed) from 10.1.x.y (random) to 192.168.1.10, UDP 12345 -> 7001,
# 18 bytes of payload: 60-byte frames.
cat > "$TRAFGEN_CONF" <<'CFG'
{
  0x02, 0x00, 0x00, 0x00, 0x00, 0x02,  0x02, 0x00, 0x00, 0x00, 0x00, 0x01,  0x08, 0x00,
  0x45, 0x00, 0x00, 0x2e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, csumip(14, 33),
  10, 1, drnd(), drnd(),  192, 168, 1, 10,
  0x30, 0x39, 0x1b, 0x59, 0x00, 0x1a, 0x00, 0x00,
  fill(0x41, 18)
}
CFG

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
        ip netns exec "$NS" tcpdump -i cap0 -n -w /dev/null 2>"$log" &
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
    if [[ $rate == trafgen ]]; then
        nsx trafgen --dev tx0 --conf "$TRAFGEN_CONF" --num "$TRAFGEN_PACKETS" --cpus 1 >/dev/null 2>&1
        sent=$TRAFGEN_PACKETS
    else
        local speed=(--pps "$rate")
        [[ $rate == top ]] && speed=(--topspeed)
        sent=$(nsx tcpreplay -i tx0 --preload-pcap --loop "$LOOPS" "${speed[@]}" "$PCAP" 2>&1 |
            awk '/Actual:/ {print $2; exit}')
    fi
    sleep 1
    # SIGTERM: background jobs of a script ignore SIGINT. `ip netns exec` execs the tool, so
    # $pid is the tool itself.
    kill -TERM "$pid"
    wait "$pid" || true
    case "$tool" in
    tcpdump)
        received=$(awk '/packets captured/ {print $1}' "$log")
        detail="kernel-dropped=$(awk '/dropped by kernel/ {print $1}' "$log")" ;;
    *)
        # Where frames went: read from the socket (frames), dropped at full worker rings, lost
        # by the socket or kernel (source_dropped), and what the XDP program saw.
        read -r received detail < <(python3 -c 'import json,sys
s = json.load(open(sys.argv[1])); c = s["capture"]; x = c.get("xdp") or {}
ring = sum(s["ring_full_drops"])
print(s["frames"] - ring, f"read={s['"'"'frames'"'"']} ring-full={ring} source-dropped={c['"'"'source_dropped'"'"']} xdp-seen={x.get('"'"'seen'"'"', '"'"'-'"'"')}")' "$sum") ;;
    esac
    rm -f "$log" "$sum"
    echo "$received $sent $detail"
}

{
    echo "# live capture, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r)"
    echo "pcap: $PCAP ($FRAMES frames, sent $LOOPS times per measurement); $REPS repetitions"
    echo "tool rate rep received sent lost detail"
} | tee "$RESULTS"
TOOLS=(outpost-xdp-native outpost-xdp-generic outpost-af_packet tcpdump)
declare -A ZERO
for rate in $RATES top trafgen; do
    for rep in $(seq 1 "$REPS"); do
        # Rotate the order every repetition so no tool always runs first.
        for k in "${!TOOLS[@]}"; do
            tool=${TOOLS[$(((k + rep) % ${#TOOLS[@]}))]}
            read -r received sent detail < <(measure "$tool" "$rate")
            # A few frames the veth itself sends (e.g. IGMP) may come on top: never negative.
            lost=$((sent > received ? sent - received : 0))
            echo "$tool $rate $rep $received $sent $lost $detail" | tee -a "$RESULTS"
            [[ $lost -ne 0 ]] && ZERO[$tool,$rate]=no
        done
    done
done
echo "# zero-loss rates (highest tested rate at which every repetition lost nothing)" | tee -a "$RESULTS"
for tool in "${TOOLS[@]}"; do
    best=none
    for rate in $RATES top trafgen; do
        [[ ${ZERO[$tool,$rate]:-yes} == yes ]] && best=$rate
    done
    echo "$tool $best" | tee -a "$RESULTS"
done
