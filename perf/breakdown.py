#!/usr/bin/env python3
"""perf/breakdown.py FILE N — where one server handshake's instructions go.

FILE is a callgrind file of a `server-*` workload of examples/ci_workloads.rs (scripts/bench-ci.sh
leaves them in target/bench-ci/), N its iterations. Prints a Markdown table of the inclusive
instruction counts per handshake of the main parts (from `callgrind_annotate --inclusive=yes`).
In a resumption the certificates are parsed while the ticket is opened: those two rows overlap.

    scripts/bench-ci.sh && perf/breakdown.py target/bench-ci/server-returning.callgrind 100
"""
import re, subprocess, sys
f, n = sys.argv[1], int(sys.argv[2])
out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", f],
                     capture_output=True, text=True).stdout
incl = {}
total = None
for line in out.splitlines():
    m = re.match(r"\s*([\d,]+) \([ \d.%]+\)\s+(.*)", line)
    if not m:
        continue
    v = int(m.group(1).replace(",", ""))
    name = m.group(2)
    if "PROGRAM TOTALS" in name:
        total = v
        continue
    fn = name.split(":", 1)[1] if ":" in name else name
    fn = re.sub(r" \[.*\]$", "", fn).strip()
    incl[fn] = max(incl.get(fn, 0), v)
def get(pat):
    return max((v for k, v in incl.items() if re.search(pat, k)), default=0)
parts = [
    ("total (server side)", total or 0),
    ("ECDSA P-256 sign (server CertificateVerify)", get(r"^ECDSA_sign$")),
    ("ECDSA P-256 verify (client CertificateVerify)", get(r"tls13_process_certificate_verify")),
    ("X25519 key share (keypair + agreement)", get(r"X25519KeyShare::Encap")),
    ("client chain verification (X509 verify or cache)", get(r"bssl::ssl_verify_peer_cert")),
    ("  of which certgate verify cache (hash of the chain)", get(r"VerifiedChains::verify$")),
    ("client certificates parsed into X509", get(r"ssl_crypto_x509_session_cache_objects")),
    ("ticket issuance (session copy, seal)", get(r"add_new_session_tickets")),
    ("ticket decryption + session parse (resumption)", get(r"ssl_process_ticket|tls_decrypt_ticket|ssl_decrypt_ticket")),
    ("key schedule HKDF (expand-label + extract)", get(r"^bssl::hkdf_expand_label") + get(r"^HKDF_extract$")),
    ("transcript hashing", get(r"SSLTranscript::Update")),
    ("SSL_new", get(r"^SSL_new$")),
    ("SSL_free", get(r"^SSL_free$")),
    ("malloc + free (libc)", get(r"^malloc$") + get(r"^free$")),
]
print(f"| part | instructions per handshake | share |")
print("|---|---:|---:|")
for label, v in parts:
    print(f"| {label} | {v // n:,} | {100.0 * v / total:.1f} % |")
