//! A throw-away PKI for the demo and the integration tests.
//!
//! [`generate`] writes a small but deliberately awkward certificate hierarchy into a directory:
//! the certificates a proxy in front of a real service has to tell apart. Everything is ECDSA
//! P-256 except the key-type clients (Ed25519, P-384, RSA) and the RSA server certificate; every
//! file is PEM; private keys are PKCS#8 and created with mode 0600.
//!
//! ```text
//! Acme Root CA (/C=FI/O=Acme/CN=Acme Root CA)
//! ├── Intermediate 1 ──┬── localhost (server, SAN localhost, 127.0.0.1, ::1)
//! │                    ├── client.1.local        client1.pem   the admitted client
//! │                    ├── client.1.local.evil.com  lookalike.pem (subject look-alike)
//! │                    ├── client.1.local + OU=x  extra-attr.pem (extra RDN)
//! │                    └── client.1.local, expired in 2020  expired.pem
//! ├── Intermediate 2 ──┬── client.2.local        client2.pem   valid, other issuer
//! │                    └── spiffe://acme.test/ns/prod/sa/web  spiffe.pem (URI SAN)
//! ├── Intermediate 10 ──── client.10.local       int10-client.pem (issuer look-alike)
//! └── Intermediate 1 (again) ─┬── client.ed25519.local  client-ed25519.pem (Ed25519 key)
//!                             ├── client.p384.local     client-p384.pem    (ECDSA P-384 key)
//!                             ├── client.rsa.local      client-rsa.pem     (RSA 2048 key)
//!                             ├── localhost (RSA 2048)  server-rsa-chain.pem, server-rsa.key
//!                             └── api.acme.test (SAN api.acme.test, *.partner.test)
//!                                 server-sni-chain.pem, server-sni.key (an SNI block's)
//!
//! Partner Root CA (/C=FI/O=Partner/CN=Partner Root CA)  partner-ca.pem, a second client CA
//! └── client.partner.test                             partner-client.pem
//! "Intermediate 1" (self-signed, NOT the real one: same DN, different key)
//!                      └── client.1.local        rogue.pem     must never verify
//! ```
//!
//! `client-ca-bundle.pem` (root + Intermediates 1, 2 and 10) is what a listener trusts for client
//! certificates; `server-ca.pem` (the root) is what a client trusts for the server. Client
//! certificate files hold the leaf followed by its issuing CA, as a client sends them.
//!
//! This is test material: the CA private keys are never written out, and nothing here is meant
//! to protect anything.

use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use rcgen::string::{Ia5String, PrintableString};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

