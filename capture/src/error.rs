//! Errors of packet sources.

use std::path::PathBuf;

/// Why a source could not deliver (more) frames.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with a pcap or pcapng magic number.
    #[error("{}: not a pcap or pcapng file (first bytes {magic:02x?})", path.display())]
    NotACapture {
        /// The file.
        path: PathBuf,
        /// The first (up to four) bytes.
        magic: Vec<u8>,
    },
    /// The file ends in the middle of a record.
    #[error(
        "{}: truncated at byte offset {offset}: the record there needs {needed} more bytes than the file has",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Offset of the incomplete record.
        offset: u64,
        /// Bytes missing (at least).
        needed: u64,
    },
    /// A record or block is malformed.
    #[error("{}: corrupt record at byte offset {offset}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Offset of the bad record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A live capture interface failed (socket, ring, poll).
    #[error("{interface}: {what}: {source}")]
    Live {
        /// The interface.
        interface: String,
        /// What was being done (e.g. "poll", "mmap of the receive ring").
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
