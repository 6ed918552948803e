//! Per-request head cost: parsing a browser-like request head, and parsing plus rewriting it into
//! the upstream head (two forged identity headers stripped, nine identity headers added), plus the
//! upstream response head parse and rewrite.

use std::hint::black_box;

use certgate::http::{
    parse_request, parse_response, rewrite_request, rewrite_response, Limits, RewriteCtx, StripSet,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const REQUEST: &[u8] = b"GET /api/v1/orders?page=2&sort=desc HTTP/1.1\r\n\
Host: app.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.9\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Cookie: session=4f1c2a9e7b3d4c5e8f9a0b1c2d3e4f5a; theme=dark; _ga=GA1.2.123456789.1700000000\r\n\
Referer: https://app.example.com/orders\r\n\
Connection: keep-alive\r\n\
X-SSL-Client-Verify: SUCCESS\r\n\
X-Forwarded-For: 203.0.113.9\r\n\
Sec-Fetch-Mode: navigate\r\n\
\r\n";

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n\
Content-Type: application/json; charset=utf-8\r\n\
Content-Length: 1234\r\n\
Cache-Control: no-store\r\n\
Connection: keep-alive\r\n\
Keep-Alive: timeout=5\r\n\
Vary: Accept-Encoding\r\n\
X-Request-Id: 7d6f3c2a-1b4e-4f5a-9c8d-0e1f2a3b4c5d\r\n\
\r\n";

const IDENTITY: &[&str] = &[
    "X-SSL-Client-Verify",
    "X-SSL-Client-S-DN",
    "X-SSL-Client-S-DN-Legacy",
    "X-SSL-Client-I-DN",
    "X-SSL-Client-Serial",
    "X-SSL-Client-Fingerprint",
    "X-SSL-Client-SAN",
    "X-SSL-Client-Not-After",
    "X-SSL-Client-Cert",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Real-IP",
];

const ADD: &[(&str, &[u8])] = &[
    ("X-SSL-Client-Verify", b"SUCCESS"),
    (
        "X-SSL-Client-S-DN",
        b"CN=alice,OU=Engineering,O=Example Corp,C=GB",
    ),
    (
        "X-SSL-Client-I-DN",
        b"CN=Example Issuing CA,O=Example Corp,C=GB",
    ),
    ("X-SSL-Client-Serial", b"4A3F9C0D12E5B7A8"),
    (
        "X-SSL-Client-Fingerprint",
        b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    ),
    (
        "X-SSL-Client-SAN",
        b"DNS:alice.example.com,email:alice@example.com",
    ),
    ("X-SSL-Client-Not-After", b"Dec 31 23:59:59 2026 GMT"),
    ("X-Forwarded-For", b"203.0.113.9"),
    ("X-Forwarded-Proto", b"https"),
];

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let strip = StripSet::new(IDENTITY);
    let ctx = RewriteCtx {
        strip: &strip,
        add: ADD,
    };

    let mut group = c.benchmark_group("head");
    group.throughput(Throughput::Bytes(REQUEST.len() as u64));
    group.bench_function("parse_request", |b| {
        b.iter(|| parse_request(black_box(REQUEST), &limits))
    });
    // Baseline: httparse alone, to show what the validation and offsets add on top.
    group.bench_function("httparse_baseline", |b| {
        b.iter(|| {
            let mut hs = [httparse::EMPTY_HEADER; 100];
            let mut req = httparse::Request::new(&mut hs);
            black_box(req.parse(black_box(REQUEST)).is_ok())
        })
    });
    let mut out = Vec::with_capacity(2048);
    group.bench_function("parse_and_rewrite_request", |b| {
        b.iter(|| {
            out.clear();
            if let Ok(Some(head)) = parse_request(black_box(REQUEST), &limits) {
                rewrite_request(&head, REQUEST, &ctx, &mut out);
            }
            black_box(out.len())
        })
    });
    group.throughput(Throughput::Bytes(RESPONSE.len() as u64));
    group.bench_function("parse_and_rewrite_response", |b| {
        b.iter(|| {
            out.clear();
            if let Ok(Some(head)) = parse_response(black_box(RESPONSE), false, &limits) {
                rewrite_response(&head, RESPONSE, &mut out, true, &[]);
            }
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