/// Distinguished names of the generated certificates, as the proxy reports them.
///
/// `*_DN` constants are RFC 2253 (most specific RDN first, as in `X-SSL-Client-S-DN`);
/// `*_LEGACY` constants are the OpenSSL one-line form (as in `X-SSL-Client-S-DN-Legacy` and as
/// nginx users write issuer rules).
pub mod dn {
    /// Subject of `client1.pem`, the admitted client.
    pub const CLIENT1: &str = "CN=client.1.local,O=Internet Widgits Pty Ltd,ST=Some-State,C=FI";
    /// Subject of `client1.pem` in the legacy one-line form.
    pub const CLIENT1_LEGACY: &str =
        "/C=FI/ST=Some-State/O=Internet Widgits Pty Ltd/CN=client.1.local";
    /// Subject of `client2.pem`.
    pub const CLIENT2: &str = "CN=client.2.local,O=Internet Widgits Pty Ltd,ST=Some-State,C=FI";
    /// Subject of `lookalike.pem`: CLIENT1 is a prefix of its CN.
    pub const LOOKALIKE: &str =
        "CN=client.1.local.evil.com,O=Internet Widgits Pty Ltd,ST=Some-State,C=FI";
    /// Subject of `extra-attr.pem`: CLIENT1 plus an `OU` in the middle.
    pub const EXTRA_ATTR: &str =
        "CN=client.1.local,OU=x,O=Internet Widgits Pty Ltd,ST=Some-State,C=FI";
    /// Subject of `spiffe.pem`.
    pub const SPIFFE: &str = "CN=web,O=Internet Widgits Pty Ltd,ST=Some-State,C=FI";
    /// Subject of `client-ed25519.pem`.
    pub const CLIENT_ED25519: &str =
        "CN=client.ed25519.local,O=Internet Widgits Pty Ltd,ST=Some-State,C=FI";
    /// Subject of `client-p384.pem`.
    pub const CLIENT_P384: &str =
        "CN=client.p384.local,O=Internet Widgits Pty Ltd,ST=Some-State,C=FI";
    /// Subject of `client-rsa.pem`.
    pub const CLIENT_RSA: &str =
        "CN=client.rsa.local,O=Internet Widgits Pty Ltd,ST=Some-State,C=FI";
    /// Subject of `int10-client.pem`.
    pub const INT10_CLIENT: &str =
        "CN=client.10.local,O=Internet Widgits Pty Ltd,ST=Some-State,C=FI";
    /// The root CA.
    pub const ROOT: &str = "CN=Acme Root CA,O=Acme,C=FI";
    /// `partner-client.pem`, under the Partner Root CA.
    pub const PARTNER_CLIENT: &str =
        "CN=client.partner.test,O=Internet Widgits Pty Ltd,ST=Some-State,C=FI";
    /// `partner-ca.pem`.
    pub const PARTNER_ROOT: &str = "CN=Partner Root CA,O=Partner,C=FI";
    /// Intermediate 1 (also the DN of the rogue CA).
    pub const INTERMEDIATE1: &str = "CN=Intermediate 1,O=Acme,C=FI";
    /// Intermediate 1, legacy form.
    pub const INTERMEDIATE1_LEGACY: &str = "/C=FI/O=Acme/CN=Intermediate 1";
    /// Intermediate 2.
    pub const INTERMEDIATE2: &str = "CN=Intermediate 2,O=Acme,C=FI";
    /// Intermediate 2, legacy form.
    pub const INTERMEDIATE2_LEGACY: &str = "/C=FI/O=Acme/CN=Intermediate 2";
    /// Intermediate 10: "Intermediate 1" is a prefix of its CN.
    pub const INTERMEDIATE10: &str = "CN=Intermediate 10,O=Acme,C=FI";
    /// Intermediate 10, legacy form.
    pub const INTERMEDIATE10_LEGACY: &str = "/C=FI/O=Acme/CN=Intermediate 10";
}

/// SAN values of the generated client certificates.
pub mod san {
    /// DNS name in `client1.pem`.
    pub const CLIENT1_DNS: &str = "client1.acme.test";
    /// E-mail address in `client1.pem`.
    pub const CLIENT1_EMAIL: &str = "john.doe@example.com";
    /// URI in `spiffe.pem`.
    pub const SPIFFE_URI: &str = "spiffe://acme.test/ns/prod/sa/web";
}

/// A certificate file (leaf first, then the chain a peer presents) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKey {
    /// PEM: the leaf certificate, followed by its issuing CA for client certificates.
    pub cert: PathBuf,
    /// PEM: PKCS#8 private key of the leaf.
    pub key: PathBuf,
}

