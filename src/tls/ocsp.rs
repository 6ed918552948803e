//! OCSP stapling from a file (`[listener.tls] ocsp_response`, nginx `ssl_stapling_file`).
//!
//! certgate never asks a responder itself: an operator's job (`openssl ocsp` from cron) writes
//! the DER response into the file, and certgate staples it to handshakes whose client asked
//! (`status_request`). A response is checked before it is stapled: status successful, a
//! SingleResponse whose CertID names our leaf (issuer name and key hashes, serial), thisUpdate
//! not in the future and nextUpdate not passed, and a signature by the issuer or by a responder
//! certificate the issuer signed for OCSP signing. BoringSSL has no OCSP parser any more, so the
//! few fields needed are read by the small DER reader below; signatures go through BoringSSL.
//!
//! The staple in force lives in an [`ArcSwapOption`]: BoringSSL's status callback copies it into
//! each connection (`SSL_set_ocsp_response` on the connection's own credential), so a new
//! response takes effect without rebuilding the context. A background thread polls the file
//! (as the CRL refresher does); a replacement that cannot be used leaves the previous staple in
//! force until its nextUpdate, with a warning once per change of the file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use boring::ex_data::Index;
use boring::hash::{hash, MessageDigest};
use boring::pkey::{Id, PKey, Public};
use boring::sign::Verifier;
use boring::ssl::{SslContext, SslContextBuilder, SslContextRef};
use boring::x509::X509;
use foreign_types::ForeignTypeRef;
use tracing::{info, warn};

use super::crl::{stamp, Stamp};

/// How often the response file is checked for a change.
pub const POLL_INTERVAL: Duration = Duration::from_secs(3);

/// How far in the future a thisUpdate may be (the responder's clock ahead of ours).
const MAX_SKEW: i64 = 300;

/// What the responder says of the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    /// Not revoked.
    Good,
    /// Revoked at this POSIX time.
    Revoked(i64),
    /// The responder does not know the certificate.
    Unknown,
}

/// Who signed a response that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// The leaf's issuer itself.
    Issuer,
    /// A delegated responder certificate (its subject) signed by the issuer for OCSP signing.
    Delegated(String),
}

/// A response checked against our certificate: what is stapled.
#[derive(Debug)]
pub struct Staple {
    der: Vec<u8>,
    /// The certificate's status.
    pub status: CertStatus,
    /// thisUpdate, POSIX seconds.
    pub this_update: i64,
    /// nextUpdate, POSIX seconds: the staple is not sent from then on.
    pub next_update: i64,
    /// Who signed it.
    pub signer: Signer,
}

impl Staple {
    /// Whether it may be stapled at `now`.
    pub fn is_fresh(&self, now: i64) -> bool {
        self.this_update <= now + MAX_SKEW && now < self.next_update
    }

    /// One line for `check` and the log.
    pub fn describe(&self) -> String {
        let status = match self.status {
            CertStatus::Good => "good".to_string(),
            CertStatus::Revoked(at) => format!("REVOKED (since {})", show_time(at)),
            CertStatus::Unknown => "unknown to the responder".to_string(),
        };
        let by = match &self.signer {
            Signer::Issuer => "the issuer".to_string(),
            Signer::Delegated(s) => format!("responder \"{s}\""),
        };
        format!(
            "status {status}, thisUpdate {}, nextUpdate {}, signed by {by}",
            show_time(self.this_update),
            show_time(self.next_update)
        )
    }
}

/// A listener's staple: the file, the certificate it must be about, and the response in force.
pub struct Stapler {
    path: PathBuf,
    leaf: X509,
    issuer: X509,
    current: ArcSwapOption<Staple>,
    state: Mutex<PollState>,
}

impl std::fmt::Debug for Stapler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stapler")
            .field("path", &self.path)
            .field("current", &self.current.load_full())
            .finish()
    }
}

struct PollState {
    stamp: Option<Stamp>,
    /// Why the file as last read is not stapled (None: it is).
    refused: Option<String>,
    /// The staple in force was reported expired.
    expiry_logged: bool,
}

impl Stapler {
    /// Reads `path` for the leaf of `chain_pem` (leaf first, its issuer next). `Err`: the
    /// certificates or the file cannot be read (a configuration error). A response that is read
    /// but cannot be stapled is not an error: [`Stapler::refused`] says why.
    pub fn load(path: &Path, chain_pem: &[u8]) -> Result<Stapler, String> {
        let (leaf, issuer) = leaf_and_issuer(chain_pem)?;
        let stamp = stamp(path);
        let der = std::fs::read(path).map_err(|e| {
            format!(
                "cannot read {}: {e} (write the DER response there, e.g. with openssl ocsp \
                 -respout)",
                path.display()
            )
        })?;
        let (staple, refused) = match check(&der, &leaf, &issuer, now()) {
            Ok(s) => (Some(Arc::new(s)), None),
            Err(reason) => (None, Some(reason)),
        };
        Ok(Stapler {
            path: path.to_path_buf(),
            leaf,
            issuer,
            current: ArcSwapOption::new(staple),
            state: Mutex::new(PollState {
                stamp,
                refused,
                expiry_logged: false,
            }),
        })
    }

