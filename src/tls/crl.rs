//! Certificate revocation lists of a listener: parsed and checked at load, re-read when their
//! files change, and applied to new handshakes without a restart.
//!
//! BoringSSL cannot remove a CRL from an `X509_STORE`, and replacing the store of a context
//! while handshakes run is not thread-safe. So each set of CRLs in force is a [`Generation`]: a
//! new store (the CAs and the CRLs), its own verified-chain cache, and a session ID context
//! derived from the CRLs' contents. The ClientHello callback gives every new connection the
//! current generation's store (`SSL_set1_verify_cert_store`) and session ID context; a session
//! made under other CRLs (or before a CRL went stale) then no longer matches and the client
//! does a full handshake, so resumption never bypasses revocation. In-flight handshakes keep
//! the store they were given.

use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use boring::hash::{hash, Hasher, MessageDigest};
use boring::ssl::SslRef;
use boring::x509::store::{X509Store, X509StoreBuilder};
use boring::x509::verify::X509VerifyFlags;
use boring::x509::{X509StoreContextRef, X509};
use foreign_types::{ForeignType, ForeignTypeRef};
use tracing::{error, info, warn};

use super::verify_cache::VerifiedChains;

/// `client_auth.crl_check`: which certificates of a client's chain need a CRL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CrlCheck {
    /// Only the leaf, against its issuer's CRL.
    #[default]
    Leaf,
    /// Every certificate of the chain: every CA needs a CRL (nginx `ssl_crl`).
    Chain,
}

/// `client_auth.stale_crl`: what a CRL past its nextUpdate does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StaleCrl {
    /// Every client whose chain needs the stale CRL is refused (as nginx).
    #[default]
    Refuse,
    /// The stale list keeps being applied; a warning is logged once per refresh.
    Warn,
}

/// What a listener's CRLs need.
pub struct CrlSettings {
    /// The CRL files (PEM, possibly several CRLs each, or DER), resolved.
    pub files: Vec<PathBuf>,
    /// Which certificates need a CRL.
    pub check: CrlCheck,
    /// What a stale CRL does.
    pub stale: StaleCrl,
    /// How often the files are checked for a change.
    pub refresh: Duration,
}

/// One parsed CRL.
pub struct Crl {
    raw: NonNull<boring_sys::X509_CRL>,
    digest: [u8; 32],
}

// SAFETY: an X509_CRL is not modified after parsing except for BoringSSL's internally locked
// caches; BoringSSL shares them between threads through its stores.
unsafe impl Send for Crl {}
unsafe impl Sync for Crl {}

impl std::fmt::Debug for Crl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crl")
            .field("issuer", &self.issuer())
            .field("revoked", &self.revoked())
            .finish()
    }
}

impl Drop for Crl {
    fn drop(&mut self) {
        // SAFETY: we own one reference.
        unsafe { boring_sys::X509_CRL_free(self.raw.as_ptr()) }
    }
}

impl Crl {
    /// Every CRL in `bytes`: PEM blocks `X509 CRL`, or one DER CRL.
    pub fn parse_all(bytes: &[u8]) -> Result<Vec<Crl>, String> {
        let is_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
        if !is_pem {
            return Crl::from_der(bytes).map(|c| vec![c]);
        }
        let mut out = Vec::new();
        for block in pem_blocks(bytes)? {
            out.push(Crl::from_der(&block)?);
        }
        if out.is_empty() {
            return Err("no \"-----BEGIN X509 CRL-----\" block in the file".into());
        }
        Ok(out)
    }

    fn from_der(der: &[u8]) -> Result<Crl, String> {
        let mut p = der.as_ptr();
        let len = i64::try_from(der.len()).map_err(|_| "file too large".to_string())?;
        // SAFETY: `p` points to `len` readable bytes; d2i returns null or an owned CRL.
        let raw = unsafe { boring_sys::d2i_X509_CRL(std::ptr::null_mut(), &mut p, len as _) };
        let raw = NonNull::new(raw).ok_or_else(|| {
            format!(
                "not a CRL (PEM \"X509 CRL\" or DER): {}",
                boring::error::ErrorStack::get()
            )
        })?;
        let digest = hash(MessageDigest::sha256(), der)
            .map_err(|e| e.to_string())?
            .as_ref()
            .try_into()
            .map_err(|_| "sha256".to_string())?;
        let crl = Crl { raw, digest };
        crl.supported()?;
        Ok(crl)
    }

