//! Admission rules, compiled once from config (`allow_subjects`, `allow_issuers`, `allow_sans`)
//! so that checking a connection costs a few hash lookups.
//!
//! Semantics: a client is admitted when its certificate verified and every non-empty family has
//! a matching entry. Within a family any entry suffices.
//! - DN rules (subjects; issuers, which apply to the leaf's issuer DN): an exact DN in RFC 4514
//!   or legacy `/C=../CN=..` form, compared structurally (see [`super::dn`]); or `~regex`, which
//!   must match the whole RFC 2253 string of the DN (as in `$ssl_client_s_dn`).
//! - SAN rules: `kind:value`, kind `dns`, `email`, `uri` or `ip` (case-insensitive). Exact by
//!   default (DNS names and email domains case-insensitive, URIs exact, IPs as addresses). `*`
//!   is a wildcard: in `dns` only as the whole leftmost label (`*.acme.test` matches one label),
//!   in `uri` and `email` any sequence. `~regex` matches a whole value of that kind as the
//!   certificate has it. Wildcards and regexes never match values containing control characters.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use regex::Regex;

use super::cert::{ClientCert, San};
use super::dn::{Dn, DnError, DnKey};

const SUBJECTS: &str = "allow_subjects";
const ISSUERS: &str = "allow_issuers";
const SANS: &str = "allow_sans";

/// The compiled `allow_*` lists.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    subjects: DnRules,
    issuers: DnRules,
    sans: SanRules,
}

impl Rules {
    /// Compiles the three config lists; the error names the list, the index and the reason.
    pub fn compile(
        subjects: &[String],
        issuers: &[String],
        sans: &[String],
    ) -> Result<Rules, RuleError> {
        Ok(Rules {
            subjects: DnRules::compile(SUBJECTS, subjects)?,
            issuers: DnRules::compile(ISSUERS, issuers)?,
            sans: SanRules::compile(sans)?,
        })
    }

    /// True when no family has rules: any verified certificate is admitted.
    pub fn is_empty(&self) -> bool {
        self.subjects.texts.is_empty()
            && self.issuers.texts.is_empty()
            && self.sans.texts.is_empty()
    }

    /// Decides admission. Hash lookups of every family run before any wildcard or regex, so a
    /// refusal is usually decided without running a regex.
    pub fn check(&self, cert: &ClientCert, verified: bool) -> Result<Admit<'_>, Refuse> {
        let facts = Facts {
            subject_key: cert.subject_key(),
            issuer_key: cert.issuer_key(),
            subject_rfc2253: cert.subject_rfc2253(),
            issuer_rfc2253: cert.issuer_rfc2253(),
            sans: cert.sans(),
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
        for (probe, refuse) in [
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
                .resolve(subject, SUBJECTS, cert.subject_rfc2253)
                .ok_or(Refuse::Subject)?,
            issuer: self
                .issuers
                .resolve(issuer, ISSUERS, cert.issuer_rfc2253)
                .ok_or(Refuse::Issuer)?,
            san: self.sans.resolve(san, cert.sans).ok_or(Refuse::San)?,
        })
    }
}

