//! Distinguished names: the two notations operators write in config (RFC 4514 and OpenSSL's legacy
//! `/C=FI/CN=x`), reading names out of certificates, printing them the way nginx exposes them
//! (`$ssl_client_s_dn`, `$ssl_client_s_dn_legacy`), and a canonical key so that thousands of
//! exact-match rules cost one hash lookup.
//!
//! Matching is deliberately exact, because a DN rule is an access-control decision:
//! - attribute types compare by OID (`CN`, `cn`, `commonName` and `2.5.4.3` are one type);
//! - values compare byte-for-byte after unescaping. They are case-sensitive (`CN=Alice` is not
//!   `CN=alice`) and no whitespace folding happens inside them;
//! - RDN order matters; only the order of AVAs inside a multi-valued RDN (`CN=a+UID=b`) does not,
//!   since the certificate stores them as a SET.

use std::cmp::Ordering;
use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};
use std::os::raw::c_int;
use std::str::FromStr;

use boring::asn1::Asn1ObjectRef;
use boring::x509::X509NameRef;

/// An attribute type known by name. `short` is what BoringSSL prints (so our output matches
/// nginx's), `aliases` are the other spellings accepted on input (compared case-insensitively).
struct KnownAttr {
    short: &'static str,
    oid: &'static str,
    nid: c_int,
    aliases: &'static [&'static str],
}

macro_rules! known {
    ($short:literal, $oid:literal, $nid:ident, [$($alias:literal),*]) => {
        KnownAttr { short: $short, oid: $oid, nid: boring_sys::$nid, aliases: &[$($alias),*] }
    };
}

#[rustfmt::skip]
static KNOWN_ATTRS: &[KnownAttr] = &[
    known!("CN", "2.5.4.3", NID_commonName, ["commonName"]),
    known!("C", "2.5.4.6", NID_countryName, ["countryName"]),
    known!("L", "2.5.4.7", NID_localityName, ["localityName"]),
    known!("ST", "2.5.4.8", NID_stateOrProvinceName, ["stateOrProvinceName"]),
    known!("O", "2.5.4.10", NID_organizationName, ["organizationName"]),
    known!("OU", "2.5.4.11", NID_organizationalUnitName, ["organizationalUnitName"]),
    known!("street", "2.5.4.9", NID_streetAddress, ["streetAddress"]),
    known!("DC", "0.9.2342.19200300.100.1.25", NID_domainComponent, ["domainComponent"]),
    known!("UID", "0.9.2342.19200300.100.1.1", NID_userId, ["userId"]),
    known!("emailAddress", "1.2.840.113549.1.9.1", NID_pkcs9_emailAddress, ["E", "email"]),
    known!("serialNumber", "2.5.4.5", NID_serialNumber, []),
    known!("title", "2.5.4.12", NID_title, []),
    known!("GN", "2.5.4.42", NID_givenName, ["givenName"]),
    known!("SN", "2.5.4.4", NID_surname, ["surname"]),
    known!("initials", "2.5.4.43", NID_initials, []),
    known!("pseudonym", "2.5.4.65", NID_pseudonym, []),
    known!("generationQualifier", "2.5.4.44", NID_generationQualifier, []),
    known!("businessCategory", "2.5.4.15", NID_businessCategory, []),
    known!("postalCode", "2.5.4.17", NID_postalCode, []),
    known!("dnQualifier", "2.5.4.46", NID_dnQualifier, []),
    known!("name", "2.5.4.41", NID_name, []),
    known!("description", "2.5.4.13", NID_description, []),
    known!("role", "2.5.4.72", NID_role, []),
    known!("unstructuredName", "1.2.840.113549.1.9.2", NID_pkcs9_unstructuredName, []),
];

/// The type of one attribute (`CN`, `O`, an OID...). Equality, ordering and hashing go by OID
/// only; the name is presentation.
#[derive(Clone)]
pub struct AttrType(AttrRepr);

#[derive(Clone)]
enum AttrRepr {
    Known(&'static KnownAttr),
    /// A canonical dotted OID that is not in `KNOWN_ATTRS` (known OIDs always become `Known`, so
    /// they print by name). A certificate type that BoringSSL cannot print as an OID (not seen
    /// in practice) holds BoringSSL's text for it instead, which no parsed rule can produce.
    Oid(Box<str>),
}

impl AttrType {
    /// Looks up a type by any accepted spelling: short or long name (case-insensitive) or dotted
    /// OID (optionally prefixed `OID.`). Returns `None` for unknown names and malformed OIDs.
    pub fn from_name(name: &str) -> Option<AttrType> {
        let oid = name
            .get(..4)
            .filter(|p| p.eq_ignore_ascii_case("oid."))
            .map_or(name, |_| &name[4..]);
        if oid.starts_with(|c: char| c.is_ascii_digit()) {
            return is_canonical_oid(oid).then(|| AttrType::from_oid(oid));
        }
        KNOWN_ATTRS
            .iter()
            .find(|k| {
                k.short.eq_ignore_ascii_case(name)
                    || k.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
            })
            .map(|k| AttrType(AttrRepr::Known(k)))
    }

    /// From a canonical dotted OID (as BoringSSL prints it, or validated by `is_canonical_oid`).
    fn from_oid(oid: &str) -> AttrType {
        match KNOWN_ATTRS.iter().find(|k| k.oid == oid) {
            Some(k) => AttrType(AttrRepr::Known(k)),
            None => AttrType(AttrRepr::Oid(oid.into())),
        }
    }

    /// The dotted OID, e.g. `2.5.4.3`.
    pub fn oid(&self) -> &str {
        match &self.0 {
            AttrRepr::Known(k) => k.oid,
            AttrRepr::Oid(oid) => oid,
        }
    }

    /// The short name BoringSSL prints (`CN`, `emailAddress`...), if the type is one we know.
    pub fn short_name(&self) -> Option<&'static str> {
        match &self.0 {
            AttrRepr::Known(k) => Some(k.short),
            AttrRepr::Oid(_) => None,
        }
    }

    /// The name used in output: the short name, else the dotted OID.
    pub fn name(&self) -> &str {
        match &self.0 {
            AttrRepr::Known(k) => k.short,
            AttrRepr::Oid(oid) => oid,
        }
    }
}

impl PartialEq for AttrType {
    fn eq(&self, other: &Self) -> bool {
        self.oid() == other.oid()
    }
}

impl Eq for AttrType {}

impl Hash for AttrType {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.oid().hash(state);
    }
}

