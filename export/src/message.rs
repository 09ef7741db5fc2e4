//! What IPFIX and NetFlow v9 messages share: a reused buffer that holds one message of at
//! most the MTU, sets (FlowSets) padded to four bytes, the export clock and the template
//! refresh policy.
//!
//! Both formats are a fixed header followed by sets, each set a 4-byte header (set id,
//! length in bytes including the header and padding) and records (RFC 7011 §3.3,
//! RFC 3954 §5.3). Headers are multiples of four bytes and every set is padded to a multiple
//! of four, so every set starts 4-aligned. The padding is shorter than any record, as both
//! RFCs require of it.

use outpost_decode::{Duration, Nanos};

/// Where an exporter's clock — the export time in message headers and the clock of the
/// template refresh interval — comes from. Never the wall clock: a replay of the same
/// records gives the same bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExportClock {
    /// The latest end time (`FlowRecord::end()`) of the records exported so far, or a later
    /// time given to `advance` (the default).
    #[default]
    RecordEnd,
    /// Only the times given to `advance` (for example the sensor's event clock); record
    /// times are ignored.
    Caller,
}

/// When templates are sent again (RFC 7011 §8.4 for UDP: templates are re-sent
/// periodically so a collector that starts late, or lost a datagram, learns them).
///
/// Templates always go into the first message. After that they go into the next message
/// once either limit is reached; a zero disables that limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateRefresh {
    /// Re-send after this many messages (default 20).
    pub messages: u32,
    /// Re-send after this much export time has passed (default 60 s).
    pub interval: Duration,
}

impl Default for TemplateRefresh {
    /// Every 20 messages and every 60 seconds of export time.
    fn default() -> TemplateRefresh {
        TemplateRefresh { messages: 20, interval: Duration::from_secs(60) }
    }
}

/// One finished message, as handed to a sink.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// The message bytes (one UDP payload).
    pub bytes: &'a [u8],
    /// Data records in it.
    pub data_records: u32,
    /// Template records in it.
    pub template_records: u32,
}

/// Rounds up to a multiple of four.
#[inline]
pub(crate) const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The export clock of an encoder: monotone event time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    pub source: ExportClock,
    pub now: Nanos,
}

impl Clock {
    pub fn advance(&mut self, now: Nanos) {
        if now > self.now {
            self.now = now;
        }
    }

    pub fn saw_record(&mut self, end: Nanos) {
        if self.source == ExportClock::RecordEnd {
            self.advance(end);
        }
    }
}

/// Decides which messages carry templates.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RefreshState {
    pub policy: TemplateRefresh,
    /// Index of the last message that carried templates, and its export time.
    pub last: Option<(u64, Nanos)>,
}

impl RefreshState {
    /// True when message number `index`, started at `now`, must carry templates.
    pub fn due(&self, index: u64, now: Nanos) -> bool {
        match self.last {
            None => true,
            Some((i, t)) => {
                (self.policy.messages > 0 && index.saturating_sub(i) >= u64::from(self.policy.messages))
                    || (self.policy.interval.as_nanos() > 0 && now.since(t) >= self.policy.interval)
            }
        }
    }
}

/// The message being built. The buffer is allocated once with the MTU as capacity and
/// reused: encoding a record never allocates.
#[derive(Debug)]
pub(crate) struct MessageBuf {
    pub buf: Vec<u8>,
    pub mtu: usize,
    header_len: usize,
    /// The open set: its id and where its header starts.
    open: Option<(u16, usize)>,
    pub data_records: u32,
    pub template_records: u32,
}

impl MessageBuf {
    pub fn new(mtu: usize, header_len: usize) -> MessageBuf {
        MessageBuf {
            buf: Vec::with_capacity(mtu),
            mtu,
            header_len,
            open: None,
            data_records: 0,
            template_records: 0,
        }
    }

