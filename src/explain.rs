//! `certgate explain`: what a listener would do with a client certificate, without a network.
//!
//! The configuration is loaded as `run` loads it; the policy is chosen as the ClientHello
//! callback chooses it (the `[[listener.sni]]` block `--sni` selects, else the listener's own, or
//! the `unrecognized_name` refusal of `unknown_sni = "reject"`); the certificate (PEM, leaf
//! first, then its chain) is verified against that policy's CA store (with its CRLs and verify
//! depth, at `--at` or now), the rules are checked with `Rules::check`, and the verdict and
//! headers come from `Identity::judge`, the code a connection goes through after its handshake.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use boring::stack::Stack;
use boring::x509::store::{X509Store, X509StoreBuilder};
use boring::x509::{X509StoreContext, X509VerifyError, X509};
use certgate::config::{Config, Listener, Reject, UnknownSni, VerifyMode};
use certgate::identity::rules::Family;
use certgate::identity::{ClientCert, Refuse, Rules};
use certgate::proxy::identity::{Identity, Refusal};
use certgate::tls::crl::StaleCrl;
use foreign_types::ForeignTypeRef;

/// The client address the forwarding headers show (TEST-NET-1: no real client).
const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 0);

/// The command's arguments.
pub struct Args {
    pub config: PathBuf,
    pub cert: PathBuf,
    pub listener: Option<String>,
    /// The server name the client sends (SNI); None: a ClientHello without one.
    pub sni: Option<String>,
    pub at: Option<String>,
    pub json: bool,
}

