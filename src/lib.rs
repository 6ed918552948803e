//! certgate: a mutual-TLS edge proxy.
//!
//! The request path reads top-down through the modules: `config` (what was validated at load),
//! `runtime` (pinned workers, one monoio runtime and SO_REUSEPORT listener each), `tls` (BoringSSL
//! driven over monoio owned-buffer I/O), `identity` (client-certificate facts and compiled rules),
//! `http` (request heads, bodies, error pages), `proxy` (one connection's life) and `upstream`
//! (per-worker pools of idle connections).

pub mod config;
pub mod conn;
pub mod demo;
pub mod echo;
pub mod http;
pub mod identity;
pub mod io;
pub mod load;
pub mod logging;
pub mod pki;
pub mod proxy;
pub mod runtime;
pub mod tls;
pub mod upstream;
