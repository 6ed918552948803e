//! `[[listener.sni]]`: several names on one listener, each block a whole policy of its own.
//!
//! A block has its own certificate(s) and its own `[client_auth]` (what it omits is NOT taken
//! from the listener's: a block without `[listener.sni.client_auth]` asks for no certificate),
//! and optionally its own `upstream` and `[headers]` (taken from the listener when omitted). The
//! TLS protocol settings (versions, ciphers, groups, signature algorithms, tickets and session
//! cache) are the listener's: the ClientHello that selects the block is already read under them.

use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::file::{ClientAuthFile, HeadersFile, ListenerFile, Paths, TlsFile, VerifyMode};
use super::{ConfigError, Cx, Listener, ListenerParts, Scope, Upstream};
use crate::tls::sni::{Name, Names, Policy};

/// `[[listener.sni]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniFile {
    /// The SNI names served: exact (`api.acme.test`) or a leading one-label wildcard
    /// (`*.partner.test`), case-insensitive.
    pub names: Spanned<Vec<Spanned<String>>>,
    /// `[listener.sni.tls]`: the block's certificate(s) and key(s).
    pub tls: Option<SniTlsFile>,
    /// `[listener.sni.client_auth]`: the block's whole client-certificate policy.
    pub client_auth: Option<ClientAuthFile>,
    /// The `[[upstream]]` the block's requests go to (default: the listener's).
    pub upstream: Option<Spanned<String>>,
    /// `[listener.sni.headers]` (default: the listener's).
    pub headers: Option<HeadersFile>,
}

/// `[listener.sni.tls]`: a certificate (or an RSA and an ECDSA one) and its key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniTlsFile {
    /// As `[listener.tls] certificate`.
    pub certificate: Spanned<Paths>,
    /// As `[listener.tls] private_key`.
    pub private_key: Spanned<Paths>,
    /// As `[listener.tls] ocsp_response`: the block's own staple.
    pub ocsp_response: Option<Spanned<String>>,
}

/// `unknown_sni`: what a ClientHello naming no block gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownSni {
    /// The listener's own `[tls]` and `[client_auth]` (nginx's default server).
    #[default]
    Default,
    /// The handshake is refused with the `unrecognized_name` alert (nginx
    /// `ssl_reject_handshake on` in the default server), also without SNI.
    Reject,
}