/// Paths of everything [`generate`] wrote. All paths are inside the directory it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    /// The directory holding the files.
    pub dir: PathBuf,
    /// `root-ca.pem`: Acme Root CA alone.
    pub root_ca: PathBuf,
    /// `intermediate1.pem`: Intermediate 1 alone.
    pub intermediate1: PathBuf,
    /// `intermediate2.pem`: Intermediate 2 alone.
    pub intermediate2: PathBuf,
    /// `intermediate10.pem`: Intermediate 10 alone.
    pub intermediate10: PathBuf,
    /// `server-chain.pem` (localhost leaf + Intermediate 1) and `server.key`.
    pub server: CertKey,
    /// `server-ca.pem`: what clients trust to verify the server (the root).
    pub server_ca: PathBuf,
    /// `client-ca-bundle.pem`: root + Intermediates 1, 2 and 10; a listener's `ca`.
    pub client_ca_bundle: PathBuf,
    /// `client1.pem`/`.key`: [`dn::CLIENT1`] under Intermediate 1, SAN DNS + e-mail.
    pub client1: CertKey,
    /// `client2.pem`/`.key`: [`dn::CLIENT2`] under Intermediate 2.
    pub client2: CertKey,
    /// `lookalike.pem`/`.key`: [`dn::LOOKALIKE`] under Intermediate 1.
    pub lookalike: CertKey,
    /// `extra-attr.pem`/`.key`: [`dn::EXTRA_ATTR`] under Intermediate 1.
    pub extra_attr: CertKey,
    /// `expired.pem`/`.key`: [`dn::CLIENT1`] under Intermediate 1, expired at the start of 2020.
    pub expired: CertKey,
    /// `rogue.pem`/`.key`: [`dn::CLIENT1`] under a self-signed CA impersonating Intermediate 1.
    pub rogue: CertKey,
    /// `rogue-ca.pem`: the impersonating CA.
    pub rogue_ca: PathBuf,
    /// `int10-client.pem`/`.key`: [`dn::INT10_CLIENT`] under Intermediate 10 (verifies).
    pub int10_client: CertKey,
    /// `spiffe.pem`/`.key`: [`dn::SPIFFE`] under Intermediate 2 with SAN [`san::SPIFFE_URI`].
    pub spiffe: CertKey,
    /// `client-ed25519.pem`/`.key`: [`dn::CLIENT_ED25519`], an Ed25519 key, under Intermediate 1.
    pub client_ed25519: CertKey,
    /// `client-p384.pem`/`.key`: [`dn::CLIENT_P384`], an ECDSA P-384 key, under Intermediate 1.
    pub client_p384: CertKey,
    /// `client-rsa.pem`/`.key`: [`dn::CLIENT_RSA`], an RSA 2048 key (it signs with RSA-PSS in
    /// TLS 1.3, PKCS#1 or PSS in TLS 1.2), under Intermediate 1.
    pub client_rsa: CertKey,
    /// `server-rsa-chain.pem` (localhost leaf with an RSA 2048 key + Intermediate 1) and
    /// `server-rsa.key`: the RSA half of a dual-certificate listener.
    pub server_rsa: CertKey,
    /// `server-sni-chain.pem` (leaf "api.acme.test" with SANs `api.acme.test` and
    /// `*.partner.test` + Intermediate 1) and `server-sni.key`: an `[[listener.sni]]` block's
    /// certificate, verified by [`Pki::server_ca`] like the localhost one.
    pub server_sni: CertKey,
    /// `partner-ca.pem`: "Partner Root CA", a second client CA unrelated to Acme's.
    pub partner_ca: PathBuf,
    /// `partner-client.pem`/`.key`: [`dn::PARTNER_CLIENT`] under the Partner Root CA.
    pub partner_client: CertKey,
}

/// The key algorithm of a generated leaf.
#[derive(Debug, Clone, Copy)]
enum KeyType {
    P256,
    P384,
    Ed25519,
    Rsa2048,
}

/// A generated certificate with its key, able to sign when it is a CA.
struct Cert {
    pem: String,
    key: KeyPair,
    params: CertificateParams,
}

impl Cert {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }
}

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("certificate generation failed: {e}"))
}

/// `C`, then optional `ST`, `O`, optional `OU`, `CN`: the insertion order is the DER order, so
/// RFC 2253 output reads most specific first.
fn name(st: Option<&str>, o: &str, ou: Option<&str>, cn: &str) -> io::Result<DistinguishedName> {
    let mut dn = DistinguishedName::new();
    let country = PrintableString::try_from("FI").map_err(err)?;
    dn.push(DnType::CountryName, DnValue::PrintableString(country));
    if let Some(st) = st {
        dn.push(DnType::StateOrProvinceName, st);
    }
    dn.push(DnType::OrganizationName, o);
    if let Some(ou) = ou {
        dn.push(DnType::OrganizationalUnitName, ou);
    }
    dn.push(DnType::CommonName, cn);
    Ok(dn)
}

