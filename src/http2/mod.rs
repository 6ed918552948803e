//! HTTP/2: the `h2` crate over certgate's connections.

pub mod io;
pub mod to_h2;
