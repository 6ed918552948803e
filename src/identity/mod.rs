//! Client identity: what a verified client certificate says about its holder, and the compiled
//! admission rules that decide whether that is enough.
//!
//! - [`dn`]: distinguished names (parse, print like nginx, canonical comparison keys);
//! - [`cert`]: [`ClientCert`], the per-connection facts and upstream header values;
//! - [`rules`]: [`Rules`], `allow_subjects` / `allow_issuers` / `allow_sans` compiled once at
//!   config load so that checking a connection is a few hash lookups.

pub mod cert;
pub mod dn;
pub mod rules;

pub use cert::{header_safe, ClientCert, San};
pub use dn::{AttrType, Ava, Dn, DnError, DnErrorKind, DnKey, Rdn};
pub use rules::{Admit, Refuse, RuleError, RuleErrorKind, RuleRef, RuleWarning, Rules};

/// Certificates and names built in-test, shared by the unit tests of this module.
#[cfg(test)]
pub(crate) mod test_support {
    use boring::asn1::{Asn1Integer, Asn1Time};
    use boring::bn::BigNum;
    use boring::ec::{EcGroup, EcKey};
    use boring::hash::MessageDigest;
    use boring::nid::Nid;
    use boring::pkey::PKey;
    use boring::x509::extension::SubjectAlternativeName;
    use boring::x509::{X509Name, X509NameRef, X509};

    /// Attribute OIDs, DER-encoded.
    pub(crate) const CN: &[u8] = &[0x55, 0x04, 0x03];
    pub(crate) const O: &[u8] = &[0x55, 0x04, 0x0a];
    pub(crate) const C: &[u8] = &[0x55, 0x04, 0x06];
    pub(crate) const OU: &[u8] = &[0x55, 0x04, 0x0b];
    pub(crate) const UID: &[u8] = &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01];
    /// 1.3.6.1.4.1.99999.7, a type nobody knows by name.
    pub(crate) const PRIVATE: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x86, 0x8d, 0x1f, 0x07];
    /// ASN.1 string tags.
    pub(crate) const UTF8: u8 = 0x0c;
    pub(crate) const PRINTABLE: u8 = 0x13;
    pub(crate) const BMP: u8 = 0x1e;

    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = body.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(body);
        out
    }

    /// One AVA as raw DER pieces: (OID, string tag, value bytes).
    pub(crate) type RawAva<'a> = (&'a [u8], u8, &'a [u8]);

    /// A name from raw DER pieces, one slice of AVAs per RDN. Building the DER directly gives
    /// multi-valued RDNs and odd string types exactly as a CA would.
    pub(crate) fn der_name(rdns: &[&[RawAva<'_>]]) -> X509Name {
        let mut seq = Vec::new();
        for rdn in rdns {
            let mut set = Vec::new();
            for (oid, tag, value) in rdn.iter() {
                let mut ava = tlv(0x06, oid);
                ava.extend(tlv(*tag, value));
                set.extend(tlv(0x30, &ava));
            }
            seq.extend(tlv(0x31, &set));
        }
        X509Name::from_der(&tlv(0x30, &seq)).expect("test DER")
    }

    /// A leaf certificate for tests. `sans` entries are `dns:..`, `email:..`, `uri:..`, `ip:..`,
    /// `rid:..`.
    pub(crate) fn make_cert(
        subject: &X509NameRef,
        issuer: &X509NameRef,
        sans: &[&str],
        serial: &[u8],
        not_after_unix: i64,
    ) -> X509 {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("group");
        let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
        let mut b = X509::builder().expect("builder");
        b.set_version(2).expect("version");
        let serial = BigNum::from_slice(serial).expect("bn");
        b.set_serial_number(&Asn1Integer::from_bn(&serial).expect("serial"))
            .expect("serial");
        b.set_subject_name(subject).expect("subject");
        b.set_issuer_name(issuer).expect("issuer");
        b.set_pubkey(&key).expect("pubkey");
        b.set_not_before(&Asn1Time::from_unix(1_700_000_000).expect("time"))
            .expect("nb");
        b.set_not_after(&Asn1Time::from_unix(not_after_unix).expect("time"))
            .expect("na");
        if !sans.is_empty() {
            let mut ext = SubjectAlternativeName::new();
            for san in sans {
                match san.split_once(':') {
                    Some(("dns", v)) => ext.dns(v),
                    Some(("email", v)) => ext.email(v),
                    Some(("uri", v)) => ext.uri(v),
                    Some(("ip", v)) => ext.ip(v),
                    Some(("rid", v)) => ext.rid(v),
                    _ => panic!("bad test SAN {san}"),
                };
            }
            let ext = ext.build(&b.x509v3_context(None, None)).expect("san");
            b.append_extension(&ext).expect("append");
        }
        b.sign(&key, MessageDigest::sha256()).expect("sign");
        b.build()
    }

    /// A typical leaf: `CN=client.1.local,O=Acme,C=FI` issued by `CN=Intermediate 1,O=Acme,C=FI`.
    pub(crate) fn typical_cert(sans: &[&str]) -> X509 {
        let subject = der_name(&[
            &[(C, PRINTABLE, b"FI")],
            &[(O, UTF8, b"Acme")],
            &[(CN, UTF8, b"client.1.local")],
        ]);
        let issuer = der_name(&[
            &[(C, PRINTABLE, b"FI")],
            &[(O, UTF8, b"Acme")],
            &[(CN, UTF8, b"Intermediate 1")],
        ]);
        make_cert(&subject, &issuer, sans, &[0x1a, 0x2b], 2_041_709_861)
    }
}