fn widgits(cn: &str) -> io::Result<DistinguishedName> {
    name(Some("Some-State"), "Internet Widgits Pty Ltd", None, cn)
}

fn acme(cn: &str) -> io::Result<DistinguishedName> {
    name(None, "Acme", None, cn)
}

/// A positive serial taken from the (random) public key, without a leading zero nibble, so its
/// hex form is the same whichever way a tool pads it.
fn serial(key: &KeyPair) -> SerialNumber {
    // A hash: an RSA public key starts with a fixed DER header.
    let digest = boring::hash::hash(boring::hash::MessageDigest::sha256(), key.public_key_raw());
    let mut bytes = digest.map_or_else(
        |_| key.public_key_raw()[1..17].to_vec(),
        |d| d[..16].to_vec(),
    );
    bytes[0] = 0x40 | (bytes[0] & 0x3f);
    SerialNumber::from_slice(&bytes)
}

fn params(dn: DistinguishedName, key: &KeyPair) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn;
    p.serial_number = Some(serial(key));
    p.not_before = date_time_ymd(2015, 1, 1);
    p.not_after = date_time_ymd(2049, 12, 31);
    p.use_authority_key_identifier_extension = true;
    p
}

fn new_key() -> io::Result<KeyPair> {
    key_of(KeyType::P256)
}

fn key_of(t: KeyType) -> io::Result<KeyPair> {
    match t {
        KeyType::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err),
        KeyType::P384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).map_err(err),
        // ring writes Ed25519 keys as PKCS#8 v2, which OpenSSL 3.0 and BoringSSL refuse:
        // BoringSSL generates them, in v1.
        KeyType::Ed25519 => {
            let pkey = boring::pkey::PKey::generate(boring::pkey::Id::ED25519).map_err(err)?;
            boring_key(&pkey, &rcgen::PKCS_ED25519)
        }
        // ring (rcgen's backend) cannot generate RSA keys; BoringSSL can.
        KeyType::Rsa2048 => {
            let rsa = boring::rsa::Rsa::generate(2048).map_err(err)?;
            let pkey = boring::pkey::PKey::from_rsa(rsa).map_err(err)?;
            boring_key(&pkey, &rcgen::PKCS_RSA_SHA256)
        }
    }
}

fn boring_key(
    pkey: &boring::pkey::PKeyRef<boring::pkey::Private>,
    alg: &'static rcgen::SignatureAlgorithm,
) -> io::Result<KeyPair> {
    let pem = pkey.private_key_to_pem_pkcs8().map_err(err)?;
    let pem = String::from_utf8(pem).map_err(err)?;
    KeyPair::from_pem_and_sign_algo(&pem, alg).map_err(err)
}

fn ca(dn: DistinguishedName, issuer: Option<&Cert>) -> io::Result<Cert> {
    let key = new_key()?;
    let mut p = params(dn, &key);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = match issuer {
        Some(issuer) => p.signed_by(&key, &issuer.issuer()),
        None => {
            p.use_authority_key_identifier_extension = false;
            p.self_signed(&key)
        }
    }
    .map_err(err)?;
    Ok(Cert {
        pem: cert.pem(),
        key,
        params: p,
    })
}

fn leaf(
    dn: DistinguishedName,
    sans: Vec<SanType>,
    eku: ExtendedKeyUsagePurpose,
    issuer: &Cert,
) -> io::Result<Cert> {
    typed_leaf(KeyType::P256, dn, sans, eku, issuer)
}

