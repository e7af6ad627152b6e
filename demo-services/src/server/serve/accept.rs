//! Where a serve loop's connections come from.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tower_jwt_service_auth::mtls::PeerIdentity;

/// A source of connections: a TCP listener, or a TLS acceptor on top of
/// one.
///
/// Accepting is split in two so that a slow or silent peer holds up only
/// itself: [`accept`](Accept::accept) runs in the serve loop and must be
/// quick and cancel-safe; [`handshake`](Accept::handshake) (a TLS
/// handshake, say) runs in the connection's own task and counts against its
/// header read timeout, and the connection can be shed while it runs.
pub trait Accept: Send + 'static {
    /// A connection as accepted.
    type Conn: Send + 'static;
    /// The stream HTTP is spoken on.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Waits for the next connection. Dropping the future must lose no
    /// connection (the loop drops it when shutdown begins).
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Conn, SocketAddr)>> + Send;

    /// Turns an accepted connection into the stream to serve, with what
    /// the handshake learned about the peer.
    fn handshake(
        &self,
        conn: Self::Conn,
    ) -> impl Future<Output = io::Result<(Self::Io, ConnectionInfo)>> + Send + 'static;
}

/// What a handshake learned about the peer of one connection: given to
/// every request the connection carries, as request extensions.
///
/// Plain TCP learns nothing (the default); a mutual TLS handshake learns
/// the client certificate's identity.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    peer_identity: Option<PeerIdentity>,
}

impl ConnectionInfo {
    /// A connection whose peer proved `identity` (a verified client
    /// certificate): each request carries it as a [`PeerIdentity`]
    /// extension.
    pub fn with_peer_identity(identity: PeerIdentity) -> ConnectionInfo {
        ConnectionInfo {
            peer_identity: Some(identity),
        }
    }

    /// The peer's proven identity, if the handshake established one.
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        self.peer_identity.as_ref()
    }

    /// Adds what is known about the connection to one request's
    /// extensions.
    pub(crate) fn extend(&self, extensions: &mut http::Extensions) {
        if let Some(identity) = &self.peer_identity {
            extensions.insert(identity.clone());
        }
    }
}

/// Plain TCP: no handshake.
impl Accept for TcpListener {
    type Conn = TcpStream;
    type Io = TcpStream;

    fn accept(&mut self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }

    fn handshake(
        &self,
        conn: TcpStream,
    ) -> impl Future<Output = io::Result<(TcpStream, ConnectionInfo)>> + Send + 'static {
        std::future::ready(Ok((conn, ConnectionInfo::default())))
    }
}

/// Whether an accept error concerns only the one connection (it was reset
/// before it was accepted), so accepting again at once is right.
pub(crate) fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
