//! HTTP/2: the `h2` crate over certgate's connections. `server` runs a client connection and its
//! streams, `request` validates each request, `to_h1` forwards a stream to an HTTP/1.1 upstream,
//! `to_h2` to an HTTP/2 one, `grpc` shapes refusals for gRPC clients.

pub mod grpc;
pub mod io;
pub mod request;
pub mod server;
pub mod to_h1;
pub mod to_h2;

/// The HTTP/2 connection preface a prior-knowledge client sends first (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
