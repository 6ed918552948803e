//! Reading one HTTP/1.x response and throwing its body away.
//!
//! A load generator only needs the status, whether the connection stays open, and where the
//! response ends; the body is skipped as it arrives, so a large response costs no memory. The
//! head is parsed with `httparse`; the body is delimited as RFC 9112 §6.3 says: no body for
//! 1xx/204/304, chunked when the last transfer coding is `chunked` (a small decoder that
//! checks the framing), `Content-Length`, or else until the server closes. Interim 1xx
//! responses (other than 101) are skipped. Malformed input is an error, never a panic.

use std::io;

use bytes::{Buf, BytesMut};

/// Longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one head.
const MAX_HEADERS: usize = 100;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 8 * 1024;

/// Where response bytes come from: the TLS stream, or a script in tests.
// Used with concrete types on a thread-per-core runtime: no `Send` bound is wanted.
#[allow(async_fn_in_trait)]
pub trait Source {
    /// Appends what arrives to `buf`; 0 means the peer closed.
    async fn fill(&mut self, buf: &mut BytesMut) -> io::Result<usize>;
}

impl Source for certgate::tls::TlsStream {
    async fn fill(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        self.read_into(buf).await
    }
}

/// A response, read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The connection cannot carry another request.
    pub close: bool,
}

/// Why no complete response was read.
#[derive(Debug)]
pub enum ReadError {
    /// The stream failed; `started` tells whether any byte of the response had arrived.
    Io { error: io::Error, started: bool },
    /// The peer closed before the response ended.
    Eof { started: bool },
    /// The bytes are not an HTTP/1.x response.
    Malformed(&'static str),
}

impl ReadError {
    /// Nothing of the response arrived: on a reused keep-alive connection, the server had
    /// closed it, and the request may be sent again on a new one.
    pub fn before_response(&self) -> bool {
        matches!(
            self,
            ReadError::Io { started: false, .. } | ReadError::Eof { started: false }
        )
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io { error, .. } => write!(f, "reading the response: {error}"),
            ReadError::Eof { started: false } => f.write_str("connection closed before a response"),
            ReadError::Eof { started: true } => f.write_str("connection closed mid-response"),
            ReadError::Malformed(why) => write!(f, "malformed response: {why}"),
        }
    }
}

/// Framing of a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Reads one response from `src`, using `buf` for bytes already received (it keeps whatever
/// follows the response). Bytes of the body are discarded.
pub async fn read_response<S: Source>(
    src: &mut S,
    buf: &mut BytesMut,
) -> Result<Response, ReadError> {
    let mut reader = Reader {
        src,
        buf,
        started: false,
    };
    reader.started = !reader.buf.is_empty();
    loop {
        let (status, mut close, body) = reader.head().await?;
        if (100..200).contains(&status) {
            if status == 101 {
                return Err(ReadError::Malformed("unexpected 101 Switching Protocols"));
            }
            continue;
        }
        match body {
            Body::None => {}
            Body::Length(n) => reader.skip(n).await?,
            Body::Chunked => reader.chunked().await?,
            Body::UntilClose => {
                reader.until_close().await?;
                close = true;
            }
        }
        return Ok(Response { status, close });
    }
}

struct Reader<'a, S> {
    src: &'a mut S,
    buf: &'a mut BytesMut,
    started: bool,
}

