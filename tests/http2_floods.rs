//! HTTP/2 denial of service: each known flood, driven with raw frames against the real binary.
//! Every test asserts two things: the abusive connection is cut off (or held to a bound), and
//! the proxy still serves a well-behaved client promptly afterwards.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use boring::ssl::SslStream;
use common::h2raw::*;
use common::*;

type Raw = H2Raw<SslStream<TcpStream>>;

fn client(gate: &Gate) -> Raw {
    let mut c = H2Raw::tls(
        gate.addr(),
        &gate.pki().server_ca,
        Some(&gate.pki().client1),
    )
    .unwrap_or_else(|e| panic!("h2 connect: {e}"));
    c.start(&[]).expect("preface");
    c
}

/// A well-behaved h2 request still gets its 200, quickly.
fn assert_serves(gate: &Gate) {
    let started = Instant::now();
    let mut c = client(gate);
    c.send_frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &get_block("localhost", "/after"),
    )
    .expect("request");
    let f = c
        .read_until(|f| f.kind == HEADERS && f.stream == 1)
        .expect("read")
        .expect("a response");
    assert_eq!(f.status(), Some(200), "{f:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a normal request took {:?} after the flood",
        started.elapsed()
    );
}

/// Reads until GOAWAY or the end of the connection, within `limit`; the GOAWAY, if any.
fn goaway_or_close(c: &mut Raw, limit: Duration) -> Option<Frame> {
    c.tcp().set_read_timeout(Some(limit)).unwrap();
    let deadline = Instant::now() + limit;
    loop {
        assert!(
            Instant::now() < deadline,
            "the connection was neither closed nor sent GOAWAY"
        );
        match c.read_frame() {
            Ok(Some(f)) if f.kind == GOAWAY => return Some(f),
            Ok(Some(_)) => continue,
            Ok(None) => return None,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("the connection was neither closed nor sent GOAWAY within {limit:?}")
            }
            Err(_) => return None,
        }
    }
}

/// CVE-2023-44487: streams opened and reset at once, back to back. The connection is closed
/// with ENHANCE_YOUR_CALM long before the client runs out of streams, and the upstream sees
/// only a bounded share of them.
#[test]
fn rapid_reset_is_cut_off() {
    let gate = Gate::start(Config::new());
    let mut c = client(&gate);
    let mut burst = Vec::new();
    let mut sent = 0u32;
    let mut write_failed = false;
    for i in 0..5_000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &get_block("localhost", "/slow/200"),
        ));
        burst.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
        if burst.len() > 8 * 1024 {
            if c.send(&burst).is_err() {
                write_failed = true;
                break;
            }
            sent = i + 1;
            burst.clear();
        }
    }
    if !write_failed {
        let _ = c.send(&burst);
    }
    let goaway = goaway_or_close(&mut c, Duration::from_secs(10));
    if let Some(g) = &goaway {
        assert_eq!(g.error_code(), Some(ENHANCE_YOUR_CALM), "{g:?}");
    }
    // Let whatever did reach the upstream finish.
    std::thread::sleep(Duration::from_millis(600));
    let reached = gate.echo().requests();
    assert!(
        reached < 300,
        "{reached} of {sent}+ reset streams reached the upstream"
    );
    assert_serves(&gate);
}

/// The same attack paced one stream at a time, so that each stream is accepted before its
/// reset arrives: streams the client cancels before their response are counted, and a
/// connection made mostly of them is closed.
#[test]
fn paced_rapid_reset_is_cut_off() {
    let gate = Gate::start(Config::new());
    let mut c = client(&gate);
    let started = Instant::now();
    let mut closed = false;
    for i in 0..2_000u32 {
        let id = 2 * i + 1;
        let mut pair = frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &get_block("localhost", "/slow/500"),
        );
        if c.send(&pair).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
        pair = frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes());
        if c.send(&pair).is_err() {
            closed = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    if !closed {
        let goaway = goaway_or_close(&mut c, Duration::from_secs(10));
        if let Some(g) = &goaway {
            assert_eq!(g.error_code(), Some(ENHANCE_YOUR_CALM), "{g:?}");
        }
    }
    assert_serves(&gate);
}

/// CONTINUATION flood (2024): a header block that never ends. The connection is closed once the
/// block passes the header list limit; the proxy does not buffer it.
#[test]
fn continuation_flood_is_cut_off() {
    let gate = Gate::start(Config::new());
    let rss_before = gate.status_kib("VmRSS");
    let mut c = client(&gate);
    c.send_frame(HEADERS, 0, 1, &get_block("localhost", "/"))
        .unwrap();
    let mut field = Vec::new();
    literal(&mut field, b"x-flood", &[b'a'; 4000]);
    let cont = frame(CONTINUATION, 0, 1, &field);
    let mut sent = 0usize;
    let mut closed_early = false;
    for _ in 0..25_000 {
        if c.send(&cont).is_err() {
            closed_early = true;
            break;
        }
        sent += cont.len();
    }
    // 100 MB is more than any header limit: the server must have stopped reading long before.
    assert!(
        closed_early,
        "the server accepted {sent} bytes of CONTINUATION frames"
    );
    let grew = gate.status_kib("VmRSS").saturating_sub(rss_before);
    assert!(grew < 32 * 1024, "RSS grew by {grew} KiB during the flood");
    assert_serves(&gate);
}