/// Runs `explain`: exit 0 admitted, 1 refused, 2 error.
pub fn run(args: &Args) -> ExitCode {
    match explain(args) {
        Ok(report) => {
            if args.json {
                println!("{}", report.json());
            } else {
                print!("{}", report.text());
            }
            if report.admitted {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("certgate explain: {e}");
            ExitCode::from(2)
        }
    }
}

/// One family's result.
struct FamilyLine {
    family: Family,
    /// The rule that matched, as `allow_subjects[0] "CN=.."`.
    matched: Option<String>,
    /// On a miss: the nearest rule and how the certificate differs from it.
    nearest: Option<(String, String)>,
}

struct Report {
    listener: String,
    /// `--sni`, as given.
    sni: Option<String>,
    /// Which policy judged the certificate, and why that one.
    policy: String,
    /// The handshake is refused before a certificate is asked for (`unknown_sni = "reject"`):
    /// nothing after the policy applies.
    unrecognized: bool,
    at: String,
    verify_ok: bool,
    verify_reason: String,
    cert: ClientCert,
    not_before: String,
    families: Vec<FamilyLine>,
    headers: Vec<(String, String)>,
    admitted: bool,
    /// `forwarded`, `400 ...`, `403 Forbidden` or `TLS alert ...`.
    outcome: String,
    /// Why, when refused.
    reason: Option<String>,
}

fn explain(args: &Args) -> Result<Report, String> {
    let config = Config::load(&args.config).map_err(|e| e.to_string())?;
    let listener = pick(&config, args.listener.as_deref())?;
    let at = match &args.at {
        Some(t) => Some(parse_rfc3339(t).ok_or_else(|| {
            format!(
                "--at {t:?}: not an RFC 3339 time; write e.g. 2030-01-31T12:00:00Z or \
                 2030-01-31T13:00:00+01:00"
            )
        })?),
        None => None,
    };
    let pem = std::fs::read(&args.cert)
        .map_err(|e| format!("--cert {}: cannot read: {e}", args.cert.display()))?;
    let chain = X509::stack_from_pem(&pem).map_err(|e| {
        format!(
            "--cert {}: not a PEM certificate chain: {e}",
            args.cert.display()
        )
    })?;
    let mut chain = chain.into_iter();
    let leaf = chain.next().ok_or_else(|| {
        format!(
            "--cert {}: no certificate found (expected PEM, the client's certificate first)",
            args.cert.display()
        )
    })?;
    let mut rest = Stack::new().map_err(|e| e.to_string())?;
    for c in chain {
        rest.push(c).map_err(|e| e.to_string())?;
    }

    let facts = ClientCert::from_x509(&leaf);
    let at_text = match at {
        Some(t) => format!("{} (--at)", show_time(t)),
        None => "now".to_owned(),
    };
    let sni = args.sni.clone();
    let (listener, policy) = match choose(listener, sni.as_deref()) {
        Chosen::Policy(policy, why) => (policy, why),
        Chosen::Unrecognized(why) => {
            return Ok(Report {
                listener: listener.name.clone(),
                sni,
                policy: why,
                unrecognized: true,
                at: at_text,
                verify_ok: false,
                verify_reason: "not verified: the handshake is refused before a certificate is \
                                asked for"
                    .to_owned(),
                not_before: leaf.not_before().to_string(),
                cert: facts,
                families: Vec::new(),
                headers: Vec::new(),
                admitted: false,
                outcome: "TLS alert unrecognized_name (unknown_sni = \"reject\"): the handshake \
                          fails"
                    .to_owned(),
                reason: Some(
                    "no [[listener.sni]] block serves this name, and unknown_sni = \"reject\""
                        .to_owned(),
                ),
            });
        }
    };
    let auth = &listener.client_auth;
    let verified = if auth.mode == VerifyMode::Off {
        None
    } else {
        let store = store(&config, listener)?;
        Some(verify(listener, &store, &leaf, &rest, at)?)
    };
    let identity = Identity::judge(listener, Some(facts.clone()), verified, true, PEER);

    let verify_ok = matches!(verified, Some(Ok(())));
    let verify_reason = match verified {
        None => "not verified: client_auth.mode is off (no certificate is requested)".to_owned(),
        Some(Ok(())) => "ok".to_owned(),
        Some(Err(e)) => e.error_string().to_owned(),
    };

    let families = families(&auth.rules, &facts);
    let alert = match (auth.mode, auth.reject, verified) {
        (VerifyMode::Required | VerifyMode::Optional, Reject::Handshake, Some(Err(e))) => {
            Some(alert(e))
        }
        _ => None,
    };
    let (admitted, outcome, reason) = match (&alert, &identity.refusal) {
        (Some(a), _) => (
            false,
            format!("TLS alert {a} (reject = \"handshake\"): the handshake fails"),
            Some(format!(
                "client certificate failed verification: {verify_reason}"
            )),
        ),
        (None, Some(r)) => (false, page(r), Some(r.to_string())),
        (None, None) if auth.mode == VerifyMode::Off => (
            true,
            "forwarded (client_auth.mode is off: the certificate is not even asked for)".to_owned(),
            None,
        ),
        (None, None) => (true, "forwarded".to_owned(), None),
    };
    let headers = identity
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    Ok(Report {
        listener: listener.name.clone(),
        sni,
        policy,
        unrecognized: false,
        at: at_text,
        verify_ok,
        verify_reason,
        not_before: leaf.not_before().to_string(),
        cert: facts,
        families,
        headers,
        admitted: admitted && alert.is_none(),
        outcome,
        reason,
    })
}

/// The listener named, or the first with TLS.
fn pick<'c>(config: &'c Config, name: Option<&str>) -> Result<&'c Listener, String> {
    match name {
        Some(n) => {
            let l = config
                .listeners
                .iter()
                .find(|l| l.name == n)
                .ok_or_else(|| {
                    let names: Vec<&str> =
                        config.listeners.iter().map(|l| l.name.as_str()).collect();
                    format!(
                        "--listener {n:?}: no listener has that name in {}; the listeners are: {}",
                        config.path.display(),
                        names.join(", ")
                    )
                })?;
            if l.tls.is_none() {
                return Err(format!(
                    "--listener {n:?}: this listener has no [listener.tls], so it never sees a \
                     client certificate"
                ));
            }
            Ok(l)
        }
        None => config
            .listeners
            .iter()
            .find(|l| l.tls.is_some())
            .map(|l| &**l)
            .ok_or_else(|| {
                format!(
                    "{}: no listener has [listener.tls]: there is nothing to explain",
                    config.path.display()
                )
            }),
    }
}

/// The policy a handshake on a listener ends with.
enum Chosen<'l> {
    /// The listener's own or one of its blocks, and a sentence saying which and why.
    Policy(&'l Listener, String),
    /// `unknown_sni = "reject"` refuses the handshake; why it applies.
    Unrecognized(String),
}