fn typed_leaf(
    t: KeyType,
    dn: DistinguishedName,
    sans: Vec<SanType>,
    eku: ExtendedKeyUsagePurpose,
    issuer: &Cert,
) -> io::Result<Cert> {
    let key = key_of(t)?;
    let mut p = params(dn, &key);
    // ExplicitNoCa: "CA:FALSE" plus a subject key identifier.
    p.is_ca = IsCa::ExplicitNoCa;
    p.subject_alt_names = sans;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![eku];
    let cert = p.signed_by(&key, &issuer.issuer()).map_err(err)?;
    Ok(Cert {
        pem: cert.pem(),
        key,
        params: p,
    })
}

fn client(dn: DistinguishedName, sans: Vec<SanType>, issuer: &Cert) -> io::Result<Cert> {
    leaf(dn, sans, ExtendedKeyUsagePurpose::ClientAuth, issuer)
}

fn ia5(s: &str) -> io::Result<Ia5String> {
    Ia5String::try_from(s).map_err(err)
}

struct Writer<'a> {
    dir: &'a Path,
}

impl Writer<'_> {
    fn file(&self, name: &str, contents: &[&str], secret: bool) -> io::Result<PathBuf> {
        let path = self.dir.join(name);
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = secret;
        let mut f = opts.open(&path)?;
        for part in contents {
            f.write_all(part.as_bytes())?;
        }
        f.sync_all()?;
        Ok(path)
    }

    fn pem(&self, name: &str, certs: &[&Cert]) -> io::Result<PathBuf> {
        let pems: Vec<&str> = certs.iter().map(|c| c.pem.as_str()).collect();
        self.file(name, &pems, false)
    }

    /// `<stem>.pem` = leaf + chain, `<stem>.key`.
    fn pair(&self, stem: &str, leaf: &Cert, chain: &[&Cert]) -> io::Result<CertKey> {
        let mut certs = vec![leaf];
        certs.extend_from_slice(chain);
        Ok(CertKey {
            cert: self.pem(&format!("{stem}.pem"), &certs)?,
            key: self.file(&format!("{stem}.key"), &[&leaf.key.serialize_pem()], true)?,
        })
    }
}

