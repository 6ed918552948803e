//! `certgate demo`: a throwaway PKI, a built-in echo upstream and a proxy configuration that
//! shows an admitted client, a client without certificate and a refused DN.

use std::net::SocketAddr;
use std::path::Path;

use certgate::config::Config;

use crate::pki;

/// What `prepare` made: the configuration to run, the text to print, and the temporary
/// directory holding the PKI and configuration, removed when this is dropped (after the proxy
/// stopped: the printed commands need the files while it runs).
pub struct Demo {
    pub config: Config,
    pub text: String,
    pub dir: tempfile::TempDir,
}

/// Writes the demo's files into a new temporary directory, starts the echo upstream and returns
/// the loaded configuration and the text to print.
pub fn prepare(listen: &str) -> Result<Demo, String> {
    let tmp = tempfile::Builder::new()
        .prefix("certgate-demo-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let dir = tmp.path().to_owned();
    let p = pki::generate(&dir).map_err(|e| format!("cannot generate the demo PKI: {e}"))?;
    let echo_addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    let echo = crate::echo::spawn(echo_addr)
        .map_err(|e| format!("cannot start the echo upstream: {e}"))?;
    let upstream = echo.addr;
    // The echo server runs for the life of the process.
    std::mem::forget(echo);

    let config_path = dir.join("certgate.toml");
    let text = format!(
        r#"# certgate demo configuration (generated)
[runtime]
workers = 0

[[listener]]
name = "demo"
listen = "{listen}"
upstream = "echo"

[listener.tls]
certificate = "server-chain.pem"
private_key = "server.key"

[listener.client_auth]
mode = "required"
ca = "client-ca-bundle.pem"
verify_depth = 2
# Both clients' subjects are allowed; only Intermediate 1's clients pass the issuer rule.
allow_subjects = ["{subject}", "{subject2}"]
allow_issuers = ["{issuer}"]

[[upstream]]
name = "echo"
servers = ["{upstream}"]
"#,
        subject = pki::dn::CLIENT1,
        subject2 = pki::dn::CLIENT2,
        issuer = pki::dn::INTERMEDIATE1_LEGACY,
    );
    std::fs::write(&config_path, text)
        .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    let config = Config::load(&config_path).map_err(|e| e.to_string())?;

    let port = config.listeners[0].addr.port();
    let d = |p: &Path| p.display().to_string();
    let base = format!(
        "curl --cacert {ca} --resolve localhost:{port}:127.0.0.1",
        ca = d(&p.server_ca)
    );
    let url = format!("https://localhost:{port}/hello");
    let out = format!(
        "certgate demo: files in {dir}\n\
         config: {config}\n\
         echo upstream on {upstream}, proxy on {listen}\n\n\
         # 1. an admitted client: 200, and the echo shows the identity headers it received\n\
         {base} --cert {c1} --key {k1} {url}\n\n\
         # 2. no client certificate: 400 \"No required SSL certificate was sent\"\n\
         {base} {url}\n\n\
         # 3. a verified client whose DN is not allowed (look-alike CN=client.1.local.evil.com): 403\n\
         {base} --cert {cl} --key {kl} {url}\n\n\
         # 4. a client whose subject is allowed but whose issuer (Intermediate 2) is not: 403\n\
         #    (certgate's log: \"issuer DN matched no allow_issuers rule\")\n\
         {base} --cert {c2} --key {k2} {url}\n\n\
         # 5. a forged identity header never reaches the upstream\n\
         {base} --cert {c1} --key {k1} -H 'X-SSL-Client-S-DN: CN=admin' {url}\n\n\
         Press Ctrl-C to stop (the directory is removed then).\n",
        dir = d(&dir),
        config = d(&config_path),
        c1 = d(&p.client1.cert),
        k1 = d(&p.client1.key),
        cl = d(&p.lookalike.cert),
        kl = d(&p.lookalike.key),
        c2 = d(&p.client2.cert),
        k2 = d(&p.client2.key),
    );
    Ok(Demo {
        config,
        text: out,
        dir: tmp,
    })
}