/// Chooses as the ClientHello callback does (`tls::sni::Router::route`): the block whose names
/// select `sni` (exact names first, then `*.` wildcards, case-insensitive), else the listener's
/// own policy, or the refusal when `unknown_sni = "reject"` (also without SNI).
fn choose<'l>(listener: &'l Listener, sni: Option<&str>) -> Chosen<'l> {
    let block = sni
        .and_then(|name| listener.sni_names.select(name.as_bytes()))
        .and_then(|j| {
            listener
                .sni
                .iter()
                .find(|b| b.sni_block == Some(j))
                .map(|b| (j, b))
        });
    if let Some((j, b)) = block {
        let name = sni.unwrap_or_default();
        return Chosen::Policy(
            b,
            format!(
                "[[listener.sni]] block {j} (names {}), selected by SNI {name:?}: its own \
                 [listener.sni.client_auth]",
                b.sni_label
            ),
        );
    }
    let names: Vec<&str> = listener.sni.iter().map(|b| b.sni_label.as_str()).collect();
    let unselected = match sni {
        _ if names.is_empty() => {
            return Chosen::Policy(
                listener,
                "the listener's own [listener.client_auth] (it has no [[listener.sni]] blocks)"
                    .to_owned(),
            )
        }
        Some(name) => format!("SNI {name:?} names no [[listener.sni]] block"),
        None => "no SNI (give the name the client sends with --sni)".to_owned(),
    };
    let blocks = names.join("; ");
    if listener.unknown_sni == UnknownSni::Reject {
        return Chosen::Unrecognized(format!(
            "none: {unselected}, and unknown_sni = \"reject\" refuses the handshake (blocks: \
             {blocks})"
        ));
    }
    Chosen::Policy(
        listener,
        format!("the listener's own [listener.client_auth]: {unselected} (blocks: {blocks})"),
    )
}

/// The store a handshake under `listener` (a listener's own policy or one of its blocks) verifies
/// against: the CRL generation in force (CAs, CRLs and CRL flags) when the policy has CRLs, else
/// its CA file.
fn store(config: &Config, listener: &Listener) -> Result<X509Store, String> {
    if let Some(crls) = &listener.crls {
        return Ok(crls.store());
    }
    // The validated Config keeps the CAs only inside the TLS context, which has no getter for
    // its verify store: the CA file is read again from the listener's entry.
    let text = std::fs::read_to_string(&config.path)
        .map_err(|e| format!("{}: cannot read: {e}", config.path.display()))?;
    let file: certgate::config::file::ConfigFile =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", config.path.display()))?;
    let entry = file
        .listener
        .iter()
        .find(|l| *l.name.get_ref() == listener.name)
        .and_then(|l| match listener.sni_block {
            Some(j) => l.sni.get(j).and_then(|b| b.client_auth.as_ref()),
            None => l.client_auth.as_ref(),
        })
        .and_then(|a| a.ca.as_ref());
    let mut b = X509StoreBuilder::new().map_err(|e| e.to_string())?;
    // `optional_no_ca` without a CA: an empty store, as the listener has.
    let Some(entry) = entry else {
        return Ok(b.build());
    };
    let path = resolve(&config.path, entry.get_ref());
    let pem = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let cas = X509::stack_from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
    for ca in cas {
        b.add_cert(ca).map_err(|e| e.to_string())?;
    }
    Ok(b.build())
}

fn resolve(config: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_owned()
    } else {
        config.parent().unwrap_or(Path::new(".")).join(p)
    }
}

/// Verifies as BoringSSL does in a handshake: the context's parameters (verify depth) over the
/// store's (CRL flags), purpose `ssl_client`, at `at` (POSIX seconds) when given.
fn verify(
    listener: &Listener,
    store: &X509Store,
    leaf: &X509,
    chain: &Stack<X509>,
    at: Option<i64>,
) -> Result<Result<(), X509VerifyError>, String> {
    let ctx = listener
        .tls
        .as_ref()
        .ok_or("the listener has no TLS context")?;
    let warn_stale = listener
        .crls
        .as_ref()
        .is_some_and(|c| c.stale() == StaleCrl::Warn);
    let mut sctx = X509StoreContext::new().map_err(|e| e.to_string())?;
    sctx.init(store, leaf, chain, |c| {
        // SAFETY: plain setters on a context initialised by `init`; the SSL_CTX outlives it.
        unsafe {
            let param = boring_sys::X509_STORE_CTX_get0_param(c.as_ptr());
            boring_sys::X509_VERIFY_PARAM_set1(param, boring_sys::SSL_CTX_get0_param(ctx.as_ptr()));
            boring_sys::X509_STORE_CTX_set_default(c.as_ptr(), c"ssl_client".as_ptr());
            if let Some(t) = at {
                boring_sys::X509_STORE_CTX_set_time_posix(c.as_ptr(), 0, t);
            }
        }
        let ok = c.verify_cert()?;
        let r = c.verify_result();
        if !ok && warn_stale && r == Err(X509VerifyError::CRL_HAS_EXPIRED) {
            return Ok(Ok(()));
        }
        Ok(if ok { Ok(()) } else { r })
    })
    .map_err(|e| format!("verification could not run: {e}"))
}