    /// Refuses what BoringSSL cannot apply: delta and indirect CRLs.
    fn supported(&self) -> Result<(), String> {
        let p = self.raw.as_ptr();
        // SAFETY: read-only accessors on a valid CRL; the decoded extension is freed here.
        unsafe {
            if boring_sys::X509_CRL_get_ext_by_NID(p, boring_sys::NID_delta_crl, -1) >= 0 {
                return Err(
                    "is a delta CRL, which BoringSSL does not support: give the full \
                            CRL instead"
                        .into(),
                );
            }
            let idp = boring_sys::X509_CRL_get_ext_d2i(
                p,
                boring_sys::NID_issuing_distribution_point,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            ) as *mut boring_sys::ISSUING_DIST_POINT;
            if !idp.is_null() {
                let indirect = (*idp).indirectCRL > 0;
                boring_sys::ISSUING_DIST_POINT_free(idp);
                if indirect {
                    return Err(
                        "is an indirect CRL, which BoringSSL does not support: give \
                                the CRL signed by each CA itself"
                            .into(),
                    );
                }
            }
        }
        Ok(())
    }

    /// The issuer DN, RFC 2253-like, for messages.
    pub fn issuer(&self) -> String {
        // SAFETY: the name belongs to the CRL, which outlives this call.
        let name = unsafe { boring::x509::X509NameRef::from_ptr(self.issuer_ptr()) };
        crate::identity::Dn::from_x509_name(name).to_rfc2253()
    }

    fn issuer_ptr(&self) -> *mut boring_sys::X509_NAME {
        // SAFETY: valid CRL.
        unsafe { boring_sys::X509_CRL_get_issuer(self.raw.as_ptr()) }
    }

    /// How many certificates it revokes.
    pub fn revoked(&self) -> usize {
        // SAFETY: valid CRL; the stack belongs to it.
        unsafe {
            let s = boring_sys::X509_CRL_get_REVOKED(self.raw.as_ptr());
            if s.is_null() {
                0
            } else {
                boring_sys::OPENSSL_sk_num(s as *const _)
            }
        }
    }

    /// nextUpdate as seconds since the epoch (None: the CRL has none).
    pub fn next_update(&self) -> Option<i64> {
        // SAFETY: valid CRL; the time belongs to it.
        unsafe {
            let t = boring_sys::X509_CRL_get0_nextUpdate(self.raw.as_ptr());
            if t.is_null() {
                return None;
            }
            let mut out = 0i64;
            (boring_sys::ASN1_TIME_to_posix(t, &mut out) == 1).then_some(out)
        }
    }

    /// True when nextUpdate has passed.
    pub fn is_stale(&self) -> bool {
        self.next_update().is_some_and(|t| t < now())
    }

    /// Checks the CRL was issued and signed by one of `cas`; returns that CA's index.
    pub fn verify_against(&self, cas: &[X509]) -> Result<usize, String> {
        let mut named = false;
        for (i, ca) in cas.iter().enumerate() {
            // SAFETY: both names are valid for the duration of the call.
            let same = unsafe {
                boring_sys::X509_NAME_cmp(ca.subject_name().as_ptr(), self.issuer_ptr()) == 0
            };
            if !same {
                continue;
            }
            named = true;
            let Ok(key) = ca.public_key() else { continue };
            // SAFETY: valid CRL and key.
            if unsafe { boring_sys::X509_CRL_verify(self.raw.as_ptr(), key.as_ptr()) } == 1 {
                return Ok(i);
            }
        }
        let _ = boring::error::ErrorStack::get();
        if named {
            Err(format!(
                "its signature does not verify against the CA \"{}\" of client_auth.ca (signed \
                 by another key: a CRL of another CA with the same name?)",
                self.issuer()
            ))
        } else {
            Err(format!(
                "issued by \"{}\", which is not among the CAs of client_auth.ca: add that CA to \
                 ca, or remove this CRL",
                self.issuer()
            ))
        }
    }
}