impl Cx<'_> {
    /// The names of `listener[i]`'s blocks: each checked, none twice across blocks.
    pub(super) fn sni_names(&self, i: usize, l: &ListenerFile) -> Result<Names, ConfigError> {
        let mut entries: Vec<(Name, usize)> = Vec::new();
        let verifies = |a: Option<&ClientAuthFile>| a.is_some_and(|a| a.mode != VerifyMode::Off);
        let mut verifying = verifies(l.client_auth.as_ref());
        for (j, b) in l.sni.iter().enumerate() {
            let key = format!("listener[{i}].sni[{j}].names");
            verifying |= verifies(b.client_auth.as_ref());
            if b.names.get_ref().is_empty() {
                return Err(self.err(
                    Some(&b.names),
                    &key,
                    "is empty: list the names this block serves, e.g. names = \
                     [\"api.example.com\", \"*.example.net\"]",
                ));
            }
            for (n, text) in b.names.get_ref().iter().enumerate() {
                let key = format!("{key}[{n}]");
                let name =
                    Name::parse(text.get_ref()).map_err(|r| self.err(Some(text), &key, &r))?;
                if let Some(other) = entries.iter().find(|(e, _)| *e == name).map(|(_, b)| *b) {
                    let whose = if other == j {
                        "this block".to_owned()
                    } else {
                        format!("listener[{i}].sni[{other}]")
                    };
                    return Err(self.err(
                        Some(text),
                        &key,
                        &format!(
                            "{name} is already listed by {whose}: a name selects one block; \
                             remove one of them"
                        ),
                    ));
                }
                entries.push((name, j));
            }
        }
        Ok(Names::new(entries, verifying))
    }

    /// Block `j` of `listener[i]`: a listener of its own for its names, and the policy the
    /// ClientHello callback switches to.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sni_block(
        &self,
        i: usize,
        j: usize,
        b: &SniFile,
        listener_tls: &TlsFile,
        listener_headers: &HeadersFile,
        parts: &ListenerParts,
        upstreams: &[Arc<Upstream>],
    ) -> Result<(Listener, Policy), ConfigError> {
        let base = format!("listener[{i}].sni[{j}]");
        let Some(own) = &b.tls else {
            return Err(self.err(
                Some(&b.names),
                &format!("{base}.tls"),
                "each [[listener.sni]] needs its own certificate: add [listener.sni.tls] with \
                 certificate and private_key (the listener's own serves the other names)",
            ));
        };
        let upstream = match &b.upstream {
            None => parts.upstream,
            Some(at) => {
                let u = self.upstream_named(&format!("{base}.upstream"), at, upstreams)?;
                self.check_upstream(&format!("{base}.upstream"), at, parts.mode, &upstreams[u])?;
                u
            }
        };
        let client_auth = self.client_auth(&base, b.client_auth.as_ref())?;
        let (headers, strip) = match &b.headers {
            Some(own) => self.headers(&base, own)?,
            None => {
                // The listener's, already checked (and warned about) under its own key.
                let warned = self.warnings.borrow().len();
                let inherited = self.headers(&base, listener_headers)?;
                self.warnings.borrow_mut().truncate(warned);
                inherited
            }
        };
        // The block's certificate with the listener's protocol settings.
        let tls = TlsFile {
            certificate: own.certificate.clone(),
            private_key: own.private_key.clone(),
            min_version: listener_tls.min_version,
            ciphers: listener_tls.ciphers.clone(),
            groups: listener_tls.groups.clone(),
            signature_algorithms: listener_tls.signature_algorithms.clone(),
            session_tickets: listener_tls.session_tickets,
            session_ticket_keys: listener_tls.session_ticket_keys.clone(),
            session_ticket_rotation: listener_tls.session_ticket_rotation.clone(),
            session_cache_size: listener_tls.session_cache_size,
            session_timeout: listener_tls.session_timeout.clone(),
            ocsp_response: own.ocsp_response.clone(),
        };
        let mut tag = b"sni:".to_vec();
        for name in b.names.get_ref() {
            tag.extend_from_slice(name.get_ref().to_ascii_lowercase().as_bytes());
            tag.push(0);
        }
        let scope = Scope {
            tag,
            tickets: Some(parts.tickets.clone()),
            router: None,
        };
        let (ctx, _, crls, verify) = self.server_tls(
            &base,
            &tls,
            b.client_auth.as_ref(),
            &client_auth,
            parts.alpn,
            scope,
        )?;
        let names: Vec<String> = b
            .names
            .get_ref()
            .iter()
            .map(|n| n.get_ref().trim().to_ascii_lowercase())
            .collect();
        let listener = Listener {
            name: parts.name.clone(),
            addr: parts.addr,
            mode: parts.mode,
            upstream,
            tls: Some(ctx.clone()),
            tickets: parts.tickets.clone(),
            crls: crls.clone(),
            client_auth,
            timeouts: parts.timeouts,
            limits: parts.limits,
            headers,
            strip,
            proxy_in: parts.proxy_in.clone(),
            protocols: parts.protocols,
            http2: parts.http2,
            sni: Vec::new(),
            sni_names: parts.names.clone(),
            sni_block: Some(j),
            sni_label: names.join(","),
            unknown_sni: parts.unknown_sni,
        };
        Ok((listener, Policy { ctx, verify, crls }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError, VerifyMode};

    fn listener(pki: &crate::pki::Pki, extra: &str, blocks: &str) -> String {
        format!(
            "[[listener]]\nname = \"edge\"\nlisten = \"127.0.0.1:1\"\nupstream = \"app\"\n{extra}\n\
             [listener.tls]\ncertificate = {:?}\nprivate_key = {:?}\n\
             [listener.client_auth]\nmode = \"required\"\nca = {:?}\n\
             allow_subjects = [\"CN=client.1.local,O=Internet Widgits Pty Ltd,ST=Some-State,C=FI\"]\n\
             {blocks}\n\
             [[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:2\"]\n\
             [[upstream]]\nname = \"partner\"\nservers = [\"127.0.0.1:3\"]\n",
            pki.server.cert, pki.server.key, pki.client_ca_bundle
        )
    }

    fn block(pki: &crate::pki::Pki, names: &str, auth: &str) -> String {
        format!(
            "[[listener.sni]]\nnames = {names}\nupstream = \"partner\"\n\
             [listener.sni.tls]\ncertificate = {:?}\nprivate_key = {:?}\n{auth}",
            pki.server_sni.cert, pki.server_sni.key
        )
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/nonexistent/certgate.toml"), text)
    }

    #[test]
    fn a_block_is_a_whole_policy_with_its_own_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::generate(dir.path()).unwrap();
        let auth = format!(
            "[listener.sni.client_auth]\nmode = \"required\"\nca = {:?}\n",
            pki.partner_ca
        );
        let text = listener(
            &pki,
            "unknown_sni = \"reject\"",
            &format!(
                "{}{}",
                block(&pki, "[\"API.acme.test\", \"*.partner.test\"]", &auth),
                block(&pki, "[\"open.acme.test\"]", "")
            ),
        );
        let c = parse(&text).unwrap();
        let l = &c.listeners[0];
        assert_eq!(l.sni.len(), 2);
        let (a, open) = (&l.sni[0], &l.sni[1]);
        assert_eq!(a.sni_block, Some(0));
        assert_eq!(a.client_auth.mode, VerifyMode::Required);
        // Nothing of the listener's client_auth is inherited: its rule is not the block's.
        assert_eq!(a.client_auth.rule_count, 0);
        assert_eq!(open.client_auth.mode, VerifyMode::Off);
        assert_eq!(c.upstreams[a.upstream].name, "partner");
        assert_eq!(l.sni_names.select(b"api.acme.test:443"), Some(0));
        assert_eq!(l.sni_names.select(b"x.partner.test"), Some(0));
        assert_eq!(l.sni_names.select(b"open.acme.test"), Some(1));
        // Own session ID contexts: the contexts differ from the listener's.
        assert!(a.tls.is_some() && open.tls.is_some());
        let summary = c.summary();
        for want in [
            "sni [api.acme.test,*.partner.test]: own certificate, client_auth.mode = \"required\", 0 rule(s) (a whole policy: nothing taken from [listener.client_auth]) -> upstream \"partner\"",
            "sni [open.acme.test]: own certificate, client_auth.mode = \"off\"",
            "other names (and no SNI): refused with the unrecognized_name alert",
        ] {
            assert!(summary.contains(want), "{want}\n{summary}");
        }
        // 421: a request naming another policy than its handshake's.
        assert_eq!(a.misdirected(Some(b"api.acme.test")), None);
        assert_eq!(a.misdirected(Some(b"y.partner.test:8443")), None);
        let why = a.misdirected(Some(b"localhost")).unwrap();
        assert!(why.contains("served by the listener's own policy"), "{why}");
        let why = l.misdirected(Some(b"API.ACME.TEST")).unwrap();
        assert!(
            why.contains("block 0, the handshake chose the listener's own"),
            "{why}"
        );
        assert!(open.misdirected(Some(b"api.acme.test")).is_some());
        assert_eq!(l.misdirected(Some(b"127.0.0.1:8443")), None);
        assert_eq!(l.misdirected(None), None);
    }

    #[test]
    fn inherited_settings_are_warned_about_once() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::generate(dir.path()).unwrap();
        let text = listener(&pki, "", &block(&pki, "[\"a.test\"]", ""))
            .replace(
                "[listener.tls]\n",
                "[listener.tls]\nciphers = \"TLS_AES_128_GCM_SHA256:ECDHE+AESGCM\"\n",
            )
            .replace(
                "[[upstream]]\nname = \"app\"",
                "[listener.headers]\nstrip = [\"Upgrade\"]\n[[upstream]]\nname = \"app\"",
            );
        let c = parse(&text).unwrap();
        let ciphers: Vec<&String> = c
            .warnings
            .iter()
            .filter(|w| w.contains("ciphers"))
            .collect();
        assert_eq!(ciphers.len(), 1, "{:?}", c.warnings);
        assert!(
            ciphers[0].contains("listener[0].tls.ciphers"),
            "{ciphers:?}"
        );
        assert!(
            !c.warnings.iter().any(|w| w.contains("sni[0]")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn names_are_checked_with_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::generate(dir.path()).unwrap();
        let bad = |blocks: String, key: &str, want: &str| {
            let text = listener(&pki, "", &blocks);
            let e = parse(&text).unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.reason.contains(want), "{e}");
            // The names line of the block concerned.
            let nth = key
                .split("sni[")
                .nth(1)
                .and_then(|r| r[..1].parse::<usize>().ok());
            let at = text.match_indices("names = ").nth(nth.unwrap()).unwrap().0;
            assert_eq!(e.line, Some(text[..at].lines().count() + 1), "{e}");
        };
        bad(
            block(&pki, "[]", ""),
            "listener[0].sni[0].names",
            "is empty",
        );
        bad(
            block(&pki, "[\"a.test\", \"\"]", ""),
            "listener[0].sni[0].names[1]",
            "is empty",
        );
        bad(
            block(&pki, "[\"*.*.test\"]", ""),
            "listener[0].sni[0].names[0]",
            "whole first label",
        );
        bad(
            block(&pki, "[\"10.0.0.1\"]", ""),
            "listener[0].sni[0].names[0]",
            "is an IP address",
        );
        bad(
            format!(
                "{}{}",
                block(&pki, "[\"a.test\"]", ""),
                block(&pki, "[\"b.test\", \"A.TEST\"]", "")
            ),
            "listener[0].sni[1].names[1]",
            "a.test is already listed by listener[0].sni[0]",
        );
    }

    #[test]
    fn blocks_need_tls_and_reject_needs_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::generate(dir.path()).unwrap();
        let text = listener(&pki, "", "[[listener.sni]]\nnames = [\"a.test\"]\n");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.key, "listener[0].sni[0].tls");
        assert!(e.reason.contains("add [listener.sni.tls]"), "{e}");

        let e = parse(&listener(&pki, "unknown_sni = \"reject\"", "")).unwrap_err();
        assert_eq!(e.key, "listener[0].unknown_sni");
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.reason.contains("would refuse every handshake"), "{e}");

        let e = parse(&listener(&pki, "unknown_sni = \"drop\"", "")).unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        assert!(
            e.reason.contains("default") && e.reason.contains("reject"),
            "{e}"
        );

        let plain = "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nupstream = \"app\"\n\
                     [[listener.sni]]\nnames = [\"a.test\"]\n\
                     [[upstream]]\nname = \"app\"\nservers = [\"127.0.0.1:2\"]\n";
        let e = parse(plain).unwrap_err();
        assert_eq!(e.key, "listener[0].sni");
        assert!(e.reason.contains("add [listener.tls]"), "{e}");

        let text = listener(
            &pki,
            "",
            &format!(
                "{}session_tickets = false\n",
                block(&pki, "[\"a.test\"]", "")
            ),
        );
        let e = parse(&text).unwrap_err();
        assert!(e.key.starts_with("listener[0].sni[0].tls"), "{e}");
        assert!(e.reason.contains("session_tickets"), "{e}");
    }
}
