//! An upstream's servers and how they are chosen, as configured: nginx `server` entries
//! (`host:port weight=3 backup max_fails=2 fail_timeout=10s`), the balance method, the number of
//! tries per request and the active health check.
//!
//! Host names are resolved here, once, at load: a name with several addresses gives one server
//! per address, as nginx does. Errors name the `servers` key and the line of the entry.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::file::UpstreamFile;
use super::{duration, ConfigError, Cx};

/// nginx's `max_fails` default.
pub const DEFAULT_MAX_FAILS: u32 = 1;
/// nginx's `fail_timeout` default.
pub const DEFAULT_FAIL_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per request, the first included (nginx `proxy_next_upstream_tries`, there unlimited).
pub const DEFAULT_TRIES: usize = 3;
/// Largest `weight`: weights are relative, and the consistent-hash ring grows with them.
pub const MAX_WEIGHT: u32 = 1000;

/// How a server is chosen for a request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Smooth weighted round robin, as nginx's default.
    #[default]
    RoundRobin,
    /// Fewest active requests on this worker relative to the weight (nginx `least_conn`).
    LeastConn,
    /// Sticky by client certificate fingerprint on a consistent-hash ring (nginx
    /// `hash $ssl_client_fingerprint consistent`); without a certificate, by client address.
    ClientHash,
}

/// `[upstream.health]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthFile {
    /// Request target of the check, `GET <path> HTTP/1.1`.
    pub path: Option<Spanned<String>>,
    /// Time between the starts of two checks of one server.
    pub interval: Option<Spanned<String>>,
    /// The whole check (connect, request, status line) must finish within this.
    pub timeout: Option<Spanned<String>>,
    /// Consecutive failed checks that mark a server down.
    pub fails: Option<Spanned<u32>>,
    /// Consecutive passed checks that mark a down server up again.
    pub passes: Option<Spanned<u32>>,
}

/// One server of an upstream, resolved.
#[derive(Debug, Clone)]
pub struct Server {
    /// The address connected to (a host name resolves at load to one `Server` per address).
    pub addr: SocketAddr,
    /// `host:port` as written in the entry (the `Host` of health checks, for logs).
    pub name: String,
    /// Relative share of requests under weighted balancing (nginx `weight`, default 1).
    pub weight: u32,
    /// Used only when no primary server is available.
    pub backup: bool,
    /// Never used (nginx `down`): taken out of rotation by configuration.
    pub down: bool,
    /// Failures within `fail_timeout` that mark the server down; 0 disables the accounting.
    pub max_fails: u32,
    /// Window in which `max_fails` failures are counted, and how long the server then stays down
    /// (nginx `fail_timeout`).
    pub fail_timeout: Duration,
}

impl Server {
    /// The host name the entry was written with, when it is a name rather than an address: the
    /// default SNI and verified name for upstream TLS.
    pub fn host_name(&self) -> Option<&str> {
        let host = self
            .name
            .rsplit_once(':')
            .map_or(self.name.as_str(), |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<std::net::IpAddr>() {
            Ok(_) => None,
            Err(_) if host.is_empty() => None,
            Err(_) => Some(host),
        }
    }
}

/// Active health checks of an upstream's servers, validated.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// Request path of the `GET` check; a 2xx or 3xx status passes.
    pub path: String,
    /// Time between the start of two checks of one server.
    pub interval: Duration,
    /// Time a check may take, connect to status line, before it counts as failed.
    pub timeout: Duration,
    /// Consecutive failed checks that mark a server down.
    pub fails: u32,
    /// Consecutive passed checks that mark a down server up again.
    pub passes: u32,
}

impl Default for HealthCheck {
    /// nginx Plus `health_check` defaults: `uri=/ interval=5 fails=1 passes=1`.
    fn default() -> Self {
        Self {
            path: "/".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            fails: 1,
            passes: 1,
        }
    }
}

