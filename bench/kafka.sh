#!/usr/bin/env bash
# Kafka export throughput (`make bench`; or alone). See BENCHMARKS.md, section "Kafka export".
#
#   1. builds release `outpost`; starts tansu (`make deps-kafka`) on a free loopback port with
#      memory storage, in a scratch directory removed on exit;
#   2. a flow-heavy capture: $BENCH_OUT/kafka-mix.pcap (`outpost gen mix --flows
#      $BENCH_KAFKA_FLOWS --seed 2`, default 200,000 flows);
#   3. BENCH_KAFKA_REPS times (default 5), interleaved:
#        jsonl:  outpost replay kafka-mix.pcap --config flows-only.toml --flows /dev/null --alerts /dev/null --workers 1 --quiet
#        kafka:  outpost replay kafka-mix.pcap --config kafka.toml --flows /dev/null --alerts /dev/null --workers 1 --summary-json S --quiet
#      where kafka.toml is flows-only.toml plus `[kafka]` (lz4, acks=all, idempotent, the
#      default) pointing at the broker, each run with an empty spool; the run waits at the end
#      until the broker confirmed every record (`kafka.complete`), so its wall time includes
#      delivery. Reports flow records delivered per second (delivered.flows / wall) and the
#      same-run JSON-lines peer.
#
# Results go to standard output and $BENCH_OUT/kafka-results.txt.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT=${BENCH_OUT:-out/bench}
REPS=${BENCH_KAFKA_REPS:-5}
FLOWS=${BENCH_KAFKA_FLOWS:-200000}
mkdir -p "$OUT"
RESULTS="$OUT/kafka-results.txt"
cargo build --release -q -p outpost-sensor --bin outpost
OUTPOST=$PWD/target/release/outpost
command -v tansu >/dev/null || { echo "bench/kafka.sh needs tansu (make deps-kafka)"; exit 1; }

SCRATCH=$(mktemp -d)
TANSU_PID=
cleanup() { [[ -n $TANSU_PID ]] && kill "$TANSU_PID" 2>/dev/null; rm -rf "$SCRATCH"; }
trap cleanup EXIT INT TERM
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$SCRATCH" && exec tansu broker --listener-url=tcp://127.0.0.1:$PORT \
    --advertised-listener-url=tcp://127.0.0.1:$PORT --storage-engine=memory://tansu/ >"$SCRATCH/tansu.log" 2>&1) &
TANSU_PID=$!
until (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; do sleep 0.1; done

MIX="$OUT/kafka-mix.pcap"
[[ -s $MIX ]] || "$OUTPOST" gen mix --flows "$FLOWS" --seed 2 --out "$MIX" >/dev/null
cat "$MIX" >/dev/null

printf '[flows]\nenabled = true\n' > "$SCRATCH/flows-only.toml"
cp "$SCRATCH/flows-only.toml" "$SCRATCH/kafka.toml"
cat >> "$SCRATCH/kafka.toml" <<TOML
[kafka]
brokers = ["127.0.0.1:$PORT"]
create_topics = 3
[kafka.spool]
dir = "$SCRATCH/spool"
TOML

{
    echo "# Kafka export, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg), tansu $(tansu --version 2>&1 | head -1)"
    echo "capture: $MIX"
    echo "case rep wall_s flows delivered_flows flows_per_s complete"
} | tee "$RESULTS"
for rep in $(seq 1 "$REPS"); do
    for case in jsonl kafka; do
        [[ $(( rep % 2 )) -eq 0 ]] && case=$([[ $case == jsonl ]] && echo kafka || echo jsonl)
        rm -rf "$SCRATCH/spool"
        cfg="$SCRATCH/flows-only.toml"; [[ $case == kafka ]] && cfg="$SCRATCH/kafka.toml"
        t0=$(date +%s.%N)
        "$OUTPOST" replay "$MIX" --config "$cfg" --flows /dev/null --alerts /dev/null --workers 1 \
            --summary-json "$SCRATCH/s.json" --quiet
        t1=$(date +%s.%N)
        python3 - "$case" "$rep" "$t0" "$t1" "$SCRATCH/s.json" <<'PY' | tee -a "$RESULTS"
import json, sys
case, rep, t0, t1, path = sys.argv[1:]
s = json.load(open(path)); wall = float(t1) - float(t0)
flows = sum(s["flows"]["records"].values()) if s.get("flows") else 0
k = s.get("kafka")
delivered = k["delivered"]["flows"] if k else 0
rate = (delivered if k else flows) / wall
print(f"{case} {rep} {wall:.3f} {flows} {delivered} {rate:.0f} {k['complete'] if k else '-'}")
PY
    done
done
python3 - "$RESULTS" <<'PY' | tee -a "$RESULTS"
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l[:5] in ("jsonl", "kafka")]
for case in ("jsonl", "kafka"):
    r = [x for x in rows if x[0] == case]
    print(f"# median {case}: wall {statistics.median(float(x[2]) for x in r):.3f} s, "
          f"{statistics.median(float(x[5]) for x in r):.0f} flow records/s")
PY
