//! TLS: server contexts built at load, and the BoringSSL-on-monoio stream.

pub mod algorithms;
mod connector;
pub mod crl;
pub mod ocsp;
mod server;
pub mod sni;
pub mod stream;
pub mod tickets;
pub mod verify_cache;

pub use self::connector::{ClientSettings, UpstreamTls};
pub use self::server::{
    listener_context, server_context, server_context_with_crls, sni_context, verify_of,
    ContextError, Handshake, Part, ServerSettings,
};
pub use self::stream::{HandshakeError, TlsStream};
pub use self::tickets::{TicketKey, TicketKeys};
