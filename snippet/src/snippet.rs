//! A finished snippet: the packets of one key around one alert, ready to be written.

use outpost_decode::{IpAddress, LinkType, Nanos};

/// The packets of one key in an alert's window, as [`crate::PacketHistory`] collected them,
/// in arrival order, each cut to the snap length with its original length kept.
///
/// All packets share one link type (a pcap reader such as tcpdump accepts one per file): the
/// first collected packet's. Packets of the key with another link type are counted in
/// [`Snippet::omitted`], as are those beyond `max_snippet_packets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    pub(crate) alert_id: u128,
    pub(crate) key: IpAddress,
    pub(crate) alert_ts: Nanos,
    pub(crate) start: Nanos,
    pub(crate) end: Nanos,
    pub(crate) link: Option<LinkType>,
    pub(crate) snaplen: u32,
    pub(crate) note: String,
    pub(crate) records: Vec<PacketRecord>,
    pub(crate) data: Vec<u8>,
    pub(crate) omitted: u32,
    pub(crate) cut_short: bool,
}

/// Where one packet of a snippet sits in its data buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PacketRecord {
    pub(crate) ts: Nanos,
    pub(crate) wire_len: u32,
    pub(crate) len: u32,
}

/// One packet of a [`Snippet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnippetPacket<'a> {
    /// Capture time.
    pub ts: Nanos,
    /// Length on the wire, in bytes (pcap `orig_len`).
    pub wire_len: u32,
    /// The captured bytes, at most the snap length.
    pub data: &'a [u8],
}

impl Snippet {
    pub(crate) fn new(
        alert_id: u128,
        key: IpAddress,
        alert_ts: Nanos,
        window: (Nanos, Nanos),
        snaplen: u32,
        note: &str,
    ) -> Snippet {
        Snippet {
            alert_id,
            key,
            alert_ts,
            start: window.0,
            end: window.1,
            link: None,
            snaplen,
            note: note.to_owned(),
            records: Vec::new(),
            data: Vec::new(),
            omitted: 0,
            cut_short: false,
        }
    }

    /// Appends a packet if it fits the snippet's link type and packet limit; counts it as
    /// omitted otherwise. `data` is already cut to the snap length.
    pub(crate) fn push(&mut self, link: LinkType, ts: Nanos, wire_len: u32, data: &[u8], max_packets: u32) {
        let link_ok = *self.link.get_or_insert(link) == link;
        if !link_ok || self.records.len() >= max_packets as usize {
            self.omitted = self.omitted.saturating_add(1);
            return;
        }
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.records.push(PacketRecord { ts, wire_len, len });
        self.data.extend_from_slice(data);
    }

    /// The alert's id.
    #[must_use]
    pub fn alert_id(&self) -> u128 {
        self.alert_id
    }

    /// The key (address) whose packets these are.
    #[must_use]
    pub fn key(&self) -> IpAddress {
        self.key
    }

    /// The alert's capture time; with the id it names the file
    /// ([`crate::snippet_path`]).
    #[must_use]
    pub fn alert_ts(&self) -> Nanos {
        self.alert_ts
    }

    /// The capture-time window the packets were taken from, both ends included.
    #[must_use]
    pub fn window(&self) -> (Nanos, Nanos) {
        (self.start, self.end)
    }

    /// The packets' link type; `None` when the snippet holds no packet.
    #[must_use]
    pub fn link(&self) -> Option<LinkType> {
        self.link
    }

    /// The snap length packets were cut to, in bytes.
    #[must_use]
    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    /// The text given with the alert (e.g. the rule's name), written into the file's comment.
    #[must_use]
    pub fn note(&self) -> &str {
        &self.note
    }

    /// Packets of the key in the window that the snippet does not hold: beyond
    /// `max_snippet_packets`, or of another link type than the first.
    #[must_use]
    pub fn omitted(&self) -> u32 {
        self.omitted
    }

    /// True when the snippet was closed before its window ended, because more alerts were
    /// open than `max_open` allows.
    #[must_use]
    pub fn cut_short(&self) -> bool {
        self.cut_short
    }

    /// Number of packets held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the snippet holds no packet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The packets in arrival order.
    pub fn packets(&self) -> impl Iterator<Item = SnippetPacket<'_>> + '_ {
        let mut at = 0usize;
        self.records.iter().map(move |r| {
            let end = at.saturating_add(r.len as usize);
            let data = self.data.get(at..end).unwrap_or_default();
            at = end;
            SnippetPacket { ts: r.ts, wire_len: r.wire_len, data }
        })
    }
}
