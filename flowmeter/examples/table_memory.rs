//! Prints the flow table's allocated bytes per flow for a few capacities
//! (`cargo run --release -p outpost-flowmeter --example table_memory`).

use outpost_flowmeter::{FlowConfig, FlowMeter, TableConfig};

fn main() {
    for capacity in [10_000usize, 100_000, 500_000, 1 << 20, 1_000_000, 1_835_008] {
        let config = FlowConfig {
            table: TableConfig { capacity, ..FlowConfig::default().table },
            ..FlowConfig::default()
        };
        let m = FlowMeter::new(config, 0);
        println!(
            "capacity {capacity:>9}: {:>11} bytes allocated, {:.1} bytes per flow",
            m.allocated_bytes(),
            m.allocated_bytes() as f64 / capacity as f64
        );
    }
}
