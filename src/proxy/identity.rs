//! Authorize: what a connection's client certificate establishes, decided once per connection
//! right after the handshake. The verdict and the identity headers are computed here once and
//! reused by every request on the connection.

use std::net::SocketAddr;

use boring::ssl::SslRef;
use boring::x509::X509VerifyError;

use crate::config::{Listener, VerifyMode, XfccMode};
use crate::http::{xfcc, Page};
use crate::identity::{ClientCert, Refuse};

/// Why requests on a connection are refused. The client's side, always.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// `required` and no certificate: 400 "No required SSL certificate was sent".
    NoCert,
    /// A certificate that failed verification: 400 "The SSL certificate error".
    CertError(X509VerifyError),
    /// Rules exist and the client does not satisfy them: 403.
    Forbidden(Forbidden),
}

/// Why the rules refused a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    /// Rules exist and the client presented no certificate (an `optional` mode).
    NoCert,
    /// The certificate did not satisfy a rule family.
    Rule(Refuse),
}

impl Refusal {
    /// The page a refused request is answered with (400 for certificate problems, 403 for rules).
    pub fn page(&self) -> Page {
        match self {
            Self::NoCert => Page::NoCert,
            Self::CertError(_) => Page::CertError,
            Self::Forbidden(_) => Page::Forbidden,
        }
    }

    /// A short stable name for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NoCert => "client_no_certificate",
            Self::CertError(_) => "client_certificate_error",
            Self::Forbidden(_) => "client_forbidden",
        }
    }
}

/// The access log's reason.
impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoCert => f.write_str("no client certificate sent"),
            Self::CertError(e) => write!(
                f,
                "client certificate failed verification: {}",
                e.error_string()
            ),
            Self::Forbidden(Forbidden::NoCert) => {
                f.write_str("forbidden: no client certificate for the rules")
            }
            Self::Forbidden(Forbidden::Rule(r)) => write!(f, "forbidden: {r}"),
        }
    }
}

/// A connection's client identity and verdict.
pub struct Identity {
    /// `SUCCESS`, `NONE` or `FAILED:<reason>`, as nginx's `$ssl_client_verify`.
    pub verify: String,
    /// Subject DN for the log (`-` when none).
    pub subject: String,
    /// `None`: requests are forwarded.
    pub refusal: Option<Refusal>,
    /// What admitted the client, for the log.
    pub admitted_by: String,
    /// Headers sent upstream with every request: identity then forwarding, names as configured.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The client certificate's facts, when one was presented.
    pub cert: Option<ClientCert>,
    /// The certificate verified against the listener's CA.
    pub verified: bool,
    /// This hop's `X-Forwarded-Client-Cert` element, for a verified certificate when
    /// `headers.xfcc` is not `off`.
    pub xfcc: Option<String>,
}

impl Identity {
    /// Judges the peer of a finished handshake (`ssl` is None on a plain listener).
    pub fn establish(listener: &Listener, ssl: Option<&SslRef>, peer: SocketAddr) -> Identity {
        let auth = &listener.client_auth;
        let cert = match (auth.mode, ssl) {
            (VerifyMode::Off, _) | (_, None) => None,
            (_, Some(ssl)) => ssl.peer_certificate(),
        };
        // None: no certificate.
        let verified = match (&cert, ssl) {
            (Some(_), Some(ssl)) => Some(ssl.verify_result()),
            _ => None,
        };
        let facts = cert.as_deref().map(ClientCert::from_x509);
        let mut id = Self::judge(listener, facts, verified, ssl.is_some(), peer);
        if listener.headers.xfcc != XfccMode::Off && id.verified {
            if let (Some(c), Some(ssl)) = (&id.cert, ssl) {
                // `By`: the URI SANs of the certificate this handshake served (its context's:
                // the SSL object's own copy is shed after the handshake).
                let by: Vec<String> = ssl
                    .ssl_context()
                    .certificate()
                    .and_then(|own| own.subject_alt_names())
                    .map(|names| {
                        names
                            .iter()
                            .filter_map(|n| n.uri().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let element = xfcc::element(&by, c.fingerprint(), c.subject_rfc2253(), c.sans());
                if listener.headers.xfcc == XfccMode::SanitizeSet {
                    id.headers
                        .push((xfcc::HEADER.to_owned(), element.clone().into_bytes()));
                }
                id.xfcc = Some(element);
            }
        }
        id
    }

    /// The verdict and headers for a client certificate (`facts`) whose verification gave
    /// `verified` (None: no certificate), on a TLS listener when `tls`. `certgate explain` calls
    /// this with a certificate read from a file.
    pub fn judge(
        listener: &Listener,
        facts: Option<ClientCert>,
        verified: Option<Result<(), X509VerifyError>>,
        tls: bool,
        peer: SocketAddr,
    ) -> Identity {
        let auth = &listener.client_auth;
        let facts = if auth.mode == VerifyMode::Off || !tls {
            None
        } else {
            facts
        };
        let verified = facts.as_ref().and(verified);
        let verify = match (&facts, verified) {
            (Some(_), Some(Ok(()))) => "SUCCESS".to_owned(),
            (Some(_), Some(Err(e))) => format!("FAILED:{}", e.error_string()),
            _ => "NONE".to_owned(),
        };
        let verified_ok = facts.is_some() && matches!(verified, Some(Ok(())));

        let refusal = match (auth.mode, &facts, verified) {
            (VerifyMode::Required, None, _) => Some(Refusal::NoCert),
            (VerifyMode::Required | VerifyMode::Optional, Some(_), Some(Err(e))) => {
                Some(Refusal::CertError(e))
            }
            _ => None,
        };
        let mut admitted_by = String::from("-");
        let refusal = refusal.or_else(|| {
            if auth.rules.is_empty() {
                return None;
            }
            let Some(facts) = &facts else {
                return Some(Refusal::Forbidden(Forbidden::NoCert));
            };
            match auth.rules.check(facts, verified_ok) {
                Ok(admit) => {
                    admitted_by = admit.to_string();
                    None
                }
                Err(refuse) => Some(Refusal::Forbidden(Forbidden::Rule(refuse))),
            }
        });

        let mut headers = Vec::with_capacity(12);
        let names = &listener.headers;
        let mut add = |name: &Option<String>, value: &[u8]| {
            if let Some(name) = name {
                headers.push((name.clone(), value.to_vec()));
            }
        };
        add(&names.verify, verify.as_bytes());
        if let Some(c) = &facts {
            add(&names.subject_dn, c.subject_rfc2253().as_bytes());
            add(&names.subject_dn_legacy, c.subject_legacy().as_bytes());
            add(&names.issuer_dn, c.issuer_rfc2253().as_bytes());
            add(&names.serial, c.serial().as_bytes());
            add(&names.fingerprint, c.fingerprint().as_bytes());
            let san = c.san_header();
            if !san.is_empty() {
                add(&names.san, san.as_bytes());
            }
            add(&names.not_after, c.not_after().as_bytes());
            if names.cert.is_some() {
                add(&names.cert, c.escaped_pem().as_bytes());
            }
        }
        let ip = peer.ip().to_canonical().to_string();
        add(&names.forwarded_for, ip.as_bytes());
        let proto: &[u8] = if tls { b"https" } else { b"http" };
        add(&names.forwarded_proto, proto);
        add(&names.real_ip, ip.as_bytes());

        Identity {
            verify,
            subject: facts
                .as_ref()
                .map_or_else(|| "-".to_owned(), |c| c.subject_rfc2253().to_owned()),
            refusal,
            admitted_by,
            headers,
            verified: verified_ok,
            cert: facts,
            xfcc: None,
        }
    }
}