/// The alert BoringSSL sends for a verification error (`ssl_verify_alarm_type`).
fn alert(e: X509VerifyError) -> &'static str {
    match e {
        X509VerifyError::CERT_REVOKED => "certificate_revoked",
        X509VerifyError::CERT_HAS_EXPIRED | X509VerifyError::CRL_HAS_EXPIRED => {
            "certificate_expired"
        }
        X509VerifyError::UNABLE_TO_GET_ISSUER_CERT
        | X509VerifyError::UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | X509VerifyError::UNABLE_TO_VERIFY_LEAF_SIGNATURE
        | X509VerifyError::DEPTH_ZERO_SELF_SIGNED_CERT
        | X509VerifyError::SELF_SIGNED_CERT_IN_CHAIN
        | X509VerifyError::CERT_CHAIN_TOO_LONG
        | X509VerifyError::PATH_LENGTH_EXCEEDED
        | X509VerifyError::INVALID_CA
        | X509VerifyError::UNABLE_TO_GET_CRL
        | X509VerifyError::CERT_UNTRUSTED => "unknown_ca",
        X509VerifyError::INVALID_PURPOSE => "unsupported_certificate",
        X509VerifyError::CERT_NOT_YET_VALID
        | X509VerifyError::CRL_NOT_YET_VALID
        | X509VerifyError::CERT_SIGNATURE_FAILURE
        | X509VerifyError::CRL_SIGNATURE_FAILURE => "bad_certificate",
        _ => "certificate_unknown",
    }
}

fn page(r: &Refusal) -> String {
    let p = r.page();
    let title = match r {
        Refusal::NoCert => "No required SSL certificate was sent",
        Refusal::CertError(_) => "The SSL certificate error",
        Refusal::Forbidden(_) => "Forbidden",
    };
    format!("{} page \"{title}\"", p.status())
}

/// Each family with rules: checked alone with the real matcher, and on a miss the nearest rule.
fn families(rules: &Rules, cert: &ClientCert) -> Vec<FamilyLine> {
    let mut out = Vec::new();
    for family in [
        Family::Subjects,
        Family::Issuers,
        Family::Sans,
        Family::Fingerprints,
    ] {
        let texts = rules.texts(family);
        if texts.is_empty() {
            continue;
        }
        let none: &[String] = &[];
        let pick = |f: Family| if f == family { texts } else { none };
        let alone = Rules::compile(
            pick(Family::Subjects),
            pick(Family::Issuers),
            pick(Family::Sans),
        )
        .and_then(|r| r.with_fingerprints(pick(Family::Fingerprints)));
        let matched = alone.ok().and_then(|r| match r.check(cert, true) {
            Ok(a) => [a.subject, a.issuer, a.san, a.fingerprint]
                .into_iter()
                .flatten()
                .next()
                .map(|m| m.to_string()),
            Err(
                Refuse::Unverified
                | Refuse::Subject
                | Refuse::Issuer
                | Refuse::San
                | Refuse::Fingerprint,
            ) => None,
        });
        let nearest = match matched {
            Some(_) => None,
            None => nearest(family, texts, cert),
        };
        out.push(FamilyLine {
            family,
            matched,
            nearest,
        });
    }
    out
}

/// The rule closest to the certificate (fewest differing attributes, then edit distance), and
/// the differences, as `CN: client.1.local.evil.com, rule has client.1.local`.
fn nearest(family: Family, texts: &[String], cert: &ClientCert) -> Option<(String, String)> {
    let mut best: Option<(usize, usize, String, String)> = None;
    for (i, rule) in texts.iter().enumerate() {
        let (diff, score, dist) = match family {
            Family::Sans => san_diff(rule, cert),
            Family::Subjects => dn_diff(rule, cert.subject_rfc2253()),
            Family::Issuers => dn_diff(rule, cert.issuer_rfc2253()),
            // No near miss between hashes: show the certificate's own.
            Family::Fingerprints => (
                format!("certificate has sha256:{}", cert.fingerprint()),
                1,
                0,
            ),
        };
        if best.as_ref().is_none_or(|b| (score, dist) < (b.0, b.1)) {
            best = Some((score, dist, format!("{family}[{i}] {rule:?}"), diff));
        }
    }
    best.map(|(_, _, r, d)| (r, d))
}

