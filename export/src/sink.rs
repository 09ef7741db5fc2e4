//! Where finished messages go: [`MessageSink`], implemented by [`UdpSink`] (one datagram per
//! message) and by `Vec<Vec<u8>>` (collects messages, for tests and files).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// Takes finished messages, one at a time.
pub trait MessageSink {
    /// Sends or stores one message.
    ///
    /// # Errors
    /// Whatever the transport reports; the message is then lost (UDP semantics).
    fn send_message(&mut self, message: &[u8]) -> io::Result<()>;
}

/// Sends each message as one UDP datagram to a collector.
#[derive(Debug)]
pub struct UdpSink {
    socket: UdpSocket,
    collector: SocketAddr,
}

impl UdpSink {
    /// A socket bound to an ephemeral port of the collector's address family and connected
    /// to `collector` (so ICMP errors surface as send errors).
    ///
    /// # Errors
    /// Binding or connecting the socket failed.
    pub fn connect(collector: SocketAddr) -> io::Result<UdpSink> {
        let local: SocketAddr = match collector {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local)?;
        UdpSink::from_socket(socket, collector)
    }

    /// Uses an already bound socket (to choose the source address or port).
    ///
    /// # Errors
    /// Connecting the socket failed.
    pub fn from_socket(socket: UdpSocket, collector: SocketAddr) -> io::Result<UdpSink> {
        socket.connect(collector)?;
        Ok(UdpSink { socket, collector })
    }

    /// The collector's address.
    #[must_use]
    pub fn collector(&self) -> SocketAddr {
        self.collector
    }

    /// The local address datagrams are sent from.
    ///
    /// # Errors
    /// The socket has no local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

impl MessageSink for UdpSink {
    fn send_message(&mut self, message: &[u8]) -> io::Result<()> {
        let n = self.socket.send(message)?;
        if n != message.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "datagram truncated"));
        }
        Ok(())
    }
}

/// Collects every message.
impl MessageSink for Vec<Vec<u8>> {
    fn send_message(&mut self, message: &[u8]) -> io::Result<()> {
        self.push(message.to_vec());
        Ok(())
    }
}

impl<S: MessageSink + ?Sized> MessageSink for &mut S {
    fn send_message(&mut self, message: &[u8]) -> io::Result<()> {
        (**self).send_message(message)
    }
}
