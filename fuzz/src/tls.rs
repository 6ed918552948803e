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
    pub crls: Option<&'a crl::CrlSettings>,
    pub ciphers: Option<&'a str>,
    pub groups: Option<&'a str>,
}

#[derive(Debug)]
pub struct UpstreamTls {
    pub server_name: Option<String>,
    pub verify: bool,
}

impl UpstreamTls {
    pub fn crls(&self) -> Option<&Arc<crl::CrlSet>> {
        None
    }

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
    Crl(usize),
    MoreCertificate(usize),
    MoreKey(usize),
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Handshake<'a> {
    pub more_identities: &'a [(&'a [u8], &'a [u8])],
    pub ciphers: Option<&'a str>,
    pub groups: Option<&'a str>,
    pub verify_algorithms: Option<&'a [u16]>,
    pub ocsp: Option<&'a Arc<ocsp::Stapler>>,
}

/// `certgate::tls::ocsp`: no response is read here.
pub mod ocsp {
    use std::path::Path;
    use std::sync::Arc;

    use boring::ssl::SslContextRef;

    #[derive(Debug)]
    pub struct Stapler(());

    impl Stapler {
        pub fn load(_: &Path, _: &[u8]) -> Result<Stapler, String> {
            Err(super::NOT_BUILT.into())
        }

        pub fn refused(&self) -> Option<String> {
            None
        }

        pub fn describe(&self) -> String {
            String::new()
        }
    }

    pub fn of(_: &SslContextRef) -> Option<&Arc<Stapler>> {
        None
    }
}

/// `certgate::tls::sni`: the name table is certgate's own; no context is switched here.
pub mod sni {
    use std::sync::Arc;

    use boring::ssl::SslContext;

    pub use crate::sni_names::{Name, Names};

    pub struct Verify(pub(super) ());

    pub struct Policy {
        pub ctx: SslContext,
        pub verify: Verify,
        pub crls: Option<Arc<super::crl::CrlSet>>,
    }

    pub struct Router {
        pub names: Arc<Names>,
        pub blocks: Vec<Policy>,
        pub reject: Option<SslContext>,
    }

    impl Router {
        pub fn rejecting() -> Result<SslContext, boring::error::ErrorStack> {
            Err(boring::error::ErrorStack::shim())
        }
    }
}

pub fn verify_of(_: &ServerSettings<'_>, _: Option<crl::StaleCrl>) -> sni::Verify {
    sni::Verify(())
}

pub fn sni_context(
    _: &ServerSettings<'_>,
    _: &Handshake<'_>,
    _: Option<&crl::CrlSettings>,
    _: &'static [u8],
    _: Option<sni::Router>,
) -> Result<(SslContext, Option<Arc<crl::CrlSet>>), ContextError> {
    Err(ContextError {
        part: Part::Certificate,
        reason: NOT_BUILT.into(),
    })
}

pub fn listener_context(
    _: &ServerSettings<'_>,
    _: &Handshake<'_>,
    _: Option<&crl::CrlSettings>,
    _: &'static [u8],
) -> Result<(SslContext, Option<Arc<crl::CrlSet>>), ContextError> {
    Err(ContextError {
        part: Part::Certificate,
        reason: NOT_BUILT.into(),
    })
}

/// `certgate::tls::algorithms`: names are not checked against BoringSSL here.
pub mod algorithms {
    pub const TLS13_SUITES: [&str; 3] = [
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
    ];

    pub struct Ciphers {
        pub tls12: String,
        pub tls13_ignored: Vec<String>,
        pub exclusions_ignored: Vec<String>,
    }

    pub fn ciphers(list: &str) -> Result<Ciphers, String> {
        Ok(Ciphers {
            tls12: list.to_owned(),
            tls13_ignored: Vec::new(),
            exclusions_ignored: Vec::new(),
        })
    }

    pub fn groups(entries: &[&str]) -> Result<String, (usize, String)> {
        Ok(entries.join(":"))
    }

    pub fn signature_scheme(_: &str) -> Result<u16, String> {
        Ok(0x0403)
    }

    pub fn is_sha1(code: u16) -> bool {
        code & 0xff00 == 0x0200
    }
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

pub fn server_context_with_crls(
    _: &ServerSettings<'_>,
    _: Option<&crl::CrlSettings>,
) -> Result<(SslContext, Option<Arc<crl::CrlSet>>), ContextError> {
    Err(ContextError {
        part: Part::Certificate,
        reason: NOT_BUILT.into(),
    })
}

/// `certgate::tls::crl`: the settings the loader builds; a set is never loaded here.
pub mod crl {
    use std::path::PathBuf;
    use std::time::Duration;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum CrlCheck {
        #[default]
        Leaf,
        Chain,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum StaleCrl {
        #[default]
        Refuse,
        Warn,
    }

    #[derive(Debug, Clone)]
    pub struct CrlSettings {
        pub files: Vec<PathBuf>,
        pub check: CrlCheck,
        pub stale: StaleCrl,
        pub refresh: Duration,
    }

    enum Never {}

    /// No value of it can exist in the fuzz build.
    pub struct CrlSet(Never);

    impl std::fmt::Debug for CrlSet {
        fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self.0 {}
        }
    }

    impl CrlSet {
        pub fn describe(&self) -> Vec<String> {
            match self.0 {}
        }
        pub fn check(&self) -> CrlCheck {
            match self.0 {}
        }
        pub fn cas_without_crl(&self) -> Vec<String> {
            match self.0 {}
        }
    }
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