impl Cx<'_> {
    /// Parses and resolves every `servers` entry of `upstream[i]`.
    pub(super) fn servers(&self, i: usize, u: &UpstreamFile) -> Result<Vec<Server>, ConfigError> {
        let key = format!("upstream[{i}].servers");
        let mut servers = Vec::new();
        for entry in u.servers.get_ref() {
            let parsed = parse_entry(entry.get_ref(), |host| {
                host.to_socket_addrs().map(|it| it.collect())
            })
            .map_err(|r| self.err(Some(entry), &key, &r))?;
            servers.extend(parsed);
        }
        if servers.is_empty() {
            return Err(self.err(Some(&u.servers), &key, "needs at least one server"));
        }
        if servers.iter().all(|s| s.backup) {
            return Err(self.err(
                Some(&u.servers),
                &key,
                "needs at least one server that is not a backup",
            ));
        }
        Ok(servers)
    }

    /// `tries` of `upstream[i]`.
    pub(super) fn tries(&self, i: usize, u: &UpstreamFile) -> Result<usize, ConfigError> {
        match &u.tries {
            None => Ok(DEFAULT_TRIES),
            Some(t) if *t.get_ref() == 0 => Err(self.err(
                Some(t),
                &format!("upstream[{i}].tries"),
                "must be at least 1 (the first attempt counts)",
            )),
            Some(t) => Ok(*t.get_ref()),
        }
    }

    /// `[upstream.health]` of `upstream[i]`, if present.
    pub(super) fn health_check(
        &self,
        i: usize,
        u: &UpstreamFile,
    ) -> Result<Option<HealthCheck>, ConfigError> {
        let Some(h) = &u.health else {
            return Ok(None);
        };
        let key = |k: &str| format!("upstream[{i}].health.{k}");
        let d = HealthCheck::default();
        let path = match &h.path {
            None => d.path,
            Some(p) => {
                check_path(p.get_ref()).map_err(|r| self.err(Some(p), &key("path"), &r))?;
                p.get_ref().clone()
            }
        };
        let interval = self.timeout(
            &h.interval,
            &key("interval"),
            d.interval,
            super::MAX_IO_TIMEOUT,
        )?;
        let timeout = self.timeout(
            &h.timeout,
            &key("timeout"),
            d.timeout,
            super::MAX_IO_TIMEOUT,
        )?;
        if timeout > interval {
            self.warn(
                &key("timeout"),
                &format!(
                    "{} is longer than interval {}: a slow server is checked again before \
                     the previous check gave up",
                    duration::show(timeout),
                    duration::show(interval)
                ),
            );
        }
        let count = |v: &Option<Spanned<u32>>, k: &str, default: u32| match v {
            None => Ok(default),
            Some(n) if *n.get_ref() == 0 => Err(self.err(Some(n), &key(k), "must be at least 1")),
            Some(n) => Ok(*n.get_ref()),
        };
        Ok(Some(HealthCheck {
            path,
            interval,
            timeout,
            fails: count(&h.fails, "fails", d.fails)?,
            passes: count(&h.passes, "passes", d.passes)?,
        }))
    }
}

/// A health-check path goes into a request line verbatim: an origin-form target without
/// whitespace or control characters.
fn check_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} must start with /"));
    }
    if let Some(c) = p.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "{p:?} contains {c:?}; write it percent-encoded (no spaces or control characters)"
        ));
    }
    Ok(())
}

