//! Every ```toml block of README.md passes `certgate check`.
//!
//! Each block is written as `certgate.toml` in a directory of its own, with every file it
//! names created at the relative path it names, from a freshly generated PKI: the listener's
//! `certificate`/`private_key` get the server chain and key, `client_auth.ca` the client CA
//! bundle, an upstream's `certificate`/`private_key`/`bundle` a client certificate and key, its
//! `ca` the server CA, and `session_ticket_keys` 80-byte nginx ticket key files. Nothing else in
//! the block is changed.
//!
//! A block that shows only part of a configuration (no `[[listener]]`) is completed with a
//! listener, and an upstream when it has none, appended after it; a `[listener.*]` table must
//! then still come after a `[[listener]]` in the block, as it must in a real file.

mod common;

use std::path::Path;

use common::*;
use toml::{Table, Value};

/// The ```toml blocks of `markdown`, each with the README line its first TOML line is on.
fn toml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        match &mut current {
            None if line.trim_start().starts_with("```toml") => {
                current = Some((i + 2, String::new()))
            }
            None => {}
            Some(_) if line.trim_start().starts_with("```") => blocks.extend(current.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    assert!(
        current.is_none(),
        "README.md: a ```toml block is not closed"
    );
    blocks
}

/// What a path-valued key must hold.
#[derive(Clone, Copy, Debug)]
enum Content {
    ServerChain,
    ServerKey,
    ClientCa,
    ClientCert,
    ClientKey,
    ClientBundle,
    ServerCa,
    TicketKey,
}

/// Every (relative path, content) the configuration `t` names.
fn referenced_files(t: &Table) -> Vec<(String, Content)> {
    let mut files = Vec::new();
    let mut add = |v: Option<&Value>, content: Content| match v {
        Some(Value::String(s)) => files.push((s.clone(), content)),
        Some(Value::Array(a)) => {
            for s in a.iter().filter_map(Value::as_str) {
                files.push((s.to_owned(), content));
            }
        }
        _ => {}
    };
    let tables = |section: &str| -> Vec<Table> {
        match t.get(section) {
            Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_table().cloned()).collect(),
            _ => Vec::new(),
        }
    };
    let sub = |t: &Table, name: &str| t.get(name).and_then(Value::as_table).cloned();
    for l in tables("listener") {
        if let Some(tls) = sub(&l, "tls") {
            add(tls.get("certificate"), Content::ServerChain);
            add(tls.get("private_key"), Content::ServerKey);
            add(tls.get("session_ticket_keys"), Content::TicketKey);
        }
        if let Some(auth) = sub(&l, "client_auth") {
            add(auth.get("ca"), Content::ClientCa);
        }
        let blocks = l.get("sni").and_then(Value::as_array).cloned();
        for b in blocks.iter().flatten().filter_map(Value::as_table) {
            if let Some(tls) = sub(b, "tls") {
                add(tls.get("certificate"), Content::ServerChain);
                add(tls.get("private_key"), Content::ServerKey);
            }
            if let Some(auth) = sub(b, "client_auth") {
                add(auth.get("ca"), Content::ClientCa);
            }
        }
    }
    for u in tables("upstream") {
        if let Some(tls) = sub(&u, "tls") {
            add(tls.get("ca"), Content::ServerCa);
            add(tls.get("certificate"), Content::ClientCert);
            add(tls.get("private_key"), Content::ClientKey);
            add(tls.get("bundle"), Content::ClientBundle);
        }
    }
    files
}

fn bytes_for(pki: &Pki, content: Content) -> Vec<u8> {
    let read = |p: &Path| std::fs::read(p).expect("read PKI file");
    match content {
        Content::ServerChain => read(&pki.server.cert),
        Content::ServerKey => read(&pki.server.key),
        Content::ClientCa => read(&pki.client_ca_bundle),
        Content::ClientCert => read(&pki.client1.cert),
        Content::ClientKey => read(&pki.client1.key),
        Content::ClientBundle => [read(&pki.client1.cert), read(&pki.client1.key)].concat(),
        Content::ServerCa => read(&pki.server_ca),
        Content::TicketKey => noise(80, 7),
    }
}

/// `block` with a listener (and an upstream) appended when it has none.
fn completed(block: &str, parsed: &Table) -> String {
    if parsed.contains_key("listener") {
        return block.to_owned();
    }
    let upstream = parsed
        .get("upstream")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(|u| u.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut text = block.to_owned();
    let name = upstream.clone().unwrap_or_else(|| "readme".into());
    text.push_str(&format!(
        "\n[[listener]]\nname = \"readme\"\nlisten = \"127.0.0.1:{}\"\nupstream = {}\n",
        free_port(),
        toml_str(&name)
    ));
    if upstream.is_none() {
        text.push_str("\n[[upstream]]\nname = \"readme\"\nservers = [\"127.0.0.1:9\"]\n");
    }
    text
}

#[test]
fn every_toml_example_in_the_readme_passes_check() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("read README.md");
    let blocks = toml_blocks(&readme);
    assert!(!blocks.is_empty(), "README.md has no ```toml block");
    let env = Env::new();
    let mut failures = Vec::new();
    for (n, (line, block)) in blocks.iter().enumerate() {
        let parsed: Table = match block.parse() {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("README.md:{line}: not valid TOML: {e}"));
                continue;
            }
        };
        let dir = env.path(&format!("block-{n}"));
        for (rel, content) in referenced_files(&parsed) {
            assert!(
                Path::new(&rel).is_relative(),
                "README.md:{line}: {rel:?}: examples should use relative paths"
            );
            let path = dir.join(&rel);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&path, bytes_for(&env.pki, content)).expect("write");
        }
        std::fs::create_dir_all(&dir).expect("mkdir");
        let config = dir.join("certgate.toml");
        std::fs::write(&config, completed(block, &parsed)).expect("write config");
        let out = env.check(&config);
        if !out.status.success() {
            failures.push(format!(
                "README.md:{line}: the example starting here fails check:\n{}",
                out.all()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn blocks_are_found_with_their_lines() {
    let md = "text\n```toml\na = 1\n```\n```sh\nx\n```\n```toml\n[b]\n```\n";
    let blocks = toml_blocks(md);
    assert_eq!(blocks, [(3, "a = 1\n".into()), (9, "[b]\n".into())]);
}