    /// The file, as configured (resolved).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The staple in force (None: nothing is stapled).
    pub fn current(&self) -> Option<Arc<Staple>> {
        self.current.load_full().filter(|s| s.is_fresh(now()))
    }

    /// Why the file as last read is not stapled.
    pub fn refused(&self) -> Option<String> {
        self.lock().refused.clone()
    }

    /// One line for `check`: what is stapled, or why nothing is.
    pub fn describe(&self) -> String {
        let file = self.path.display();
        match (self.current(), self.refused()) {
            (Some(s), None) => format!("ocsp_response {file}: stapled, {}", s.describe()),
            (Some(s), Some(r)) => format!(
                "ocsp_response {file}: NOT stapled: {r}; the previous response stays stapled \
                 ({})",
                s.describe()
            ),
            (None, Some(r)) => format!("ocsp_response {file}: NOT stapled: {r}"),
            (None, None) => {
                format!("ocsp_response {file}: NOT stapled: the response expired; renew the file")
            }
        }
    }

    /// Re-reads the file if it changed, and reports once a staple that expired. Runs on the
    /// poll thread.
    pub fn refresh(&self) {
        let now = now();
        let mut state = self.lock();
        let stamp = stamp(&self.path);
        if stamp != state.stamp {
            state.stamp = stamp;
            let outcome = std::fs::read(&self.path)
                .map_err(|e| format!("cannot read {}: {e}", self.path.display()))
                .and_then(|der| check(&der, &self.leaf, &self.issuer, now));
            match outcome {
                Ok(staple) => {
                    info!(
                        "ocsp_response {}: stapling the new response: {}",
                        self.path.display(),
                        staple.describe()
                    );
                    self.current.store(Some(Arc::new(staple)));
                    state.refused = None;
                    state.expiry_logged = false;
                }
                Err(reason) => {
                    let kept = match self.current.load_full() {
                        Some(s) if s.is_fresh(now) => {
                            format!("the previous response stays stapled ({})", s.describe())
                        }
                        _ => "nothing is stapled".to_string(),
                    };
                    warn!(
                        "ocsp_response {}: the new response is NOT stapled: {reason}; {kept}",
                        self.path.display()
                    );
                    state.refused = Some(reason);
                }
            }
        }
        if let Some(s) = self.current.load_full() {
            if !s.is_fresh(now) && !state.expiry_logged {
                state.expiry_logged = true;
                warn!(
                    "ocsp_response {}: the stapled response expired (nextUpdate {}): it is no \
                     longer stapled; write a new response into the file",
                    self.path.display(),
                    show_time(s.next_update)
                );
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PollState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Staples `stapler`'s response to the handshakes of a context whose client asks for one; the
/// context keeps the stapler, for [`of`].
pub fn install(
    b: &mut SslContextBuilder,
    stapler: Arc<Stapler>,
) -> Result<(), boring::error::ErrorStack> {
    b.set_ex_data(index()?, stapler.clone());
    b.set_status_callback(move |ssl| {
        let current = stapler.current.load();
        match current.as_deref() {
            Some(s) if s.is_fresh(now()) => Ok(ssl.set_ocsp_status(&s.der).is_ok()),
            _ => Ok(false),
        }
    })
}

/// The stapler of a context that staples (see [`install`]): for the poll thread, `check` and
/// metrics.
pub fn of(ctx: &SslContextRef) -> Option<&Arc<Stapler>> {
    ctx.ex_data(index().ok()?)
}

/// The context ex_data slot holding a stapler.
fn index() -> Result<Index<SslContext, Arc<Stapler>>, boring::error::ErrorStack> {
    static INDEX: std::sync::OnceLock<Option<Index<SslContext, Arc<Stapler>>>> =
        std::sync::OnceLock::new();
    INDEX
        .get_or_init(|| SslContext::new_ex_index().ok())
        .ok_or_else(boring::error::ErrorStack::get)
}

/// The leaf of a PEM chain and its issuer: the next certificate, or the leaf if self-signed.
fn leaf_and_issuer(chain_pem: &[u8]) -> Result<(X509, X509), String> {
    let chain =
        X509::stack_from_pem(chain_pem).map_err(|e| format!("tls.certificate is not PEM: {e}"))?;
    let mut it = chain.into_iter();
    let leaf = it
        .next()
        .ok_or_else(|| "tls.certificate holds no certificate".to_string())?;
    let same = |a: &X509, b: &X509| {
        // SAFETY: both names belong to live certificates.
        unsafe {
            boring_sys::X509_NAME_cmp(a.issuer_name().as_ptr(), b.subject_name().as_ptr()) == 0
        }
    };
    match it.next() {
        Some(issuer) if same(&leaf, &issuer) => Ok((leaf, issuer)),
        _ if same(&leaf, &leaf) => Ok((leaf.clone(), leaf)),
        _ => Err(
            "checking a response needs the issuer of the certificate, and tls.certificate \
             holds no issuer after the leaf: append the intermediate that signed it"
                .into(),
        ),
    }
}

/// Checks a DER OCSPResponse against `leaf` and its `issuer` at `now`.
pub fn check(der: &[u8], leaf: &X509, issuer: &X509, now: i64) -> Result<Staple, String> {
    let r = parse(der)?;
    let leaf_der = leaf.to_der().map_err(|e| e.to_string())?;
    let issuer_der = issuer.to_der().map_err(|e| e.to_string())?;
    let leaf_cert = CertFields::parse(&leaf_der)?;
    let issuer_cert = CertFields::parse(&issuer_der)?;
    let single = r
        .responses
        .iter()
        .find(|s| s.id.names(&leaf_cert, &issuer_cert))
        .ok_or_else(|| {
            format!(
                "the response is for another certificate (none of its {} CertID(s) names our \
                 leaf, serial {}, issued by \"{}\")",
                r.responses.len(),
                hex(strip_zeros(leaf_cert.serial)),
                crate::identity::Dn::from_x509_name(leaf.issuer_name()).to_rfc2253()
            )
        })?;
    let next_update = single.next_update.ok_or_else(|| {
        "the response has no nextUpdate, so nothing says when it stops being true: have the \
         responder set one (openssl ocsp -ndays N)"
            .to_string()
    })?;
    if single.this_update > now + MAX_SKEW {
        return Err(format!(
            "its thisUpdate ({}) is in the future: check the clocks",
            show_time(single.this_update)
        ));
    }
    if now >= next_update {
        return Err(format!(
            "the response expired at {} (its nextUpdate): fetch a new one",
            show_time(next_update)
        ));
    }
    let signer = verify_signature(&r, issuer, now)?;
    Ok(Staple {
        der: der.to_vec(),
        status: single.status,
        this_update: single.this_update,
        next_update,
        signer,
    })
}

/// The issuer, or a responder certificate of the response that the issuer authorised, whose
/// key verifies the response's signature.
fn verify_signature(r: &Basic<'_>, issuer: &X509, now: i64) -> Result<Signer, String> {
    let issuer_key = issuer.public_key().map_err(|e| e.to_string())?;
    if verify(r, &issuer_key)? {
        return Ok(Signer::Issuer);
    }
    for der in &r.certs {
        let Ok(cert) = X509::from_der(der) else {
            continue;
        };
        let Ok(key) = cert.public_key() else {
            continue;
        };
        if !verify(r, &key)? {
            continue;
        }
        let name = crate::identity::Dn::from_x509_name(cert.subject_name()).to_rfc2253();
        if !cert.verify(&issuer_key).unwrap_or(false) {
            let _ = boring::error::ErrorStack::get();
            return Err(format!(
                "it is signed by responder \"{name}\", whose certificate the issuer did not \
                 sign"
            ));
        }
        if !ocsp_signing(&cert) {
            return Err(format!(
                "it is signed by responder \"{name}\", whose certificate lacks the OCSP \
                 signing extended key usage (id-kp-OCSPSigning)"
            ));
        }
        if !within_validity(&cert, now) {
            return Err(format!(
                "it is signed by responder \"{name}\", whose certificate is not valid now"
            ));
        }
        return Ok(Signer::Delegated(name));
    }
    let _ = boring::error::ErrorStack::get();
    Err(
        "its signature does not verify with the issuer's key nor with a responder certificate \
         the response carries: a response from another CA, or altered"
            .into(),
    )
}

fn verify(r: &Basic<'_>, key: &PKey<Public>) -> Result<bool, String> {
    let (digest, kind) = signature_algorithm(r.sig_alg)?;
    if key.id() != kind {
        return Ok(false);
    }
    let verifier = match digest {
        Some(md) => Verifier::new(md, key),
        None => Verifier::new_without_digest(key),
    };
    let Ok(mut v) = verifier else {
        let _ = boring::error::ErrorStack::get();
        return Ok(false);
    };
    let ok = v.verify_oneshot(r.signature, r.tbs).unwrap_or(false);
    let _ = boring::error::ErrorStack::get();
    Ok(ok)
}

/// The digest and key type of a signature algorithm OID.
fn signature_algorithm(oid: &[u8]) -> Result<(Option<MessageDigest>, Id), String> {
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    Ok(match oid {
        [rsa @ .., n] if rsa == RSA => match n {
            11 => (Some(MessageDigest::sha256()), Id::RSA),
            12 => (Some(MessageDigest::sha384()), Id::RSA),
            13 => (Some(MessageDigest::sha512()), Id::RSA),
            5 => {
                return Err(
                    "it is signed with SHA-1 (sha1WithRSAEncryption), which certgate \
                            does not accept: have the responder sign with SHA-256 (openssl \
                            ocsp -rmd sha256)"
                        .into(),
                )
            }
            _ => {
                return Err(
                    "it is signed with an RSA algorithm certgate does not support \
                            (RSA-PSS?): have the responder use sha256WithRSAEncryption"
                        .into(),
                )
            }
        },
        [ec @ .., n] if ec == ECDSA => match n {
            2 => (Some(MessageDigest::sha256()), Id::EC),
            3 => (Some(MessageDigest::sha384()), Id::EC),
            4 => (Some(MessageDigest::sha512()), Id::EC),
            _ => return Err("it is signed with an unknown ECDSA algorithm".into()),
        },
        _ if oid == ED25519 => (None, Id::ED25519),
        _ => {
            return Err(format!(
                "it is signed with an algorithm certgate does not support (OID {}): RSA with \
             SHA-2, ECDSA with SHA-2 and Ed25519 are",
                hex(oid)
            ))
        }
    })
}

fn ocsp_signing(cert: &X509) -> bool {
    // SAFETY: read-only accessors on a live certificate (they cache the decoded extensions
    // under BoringSSL's lock).
    unsafe {
        let flags = boring_sys::X509_get_extension_flags(cert.as_ptr());
        flags & boring_sys::EXFLAG_XKUSAGE as u32 != 0
            && boring_sys::X509_get_extended_key_usage(cert.as_ptr())
                & boring_sys::XKU_OCSP_SIGN as u32
                != 0
    }
}

fn within_validity(cert: &X509, now: i64) -> bool {
    let posix = |t: *const boring_sys::ASN1_TIME| {
        let mut out = 0i64;
        // SAFETY: `t` belongs to the live certificate.
        (unsafe { boring_sys::ASN1_TIME_to_posix(t, &mut out) } == 1).then_some(out)
    };
    match (
        posix(cert.not_before().as_ptr()),
        posix(cert.not_after().as_ptr()),
    ) {
        (Some(from), Some(until)) => from <= now + MAX_SKEW && now <= until,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// The fields of an OCSP response (RFC 6960) and of a certificate that the checks need
// ---------------------------------------------------------------------------------------------

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const ENUMERATED: u8 = 0x0a;
const OCTET_STRING: u8 = 0x04;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
const GENERALIZED_TIME: u8 = 0x18;
const EXPLICIT_0: u8 = 0xa0;
const EXPLICIT_1: u8 = 0xa1;
const EXPLICIT_2: u8 = 0xa2;
/// id-pkix-ocsp-basic, 1.3.6.1.5.5.7.48.1.1.
const OCSP_BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

/// A BasicOCSPResponse, borrowing the DER.
struct Basic<'a> {
    /// tbsResponseData, whole: what is signed.
    tbs: &'a [u8],
    sig_alg: &'a [u8],
    signature: &'a [u8],
    certs: Vec<&'a [u8]>,
    responses: Vec<Single<'a>>,
}

struct Single<'a> {
    id: CertId<'a>,
    status: CertStatus,
    this_update: i64,
    next_update: Option<i64>,
}

struct CertId<'a> {
    hash_alg: &'a [u8],
    name_hash: &'a [u8],
    key_hash: &'a [u8],
    serial: &'a [u8],
}

impl CertId<'_> {
    /// Whether it names `leaf` issued by `issuer`.
    fn names(&self, leaf: &CertFields<'_>, issuer: &CertFields<'_>) -> bool {
        let md = match self.hash_alg {
            [0x2b, 0x0e, 0x03, 0x02, 0x1a] => MessageDigest::sha1(),
            [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, n] => match n {
                1 => MessageDigest::sha256(),
                2 => MessageDigest::sha384(),
                3 => MessageDigest::sha512(),
                _ => return false,
            },
            _ => return false,
        };
        let matches = |data: &[u8], want: &[u8]| hash(md, data).is_ok_and(|h| h.as_ref() == want);
        strip_zeros(self.serial) == strip_zeros(leaf.serial)
            && matches(issuer.subject, self.name_hash)
            && matches(issuer.key_bits, self.key_hash)
    }
}

/// What CertID matching needs of a certificate.
struct CertFields<'a> {
    serial: &'a [u8],
    /// The subject Name, whole.
    subject: &'a [u8],
    /// The subjectPublicKey bits (without the unused-bits byte).
    key_bits: &'a [u8],
}

impl<'a> CertFields<'a> {
    fn parse(der: &'a [u8]) -> Result<CertFields<'a>, String> {
        let mut cert = Der::new(der).sequence()?;
        let mut tbs = cert.sequence()?;
        tbs.optional(EXPLICIT_0)?;
        let serial = tbs.expect(INTEGER)?.body;
        tbs.expect(SEQUENCE)?; // signature
        tbs.expect(SEQUENCE)?; // issuer
        tbs.expect(SEQUENCE)?; // validity
        let subject = tbs.expect(SEQUENCE)?.whole;
        let mut spki = tbs.sequence()?;
        spki.expect(SEQUENCE)?;
        let key_bits = bits(spki.expect(BIT_STRING)?.body)?;
        Ok(CertFields {
            serial,
            subject,
            key_bits,
        })
    }
}

fn parse(der: &[u8]) -> Result<Basic<'_>, String> {
    parse_inner(der).map_err(|e| {
        if e.starts_with("responseStatus") {
            e
        } else {
            format!("not a DER OCSP response ({e}): the file must hold what openssl ocsp -respout writes")
        }
    })
}

fn parse_inner(der: &[u8]) -> Result<Basic<'_>, String> {
    let mut top = Der::new(der);
    let mut resp = top.sequence()?;
    if !top.is_empty() {
        return Err("bytes after the response".into());
    }
    let status = resp.expect(ENUMERATED)?.body;
    if status != [0] {
        let name = match status {
            [1] => "malformedRequest",
            [2] => "internalError",
            [3] => "tryLater",
            [5] => "sigRequired",
            [6] => "unauthorized",
            _ => "invalid",
        };
        return Err(format!(
            "responseStatus is {name}, not successful: the responder gave no certificate status"
        ));
    }
    let mut bytes = Der::new(resp.expect(EXPLICIT_0)?.body).sequence()?;
    if bytes.expect(OID)?.body != OCSP_BASIC {
        return Err("responseType is not id-pkix-ocsp-basic".into());
    }
    let mut basic = Der::new(bytes.expect(OCTET_STRING)?.body).sequence()?;
    let tbs = basic.expect(SEQUENCE)?;
    let sig_alg = basic.sequence()?.expect(OID)?.body;
    let signature = bits(basic.expect(BIT_STRING)?.body)?;
    let mut certs = Vec::new();
    if let Some(list) = basic.optional(EXPLICIT_0)? {
        let mut list = Der::new(list.body).sequence()?;
        while !list.is_empty() {
            certs.push(list.expect(SEQUENCE)?.whole);
        }
    }