/// Parses `host:port [weight=N] [max_fails=N] [fail_timeout=T] [backup] [down]`; `resolve`
/// turns `host:port` into addresses (a parameter so tests need no DNS).
fn parse_entry(
    entry: &str,
    resolve: impl Fn(&str) -> std::io::Result<Vec<SocketAddr>>,
) -> Result<Vec<Server>, String> {
    let mut words = entry.split_whitespace();
    let Some(target) = words.next() else {
        return Err("an empty server entry".into());
    };
    let mut weight = None;
    let mut max_fails = None;
    let mut fail_timeout = None;
    let mut backup = false;
    let mut down = false;
    for word in words {
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (word, None),
        };
        let once = |seen: bool| {
            if seen {
                Err(format!("{target}: {name} is given twice"))
            } else {
                Ok(())
            }
        };
        match (name, value) {
            ("weight", Some(v)) => {
                once(weight.is_some())?;
                weight = Some(match v.parse::<u32>() {
                    Ok(n) if (1..=MAX_WEIGHT).contains(&n) => n,
                    _ => {
                        return Err(format!(
                            "{target}: weight={v} is not a number from 1 to {MAX_WEIGHT}"
                        ))
                    }
                });
            }
            ("max_fails", Some(v)) => {
                once(max_fails.is_some())?;
                max_fails = Some(v.parse::<u32>().map_err(|_| {
                    format!("{target}: max_fails={v} is not a number (0 disables)")
                })?);
            }
            ("fail_timeout", Some(v)) => {
                once(fail_timeout.is_some())?;
                let t = duration::parse(v).map_err(|r| format!("{target}: fail_timeout: {r}"))?;
                if t.is_zero() {
                    return Err(format!(
                        "{target}: fail_timeout=0 would take a failed server out for no time; \
                         write max_fails=0 to turn the passive accounting off"
                    ));
                }
                if t > super::MAX_IO_TIMEOUT {
                    return Err(format!(
                        "{target}: fail_timeout={v} is longer than the most allowed, \"1d\""
                    ));
                }
                fail_timeout = Some(t);
            }
            ("backup", None) => {
                once(backup)?;
                backup = true;
            }
            ("down", None) => {
                once(down)?;
                down = true;
            }
            ("weight" | "max_fails" | "fail_timeout", None) => {
                return Err(format!("{target}: {name} needs a value ({name}=...)"))
            }
            ("backup" | "down", Some(_)) => return Err(format!("{target}: {name} takes no value")),
            _ => {
                return Err(format!(
                    "{target}: unknown parameter {word:?} (expected weight=N, max_fails=N, \
                     fail_timeout=T, backup or down)"
                ))
            }
        }
    }
    let addrs = match target.parse::<SocketAddr>() {
        Ok(a) => vec![a],
        Err(_) => {
            let mut addrs =
                resolve(target).map_err(|e| format!("{target:?} is not a host:port ({e})"))?;
            let mut seen = std::collections::HashSet::new();
            addrs.retain(|a| seen.insert(*a));
            addrs
        }
    };
    if addrs.is_empty() {
        return Err(format!("{target:?} resolves to no address"));
    }
    Ok(addrs
        .into_iter()
        .map(|addr| Server {
            addr,
            name: target.to_owned(),
            weight: weight.unwrap_or(1),
            backup,
            down,
            max_fails: max_fails.unwrap_or(DEFAULT_MAX_FAILS),
            fail_timeout: fail_timeout.unwrap_or(DEFAULT_FAIL_TIMEOUT),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_dns(host: &str) -> std::io::Result<Vec<SocketAddr>> {
        Err(std::io::Error::other(format!("no DNS in tests ({host})")))
    }

    #[test]
    fn defaults_are_nginx_defaults() {
        let s = parse_entry("127.0.0.1:8888", no_dns).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].addr, "127.0.0.1:8888".parse().unwrap());
        assert_eq!(s[0].name, "127.0.0.1:8888");
        assert_eq!(s[0].weight, 1);
        assert_eq!(s[0].max_fails, 1);
        assert_eq!(s[0].fail_timeout, Duration::from_secs(10));
        assert!(!s[0].backup && !s[0].down);
    }

    #[test]
    fn parameters() {
        let s = parse_entry(
            "[::1]:80  weight=3 max_fails=0 fail_timeout=1m30s backup",
            no_dns,
        )
        .unwrap();
        assert_eq!(s[0].addr, "[::1]:80".parse().unwrap());
        assert_eq!((s[0].weight, s[0].max_fails, s[0].backup), (3, 0, true));
        assert_eq!(s[0].fail_timeout, Duration::from_secs(90));
        assert!(parse_entry("127.0.0.1:1 down", no_dns).unwrap()[0].down);
    }

    #[test]
    fn bad_parameters_are_named() {
        for (entry, want) in [
            ("127.0.0.1:1 weight=0", "weight=0"),
            ("127.0.0.1:1 weight=x", "weight=x"),
            ("127.0.0.1:1 weight=1001", "weight=1001"),
            ("127.0.0.1:1 weight", "needs a value"),
            ("127.0.0.1:1 weight=2 weight=3", "twice"),
            ("127.0.0.1:1 backup=yes", "takes no value"),
            ("127.0.0.1:1 max_fails=-1", "max_fails=-1"),
            ("127.0.0.1:1 fail_timeout=10x", "fail_timeout"),
            ("127.0.0.1:1 fail_timeout=0s", "max_fails=0"),
            ("127.0.0.1:1 fail_timeout=2d", "most allowed"),
            (
                "127.0.0.1:1 slow_start=30s",
                "unknown parameter \"slow_start=30s\"",
            ),
            ("", "empty"),
            ("nowhere.invalid:80", "not a host:port"),
        ] {
            let e = parse_entry(entry, no_dns).unwrap_err();
            assert!(e.contains(want), "{entry:?}: {e}");
        }
    }

    #[test]
    fn a_name_with_several_addresses_gives_several_servers() {
        let resolve = |host: &str| {
            assert_eq!(host, "app.internal:8080");
            Ok(vec![
                "10.0.0.1:8080".parse().unwrap(),
                "10.0.0.2:8080".parse().unwrap(),
                "10.0.0.1:8080".parse().unwrap(),
            ])
        };
        let s = parse_entry("app.internal:8080 weight=2", resolve).unwrap();
        let addrs: Vec<String> = s.iter().map(|s| s.addr.to_string()).collect();
        assert_eq!(addrs, ["10.0.0.1:8080", "10.0.0.2:8080"]);
        assert!(s
            .iter()
            .all(|s| s.weight == 2 && s.name == "app.internal:8080"));
        assert!(parse_entry("empty.internal:1", |_| Ok(vec![]))
            .unwrap_err()
            .contains("no address"));
    }

    fn parse(upstream: &str) -> Result<crate::config::Config, ConfigError> {
        let text = format!(
            "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nupstream = \"app\"\n\n[[upstream]]\nname = \"app\"\n{upstream}"
        );
        crate::config::Config::parse(std::path::Path::new("/nonexistent/certgate.toml"), &text)
    }

    #[test]
    fn a_full_upstream_loads() {
        let c = parse(
            "servers = [\"127.0.0.1:1 weight=3\", \"127.0.0.1:2 backup max_fails=2\"]\n\
             balance = \"client_hash\"\ntries = 5\n\
             [upstream.health]\npath = \"/healthz\"\ninterval = \"200ms\"\nfails = 2\n",
        )
        .unwrap();
        let u = &c.upstreams[0];
        assert_eq!(u.balance, Balance::ClientHash);
        assert_eq!(u.tries, 5);
        assert_eq!(u.servers.len(), 2);
        assert_eq!(u.health.len(), 2);
        assert_eq!((u.servers[0].weight, u.servers[0].backup), (3, false));
        assert_eq!((u.servers[1].max_fails, u.servers[1].backup), (2, true));
        let h = u.health_check.as_ref().unwrap();
        assert_eq!(h.path, "/healthz");
        assert_eq!(h.interval, Duration::from_millis(200));
        assert_eq!(
            (h.timeout, h.fails, h.passes),
            (Duration::from_secs(1), 2, 1)
        );
        let c = parse("servers = [\"127.0.0.1:1\"]\n").unwrap();
        let u = &c.upstreams[0];
        assert_eq!((u.balance, u.tries), (Balance::RoundRobin, DEFAULT_TRIES));
        assert!(u.health_check.is_none());
    }

    #[test]
    fn errors_name_the_key_and_the_entry_line() {
        let e =
            parse("servers = [\n  \"127.0.0.1:1\",\n  \"127.0.0.1:2 weight=0\",\n]\n").unwrap_err();
        assert_eq!(e.key, "upstream[0].servers");
        assert_eq!(e.line, Some(10), "{e}");
        assert!(e.reason.contains("weight=0"), "{e}");
        let e = parse("servers = [\"127.0.0.1:1 backup\"]\n").unwrap_err();
        assert!(e.reason.contains("not a backup"), "{e}");
        let e = parse("servers = []\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("upstream[0].servers", Some(8)));
        let e = parse("servers = [\"127.0.0.1:1\"]\nbalance = \"ip_hash\"\n").unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.line),
            ("upstream[0].balance", Some(9)),
            "{e}"
        );
        assert!(e.reason.contains("unknown value \"ip_hash\""), "{e}");
        let e = parse("servers = [\"127.0.0.1:1\"]\n[upstream.health]\ninterval = \"2d\"\n")
            .unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.line),
            ("upstream[0].health.interval", Some(10))
        );
        let c = parse(
            "servers = [\"127.0.0.1:1\"]\n[upstream.health]\ninterval = \"1s\"\ntimeout = \"2s\"\n",
        )
        .unwrap();
        assert!(
            c.warnings[0].contains(":11: upstream[0].health.timeout: "),
            "{:?}",
            c.warnings
        );
        let e = parse("servers = [\"127.0.0.1:1\"]\n[upstream.health]\ntimeout = \"0s\"\n")
            .unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.line),
            ("upstream[0].health.timeout", Some(10))
        );
    }

    #[test]
    fn health_paths() {
        assert!(check_path("/healthz?full=1").is_ok());
        assert!(check_path("healthz").is_err());
        assert!(check_path("/a b").is_err());
        assert!(check_path("/a\r\nX-Injected: 1").is_err());
    }
}