/// The DER contents of each `X509 CRL` PEM block (other blocks are refused).
fn pem_blocks(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 PEM text".to_string())?;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let label_end = after
            .find("-----")
            .ok_or_else(|| "a PEM header is not closed".to_string())?;
        let label = &after[..label_end];
        if label != "X509 CRL" {
            return Err(format!(
                "holds a \"{label}\" PEM block: a CRL file holds \"X509 CRL\" blocks only"
            ));
        }
        let body_start = label_end + 5;
        let end_marker = "-----END X509 CRL-----";
        let end = after
            .find(end_marker)
            .ok_or_else(|| "a CRL PEM block has no END line".to_string())?;
        let b64: String = after[body_start..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = boring::base64::decode_block(&b64)
            .map_err(|e| format!("a CRL PEM block is not valid base64: {e}"))?;
        out.push(der);
        rest = &after[end + end_marker.len()..];
    }
    Ok(out)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// One CRL file as last read.
struct FileState {
    stamp: Option<Stamp>,
    crls: Vec<Crl>,
    /// When its CRLs in force were read.
    loaded: SystemTime,
    /// Re-reads that failed (the previous CRLs stayed in force).
    errors: u64,
}

/// What an operator watches of one CRL file (for metrics): no DN, only the configured path.
#[derive(Debug, Clone)]
pub struct FileStatus {
    /// The file as configured (resolved).
    pub path: PathBuf,
    /// The earliest nextUpdate of its CRLs, POSIX seconds (None: none has one).
    pub next_update: Option<i64>,
    /// When the CRLs in force were read.
    pub loaded: SystemTime,
    /// Re-reads that failed since start (or the last reload).
    pub errors: u64,
}

/// What tells a changed file: modification time, size and inode.
/// Shared with the OCSP staple's file watch (`tls::ocsp`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
    ino: u64,
}

pub(crate) fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        mtime: m.modified().ok(),
        len: m.len(),
        ino: m.ino(),
    })
}

/// The CRLs in force for new handshakes: a store of the CAs and CRLs, its own cache of verified
/// chains, and the session ID context sessions made under it carry.
pub struct Generation {
    store: X509Store,
    sid_ctx: [u8; 32],
    cache: Option<VerifiedChains>,
}

/// A listener's CRLs and the generation in force.
pub struct CrlSet {
    files: Vec<PathBuf>,
    cas: Vec<X509>,
    check: CrlCheck,
    stale: StaleCrl,
    refresh: Duration,
    base_sid_ctx: Vec<u8>,
    cache_size: usize,
    current: ArcSwap<Generation>,
    state: Mutex<State>,
}

struct State {
    files: Vec<FileState>,
    /// Stale flags of the CRLs the current generation was built with (refuse mode).
    stale: Vec<bool>,
}

/// A CRL file that cannot be used: which entry of `crl`, and why.
#[derive(Debug)]
pub struct CrlError {
    /// Index in the `crl` list.
    pub index: usize,
    /// Reason, naming the file.
    pub reason: String,
}

impl CrlSet {
    /// Reads and checks every file against `cas`; `base_sid_ctx` is the listener's session ID
    /// context material, `cache_size` the verified-chain cache size (0: none).
    pub fn load(
        s: &CrlSettings,
        cas: Vec<X509>,
        base_sid_ctx: &[u8],
        cache_size: usize,
    ) -> Result<CrlSet, CrlError> {
        let mut files = Vec::new();
        for (index, path) in s.files.iter().enumerate() {
            let stamp = stamp(path);
            let crls = read_file(path, &cas).map_err(|reason| CrlError { index, reason })?;
            files.push(FileState {
                stamp,
                crls,
                loaded: SystemTime::now(),
                errors: 0,
            });
        }
        let stale = stale_flags(&files);
        let set = CrlSet {
            files: s.files.clone(),
            check: s.check,
            stale: s.stale,
            refresh: s.refresh,
            base_sid_ctx: base_sid_ctx.to_vec(),
            cache_size,
            current: ArcSwap::from_pointee(Generation {
                store: X509StoreBuilder::new()
                    .map_err(|e| CrlError {
                        index: 0,
                        reason: e.to_string(),
                    })?
                    .build(),
                sid_ctx: [0; 32],
                cache: None,
            }),
            cas,
            state: Mutex::new(State {
                files: Vec::new(),
                stale: Vec::new(),
            }),
        };
        let generation = set
            .generation(&files, &stale)
            .map_err(|reason| CrlError { index: 0, reason })?;
        set.current.store(Arc::new(generation));
        if let Ok(mut st) = set.state.lock() {
            st.files = files;
            st.stale = stale;
        }
        Ok(set)
    }