/// Attribute pairs of a DN in RFC 4514 (`CN=a,O=b`) or legacy (`/O=b/CN=a`) form, types upper-case.
fn attrs(dn: &str) -> Vec<(String, String)> {
    let parts: Vec<&str> = match dn.strip_prefix('/') {
        Some(legacy) => legacy.split('/').collect(),
        None => split_unescaped(dn),
    };
    parts
        .into_iter()
        .filter_map(|p| p.split_once('='))
        .map(|(t, v)| (t.trim().to_ascii_uppercase(), v.trim().to_owned()))
        .collect()
}

fn split_unescaped(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, ch) in s.char_indices() {
        match ch {
            '\\' if !escaped => escaped = true,
            ',' | '+' if !escaped => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => escaped = false,
        }
    }
    out.push(&s[start..]);
    out
}

/// (differences, number of differing attributes, edit distance).
fn dn_diff(rule: &str, dn: &str) -> (String, usize, usize) {
    if let Some(re) = rule.strip_prefix('~') {
        return (
            format!("{dn} does not match the regex {re}"),
            usize::MAX / 2,
            levenshtein(re, dn),
        );
    }
    let have = attrs(dn);
    let want = attrs(rule);
    let mut diffs = Vec::new();
    for (t, v) in &want {
        match have.iter().find(|(ht, _)| ht == t) {
            Some((_, hv)) if hv == v => {}
            Some((_, hv)) => diffs.push(format!("{t}: {hv}, rule has {v}")),
            None => diffs.push(format!("{t}: absent, rule has {v}")),
        }
    }
    for (t, v) in &have {
        if !want.iter().any(|(wt, _)| wt == t) {
            diffs.push(format!("{t}: {v}, rule has none"));
        }
    }
    if diffs.is_empty() {
        diffs.push(format!("{dn} differs from the rule in order or spelling"));
    }
    let n = diffs.len();
    (diffs.join("; "), n, levenshtein(rule, dn))
}

