//! Certificate authorities a test makes for itself (rcgen), for what the shared test PKI
//! (`certgate_tools::pki`) does not hold: CAs whose clients have known serial numbers, and CRLs
//! that revoke them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber, PKCS_ECDSA_P256_SHA256,
};

use super::{CertKey, Env};

/// Seconds in an hour and in a day, for CRL validity.
pub const HOUR: i64 = 3600;
pub const DAY: i64 = 24 * HOUR;

/// A CA's certificate parameters: common name `cn`, serial `serial`, allowed to sign
/// certificates and CRLs.
pub fn ca_params(cn: &str, serial: u64) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.serial_number = Some(SerialNumber::from(serial));
    p
}

/// A self-signed CA (ECDSA P-256): the issuer and its certificate's PEM.
pub fn root(cn: &str, serial: u64) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let params = ca_params(cn, serial);
    let pem = params.self_signed(&key).unwrap().pem();
    (Issuer::new(params, key), pem)
}

/// A client certificate (ECDSA P-256, extended key usage clientAuth) with common name `cn` and
/// serial `serial`, signed by `issuer`: written as `{stem}.pem` (followed by `chain`, the PEM of
/// any intermediates) and `{stem}.key` in `env`.
pub fn client(
    env: &Env,
    stem: &str,
    cn: &str,
    serial: u64,
    issuer: &Issuer<'_, KeyPair>,
    chain: &str,
) -> CertKey {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.serial_number = Some(SerialNumber::from(serial));
    let cert = p.signed_by(&key, issuer).unwrap();
    CertKey {
        cert: env.write(&format!("{stem}.pem"), cert.pem() + chain),
        key: env.write(&format!("{stem}.key"), key.serialize_pem()),
    }
}

/// A PEM CRL by `issuer` revoking `serials` (a minute ago), with nextUpdate `next_update`
/// seconds from now: negative makes it stale (thisUpdate an hour before that), else thisUpdate
/// is five minutes ago. Each CRL gets a new number.
pub fn crl(issuer: &Issuer<'_, KeyPair>, serials: &[u64], next_update: i64) -> String {
    static NUMBER: AtomicU64 = AtomicU64::new(1);
    // rcgen's times are the `time` crate's, which the tools' tests (they include this harness)
    // do not depend on: reach them from rcgen's own constructor and std durations.
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970");
    let at = |secs: i64| match u64::try_from(secs) {
        Ok(s) => now + Duration::from_secs(s),
        Err(_) => now - Duration::from_secs(secs.unsigned_abs()),
    };
    let this_update = if next_update < 0 {
        at(next_update - HOUR)
    } else {
        at(-300)
    };
    CertificateRevocationListParams {
        this_update,
        next_update: at(next_update),
        crl_number: SerialNumber::from(NUMBER.fetch_add(1, Ordering::Relaxed)),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: at(-60),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .unwrap()
    .pem()
    .unwrap()
}