    /// Per file: nextUpdate, last successful load and failed re-reads.
    pub fn status(&self) -> Vec<FileStatus> {
        let Ok(st) = self.state.lock() else {
            return Vec::new();
        };
        self.files
            .iter()
            .zip(&st.files)
            .map(|(path, f)| FileStatus {
                path: path.clone(),
                next_update: f.crls.iter().filter_map(Crl::next_update).min(),
                loaded: f.loaded,
                errors: f.errors,
            })
            .collect()
    }

    /// How often [`CrlSet::refresh`] should run.
    pub fn refresh_interval(&self) -> Duration {
        self.refresh
    }

    /// One line per CRL for `certgate check`: file, issuer, revoked count, nextUpdate, stale.
    pub fn describe(&self) -> Vec<String> {
        let Ok(st) = self.state.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (path, f) in self.files.iter().zip(&st.files) {
            for c in &f.crls {
                let next = match c.next_update() {
                    Some(t) => format!("next update {}", show_time(t)),
                    None => "no next update".into(),
                };
                out.push(format!(
                    "crl {}: issuer \"{}\", {} revoked, {}{}",
                    path.display(),
                    c.issuer(),
                    c.revoked(),
                    next,
                    if c.is_stale() {
                        match self.stale {
                            StaleCrl::Refuse => {
                                " -- STALE: chains that need it are refused \
                                 (stale_crl = \"refuse\")"
                            }
                            StaleCrl::Warn => " -- STALE: still applied (stale_crl = \"warn\")",
                        }
                    } else {
                        ""
                    }
                ));
            }
        }
        out
    }

    /// The CAs of the listener no CRL is from (RFC 2253 names): with `crl_check = "chain"`
    /// every client whose chain holds one is refused.
    pub fn cas_without_crl(&self) -> Vec<String> {
        let Ok(st) = self.state.lock() else {
            return Vec::new();
        };
        let crls: Vec<&Crl> = st.files.iter().flat_map(|f| &f.crls).collect();
        self.cas
            .iter()
            .filter(|ca| {
                !crls.iter().any(|c| {
                    // SAFETY: both names are valid for the duration of the call.
                    unsafe {
                        boring_sys::X509_NAME_cmp(ca.subject_name().as_ptr(), c.issuer_ptr()) == 0
                    }
                })
            })
            .map(|ca| crate::identity::Dn::from_x509_name(ca.subject_name()).to_rfc2253())
            .collect()
    }

    /// Which certificates need a CRL.
    pub fn check(&self) -> CrlCheck {
        self.check
    }

    /// Whether a CRL past its nextUpdate refuses or only warns.
    pub fn stale(&self) -> StaleCrl {
        self.stale
    }

    /// The current generation's store (CAs, CRLs and CRL flags), as handshakes verify against
    /// it (`certgate explain`).
    pub fn store(&self) -> X509Store {
        let g = self.current.load();
        // SAFETY: a new reference to a live store, owned by the returned value.
        unsafe {
            boring_sys::X509_STORE_up_ref(g.store.as_ptr());
            X509Store::from_ptr(g.store.as_ptr())
        }
    }

    /// Sets the current generation's store and session ID context on a new connection (from
    /// the ClientHello callback).
    pub fn prepare(&self, ssl: &mut SslRef) -> Result<(), String> {
        let g = self.current.load();
        // SAFETY: the ID is copied; set1 takes its own reference to the store; `ssl` is valid.
        let ok = unsafe {
            boring_sys::SSL_set_session_id_context(ssl.as_ptr(), g.sid_ctx.as_ptr(), 32) == 1
                && boring_sys::SSL_set1_verify_cert_store(ssl.as_ptr(), g.store.as_ptr()) == 1
        };
        if ok {
            Ok(())
        } else {
            Err("cannot set the CRL generation".into())
        }
    }