/// CONTINUATION flood made of empty frames: no bytes of headers, only frames.
#[test]
fn empty_continuation_frames_are_cut_off() {
    let gate = Gate::start(Config::new());
    let mut c = client(&gate);
    c.send_frame(HEADERS, 0, 1, &get_block("localhost", "/"))
        .unwrap();
    let burst: Vec<u8> = (0..1000)
        .flat_map(|_| frame(CONTINUATION, 0, 1, &[]))
        .collect();
    let mut closed_early = false;
    for _ in 0..1_000 {
        if c.send(&burst).is_err() {
            closed_early = true;
            break;
        }
    }
    if !closed_early {
        goaway_or_close(&mut c, Duration::from_secs(10));
    }
    assert_serves(&gate);
}

/// Sends `unit` repeatedly without reading anything back, for at most `limit` or `count`
/// sends; returns how many bytes went out. A write that times out means the server stopped
/// reading (backpressure), which is a correct answer to a flood.
fn flood_without_reading(c: &mut Raw, unit: &[u8], count: usize, limit: Duration) -> usize {
    c.tcp()
        .set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let started = Instant::now();
    let mut sent = 0;
    for _ in 0..count {
        if c.send(unit).is_err() || started.elapsed() > limit {
            break;
        }
        sent += unit.len();
    }
    sent
}

/// SETTINGS flood: each SETTINGS wants an ACK; a client that never reads must not make the
/// proxy queue ACKs without bound.
#[test]
fn settings_flood_is_bounded() {
    let gate = Gate::start(Config::new());
    let rss_before = gate.status_kib("VmRSS");
    let mut c = client(&gate);
    let unit: Vec<u8> = (0..500)
        .flat_map(|_| settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 65535)]))
        .collect();
    let sent = flood_without_reading(&mut c, &unit, 20_000, Duration::from_secs(15));
    let grew = gate.status_kib("VmRSS").saturating_sub(rss_before);
    assert!(
        grew < 32 * 1024,
        "RSS grew by {grew} KiB after {sent} bytes of SETTINGS"
    );
    assert_serves(&gate);
}

/// PING flood: each PING wants a PONG; a client that never reads must not make the proxy queue
/// them without bound.
#[test]
fn ping_flood_is_bounded() {
    let gate = Gate::start(Config::new());
    let rss_before = gate.status_kib("VmRSS");
    let mut c = client(&gate);
    let unit: Vec<u8> = (0..500u64)
        .flat_map(|i| frame(PING, 0, 0, &i.to_be_bytes()))
        .collect();
    let sent = flood_without_reading(&mut c, &unit, 20_000, Duration::from_secs(15));
    let grew = gate.status_kib("VmRSS").saturating_sub(rss_before);
    assert!(
        grew < 32 * 1024,
        "RSS grew by {grew} KiB after {sent} bytes of PING"
    );
    assert_serves(&gate);
}

/// A client that never opens its flow-control window for a large response: the stream ends
/// under the body timeout, and the proxy does not read the whole upstream body into memory.
#[test]
fn zero_window_stall_ends_under_the_body_timeout() {
    let gate = Gate::start(Config::new().timeout("body_idle", "2s"));
    let rss_before = gate.status_kib("VmRSS");
    let mut c = H2Raw::tls(
        gate.addr(),
        &gate.pki().server_ca,
        Some(&gate.pki().client1),
    )
    .unwrap();
    c.start(&[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]).unwrap();
    let started = Instant::now();
    c.send_frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &get_block("localhost", "/bytes/50000000"),
    )
    .unwrap();
    c.tcp()
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let end = c
        .read_until(|f| (f.kind == RST_STREAM && f.stream == 1) || f.kind == GOAWAY)
        .expect("read");
    let took = started.elapsed();
    assert!(
        end.is_some() || took < Duration::from_secs(15),
        "no end of the stalled stream"
    );
    assert!(
        took >= Duration::from_millis(1500),
        "ended after {took:?}, before the timeout"
    );
    assert!(
        took < Duration::from_secs(12),
        "the stalled stream lasted {took:?}"
    );
    let grew = gate.status_kib("VmRSS").saturating_sub(rss_before);
    assert!(
        grew < 16 * 1024,
        "RSS grew by {grew} KiB: the 50 MB body was buffered"
    );
    assert_serves(&gate);
}
