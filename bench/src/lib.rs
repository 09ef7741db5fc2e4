//! Outpost benchmarks. The binaries in `src/bin` time hot-path code with `std::time::Instant`
//! over in-memory inputs; run them with `cargo run --release -p outpost-bench --bin <name>`.
