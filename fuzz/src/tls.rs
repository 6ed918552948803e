//! Stands in for `certgate::tls` in the fuzz build: the names `config` uses, with no BoringSSL.
//! Building a TLS context needs BoringSSL, so here it always fails with a reason that says so;
//! the fuzz targets never get that far (they read no files). Keep the signatures in step with
//! `src/tls/`.

use std::sync::Arc;
use std::time::Duration;

use boring::ssl::SslContext;

use crate::config::{Reject, VerifyMode};

const NOT_BUILT: &str = "TLS contexts are not built in the fuzz build";

pub struct ClientSettings<'a> {
    pub ca_pem: Option<&'a [u8]>,
    pub cert_pem: Option<&'a [u8]>,
    pub key_pem: Option<&'a [u8]>,
    pub verify: bool,
}

#[derive(Debug)]
pub struct UpstreamTls {
    pub server_name: Option<String>,
    pub verify: bool,
}

impl UpstreamTls {
    pub fn new(
        _: &ClientSettings<'_>,
        _: Option<String>,
        _: bool,
    ) -> Result<UpstreamTls, ContextError> {
        Err(ContextError {
            part: Part::Certificate,
            reason: NOT_BUILT.into(),
        })
    }
}

pub struct ServerSettings<'a> {
    pub cert_pem: &'a [u8],
    pub key_pem: &'a [u8],
    pub ca_pem: Option<&'a [u8]>,
    pub mode: VerifyMode,
    pub reject: Reject,
    pub verify_depth: u32,
    pub min_tls13: bool,
    pub policy_tag: &'a [u8],
    pub tickets: Option<&'a Arc<TicketKeys>>,
    pub session_cache_size: u32,
    pub session_timeout: Duration,
    pub verify_cache: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Certificate,
    PrivateKey,
    Ca,
}

#[derive(Debug)]
pub struct ContextError {
    pub part: Part,
    pub reason: String,
}

pub fn server_context(_: &ServerSettings<'_>) -> Result<SslContext, ContextError> {
    Err(ContextError {
        part: Part::Certificate,
        reason: NOT_BUILT.into(),
    })
}

pub struct TicketKey(());

impl TicketKey {
    /// The length check of the real parser (48 or 80 bytes).
    pub fn from_nginx_bytes(buf: &[u8]) -> Result<Self, String> {
        match buf.len() {
            48 | 80 => Ok(TicketKey(())),
            n => Err(format!("a ticket key file holds 48 or 80 bytes, not {n}")),
        }
    }
}

pub struct TicketKeys(());

impl TicketKeys {
    pub fn rotating(_: Duration) -> Arc<Self> {
        Arc::new(TicketKeys(()))
    }

    pub fn fixed(_: Vec<TicketKey>) -> Arc<Self> {
        Arc::new(TicketKeys(()))
    }
}
