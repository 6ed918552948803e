//! certgate's pure modules, compiled without BoringSSL, and the checks the fuzz targets run.
//!
//! The module tree mirrors certgate's (`crate::http`, `crate::identity`, `crate::config`, ...)
//! so the real source files compile unchanged through `#[path]`: what is fuzzed is exactly what
//! ships. `boring` and `boring_sys` resolve to `boring-shim`; `tls` and `upstream::health` are
//! small stand-ins for the parts that need BoringSSL or the runtime.

extern crate boring_shim as boring;
extern crate boring_shim as boring_sys;

// Code past a built TLS context is statically dead here (the shim's context is uninhabited).
#[allow(dead_code, unused_imports, unused_variables, unreachable_code)]
#[path = "../../src/config/mod.rs"]
pub mod config;
#[allow(dead_code, unused_imports)]
#[path = "../../src/http/mod.rs"]
pub mod http;
// The certificate-reading code is statically dead here (boring-shim types are empty).
#[allow(
    dead_code,
    unused_imports,
    unused_variables,
    unreachable_code,
    irrefutable_let_patterns
)]
#[path = "../../src/identity/mod.rs"]
pub mod identity;
#[allow(dead_code)]
#[path = "../../src/logging.rs"]
pub mod logging;
#[allow(dead_code)]
pub mod proxy;
#[allow(dead_code)]
pub mod tls;
/// `certgate::tls::sni`'s name table, re-exported by the `tls` stand-in.
#[path = "../../src/tls/sni/names.rs"]
pub mod sni_names;
pub mod upstream;

pub mod check;
