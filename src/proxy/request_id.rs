//! The request id: the client's `X-Request-Id` when it is a plausible id (1 to 128 characters
//! of `A-Z a-z 0-9 - _ . : + / = @`), else one generated here; it is sent upstream and logged
//! (`request_id`). A client value that is not plausible is replaced, not forwarded beside ours.

use std::cell::Cell;
use std::sync::OnceLock;

use crate::http::RequestHead;

/// The header's name as sent upstream.
pub const HEADER: &str = "X-Request-Id";

/// Longest client id kept.
const MAX_LEN: usize = 128;

/// A request's id and where it came from.
#[derive(Debug, Clone)]
pub struct RequestId {
    id: String,
    /// None: the client's; Some(true): generated, the client sent an implausible one.
    generated: Option<bool>,
}

impl RequestId {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// Generated here: it must be added to the upstream request.
    pub fn generated(&self) -> bool {
        self.generated.is_some()
    }

    /// Generated in place of the client's implausible value, which must not go upstream.
    pub fn replaced(&self) -> bool {
        self.generated == Some(true)
    }
}

/// The id of a request.
pub fn of(head: &RequestHead, raw: &[u8]) -> RequestId {
    from_client(head.header(raw, HEADER))
}

/// The id of a request whose `X-Request-Id` field, if any, is `sent`.
pub fn from_client(sent: Option<&[u8]>) -> RequestId {
    match sent {
        Some(v) if plausible(v) => RequestId {
            id: String::from_utf8_lossy(v).into_owned(),
            generated: None,
        },
        sent => RequestId {
            id: generate(),
            generated: Some(sent.is_some()),
        },
    }
}

fn plausible(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= MAX_LEN
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(b))
}

/// 32 hex digits: a random per-process prefix, the thread's number and a per-thread counter,
/// so no two requests of a process share one and no lock or shared counter is needed.
fn generate() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    thread_local! {
        static THREAD: Cell<(u16, u64)> = const { Cell::new((u16::MAX, 0)) };
    }
    static THREADS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        if boring::rand::rand_bytes(&mut b).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            return t.as_nanos() as u64 ^ u64::from(std::process::id());
        }
        u64::from_le_bytes(b)
    });
    let (thread, n) = THREAD.with(|c| {
        let (mut thread, n) = c.get();
        if thread == u16::MAX {
            thread = THREADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        c.set((thread, n + 1));
        (thread, n)
    });
    // Written by hand: `format!` with three padded hex fields was ~0.5 % of a loaded worker.
    let mut id = String::with_capacity(32);
    push_hex(&mut id, prefix, 16);
    push_hex(&mut id, u64::from(thread), 4);
    push_hex(&mut id, n, 12);
    id
}

/// Appends the low `digits` hex digits of `v`, zero-padded.
fn push_hex(out: &mut String, v: u64, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        out.push(char::from(HEX[((v >> (i * 4)) & 0xf) as usize]));
    }
}

/// Removes the client's `X-Request-Id` lines from a rewritten head (whose own, `ours`, was
/// appended last and stays).
pub fn remove_client_header(head: &mut Vec<u8>, ours: &str) {
    let mut out = Vec::with_capacity(head.len());
    for line in head.split_inclusive(|&b| b == b'\n') {
        let is_id = line
            .iter()
            .position(|&b| b == b':')
            .is_some_and(|c| line[..c].eq_ignore_ascii_case(HEADER.as_bytes()));
        let value = line
            .iter()
            .position(|&b| b == b':')
            .map(|c| line[c + 1..].trim_ascii());
        if is_id && value != Some(ours.as_bytes()) {
            continue;
        }
        out.extend_from_slice(line);
    }
    *head = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_ids() {
        assert!(plausible(b"abc-123_x.y:z+/=@"));
        assert!(!plausible(b""));
        assert!(!plausible(b"a b"));
        assert!(!plausible(b"a\"b"));
        assert!(!plausible(&[b'a'; MAX_LEN + 1]));
    }

    #[test]
    fn hex_is_zero_padded_like_format_and_keeps_its_width() {
        for (v, digits) in [
            (0u64, 4u32),
            (0xabc, 4),
            (0x1_2345, 4),
            (u64::MAX, 16),
            (42, 12),
        ] {
            let mut s = String::new();
            push_hex(&mut s, v, digits);
            let mask = if digits == 16 {
                u64::MAX
            } else {
                (1u64 << (digits * 4)) - 1
            };
            assert_eq!(s, format!("{:0w$x}", v & mask, w = digits as usize));
        }
    }

    #[test]
    fn generated_ids_differ() {
        let (a, b) = (generate(), generate());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn the_client_header_is_removed_and_ours_kept() {
        let mut head =
            b"GET / HTTP/1.1\r\nHost: h\r\nx-request-id: a b\r\nX-Request-Id: ours\r\n\r\n"
                .to_vec();
        remove_client_header(&mut head, "ours");
        assert_eq!(
            head,
            b"GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: ours\r\n\r\n".to_vec()
        );
    }
}