    let mut data = Der::new(tbs.body);
    data.optional(EXPLICIT_0)?; // version
    match data.any()?.tag {
        EXPLICIT_1 | EXPLICIT_2 => {}
        _ => return Err("responderID is malformed".into()),
    }
    data.expect(GENERALIZED_TIME)?; // producedAt
    let mut list = data.sequence()?;
    let mut responses = Vec::new();
    while !list.is_empty() {
        responses.push(single(list.sequence()?)?);
    }
    Ok(Basic {
        tbs: tbs.whole,
        sig_alg,
        signature,
        certs,
        responses,
    })
}

fn single<'a>(mut s: Der<'a>) -> Result<Single<'a>, String> {
    let mut id = s.sequence()?;
    let hash_alg = id.sequence()?.expect(OID)?.body;
    let id = CertId {
        hash_alg,
        name_hash: id.expect(OCTET_STRING)?.body,
        key_hash: id.expect(OCTET_STRING)?.body,
        serial: id.expect(INTEGER)?.body,
    };
    let status = s.any()?;
    let status = match status.tag {
        0x80 => CertStatus::Good,
        0xa1 => CertStatus::Revoked(time(Der::new(status.body).expect(GENERALIZED_TIME)?.body)?),
        0x82 => CertStatus::Unknown,
        _ => return Err("certStatus is malformed".into()),
    };
    let this_update = time(s.expect(GENERALIZED_TIME)?.body)?;
    let next_update = match s.optional(EXPLICIT_0)? {
        Some(t) => Some(time(Der::new(t.body).expect(GENERALIZED_TIME)?.body)?),
        None => None,
    };
    Ok(Single {
        id,
        status,
        this_update,
        next_update,
    })
}

