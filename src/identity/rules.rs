//! Admission rules, compiled once from config (`allow_subjects`, `allow_issuers`, `allow_sans`)
//! so that checking a connection costs a few hash lookups.
//!
//! Semantics: a client is admitted when its certificate verified and every non-empty family has
//! a matching entry. Within a family any entry suffices.
//! - DN rules (subjects; issuers, which apply to the leaf's issuer DN): an exact DN in RFC 4514
//!   or legacy `/C=../CN=..` form, compared structurally (see [`super::dn`]), so `CN=Jürgen` and
//!   `CN=J\C3\BCrgen` are one rule; or `~regex`, which must match the whole RFC 2253 string of
//!   the DN, either as nginx prints it (`$ssl_client_s_dn`, non-ASCII escaped: `CN=J\C3\BCrgen`)
//!   or with non-ASCII as UTF-8 (`CN=Jürgen`).
//! - Spellings that cannot mean what was written are caught at compile time (see
//!   `DnSpelling`): a forward-order DN (`C=DE,O=Acme,CN=alice`) and a `~/C=DE/..` regex are
//!   refused with the spelling that would match; OpenSSL 3's one-line output (`C = DE, O = Acme,
//!   CN = alice`) is read in certificate order, with a warning naming the compact spelling.
//! - SAN rules: `kind:value`, kind `dns`, `email`, `uri` or `ip` (case-insensitive). Exact by
//!   default (DNS names and email domains case-insensitive, URIs exact, IPs as addresses). `*`
//!   is a wildcard: in `dns` only as the whole leftmost label (`*.acme.test` matches one label),
//!   in `uri` and `email` any sequence. `~regex` matches a whole value of that kind as the
//!   certificate has it. Wildcards and regexes never match values containing control characters.
//! - Fingerprint rules (`allow_fingerprints`): the SHA-256 of the leaf's DER, as
//!   `sha256:AB:CD:..` (what `openssl x509 -fingerprint -sha256` prints, prefix optional) or
//!   bare hex in either case; exact only. They pin certificates, not identities: a renewed
//!   certificate needs its new fingerprint added.

use std::borrow::Cow;
use std::collections::HashMap as StdHashMap;

/// The rule tables' maps. Their keys come from the configuration and only lookups come from
/// clients, so a fast hash with a per-process random seed (foldhash) is enough; SipHash was
/// half the cost of a check.
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use regex::Regex;

use super::cert::{ClientCert, San};
use super::dn::{Dn, DnError, DnKey};

/// A list of rules, named by its config key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `allow_subjects`: the leaf's subject DN.
    Subjects,
    /// `allow_issuers`: the leaf's issuer DN.
    Issuers,
    /// `allow_sans`: the leaf's subjectAltNames.
    Sans,
    /// `allow_fingerprints`: the SHA-256 of the leaf's DER.
    Fingerprints,
}

impl Family {
    /// The config key under `client_auth`.
    pub fn key(self) -> &'static str {
        match self {
            Family::Subjects => "allow_subjects",
            Family::Issuers => "allow_issuers",
            Family::Sans => "allow_sans",
            Family::Fingerprints => "allow_fingerprints",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// The compiled `allow_*` lists.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    subjects: DnRules,
    issuers: DnRules,
    sans: SanRules,
    fingerprints: FingerprintRules,
    warnings: Vec<RuleWarning>,
}

impl Rules {
    /// Compiles the three config lists; the error names the list, the index and the reason.
    pub fn compile(
        subjects: &[String],
        issuers: &[String],
        sans: &[String],
    ) -> Result<Rules, RuleError> {
        let mut warnings = Vec::new();
        Ok(Rules {
            subjects: DnRules::compile(Family::Subjects, subjects, &mut warnings)?,
            issuers: DnRules::compile(Family::Issuers, issuers, &mut warnings)?,
            sans: SanRules::compile(sans)?,
            fingerprints: FingerprintRules::default(),
            warnings,
        })
    }

    /// Adds the `allow_fingerprints` family; the error names the entry and the reason.
    pub fn with_fingerprints(mut self, fingerprints: &[String]) -> Result<Rules, RuleError> {
        self.fingerprints = FingerprintRules::compile(fingerprints)?;
        Ok(self)
    }

    /// Rules that compiled but were read differently from how they were written (OpenSSL's
    /// one-line form); `check` and `run` print them.
    pub fn warnings(&self) -> &[RuleWarning] {
        &self.warnings
    }

    /// The rules of one family as written in the configuration (`certgate explain`).
    pub fn texts(&self, family: Family) -> &[String] {
        match family {
            Family::Subjects => &self.subjects.texts,
            Family::Issuers => &self.issuers.texts,
            Family::Sans => &self.sans.texts,
            Family::Fingerprints => &self.fingerprints.texts,
        }
    }

    /// True when no family has rules: any verified certificate is admitted.
    pub fn is_empty(&self) -> bool {
        self.subjects.texts.is_empty()
            && self.issuers.texts.is_empty()
            && self.sans.texts.is_empty()
            && self.fingerprints.texts.is_empty()
    }

    /// Decides admission. Hash lookups of every family run before any wildcard or regex, so a
    /// refusal is usually decided without running a regex.
    pub fn check(&self, cert: &ClientCert, verified: bool) -> Result<Admit<'_>, Refuse> {
        let facts = Facts {
            subject_key: cert.subject_key(),
            issuer_key: cert.issuer_key(),
            subject_rfc2253: cert.subject_rfc2253(),
            issuer_rfc2253: cert.issuer_rfc2253(),
            subject_utf8: cert.subject_utf8(),
            issuer_utf8: cert.issuer_utf8(),
            sans: cert.sans(),
            fingerprint: cert.fingerprint(),
        };
        self.check_facts(&facts, verified)
    }

    /// [`check`](Rules::check) on the facts alone (the fuzz targets have no certificates).
    pub fn check_facts(&self, cert: &Facts<'_>, verified: bool) -> Result<Admit<'_>, Refuse> {
        if !verified {
            return Err(Refuse::Unverified);
        }
        let subject = self.subjects.probe(cert.subject_key);
        let issuer = self.issuers.probe(cert.issuer_key);
        let san = self.sans.probe(cert.sans);
        let fingerprint = self.fingerprints.probe(cert.fingerprint);
        for (probe, refuse) in [
            (&fingerprint, Refuse::Fingerprint),
            (&subject, Refuse::Subject),
            (&issuer, Refuse::Issuer),
            (&san, Refuse::San),
        ] {
            if let Probe::Miss = probe {
                return Err(refuse);
            }
        }
        Ok(Admit {
            subject: self
                .subjects
                .resolve(
                    subject,
                    Family::Subjects,
                    cert.subject_rfc2253,
                    cert.subject_utf8,
                )
                .ok_or(Refuse::Subject)?,
            issuer: self
                .issuers
                .resolve(
                    issuer,
                    Family::Issuers,
                    cert.issuer_rfc2253,
                    cert.issuer_utf8,
                )
                .ok_or(Refuse::Issuer)?,
            san: self.sans.resolve(san, cert.sans).ok_or(Refuse::San)?,
            fingerprint: match fingerprint {
                Probe::Hit(i) => Some(RuleRef::new(
                    Family::Fingerprints,
                    i,
                    &self.fingerprints.texts,
                )),
                _ => None,
            },
        })
    }
}

/// What the rules look at in a client certificate, as [`ClientCert`] holds it.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// The subject's canonical key, for exact `allow_subjects` lookups.
    pub subject_key: &'a DnKey,
    /// The issuer's canonical key, for exact `allow_issuers` lookups.
    pub issuer_key: &'a DnKey,
    /// Header-safe RFC 2253 strings, which `~regex` rules match.
    pub subject_rfc2253: &'a str,
    /// The issuer in header-safe RFC 2253 form.
    pub issuer_rfc2253: &'a str,
    /// The same DNs with UTF-8 left as is, when they hold any: regexes match either spelling.
    pub subject_utf8: Option<&'a str>,
    /// The issuer with UTF-8 kept, when it holds non-ASCII.
    pub issuer_utf8: Option<&'a str>,
    /// The DNS, email, URI and IP subjectAltNames, in certificate order.
    pub sans: &'a [San],
    /// SHA-256 of the leaf's DER, lowercase hex without separators.
    pub fingerprint: &'a str,
}

/// The result of a family's hash lookups.
enum Probe {
    /// The family has no rules.
    Empty,
    Hit(usize),
    /// No exact hit, but patterns remain to try.
    Patterns,
    Miss,
}

