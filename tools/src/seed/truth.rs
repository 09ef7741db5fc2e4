//! Ground truth of the seed scenario: one record per injected invalid transition, written as
//! JSON lines in packet order, and read back for tests.
//!
//! A line looks like (one line in the file, wrapped here):
//!
//! ```json
//! {"ts":"2026-01-01T00:00:00.000123456Z","ts_ns":1767225600000123456,"src_ip":"10.1.7.9",
//!  "dst_ip":"192.168.1.10","src_port":40001,"dst_port":7005,"state":"W","event":"e"}
//! ```
//!
//! `state` is the client's state before the event (`INITIAL`, `W`, `X`, `Y` or `Z`), `event`
//! the invalid event (`a`..`g`, carried to `dst_port` = 7000 + n).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::Path;

use outpost_decode::Nanos;
use serde::{Deserialize, Serialize};

use super::machine::{Event, State};

/// One injected invalid transition: the packet that carries it and the state it hit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TruthRecord {
    /// Packet timestamp, RFC 3339 UTC with nine fractional digits (as `Nanos` displays).
    pub ts: String,
    /// Packet timestamp, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The client (source) address.
    pub src_ip: IpAddr,
    /// The server (destination) address.
    pub dst_ip: IpAddr,
    /// The client's UDP source port.
    pub src_port: u16,
    /// The UDP destination port, `7000 + n` for event number `n` (a = 1).
    pub dst_port: u16,
    /// The client's state when the event arrived.
    pub state: State,
    /// The invalid event.
    pub event: Event,
}

impl TruthRecord {
    /// The packet timestamp.
    #[must_use]
    pub fn time(&self) -> Nanos {
        Nanos(self.ts_ns)
    }

    /// Writes the record as one JSON line.
    ///
    /// # Errors
    /// Any I/O error of `out`.
    pub fn write_line<W: Write>(&self, mut out: W) -> io::Result<()> {
        serde_json::to_writer(&mut out, self)?;
        out.write_all(b"\n")
    }
}

/// Why a truth file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    /// Reading failed.
    #[error("reading truth: {0}")]
    Io(#[from] io::Error),
    /// A line is not a truth record.
    #[error("truth line {line}: {source}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What was wrong with it.
        source: serde_json::Error,
    },
}

/// Reads every record of a JSON-lines truth stream, skipping blank lines.
///
/// # Errors
/// An I/O error, or the first line that is not a [`TruthRecord`].
pub fn read_truth<R: BufRead>(reader: R) -> Result<Vec<TruthRecord>, TruthError> {
    crate::jsonl::read_json_lines(reader, |line, source| TruthError::Parse { line, source })
}

/// Reads a truth file written by the generator (`--truth FILE`).
///
/// # Errors
/// As [`read_truth`], or the file cannot be opened.
pub fn read_truth_file(path: &Path) -> Result<Vec<TruthRecord>, TruthError> {
    read_truth(BufReader::new(File::open(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TruthRecord {
        let ts = Nanos::from_parts(1_767_225_600, 123_456);
        TruthRecord {
            ts: ts.to_string(),
            ts_ns: ts.0,
            src_ip: "10.1.7.9".parse().unwrap(),
            dst_ip: "2001:db8:101::10".parse().unwrap(),
            src_port: 40001,
            dst_port: 7005,
            state: State::W,
            event: Event::E,
        }
    }

    #[test]
    fn line_has_the_documented_fields_in_order() {
        let mut out = Vec::new();
        sample().write_line(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"ts\":\"2026-01-01T00:00:00.000123456Z\",\"ts_ns\":1767225600000123456,\
             \"src_ip\":\"10.1.7.9\",\"dst_ip\":\"2001:db8:101::10\",\"src_port\":40001,\
             \"dst_port\":7005,\"state\":\"W\",\"event\":\"e\"}\n"
        );
    }

    #[test]
    fn records_round_trip_and_blank_lines_are_skipped() {
        let mut out = Vec::new();
        sample().write_line(&mut out).unwrap();
        out.extend_from_slice(b"\n  \n");
        let mut second = sample();
        second.state = State::Initial;
        second.event = Event::G;
        second.write_line(&mut out).unwrap();
        let got = read_truth(out.as_slice()).unwrap();
        assert_eq!(got, vec![sample(), second]);
        assert_eq!(got[0].time(), Nanos::from_parts(1_767_225_600, 123_456));
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let mut out = Vec::new();
        sample().write_line(&mut out).unwrap();
        out.extend_from_slice(b"{\"ts\":1}\n");
        match read_truth(out.as_slice()) {
            Err(TruthError::Parse { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected a parse error, got {other:?}"),
        }
        let bad_state =
            String::from_utf8(out[..out.len() - 9].to_vec()).unwrap().replace("\"W\"", "\"TERM\"");
        assert!(read_truth(bad_state.as_bytes()).is_err(), "TERM is not a state");
    }
}
