//! Checks of certificate, key and CA files before BoringSSL sees them, so that the usual
//! mistakes (a key that belongs to another certificate, a chain in the wrong order, an encrypted
//! key, a certificate given as the key) are reported in sentences with the fix, not as
//! BoringSSL reason codes.

use boring::pkey::{PKey, Private};
use boring::x509::X509;

use crate::identity::Dn;

/// Which of the two files of an identity a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Which {
    Certificate,
    PrivateKey,
}

/// Checks a certificate chain (leaf first) and the private key of its leaf.
pub(super) fn identity(cert_pem: &[u8], key_pem: &[u8]) -> Result<(), (Which, String)> {
    let chain = chain(cert_pem).map_err(|r| (Which::Certificate, r))?;
    let key = private_key(key_pem).map_err(|r| (Which::PrivateKey, r))?;
    let leaf = &chain[0];
    let leaf_key = leaf
        .public_key()
        .map_err(|e| (Which::Certificate, explain(&e.to_string())))?;
    if leaf_key.public_eq(&key) {
        return Ok(());
    }
    if let Some(pos) = chain[1..]
        .iter()
        .position(|c| c.public_key().map(|k| k.public_eq(&key)).unwrap_or(false))
    {
        return Err((
            Which::Certificate,
            format!(
                "the certificates are in the wrong order: the private key belongs to certificate \
                 {} in the file ({}), but the first one must be the server's own (leaf) \
                 certificate, followed by the certificates that issued it",
                pos + 2,
                name(&chain[pos + 1])
            ),
        ));
    }
    Err((
        Which::PrivateKey,
        format!(
            "the private key does not match the certificate ({}): give the key that certificate \
             was made with (`openssl x509 -noout -pubkey -in CERT` and `openssl pkey -pubout -in \
             KEY` print the same key when they match)",
            name(leaf)
        ),
    ))
}

/// Parses a certificate chain: at least one certificate, each one issued by the next.
fn chain(pem: &[u8]) -> Result<Vec<X509>, String> {
    let text = String::from_utf8_lossy(pem);
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        if text.contains("PRIVATE KEY-----") {
            return Err(
                "holds a private key, not a certificate: are certificate and private_key swapped?"
                    .into(),
            );
        }
        return Err(
            "no PEM certificate found (expected -----BEGIN CERTIFICATE-----; convert \
                    DER with `openssl x509 -inform der -in FILE -out FILE.pem`)"
                .into(),
        );
    }
    let chain = X509::stack_from_pem(pem).map_err(|e| {
        format!(
            "not a valid PEM certificate chain: {}",
            explain(&e.to_string())
        )
    })?;
    if chain.is_empty() {
        return Err("no PEM certificate found (expected -----BEGIN CERTIFICATE-----)".into());
    }
    for (i, pair) in chain.windows(2).enumerate() {
        let (cert, next) = (&pair[0], &pair[1]);
        if issued_by(cert, next) {
            continue;
        }
        if issued_by(next, cert) {
            return Err(format!(
                "the certificates are in the wrong order: certificate {} ({}) was issued by \
                 certificate {} ({}) before it; write the leaf first, then each issuer after \
                 the certificate it issued",
                i + 2,
                name(next),
                i + 1,
                name(cert)
            ));
        }
        return Err(format!(
            "certificate {} ({}) was not issued by certificate {} ({}) that follows it: the \
             file must hold the leaf first, then each issuer after the certificate it issued",
            i + 1,
            name(cert),
            i + 2,
            name(next)
        ));
    }
    Ok(chain)
}

/// Parses CA certificates (any order).
pub(super) fn cas(pem: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(pem);
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(
            "no PEM certificate found (expected -----BEGIN CERTIFICATE-----): give the CA \
             certificates that issued the certificates to trust"
                .into(),
        );
    }
    X509::stack_from_pem(pem)
        .map(|_| ())
        .map_err(|e| format!("not valid PEM certificates: {}", explain(&e.to_string())))
}