impl Probe {
    fn from_lookup(hit: Option<usize>, has_patterns: bool) -> Probe {
        match hit {
            Some(i) => Probe::Hit(i),
            None if has_patterns => Probe::Patterns,
            None => Probe::Miss,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct DnRules {
    texts: Vec<String>,
    /// Exact DNs by canonical key; the value is the index of the first rule with that DN.
    exact: HashMap<DnKey, usize>,
    regexes: Vec<(usize, Regex)>,
}

impl DnRules {
    fn compile(
        family: Family,
        rules: &[String],
        warnings: &mut Vec<RuleWarning>,
    ) -> Result<DnRules, RuleError> {
        let mut out = DnRules {
            texts: rules.to_vec(),
            exact: HashMap::with_capacity_and_hasher(rules.len(), Default::default()),
            regexes: Vec::new(),
        };
        for (index, rule) in rules.iter().enumerate() {
            let fail = |kind| RuleError::new(family, index, rule, kind);
            if rule.trim().is_empty() {
                return Err(fail(RuleErrorKind::Empty));
            }
            if let Some(pattern) = rule.strip_prefix('~') {
                let re = whole_match(pattern).map_err(fail)?;
                if let Some(suggestion) = slash_regex(pattern) {
                    return Err(fail(RuleErrorKind::SlashRegex(suggestion)));
                }
                out.regexes.push((index, re));
                continue;
            }
            let (dn, spelling) = read_exact(rule).map_err(|e| fail(RuleErrorKind::Dn(e)))?;
            let dn = match spelling {
                DnSpelling::Plain => dn,
                DnSpelling::ForwardOrder { first } => {
                    return Err(fail(RuleErrorKind::ForwardOrder {
                        first,
                        fixed: dn.reversed(),
                        as_written: dn,
                    }))
                }
                DnSpelling::OpensslOneline => {
                    let read = dn;
                    warnings.push(RuleWarning::new(
                        family,
                        index,
                        rule,
                        format!(
                            "is OpenSSL's one-line form (`openssl x509 -subject`), which lists \
                             the certificate's order: read as {:?} (RFC 2253, most specific \
                             first, as nginx's $ssl_client_s_dn); write that to silence this \
                             warning",
                            read.to_string()
                        ),
                    ));
                    read
                }
                DnSpelling::SpacedRfc2253 { first } => {
                    warnings.push(RuleWarning::new(
                        family,
                        index,
                        rule,
                        format!(
                            "has spaces around '=' like OpenSSL's one-line output, but names \
                             {first} first: read as RFC 2253 {:?} (most specific first); write \
                             that to silence this warning, or, if you copied it from `openssl \
                             x509 -subject` because your certificates list {first} first, the \
                             legacy {:?}",
                            dn.to_string(),
                            dn.reversed().to_legacy_utf8()
                        ),
                    ));
                    dn
                }
            };
            out.exact.entry(dn.key()).or_insert(index);
        }
        Ok(out)
    }

    fn probe(&self, key: &DnKey) -> Probe {
        if self.texts.is_empty() {
            return Probe::Empty;
        }
        Probe::from_lookup(self.exact.get(key).copied(), !self.regexes.is_empty())
    }

    /// `None` when the family is not satisfied; `Some(None)` when it has no rules. Regexes are
    /// tried on the RFC 2253 string as sent upstream (`dn`) and, when the DN has non-ASCII, on
    /// the same with UTF-8 kept (`utf8`).
    fn resolve(
        &self,
        probe: Probe,
        family: Family,
        dn: &str,
        utf8: Option<&str>,
    ) -> Option<Option<RuleRef<'_>>> {
        let index = match probe {
            Probe::Empty => return Some(None),
            Probe::Hit(i) => i,
            Probe::Patterns => self
                .regexes
                .iter()
                .find(|(_, re)| re.is_match(dn) || utf8.is_some_and(|u| re.is_match(u)))
                .map(|(i, _)| *i)?,
            Probe::Miss => return None,
        };
        Some(Some(RuleRef::new(family, index, &self.texts)))
    }
}

/// `allow_fingerprints`, by normalized fingerprint (64 lowercase hex digits).
#[derive(Clone, Debug, Default)]
struct FingerprintRules {
    texts: Vec<String>,
    exact: HashMap<String, usize>,
}

impl FingerprintRules {
    fn compile(rules: &[String]) -> Result<FingerprintRules, RuleError> {
        let mut out = FingerprintRules {
            texts: rules.to_vec(),
            exact: HashMap::with_capacity_and_hasher(rules.len(), Default::default()),
        };
        for (index, rule) in rules.iter().enumerate() {
            let hex = normalize_fingerprint(rule)
                .map_err(|kind| RuleError::new(Family::Fingerprints, index, rule, kind))?;
            out.exact.entry(hex).or_insert(index);
        }
        Ok(out)
    }

    fn probe(&self, fingerprint: &str) -> Probe {
        if self.texts.is_empty() {
            return Probe::Empty;
        }
        Probe::from_lookup(self.exact.get(fingerprint).copied(), false)
    }
}

/// `sha256:AB:CD:..`, `AB:CD:..` or `abcd..` as 64 lowercase hex digits.
fn normalize_fingerprint(rule: &str) -> Result<String, RuleErrorKind> {
    let rule = rule.trim();
    if rule.is_empty() {
        return Err(RuleErrorKind::Empty);
    }
    let body = match rule.split_once(':') {
        Some((algo, rest)) if algo.eq_ignore_ascii_case("sha256") => rest,
        Some((algo, _)) if algo.len() > 2 && algo.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            return Err(RuleErrorKind::Fingerprint(format!(
                "{algo:?} fingerprints are not supported, only SHA-256 (print it with `openssl \
                 x509 -in client.pem -noout -fingerprint -sha256`)"
            )))
        }
        _ => rule,
    };
    let colons = body.contains(':');
    let mut hex = String::with_capacity(64);
    for (i, part) in body.split(':').enumerate() {
        if colons && part.len() != 2 {
            return Err(RuleErrorKind::Fingerprint(format!(
                "byte {} is {part:?}: with colons, write two hex digits per byte",
                i + 1
            )));
        }
        hex.push_str(part);
    }
    if let Some(c) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(RuleErrorKind::Fingerprint(format!(
            "{c:?} is not a hex digit"
        )));
    }
    if hex.len() != 64 {
        return Err(RuleErrorKind::Fingerprint(format!(
            "{} hex digits, but a SHA-256 fingerprint has 64 (32 bytes){}",
            hex.len(),
            if hex.len() == 40 {
                "; this looks like SHA-1: print SHA-256 with `openssl x509 -in client.pem \
                 -noout -fingerprint -sha256`"
            } else {
                ""
            }
        )));
    }
    Ok(hex.to_ascii_lowercase())
}

/// The DN an exact rule stands for, and how it was spelled: as written, except OpenSSL's
/// one-line form, which lists the certificate's order and is read reversed. (The fuzz oracle of
/// exact rules reads them through this too.)
pub(crate) fn read_exact(rule: &str) -> Result<(Dn, DnSpelling), super::dn::DnError> {
    let dn = Dn::parse(rule)?;
    let spelling = DnSpelling::of(rule, &dn);
    let dn = match spelling {
        DnSpelling::OpensslOneline => dn.reversed(),
        _ => dn,
    };
    Ok((dn, spelling))
}

/// How an exact DN rule in RFC 4514 syntax is spelled, judged from the order of its attribute
/// types (most specific first, as RFC 2253 prints certificate DNs, or the reverse) and from
/// OpenSSL's one-line signature (` = ` around the first `=`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DnSpelling {
    /// Most specific first, or no order to tell (one RDN, types of equal or unknown rank).
    Plain,
    /// Most general first (`C=DE,O=Acme,CN=alice`): certificate order pasted as RFC 2253, which
    /// only a certificate storing its RDNs backwards matches. `first` describes the first type.
    ForwardOrder { first: String },
    /// `C = DE, O = Acme, CN = alice`, what `openssl x509 -subject` prints (OpenSSL 3): in
    /// certificate order whatever that is. Read in that order.
    OpensslOneline,
    /// Spaced like the one-line form but most specific first: hand-written RFC 2253 with
    /// spaces, or OpenSSL output for a certificate storing its RDNs backwards. Read as RFC 2253.
    SpacedRfc2253 { first: String },
}

impl DnSpelling {
    /// `dn` is `rule` parsed (RFC 4514 syntax is reversed into stored order, so the text's first
    /// RDN is `dn`'s last).
    fn of(rule: &str, dn: &Dn) -> DnSpelling {
        if rule.trim_start().starts_with('/') {
            // The legacy form is stored order as written: the way to state an unusual order.
            return DnSpelling::Plain;
        }
        let (Some(text_first), Some(text_last)) = (dn.rdns().last(), dn.rdns().first()) else {
            return DnSpelling::Plain;
        };
        let order = match (rank(text_first), rank(text_last)) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => std::cmp::Ordering::Equal,
        };
        let first = describe(text_first);
        match (openssl_spaced(rule), order) {
            (false, std::cmp::Ordering::Less) => DnSpelling::ForwardOrder { first },
            (false, _) => DnSpelling::Plain,
            (true, std::cmp::Ordering::Greater) => DnSpelling::SpacedRfc2253 { first },
            (true, _) => DnSpelling::OpensslOneline,
        }
    }
}

