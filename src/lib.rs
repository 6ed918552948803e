//! certgate: a mutual-TLS edge proxy.
//!
//! The request path reads top-down through the modules: `config` (what was validated at load),
//! `runtime` (pinned workers, one monoio runtime and SO_REUSEPORT listener each), `tls` (BoringSSL
//! driven over monoio owned-buffer I/O), `identity` (client-certificate facts and compiled rules),
//! `http` (request heads, bodies, error pages), `proxy` (one connection's life) and `upstream`
//! (per-worker pools of idle connections).
//!
//! The tools (the `certgate-load` generator, what `certgate demo` runs, the test PKI, the echo
//! upstream and the in-memory TLS pipe for benchmarks) live in the `certgate-tools` package
//! (`tools/`), so that this library's dependencies are only what the proxy runs.

#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod admin;
pub mod clock;
pub mod config;
pub mod conn;
pub mod control;
pub mod http;
pub mod http2;
pub mod identity;
pub mod io;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod runtime;
pub mod tls;
pub mod upstream;

// The unit tests' certificates come from the tools' PKI generator (a dev-dependency), under the
// name they had when it lived here.
#[cfg(test)]
use certgate_tools::pki;