/// Generates the PKI described in the module documentation into `dir` (created if missing;
/// existing files of the same names are overwritten) and returns the paths.
///
/// Keys are fresh on every call, so two calls never produce interchangeable certificates.
pub fn generate(dir: &Path) -> io::Result<Pki> {
    fs::create_dir_all(dir)?;
    let w = Writer { dir };

    let root = ca(acme("Acme Root CA")?, None)?;
    let int1 = ca(acme("Intermediate 1")?, Some(&root))?;
    let int2 = ca(acme("Intermediate 2")?, Some(&root))?;
    let int10 = ca(acme("Intermediate 10")?, Some(&root))?;
    // Same subject DN as Intermediate 1, but self-signed with its own key.
    let rogue_ca = ca(acme("Intermediate 1")?, None)?;

    let server = leaf(
        acme("localhost")?,
        vec![
            SanType::DnsName(ia5("localhost")?),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ],
        ExtendedKeyUsagePurpose::ServerAuth,
        &int1,
    )?;

    let client1_sans = || -> io::Result<Vec<SanType>> {
        Ok(vec![
            SanType::DnsName(ia5(san::CLIENT1_DNS)?),
            SanType::Rfc822Name(ia5(san::CLIENT1_EMAIL)?),
        ])
    };
    let client1 = client(widgits("client.1.local")?, client1_sans()?, &int1)?;
    let client2 = client(widgits("client.2.local")?, vec![], &int2)?;
    let lookalike = client(widgits("client.1.local.evil.com")?, vec![], &int1)?;
    let extra_attr = client(
        name(
            Some("Some-State"),
            "Internet Widgits Pty Ltd",
            Some("x"),
            "client.1.local",
        )?,
        vec![],
        &int1,
    )?;
    let expired = {
        let key = new_key()?;
        let mut p = params(widgits("client.1.local")?, &key);
        p.is_ca = IsCa::ExplicitNoCa;
        p.subject_alt_names = client1_sans()?;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = date_time_ymd(2019, 1, 1);
        p.not_after = date_time_ymd(2020, 1, 1);
        let cert = p.signed_by(&key, &int1.issuer()).map_err(err)?;
        Cert {
            pem: cert.pem(),
            key,
            params: p,
        }
    };
    let rogue = client(widgits("client.1.local")?, client1_sans()?, &rogue_ca)?;
    let int10_client = client(widgits("client.10.local")?, vec![], &int10)?;
    let spiffe = client(
        widgits("web")?,
        vec![SanType::URI(ia5(san::SPIFFE_URI)?)],
        &int2,
    )?;

    let typed_client = |t: KeyType, cn: &str| -> io::Result<Cert> {
        typed_leaf(
            t,
            widgits(cn)?,
            vec![],
            ExtendedKeyUsagePurpose::ClientAuth,
            &int1,
        )
    };
    let client_ed25519 = typed_client(KeyType::Ed25519, "client.ed25519.local")?;
    let client_p384 = typed_client(KeyType::P384, "client.p384.local")?;
    let client_rsa = typed_client(KeyType::Rsa2048, "client.rsa.local")?;
    let server_rsa = typed_leaf(
        KeyType::Rsa2048,
        acme("localhost")?,
        vec![
            SanType::DnsName(ia5("localhost")?),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ],
        ExtendedKeyUsagePurpose::ServerAuth,
        &int1,
    )?;

    let server_sni = leaf(
        acme("api.acme.test")?,
        vec![
            SanType::DnsName(ia5("api.acme.test")?),
            SanType::DnsName(ia5("*.partner.test")?),
        ],
        ExtendedKeyUsagePurpose::ServerAuth,
        &int1,
    )?;
    let partner_root = ca(name(None, "Partner", None, "Partner Root CA")?, None)?;
    let partner_client = client(widgits("client.partner.test")?, vec![], &partner_root)?;

    Ok(Pki {
        dir: dir.to_path_buf(),
        server_sni: CertKey {
            cert: w.pem("server-sni-chain.pem", &[&server_sni, &int1])?,
            key: w.file("server-sni.key", &[&server_sni.key.serialize_pem()], true)?,
        },
        partner_ca: w.pem("partner-ca.pem", &[&partner_root])?,
        partner_client: w.pair("partner-client", &partner_client, &[&partner_root])?,
        root_ca: w.pem("root-ca.pem", &[&root])?,
        intermediate1: w.pem("intermediate1.pem", &[&int1])?,
        intermediate2: w.pem("intermediate2.pem", &[&int2])?,
        intermediate10: w.pem("intermediate10.pem", &[&int10])?,
        server: CertKey {
            cert: w.pem("server-chain.pem", &[&server, &int1])?,
            key: w.file("server.key", &[&server.key.serialize_pem()], true)?,
        },
        server_ca: w.pem("server-ca.pem", &[&root])?,
        client_ca_bundle: w.pem("client-ca-bundle.pem", &[&root, &int1, &int2, &int10])?,
        client1: w.pair("client1", &client1, &[&int1])?,
        client2: w.pair("client2", &client2, &[&int2])?,
        lookalike: w.pair("lookalike", &lookalike, &[&int1])?,
        extra_attr: w.pair("extra-attr", &extra_attr, &[&int1])?,
        expired: w.pair("expired", &expired, &[&int1])?,
        rogue: w.pair("rogue", &rogue, &[&rogue_ca])?,
        rogue_ca: w.pem("rogue-ca.pem", &[&rogue_ca])?,
        int10_client: w.pair("int10-client", &int10_client, &[&int10])?,
        spiffe: w.pair("spiffe", &spiffe, &[&int2])?,
        client_ed25519: w.pair("client-ed25519", &client_ed25519, &[&int1])?,
        client_p384: w.pair("client-p384", &client_p384, &[&int1])?,
        client_rsa: w.pair("client-rsa", &client_rsa, &[&int1])?,
        server_rsa: CertKey {
            cert: w.pem("server-rsa-chain.pem", &[&server_rsa, &int1])?,
            key: w.file("server-rsa.key", &[&server_rsa.key.serialize_pem()], true)?,
        },
    })
}