impl PartialOrd for AttrType {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for AttrType {
    fn cmp(&self, other: &Self) -> Ordering {
        self.oid().cmp(other.oid())
    }
}

impl fmt::Display for AttrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Debug for AttrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// RFC 4512 `numericoid`: at least two arcs, digits only, no leading zeros (so that one OID has
/// one spelling and the canonical key stays canonical).
fn is_canonical_oid(s: &str) -> bool {
    let mut arcs = 0;
    for (i, arc) in s.split('.').enumerate() {
        if i == 0 && !matches!(arc, "0" | "1" | "2") {
            return false;
        }
        let ok = match arc.as_bytes() {
            [] => false,
            [b'0'] => true,
            [b'0', ..] => false,
            digits => digits.iter().all(u8::is_ascii_digit),
        };
        if !ok {
            return false;
        }
        arcs += 1;
    }
    arcs >= 2
}

/// One attribute-value assertion, e.g. `CN=client.1.local`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ava {
    attr_type: AttrType,
    value: String,
}

impl Ava {
    /// An assertion of `value` for `attr_type`; the value is the unescaped string.
    pub fn new(attr_type: AttrType, value: impl Into<String>) -> Ava {
        Ava {
            attr_type,
            value: value.into(),
        }
    }

    /// The attribute type, e.g. `CN` or an OID without a short name.
    pub fn attr_type(&self) -> &AttrType {
        &self.attr_type
    }

    /// The unescaped value.
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// One relative distinguished name: a non-empty set of AVAs, usually exactly one.
#[derive(Clone, Debug)]
pub struct Rdn {
    avas: Vec<Ava>,
}

impl Rdn {
    /// The AVAs in the order the certificate (or the parsed text, in stored order) lists them.
    pub fn avas(&self) -> &[Ava] {
        &self.avas
    }

    /// The AVAs in canonical (sorted) order, for order-insensitive comparison.
    fn sorted(&self) -> Vec<&Ava> {
        let mut avas: Vec<&Ava> = self.avas.iter().collect();
        avas.sort_unstable();
        avas
    }
}

impl PartialEq for Rdn {
    fn eq(&self, other: &Self) -> bool {
        match (self.avas.as_slice(), other.avas.as_slice()) {
            ([a], [b]) => a == b,
            (a, b) if a.len() != b.len() => false,
            _ => self.sorted() == other.sorted(),
        }
    }
}

impl Eq for Rdn {}

impl Hash for Rdn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self.avas.as_slice() {
            [a] => {
                1usize.hash(state);
                a.hash(state);
            }
            _ => self.sorted().hash(state),
        }
    }
}

/// A distinguished name, RDNs stored in certificate order (most general first: `C`, `O`, ..., `CN`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Dn {
    rdns: Vec<Rdn>,
}

/// Canonical, unambiguous encoding of a [`Dn`]: two DNs are equal iff their keys are equal. Used
/// as the hash-map key of exact rules.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnKey(Box<str>);

impl DnKey {
    /// The canonical encoding, as hashed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DnKey({:?})", self.0)
    }
}

impl Dn {
    /// Parses a DN in RFC 4514 form (`CN=x,O=y,C=FI`, most specific first) or, when it starts
    /// with `/`, OpenSSL's legacy form (`/C=FI/O=y/CN=x`, most general first).
    ///
    /// RFC 4514: attribute types by name (case-insensitive) or dotted OID; `,` between RDNs, `+`
    /// inside a multi-valued RDN; spaces around `,` `+` `=` are ignored; escapes `\,` `\+` `\"`
    /// `\\` `\<` `\>` `\;` `\=` `\#` `\ ` and `\XX` hex pairs (forming UTF-8). Unescaped leading
    /// and trailing spaces of a value are dropped, so write `\ ` to keep one. A `#hex` value (the
    /// DER of the value, as OpenSSL prints types it has no name for) is decoded when it is a
    /// character string; other BER values and `"quoted"` values are rejected.
    ///
    /// Legacy: `/` before each RDN, `+` inside an RDN; `\/`, `\+`, `\\` (any escaped ASCII
    /// punctuation or space), `\XX` and `\xXX` hex escapes. Values may contain `,` and `=`
    /// literally. Leading and trailing spaces are handled as in RFC 4514.
    pub fn parse(s: &str) -> Result<Dn, DnError> {
        let start = s.bytes().take_while(|&b| b == b' ').count();
        match s.as_bytes().get(start) {
            None => Err(DnError::new(0, DnErrorKind::Empty)),
            Some(b'/') => Parser::new(s, Notation::Legacy).legacy(start + 1),
            Some(_) => Parser::new(s, Notation::Rfc4514).rfc4514(),
        }
    }

    /// Reads a name from a certificate. Never fails: a value that cannot be converted to UTF-8 is
    /// kept as lossy UTF-8 of its raw bytes.
    pub fn from_x509_name(name: &X509NameRef) -> Dn {
        let mut rdns: Vec<Rdn> = Vec::new();
        let mut last_set = None;
        for entry in name.entries() {
            let set = ffi::rdn_set_index(entry);
            let ava = Ava {
                attr_type: attr_type_of(entry.object()),
                value: ffi::string_to_utf8(entry.data()),
            };
            match rdns.last_mut() {
                Some(rdn) if last_set == Some(set) => rdn.avas.push(ava),
                _ => rdns.push(Rdn { avas: vec![ava] }),
            }
            last_set = Some(set);
        }
        Dn { rdns }
    }

    /// RDNs in stored order (most general first).
    pub fn rdns(&self) -> &[Rdn] {
        &self.rdns
    }

    /// True for the empty name (a certificate may identify its subject by SANs only).
    pub fn is_empty(&self) -> bool {
        self.rdns.is_empty()
    }

