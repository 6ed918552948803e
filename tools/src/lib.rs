//! certgate's tools, kept out of the proxy's library so that its dependency tree is only what
//! the proxy runs (rcgen, tempfile, hdrhistogram and serde_json are here, not there).
//!
//! - [`load`]: the `certgate-load` mTLS load generator (binary `certgate-load`).
//! - [`demo`]: what `certgate demo` runs (binary `certgate-demo`, which `certgate demo` execs).
//! - [`pki`]: a throw-away certificate hierarchy for the demo, the tests and the benchmarks.
//! - [`echo`]: a real HTTP/1.1 upstream that answers with what it received.
//! - [`echo_h2`]: the same for HTTP/2 (h2c), the witness of `protocol = "h2"` upstreams.
//! - [`hpack`]: literal HPACK fields, for certgate-load's requests and the tests' raw frames.
//! - [`memory`]: two BoringSSL peers over in-memory pipes, for handshake benchmarks.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod demo;
pub mod echo;
pub mod echo_h2;
pub mod hpack;
pub mod load;
pub mod memory;
pub mod pki;