fn san_diff(rule: &str, cert: &ClientCert) -> (String, usize, usize) {
    let (kind, value) = rule.split_once(':').unwrap_or(("", rule));
    let kind = kind.trim().to_ascii_lowercase();
    let same_kind: Vec<String> = cert
        .sans()
        .iter()
        .filter(|s| s.kind().eq_ignore_ascii_case(&kind))
        .map(|s| {
            let t = s.to_string();
            t.split_once(':').map_or(t.clone(), |(_, v)| v.to_owned())
        })
        .collect();
    match same_kind
        .iter()
        .min_by_key(|v| levenshtein(value.trim_start_matches('~'), v))
    {
        Some(v) => (
            format!("{kind}: {v}, rule has {value}"),
            1,
            levenshtein(value, v),
        ),
        None => (
            format!("{kind}: the certificate has no {kind} name, rule has {value}"),
            2,
            value.len(),
        ),
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

impl Report {
    fn text(&self) -> String {
        let mut o = String::new();
        let c = &self.cert;
        let _ = writeln!(o, "listener: {}", self.listener);
        if let Some(sni) = &self.sni {
            let _ = writeln!(o, "sni: {sni}");
        }
        let _ = writeln!(o, "policy: {}", self.policy);
        let _ = writeln!(o, "time: {}", self.at);
        if self.unrecognized {
            let _ = writeln!(o, "verify: not reached");
        } else if self.verify_ok {
            let _ = writeln!(o, "verify: ok");
        } else {
            let _ = writeln!(o, "verify: FAILED ({})", self.verify_reason);
        }
        let _ = writeln!(o, "subject: {}", c.subject_rfc2253());
        let _ = writeln!(o, "subject (legacy): {}", c.subject_legacy());
        let _ = writeln!(o, "issuer: {}", c.issuer_rfc2253());
        let _ = writeln!(o, "issuer (legacy): {}", c.issuer_legacy());
        let sans = c.san_header();
        let _ = writeln!(
            o,
            "sans: {}",
            if sans.is_empty() { "(none)" } else { &sans }
        );
        let _ = writeln!(o, "serial: {}", c.serial());
        let _ = writeln!(o, "fingerprint: {}", c.fingerprint());
        let _ = writeln!(o, "validity: {} to {}", self.not_before, c.not_after());
        if self.unrecognized {
            let _ = writeln!(o, "rules: not reached");
        } else if self.families.is_empty() {
            let _ = writeln!(o, "rules: none (any verified certificate is admitted)");
        }
        for f in &self.families {
            match (&f.matched, &f.nearest) {
                (Some(m), _) => {
                    let _ = writeln!(o, "{}: matched {m}", f.family);
                }
                (None, Some((rule, diff))) => {
                    let _ = writeln!(o, "{}: no match; nearest {rule}: {diff}", f.family);
                }
                (None, None) => {
                    let _ = writeln!(o, "{}: no match", f.family);
                }
            }
        }
        if !self.unrecognized {
            let _ = writeln!(o, "headers (client address shown as {}):", PEER.ip());
            for (n, v) in &self.headers {
                let _ = writeln!(o, "  {n}: {v}");
            }
        }
        let _ = writeln!(o, "outcome: {}", self.outcome);
        if let Some(r) = &self.reason {
            let _ = writeln!(o, "reason: {r}");
        }
        let _ = writeln!(
            o,
            "result: {}",
            if self.admitted { "admitted" } else { "refused" }
        );
        o
    }

    fn json(&self) -> String {
        let c = &self.cert;
        let s = json_str;
        let sans: Vec<String> = c.sans().iter().map(|x| s(&x.to_string())).collect();
        let families: Vec<String> = self
            .families
            .iter()
            .map(|f| {
                format!(
                    "{{\"family\":{},\"matched\":{},\"nearest\":{},\"diff\":{}}}",
                    s(f.family.key()),
                    opt(f.matched.as_deref()),
                    opt(f.nearest.as_ref().map(|n| n.0.as_str())),
                    opt(f.nearest.as_ref().map(|n| n.1.as_str())),
                )
            })
            .collect();
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| format!("{{\"name\":{},\"value\":{}}}", s(n), s(v)))
            .collect();
        format!(
            "{{\"listener\":{},\"sni\":{},\"policy\":{},\"time\":{},\"verify\":{{\"ok\":{},\"reason\":{}}},\
             \"identity\":{{\"subject\":{},\"subject_legacy\":{},\"issuer\":{},\
             \"issuer_legacy\":{},\"sans\":[{}],\"serial\":{},\"fingerprint\":{},\
             \"not_before\":{},\"not_after\":{}}},\"rules\":[{}],\"headers\":[{}],\
             \"outcome\":{},\"reason\":{},\"admitted\":{}}}",
            s(&self.listener),
            opt(self.sni.as_deref()),
            s(&self.policy),
            s(&self.at),
            self.verify_ok,
            s(&self.verify_reason),
            s(c.subject_rfc2253()),
            s(c.subject_legacy()),
            s(c.issuer_rfc2253()),
            s(c.issuer_legacy()),
            sans.join(","),
            s(c.serial()),
            s(c.fingerprint()),
            s(&self.not_before),
            s(c.not_after()),
            families.join(","),
            headers.join(","),
            s(&self.outcome),
            opt(self.reason.as_deref()),
            self.admitted,
        )
    }
}

fn opt(v: Option<&str>) -> String {
    v.map_or_else(|| "null".to_owned(), json_str)
}

fn json_str(v: &str) -> String {
    let mut o = String::with_capacity(v.len() + 2);
    o.push('"');
    for ch in v.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", u32::from(c));
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// POSIX seconds of an RFC 3339 time (`2030-01-31T12:00:00Z`, fraction and offset allowed).
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let o = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    // Days from civil (H. Hinnant).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

fn show_time(t: i64) -> String {
    let (y, mo, d, h, mi, s) = certgate::logging::civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(
            parse_rfc3339("2000-03-01T01:30:00.25+01:30"),
            Some(951_868_800)
        );
        assert_eq!(show_time(951_868_800), "2000-03-01T00:00:00Z");
        for bad in [
            "2000-03-01",
            "2000-13-01T00:00:00Z",
            "tomorrow",
            "2000-03-01T00:00:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn dn_differences_name_the_attribute() {
        let (d, n, _) = dn_diff(
            "CN=client.1.local,O=Acme",
            "CN=client.1.local.evil.com,O=Acme",
        );
        assert_eq!(d, "CN: client.1.local.evil.com, rule has client.1.local");
        assert_eq!(n, 1);
        let (d, _, _) = dn_diff("/O=Acme/CN=a", "CN=b,O=Acme");
        assert_eq!(d, "CN: b, rule has a");
    }
}
