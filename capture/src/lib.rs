//! Packet sources and the worker pipeline.
//!
//! A [`PacketSource`] yields batches of borrowed frames with capture timestamps; pcap and
//! pcapng files are read by [`PcapFileSource`] / [`PcapFiles`]. [`run_pipeline`] reads a source
//! on a receive thread, shards frames by source IP into [`FrameBlock`]s for N worker threads
//! over lock-free SPSC rings, runs a [`WorkerStage`] on each, and merges the workers' records
//! into one deterministic stream on the caller's thread.

pub mod af_packet;
pub mod af_xdp;
pub mod block;
pub mod error;
pub mod iface;
pub mod memory;
pub mod multi;
pub mod pcap_file;
pub mod pipeline;
pub mod source;
pub mod wait;
pub mod xdp;

pub use block::{BlockFrame, BlockLimits, FrameBlock, InputPos, Roles};
pub use error::SourceError;
pub use memory::MemorySource;
pub use pcap_file::{PcapFileSource, PcapFiles};
pub use pipeline::{
    Backpressure, DispatchStats, Dispatcher, Emitter, EpochRequest, FlushPolicy, Merged, PipelineConfig,
    PipelineError, PipelineReport, Progress, Sharding, WorkerStage, run_pipeline, worker_for,
};
pub use source::{Batch, Frame, FrameDesc, PacketSource, SourceStats};