/// A BIT STRING's bits, which must be whole bytes.
fn bits(body: &[u8]) -> Result<&[u8], String> {
    match body {
        [0, rest @ ..] => Ok(rest),
        _ => Err("a BIT STRING is not whole bytes".into()),
    }
}

/// A GeneralizedTime `YYYYMMDDHHMMSSZ` as POSIX seconds.
fn time(body: &[u8]) -> Result<i64, String> {
    let bad = || "a GeneralizedTime is not YYYYMMDDHHMMSSZ".to_string();
    if body.len() != 15 || body[14] != b'Z' || !body[..14].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let n = |from: usize, len: usize| {
        body[from..from + len]
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
    };
    let (y, mo, d, h, mi, s) = (n(0, 4), n(4, 2), n(6, 2), n(8, 2), n(10, 2), n(12, 2));
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    Ok(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&x| x == 0).count();
    &b[n..]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// A DER element.
struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
    whole: &'a [u8],
}

/// A cursor over DER elements (single-byte tags, definite lengths: all that OCSP uses).
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(rest: &'a [u8]) -> Der<'a> {
        Der { rest }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn any(&mut self) -> Result<Tlv<'a>, String> {
        let truncated = || "truncated".to_string();
        let all = self.rest;
        let (&tag, after) = all.split_first().ok_or_else(truncated)?;
        if tag & 0x1f == 0x1f {
            return Err("a multi-byte tag".into());
        }
        let (&first, mut after) = after.split_first().ok_or_else(truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || after.len() < n {
                return Err("a bad length".into());
            }
            let len = after[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            after = &after[n..];
            len
        };
        if after.len() < len {
            return Err(truncated());
        }
        let header = all.len() - after.len();
        self.rest = &after[len..];
        Ok(Tlv {
            tag,
            body: &after[..len],
            whole: &all[..header + len],
        })
    }

    fn expect(&mut self, tag: u8) -> Result<Tlv<'a>, String> {
        let t = self.any()?;
        if t.tag != tag {
            return Err(format!(
                "tag 0x{:02x} where 0x{tag:02x} was expected",
                t.tag
            ));
        }
        Ok(t)
    }

    /// The next element if it has `tag`.
    fn optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>, String> {
        if self.rest.first() == Some(&tag) {
            self.any().map(Some)
        } else {
            Ok(None)
        }
    }

    /// The contents of the next element, a SEQUENCE.
    fn sequence(&mut self) -> Result<Der<'a>, String> {
        Ok(Der::new(self.expect(SEQUENCE)?.body))
    }
}