/// What the rules look at in a client certificate, as [`ClientCert`] holds it.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub subject_key: &'a DnKey,
    pub issuer_key: &'a DnKey,
    /// Header-safe RFC 2253 strings, which `~regex` rules match.
    pub subject_rfc2253: &'a str,
    pub issuer_rfc2253: &'a str,
    pub sans: &'a [San],
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
    fn compile(family: &'static str, rules: &[String]) -> Result<DnRules, RuleError> {
        let mut out = DnRules {
            texts: rules.to_vec(),
            exact: HashMap::with_capacity(rules.len()),
            regexes: Vec::new(),
        };
        for (index, rule) in rules.iter().enumerate() {
            let fail = |kind| RuleError::new(family, index, rule, kind);
            if rule.trim().is_empty() {
                return Err(fail(RuleErrorKind::Empty));
            }
            if let Some(pattern) = rule.strip_prefix('~') {
                out.regexes
                    .push((index, whole_match(pattern).map_err(fail)?));
            } else {
                let dn = Dn::parse(rule).map_err(|e| fail(RuleErrorKind::Dn(e)))?;
                out.exact.entry(dn.key()).or_insert(index);
            }
        }
        Ok(out)
    }

    fn probe(&self, key: &DnKey) -> Probe {
        if self.texts.is_empty() {
            return Probe::Empty;
        }
        Probe::from_lookup(self.exact.get(key).copied(), !self.regexes.is_empty())
    }

    /// `None` when the family is not satisfied; `Some(None)` when it has no rules.
    fn resolve(&self, probe: Probe, family: &'static str, dn: &str) -> Option<Option<RuleRef<'_>>> {
        let index = match probe {
            Probe::Empty => return Some(None),
            Probe::Hit(i) => i,
            Probe::Patterns => self
                .regexes
                .iter()
                .find(|(_, re)| re.is_match(dn))
                .map(|(i, _)| *i)?,
            Probe::Miss => return None,
        };
        Some(Some(RuleRef::new(family, index, &self.texts)))
    }
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
                .map_err(|kind| RuleError::new(SANS, index, rule, kind))?;
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
        Some(Some(RuleRef::new(SANS, index, &self.texts)))
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
    /// `allow_subjects`, `allow_issuers` or `allow_sans`.
    pub family: &'static str,
    pub index: usize,
    pub text: &'r str,
}

impl<'r> RuleRef<'r> {
    fn new(family: &'static str, index: usize, texts: &'r [String]) -> RuleRef<'r> {
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
    pub subject: Option<RuleRef<'r>>,
    pub issuer: Option<RuleRef<'r>>,
    pub san: Option<RuleRef<'r>>,
}

impl Admit<'_> {
    /// True when no family had rules (any verified certificate is admitted).
    pub fn no_rules(&self) -> bool {
        self.subject.is_none() && self.issuer.is_none() && self.san.is_none()
    }
}

impl fmt::Display for Admit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.no_rules() {
            return f.write_str("no rules");
        }
        let mut sep = "";
        for rule in [self.subject, self.issuer, self.san].into_iter().flatten() {
            write!(f, "{sep}{rule}")?;
            sep = ", ";
        }
        Ok(())
    }
}

/// Why a client was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refuse {
    Unverified,
    Subject,
    Issuer,
    San,
}

impl fmt::Display for Refuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refuse::Unverified => "client certificate did not verify",
            Refuse::Subject => "subject DN matched no allow_subjects rule",
            Refuse::Issuer => "issuer DN matched no allow_issuers rule",
            Refuse::San => "no subjectAltName matched an allow_sans rule",
        })
    }
}

impl std::error::Error for Refuse {}

/// A rule that does not compile: which list, which entry, and why.
#[derive(Clone, Debug)]
pub struct RuleError {
    /// The config key: `allow_subjects`, `allow_issuers` or `allow_sans`.
    pub family: &'static str,
    pub index: usize,
    pub rule: String,
    pub kind: RuleErrorKind,
}

impl RuleError {
    fn new(family: &'static str, index: usize, rule: &str, kind: RuleErrorKind) -> RuleError {
        RuleError {
            family,
            index,
            rule: rule.to_owned(),
            kind,
        }
    }
}

#[derive(Clone, Debug)]
pub enum RuleErrorKind {
    Empty,
    Dn(DnError),
    Regex(regex::Error),
    /// Not `kind:value`.
    SanSyntax,
    SanKind(String),
    DnsWildcard,
    Email,
    Ip(String),
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}] {:?}: ", self.family, self.index, self.rule)?;
        match &self.kind {
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
            RuleErrorKind::Ip(v) => write!(
                f,
                "{v:?} is not an IP address (wildcards and CIDR are not supported; use a ~regex)"
            ),
        }
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
                    family: "allow_subjects",
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
            ("allow_subjects", 1, "CN=a,Foo=b")
        );
        assert!(matches!(e.kind, RuleErrorKind::Dn(_)));
        let msg = e.to_string();
        assert!(
            msg.starts_with("allow_subjects[1] \"CN=a,Foo=b\": invalid DN at offset 5"),
            "{msg}"
        );
        let e = compile_err(&[], &["~("], &[]);
        assert_eq!((e.family, e.index), ("allow_issuers", 0));
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
            assert_eq!((e.family, e.index), ("allow_sans", 1), "{rule}");
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
}
