//! `certgate::proxy`, the pure part only.

#[path = "../../../src/proxy/proxy_protocol.rs"]
pub mod proxy_protocol;
