//! Packet sources and the worker pipeline.
//!
//! A [`PacketSource`] yields batches of borrowed frames with capture timestamps. Pcap and
//! pcapng files are read by [`PcapFileSource`] / [`PcapFiles`].

pub mod error;
pub mod pcap_file;
pub mod source;

pub use error::SourceError;
pub use pcap_file::{PcapFileSource, PcapFiles};
pub use source::{Batch, Frame, FrameDesc, PacketSource, SourceStats};