/// How specific an RDN's attribute type is: 0 for country and domain components up to 4 for
/// the holder's own name; `None` for types with no usual place.
fn rank(rdn: &super::dn::Rdn) -> Option<u8> {
    rdn.avas()
        .iter()
        .filter_map(|ava| match ava.attr_type().short_name()? {
            "C" | "DC" => Some(0),
            "ST" | "L" | "street" | "postalCode" => Some(1),
            "O" => Some(2),
            "OU" => Some(3),
            "CN" | "UID" | "emailAddress" | "serialNumber" | "GN" | "SN" | "title" | "initials"
            | "pseudonym" | "name" => Some(4),
            _ => None,
        })
        .max()
}

/// Words for an RDN's first type in messages: "the country", "CN"...
fn describe(rdn: &super::dn::Rdn) -> String {
    let Some(ava) = rdn.avas().first() else {
        return String::new();
    };
    match ava.attr_type().short_name() {
        Some("C") => "the country".into(),
        Some("DC") => "a domain component".into(),
        Some("ST") => "the state".into(),
        Some("L") => "the locality".into(),
        Some("O") => "the organization".into(),
        Some("OU") => "the organizational unit".into(),
        _ => ava.attr_type().name().to_owned(),
    }
}

/// OpenSSL's one-line signature: the first `=` has a space on each side (`C = DE, ...`).
fn openssl_spaced(rule: &str) -> bool {
    let Some(eq) = rule.find('=') else {
        return false;
    };
    let (name, value) = (&rule[..eq], &rule[eq + 1..]);
    name.ends_with(' ')
        && value.starts_with(' ')
        && !name.trim().is_empty()
        && !name.contains([',', '+', '\\'])
}

/// For a `~` pattern in the legacy slash form (`/C=DE/O=Acme/.*`), which can never match: it
/// must start with `/` and RFC 2253 strings never do. Returns the suggested RFC 2253 regex, if
/// the pattern is simple enough to convert (`.*,O=Acme,C=DE`), or `Some(None)`.
fn slash_regex(pattern: &str) -> Option<Option<String>> {
    let p = pattern.strip_prefix('^').unwrap_or(pattern);
    let rest = p.strip_prefix('/').or_else(|| p.strip_prefix("\\/"))?;
    if rest.starts_with(['?', '*', '{']) || top_level_split(pattern, b'|').len() > 1 {
        return None;
    }
    let rest = rest.strip_suffix('$').unwrap_or(rest);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segments = top_level_split(rest, b'/');
    let simple = |seg: &&str| {
        let wildcard = matches!(*seg, ".*" | ".+");
        let typed = seg.split_once('=').is_some_and(|(t, _)| {
            !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
        });
        wildcard || typed
    };
    if !segments.iter().all(simple) {
        return Some(None);
    }
    let mut converted: Vec<&str> = segments;
    converted.reverse();
    let suggestion = converted.join(",");
    Some(whole_match(&suggestion).is_ok().then_some(suggestion))
}

/// Splits `pattern` at `sep` where it is outside escapes, classes and groups.
fn top_level_split(pattern: &str, sep: u8) -> Vec<&str> {
    let b = pattern.as_bytes();
    let (mut depth, mut class, mut i, mut start) = (0usize, false, 0, 0);
    let mut out = Vec::new();
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' if !class => class = true,
            b']' if class => class = false,
            b'(' if !class => depth += 1,
            b')' if !class => depth = depth.saturating_sub(1),
            c if c == sep && !class && depth == 0 => {
                out.push(&pattern[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&pattern[start..]);
    out
}

/// Compiles `pattern` to match whole strings only. It is first compiled alone, so that a pattern
/// such as `a)|(b` cannot close our group and escape the anchors.
fn whole_match(pattern: &str) -> Result<Regex, RuleErrorKind> {
    Regex::new(pattern).map_err(RuleErrorKind::Regex)?;
    Regex::new(&format!("^(?:{pattern})$")).map_err(RuleErrorKind::Regex)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SanKind {
    Dns,
    Email,
    Uri,
    Ip,
}

impl SanKind {
    fn parse(s: &str) -> Option<SanKind> {
        [
            ("dns", SanKind::Dns),
            ("email", SanKind::Email),
            ("uri", SanKind::Uri),
            ("ip", SanKind::Ip),
        ]
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s))
        .map(|(_, kind)| kind)
    }

    fn of(san: &San) -> SanKind {
        match san {
            San::Dns(_) => SanKind::Dns,
            San::Email(_) => SanKind::Email,
            San::Uri(_) => SanKind::Uri,
            San::Ip(_) => SanKind::Ip,
        }
    }
}

#[derive(Clone, Debug)]
enum Matcher {
    Glob(Glob),
    Regex(Regex),
}

#[derive(Clone, Debug, Default)]
struct SanRules {
    texts: Vec<String>,
    /// Lowercased names.
    dns: HashMap<String, usize>,
    /// Lowercased parent domains of `*.parent` rules.
    dns_wildcard: HashMap<String, usize>,
    /// `local@domain` with the domain lowercased.
    email: HashMap<String, usize>,
    uri: HashMap<String, usize>,
    ip: HashMap<IpAddr, usize>,
    patterns: Vec<(usize, SanKind, Matcher)>,
}

impl SanRules {
    fn compile(rules: &[String]) -> Result<SanRules, RuleError> {
        let mut out = SanRules {
            texts: rules.to_vec(),
            ..SanRules::default()
        };
        for (index, rule) in rules.iter().enumerate() {
            out.add(index, rule)
                .map_err(|kind| RuleError::new(Family::Sans, index, rule, kind))?;
        }
        Ok(out)
    }

    fn add(&mut self, index: usize, rule: &str) -> Result<(), RuleErrorKind> {
        let rule = rule.trim();
        if rule.is_empty() {
            return Err(RuleErrorKind::Empty);
        }
        let (kind, value) = rule.split_once(':').ok_or(RuleErrorKind::SanSyntax)?;
        let kind = kind.trim();
        let kind = SanKind::parse(kind).ok_or_else(|| RuleErrorKind::SanKind(kind.to_owned()))?;
        let value = value.trim();
        if value.is_empty() {
            return Err(RuleErrorKind::SanSyntax);
        }
        if let Some(pattern) = value.strip_prefix('~') {
            let re = whole_match(pattern)?;
            self.patterns.push((index, kind, Matcher::Regex(re)));
            return Ok(());
        }
        let first = |map: &mut HashMap<_, usize>, key| {
            map.entry(key).or_insert(index);
        };
        match kind {
            SanKind::Dns => match value.strip_prefix("*.") {
                Some(parent) if !parent.is_empty() && !parent.contains('*') => {
                    first(&mut self.dns_wildcard, parent.to_ascii_lowercase());
                }
                _ if value.contains('*') => return Err(RuleErrorKind::DnsWildcard),
                _ => first(&mut self.dns, value.to_ascii_lowercase()),
            },
            SanKind::Email => {
                if !value.contains('@') {
                    return Err(RuleErrorKind::Email);
                }
                let value = normalize_email(value).into_owned();
                if value.contains('*') {
                    self.patterns
                        .push((index, kind, Matcher::Glob(Glob::new(&value))));
                } else {
                    first(&mut self.email, value);
                }
            }
            SanKind::Uri if value.contains('*') => {
                self.patterns
                    .push((index, kind, Matcher::Glob(Glob::new(value))));
            }
            SanKind::Uri => first(&mut self.uri, value.to_owned()),
            SanKind::Ip => {
                let ip = value
                    .parse::<IpAddr>()
                    .map_err(|_| RuleErrorKind::Ip(value.to_owned()))?;
                self.ip.entry(ip).or_insert(index);
            }
        }
        Ok(())
    }

    fn probe(&self, sans: &[San]) -> Probe {
        if self.texts.is_empty() {
            return Probe::Empty;
        }
        let hit = sans.iter().find_map(|san| match san {
            San::Dns(name) => {
                let name = lowercase(name);
                self.dns
                    .get(name.as_ref())
                    .or_else(|| self.dns_wildcard_hit(&name))
                    .copied()
            }
            San::Email(addr) => self.email.get(normalize_email(addr).as_ref()).copied(),
            San::Uri(uri) => self.uri.get(uri).copied(),
            San::Ip(ip) => self.ip.get(ip).copied(),
        });
        Probe::from_lookup(hit, !self.patterns.is_empty())
    }

    /// `*.parent` matches exactly one extra leftmost label, made of letters, digits, `-`, `_`.
    fn dns_wildcard_hit(&self, name: &str) -> Option<&usize> {
        if self.dns_wildcard.is_empty() {
            return None;
        }
        let (label, parent) = name.split_once('.')?;
        let is_label = !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if is_label {
            self.dns_wildcard.get(parent)
        } else {
            None
        }
    }

    fn resolve(&self, probe: Probe, sans: &[San]) -> Option<Option<RuleRef<'_>>> {
        let index = match probe {
            Probe::Empty => return Some(None),
            Probe::Hit(i) => i,
            Probe::Patterns => self.pattern_hit(sans)?,
            Probe::Miss => return None,
        };
        Some(Some(RuleRef::new(Family::Sans, index, &self.texts)))
    }

    fn pattern_hit(&self, sans: &[San]) -> Option<usize> {
        sans.iter().find_map(|san| {
            let value: Cow<'_, str> = match san {
                San::Dns(v) | San::Uri(v) => Cow::Borrowed(v.as_str()),
                San::Email(v) => Cow::Borrowed(v.as_str()),
                San::Ip(ip) => Cow::Owned(ip.to_string()),
            };
            if value.bytes().any(|b| b.is_ascii_control()) {
                return None;
            }
            let kind = SanKind::of(san);
            self.patterns
                .iter()
                .filter(|(_, k, _)| *k == kind)
                .find(|(_, _, m)| match m {
                    Matcher::Regex(re) => re.is_match(&value),
                    // Globs exist for email (domain normalized like the rule) and uri.
                    Matcher::Glob(g) if kind == SanKind::Email => {
                        g.matches(&normalize_email(&value))
                    }
                    Matcher::Glob(g) => g.matches(&value),
                })
                .map(|(i, _, _)| *i)
        })
    }
}

fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Lowercases the domain (after the last `@`); the local part is case-sensitive.
fn normalize_email(addr: &str) -> Cow<'_, str> {
    match addr.rsplit_once('@') {
        Some((local, domain)) if domain.bytes().any(|b| b.is_ascii_uppercase()) => {
            Cow::Owned(format!("{local}@{}", domain.to_ascii_lowercase()))
        }
        _ => Cow::Borrowed(addr),
    }
}

/// A `*` pattern: `*` matches any sequence, everything else literally.
#[derive(Clone, Debug)]
struct Glob {
    /// The literal pieces between stars; at least two (the pattern has a star).
    parts: Vec<String>,
}

impl Glob {
    fn new(pattern: &str) -> Glob {
        Glob {
            parts: pattern.split('*').map(str::to_owned).collect(),
        }
    }

    fn matches(&self, s: &str) -> bool {
        let [first, middle @ .., last] = self.parts.as_slice() else {
            return self.parts.first().is_some_and(|p| p == s);
        };
        let Some(mut rest) = s.strip_prefix(first.as_str()) else {
            return false;
        };
        // Taking each middle piece at its leftmost occurrence leaves the most room for the rest.
        for part in middle {
            match rest.find(part.as_str()) {
                Some(i) => rest = &rest[i + part.len()..],
                None => return false,
            }
        }
        rest.ends_with(last.as_str())
    }
}

/// Which rule satisfied a family, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleRef<'r> {
    /// The list the rule is in.
    pub family: Family,
    /// Position of the rule in that list, from 0.
    pub index: usize,
    /// The rule as written in the configuration.
    pub text: &'r str,
}

impl<'r> RuleRef<'r> {
    fn new(family: Family, index: usize, texts: &'r [String]) -> RuleRef<'r> {
        RuleRef {
            family,
            index,
            text: texts.get(index).map_or("", String::as_str),
        }
    }
}

impl fmt::Display for RuleRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}] {:?}", self.family, self.index, self.text)
    }
}

/// A successful check: the rule that matched in each family, `None` for families without rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Admit<'r> {
    /// The `allow_subjects` rule that matched.
    pub subject: Option<RuleRef<'r>>,
    /// The `allow_issuers` rule that matched.
    pub issuer: Option<RuleRef<'r>>,
    /// The `allow_sans` rule that matched.
    pub san: Option<RuleRef<'r>>,
    /// The `allow_fingerprints` rule that matched.
    pub fingerprint: Option<RuleRef<'r>>,
}

impl Admit<'_> {
    /// True when no family had rules (any verified certificate is admitted).
    pub fn no_rules(&self) -> bool {
        self.subject.is_none()
            && self.issuer.is_none()
            && self.san.is_none()
            && self.fingerprint.is_none()
    }
}

impl fmt::Display for Admit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.no_rules() {
            return f.write_str("no rules");
        }
        let mut sep = "";
        let all = [self.fingerprint, self.subject, self.issuer, self.san];
        for rule in all.into_iter().flatten() {
            write!(f, "{sep}{rule}")?;
            sep = ", ";
        }
        Ok(())
    }
}

/// Why a client was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refuse {
    /// The certificate is missing or did not verify; rules are never tried on it.
    Unverified,
    /// `allow_subjects` is set and no rule matched the subject DN.
    Subject,
    /// `allow_issuers` is set and no rule matched the issuer DN.
    Issuer,
    /// `allow_sans` is set and no rule matched any subjectAltName.
    San,
    /// `allow_fingerprints` is set and the certificate is not one of them.
    Fingerprint,
}

impl fmt::Display for Refuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refuse::Unverified => "client certificate did not verify",
            Refuse::Subject => "subject DN matched no allow_subjects rule",
            Refuse::Issuer => "issuer DN matched no allow_issuers rule",
            Refuse::San => "no subjectAltName matched an allow_sans rule",
            Refuse::Fingerprint => "certificate fingerprint matched no allow_fingerprints rule",
        })
    }
}

impl std::error::Error for Refuse {}

/// A rule that does not compile: which list, which entry, and why.
#[derive(Clone, Debug)]
pub struct RuleError {
    /// The list the rule is in.
    pub family: Family,
    /// Position of the rule in that list, from 0.
    pub index: usize,
    /// The rule as written.
    pub rule: String,
    /// What is wrong with it.
    pub kind: RuleErrorKind,
}

impl RuleError {
    fn new(family: Family, index: usize, rule: &str, kind: RuleErrorKind) -> RuleError {
        RuleError {
            family,
            index,
            rule: rule.to_owned(),
            kind,
        }
    }
}

/// Why a rule does not compile; [`RuleError::reason`] turns it into the message `check` prints.
#[derive(Clone, Debug)]
pub enum RuleErrorKind {
    /// An empty string.
    Empty,
    /// A DN rule that does not parse.
    Dn(DnError),
    /// A `~` rule whose regex does not compile.
    Regex(regex::Error),
    /// An RFC 4514 DN most general first (`C=DE,O=Acme,CN=alice`): `fixed` is the DN the rule
    /// most likely means, `as_written` the one it says (for certificates stored backwards).
    ForwardOrder {
        /// The attribute written first (`C=DE`).
        first: String,
        /// The DN with the RDNs reversed, most specific first.
        fixed: Dn,
        /// The DN in the order written.
        as_written: Dn,
    },
    /// A `~` regex in the slash form, with a converted regex when one could be made.
    SlashRegex(Option<String>),
    /// Not `kind:value`.
    SanSyntax,
    /// A SAN rule whose kind is not `dns`, `email`, `uri` or `ip`.
    SanKind(String),
    /// A `dns:` rule with `*` anywhere but as the whole leftmost label.
    DnsWildcard,
    /// An `email:` rule without a local part or a domain.
    Email,
    /// An `ip:` rule whose value is not an IPv4 or IPv6 address.
    Ip(String),
    /// An `allow_fingerprints` entry that is not a SHA-256 fingerprint (why).
    Fingerprint(String),
}

impl RuleError {
    /// The config key below the listener: `client_auth.allow_subjects[0]`.
    pub fn key(&self) -> String {
        format!("client_auth.{}[{}]", self.family, self.index)
    }

    /// The message without the family and index: the rule and what is wrong with it.
    pub fn reason(&self) -> String {
        let rule = &self.rule;
        match &self.kind {
            RuleErrorKind::ForwardOrder {
                first,
                fixed,
                as_written,
            } => format!(
                "{rule:?} lists {first} first: certificate DNs in RFC 2253 form list the most \
                 specific part first; write {:?} (or the legacy {:?}). Only if your \
                 certificates really store {first} last (nginx's $ssl_client_s_dn then shows \
                 this string) write the legacy {:?}, which is matched in the order written",
                fixed.to_string(),
                fixed.to_legacy_utf8(),
                as_written.to_legacy_utf8(),
            ),
            RuleErrorKind::SlashRegex(suggestion) => {
                let mut out = format!(
                    "{rule:?} is a regex in the legacy /C=../CN=.. form, which never matches: \
                     ~ rules match the RFC 2253 string (most specific first, as nginx's \
                     $ssl_client_s_dn: \"CN=alice,O=Acme,C=DE\")"
                );
                if let Some(s) = suggestion {
                    let _ = write!(out, "; write {:?}", format!("~{s}"));
                }
                out
            }
            _ => format!("{rule:?}: {}", KindText(&self.kind)),
        }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}] {}", self.family, self.index, self.reason())
    }
}

/// The reason of the kinds whose message follows `"rule": `.
struct KindText<'a>(&'a RuleErrorKind);

