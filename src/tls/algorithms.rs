//! Which algorithms a handshake may use: signature schemes (both directions), TLS 1.2 cipher
//! suites and key-agreement groups, with the defaults in one place and the checks `Config`
//! runs on what a user writes (names BoringSSL does not know are refused, listing those it does).

use std::ffi::{CStr, CString};

use boring::ssl::{SslContextBuilder, SslMethod};

/// Key agreement, most preferred first: the hybrid post-quantum group (as Cloudflare's edge and
/// current browsers offer), then X25519 and P-256 for clients without it.
pub const DEFAULT_GROUPS: &str = "X25519MLKEM768:X25519:P-256";

/// TLS 1.2 suites, AES-128-GCM and ChaCha20 first: SHA-384 alone costs several percent of a
/// handshake here. (BoringSSL's TLS 1.3 order is fixed and already prefers AES-128-GCM.)
pub const DEFAULT_TLS12_CIPHERS: &str =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";

/// The TLS 1.3 suites BoringSSL offers, always, in this order; not configurable.
pub const TLS13_SUITES: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Signature schemes by their TLS (IANA) name, as `signature_algorithms` takes them.
pub const SIGNATURE_SCHEMES: [(&str, u16); 12] = [
    ("ed25519", 0x0807),
    ("ecdsa_secp256r1_sha256", 0x0403),
    ("ecdsa_secp384r1_sha384", 0x0503),
    ("ecdsa_secp521r1_sha512", 0x0603),
    ("rsa_pss_rsae_sha256", 0x0804),
    ("rsa_pss_rsae_sha384", 0x0805),
    ("rsa_pss_rsae_sha512", 0x0806),
    ("rsa_pkcs1_sha256", 0x0401),
    ("rsa_pkcs1_sha384", 0x0501),
    ("rsa_pkcs1_sha512", 0x0601),
    ("rsa_pkcs1_sha1", 0x0201),
    ("ecdsa_sha1", 0x0203),
];

/// OpenSSL's `SignatureAlgorithms` spellings (`ssl_conf_command`), for configurations pasted
/// from nginx.
const OPENSSL_ALIASES: [(&str, &str); 11] = [
    ("ecdsa+sha256", "ecdsa_secp256r1_sha256"),
    ("ecdsa+sha384", "ecdsa_secp384r1_sha384"),
    ("ecdsa+sha512", "ecdsa_secp521r1_sha512"),
    ("rsa-pss+sha256", "rsa_pss_rsae_sha256"),
    ("rsa-pss+sha384", "rsa_pss_rsae_sha384"),
    ("rsa-pss+sha512", "rsa_pss_rsae_sha512"),
    ("rsa+sha256", "rsa_pkcs1_sha256"),
    ("rsa+sha384", "rsa_pkcs1_sha384"),
    ("rsa+sha512", "rsa_pkcs1_sha512"),
    ("rsa+sha1", "rsa_pkcs1_sha1"),
    ("ecdsa+sha1", "ecdsa_sha1"),
];

/// What a peer's signature is verified with by default, in the order the CertificateRequest (and
/// certgate's ClientHello upstream) lists them: every client key type (Ed25519, ECDSA P-256 and
/// P-384, RSA with PSS or PKCS#1), never SHA-1. BoringSSL's own default omits Ed25519, which
/// is why an Ed25519 client certificate used to fail, and ends with rsa_pkcs1_sha1.
pub const DEFAULT_VERIFY: [u16; 9] = [
    0x0807, // ed25519
    0x0403, // ecdsa_secp256r1_sha256
    0x0503, // ecdsa_secp384r1_sha384
    0x0804, // rsa_pss_rsae_sha256
    0x0805, // rsa_pss_rsae_sha384
    0x0806, // rsa_pss_rsae_sha512
    0x0401, // rsa_pkcs1_sha256
    0x0501, // rsa_pkcs1_sha384
    0x0601, // rsa_pkcs1_sha512
];