fn private_key(pem: &[u8]) -> Result<PKey<Private>, String> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(
            "the private key is encrypted (it has a passphrase); certgate needs it \
                    unencrypted: `openssl pkey -in KEY -out KEY.plain` asks for the passphrase \
                    and writes it decrypted (then chmod 600 it and name that file here)"
                .into(),
        );
    }
    if !text.contains("PRIVATE KEY-----") {
        if text.contains("-----BEGIN CERTIFICATE-----") {
            return Err(
                "holds a certificate, not a private key: are certificate and private_key swapped?"
                    .into(),
            );
        }
        return Err(
            "no PEM private key found (expected -----BEGIN PRIVATE KEY-----, \
                    -----BEGIN RSA PRIVATE KEY----- or -----BEGIN EC PRIVATE KEY-----)"
                .into(),
        );
    }
    // A password callback that refuses, so nothing ever prompts on a terminal.
    PKey::private_key_from_pem_callback(pem, |_| Ok(0))
        .map_err(|e| format!("not a valid PEM private key: {}", explain(&e.to_string())))
}

/// `cert` was issued by `issuer`: names chain and the signature verifies.
fn issued_by(cert: &X509, issuer: &X509) -> bool {
    let names = cert.issuer_name().to_der().ok() == issuer.subject_name().to_der().ok();
    names
        && issuer
            .public_key()
            .and_then(|k| cert.verify(&k))
            .unwrap_or(false)
}

fn name(cert: &X509) -> String {
    let dn = Dn::from_x509_name(cert.subject_name()).to_rfc2253();
    if dn.is_empty() {
        "no subject".into()
    } else {
        dn
    }
}

/// BoringSSL reason codes that the checks above do not already catch, in words.
pub(super) fn explain(boring: &str) -> String {
    const CODES: [(&str, &str); 8] = [
        (
            "KEY_VALUES_MISMATCH",
            "the private key does not match the certificate",
        ),
        (
            "BAD_PASSWORD_READ",
            "the private key is encrypted; decrypt it with `openssl pkey -in KEY -out KEY.plain`",
        ),
        ("NO_START_LINE", "no PEM block found"),
        ("BAD_END_LINE", "a PEM block is cut off (no -----END line)"),
        ("BAD_BASE64_DECODE", "a PEM block holds invalid base64"),
        (
            "UNKNOWN_CERTIFICATE_TYPE",
            "the certificate's key type is not supported",
        ),
        (
            "KEY_USAGE_BIT_INCORRECT",
            "the certificate's key usage does not allow this use",
        ),
        ("DECODE_ERROR", "a PEM block does not hold valid DER"),
    ];
    let found: Vec<&str> = CODES
        .iter()
        .filter(|(code, _)| boring.contains(code))
        .map(|(_, text)| *text)
        .collect();
    if found.is_empty() {
        boring.to_owned()
    } else {
        found.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pki() -> (tempfile::TempDir, crate::pki::Pki) {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::generate(dir.path()).unwrap();
        (dir, pki)
    }

    fn read(p: &std::path::Path) -> Vec<u8> {
        std::fs::read(p).unwrap()
    }

    #[test]
    fn identities() {
        let (_dir, pki) = pki();
        let chain = read(&pki.server.cert);
        let key = read(&pki.server.key);
        assert!(identity(&chain, &key).is_ok());

        let (which, why) = identity(&chain, &read(&pki.client1.key)).unwrap_err();
        assert_eq!(which, Which::PrivateKey);
        assert!(
            why.contains("does not match the certificate (CN=localhost"),
            "{why}"
        );

        // Intermediate first, then the leaf.
        let text = String::from_utf8(chain.clone()).unwrap();
        let split = text.find("-----BEGIN CERTIFICATE-----\n").unwrap();
        let second = text[split + 1..].find("-----BEGIN").unwrap() + split + 1;
        let swapped = format!("{}{}", &text[second..], &text[..second]);
        let (which, why) = identity(swapped.as_bytes(), &key).unwrap_err();
        assert_eq!(which, Which::Certificate);
        assert!(why.contains("wrong order"), "{why}");

        let (which, why) = identity(&key, &chain).unwrap_err();
        assert_eq!(which, Which::Certificate);
        assert!(why.contains("swapped"), "{why}");

        let encrypted =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let (which, why) = identity(&chain, encrypted).unwrap_err();
        assert_eq!(which, Which::PrivateKey);
        assert!(why.contains("openssl pkey"), "{why}");
    }

    #[test]
    fn codes_become_words() {
        assert_eq!(
            explain(
                "error:0b000074:X.509 certificate routines:OPENSSL_internal:KEY_VALUES_MISMATCH"
            ),
            "the private key does not match the certificate"
        );
        assert_eq!(explain("something else"), "something else");
    }
}
