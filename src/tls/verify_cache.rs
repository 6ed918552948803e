//! A cache of client certificate chains that already verified, so a returning client costs one
//! signature check (its CertificateVerify) instead of three.
//!
//! Safety argument: the key is the SHA-256 of every certificate the client presented (leaf
//! first, DER), so a hit means the exact same bytes verified before against the same trust store
//! (one cache per listener context: a new CA set builds a new context and so an empty cache;
//! with CRLs, one cache per CRL generation, so a CRL change empties it: see `tls::crl`).
//! Only successes are cached; an entry is used only while the current time is before the
//! earliest notAfter of the verified chain and within a maximum age, after which the chain is
//! verified in full again. Everything else — a different chain, a failure, an expired entry —
//! takes the full `X509_verify_cert` path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use boring::asn1::Asn1Time;
use boring::hash::{Hasher, MessageDigest};
use boring::x509::{X509StoreContextRef, X509VerifyResult};

/// How long a verified chain is trusted without re-verifying, at most.
pub const MAX_AGE: Duration = Duration::from_secs(300);

struct Entry {
    /// The earlier of the chain's first notAfter and the maximum age.
    expires: Instant,
}

/// One listener context's cache of verified chains, shared by every worker; entries live at most
/// [`MAX_AGE`].
pub struct VerifiedChains {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
    capacity: usize,
    max_age: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl VerifiedChains {
    /// A cache of at most `capacity` chains (when full, an arbitrary entry is dropped).
    pub fn new(capacity: usize) -> Self {
        Self::with_max_age(capacity, MAX_AGE)
    }

    /// As [`VerifiedChains::new`], with entries trusted for at most `max_age`.
    pub fn with_max_age(capacity: usize, max_age: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::with_capacity(capacity.min(4096))),
            capacity,
            max_age,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Replaces `X509_verify_cert` for a TLS context (`SSL_CTX_set_cert_verify_callback`).
    pub fn verify(&self, ctx: &mut X509StoreContextRef) -> bool {
        let Some(key) = chain_key(ctx) else {
            return full_verify(ctx);
        };
        if self.is_fresh(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            crate::metrics::verify_cache(true);
            ctx.set_error(X509VerifyResult::Ok(()));
            return true;
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        crate::metrics::verify_cache(false);
        let ok = full_verify(ctx);
        // With `reject = "http"` the per-certificate callback lets a failing chain "succeed"
        // with the error recorded: only a chain with no error at all is cached.
        if ok && ctx.verify_result().is_ok() {
            if let Some(left) = time_left(ctx) {
                self.insert(key, Instant::now() + left.min(self.max_age));
            }
        }
        ok
    }

    fn is_fresh(&self, key: &[u8; 32]) -> bool {
        let Ok(mut entries) = self.entries.lock() else {
            return false;
        };
        let Some(entry) = entries.get(key) else {
            return false;
        };
        if Instant::now() < entry.expires {
            return true;
        }
        entries.remove(key);
        false
    }

    fn insert(&self, key: [u8; 32], expires: Instant) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity {
            // Full: drop an arbitrary entry; a dropped client only pays a full check again.
            if let Some(victim) = entries.keys().next().copied() {
                entries.remove(&victim);
            }
        }
        entries.insert(key, Entry { expires });
    }

    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Chains currently held.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// True when no chain is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn full_verify(ctx: &mut X509StoreContextRef) -> bool {
    ctx.verify_cert().unwrap_or(false)
}

/// SHA-256 over the SHA-256 of each presented certificate, leaf first.
fn chain_key(ctx: &X509StoreContextRef) -> Option<[u8; 32]> {
    // The certificate being verified (`current_cert` is only set during verification).
    let leaf = ctx.cert()?;
    let mut h = Hasher::new(MessageDigest::sha256()).ok()?;
    h.update(&leaf.digest(MessageDigest::sha256()).ok()?).ok()?;
    if let Some(untrusted) = ctx.untrusted() {
        for cert in untrusted {
            h.update(&cert.digest(MessageDigest::sha256()).ok()?).ok()?;
        }
    }
    let digest = h.finish().ok()?;
    digest.as_ref().try_into().ok()
}

/// How long from now until the earliest notAfter of the chain that just verified.
fn time_left(ctx: &X509StoreContextRef) -> Option<Duration> {
    let now = Asn1Time::days_from_now(0).ok()?;
    let mut left: Option<i64> = None;
    for cert in ctx.chain()? {
        let d = now.diff(cert.not_after()).ok()?;
        let secs = i64::from(d.days) * 86_400 + i64::from(d.secs);
        left = Some(left.map_or(secs, |l| l.min(secs)));
    }
    u64::try_from(left?).ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use boring::x509::store::X509StoreBuilder;
    use boring::x509::{X509StoreContext, X509};

    fn verify_with(
        cache: &VerifiedChains,
        pki: &crate::pki::Pki,
        client: &crate::pki::CertKey,
    ) -> bool {
        let bundle = X509::stack_from_pem(&std::fs::read(&pki.client_ca_bundle).unwrap()).unwrap();
        let mut store = X509StoreBuilder::new().unwrap();
        for ca in &bundle {
            store.add_cert(ca).unwrap();
        }
        let store = store.build();
        let chain = X509::stack_from_pem(&std::fs::read(&client.cert).unwrap()).unwrap();
        let mut untrusted = boring::stack::Stack::new().unwrap();
        for c in &chain[1..] {
            untrusted.push(c.clone()).unwrap();
        }
        let mut ctx = X509StoreContext::new().unwrap();
        ctx.init(&store, &chain[0], &untrusted, |c| Ok(cache.verify(c)))
            .unwrap()
    }

    #[test]
    fn second_verification_of_the_same_chain_is_a_hit() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::generate(dir.path()).unwrap();
        let cache = VerifiedChains::new(16);
        assert!(verify_with(&cache, &pki, &pki.client1));
        assert!(verify_with(&cache, &pki, &pki.client1));
        assert!(verify_with(&cache, &pki, &pki.client1));
        assert_eq!(cache.stats(), (2, 1));
        // Another chain, and failures, never hit.
        assert!(!verify_with(&cache, &pki, &pki.expired));
        assert!(!verify_with(&cache, &pki, &pki.expired));
        assert!(!verify_with(&cache, &pki, &pki.rogue));
        assert_eq!(cache.stats(), (2, 4));
        assert_eq!(cache.len(), 1);
    }
}