    /// All AVAs of one type, in stored order.
    pub fn values_of<'a>(&'a self, attr_type: &'a AttrType) -> impl Iterator<Item = &'a str> + 'a {
        self.rdns
            .iter()
            .flat_map(|rdn| rdn.avas.iter())
            .filter(move |ava| &ava.attr_type == attr_type)
            .map(|ava| ava.value.as_str())
    }

    /// The canonical key: per RDN its AVA count, then each AVA (sorted) as `oid=len:value`. The
    /// length prefix is what keeps `CN=a\,O=b` (one RDN) and `CN=a,O=b` (two) apart.
    pub fn key(&self) -> DnKey {
        let cap = self
            .rdns
            .iter()
            .flat_map(|r| r.avas.iter())
            .map(|a| a.attr_type.oid().len() + a.value.len() + 8)
            .sum::<usize>()
            + 4;
        let mut out = String::with_capacity(cap);
        let _ = write!(out, "{};", self.rdns.len());
        for rdn in &self.rdns {
            let _ = write!(out, "{};", rdn.avas.len());
            let mut push = |ava: &Ava| {
                let _ = write!(out, "{}={}:", ava.attr_type.oid(), ava.value.len());
                out.push_str(&ava.value);
            };
            match rdn.avas.as_slice() {
                [ava] => push(ava),
                _ => rdn.sorted().into_iter().for_each(push),
            }
        }
        DnKey(out.into_boxed_str())
    }

    /// The RFC 2253 string nginx exposes as `$ssl_client_s_dn` (OpenSSL's
    /// `X509_NAME_print_ex(.., XN_FLAG_RFC2253)`), byte for byte: most specific first, `,`
    /// between RDNs, `+` inside, short names, `,+"\<>;` and leading `#`/space and trailing space
    /// escaped with `\`, control characters and every byte of non-ASCII UTF-8 as `\XX`
    /// (`CN=J\C3\BCrgen`). The result is printable ASCII, safe in any header. Like OpenSSL,
    /// the whole entry sequence is reversed, so AVAs inside a multi-valued RDN are reversed as
    /// well. `to_string()` gives the same with non-ASCII kept as UTF-8 (`CN=Jürgen`).
    pub fn to_rfc2253(&self) -> String {
        self.rfc4514(Bytes::Escaped)
    }

    /// The legacy string nginx exposes as `$ssl_client_s_dn_legacy` (OpenSSL 3's
    /// `X509_NAME_oneline`): `/C=FI/O=Acme/CN=x`, stored order, `+` inside a multi-valued RDN,
    /// `/` and `+` escaped with `\`, control characters and every byte of non-ASCII UTF-8 as
    /// `\xXX` (`/CN=J\xC3\xBCrgen`). Differences from OpenSSL, all so the result parses back
    /// to the same DN: `\` and leading/trailing spaces are backslash-escaped too, and values are
    /// printed from their UTF-8 form whatever their ASN.1 string type (OpenSSL dumps the raw
    /// bytes of a BMPString).
    pub fn to_legacy(&self) -> String {
        self.legacy(Bytes::Escaped)
    }

    /// [`Dn::to_legacy`] with non-ASCII kept as UTF-8 (for messages to people).
    pub fn to_legacy_utf8(&self) -> String {
        self.legacy(Bytes::Utf8)
    }

    fn legacy(&self, bytes: Bytes) -> String {
        let mut out = String::with_capacity(self.text_len_hint());
        for rdn in &self.rdns {
            out.push('/');
            for (i, ava) in rdn.avas.iter().enumerate() {
                if i > 0 {
                    out.push('+');
                }
                out.push_str(ava.attr_type.name());
                out.push('=');
                escape_value(&ava.value, Notation::Legacy, bytes, &mut out);
            }
        }
        out
    }

    fn rfc4514(&self, bytes: Bytes) -> String {
        let mut out = String::with_capacity(self.text_len_hint());
        for (i, rdn) in self.rdns.iter().rev().enumerate() {
            if i > 0 {
                out.push(',');
            }
            for (j, ava) in rdn.avas.iter().rev().enumerate() {
                if j > 0 {
                    out.push('+');
                }
                out.push_str(ava.attr_type.name());
                out.push('=');
                escape_value(&ava.value, Notation::Rfc4514, bytes, &mut out);
            }
        }
        out
    }

    /// The same name with its RDNs in the opposite order.
    pub fn reversed(&self) -> Dn {
        let mut rdns = self.rdns.clone();
        rdns.reverse();
        Dn { rdns }
    }

    fn text_len_hint(&self) -> usize {
        self.rdns
            .iter()
            .flat_map(|r| r.avas.iter())
            .map(|a| a.attr_type.name().len() + a.value.len() + 2)
            .sum()
    }
}

/// RFC 4514 text as [`Dn::to_rfc2253`], but with non-ASCII kept as UTF-8: for people (messages,
/// logs of rules), and for `~` rules written with the characters themselves.
impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc4514(Bytes::Utf8))
    }
}

impl fmt::Debug for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dn({:?})", self.to_string())
    }
}

impl FromStr for Dn {
    type Err = DnError;

    fn from_str(s: &str) -> Result<Dn, DnError> {
        Dn::parse(s)
    }
}

/// Why a DN string was rejected, and where (byte offset into the input).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnError {
    /// Byte offset into the input where the problem was found.
    pub offset: usize,
    /// What the problem is.
    pub kind: DnErrorKind,
}

/// What is wrong with a DN string; `Display` on [`DnError`] gives the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnErrorKind {
    /// The input is empty or only spaces.
    Empty,
    /// Expected `type=value` (e.g. after a trailing `,`, `+` or `/`).
    MissingAttribute,
    /// An attribute type with no `=` after it.
    MissingEquals,
    /// A short name that is not a known attribute type (such as `XX=1`).
    UnknownType(String),
    /// A dotted OID that is malformed (`2.5..3`).
    BadOid(String),
    /// `\` followed by neither a special character nor two hex digits.
    BadEscape,
    /// `\` as the last character.
    DanglingEscape,
    /// `\XX` escapes that do not form UTF-8.
    InvalidUtf8,
    /// A `#hexstring` BER value we cannot decode (the reason says why).
    BerValue(&'static str),
    /// A `"quoted"` RFC 2253 value.
    QuotedValue,
    /// A character RFC 4514 requires to be escaped.
    Unescaped(char),
}

impl DnError {
    fn new(offset: usize, kind: DnErrorKind) -> DnError {
        DnError { offset, kind }
    }
}

impl fmt::Display for DnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid DN at offset {}: ", self.offset)?;
        match &self.kind {
            DnErrorKind::Empty => f.write_str("empty DN"),
            DnErrorKind::MissingAttribute => f.write_str("expected `type=value`"),
            DnErrorKind::MissingEquals => f.write_str("missing '=' after the attribute type"),
            DnErrorKind::UnknownType(t) => write!(
                f,
                "unknown attribute type {t:?} (use a known name such as CN or a dotted OID)"
            ),
            DnErrorKind::BadOid(t) => write!(f, "malformed OID {t:?}"),
            DnErrorKind::BadEscape => f.write_str(
                "bad escape: '\\' must be followed by a special character or two hex digits",
            ),
            DnErrorKind::DanglingEscape => f.write_str("'\\' at the end of the input"),
            DnErrorKind::InvalidUtf8 => f.write_str("escaped bytes are not valid UTF-8"),
            DnErrorKind::BerValue(why) => write!(f, "bad #hexstring value: {why}"),
            DnErrorKind::QuotedValue => {
                f.write_str("quoted values are not supported; escape special characters with '\\'")
            }
            DnErrorKind::Unescaped(c) => write!(f, "{c:?} must be escaped as '\\{c}'"),
        }
    }
}

impl std::error::Error for DnError {}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Notation {
    Rfc4514,
    Legacy,
}

impl Notation {
    fn rdn_separator(self) -> u8 {
        match self {
            Notation::Rfc4514 => b',',
            Notation::Legacy => b'/',
        }
    }
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    notation: Notation,
}

impl<'a> Parser<'a> {
    fn new(s: &'a str, notation: Notation) -> Self {
        Parser {
            s,
            b: s.as_bytes(),
            pos: 0,
            notation,
        }
    }