/// What certgate signs with (its server certificate, its client certificate upstream): any
/// key type, never SHA-1 (BoringSSL's default falls back to SHA-1 for a peer offering nothing
/// else; such a peer is refused instead).
pub const DEFAULT_SIGN: [u16; 10] = [
    0x0807, // ed25519
    0x0403, // ecdsa_secp256r1_sha256
    0x0804, // rsa_pss_rsae_sha256
    0x0401, // rsa_pkcs1_sha256
    0x0503, // ecdsa_secp384r1_sha384
    0x0805, // rsa_pss_rsae_sha384
    0x0501, // rsa_pkcs1_sha384
    0x0603, // ecdsa_secp521r1_sha512
    0x0806, // rsa_pss_rsae_sha512
    0x0601, // rsa_pkcs1_sha512
];

/// The TLS name of a signature scheme code point, if it is one of [`SIGNATURE_SCHEMES`].
pub fn scheme_name(code: u16) -> Option<&'static str> {
    SIGNATURE_SCHEMES
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(n, _)| *n)
}

/// Whether a scheme hashes with SHA-1.
pub fn is_sha1(code: u16) -> bool {
    code & 0xff00 == 0x0200
}

/// One `signature_algorithms` entry: its code point, or why it is refused (naming the valid
/// names).
pub fn signature_scheme(name: &str) -> Result<u16, String> {
    let lower = name.trim().to_ascii_lowercase();
    let canonical = OPENSSL_ALIASES
        .iter()
        .find(|(alias, _)| *alias == lower)
        .map_or(lower.as_str(), |(_, n)| n);
    SIGNATURE_SCHEMES
        .iter()
        .find(|(n, _)| *n == canonical)
        .map(|(_, c)| *c)
        .ok_or_else(|| {
            let valid: Vec<&str> = SIGNATURE_SCHEMES.iter().map(|(n, _)| *n).collect();
            format!(
                "{name:?} is not a signature scheme BoringSSL knows; valid names: {}",
                valid.join(", ")
            )
        })
}

/// A `ciphers` value, checked: the TLS 1.2 list BoringSSL is given, and the TLS 1.3 names the
/// user wrote, which have no effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ciphers {
    /// OpenSSL syntax, TLS 1.3 names removed; the default list when only those were written.
    pub tls12: String,
    /// TLS 1.3 suite names found in the value (ignored: BoringSSL fixes them).
    pub tls13_ignored: Vec<String>,
    /// Exclusions (`!aNULL`, `!MD5`, `-RC4`...) of names BoringSSL does not have: they exclude
    /// nothing, so they are dropped (nginx's default `HIGH:!aNULL:!MD5` then works).
    pub exclusions_ignored: Vec<String>,
}

/// Checks a `ciphers` value in OpenSSL syntax (`ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE+AESGCM:!SHA1`).
/// TLS 1.3 suite names are taken out (see [`Ciphers::tls13_ignored`]); a name BoringSSL does not
/// know, or a list that selects no cipher, is refused with the valid names.
pub fn ciphers(list: &str) -> Result<Ciphers, String> {
    let mut kept = Vec::new();
    let mut tls13_ignored = Vec::new();
    let mut exclusions_ignored = Vec::new();
    for token in list
        .split([':', ',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        if token.starts_with("TLS_") || token.starts_with("TLS13-") {
            tls13_ignored.push(token.to_owned());
        } else if token.starts_with(['!', '-']) && !try_cipher_list(&format!("ALL:{}", &token[1..]))
        {
            exclusions_ignored.push(token.to_owned());
        } else {
            kept.push(token);
        }
    }
    if kept.is_empty() {
        if tls13_ignored.is_empty() {
            return Err(format!(
                "is empty; write TLS 1.2 suites in OpenSSL syntax, e.g. \"{DEFAULT_TLS12_CIPHERS}\""
            ));
        }
        return Ok(Ciphers {
            tls12: DEFAULT_TLS12_CIPHERS.to_owned(),
            tls13_ignored,
            exclusions_ignored,
        });
    }
    let tls12 = kept.join(":");
    if try_cipher_list(&tls12) {
        return Ok(Ciphers {
            tls12,
            tls13_ignored,
            exclusions_ignored,
        });
    }
    // Name the token BoringSSL refused: each one alone after "ALL" (so "!x" and "-x" are
    // judged by the name they exclude).
    let unknown = kept.iter().find(|t| {
        t.trim_start_matches(['!', '-', '+'])
            .trim_matches(['[', ']'])
            .split('|')
            .any(|part| !try_cipher_list(&format!("ALL:{part}")))
    });
    match unknown {
        Some(t) => Err(format!(
            "{t:?} is not a cipher BoringSSL knows; valid TLS 1.2 names: {} (and OpenSSL's \
             selectors, e.g. ECDHE+AESGCM, !SHA1)",
            tls12_cipher_names().join(", ")
        )),
        None => Err(format!(
            "{tls12:?} selects no TLS 1.2 cipher BoringSSL supports; valid names: {}",
            tls12_cipher_names().join(", ")
        )),
    }
}