impl fmt::Display for KindText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            RuleErrorKind::ForwardOrder { .. } | RuleErrorKind::SlashRegex(_) => {
                f.write_str("misspelt DN rule")
            }
            RuleErrorKind::Empty => f.write_str("empty rule"),
            RuleErrorKind::Dn(e) => write!(f, "{e}"),
            RuleErrorKind::Regex(e) => write!(f, "invalid regex: {e}"),
            RuleErrorKind::SanSyntax => {
                f.write_str("expected `kind:value` (e.g. `dns:api.example.com`)")
            }
            RuleErrorKind::SanKind(k) => {
                write!(f, "unknown SAN kind {k:?} (expected dns, email, uri or ip)")
            }
            RuleErrorKind::DnsWildcard => f.write_str(
                "in dns rules '*' may only be the whole leftmost label, as in `*.example.com`",
            ),
            RuleErrorKind::Email => {
                f.write_str("email rules need a local part and a domain (`user@example.com`)")
            }
            RuleErrorKind::Fingerprint(why) => f.write_str(why),
            RuleErrorKind::Ip(v) => write!(
                f,
                "{v:?} is not an IP address (wildcards and CIDR are not supported; use a ~regex)"
            ),
        }
    }
}

/// A rule that compiled but was read differently from how it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleWarning {
    /// `Subjects` or `Issuers`.
    pub family: Family,
    /// Position of the rule in its list, from 0.
    pub index: usize,
    /// The rule as written.
    pub rule: String,
    message: String,
}

impl RuleWarning {
    fn new(family: Family, index: usize, rule: &str, message: String) -> RuleWarning {
        RuleWarning {
            family,
            index,
            rule: rule.to_owned(),
            message,
        }
    }

    /// The config key below the listener: `client_auth.allow_subjects[0]`.
    pub fn key(&self) -> String {
        format!("client_auth.{}[{}]", self.family, self.index)
    }

    /// The rule and how it was read.
    pub fn reason(&self) -> String {
        format!("{:?} {}", self.rule, self.message)
    }
}

impl fmt::Display for RuleWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}] {}", self.family, self.index, self.reason())
    }
}