    fn err<T>(&self, offset: usize, kind: DnErrorKind) -> Result<T, DnError> {
        Err(DnError::new(offset, kind))
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// RFC 4514: text order is most specific first, so the result is reversed into stored order
    /// (AVAs too, mirroring `to_rfc2253`, so printing and parsing round-trip exactly).
    fn rfc4514(mut self) -> Result<Dn, DnError> {
        let mut rdns = self.rdns()?;
        rdns.reverse();
        for rdn in &mut rdns {
            rdn.avas.reverse();
        }
        Ok(Dn { rdns })
    }

    fn legacy(mut self, after_slash: usize) -> Result<Dn, DnError> {
        self.pos = after_slash;
        Ok(Dn { rdns: self.rdns()? })
    }

    fn rdns(&mut self) -> Result<Vec<Rdn>, DnError> {
        let sep = self.notation.rdn_separator();
        let mut rdns = Vec::new();
        loop {
            let mut avas = vec![self.ava()?];
            while self.peek() == Some(b'+') {
                self.pos += 1;
                avas.push(self.ava()?);
            }
            rdns.push(Rdn { avas });
            match self.peek() {
                None => return Ok(rdns),
                Some(b) if b == sep => self.pos += 1,
                // `ava` only stops at a separator or the end; anything else is a parser bug,
                // reported rather than trusted.
                Some(b) => return self.err(self.pos, DnErrorKind::Unescaped(char::from(b))),
            }
        }
    }

    fn is_separator(&self, b: u8) -> bool {
        b == b'+' || b == self.notation.rdn_separator()
    }

    fn ava(&mut self) -> Result<Ava, DnError> {
        self.skip_spaces();
        let type_start = self.pos;
        loop {
            match self.peek() {
                Some(b'=') => break,
                Some(b) if !self.is_separator(b) => self.pos += 1,
                _ if self.pos == type_start => {
                    return self.err(type_start, DnErrorKind::MissingAttribute)
                }
                _ => return self.err(type_start, DnErrorKind::MissingEquals),
            }
        }
        let name = self.s[type_start..self.pos].trim_end_matches(' ');
        if name.is_empty() {
            return self.err(type_start, DnErrorKind::MissingAttribute);
        }
        let attr_type = AttrType::from_name(name).ok_or_else(|| {
            let kind = if name.starts_with(|c: char| c.is_ascii_digit())
                || name
                    .get(..4)
                    .is_some_and(|p| p.eq_ignore_ascii_case("oid."))
            {
                DnErrorKind::BadOid(name.to_owned())
            } else {
                DnErrorKind::UnknownType(name.to_owned())
            };
            DnError::new(type_start, kind)
        })?;
        self.pos += 1; // '='
        self.skip_spaces();
        let value = self.value()?;
        Ok(Ava { attr_type, value })
    }

    fn value(&mut self) -> Result<String, DnError> {
        let start = self.pos;
        if self.notation == Notation::Rfc4514 {
            match self.peek() {
                Some(b'#') => return self.ber_value(),
                Some(b'"') => return self.err(start, DnErrorKind::QuotedValue),
                _ => {}
            }
        }
        let mut out = Vec::new();
        // Length up to the last byte that is not an unescaped space: trailing spaces are
        // formatting, escaped ones are data.
        let mut keep = 0;
        while let Some(b) = self.peek() {
            if self.is_separator(b) {
                break;
            }
            match b {
                b'\\' => {
                    out.push(self.escape()?);
                    keep = out.len();
                    continue;
                }
                b' ' => out.push(b),
                b'"' | b';' | b'<' | b'>' if self.notation == Notation::Rfc4514 => {
                    return self.err(self.pos, DnErrorKind::Unescaped(char::from(b)));
                }
                _ => {
                    out.push(b);
                    keep = out.len();
                }
            }
            self.pos += 1;
        }
        out.truncate(keep);
        String::from_utf8(out).map_err(|_| DnError::new(start, DnErrorKind::InvalidUtf8))
    }

    /// RFC 4514 `#hexstring`: the DER of the value, as OpenSSL prints values of attribute types
    /// it has no name for (`1.3.6.1.4.1.99999.7=#0C0170`). Accepted for character-string types so
    /// such output can be pasted into a rule; the result is the decoded text.
    fn ber_value(&mut self) -> Result<String, DnError> {
        let start = self.pos;
        self.pos += 1; // '#'
        let hex_start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_hexdigit()) {
            self.pos += 1;
        }
        let hex = &self.b[hex_start..self.pos];
        self.skip_spaces();
        if self.peek().is_some_and(|b| !self.is_separator(b)) {
            return self.err(self.pos, DnErrorKind::BerValue("expected hex digits"));
        }
        if hex.is_empty() || !hex.len().is_multiple_of(2) {
            return self.err(start, DnErrorKind::BerValue("odd number of hex digits"));
        }
        let der: Vec<u8> = hex
            .chunks(2)
            .map(|pair| {
                let digit = |c: u8| char::from(c).to_digit(16).unwrap_or(0) as u8;
                digit(pair[0]) << 4 | digit(pair[1])
            })
            .collect();
        decode_der_string(&der).map_err(|why| DnError::new(start, DnErrorKind::BerValue(why)))
    }

    /// Decodes one escape at `self.pos` (the backslash) and advances past it.
    fn escape(&mut self) -> Result<u8, DnError> {
        let at = self.pos;
        let hex = |i: usize| self.b.get(i).and_then(|&c| char::from(c).to_digit(16));
        let Some(next) = self.b.get(at + 1).copied() else {
            return self.err(at, DnErrorKind::DanglingEscape);
        };
        if let (Some(hi), Some(lo)) = (hex(at + 1), hex(at + 2)) {
            self.pos += 3;
            return Ok((hi * 16 + lo) as u8);
        }
        let literal = match self.notation {
            Notation::Rfc4514 => b" \"#+,;<=>\\".contains(&next),
            Notation::Legacy => {
                if next == b'x' {
                    if let (Some(hi), Some(lo)) = (hex(at + 2), hex(at + 3)) {
                        self.pos += 4;
                        return Ok((hi * 16 + lo) as u8);
                    }
                }
                next == b' ' || next.is_ascii_punctuation()
            }
        };
        if !literal {
            return self.err(at, DnErrorKind::BadEscape);
        }
        self.pos += 2;
        Ok(next)
    }
}

