//! TLS: server contexts built at load, and the BoringSSL-on-monoio stream.

pub mod algorithms;
mod connector;
pub mod crl;
mod server;
pub mod stream;
pub mod tickets;
pub mod verify_cache;

pub use self::connector::{ClientSettings, UpstreamTls};
pub use self::server::{
    listener_context, server_context, server_context_with_crls, ContextError, Handshake, Part,
    ServerSettings,
};
pub use self::stream::{HandshakeError, TlsStream};
pub use self::tickets::{TicketKey, TicketKeys};