/// Whether BoringSSL takes `list` in strict mode (every name known, at least one cipher).
fn try_cipher_list(list: &str) -> bool {
    let Ok(mut b) = SslContextBuilder::new(SslMethod::tls()) else {
        return false;
    };
    let ok = b.set_strict_cipher_list(list).is_ok();
    // The refusal's reason stays in the thread's error queue otherwise.
    let _ = boring::error::ErrorStack::get();
    ok
}

/// BoringSSL's TLS 1.2 cipher suite names.
pub fn tls12_cipher_names() -> Vec<&'static str> {
    names(boring_sys::SSL_get_all_cipher_names)
        .into_iter()
        .filter(|n| !n.starts_with("TLS_") && !n.starts_with('('))
        .collect()
}

/// BoringSSL's key-agreement group names.
pub fn group_names() -> Vec<&'static str> {
    names(boring_sys::SSL_get_all_group_names)
}

fn names(
    all: unsafe extern "C" fn(*mut *const std::os::raw::c_char, usize) -> usize,
) -> Vec<&'static str> {
    let mut ptrs = [std::ptr::null(); 128];
    // SAFETY: BoringSSL writes at most `len` pointers to static NUL-terminated strings.
    let n = unsafe { all(ptrs.as_mut_ptr(), ptrs.len()) }.min(ptrs.len());
    ptrs[..n]
        .iter()
        .filter(|p| !p.is_null())
        // SAFETY: static strings, never freed.
        .filter_map(|p| unsafe { CStr::from_ptr(*p) }.to_str().ok())
        .collect()
}

/// Checks `groups` entries (one name each; an entry `"X25519:P-256"` is split as nginx's
/// `ssl_ecdh_curve` value would be) and returns BoringSSL's list, or the index of the first
/// entry BoringSSL does not know with the reason listing the valid names.
pub fn groups(entries: &[&str]) -> Result<String, (usize, String)> {
    let mut names = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        for name in entry.split(':').map(str::trim).filter(|n| !n.is_empty()) {
            if !try_groups(name) {
                return Err((
                    i,
                    format!(
                        "{name:?} is not a key-agreement group BoringSSL knows; valid names: {}",
                        group_names().join(", ")
                    ),
                ));
            }
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err((
            0,
            format!(
                "is empty; the default is [\"{}\"]",
                DEFAULT_GROUPS.replace(':', "\", \"")
            ),
        ));
    }
    Ok(names.join(":"))
}

fn try_groups(list: &str) -> bool {
    let Ok(c) = CString::new(list) else {
        return false;
    };
    let Ok(b) = SslContextBuilder::new(SslMethod::tls()) else {
        return false;
    };
    // SAFETY: a setter on a context owned here.
    let ok = unsafe { boring_sys::SSL_CTX_set1_groups_list(b.as_ptr(), c.as_ptr()) } == 1;
    let _ = boring::error::ErrorStack::get();
    ok
}

/// Applies the algorithm choices common to both sides to a context being built: TLS 1.2
/// ciphers, groups, the schemes a peer's signature is verified with and those certgate signs
/// with (on the context's own certificate; added credentials set theirs).
pub(super) fn apply(
    b: &mut SslContextBuilder,
    ciphers: Option<&str>,
    groups: Option<&str>,
    verify: Option<&[u16]>,
) -> Result<(), boring::error::ErrorStack> {
    b.set_cipher_list(ciphers.unwrap_or(DEFAULT_TLS12_CIPHERS))?;
    // A NUL cannot pass `groups`; BoringSSL then refuses the empty list below.
    let groups = CString::new(groups.unwrap_or(DEFAULT_GROUPS)).unwrap_or_default();
    let verify = verify.unwrap_or(&DEFAULT_VERIFY);
    // SAFETY: setters on the context being built; BoringSSL copies the lists.
    unsafe {
        cvt(boring_sys::SSL_CTX_set1_groups_list(
            b.as_ptr(),
            groups.as_ptr(),
        ))?;
        cvt(boring_sys::SSL_CTX_set_verify_algorithm_prefs(
            b.as_ptr(),
            verify.as_ptr(),
            verify.len(),
        ))?;
        cvt(boring_sys::SSL_CTX_set_signing_algorithm_prefs(
            b.as_ptr(),
            DEFAULT_SIGN.as_ptr(),
            DEFAULT_SIGN.len(),
        ))?;
    }
    Ok(())
}