/// Decodes a DER-encoded ASN.1 character string to UTF-8, as `ASN1_STRING_to_UTF8` would.
fn decode_der_string(der: &[u8]) -> Result<String, &'static str> {
    const NOT_DER: &str = "not a DER-encoded value";
    let (&tag, rest) = der.split_first().ok_or(NOT_DER)?;
    let (len, body) = match rest {
        [n @ 0..=0x7f, body @ ..] => (usize::from(*n), body),
        [0x81, n, body @ ..] => (usize::from(*n), body),
        [0x82, hi, lo, body @ ..] => (usize::from(*hi) << 8 | usize::from(*lo), body),
        _ => return Err(NOT_DER),
    };
    if body.len() != len {
        return Err(NOT_DER);
    }
    const BAD: &str = "invalid characters for its string type";
    match tag {
        // UTF8String, NumericString, PrintableString, IA5String, VisibleString.
        0x0c | 0x12 | 0x13 | 0x16 | 0x1a => String::from_utf8(body.to_vec()).map_err(|_| BAD),
        // TeletexString: BoringSSL reads it as Latin-1.
        0x14 => Ok(body.iter().map(|&b| char::from(b)).collect()),
        // BMPString (UCS-2) and UniversalString (UCS-4), big-endian.
        0x1e if body.len().is_multiple_of(2) => body
            .chunks(2)
            .map(|c| char::from_u32(u32::from(c[0]) << 8 | u32::from(c[1])).ok_or(BAD))
            .collect(),
        0x1c if body.len().is_multiple_of(4) => body
            .chunks(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])).ok_or(BAD))
            .collect(),
        0x1c | 0x1e => Err(BAD),
        _ => Err("not a character string type"),
    }
}

/// How output treats bytes of non-ASCII characters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bytes {
    /// Each byte as a hex escape, as OpenSSL (and so nginx) prints them: ASCII-only output.
    Escaped,
    /// Kept as UTF-8.
    Utf8,
}

/// Escapes one value for output in the given notation (see `to_rfc2253` / `to_legacy`).
fn escape_value(value: &str, notation: Notation, bytes: Bytes, out: &mut String) {
    let last = value.len().saturating_sub(1);
    let hex = |c: char, out: &mut String| {
        let mut utf8 = [0u8; 4];
        for b in c.encode_utf8(&mut utf8).bytes() {
            let _ = match notation {
                Notation::Rfc4514 => write!(out, "\\{b:02X}"),
                Notation::Legacy => write!(out, "\\x{b:02X}"),
            };
        }
    };
    for (i, c) in value.char_indices() {
        let edge_space = c == ' ' && (i == 0 || i == last);
        if c.is_ascii_control() || (!c.is_ascii() && bytes == Bytes::Escaped) {
            hex(c, out);
            continue;
        }
        match notation {
            Notation::Rfc4514 => match c {
                '\\' | '"' | ',' | '+' | '<' | '>' | ';' => {
                    out.push('\\');
                    out.push(c);
                }
                '#' if i == 0 => out.push_str("\\#"),
                ' ' if edge_space => out.push_str("\\ "),
                c => out.push(c),
            },
            Notation::Legacy => match c {
                '\\' | '/' | '+' => {
                    out.push('\\');
                    out.push(c);
                }
                ' ' if edge_space => out.push_str("\\ "),
                c => out.push(c),
            },
        }
    }
}

fn attr_type_of(obj: &Asn1ObjectRef) -> AttrType {
    let nid = obj.nid().as_raw();
    if let Some(k) = KNOWN_ATTRS.iter().find(|k| k.nid == nid) {
        return AttrType(AttrRepr::Known(k));
    }
    match ffi::oid_text(obj) {
        Some(oid) => AttrType::from_oid(&oid),
        None => AttrType(AttrRepr::Oid(obj.to_string().into())),
    }
}

/// The few BoringSSL calls boring's safe API lacks.
///
/// boring's `*Ref` types are `foreign-types` opaque wrappers: by that crate's contract a
/// `&X509NameEntryRef` *is* the `X509_NAME_ENTRY *` (this cast is exactly what
/// `ForeignTypeRef::as_ptr` does, kept as a cast so this module reads without that trait).
mod ffi {
    use std::os::raw::c_int;
    use std::ptr;

    use boring::asn1::{Asn1ObjectRef, Asn1StringRef};
    use boring::x509::X509NameEntryRef;

    /// Index of the RDN (SET) an entry belongs to: entries sharing it form a multi-valued RDN.
    pub(super) fn rdn_set_index(entry: &X509NameEntryRef) -> c_int {
        let raw = ptr::from_ref(entry).cast::<boring_sys::X509_NAME_ENTRY>();
        // SAFETY: `raw` is a valid entry borrowed for this call (see module comment); the
        // function only reads a field.
        unsafe { boring_sys::X509_NAME_ENTRY_set(raw) }
    }

    /// The dotted OID of an object (never its name).
    pub(super) fn oid_text(obj: &Asn1ObjectRef) -> Option<String> {
        let raw = ptr::from_ref(obj).cast::<boring_sys::ASN1_OBJECT>();
        let mut buf = vec![0u8; 64];
        loop {
            let cap = c_int::try_from(buf.len()).ok()?;
            // SAFETY: `raw` is a valid object (see module comment); OBJ_obj2txt writes at most
            // `cap` bytes (NUL included) into `buf` and returns the full length it needed.
            let n = unsafe { boring_sys::OBJ_obj2txt(buf.as_mut_ptr().cast(), cap, raw, 1) };
            let n = usize::try_from(n).ok().filter(|&n| n > 0)?;
            if n < buf.len() {
                buf.truncate(n);
                return String::from_utf8(buf).ok();
            }
            buf.resize(n + 1, 0);
        }
    }