// ---------------------------------------------------------------------------------------------
// Files and time
// ---------------------------------------------------------------------------------------------

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// POSIX seconds as `2026-11-30 03:04:05 UTC`.
fn show_time(posix: i64) -> String {
    let days = posix.div_euclid(86_400);
    let secs = posix.rem_euclid(86_400);
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use boring::asn1::{Asn1Integer, Asn1Time};
    use boring::bn::BigNum;
    use boring::ec::{EcGroup, EcKey};
    use boring::nid::Nid;
    use boring::pkey::Private;
    use boring::sign::Signer as Signing;
    use boring::x509::extension::ExtendedKeyUsage;
    use boring::x509::{X509Builder, X509NameBuilder};

    const NOW: i64 = 1_795_996_800; // 2026-11-30 00:00:00 UTC
    const HOUR: i64 = 3600;

    fn key() -> PKey<Private> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    }

    /// A certificate for `cn` with `key`, signed by `by` (None: self-signed), serial `serial`.
    fn cert(
        cn: &str,
        key: &PKey<Private>,
        by: Option<(&X509, &PKey<Private>)>,
        serial: u32,
        ocsp_signing: bool,
    ) -> X509 {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        let serial = Asn1Integer::from_bn(&BigNum::from_u32(serial).unwrap()).unwrap();
        b.set_serial_number(&serial).unwrap();
        b.set_subject_name(&name).unwrap();
        match by {
            Some((issuer, _)) => b.set_issuer_name(issuer.subject_name()).unwrap(),
            None => b.set_issuer_name(&name).unwrap(),
        }
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        if ocsp_signing {
            let eku = ExtendedKeyUsage::new()
                .other("OCSPSigning")
                .build()
                .unwrap();
            b.append_extension(&eku).unwrap();
        }
        b.sign(by.map_or(key, |(_, k)| k), MessageDigest::sha256())
            .unwrap();
        b.build()
    }

    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = body.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .iter()
                .copied()
                .skip_while(|&b| b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend_from_slice(&bytes);
        }
        out.extend_from_slice(body);
        out
    }

    fn seq(parts: &[&[u8]]) -> Vec<u8> {
        tlv(SEQUENCE, &parts.concat())
    }

    fn gtime(posix: i64) -> Vec<u8> {
        let digits: String = show_time(posix)
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        tlv(GENERALIZED_TIME, format!("{digits}Z").as_bytes())
    }

    /// What a response says, and how it is made.
    struct Spec {
        serial: u32,
        status: Vec<u8>,
        this: i64,
        next: Option<i64>,
        /// CertID hash: SHA-1 (true) or SHA-256.
        sha1_id: bool,
        /// sha256 or sha1 for the signature.
        sig_md: MessageDigest,
        sig_oid: &'static [u8],
        certs: Vec<X509>,
    }

    const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];

    impl Spec {
        fn good() -> Spec {
            Spec {
                serial: 0x1001,
                status: tlv(0x80, &[]),
                this: NOW - HOUR,
                next: Some(NOW + HOUR),
                sha1_id: true,
                sig_md: MessageDigest::sha256(),
                sig_oid: ECDSA_SHA256,
                certs: Vec::new(),
            }
        }

        /// The DER response about serial `self.serial` of `issuer`, signed with `signer`.
        fn make(&self, issuer: &X509, signer: &PKey<Private>) -> Vec<u8> {
            let issuer_der = issuer.to_der().unwrap();
            let fields = CertFields::parse(&issuer_der).unwrap();
            let (md, alg) = if self.sha1_id {
                (MessageDigest::sha1(), vec![0x2b, 0x0e, 0x03, 0x02, 0x1a])
            } else {
                (
                    MessageDigest::sha256(),
                    vec![0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01],
                )
            };
            let serial = BigNum::from_u32(self.serial).unwrap().to_vec();
            let serial = if serial[0] & 0x80 != 0 {
                [&[0u8][..], &serial].concat()
            } else {
                serial
            };
            let id = seq(&[
                &seq(&[&tlv(OID, &alg), &[0x05, 0x00]]),
                &tlv(OCTET_STRING, &hash(md, fields.subject).unwrap()),
                &tlv(OCTET_STRING, &hash(md, fields.key_bits).unwrap()),
                &tlv(INTEGER, &serial),
            ]);
            let next = self
                .next
                .map(|t| tlv(EXPLICIT_0, &gtime(t)))
                .unwrap_or_default();
            let single = seq(&[&id, &self.status, &gtime(self.this), &next]);
            let tbs = seq(&[
                &tlv(EXPLICIT_1, fields.subject),
                &gtime(self.this),
                &seq(&[&single]),
            ]);
            let mut s = Signing::new(self.sig_md, signer).unwrap();
            let sig = s.sign_oneshot_to_vec(&tbs).unwrap();
            let certs: Vec<u8> = self
                .certs
                .iter()
                .flat_map(|c| c.to_der().unwrap())
                .collect();
            let certs = if self.certs.is_empty() {
                Vec::new()
            } else {
                tlv(EXPLICIT_0, &tlv(SEQUENCE, &certs))
            };
            let basic = seq(&[
                &tbs,
                &seq(&[&tlv(OID, self.sig_oid)]),
                &tlv(BIT_STRING, &[&[0u8][..], &sig].concat()),
                &certs,
            ]);
            seq(&[
                &tlv(ENUMERATED, &[0]),
                &tlv(
                    EXPLICIT_0,
                    &seq(&[&tlv(OID, OCSP_BASIC), &tlv(OCTET_STRING, &basic)]),
                ),
            ])
        }
    }

    struct Fixture {
        ca: X509,
        ca_key: PKey<Private>,
        leaf: X509,
    }

    fn fixture() -> Fixture {
        let ca_key = key();
        let ca = cert("Test CA", &ca_key, None, 1, false);
        let leaf = cert("localhost", &key(), Some((&ca, &ca_key)), 0x1001, false);
        Fixture { ca, ca_key, leaf }
    }

    impl Fixture {
        fn check(&self, der: &[u8], now: i64) -> Result<Staple, String> {
            check(der, &self.leaf, &self.ca, now)
        }
    }

    #[test]
    fn a_good_response_signed_by_the_issuer_is_stapled_until_its_next_update() {
        let f = fixture();
        let der = Spec::good().make(&f.ca, &f.ca_key);
        let s = f.check(&der, NOW).unwrap();
        assert_eq!(s.status, CertStatus::Good);
        assert_eq!(s.signer, Signer::Issuer);
        assert_eq!((s.this_update, s.next_update), (NOW - HOUR, NOW + HOUR));
        assert!(s.is_fresh(NOW) && s.is_fresh(NOW + HOUR - 1) && !s.is_fresh(NOW + HOUR));
        assert_eq!(
            s.describe(),
            "status good, thisUpdate 2026-11-29 23:00:00 UTC, nextUpdate 2026-11-30 01:00:00 \
             UTC, signed by the issuer"
        );
        // A SHA-256 CertID names the certificate as well.
        let der = Spec {
            sha1_id: false,
            ..Spec::good()
        }
        .make(&f.ca, &f.ca_key);
        assert!(f.check(&der, NOW).is_ok());
    }

    #[test]
    fn expired_future_and_open_ended_responses_are_refused() {
        let f = fixture();
        let der = Spec::good().make(&f.ca, &f.ca_key);
        let e = f.check(&der, NOW + HOUR).unwrap_err();
        assert!(
            e.contains("expired at 2026-11-30 01:00:00 UTC (its nextUpdate)"),
            "{e}"
        );
        // thisUpdate ahead of our clock by more than the allowed skew.
        assert!(f.check(&der, NOW - HOUR - MAX_SKEW).is_ok());
        let e = f.check(&der, NOW - HOUR - MAX_SKEW - 1).unwrap_err();
        assert!(e.contains("is in the future"), "{e}");
        let der = Spec {
            next: None,
            ..Spec::good()
        }
        .make(&f.ca, &f.ca_key);
        let e = f.check(&der, NOW).unwrap_err();
        assert!(e.contains("has no nextUpdate"), "{e}");
    }

    #[test]
    fn a_revoked_or_unknown_status_is_reported() {
        let f = fixture();
        let revoked = tlv(0xa1, &gtime(NOW - 10 * HOUR));
        let der = Spec {
            status: revoked,
            ..Spec::good()
        }
        .make(&f.ca, &f.ca_key);
        let s = f.check(&der, NOW).unwrap();
        assert_eq!(s.status, CertStatus::Revoked(NOW - 10 * HOUR));
        assert!(s
            .describe()
            .starts_with("status REVOKED (since 2026-11-29 14:00:00 UTC)"));
        let der = Spec {
            status: tlv(0x82, &[]),
            ..Spec::good()
        }
        .make(&f.ca, &f.ca_key);
        assert_eq!(f.check(&der, NOW).unwrap().status, CertStatus::Unknown);
    }

    #[test]
    fn a_response_for_another_certificate_is_refused() {
        let f = fixture();
        let der = Spec {
            serial: 0x1002,
            ..Spec::good()
        }
        .make(&f.ca, &f.ca_key);
        let e = f.check(&der, NOW).unwrap_err();
        assert!(
            e.contains("for another certificate") && e.contains("serial 1001"),
            "{e}"
        );
        // Same serial, but another issuer (same name, another key): the key hash differs.
        let other_key = key();
        let other = cert("Test CA", &other_key, None, 1, false);
        let der = Spec::good().make(&other, &other_key);
        let e = f.check(&der, NOW).unwrap_err();
        assert!(e.contains("for another certificate"), "{e}");
    }

    #[test]
    fn a_response_that_does_not_verify_is_refused() {
        let f = fixture();
        // Signed by a key that is not the issuer's.
        let der = Spec::good().make(&f.ca, &key());
        let e = f.check(&der, NOW).unwrap_err();
        assert!(e.contains("its signature does not verify"), "{e}");
        // Altered after signing: a byte of the responder name flipped.
        let mut der = Spec::good().make(&f.ca, &f.ca_key);
        let at = der.windows(7).position(|w| w == b"Test CA").unwrap();
        der[at] = b'B';
        let e = f.check(&der, NOW).unwrap_err();
        assert!(e.contains("its signature does not verify"), "{e}");
        // SHA-1 signatures are refused with the fix.
        let der = Spec {
            sig_md: MessageDigest::sha1(),
            sig_oid: &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01],
            ..Spec::good()
        }
        .make(&f.ca, &f.ca_key);
        let e = f.check(&der, NOW).unwrap_err();
        assert!(e.contains("does not support (OID 2A8648CE3D0401)"), "{e}");
    }

    #[test]
    fn a_delegated_responder_needs_the_issuers_signature_and_ocsp_signing() {
        // The responder certificates are valid from the real now on.
        let f = fixture();
        let now = now();
        let around = || Spec {
            this: now - HOUR,
            next: Some(now + HOUR),
            ..Spec::good()
        };
        let rkey = key();
        let responder = cert("Responder", &rkey, Some((&f.ca, &f.ca_key)), 7, true);
        let der = Spec {
            certs: vec![responder],
            ..around()
        }
        .make(&f.ca, &rkey);
        let s = f.check(&der, now).unwrap();
        assert_eq!(s.signer, Signer::Delegated("CN=Responder".into()));

        let plain = cert("Responder", &rkey, Some((&f.ca, &f.ca_key)), 7, false);
        let der = Spec {
            certs: vec![plain],
            ..around()
        }
        .make(&f.ca, &rkey);
        let e = f.check(&der, now).unwrap_err();
        assert!(
            e.contains("lacks the OCSP signing extended key usage"),
            "{e}"
        );

        let self_made = cert("Responder", &rkey, None, 7, true);
        let der = Spec {
            certs: vec![self_made],
            ..around()
        }
        .make(&f.ca, &rkey);
        let e = f.check(&der, now).unwrap_err();
        assert!(
            e.contains("whose certificate the issuer did not sign"),
            "{e}"
        );
    }

    #[test]
    fn unsuccessful_truncated_and_garbage_responses_are_refused_without_panic() {
        let f = fixture();
        let e = f.check(&[0x30, 0x03, 0x0a, 0x01, 0x03], NOW).unwrap_err();
        assert!(e.contains("responseStatus is tryLater"), "{e}");
        let der = Spec::good().make(&f.ca, &f.ca_key);
        for n in 0..der.len() {
            let e = f.check(&der[..n], NOW).unwrap_err();
            assert!(e.starts_with("not a DER OCSP response"), "{n}: {e}");
        }
        let mut long = der.clone();
        long.push(0);
        assert!(f.check(&long, NOW).is_err());
        for garbage in [
            &b""[..],
            b"\x30\x80",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x1f\x01\x00",
        ] {
            assert!(f.check(garbage, NOW).is_err());
        }
    }

    #[test]
    fn generalized_times_are_read_as_utc() {
        assert_eq!(time(b"20261130000000Z"), Ok(NOW));
        assert_eq!(time(b"19700101000000Z"), Ok(0));
        assert_eq!(time(b"20240229120000Z"), Ok(1_709_208_000));
        for bad in [
            &b"20261330000000Z"[..],
            b"2026113000000Z",
            b"20261130000000+",
            b"2026113000000aZ",
        ] {
            assert!(time(bad).is_err(), "{bad:?}");
        }
        assert_eq!(show_time(1_709_208_000), "2024-02-29 12:00:00 UTC");
    }

    #[test]
    fn the_chain_must_hold_the_issuer() {
        let f = fixture();
        let leaf_only = f.leaf.to_pem().unwrap();
        let e = leaf_and_issuer(&leaf_only).unwrap_err();
        assert!(e.contains("append the intermediate that signed it"), "{e}");
        let chain = [leaf_only, f.ca.to_pem().unwrap()].concat();
        let (leaf, issuer) = leaf_and_issuer(&chain).unwrap();
        assert_eq!(leaf.to_der().unwrap(), f.leaf.to_der().unwrap());
        assert_eq!(issuer.to_der().unwrap(), f.ca.to_der().unwrap());
    }

    #[test]
    fn refresh_replaces_the_staple_and_keeps_it_over_a_bad_file() {
        let f = fixture();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.ocsp");
        let chain = [f.leaf.to_pem().unwrap(), f.ca.to_pem().unwrap()].concat();
        let day = 86_400;
        let (this, next) = (now() - HOUR, now() + day);
        let first = Spec {
            this,
            next: Some(next),
            ..Spec::good()
        }
        .make(&f.ca, &f.ca_key);
        std::fs::write(&path, &first).unwrap();
        let stapler = Stapler::load(&path, &chain).unwrap();
        assert_eq!(stapler.current().unwrap().next_update, next);
        assert!(stapler.refused().is_none());

        std::fs::write(&path, b"garbage").unwrap();
        stapler.refresh();
        assert_eq!(stapler.current().unwrap().next_update, next);
        assert!(stapler
            .refused()
            .unwrap()
            .contains("not a DER OCSP response"));
        assert!(stapler
            .describe()
            .contains("NOT stapled: not a DER OCSP response"));
        assert!(stapler
            .describe()
            .contains("the previous response stays stapled"));

        let second = Spec {
            this,
            next: Some(next + day),
            ..Spec::good()
        }
        .make(&f.ca, &f.ca_key);
        std::fs::write(&path, &second).unwrap();
        stapler.refresh();
        assert_eq!(stapler.current().unwrap().next_update, next + day);
        assert!(stapler.refused().is_none());
        assert!(stapler.describe().contains(": stapled, status good"));

        std::fs::remove_file(&path).unwrap();
        stapler.refresh();
        assert_eq!(stapler.current().unwrap().next_update, next + day);
        assert!(stapler.refused().unwrap().contains("cannot read"));
        // Unreadable at load: a configuration error.
        assert!(Stapler::load(&path, &chain)
            .unwrap_err()
            .contains("cannot read"));
    }
}