    /// True when no message is being built.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty()
    }

    /// Starts a message: room for the header (written by `finish`).
    pub fn begin(&mut self) {
        self.buf.clear();
        self.buf.resize(self.header_len, 0);
        self.open = None;
        self.data_records = 0;
        self.template_records = 0;
    }

    /// Appends a complete, already padded set (the template set).
    pub fn push_set(&mut self, set: &[u8], records: u32) {
        self.close_set();
        self.buf.extend_from_slice(set);
        self.template_records += records;
    }

    /// The message length after adding a record of `len` bytes to set `set_id`, including
    /// the padding that closes the sets.
    pub fn projected_len(&self, set_id: u16, len: usize) -> usize {
        match self.open {
            Some((id, _)) if id == set_id => align4(self.buf.len() + len),
            _ => align4(align4(self.buf.len()) + 4 + len),
        }
    }

    /// Makes `set_id` the open set (closing another one) so a record can be appended.
    pub fn open_set(&mut self, set_id: u16) {
        if matches!(self.open, Some((id, _)) if id == set_id) {
            return;
        }
        self.close_set();
        let start = self.buf.len();
        self.buf.extend_from_slice(&set_id.to_be_bytes());
        self.buf.extend_from_slice(&[0, 0]);
        self.open = Some((set_id, start));
    }

    /// Pads the open set to four bytes and writes its length.
    pub fn close_set(&mut self) {
        if let Some((_, start)) = self.open.take() {
            let padded = align4(self.buf.len());
            self.buf.resize(padded, 0);
            let len = u16::try_from(padded - start).unwrap_or(u16::MAX);
            if let Some(dst) = self.buf.get_mut(start + 2..start + 4) {
                dst.copy_from_slice(&len.to_be_bytes());
            }
        }
    }

    /// Closes the open set; the caller then writes the header into `buf[..header_len]`.
    pub fn finish(&mut self) {
        self.close_set();
    }

    /// Ends the message (after it was handed on).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.open = None;
    }
}

/// Builds a template set: set header with `set_id`, then each template record.
pub(crate) fn template_set(set_id: u16, templates: &[crate::field::Template]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&set_id.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    for t in templates {
        t.write_template_record(&mut out);
    }
    out.resize(align4(out.len()), 0);
    let len = u16::try_from(out.len()).unwrap_or(u16::MAX);
    out[2..4].copy_from_slice(&len.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_is_due_first_then_by_count_or_time() {
        let mut r = RefreshState {
            policy: TemplateRefresh { messages: 3, interval: Duration::from_secs(10) },
            last: None,
        };
        assert!(r.due(0, Nanos::ZERO));
        r.last = Some((0, Nanos::from_secs(100)));
        assert!(!r.due(1, Nanos::from_secs(100)));
        assert!(!r.due(2, Nanos::from_secs(109)));
        assert!(r.due(3, Nanos::from_secs(100)), "count limit");
        assert!(r.due(1, Nanos::from_secs(110)), "time limit");
        r.policy = TemplateRefresh { messages: 0, interval: Duration::ZERO };
        assert!(!r.due(1_000, Nanos::from_secs(1_000_000)), "both limits disabled");
    }

    #[test]
    fn sets_are_padded_to_four_bytes_and_carry_their_length() {
        let mut m = MessageBuf::new(100, 16);
        m.begin();
        assert_eq!(m.projected_len(256, 5), 16 + 4 + 8);
        m.open_set(256);
        m.buf.extend_from_slice(&[1; 5]);
        assert_eq!(m.projected_len(256, 5), 16 + 4 + 12, "same set: records are contiguous");
        assert_eq!(m.projected_len(257, 5), 16 + 12 + 4 + 8, "new set after padding");
        m.open_set(257);
        m.buf.extend_from_slice(&[2; 6]);
        m.finish();
        assert_eq!(m.buf.len(), 16 + 12 + 12);
        assert_eq!(&m.buf[16..20], &[1, 0, 0, 12]);
        assert_eq!(&m.buf[25..28], &[0, 0, 0], "padding is zero");
        assert_eq!(&m.buf[28..32], &[1, 1, 0, 12]);
    }
}