    /// Sets the current generation's store on a new upstream connection; returns the tag of
    /// that generation, which a session made on the connection carries.
    pub fn prepare_client(&self, ssl: &mut SslRef) -> Result<[u8; 32], String> {
        let g = self.current.load();
        // SAFETY: set1 takes its own reference to the store; `ssl` is valid.
        let ok =
            unsafe { boring_sys::SSL_set1_verify_cert_store(ssl.as_ptr(), g.store.as_ptr()) == 1 };
        if ok {
            Ok(g.sid_ctx)
        } else {
            Err("cannot set the CRL generation".into())
        }
    }

    /// Replaces `X509_verify_cert`: the generation's cache when `ctx` verifies against the
    /// current generation's store, else a full verification.
    pub fn verify(&self, ctx: &mut X509StoreContextRef) -> bool {
        let g = self.current.load();
        // SAFETY: read-only accessor on a live context.
        let store = unsafe { boring_sys::X509_STORE_CTX_get0_store(ctx.as_ptr()) };
        match &g.cache {
            Some(cache) if std::ptr::eq(store, g.store.as_ptr()) => cache.verify(ctx),
            _ => ctx.verify_cert().unwrap_or(false),
        }
    }

    /// Re-reads the files that changed on disk (a file that fails keeps its previous CRLs, and
    /// is logged), and swaps in a new generation when the CRLs, or (with `stale_crl =
    /// "refuse"`) their staleness, changed. Warns about stale CRLs with `stale_crl = "warn"`.
    pub fn refresh(&self) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let mut changed = false;
        for (path, f) in self.files.iter().zip(st.files.iter_mut()) {
            let now = stamp(path);
            if now == f.stamp {
                continue;
            }
            f.stamp = now;
            match read_file(path, &self.cas) {
                Ok(crls) => {
                    info!(file = %path.display(), crls = crls.len(), "CRL file reloaded");
                    f.crls = crls;
                    f.loaded = SystemTime::now();
                    changed = true;
                }
                Err(reason) => {
                    f.errors += 1;
                    error!(
                    file = %path.display(),
                    "CRL file not reloaded, the previous list stays in force: {reason}"
                    )
                }
            }
        }
        let stale = stale_flags(&st.files);
        if self.stale == StaleCrl::Warn {
            for (path, f) in self.files.iter().zip(&st.files) {
                for c in f.crls.iter().filter(|c| c.is_stale()) {
                    warn!(
                        file = %path.display(),
                        issuer = %c.issuer(),
                        "CRL is past its nextUpdate and still applied (stale_crl = \"warn\")"
                    );
                }
            }
        } else if stale != st.stale {
            changed = true;
            if stale.iter().any(|s| *s) {
                error!(
                    "a CRL is past its nextUpdate: chains that need it are refused \
                     (stale_crl = \"refuse\")"
                );
            }
        }
        if !changed {
            return;
        }
        match self.generation(&st.files, &stale) {
            Ok(g) => {
                self.current.store(Arc::new(g));
                st.stale = stale;
            }
            Err(e) => error!("cannot build the new CRL store, the previous one stays: {e}"),
        }
    }

    fn generation(&self, files: &[FileState], stale: &[bool]) -> Result<Generation, String> {
        let mut b = X509StoreBuilder::new().map_err(|e| e.to_string())?;
        for ca in &self.cas {
            b.add_cert(ca).map_err(|e| e.to_string())?;
        }
        let mut h = Hasher::new(MessageDigest::sha256()).map_err(|e| e.to_string())?;
        h.update(&self.base_sid_ctx).map_err(|e| e.to_string())?;
        h.update(b"crl").map_err(|e| e.to_string())?;
        for (c, s) in files.iter().flat_map(|f| &f.crls).zip(stale) {
            // SAFETY: the store takes its own reference to the CRL.
            let ok = unsafe { boring_sys::X509_STORE_add_crl(b.as_ptr(), c.raw.as_ptr()) };
            if ok != 1 {
                return Err(boring::error::ErrorStack::get().to_string());
            }
            h.update(&c.digest).map_err(|e| e.to_string())?;
            if self.stale == StaleCrl::Refuse {
                h.update(&[u8::from(*s)]).map_err(|e| e.to_string())?;
            }
        }
        let mut flags = X509VerifyFlags::CRL_CHECK;
        if self.check == CrlCheck::Chain {
            flags |= X509VerifyFlags::CRL_CHECK_ALL;
        }
        b.try_set_flags(flags).map_err(|e| e.to_string())?;
        let digest = h.finish().map_err(|e| e.to_string())?;
        let sid_ctx = digest
            .as_ref()
            .try_into()
            .map_err(|_| "sha256".to_string())?;
        Ok(Generation {
            store: b.build(),
            sid_ctx,
            cache: (self.cache_size > 0).then(|| VerifiedChains::new(self.cache_size)),
        })
    }

    /// The current generation's session ID context (tests).
    pub fn sid_ctx(&self) -> [u8; 32] {
        self.current.load().sid_ctx
    }
}