impl std::error::Error for RuleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            RuleErrorKind::Dn(e) => Some(e),
            RuleErrorKind::Regex(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::test_support::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn rules(subjects: &[&str], issuers: &[&str], sans: &[&str]) -> Rules {
        match Rules::compile(&strings(subjects), &strings(issuers), &strings(sans)) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    fn compile_err(subjects: &[&str], issuers: &[&str], sans: &[&str]) -> RuleError {
        match Rules::compile(&strings(subjects), &strings(issuers), &strings(sans)) {
            Ok(r) => panic!("compiled: {r:?}"),
            Err(e) => e,
        }
    }

    fn pins(rules: Rules, pins: &[&str]) -> Result<Rules, RuleError> {
        rules.with_fingerprints(&strings(pins))
    }

    /// `AB:CD:...`, as `openssl x509 -fingerprint -sha256` prints it.
    fn openssl_style(hex: &str) -> String {
        hex.as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(":")
    }

    #[test]
    fn fingerprints_pin_certificates_in_every_spelling() {
        let cert = typical(&[]);
        let fp = cert.fingerprint().to_owned();
        assert_eq!(fp.len(), 64);
        for spelling in [
            format!("sha256:{}", openssl_style(&fp)),
            format!("SHA256:{fp}"),
            openssl_style(&fp),
            fp.to_ascii_uppercase(),
            format!("  {fp} "),
        ] {
            let r = pins(rules(&[], &[], &[]), &[&spelling]).unwrap();
            let admit = r.check(&cert, true).unwrap();
            assert_eq!(admit.fingerprint.map(|m| m.index), Some(0), "{spelling}");
            assert!(!admit.no_rules());
        }
        let other = "ab".repeat(32);
        let r = pins(rules(&[], &[], &[]), &[&other]).unwrap();
        assert_eq!(r.check(&cert, true).unwrap_err(), Refuse::Fingerprint);
        assert!(!r.is_empty());
        // Unverified: refused before any rule.
        let r = pins(rules(&[], &[], &[]), &[&fp]).unwrap();
        assert_eq!(r.check(&cert, false).unwrap_err(), Refuse::Unverified);
    }

    #[test]
    fn fingerprints_are_a_family_like_the_others() {
        let cert = typical(&[]);
        let fp = cert.fingerprint().to_owned();
        // The pin matches but the subject family does not: refused.
        let r = pins(rules(&["CN=someone else,O=Acme,C=FI"], &[], &[]), &[&fp]).unwrap();
        assert_eq!(r.check(&cert, true).unwrap_err(), Refuse::Subject);
        // The subject matches but the pin does not: refused.
        let r = pins(
            rules(&["CN=client.1.local,O=Acme,C=FI"], &[], &[]),
            &[&"00".repeat(32)],
        )
        .unwrap();
        assert_eq!(r.check(&cert, true).unwrap_err(), Refuse::Fingerprint);
        // Both match: admitted, both rules named.
        let r = pins(rules(&["CN=client.1.local,O=Acme,C=FI"], &[], &[]), &[&fp]).unwrap();
        let admit = r.check(&cert, true).unwrap();
        let shown = admit.to_string();
        assert!(shown.contains("allow_fingerprints[0]"), "{shown}");
        assert!(shown.contains("allow_subjects[0]"), "{shown}");
    }

    #[test]
    fn fingerprint_rules_that_cannot_pin_are_refused() {
        let err = |rule: &str, want: &str| {
            let e = pins(rules(&[], &[], &[]), &[&"ab".repeat(32), rule]).unwrap_err();
            assert_eq!(e.key(), "client_auth.allow_fingerprints[1]");
            assert!(e.reason().contains(want), "{rule}: {}", e.reason());
        };
        err("", "empty rule");
        err(
            &format!("sha1:{}", openssl_style(&"ab".repeat(20))),
            "\"sha1\" fingerprints are not supported",
        );
        err(&"ab".repeat(20), "this looks like SHA-1");
        err(&"ab".repeat(31), "62 hex digits");
        err(&format!("{}zz", "ab".repeat(31)), "'z' is not a hex digit");
        err("sha256:AB:CDE:01", "byte 2 is \"CDE\"");
    }

    /// `CN=client.1.local,O=Acme,C=FI` issued by `CN=Intermediate 1,O=Acme,C=FI`.
    fn typical(sans: &[&str]) -> ClientCert {
        ClientCert::from_x509(&typical_cert(sans))
    }

    fn cert_named(subject: &[&[RawAva<'_>]], issuer: &[&[RawAva<'_>]]) -> ClientCert {
        let x509 = make_cert(
            &der_name(subject),
            &der_name(issuer),
            &[],
            &[1],
            2_041_709_861,
        );
        ClientCert::from_x509(&x509)
    }

    fn admits(r: &Rules, c: &ClientCert) -> bool {
        r.check(c, true).is_ok()
    }

    #[test]
    fn no_rules_admits_verified_only() {
        let r = rules(&[], &[], &[]);
        assert!(r.is_empty());
        let c = typical(&[]);
        let admit = r.check(&c, true).unwrap();
        assert!(admit.no_rules());
        assert_eq!(admit.to_string(), "no rules");
        assert_eq!(r.check(&c, false), Err(Refuse::Unverified));
    }

    #[test]
    fn unverified_never_admitted() {
        let r = rules(
            &["CN=client.1.local,O=Acme,C=FI", "~.*"],
            &["~.*"],
            &["dns:~.*"],
        );
        let c = typical(&["dns:api.acme.test"]);
        assert!(r.check(&c, true).is_ok());
        assert_eq!(r.check(&c, false), Err(Refuse::Unverified));
    }

    #[test]
    fn exact_subjects_in_both_notations() {
        let c = typical(&[]);
        for rule in [
            "CN=client.1.local,O=Acme,C=FI",
            "cn=client.1.local, o=Acme, c=FI",
            "commonName=client.1.local,organizationName=Acme,countryName=FI",
            "2.5.4.3=client.1.local,2.5.4.10=Acme,2.5.4.6=FI",
            "/C=FI/O=Acme/CN=client.1.local",
            "/c=FI/o=Acme/cn=client.1.local",
        ] {
            let r = rules(&["CN=someone.else,O=Acme,C=FI", rule], &[], &[]);
            let admit = r.check(&c, true).unwrap_or_else(|e| panic!("{rule}: {e}"));
            assert_eq!(
                admit.subject,
                Some(RuleRef {
                    family: Family::Subjects,
                    index: 1,
                    text: rule
                })
            );
            assert_eq!(admit.issuer, None);
            assert_eq!(admit.to_string(), format!("allow_subjects[1] {rule:?}"));
        }
    }

    #[test]
    fn look_alike_subjects_refused() {
        let c = typical(&[]);
        for rule in [
            "CN=client.1.local.evil.com,O=Acme,C=FI",
            "CN=client.1.loca,O=Acme,C=FI",
            "CN=xclient.1.local,O=Acme,C=FI",
            "CN=Client.1.local,O=Acme,C=FI",
            "CN=client.1.local,O=Acme",
            "CN=client.1.local,O=Acme,C=FI,DC=x",
            "O=Acme,CN=client.1.local,C=FI",
            "CN=client.1.local+O=Acme,C=FI",
            "CN=client.1.local\\,O=Acme,C=FI",
            "CN=client.1.local\\ ,O=Acme,C=FI",
            "/C=FI/O=Acme/CN=client.1.local/CN=x",
            "/C=FI/O=Acme,CN=client.1.local",
        ] {
            let r = rules(&[rule], &[], &[]);
            assert_eq!(r.check(&c, true), Err(Refuse::Subject), "{rule}");
        }
        // A certificate whose single O value contains ", Inc" is not O=Acme plus another RDN.
        let acme_inc = cert_named(&[&[(O, UTF8, b"Acme, Inc")]], &[&[(CN, UTF8, b"x")]]);
        assert!(admits(&rules(&["O=Acme\\, Inc"], &[], &[]), &acme_inc));
        assert!(admits(&rules(&["/O=Acme, Inc"], &[], &[]), &acme_inc));
        assert!(!admits(&rules(&["O=Inc,O=Acme"], &[], &[]), &acme_inc));
        assert!(!admits(&rules(&["O=Acme"], &[], &[]), &acme_inc));
        let two = cert_named(
            &[&[(O, UTF8, b"Acme")], &[(O, UTF8, b"Inc")]],
            &[&[(CN, UTF8, b"x")]],
        );
        assert!(!admits(&rules(&["O=Acme\\, Inc"], &[], &[]), &two));
        assert!(admits(&rules(&["O=Inc,O=Acme"], &[], &[]), &two));
    }

    #[test]
    fn issuers_match_the_leaf_issuer_exactly() {
        let c = typical(&[]);
        let ok = rules(&[], &["/C=FI/O=Acme/CN=Intermediate 1"], &[]);
        let admit = ok.check(&c, true).unwrap();
        assert_eq!(admit.issuer.map(|r| r.index), Some(0));
        assert_eq!(admit.subject, None);
        let r = rules(&[], &["CN=Intermediate 10,O=Acme,C=FI"], &[]);
        assert_eq!(r.check(&c, true), Err(Refuse::Issuer));
        let ten = cert_named(
            &[&[(CN, UTF8, b"x")]],
            &[
                &[(C, PRINTABLE, b"FI")],
                &[(O, UTF8, b"Acme")],
                &[(CN, UTF8, b"Intermediate 10")],
            ],
        );
        assert_eq!(ok.check(&ten, true), Err(Refuse::Issuer));
        // The subject DN is not the issuer DN.
        let r = rules(&[], &["CN=client.1.local,O=Acme,C=FI"], &[]);
        assert_eq!(r.check(&c, true), Err(Refuse::Issuer));
    }

    #[test]
    fn regex_rules_match_the_whole_dn() {
        let c = typical(&[]);
        assert!(admits(&rules(&["~CN=client\\..*"], &[], &[]), &c));
        assert!(admits(
            &rules(&["~CN=client\\.\\d+\\.local,O=Acme,C=FI"], &[], &[]),
            &c
        ));
        assert!(admits(
            &rules(&[], &["~CN=Intermediate \\d+,O=Acme,C=FI"], &[]),
            &c
        ));
        for rule in [
            "~CN=client",
            "~client\\.1\\.local",
            "~O=Acme,C=FI",
            "~CN=client\\.1\\.local,O=Acme",
            "~CN=client.1.local|x",
            "~x|CN=client.1.local",
        ] {
            assert_eq!(
                rules(&[rule], &[], &[]).check(&c, true),
                Err(Refuse::Subject),
                "{rule}"
            );
        }
        let x = cert_named(&[&[(CN, UTF8, b"xclient.1.local")]], &[&[(CN, UTF8, b"i")]]);
        assert!(!admits(&rules(&["~CN=client\\..*"], &[], &[]), &x));
        let ab = cert_named(&[&[(CN, UTF8, b"ab")]], &[&[(CN, UTF8, b"i")]]);
        assert!(!admits(&rules(&["~CN=a"], &[], &[]), &ab));
        assert!(admits(&rules(&["~CN=a|CN=ab"], &[], &[]), &ab));
        // A pattern cannot close the anchoring group.
        let e = compile_err(&["~a)|(b"], &[], &[]);
        assert!(matches!(e.kind, RuleErrorKind::Regex(_)), "{e}");
        // Exact and regex rules mix; the reported rule is the one that matched.
        let r = rules(
            &["~CN=nobody", "CN=client.1.local,O=Acme,C=FI", "~.*"],
            &[],
            &[],
        );
        assert_eq!(r.check(&c, true).unwrap().subject.map(|r| r.index), Some(1));
        let r = rules(&["~CN=nobody", "~.*"], &[], &[]);
        assert_eq!(r.check(&c, true).unwrap().subject.map(|r| r.index), Some(1));
    }

    #[test]
    fn every_non_empty_family_must_match() {
        let c = typical(&["dns:api.acme.test"]);
        let subject = "CN=client.1.local,O=Acme,C=FI";
        let issuer = "CN=Intermediate 1,O=Acme,C=FI";
        let r = rules(&[subject], &[issuer], &["dns:api.acme.test"]);
        let admit = r.check(&c, true).unwrap();
        assert_eq!(
            admit.to_string(),
            format!("allow_subjects[0] {subject:?}, allow_issuers[0] {issuer:?}, allow_sans[0] \"dns:api.acme.test\"")
        );
        assert_eq!(
            rules(&[subject], &[issuer], &["dns:other.acme.test"]).check(&c, true),
            Err(Refuse::San)
        );
        assert_eq!(
            rules(&[subject], &["CN=Other CA"], &["dns:api.acme.test"]).check(&c, true),
            Err(Refuse::Issuer)
        );
        assert_eq!(
            rules(&["CN=x"], &[issuer], &["dns:api.acme.test"]).check(&c, true),
            Err(Refuse::Subject)
        );
        // A certificate without SANs fails a non-empty SAN family.
        assert_eq!(
            rules(&[], &[], &["dns:~.*"]).check(&typical(&[]), true),
            Err(Refuse::San)
        );
    }

    fn san_admits(rule: &str, sans: &[&str]) -> bool {
        admits(&rules(&[], &[], &[rule]), &typical(sans))
    }

    #[test]
    fn san_exact_matches() {
        assert!(san_admits("dns:api.acme.test", &["dns:api.acme.test"]));
        assert!(san_admits("DNS:API.Acme.Test", &["dns:api.acme.test"]));
        assert!(san_admits("dns:api.acme.test", &["dns:API.ACME.TEST"]));
        assert!(san_admits(" dns : api.acme.test ", &["dns:api.acme.test"]));
        assert!(!san_admits(
            "dns:api.acme.test",
            &["dns:api.acme.test.evil.com"]
        ));
        assert!(!san_admits("dns:api.acme.test", &["dns:xapi.acme.test"]));
        assert!(!san_admits("dns:api.acme.test", &["email:api.acme.test@x"]));
        assert!(san_admits(
            "email:John.Doe@Example.COM",
            &["email:John.Doe@example.com"]
        ));
        assert!(!san_admits(
            "email:john.doe@example.com",
            &["email:John.Doe@example.com"]
        ));
        assert!(!san_admits(
            "email:john@example.com",
            &["email:john@example.com.evil"]
        ));
        assert!(san_admits(
            "uri:spiffe://acme.test/x",
            &["uri:spiffe://acme.test/x"]
        ));
        assert!(!san_admits(
            "uri:spiffe://acme.test/x",
            &["uri:spiffe://acme.test/x/y"]
        ));
        assert!(!san_admits(
            "uri:spiffe://acme.test/x",
            &["uri:SPIFFE://acme.test/x"]
        ));
        assert!(san_admits("ip:10.0.0.1", &["ip:10.0.0.1"]));
        assert!(san_admits("IP:2001:db8::1", &["ip:2001:DB8:0:0:0:0:0:1"]));
        assert!(!san_admits("ip:10.0.0.1", &["ip:10.0.0.10"]));
        assert!(!san_admits("ip:10.0.0.1", &["dns:10.0.0.1"]));
        // Any SAN may satisfy the family.
        assert!(san_admits(
            "uri:spiffe://acme.test/x",
            &["dns:a.test", "email:a@b", "uri:spiffe://acme.test/x"]
        ));
    }

    #[test]
    fn san_wildcards() {
        let dns = "dns:*.acme.test";
        assert!(san_admits(dns, &["dns:api.acme.test"]));
        assert!(san_admits(dns, &["dns:API.ACME.test"]));
        assert!(!san_admits(dns, &["dns:acme.test"]));
        assert!(!san_admits(dns, &["dns:a.b.acme.test"]));
        assert!(!san_admits(dns, &["dns:.acme.test"]));
        assert!(!san_admits(dns, &["dns:api.acme.test.evil.com"]));
        assert!(!san_admits(dns, &["dns:apiacme.test"]));
        assert!(!san_admits(dns, &["dns:*.acme.test"]));
        assert!(!san_admits(dns, &["uri:api.acme.test"]));
        let uri = "uri:spiffe://acme.test/*";
        assert!(san_admits(uri, &["uri:spiffe://acme.test/x"]));
        assert!(san_admits(uri, &["uri:spiffe://acme.test/ns/a/sa/b"]));
        assert!(san_admits(uri, &["uri:spiffe://acme.test/"]));
        assert!(!san_admits(uri, &["uri:spiffe://acme.test"]));
        assert!(!san_admits(uri, &["uri:spiffe://acme.test.evil/x"]));
        assert!(!san_admits(
            uri,
            &["uri:spiffe://evil/spiffe://acme.test/x"]
        ));
        assert!(san_admits(
            "uri:spiffe://*/ns/*/sa/web",
            &["uri:spiffe://acme.test/ns/prod/sa/web"]
        ));
        assert!(!san_admits(
            "uri:spiffe://*/ns/*/sa/web",
            &["uri:spiffe://acme.test/ns/prod/sa/web2"]
        ));
        assert!(san_admits("uri:*a*a*", &["uri:aa"]));
        assert!(!san_admits("uri:*ab*ba", &["uri:aba"]));
        let email = "email:*@Acme.Test";
        assert!(san_admits(email, &["email:john@acme.test"]));
        assert!(san_admits(email, &["email:john@ACME.test"]));
        assert!(!san_admits(email, &["email:john@acme.test.evil"]));
        assert!(!san_admits(email, &["email:john@evil.test"]));
        // Wildcards never match control characters.
        assert!(!san_admits(uri, &["uri:spiffe://acme.test/x\ny"]));
    }

    #[test]
    fn san_regexes() {
        assert!(san_admits(
            "dns:~api-\\d+\\.acme\\.test",
            &["dns:api-7.acme.test"]
        ));
        assert!(!san_admits(
            "dns:~api-\\d+\\.acme\\.test",
            &["dns:api-7.acme.test.evil"]
        ));
        assert!(!san_admits("dns:~api", &["dns:api.acme.test"]));
        assert!(san_admits("ip:~10\\.0\\.0\\.\\d+", &["ip:10.0.0.42"]));
        assert!(!san_admits(
            "ip:~10\\.0\\.0\\.\\d+",
            &["ip:110.0.0.4", "ip:10.1.0.4"]
        ));
        assert!(san_admits(
            "uri:~spiffe://acme\\.test/.*",
            &["uri:spiffe://acme.test/a"]
        ));
        assert!(!san_admits("email:~.*@acme\\.test", &["uri:x@acme.test"]));
    }

    #[test]
    fn compile_errors_name_family_index_and_reason() {
        let e = compile_err(&["CN=ok", "CN=a,Foo=b"], &[], &[]);
        assert_eq!(
            (e.family, e.index, e.rule.as_str()),
            (Family::Subjects, 1, "CN=a,Foo=b")
        );
        assert!(matches!(e.kind, RuleErrorKind::Dn(_)));
        let msg = e.to_string();
        assert!(
            msg.starts_with("allow_subjects[1] \"CN=a,Foo=b\": invalid DN at offset 5"),
            "{msg}"
        );
        let e = compile_err(&[], &["~("], &[]);
        assert_eq!((e.family, e.index), (Family::Issuers, 0));
        assert!(matches!(e.kind, RuleErrorKind::Regex(_)));
        assert!(matches!(
            compile_err(&[""], &[], &[]).kind,
            RuleErrorKind::Empty
        ));
        for (rule, want) in [
            ("api.acme.test", "SanSyntax"),
            ("dns:", "SanSyntax"),
            ("fqdn:x", "SanKind"),
            ("dns:api.*.test", "DnsWildcard"),
            ("dns:*", "DnsWildcard"),
            ("dns:*api.acme.test", "DnsWildcard"),
            ("dns:*.*.test", "DnsWildcard"),
            ("email:nobody", "Email"),
            ("ip:10.0.0.*", "Ip"),
            ("ip:10.0.0.0/8", "Ip"),
            ("uri:~(", "Regex"),
            ("", "Empty"),
        ] {
            let e = compile_err(&[], &[], &["dns:ok.test", rule]);
            assert_eq!((e.family, e.index), (Family::Sans, 1), "{rule}");
            assert!(format!("{:?}", e.kind).starts_with(want), "{rule}: {e}");
            assert!(e.to_string().starts_with("allow_sans[1] "), "{e}");
        }
    }

    #[test]
    fn refusal_messages() {
        assert_eq!(
            Refuse::Subject.to_string(),
            "subject DN matched no allow_subjects rule"
        );
        assert_eq!(
            Refuse::Issuer.to_string(),
            "issuer DN matched no allow_issuers rule"
        );
        assert_eq!(
            Refuse::San.to_string(),
            "no subjectAltName matched an allow_sans rule"
        );
        assert_eq!(
            Refuse::Unverified.to_string(),
            "client certificate did not verify"
        );
    }

    #[test]
    fn ten_thousand_rules() {
        let subjects: Vec<String> = (0..10_000)
            .map(|i| format!("CN=client.{i}.local,O=Acme,C=FI"))
            .collect();
        let r = Rules::compile(&subjects, &[], &[]).unwrap();
        let c = typical(&[]);
        let admit = r.check(&c, true).unwrap();
        assert_eq!(
            admit.subject.map(|r| (r.index, r.text)),
            Some((1, "CN=client.1.local,O=Acme,C=FI"))
        );
        let other = cert_named(
            &[
                &[(CN, UTF8, b"client.10000.local")],
                &[(O, UTF8, b"Acme")],
                &[(C, PRINTABLE, b"FI")],
            ],
            &[&[(CN, UTF8, b"i")]],
        );
        assert_eq!(r.check(&other, true), Err(Refuse::Subject));
        let last = cert_named(
            &[
                &[(C, PRINTABLE, b"FI")],
                &[(O, UTF8, b"Acme")],
                &[(CN, UTF8, b"client.9999.local")],
            ],
            &[&[(CN, UTF8, b"i")]],
        );
        assert_eq!(
            r.check(&last, true).unwrap().subject.map(|r| r.index),
            Some(9999)
        );
        let sans: Vec<String> = (0..10_000)
            .map(|i| format!("dns:host-{i}.acme.test"))
            .collect();
        let r = Rules::compile(&[], &[], &sans).unwrap();
        assert!(admits(&r, &typical(&["dns:host-4242.acme.test"])));
        assert!(!admits(&r, &typical(&["dns:host-10000.acme.test"])));
    }

    #[test]
    fn multi_valued_rdn_rules() {
        let c = cert_named(
            &[
                &[(O, UTF8, b"Acme")],
                &[(CN, UTF8, b"alice"), (UID, UTF8, b"42")],
            ],
            &[&[(CN, UTF8, b"i")]],
        );
        assert!(admits(&rules(&["CN=alice+UID=42,O=Acme"], &[], &[]), &c));
        assert!(admits(&rules(&["UID=42+CN=alice,O=Acme"], &[], &[]), &c));
        assert!(admits(&rules(&["/O=Acme/UID=42+CN=alice"], &[], &[]), &c));
        assert!(!admits(&rules(&["CN=alice,UID=42,O=Acme"], &[], &[]), &c));
        assert!(!admits(&rules(&["CN=alice,O=Acme"], &[], &[]), &c));
        assert!(admits(&rules(&["~UID=42\\+CN=alice,O=Acme"], &[], &[]), &c));
    }

    fn warnings(subjects: &[&str]) -> Vec<String> {
        rules(subjects, &[], &[])
            .warnings()
            .iter()
            .map(|w| w.to_string())
            .collect()
    }

    /// `CN=alice,OU=Payments,O=Acme Corp,C=DE` issued by `CN=Acme CA,O=Acme Corp,C=DE`.
    fn alice() -> ClientCert {
        cert_named(
            &[
                &[(C, PRINTABLE, b"DE")],
                &[(O, UTF8, b"Acme Corp")],
                &[(OU, UTF8, b"Payments")],
                &[(CN, UTF8, b"alice")],
            ],
            &[
                &[(C, PRINTABLE, b"DE")],
                &[(O, UTF8, b"Acme Corp")],
                &[(CN, UTF8, b"Acme CA")],
            ],
        )
    }

    #[test]
    fn forward_order_dn_is_refused_with_the_spelling_that_matches() {
        let e = compile_err(&["C=DE,O=Acme Corp,OU=Payments,CN=alice"], &[], &[]);
        assert!(matches!(e.kind, RuleErrorKind::ForwardOrder { .. }), "{e}");
        assert_eq!(e.key(), "client_auth.allow_subjects[0]");
        let msg = e.reason();
        assert!(
            msg.starts_with(
                "\"C=DE,O=Acme Corp,OU=Payments,CN=alice\" lists the country first: certificate \
                 DNs in RFC 2253 form list the most specific part first; write \
                 \"CN=alice,OU=Payments,O=Acme Corp,C=DE\" (or the legacy \
                 \"/C=DE/O=Acme Corp/OU=Payments/CN=alice\")"
            ),
            "{msg}"
        );
        assert!(
            msg.contains("write the legacy \"/CN=alice/OU=Payments/O=Acme Corp/C=DE\""),
            "{msg}"
        );
        // Every spelling the message offers compiles, and the first two admit the certificate.
        let c = alice();
        assert!(admits(
            &rules(&["CN=alice,OU=Payments,O=Acme Corp,C=DE"], &[], &[]),
            &c
        ));
        assert!(admits(
            &rules(&["/C=DE/O=Acme Corp/OU=Payments/CN=alice"], &[], &[]),
            &c
        ));
        // The escape hatch: a certificate that stores CN first (nginx prints it C first).
        let backwards = cert_named(
            &[
                &[(CN, UTF8, b"alice")],
                &[(O, UTF8, b"Acme Corp")],
                &[(C, PRINTABLE, b"DE")],
            ],
            &[&[(CN, UTF8, b"i")]],
        );
        assert_eq!(backwards.subject_rfc2253(), "C=DE,O=Acme Corp,CN=alice");
        let hatch = rules(&["/CN=alice/O=Acme Corp/C=DE"], &[], &[]);
        assert!(hatch.warnings().is_empty());
        assert!(admits(&hatch, &backwards));
        assert!(!admits(&hatch, &c));
        // Issuers too; other general-first orders; the message names the first type.
        let e = compile_err(&[], &["C=DE,O=Acme Corp,CN=Acme CA"], &[]);
        assert_eq!(e.key(), "client_auth.allow_issuers[0]");
        assert!(
            e.reason().contains("write \"CN=Acme CA,O=Acme Corp,C=DE\""),
            "{e}"
        );
        for (rule, first) in [
            ("O=Acme,CN=x", "the organization"),
            ("DC=com,DC=example,CN=x", "a domain component"),
            ("OU=Ops,UID=x+CN=y", "the organizational unit"),
            ("C=FI,emailAddress=a@b", "the country"),
        ] {
            let e = compile_err(&[rule], &[], &[]);
            assert!(e.reason().contains(&format!("lists {first} first")), "{e}");
        }
        // Most specific first, one RDN, or no telling: accepted without a word.
        for rule in [
            "CN=alice,OU=Payments,O=Acme Corp,C=DE",
            "CN=alice",
            "O=a,O=b",
            "CN=a,CN=b",
            "1.3.6.1.4.1.99999.1=x,CN=y",
            "CN=x,DC=example,DC=com",
            "C=FI",
        ] {
            assert!(warnings(&[rule]).is_empty(), "{rule}");
        }
    }

    #[test]
    fn openssl_one_line_form_is_read_in_certificate_order_with_a_warning() {
        let c = alice();
        let rule = "C = DE, O = Acme Corp, OU = Payments, CN = alice";
        let r = rules(&[rule], &[], &[]);
        assert_eq!(r.check(&c, true).unwrap().subject.map(|r| r.index), Some(0));
        let w = &r.warnings()[0];
        assert_eq!(w.key(), "client_auth.allow_subjects[0]");
        assert_eq!(
            w.reason(),
            format!(
                "{rule:?} is OpenSSL's one-line form (`openssl x509 -subject`), which lists the \
                 certificate's order: read as \"CN=alice,OU=Payments,O=Acme Corp,C=DE\" (RFC \
                 2253, most specific first, as nginx's $ssl_client_s_dn); write that to silence \
                 this warning"
            )
        );
        // As OpenSSL prints non-ASCII and multi-valued RDNs.
        let j = cert_named(
            &[
                &[(C, PRINTABLE, b"FI")],
                &[(CN, UTF8, "J\u{fc}rgen".as_bytes()), (UID, UTF8, b"7")],
            ],
            &[&[(CN, UTF8, b"i")]],
        );
        assert!(admits(
            &rules(&["C = FI, CN = J\\C3\\BCrgen + UID = 7"], &[], &[]),
            &j
        ));
        // Spaced but most specific first: RFC 2253 with spaces, read as such, with a warning that
        // offers the legacy spelling for certificates stored backwards.
        let r = rules(
            &["CN = alice, OU = Payments, O = Acme Corp, C = DE"],
            &[],
            &[],
        );
        assert!(admits(&r, &c));
        let w = r.warnings()[0].reason();
        assert!(w.contains("names CN first"), "{w}");
        assert!(
            w.contains("\"CN=alice,OU=Payments,O=Acme Corp,C=DE\""),
            "{w}"
        );
        assert!(
            w.contains("\"/CN=alice/OU=Payments/O=Acme Corp/C=DE\""),
            "{w}"
        );
        // Spaces after commas only are plain RFC 2253.
        assert!(warnings(&["CN=alice, OU=Payments, O=Acme Corp, C=DE"]).is_empty());
        assert!(warnings(&["CN=a = b"]).is_empty());
        assert_eq!(warnings(&["CN = alice"]).len(), 1);
    }

    #[test]
    fn slash_form_regex_is_refused_with_a_converted_regex() {
        let e = compile_err(&["~/C=DE/O=Acme Corp/.*"], &[], &[]);
        assert!(matches!(e.kind, RuleErrorKind::SlashRegex(_)), "{e}");
        let msg = e.reason();
        assert!(msg.contains("never matches"), "{msg}");
        assert!(msg.ends_with("; write \"~.*,O=Acme Corp,C=DE\""), "{msg}");
        assert!(admits(
            &rules(&["~.*,O=Acme Corp,C=DE"], &[], &[]),
            &alice()
        ));
        for (rule, want) in [
            (
                "~^/C=DE/O=Acme Corp/CN=.*$",
                Some("~CN=.*,O=Acme Corp,C=DE"),
            ),
            (
                "~/C=DE/O=Acme Corp/OU=[A-Za-z]+/CN=a(l|m)ice",
                Some("~CN=a(l|m)ice,OU=[A-Za-z]+,O=Acme Corp,C=DE"),
            ),
            ("~\\/C=DE/.*", Some("~.*,C=DE")),
            ("~/C=DE/(O=a|O=b/OU=x)/.*", None),
        ] {
            let e = compile_err(&[], &[rule], &[]);
            let msg = e.reason();
            match want {
                Some(s) => {
                    assert!(msg.ends_with(&format!("; write {s:?}")), "{msg}");
                    rules(&[s], &[], &[]);
                }
                None => assert!(msg.ends_with("\"CN=alice,O=Acme,C=DE\")"), "{msg}"),
            }
        }
        // Patterns that may match without a leading '/' stay.
        for rule in ["~/?CN=alice.*", "~/*CN=.*", "~/C=x|.*", "~.*/.*", "~CN=a/b"] {
            rules(&[rule], &[], &[]);
        }
    }

    #[test]
    fn regexes_match_either_spelling_of_non_ascii() {
        let c = cert_named(
            &[
                &[(C, PRINTABLE, b"FI")],
                &[(O, UTF8, b"Acme")],
                &[(CN, UTF8, "J\u{fc}rgen M\u{fc}ller".as_bytes())],
            ],
            &[&[(CN, UTF8, "\u{c5}land CA".as_bytes())]],
        );
        assert_eq!(
            c.subject_rfc2253(),
            "CN=J\\C3\\BCrgen M\\C3\\BCller,O=Acme,C=FI"
        );
        for rule in [
            "CN=Jürgen Müller,O=Acme,C=FI",
            "CN=J\\C3\\BCrgen M\\C3\\BCller,O=Acme,C=FI",
            "/C=FI/O=Acme/CN=J\\xC3\\xBCrgen M\\xC3\\xBCller",
            "/C=FI/O=Acme/CN=Jürgen Müller",
            "~CN=Jürgen .*,O=Acme,C=FI",
            "~CN=J\\\\C3\\\\BCrgen .*,O=Acme,C=FI",
            "~CN=J.rgen M.ller,O=Acme,C=FI",
            "~CN=J\\w+ M\\w+,O=Acme,C=FI",
        ] {
            assert!(admits(&rules(&[rule], &[], &[]), &c), "{rule}");
        }
        assert!(admits(&rules(&[], &["~CN=Åland CA"], &[]), &c));
        assert!(admits(&rules(&[], &["~CN=\\\\C3\\\\85land CA"], &[]), &c));
        for rule in [
            "CN=Jurgen Muller,O=Acme,C=FI",
            "~CN=Jürgen,O=Acme,C=FI",
            "~CN=[A-Za-z ]+,O=Acme,C=FI",
        ] {
            assert!(!admits(&rules(&[rule], &[], &[]), &c), "{rule}");
        }
    }
}