fn cvt(r: std::os::raw::c_int) -> Result<(), boring::error::ErrorStack> {
    if r == 1 {
        Ok(())
    } else {
        Err(boring::error::ErrorStack::get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_schemes_take_tls_and_openssl_names() {
        assert_eq!(signature_scheme("ed25519"), Ok(0x0807));
        assert_eq!(signature_scheme("RSA_PSS_RSAE_SHA256"), Ok(0x0804));
        assert_eq!(signature_scheme("ECDSA+SHA384"), Ok(0x0503));
        assert_eq!(signature_scheme("rsa-pss+sha256"), Ok(0x0804));
        let e = signature_scheme("rsa_pss_pss_sha256").unwrap_err();
        assert!(e.contains("\"rsa_pss_pss_sha256\" is not"), "{e}");
        assert!(e.contains("ed25519, ecdsa_secp256r1_sha256"), "{e}");
    }

    #[test]
    fn defaults_have_no_sha1_and_verify_every_client_key_type() {
        assert!(!DEFAULT_VERIFY.iter().any(|c| is_sha1(*c)));
        assert!(!DEFAULT_SIGN.iter().any(|c| is_sha1(*c)));
        for name in [
            "ed25519",
            "ecdsa_secp256r1_sha256",
            "ecdsa_secp384r1_sha384",
            "rsa_pss_rsae_sha256",
            "rsa_pkcs1_sha256",
        ] {
            let code = signature_scheme(name).unwrap();
            assert!(DEFAULT_VERIFY.contains(&code), "{name}");
        }
        assert!(is_sha1(signature_scheme("rsa_pkcs1_sha1").unwrap()));
        assert_eq!(scheme_name(0x0807), Some("ed25519"));
    }

    #[test]
    fn ciphers_drop_tls13_names_and_refuse_unknown_ones() {
        let c = ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256").unwrap();
        assert_eq!(c.tls12, "ECDHE-ECDSA-AES128-GCM-SHA256");
        assert_eq!(c.tls13_ignored, ["TLS_AES_128_GCM_SHA256"]);
        let c = ciphers("TLS_AES_256_GCM_SHA384").unwrap();
        assert_eq!(c.tls12, DEFAULT_TLS12_CIPHERS);
        assert!(ciphers("ECDHE+AESGCM:!SHA1").is_ok());
        // nginx's default ssl_ciphers.
        let c = ciphers("HIGH:!aNULL:!MD5").unwrap();
        assert_eq!(c.tls12, "HIGH");
        assert_eq!(c.exclusions_ignored, ["!aNULL", "!MD5"]);
        let e = ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:RC4-MD5").unwrap_err();
        assert!(e.starts_with("\"RC4-MD5\" is not a cipher"), "{e}");
        assert!(e.contains("ECDHE-ECDSA-AES128-GCM-SHA256"), "{e}");
        assert!(ciphers("").is_err());
        // No name unknown, but nothing selected.
        let e = ciphers("!ALL").unwrap_err();
        assert!(e.contains("selects no TLS 1.2 cipher"), "{e}");
    }

    #[test]
    fn groups_check_names_and_split_nginx_lists() {
        assert_eq!(
            groups(&["X25519MLKEM768", "X25519", "P-256"]),
            Ok(DEFAULT_GROUPS.to_owned())
        );
        assert_eq!(groups(&["X25519:P-384"]), Ok("X25519:P-384".to_owned()));
        // OpenSSL's names, as nginx's ssl_ecdh_curve takes them.
        assert!(groups(&["X25519:prime256v1:secp384r1"]).is_ok());
        let (i, e) = groups(&["X25519", "X448"]).unwrap_err();
        assert_eq!(i, 1);
        assert!(e.contains("\"X448\" is not"), "{e}");
        assert!(e.contains("X25519MLKEM768"), "{e}");
        assert!(groups(&[]).is_err());
    }
}