fn stale_flags(files: &[FileState]) -> Vec<bool> {
    files
        .iter()
        .flat_map(|f| &f.crls)
        .map(Crl::is_stale)
        .collect()
}

/// Reads, parses and checks one CRL file against `cas`.
fn read_file(path: &Path, cas: &[X509]) -> Result<Vec<Crl>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let crls = Crl::parse_all(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    for c in &crls {
        c.verify_against(cas)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(crls)
}

/// `2026-11-30 00:00:00 UTC`.
fn show_time(posix: i64) -> String {
    let (y, mo, d, h, mi, s) = crate::logging::civil(posix);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(show_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(show_time(1_795_996_800), "2026-11-30 00:00:00 UTC");
    }

    use boring::ec::{EcGroup, EcKey};
    use boring::nid::Nid;
    use boring::pkey::{PKey, Private};
    use boring::x509::{X509Builder, X509NameBuilder};

    fn ca(cn: &str) -> (X509, PKey<Private>) {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&boring::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&boring::asn1::Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        (b.build(), key)
    }

    /// A DER CRL by `issuer`, with extra extensions (each a DER `Extension`), nextUpdate at
    /// `next` (POSIX).
    fn signed(issuer: &(X509, PKey<Private>), exts: &[&[u8]], next: i64) -> Vec<u8> {
        unsafe {
            let crl = boring_sys::X509_CRL_new();
            assert_eq!(boring_sys::X509_CRL_set_version(crl, 1), 1);
            assert_eq!(
                boring_sys::X509_CRL_set_issuer_name(crl, issuer.0.subject_name().as_ptr()),
                1
            );
            let t = boring_sys::ASN1_TIME_set_posix(std::ptr::null_mut(), now() - 60);
            assert_eq!(boring_sys::X509_CRL_set1_lastUpdate(crl, t), 1);
            boring_sys::ASN1_TIME_set_posix(t, next);
            assert_eq!(boring_sys::X509_CRL_set1_nextUpdate(crl, t), 1);
            boring_sys::ASN1_TIME_free(t);
            for der in exts {
                let mut p = der.as_ptr();
                let ext =
                    boring_sys::d2i_X509_EXTENSION(std::ptr::null_mut(), &mut p, der.len() as _);
                assert!(!ext.is_null());
                assert_eq!(boring_sys::X509_CRL_add_ext(crl, ext, -1), 1);
                boring_sys::X509_EXTENSION_free(ext);
            }
            assert!(
                boring_sys::X509_CRL_sign(crl, issuer.1.as_ptr(), boring_sys::EVP_sha256()) > 0
            );
            let len = boring_sys::i2d_X509_CRL(crl, std::ptr::null_mut());
            let mut out = vec![0u8; len as usize];
            let mut p = out.as_mut_ptr();
            boring_sys::i2d_X509_CRL(crl, &mut p);
            boring_sys::X509_CRL_free(crl);
            out
        }
    }

    /// deltaCRLIndicator (2.5.29.27), critical, CRL number 1.
    const DELTA: &[u8] = &[
        0x30, 0x0D, 0x06, 0x03, 0x55, 0x1D, 0x1B, 0x01, 0x01, 0xFF, 0x04, 0x03, 0x02, 0x01, 0x01,
    ];
    /// issuingDistributionPoint (2.5.29.28), critical, indirectCRL TRUE.
    const INDIRECT: &[u8] = &[
        0x30, 0x0F, 0x06, 0x03, 0x55, 0x1D, 0x1C, 0x01, 0x01, 0xFF, 0x04, 0x05, 0x30, 0x03, 0x84,
        0x01, 0xFF,
    ];

    #[test]
    fn a_crl_is_checked_against_the_cas() {
        let a = ca("CA A");
        let b = ca("CA B");
        let impostor = ca("CA A");
        let der = signed(&a, &[], now() + 3600);
        let crls = Crl::parse_all(&der).unwrap();
        assert_eq!(crls.len(), 1);
        assert_eq!(crls[0].issuer(), "CN=CA A");
        assert!(!crls[0].is_stale());
        assert_eq!(crls[0].verify_against(&[b.0.clone(), a.0.clone()]), Ok(1));
        let e = crls[0]
            .verify_against(std::slice::from_ref(&impostor.0))
            .unwrap_err();
        assert!(e.contains("signature does not verify"), "{e}");
        let e = crls[0]
            .verify_against(std::slice::from_ref(&b.0))
            .unwrap_err();
        assert!(e.contains("not among the CAs"), "{e}");
        // PEM, two blocks in one file.
        let pem = |d: &[u8]| {
            format!(
                "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
                boring::base64::encode_block(d)
            )
        };
        let two = pem(&der) + &pem(&signed(&b, &[], now() - 10));
        let crls = Crl::parse_all(two.as_bytes()).unwrap();
        assert_eq!(crls.len(), 2);
        assert!(crls[1].is_stale());
    }

    #[test]
    fn delta_and_indirect_crls_are_refused_with_the_reason() {
        let a = ca("CA A");
        let e = Crl::parse_all(&signed(&a, &[DELTA], now() + 3600)).unwrap_err();
        assert!(
            e.contains("delta CRL, which BoringSSL does not support"),
            "{e}"
        );
        let e = Crl::parse_all(&signed(&a, &[INDIRECT], now() + 3600)).unwrap_err();
        assert!(
            e.contains("indirect CRL, which BoringSSL does not support"),
            "{e}"
        );
    }

    #[test]
    fn refresh_swaps_generations_and_keeps_the_last_good_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.crl");
        let a = ca("CA A");
        std::fs::write(&path, signed(&a, &[], now() + 3600)).unwrap();
        let settings = CrlSettings {
            files: vec![path.clone()],
            check: CrlCheck::Leaf,
            stale: StaleCrl::Refuse,
            refresh: Duration::from_secs(1),
        };
        let set = CrlSet::load(&settings, vec![a.0.clone()], b"policy", 16).unwrap();
        let first = set.sid_ctx();
        // Unchanged file: same generation.
        set.refresh();
        assert_eq!(set.sid_ctx(), first);
        // Garbage: the previous list stays, the error is counted.
        std::fs::write(&path, b"garbage").unwrap();
        set.refresh();
        assert_eq!(set.sid_ctx(), first);
        assert_eq!(set.status()[0].errors, 1);
        // A new valid CRL: a new generation.
        std::fs::write(&path, signed(&a, &[], now() + 7200)).unwrap();
        set.refresh();
        assert_ne!(set.sid_ctx(), first);
        let st = &set.status()[0];
        assert_eq!(st.errors, 1);
        assert!(st.next_update.unwrap() > now() + 3600);
        // Another listener policy with the same CRLs: another session ID context.
        let other = CrlSet::load(&settings, vec![a.0.clone()], b"other", 16).unwrap();
        assert_ne!(other.sid_ctx(), set.sid_ctx());
    }

    #[test]
    fn garbage_is_not_a_crl() {
        assert!(Crl::parse_all(b"hello").unwrap_err().contains("not a CRL"));
        let e = Crl::parse_all(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert!(e.contains("\"CERTIFICATE\" PEM block"), "{e}");
    }
}