impl<S: Source> Reader<'_, S> {
    /// More bytes, or an error saying how far the response had got.
    async fn more(&mut self) -> Result<(), ReadError> {
        match self.src.fill(self.buf).await {
            Ok(0) => Err(ReadError::Eof {
                started: self.started,
            }),
            Ok(_) => {
                self.started = true;
                Ok(())
            }
            Err(error) => Err(ReadError::Io {
                error,
                started: self.started,
            }),
        }
    }

    /// Parses a head: status, whether the connection closes after this response, framing.
    async fn head(&mut self) -> Result<(u16, bool, Body), ReadError> {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut fields);
            match resp.parse(self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let parsed = judge(&resp)?;
                    self.buf.advance(len);
                    return Ok(parsed);
                }
                Ok(httparse::Status::Partial) if self.buf.len() > MAX_HEAD => {
                    return Err(ReadError::Malformed("response head too large"));
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(ReadError::Malformed("too many header fields"));
                }
                Err(_) => return Err(ReadError::Malformed("invalid response head")),
            }
            self.more().await?;
        }
    }

    async fn skip(&mut self, mut n: u64) -> Result<(), ReadError> {
        loop {
            let take = usize::try_from(n).unwrap_or(usize::MAX).min(self.buf.len());
            self.buf.advance(take);
            n -= take as u64;
            if n == 0 {
                return Ok(());
            }
            self.more().await?;
        }
    }

    async fn until_close(&mut self) -> Result<(), ReadError> {
        loop {
            self.buf.clear();
            match self.more().await {
                Ok(()) => {}
                Err(ReadError::Eof { .. }) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Consumes a line and hands it, without its CRLF (or bare LF), to `f`.
    async fn line<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> Result<T, ReadError> {
        let mut searched = 0;
        loop {
            if let Some(i) = self.buf[searched..].iter().position(|&b| b == b'\n') {
                let end = searched + i;
                let line = &self.buf[..end];
                let out = f(line.strip_suffix(b"\r").unwrap_or(line));
                self.buf.advance(end + 1);
                return Ok(out);
            }
            searched = self.buf.len();
            if searched > MAX_LINE {
                return Err(ReadError::Malformed("chunk line too long"));
            }
            self.more().await?;
        }
    }

    async fn chunked(&mut self) -> Result<(), ReadError> {
        loop {
            let size = self.line(chunk_size).await??;
            if size == 0 {
                break;
            }
            self.skip(size).await?;
            if !self.line(<[u8]>::is_empty).await? {
                return Err(ReadError::Malformed("chunk data not followed by CRLF"));
            }
        }
        // Trailer section, up to the empty line.
        while !self.line(<[u8]>::is_empty).await? {}
        Ok(())
    }
}

/// Status, connection persistence and body framing of a parsed head.
fn judge(resp: &httparse::Response<'_, '_>) -> Result<(u16, bool, Body), ReadError> {
    let status = resp.code.ok_or(ReadError::Malformed("no status code"))?;
    let http10 = resp.version == Some(0);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut coded = false;
    let mut close = false;
    let mut keep_alive = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(ReadError::Malformed("invalid Content-Length"))?;
            if length.is_some_and(|l| l != v) {
                return Err(ReadError::Malformed("conflicting Content-Length"));
            }
            length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding decides: `gzip, chunked` is chunked, `chunked, gzip` is not.
            for coding in tokens(h.value) {
                coded = true;
                chunked = coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                close |= t.eq_ignore_ascii_case(b"close");
                keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    if http10 && !keep_alive {
        close = true;
    }
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        Body::None
    } else if coded && chunked {
        Body::Chunked
    } else if coded {
        Body::UntilClose
    } else if let Some(n) = length {
        Body::Length(n)
    } else {
        Body::UntilClose
    };
    Ok((status, close, body))
}

/// Comma-separated list elements, trimmed, empty ones skipped.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty())
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The hexadecimal size of a chunk-size line (extensions after `;` ignored).
fn chunk_size(line: &[u8]) -> Result<u64, ReadError> {
    let digits = trim(line.split(|&b| b == b';').next().unwrap_or_default());
    if digits.is_empty() || digits.len() > 15 {
        return Err(ReadError::Malformed("invalid chunk size"));
    }
    let mut n = 0u64;
    for &d in digits {
        let v = (d as char)
            .to_digit(16)
            .ok_or(ReadError::Malformed("invalid chunk size"))?;
        n = (n << 4) | u64::from(v);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Hands out scripted pieces, one per `fill`, then EOF.
    struct Script(VecDeque<Vec<u8>>);

    impl Script {
        /// The input cut into pieces of `step` bytes.
        fn new(input: &[u8], step: usize) -> Script {
            Script(input.chunks(step.max(1)).map(<[u8]>::to_vec).collect())
        }
    }

    impl Source for Script {
        async fn fill(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
            Ok(self.0.pop_front().map_or(0, |piece| {
                buf.extend_from_slice(&piece);
                piece.len()
            }))
        }
    }

    /// Reads every response in `input` at every split size; returns them with the leftover.
    fn read_all(input: &[u8], n: usize) -> Vec<(Vec<Response>, Vec<u8>)> {
        (1..=input.len().min(64))
            .chain([input.len()])
            .map(|step| {
                let mut src = Script::new(input, step);
                let mut buf = BytesMut::new();
                let mut out = Vec::new();
                for _ in 0..n {
                    out.push(
                        block_on(read_response(&mut src, &mut buf))
                            .unwrap_or_else(|e| panic!("step {step}: {e}")),
                    );
                }
                let mut rest = buf.to_vec();
                while let Some(p) = src.0.pop_front() {
                    rest.extend_from_slice(&p);
                }
                (out, rest)
            })
            .collect()
    }

    fn one_err(input: &[u8]) -> ReadError {
        let mut src = Script::new(input, 7);
        let mut buf = BytesMut::new();
        block_on(read_response(&mut src, &mut buf)).unwrap_err()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn content_length_then_next_response() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\nXY";
        for (resps, rest) in read_all(input, 2) {
            assert_eq!(
                resps,
                [
                    Response {
                        status: 200,
                        close: false
                    },
                    Response {
                        status: 404,
                        close: false
                    }
                ]
            );
            assert_eq!(rest, b"XY");
        }
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        for (resps, rest) in read_all(input, 1) {
            assert_eq!(resps[0].status, 200);
            assert!(!resps[0].close);
            assert_eq!(rest, b"NEXT");
        }
    }

    #[test]
    fn interim_responses_are_skipped() {
        let input =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        for (resps, rest) in read_all(input, 1) {
            assert_eq!(resps[0].status, 201);
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn no_body_statuses_and_close() {
        let input = b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\nConnection: keep-alive, close\r\n\r\n";
        for (resps, _) in read_all(input, 1) {
            assert_eq!(
                resps[0],
                Response {
                    status: 204,
                    close: true
                }
            );
        }
    }

    #[test]
    fn http10_and_unframed_bodies_close() {
        let input = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert!(read_all(input, 1).iter().all(|(r, _)| r[0].close));
        let input = b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nbody until the end";
        for (resps, rest) in read_all(input, 1) {
            assert!(resps[0].close);
            assert!(rest.is_empty());
        }
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\nContent-Length: 3\r\n\r\nabcdef";
        assert!(read_all(input, 1).iter().all(|(r, _)| r[0].close));
    }

    #[test]
    fn truncation_is_reported_with_progress() {
        assert!(matches!(one_err(b""), ReadError::Eof { started: false }));
        assert!(one_err(b"").before_response());
        assert!(matches!(
            one_err(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
            ReadError::Eof { started: true }
        ));
        assert!(matches!(
            one_err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"),
            ReadError::Eof { started: true }
        ));
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY0\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            assert!(
                matches!(one_err(bad), ReadError::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let huge = [&b"HTTP/1.1 200 OK\r\nX: "[..], &vec![b'a'; MAX_HEAD + 10]].concat();
        assert!(matches!(one_err(&huge), ReadError::Malformed(_)));
        let long_line = [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1"[..],
            &vec![b' '; MAX_LINE + 10],
        ]
        .concat();
        assert!(matches!(one_err(&long_line), ReadError::Malformed(_)));
    }
}