    /// The value as UTF-8, converted from whatever ASN.1 string type it has. Unlike
    /// `Asn1StringRef::as_utf8`, this keeps embedded NULs: truncating at one would turn
    /// `CN=client.1.local\0.evil.com` into `CN=client.1.local`.
    pub(super) fn string_to_utf8(data: &Asn1StringRef) -> String {
        let raw = ptr::from_ref(data).cast::<boring_sys::ASN1_STRING>();
        let mut out: *mut u8 = ptr::null_mut();
        // SAFETY: `raw` is a valid string (see module comment); on success `out` receives a
        // buffer of the returned length, owned by us and released with OPENSSL_free below.
        let len = unsafe { boring_sys::ASN1_STRING_to_UTF8(&mut out, raw) };
        let Ok(len) = usize::try_from(len) else {
            return String::from_utf8_lossy(data.as_slice()).into_owned();
        };
        if out.is_null() {
            return String::new();
        }
        // SAFETY: `out` holds `len` initialised bytes; we copy them before freeing.
        let bytes = unsafe { std::slice::from_raw_parts(out, len) }.to_vec();
        // SAFETY: allocated by BoringSSL in ASN1_STRING_to_UTF8 and not used after this.
        unsafe { boring_sys::OPENSSL_free(out.cast()) };
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::test_support::*;

    fn dn(s: &str) -> Dn {
        match Dn::parse(s) {
            Ok(dn) => dn,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    fn err(s: &str) -> DnError {
        match Dn::parse(s) {
            Ok(dn) => panic!("{s:?} parsed as {dn:?}"),
            Err(e) => e,
        }
    }

    fn value(d: &Dn, rdn: usize) -> &str {
        d.rdns()[rdn].avas()[0].value()
    }

    #[test]
    fn rfc4514_is_reversed_into_stored_order() {
        let d = dn("CN=client.1.local,O=Internet Widgits Pty Ltd,ST=Some-State,C=FI");
        let names: Vec<_> = d
            .rdns()
            .iter()
            .map(|r| r.avas()[0].attr_type().name())
            .collect();
        assert_eq!(names, ["C", "ST", "O", "CN"]);
        assert_eq!(value(&d, 2), "Internet Widgits Pty Ltd");
        assert_eq!(
            d.to_rfc2253(),
            "CN=client.1.local,O=Internet Widgits Pty Ltd,ST=Some-State,C=FI"
        );
        assert_eq!(
            d.to_legacy(),
            "/C=FI/ST=Some-State/O=Internet Widgits Pty Ltd/CN=client.1.local"
        );
    }

    #[test]
    fn legacy_form_is_stored_order() {
        let d = dn("/C=FI/O=Acme/CN=Intermediate 1");
        assert_eq!(d, dn("CN=Intermediate 1,O=Acme,C=FI"));
        assert_eq!(d.key(), dn("CN=Intermediate 1, O=Acme, C=FI").key());
        assert_eq!(d.to_legacy(), "/C=FI/O=Acme/CN=Intermediate 1");
        // Commas and '=' are plain characters in the legacy form.
        let d = dn("/O=Acme, Inc/CN=a=b");
        assert_eq!(value(&d, 0), "Acme, Inc");
        assert_eq!(value(&d, 1), "a=b");
        assert_eq!(d, dn("CN=a=b,O=Acme\\, Inc"));
        assert_eq!(value(&dn("/CN=a\\/b"), 0), "a/b");
        assert_eq!(value(&dn("/CN=a\\x0Ab\\2Fc"), 0), "a\nb/c");
    }

    #[test]
    fn attribute_types_are_case_insensitive_and_aliased() {
        let want = dn("CN=x,O=y");
        for s in [
            "cn=x,o=y",
            "commonName=x,organizationName=y",
            "COMMONNAME=x,O=y",
            "2.5.4.3=x,2.5.4.10=y",
            "oid.2.5.4.3=x,OID.2.5.4.10=y",
            "  CN = x ,  O = y  ",
        ] {
            assert_eq!(dn(s), want, "{s}");
            assert_eq!(dn(s).key(), want.key(), "{s}");
        }
        assert_eq!(dn("E=a@b"), dn("emailAddress=a@b"));
        assert_eq!(dn("email=a@b"), dn("1.2.840.113549.1.9.1=a@b"));
        assert_eq!(dn("emailAddress=a@b").to_rfc2253(), "emailAddress=a@b");
        assert_eq!(dn("streetAddress=x").to_rfc2253(), "street=x");
        assert_eq!(dn("userId=x").to_rfc2253(), "UID=x");
        assert_eq!(dn("domainComponent=x").to_rfc2253(), "DC=x");
        assert_eq!(dn("givenName=x+surname=y").to_rfc2253(), "GN=x+SN=y");
        for name in [
            "L",
            "ST",
            "OU",
            "STREET",
            "DC",
            "UID",
            "serialNumber",
            "title",
            "GN",
            "SN",
            "initials",
            "pseudonym",
            "generationQualifier",
            "businessCategory",
            "postalCode",
        ] {
            assert!(AttrType::from_name(name).is_some(), "{name}");
        }
        // Unknown OIDs are types of their own and print as themselves.
        let d = dn("1.3.6.1.4.1.99999.1=x");
        assert_eq!(d.to_rfc2253(), "1.3.6.1.4.1.99999.1=x");
        assert_ne!(d, dn("1.3.6.1.4.1.99999.2=x"));
    }

    #[test]
    fn values_are_case_sensitive() {
        assert_ne!(dn("CN=Alice"), dn("CN=alice"));
        assert_ne!(dn("CN=Alice").key(), dn("CN=alice").key());
    }

    #[test]
    fn look_alikes_differ() {
        let pairs = [
            ("CN=client.1.local.evil.com", "CN=client.1.local"),
            ("CN=Intermediate 10", "CN=Intermediate 1"),
            ("CN=a\\,O=b", "CN=a,O=b"),
            ("CN=a\\+O=b", "CN=a+O=b"),
            ("O=Acme\\, Inc", "O=Acme,O=Inc"),
            ("CN=x,O=y", "O=y,CN=x"),
            ("CN=x,O=y", "CN=x+O=y"),
            ("CN=a\\ ", "CN=a"),
            ("CN=a\\00", "CN=a"),
            ("CN=a,O=b", "CN=a,O=b,C=FI"),
            ("CN=a,O=b", "CN=a"),
            ("CN=1:x", "CN=1"),
            ("CN=a;CN=b", "CN=a"),
        ];
        for (a, b) in pairs {
            let (Ok(da), Ok(db)) = (Dn::parse(a), Dn::parse(b)) else {
                continue; // The `;` case is rejected outright, which is fine too.
            };
            assert_ne!(da, db, "{a} vs {b}");
            assert_ne!(da.key(), db.key(), "{a} vs {b}");
        }
        assert!(Dn::parse("CN=a;CN=b").is_err());
    }

    #[test]
    fn multi_valued_rdns_ignore_ava_order() {
        let a = dn("CN=a+UID=b,O=x");
        let b = dn("UID=b+CN=a,O=x");
        assert_eq!(a, b);
        assert_eq!(a.key(), b.key());
        assert_eq!(a.rdns().len(), 2);
        assert_eq!(a.rdns()[1].avas().len(), 2);
        assert_eq!(dn("/O=x/UID=b+CN=a"), a);
        assert_ne!(a, dn("CN=a+UID=c,O=x"));
        assert_ne!(dn("CN=a+CN=a"), dn("CN=a"));
        let hash = |d: &Dn| {
            use std::collections::hash_map::DefaultHasher;
            let mut h = DefaultHasher::new();
            d.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&a), hash(&b));
    }

    #[test]
    fn escapes() {
        assert_eq!(value(&dn("CN=a\\,b"), 0), "a,b");
        assert_eq!(value(&dn("CN=a\\2Cb"), 0), "a,b");
        assert_eq!(
            value(&dn("CN=\\\"q\\\" \\\\ \\<\\>\\;\\=\\+"), 0),
            "\"q\" \\ <>;=+"
        );
        assert_eq!(value(&dn("CN=\\#x"), 0), "#x");
        assert_eq!(value(&dn("CN=x#"), 0), "x#");
        assert_eq!(value(&dn("CN=\\ x \\ "), 0), " x  ");
        assert_eq!(value(&dn("CN=  x  y  ,O=z"), 1), "x  y");
        assert_eq!(value(&dn("CN=J\\C3\\BCrgen"), 0), "Jürgen");
        assert_eq!(value(&dn("CN=Jürgen"), 0), "Jürgen");
        assert_eq!(value(&dn("CN=a=b"), 0), "a=b");
        assert_eq!(value(&dn("CN="), 0), "");
    }

    #[test]
    fn errors_name_position_and_reason() {
        assert_eq!(err("").kind, DnErrorKind::Empty);
        assert_eq!(err("   ").kind, DnErrorKind::Empty);
        assert_eq!(err("CN").kind, DnErrorKind::MissingEquals);
        let e = err("CN=a,O");
        assert_eq!((e.offset, e.kind), (5, DnErrorKind::MissingEquals));
        assert_eq!(err("CN=a,").kind, DnErrorKind::MissingAttribute);
        assert_eq!(err("CN=a+").kind, DnErrorKind::MissingAttribute);
        assert_eq!(err(",CN=a").kind, DnErrorKind::MissingAttribute);
        assert_eq!(err("/C=FI/").kind, DnErrorKind::MissingAttribute);
        assert_eq!(err("/C=FI//CN=x").kind, DnErrorKind::MissingAttribute);
        assert_eq!(err("=x").kind, DnErrorKind::MissingAttribute);
        let e = err("CN=a,Foo=b");
        assert_eq!(
            (e.offset, e.kind),
            (5, DnErrorKind::UnknownType("Foo".into()))
        );
        assert!(matches!(err("2.5.04.3=x").kind, DnErrorKind::BadOid(_)));
        assert!(matches!(err("2.5.=x").kind, DnErrorKind::BadOid(_)));
        assert!(matches!(err("7.1=x").kind, DnErrorKind::BadOid(_)));
        assert!(matches!(err("oid.x=1").kind, DnErrorKind::BadOid(_)));
        let e = err("CN=a\\qb");
        assert_eq!((e.offset, e.kind), (4, DnErrorKind::BadEscape));
        assert_eq!(err("CN=a\\").kind, DnErrorKind::DanglingEscape);
        assert_eq!(err("CN=a\\4").kind, DnErrorKind::BadEscape);
        assert_eq!(err("CN=\\FF").kind, DnErrorKind::InvalidUtf8);
        assert!(matches!(
            err("CN=#0403616263").kind,
            DnErrorKind::BerValue(_)
        ));
        assert!(matches!(err("CN=#0C01").kind, DnErrorKind::BerValue(_)));
        assert!(matches!(err("CN=#0C017").kind, DnErrorKind::BerValue(_)));
        assert!(matches!(err("CN=#0C0170x").kind, DnErrorKind::BerValue(_)));
        assert!(matches!(err("CN=#").kind, DnErrorKind::BerValue(_)));
        assert!(matches!(err("CN=#0C02FFFE").kind, DnErrorKind::BerValue(_)));
        assert_eq!(err("CN=\"a,b\"").kind, DnErrorKind::QuotedValue);
        assert_eq!(err("CN=a\"b").kind, DnErrorKind::Unescaped('"'));
        assert_eq!(err("CN=a<b").kind, DnErrorKind::Unescaped('<'));
        assert_eq!(err("/CN=a\\qb").kind, DnErrorKind::BadEscape);
        let msg = err("CN=a,Foo=b").to_string();
        assert!(msg.contains("offset 5") && msg.contains("Foo"), "{msg}");
    }

    fn tricky() -> Vec<Dn> {
        let values = [
            "plain",
            "a,b",
            "a+b",
            "say \"hi\"",
            "back\\slash",
            "#hash",
            "mid#hash",
            " leading",
            "trailing ",
            "  both  ",
            " ",
            "",
            "a/b",
            "/",
            "semi;colon <angle>",
            "eq=ual",
            "Jürgen",
            "日本語",
            "nul\0byte",
            "cr\r\nlf",
            "tab\tdel\x7f",
            "\\",
            "\\2C",
            "x\\",
        ];
        let cn = AttrType::from_oid("2.5.4.3");
        let o = AttrType::from_oid("2.5.4.10");
        let uid = AttrType::from_oid("0.9.2342.19200300.100.1.1");
        let odd = AttrType::from_oid("1.3.6.1.4.1.99999.7");
        let mut out = Vec::new();
        for v in values {
            out.push(Dn {
                rdns: vec![
                    Rdn {
                        avas: vec![Ava::new(o.clone(), v)],
                    },
                    Rdn {
                        avas: vec![Ava::new(cn.clone(), v), Ava::new(uid.clone(), v)],
                    },
                    Rdn {
                        avas: vec![Ava::new(odd.clone(), v)],
                    },
                ],
            });
        }
        out
    }

    #[test]
    fn round_trips() {
        for d in tricky() {
            let rfc = d.to_rfc2253();
            let legacy = d.to_legacy();
            let back = Dn::parse(&rfc).unwrap_or_else(|e| panic!("{rfc:?}: {e}"));
            assert_eq!(back, d, "{rfc:?}");
            assert_eq!(back.key(), d.key(), "{rfc:?}");
            // Exact structure, AVA order included.
            assert_eq!(back.to_rfc2253(), rfc);
            let back = Dn::parse(&legacy).unwrap_or_else(|e| panic!("{legacy:?}: {e}"));
            assert_eq!(back, d, "{legacy:?}");
            assert_eq!(back.to_legacy(), legacy);
        }
    }

    #[test]
    fn output_escaping() {
        let d = dn("CN=\\ a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h=i\\ ");
        assert_eq!(d.to_rfc2253(), "CN=\\ a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h=i\\ ");
        assert_eq!(dn("CN=\\#a#").to_rfc2253(), "CN=\\#a#");
        assert_eq!(dn("CN=a\\0Ab").to_rfc2253(), "CN=a\\0Ab");
        assert_eq!(dn("CN=a\\0Ab").to_legacy(), "/CN=a\\x0Ab");
        assert_eq!(dn("CN=a/b\\+c").to_legacy(), "/CN=a\\/b\\+c");
        assert_eq!(dn("CN=Jürgen").to_string(), "CN=Jürgen");
        assert_eq!(dn("CN=a\\0Ab\\7F").to_string(), "CN=a\\0Ab\\7F");
    }

    /// Non-ASCII is escaped byte by byte as nginx does (`$ssl_client_s_dn` = `CN=J\C3\BC..`,
    /// `$ssl_client_s_dn_legacy` = `/CN=J\xC3\xBC..`), and both spellings parse back.
    #[test]
    fn non_ascii_is_escaped_like_nginx() {
        let d = dn("CN=Jürgen Müller,O=Acme,C=FI");
        assert_eq!(d.to_rfc2253(), "CN=J\\C3\\BCrgen M\\C3\\BCller,O=Acme,C=FI");
        assert_eq!(
            d.to_legacy(),
            "/C=FI/O=Acme/CN=J\\xC3\\xBCrgen M\\xC3\\xBCller"
        );
        assert_eq!(d.to_string(), "CN=Jürgen Müller,O=Acme,C=FI");
        assert_eq!(d.to_legacy_utf8(), "/C=FI/O=Acme/CN=Jürgen Müller");
        for s in [
            d.to_rfc2253(),
            d.to_legacy(),
            d.to_legacy_utf8(),
            d.to_string(),
        ] {
            assert_eq!(dn(&s), d, "{s}");
            assert_eq!(dn(&s).key(), d.key(), "{s}");
        }
        // Four-byte characters, and an escaped edge space next to them.
        let d = dn("CN=\\ 日本😀\\ ");
        assert_eq!(
            d.to_rfc2253(),
            "CN=\\ \\E6\\97\\A5\\E6\\9C\\AC\\F0\\9F\\98\\80\\ "
        );
        assert_eq!(dn(&d.to_rfc2253()), d);
        assert_eq!(dn(&d.to_legacy()), d);
        for d in tricky() {
            for s in [d.to_rfc2253(), d.to_legacy()] {
                assert!(s.bytes().all(|b| (b' '..=b'~').contains(&b)), "{s:?}");
            }
        }
    }

    #[test]
    fn from_certificate_names() {
        let name = der_name(&[
            &[(C, PRINTABLE, b"FI")],
            &[(O, UTF8, "Acme, Inc \u{e9}".as_bytes())],
            &[(CN, UTF8, b"a+b"), (UID, UTF8, b"u1")],
            &[(PRIVATE, UTF8, b"x")],
            &[(CN, BMP, &[0x00, 0x4a, 0x00, 0xfc])],
        ]);
        let d = Dn::from_x509_name(&name);
        assert_eq!(d.rdns().len(), 5);
        assert_eq!(d.rdns()[2].avas().len(), 2);
        assert_eq!(
            d,
            dn("CN=J\u{fc},1.3.6.1.4.1.99999.7=x,UID=u1+CN=a\\+b,O=Acme\\, Inc \u{e9},C=FI")
        );
        assert_eq!(
            d.to_rfc2253(),
            "CN=J\\C3\\BC,1.3.6.1.4.1.99999.7=x,UID=u1+CN=a\\+b,O=Acme\\, Inc \\C3\\A9,C=FI"
        );
        assert_eq!(
            d.to_legacy(),
            "/C=FI/O=Acme, Inc \\xC3\\xA9/CN=a\\+b+UID=u1/1.3.6.1.4.1.99999.7=x/CN=J\\xC3\\xBC"
        );
        assert!(Dn::from_x509_name(&der_name(&[])).is_empty());
    }

    #[test]
    fn embedded_nul_is_kept() {
        let name = der_name(&[&[(CN, UTF8, b"client.1.local\0.evil.com")]]);
        let d = Dn::from_x509_name(&name);
        assert_eq!(value(&d, 0), "client.1.local\0.evil.com");
        assert_ne!(d, dn("CN=client.1.local"));
        assert_eq!(d.to_rfc2253(), "CN=client.1.local\\00.evil.com");
    }

    #[test]
    fn non_string_values_do_not_panic() {
        // BoringSSL rejects malformed UTF8String/BMPString at parse time, but an attribute value
        // may be any ASN.1 type; one that has no text form is kept as lossy bytes.
        let name = der_name(&[&[(CN, 0x04, b"a\xffb")], &[(O, 0x02, b"\x01")]]);
        let d = Dn::from_x509_name(&name);
        assert_eq!(d.rdns().len(), 2);
        assert_eq!(value(&d, 0), "a\u{fffd}b");
        assert_ne!(d, dn("CN=ab,O=1"));
    }

    #[test]
    fn ber_hexstring_values() {
        let private = AttrType::from_oid("1.3.6.1.4.1.99999.7");
        let want = Dn {
            rdns: vec![Rdn {
                avas: vec![Ava::new(private, "p")],
            }],
        };
        assert_eq!(dn("1.3.6.1.4.1.99999.7=#0C0170"), want);
        assert_eq!(dn("1.3.6.1.4.1.99999.7=#130170 "), want);
        assert_eq!(value(&dn("CN=#1E04004A00FC"), 0), "J\u{fc}");
        assert_eq!(value(&dn("CN=#1C080000004A000000FC"), 0), "J\u{fc}");
        assert_eq!(value(&dn("CN=#14024AFC"), 0), "J\u{fc}");
        assert_eq!(value(&dn("CN=#0C00,O=x"), 1), "");
    }

    /// Our RFC 2253 output is byte-identical to BoringSSL's `XN_FLAG_RFC2253` (which includes
    /// `ASN1_STRFLGS_ESC_MSB`), as nginx's `$ssl_client_s_dn` is with OpenSSL: non-ASCII and
    /// control characters escaped byte by byte, whatever the value's string type.
    #[test]
    fn matches_boringssl_print_ex() {
        let names = [
            der_name(&[
                &[(C, PRINTABLE, b"FI")],
                &[(O, UTF8, b"Internet Widgits Pty Ltd")],
                &[(CN, UTF8, b"client.1.local")],
            ]),
            der_name(&[
                &[(O, UTF8, b" a,b+c\"d\\e<f>g;h=i#j ")],
                &[(CN, UTF8, b"#x"), (UID, UTF8, b"y\x01z\x7f")],
                &[(CN, BMP, b"\x00a\x00 ")],
            ]),
            der_name(&[
                &[(C, PRINTABLE, b"FI")],
                &[(O, UTF8, "Acme \u{e9}".as_bytes())],
                &[(CN, UTF8, "J\u{fc}rgen M\u{fc}ller".as_bytes())],
            ]),
            der_name(&[
                &[(CN, UTF8, "\u{e9}a\u{e9}".as_bytes())],
                &[(CN, UTF8, "\u{65e5}\u{1f600}\n\r\0".as_bytes())],
                &[(CN, BMP, &[0x00, 0x4a, 0x00, 0xfc, 0x65, 0xe5])],
                &[
                    (CN, UTF8, " \u{fc} ".as_bytes()),
                    (UID, UTF8, "#\u{fc}".as_bytes()),
                ],
            ]),
        ];
        for name in names {
            let ours = Dn::from_x509_name(&name).to_rfc2253();
            let theirs = name.print_ex(boring_sys::XN_FLAG_RFC2253);
            assert_eq!(Some(ours), theirs);
        }
        // The one deliberate difference: OpenSSL dumps values of types it has no name for as `#`
        // DER (which `parse` accepts); we print text.
        let name = der_name(&[
            &[(PRIVATE, UTF8, b"p")],
            &[(CN, UTF8, "J\u{fc}".as_bytes())],
        ]);
        let d = Dn::from_x509_name(&name);
        assert_eq!(d.to_rfc2253(), "CN=J\\C3\\BC,1.3.6.1.4.1.99999.7=p");
        let theirs = name
            .print_ex(boring_sys::XN_FLAG_RFC2253)
            .unwrap_or_default();
        assert_eq!(theirs, "CN=J\\C3\\BC,1.3.6.1.4.1.99999.7=#0C0170");
        assert_eq!(d, dn(&theirs));
    }
}
