//! An encoder joined to a sink: [`FlowExporter`], with [`IpfixExporter`] and
//! [`NetflowV9Exporter`] as its two forms, and the counters they keep.

use std::io;
use std::net::SocketAddr;

use outpost_decode::Nanos;
use outpost_flowmeter::FlowRecord;

use crate::ipfix::{IpfixEncoder, IpfixOptions};
use crate::message::Message;
use crate::netflow_v9::{NetflowV9Encoder, NetflowV9Options};
use crate::sink::{MessageSink, UdpSink};

/// An encoder of flow records into messages.
pub trait FlowEncoder {
    /// Adds a record; full messages go to `emit`.
    fn encode(&mut self, record: &FlowRecord, emit: &mut impl FnMut(Message<'_>));
    /// Finishes the message being built, if any.
    fn flush(&mut self, emit: &mut impl FnMut(Message<'_>));
    /// Moves the export clock forward (event time).
    fn advance(&mut self, now: Nanos);
}

/// Counters of an exporter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Flow records given to `export`.
    pub flows: u64,
    /// Messages (datagrams) sent.
    pub messages: u64,
    /// Data records in the messages sent (two per flow for uniflow pairs).
    pub records: u64,
    /// Template records in the messages sent.
    pub templates: u64,
    /// Bytes sent: IPFIX / NetFlow payload, without UDP/IP headers.
    pub bytes: u64,
    /// Messages the sink refused (each one lost with its records).
    pub send_errors: u64,
    /// Data records in messages the sink refused.
    pub records_lost: u64,
}

/// An encoder and a sink. Messages are sent as they fill up; call [`FlowExporter::flush`] at
/// batch boundaries so the last records do not wait for the next ones.
#[derive(Debug)]
pub struct FlowExporter<E, S> {
    encoder: E,
    sink: S,
    stats: ExportStats,
}

/// IPFIX over a sink (UDP by default).
pub type IpfixExporter<S = UdpSink> = FlowExporter<IpfixEncoder, S>;
/// NetFlow v9 over a sink (UDP by default).
pub type NetflowV9Exporter<S = UdpSink> = FlowExporter<NetflowV9Encoder, S>;

impl FlowExporter<IpfixEncoder, UdpSink> {
    /// An IPFIX exporter sending UDP datagrams to `collector`.
    ///
    /// # Errors
    /// Invalid options (`InvalidInput`) or the socket could not be set up.
    pub fn connect(collector: SocketAddr, options: IpfixOptions) -> io::Result<Self> {
        let encoder = IpfixEncoder::new(options)?;
        Ok(FlowExporter::new(encoder, UdpSink::connect(collector)?))
    }
}

impl FlowExporter<NetflowV9Encoder, UdpSink> {
    /// A NetFlow v9 exporter sending UDP datagrams to `collector`.
    ///
    /// # Errors
    /// Invalid options (`InvalidInput`) or the socket could not be set up.
    pub fn connect(collector: SocketAddr, options: NetflowV9Options) -> io::Result<Self> {
        let encoder = NetflowV9Encoder::new(options)?;
        Ok(FlowExporter::new(encoder, UdpSink::connect(collector)?))
    }
}

impl<E: FlowEncoder, S: MessageSink> FlowExporter<E, S> {
    /// Joins an encoder and a sink.
    pub fn new(encoder: E, sink: S) -> FlowExporter<E, S> {
        FlowExporter { encoder, sink, stats: ExportStats::default() }
    }

    /// Exports one flow record: it goes into the current message, which is sent first when
    /// the record does not fit any more.
    ///
    /// # Errors
    /// The sink failed to send the message that filled up; the message is lost and counted,
    /// the record is kept for the next message.
    pub fn export(&mut self, record: &FlowRecord) -> io::Result<()> {
        self.stats.flows += 1;
        let (sink, stats) = (&mut self.sink, &mut self.stats);
        let mut result = Ok(());
        self.encoder.encode(record, &mut |m| send(sink, stats, m, &mut result));
        result
    }

    /// Sends the message being built, if any.
    ///
    /// # Errors
    /// The sink failed; the message is lost and counted.
    pub fn flush(&mut self) -> io::Result<()> {
        let (sink, stats) = (&mut self.sink, &mut self.stats);
        let mut result = Ok(());
        self.encoder.flush(&mut |m| send(sink, stats, m, &mut result));
        result
    }

    /// Moves the export clock forward to `now` (event time).
    pub fn advance(&mut self, now: Nanos) {
        self.encoder.advance(now);
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> ExportStats {
        self.stats
    }

    /// The encoder.
    #[must_use]
    pub fn encoder(&self) -> &E {
        &self.encoder
    }

    /// The sink.
    #[must_use]
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Returns the sink (without flushing).
    #[must_use]
    pub fn into_sink(self) -> S {
        self.sink
    }
}

fn send(sink: &mut impl MessageSink, stats: &mut ExportStats, m: Message<'_>, result: &mut io::Result<()>) {
    match sink.send_message(m.bytes) {
        Ok(()) => {
            stats.messages += 1;
            stats.records += u64::from(m.data_records);
            stats.templates += u64::from(m.template_records);
            stats.bytes += m.bytes.len() as u64;
        }
        Err(e) => {
            stats.send_errors += 1;
            stats.records_lost += u64::from(m.data_records);
            if result.is_ok() {
                *result = Err(e);
            }
        }
    }
}
