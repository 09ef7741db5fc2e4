//! Outpost's traffic generator: frames built byte by byte, streamed into pcap or pcapng files,
//! and scenarios that come with ground truth so tests can check detections exactly.

pub mod alloc;
pub mod attack;
pub mod frame;
mod jsonl;
pub mod mix;
pub mod netns;
pub mod pcap;
mod random;
pub mod seed;
pub mod splitmix;
pub mod timearg;
