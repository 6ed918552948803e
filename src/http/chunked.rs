//! Body framing for relayed bodies. Chunked bodies are forwarded verbatim, never re-encoded, but
//! the proxy must know exactly where one ends (the next bytes are the next request on a kept-alive
//! connection) and must refuse anything the next hop could frame differently — that disagreement is
//! request smuggling. So [`ChunkedScanner`] follows RFC 9112 §7.1 strictly, byte by byte for the
//! framing lines and in bulk over chunk data, in a fixed-size state machine with no allocation.
//! [`ChunkDecoder`] reads a chunked body through the same scanner, for a hop that needs the data
//! without its framing. [`LengthCounter`] is the trivial Content-Length counterpart.

use bytes::BytesMut;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Most hex digits in a chunk size, leading zeros included: 16 digits cannot overflow a u64, and
/// refusing longer sizes avoids disagreeing with parsers that truncate.
pub const MAX_CHUNK_SIZE_DIGITS: u32 = 16;

/// Longest chunk-size line, size and extensions included, CRLF excluded.
pub const MAX_CHUNK_LINE_BYTES: u32 = 4096;

/// Largest trailer section after the last chunk, final CRLF included.
pub const MAX_TRAILER_BYTES: u32 = 8 * 1024;

/// What one [`ChunkedScanner::scan`] / [`LengthCounter::scan`] call found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanProgress {
    /// Leading bytes of the input that belong to the body (forward exactly these).
    pub consumed: usize,
    /// The body ended within them; input after `consumed` is not part of it.
    pub done: bool,
}

/// Malformed chunked framing. The connection must be closed: where the body ends is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk-size line not starting with a hex digit, or an unexpected byte after the size.
    InvalidSize,
    /// More than [`MAX_CHUNK_SIZE_DIGITS`] digits.
    SizeTooLong,
    /// A chunk extension that is not `;name[=token|"quoted"]`.
    InvalidExtension,
    /// A chunk-size line longer than [`MAX_CHUNK_LINE_BYTES`].
    LineTooLong,
    /// A line not ended by CRLF (bare LF, or CR followed by something else).
    BadLineEnding,
    /// Chunk data not followed by exactly CRLF.
    DataNotTerminated,
    /// A trailer line that is not a header field.
    InvalidTrailer,
    /// A trailer section larger than [`MAX_TRAILER_BYTES`].
    TrailerTooLarge,
}

impl ChunkError {
    /// For the log line.
    pub fn reason(self) -> &'static str {
        match self {
            ChunkError::InvalidSize => "invalid chunk size",
            ChunkError::SizeTooLong => "chunk size has too many digits",
            ChunkError::InvalidExtension => "invalid chunk extension",
            ChunkError::LineTooLong => "chunk size line too long",
            ChunkError::BadLineEnding => "chunk line not ended by CRLF",
            ChunkError::DataNotTerminated => "chunk data not followed by CRLF",
            ChunkError::InvalidTrailer => "invalid trailer field",
            ChunkError::TrailerTooLarge => "trailer section too large",
        }
    }
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ChunkError {}

/// Where the scanner is in `chunked-body = *chunk last-chunk trailer-section CRLF`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Start of a chunk-size line: a hex digit must come.
    SizeStart,
    /// In the hex digits.
    Size,
    /// After the size, whitespace seen: only more whitespace or `;` may follow (BWS before `;`,
    /// no trailing whitespace before CRLF).
    SizeWs,
    /// After `;`: whitespace, then the extension name.
    ExtNameStart,
    ExtName,
    /// Whitespace after an extension name: `=` or `;` must follow.
    ExtNameWs,
    /// After `=`: whitespace, then a token or a quoted string.
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    ExtQuotedEscape,
    /// Just after a closing quote: `;`, whitespace or CR.
    ExtQuotedEnd,
    /// Whitespace after an extension value: `;` must follow.
    ExtValueWs,
    /// CR of a chunk-size line seen.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// Start of a trailer line, or the final CRLF.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
}

/// Finds the end of a chunked body fed in arbitrary fragments. Feed each read to
/// [`scan`](ChunkedScanner::scan); forward `consumed` bytes; stop when `done`. After an error the
/// scanner stays failed.
#[derive(Clone, Debug)]
pub struct ChunkedScanner {
    state: State,
    /// Chunk size being read, then data bytes left in the chunk.
    remaining: u64,
    /// Digits in the current size.
    digits: u32,
    /// Bytes in the current size line (before CRLF).
    line_len: u32,
    /// Bytes of trailer section so far.
    trailer_len: u32,
    failed: Option<ChunkError>,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedScanner {
    /// A scanner at the start of a chunked body.
    pub const fn new() -> Self {
        Self {
            state: State::SizeStart,
            remaining: 0,
            digits: 0,
            line_len: 0,
            trailer_len: 0,
            failed: None,
        }
    }

    /// The whole body, final CRLF included, has been seen.
    #[inline]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes the prefix of `input` that belongs to the body. Once done, consumes nothing.
    pub fn scan(&mut self, input: &[u8]) -> Result<ScanProgress, ChunkError> {
        let consumed = self.run(input)?;
        Ok(ScanProgress {
            consumed,
            done: self.state == State::Done,
        })
    }

    fn run(&mut self, input: &[u8]) -> Result<usize, ChunkError> {
        let mut pos = 0;
        while pos < input.len() && self.state != State::Done {
            let (n, _) = self.advance(&input[pos..])?;
            pos += n;
        }
        Ok(pos)
    }

    /// Consumes the leading bytes of `input` that belong to one [`Part`] of the body and says
    /// which: chunk data in bulk, or framing bytes one at a time until the part changes. Consumes
    /// nothing at the end of the input or once done. [`ChunkDecoder`] reads the body through
    /// this, so the scanner and the decoder have one grammar. After an error it stays failed.
    pub fn advance(&mut self, input: &[u8]) -> Result<(usize, Part), ChunkError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let part = self.state.part();
        if part == Part::Done {
            return Ok((0, part));
        }
        if self.state == State::Data {
            // Bulk path: skip over chunk data without looking at it.
            let take = self.remaining.min(input.len() as u64);
            self.remaining -= take;
            if self.remaining == 0 {
                self.state = State::DataCr;
            }
            // `take` is at most `input.len()`.
            return Ok((take as usize, part));
        }
        let mut pos = 0;
        while let Some(&b) = input.get(pos) {
            if self.state.part() != part {
                break;
            }
            pos += 1;
            if let Err(e) = self.step(b) {
                self.failed = Some(e);
                return Err(e);
            }
        }
        Ok((pos, part))
    }

    /// One framing byte.
    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        use State::*;
        if self.state.in_size_line() {
            if b != b'\r' {
                self.line_len += 1;
                if self.line_len > MAX_CHUNK_LINE_BYTES {
                    return Err(ChunkError::LineTooLong);
                }
            }
        } else if self.state.in_trailer() {
            self.trailer_len += 1;
            if self.trailer_len > MAX_TRAILER_BYTES {
                return Err(ChunkError::TrailerTooLarge);
            }
        }

        self.state = match (self.state, b) {
            // A bare LF anywhere a CRLF could end a line (chunk data is never looked at).
            (state, b'\n') if !matches!(state, SizeLf | DataCr | DataLf | TrailerLf | FinalLf) => {
                return Err(ChunkError::BadLineEnding)
            }
            (SizeStart | Size, _) if b.is_ascii_hexdigit() => {
                self.digits += 1;
                if self.digits > MAX_CHUNK_SIZE_DIGITS {
                    return Err(ChunkError::SizeTooLong);
                }
                // Cannot overflow: at most 16 digits.
                self.remaining = (self.remaining << 4) | u64::from(hex_value(b));
                Size
            }
            (SizeStart, _) => return Err(ChunkError::InvalidSize),
            (Size | SizeWs, b' ' | b'\t') => SizeWs,
            (Size | SizeWs | ExtQuotedEnd | ExtValueWs | ExtToken | ExtName | ExtNameWs, b';') => {
                ExtNameStart
            }
            (Size | ExtName | ExtToken | ExtQuotedEnd, b'\r') => SizeLf,
            (Size | SizeWs, _) => return Err(ChunkError::InvalidSize),

            (ExtNameStart, b' ' | b'\t') => ExtNameStart,
            (ExtNameStart | ExtName, _) if is_tchar(b) => ExtName,
            (ExtName | ExtNameWs, b' ' | b'\t') => ExtNameWs,
            (ExtName | ExtNameWs, b'=') => ExtValueStart,
            (ExtValueStart, b' ' | b'\t') => ExtValueStart,
            (ExtValueStart, b'"') => ExtQuoted,
            (ExtValueStart | ExtToken, _) if is_tchar(b) => ExtToken,
            (ExtToken | ExtQuotedEnd | ExtValueWs, b' ' | b'\t') => ExtValueWs,
            (ExtQuoted, b'"') => ExtQuotedEnd,
            (ExtQuoted, b'\\') => ExtQuotedEscape,
            (ExtQuoted, _) if is_qdtext(b) => ExtQuoted,
            (ExtQuotedEscape, _) if b == b'\t' || b == b' ' || is_vchar_or_obs(b) => ExtQuoted,
            (
                ExtNameStart | ExtName | ExtNameWs | ExtValueStart | ExtToken | ExtQuoted
                | ExtQuotedEscape | ExtQuotedEnd | ExtValueWs,
                _,
            ) => return Err(ChunkError::InvalidExtension),

            (SizeLf, b'\n') => {
                self.line_len = 0;
                self.digits = 0;
                if self.remaining == 0 {
                    TrailerStart
                } else {
                    Data
                }
            }
            (TrailerLf, b'\n') => TrailerStart,
            (FinalLf, b'\n') => Done,
            (SizeLf | TrailerLf | FinalLf, _) => return Err(ChunkError::BadLineEnding),

            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => SizeStart,
            (DataCr | DataLf, _) => return Err(ChunkError::DataNotTerminated),

            (TrailerStart, b'\r') => FinalLf,
            (TrailerStart | TrailerName, _) if is_tchar(b) => TrailerName,
            (TrailerName, b':') => TrailerValue,
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, _) if b == b'\t' || b == b' ' || is_vchar_or_obs(b) => TrailerValue,
            (TrailerStart | TrailerName | TrailerValue, _) => {
                return Err(ChunkError::InvalidTrailer)
            }

            // Data and Done never reach here (run handles them); stay put rather than panic.
            (Data | Done, _) => self.state,
        };
        Ok(())
    }
}

/// The parts of a chunked body, as [`ChunkedScanner::advance`] reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Chunk-size lines (with their extensions) and the CRLF after each chunk's data.
    Framing,
    /// Chunk data: the payload.
    Data,
    /// The trailer section after the last chunk, its final CRLF included.
    Trailer,
    /// The body has ended; nothing more belongs to it.
    Done,
}

impl State {
    #[inline]
    fn part(self) -> Part {
        match self {
            State::Data => Part::Data,
            State::Done => Part::Done,
            s if s.in_trailer() => Part::Trailer,
            _ => Part::Framing,
        }
    }

    #[inline]
    fn in_size_line(self) -> bool {
        use State::*;
        matches!(
            self,
            SizeStart
                | Size
                | SizeWs
                | ExtNameStart
                | ExtName
                | ExtNameWs
                | ExtValueStart
                | ExtToken
                | ExtQuoted
                | ExtQuotedEscape
                | ExtQuotedEnd
                | ExtValueWs
        )
    }

    #[inline]
    fn in_trailer(self) -> bool {
        use State::*;
        matches!(
            self,
            TrailerStart | TrailerName | TrailerValue | TrailerLf | FinalLf
        )
    }
}

#[inline]
fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

#[inline]
fn is_tchar(b: u8) -> bool {
    super::is_tchar(b)
}

#[inline]
fn is_vchar_or_obs(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// `qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text`.
#[inline]
fn is_qdtext(b: u8) -> bool {
    b == b'\t' || b == b' ' || (is_vchar_or_obs(b) && b != b'"' && b != b'\\')
}

/// Decodes a chunked body into its data and trailers, for a hop that does not speak chunked
/// (HTTP/2): the data is forwarded without the framing, the trailers as a header block. It reads
/// the body through [`ChunkedScanner::advance`], so it accepts and refuses exactly what the
/// scanner does, with the same limits.
#[derive(Debug, Default)]
pub struct ChunkDecoder {
    scanner: ChunkedScanner,
    /// The trailer section so far, as sent (at most [`MAX_TRAILER_BYTES`]).
    trailer: Vec<u8>,
}

impl ChunkDecoder {
    /// Takes what it can from the start of `buf`: the chunk data in it, and the trailers once
    /// the body ended (then `buf` holds only what follows the body). Trailer fields that frame
    /// or route a message (`content-length`, `transfer-encoding`, `connection`, `host`, `te`)
    /// are dropped.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<(BytesMut, Option<HeaderMap>), ChunkError> {
        let mut data = BytesMut::new();
        loop {
            let (n, part) = self.scanner.advance(buf)?;
            let bytes = buf.split_to(n);
            match part {
                Part::Data => data.unsplit(bytes),
                Part::Trailer => self.trailer.extend_from_slice(&bytes),
                Part::Framing => {}
                Part::Done => return Ok((data, Some(self.trailers()?))),
            }
            if buf.is_empty() && !self.scanner.is_done() {
                return Ok((data, None));
            }
        }
    }

    /// The trailer fields of the finished body. The scanner has checked their grammar.
    fn trailers(&mut self) -> Result<HeaderMap, ChunkError> {
        let mut map = HeaderMap::new();
        let section = std::mem::take(&mut self.trailer);
        for line in section.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .ok_or(ChunkError::InvalidTrailer)?;
            let name =
                HeaderName::from_bytes(&line[..colon]).map_err(|_| ChunkError::InvalidTrailer)?;
            let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii())
                .map_err(|_| ChunkError::InvalidTrailer)?;
            // Framing and connection fields never travel as trailers.
            if !matches!(
                name.as_str(),
                "content-length" | "transfer-encoding" | "connection" | "host" | "te"
            ) {
                map.append(name, value);
            }
        }
        Ok(map)
    }
}

/// Counts a Content-Length body: the caller forwards `consumed` bytes of each read until `done`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LengthCounter {
    remaining: u64,
}

impl LengthCounter {
    /// A counter for a body of `len` bytes (`Content-Length`).
    pub const fn new(len: u64) -> Self {
        Self { remaining: len }
    }

    /// Body bytes still to come.
    #[inline]
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// True once every byte of the body has been seen.
    #[inline]
    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }

    /// Counts the body bytes at the start of `input`: `consumed` bytes are body (bytes beyond
    /// `remaining` belong to the next message); `done` once the length is reached.
    #[inline]
    pub fn scan(&mut self, input: &[u8]) -> ScanProgress {
        let take = self.remaining.min(input.len() as u64);
        self.remaining -= take;
        ScanProgress {
            consumed: take as usize,
            done: self.remaining == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in the given fragments; returns total consumed and done.
    fn feed(fragments: &[&[u8]]) -> Result<(usize, bool), ChunkError> {
        let mut s = ChunkedScanner::new();
        let mut total = 0;
        for f in fragments {
            let p = s.scan(f)?;
            total += p.consumed;
            if p.done {
                return Ok((total, true));
            }
            assert_eq!(p.consumed, f.len(), "must consume all input while not done");
        }
        Ok((total, false))
    }

    fn whole(body: &[u8]) -> Result<(usize, bool), ChunkError> {
        feed(&[body])
    }

    /// Malformed bodies and the error each must be refused with.
    const MALFORMED: &[(&[u8], ChunkError)] = {
        use ChunkError::*;
        &[
            (b"\r\n", InvalidSize),
            (b"x\r\n", InvalidSize),
            (b"-1\r\n", InvalidSize),
            (b"+1\r\n", InvalidSize),
            (b"0x5\r\n", InvalidSize),
            (b" 5\r\n", InvalidSize),
            (b"5 \r\nhello\r\n", InvalidSize),
            (b"5\nhello\r\n", BadLineEnding),
            (b"5\r\rhello", BadLineEnding),
            (b"5\r\nhello\n0\r\n\r\n", DataNotTerminated),
            (b"5\r\nhelloX\r\n", DataNotTerminated),
            (b"5\r\nhello\rX", DataNotTerminated),
            (b"3\r\nhello\r\n", DataNotTerminated),
            (b"5;\r\n", InvalidExtension),
            (b"5;=v\r\n", InvalidExtension),
            (b"5;a=\r\n", InvalidExtension),
            (b"5;a =\r\n", InvalidExtension),
            (b"5;a \r\n", InvalidExtension),
            (b"5;a=b \r\n", InvalidExtension),
            (b"5;a=\"b\r\n", InvalidExtension),
            (b"5;a=\"b\" c\r\n", InvalidExtension),
            (b"5;a=b\"c\"\r\n", InvalidExtension),
            (b"5;a=\"\x00\"\r\n", InvalidExtension),
            (b"5;a\nhello", BadLineEnding),
            (b"5;a=\"b\nc\"\r\n", BadLineEnding),
            (b"0\r\n\n", BadLineEnding),
            (b"0\r\nX\r\n\r\n", InvalidTrailer),
            (b"0\r\nX : v\r\n\r\n", InvalidTrailer),
            (b"0\r\n X: v\r\n\r\n", InvalidTrailer),
            (b"0\r\nX: v\n\r\n", BadLineEnding),
            (b"0\r\nX: a\x00\r\n\r\n", InvalidTrailer),
            (b"0\r\nX: v\r\r", BadLineEnding),
            (b"0\r\n\rX", BadLineEnding),
            (b"0\r\n\r\r", BadLineEnding),
        ]
    };

    const SAMPLE: &[u8] = b"5\r\nhello\r\n1a;ext=val;q=\"a\\\"b\" ; x\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: yes\r\nEtag: \"t\"\r\n\r\n";

    #[test]
    fn sample_every_split_point() {
        let tail = b"GET / HTTP/1.1\r\n";
        let input = [SAMPLE, tail].concat();
        assert_eq!(whole(&input), Ok((SAMPLE.len(), true)));
        for split in 0..=input.len() {
            let (a, b) = input.split_at(split);
            let got = feed(&[a, b]).unwrap();
            assert_eq!(got, (SAMPLE.len(), true), "split at {split}");
        }
        for a in 0..=SAMPLE.len() {
            for b in a..=SAMPLE.len() {
                let got = feed(&[&input[..a], &input[a..b], &input[b..]]).unwrap();
                assert_eq!(got, (SAMPLE.len(), true), "splits at {a},{b}");
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let mut s = ChunkedScanner::new();
        for (i, b) in SAMPLE.iter().enumerate() {
            let p = s.scan(std::slice::from_ref(b)).unwrap();
            assert_eq!(p.consumed, 1);
            assert_eq!(p.done, i == SAMPLE.len() - 1);
        }
        assert!(s.is_done());
        assert_eq!(
            s.scan(b"more").unwrap(),
            ScanProgress {
                consumed: 0,
                done: true
            }
        );
    }

    #[test]
    fn minimal_bodies() {
        assert_eq!(whole(b"0\r\n\r\n"), Ok((5, true)));
        assert_eq!(whole(b"000\r\n\r\nrest"), Ok((7, true)));
        assert_eq!(whole(b"A\r\n0123456789\r\n0\r\n\r\n"), Ok((20, true)));
        assert_eq!(whole(b"0\r\n"), Ok((3, false)));
        assert_eq!(whole(b"3\r\nab"), Ok((5, false)));
        // Whitespace before `;` (BWS) is allowed.
        assert_eq!(whole(b"1 ;a\r\nx\r\n0\r\n\r\n"), Ok((14, true)));
        assert_eq!(
            whole(b"1;a=b ; c = \"d\"\r\nx\r\n0\r\n\r\n").map(|r| r.1),
            Ok(true)
        );
    }

    #[test]
    fn large_sizes() {
        let mut s = ChunkedScanner::new();
        assert!(!s.scan(b"ffffffffffffffff\r\n").unwrap().done);
        let p = s.scan(&[0u8; 1000]).unwrap();
        assert_eq!(p.consumed, 1000);
        assert_eq!(
            whole(b"00000000000000001\r\n"),
            Err(ChunkError::SizeTooLong)
        );
        assert_eq!(
            whole(b"10000000000000000\r\n"),
            Err(ChunkError::SizeTooLong)
        );
    }

    #[test]
    fn rejects_malformed() {
        for (body, want) in MALFORMED {
            assert_eq!(
                whole(body),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn error_is_sticky() {
        let mut s = ChunkedScanner::new();
        assert!(s.scan(b"z").is_err());
        assert_eq!(s.scan(b"0\r\n\r\n"), Err(ChunkError::InvalidSize));
    }

    #[test]
    fn line_and_trailer_limits() {
        let mut line = b"1;a=".to_vec();
        line.extend(std::iter::repeat_n(b'x', MAX_CHUNK_LINE_BYTES as usize));
        assert_eq!(whole(&line), Err(ChunkError::LineTooLong));
        let mut ok_line = b"1;a=".to_vec();
        ok_line.extend(std::iter::repeat_n(b'x', MAX_CHUNK_LINE_BYTES as usize - 4));
        ok_line.extend_from_slice(b"\r\nz\r\n0\r\n\r\n");
        assert_eq!(whole(&ok_line).map(|r| r.1), Ok(true));
        // The limit is per line: many long lines are fine.
        let one_chunk = &ok_line[..ok_line.len() - b"0\r\n\r\n".len()];
        let mut body = Vec::new();
        for _ in 0..4 {
            body.extend_from_slice(one_chunk);
        }
        body.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(whole(&body).map(|r| r.1), Ok(true));

        let mut trailer = b"0\r\n".to_vec();
        while trailer.len() < MAX_TRAILER_BYTES as usize + 10 {
            trailer.extend_from_slice(b"X-Long-Trailer: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        trailer.extend_from_slice(b"\r\n");
        assert_eq!(whole(&trailer), Err(ChunkError::TrailerTooLarge));
    }

    #[test]
    fn never_panics_on_corruption() {
        for i in 0..SAMPLE.len() {
            for b in [0u8, b'\r', b'\n', b' ', b';', b'"', b'\\', b'=', b'f', 0xff] {
                let mut m = SAMPLE.to_vec();
                m[i] = b;
                let _ = whole(&m);
                let mut s = ChunkedScanner::new();
                for byte in &m {
                    if s.scan(std::slice::from_ref(byte)).is_err() {
                        break;
                    }
                }
            }
        }
    }

    #[test]
    fn length_counter() {
        let mut c = LengthCounter::new(5);
        assert_eq!(
            c.scan(b"abc"),
            ScanProgress {
                consumed: 3,
                done: false
            }
        );
        assert_eq!(
            c.scan(b"defgh"),
            ScanProgress {
                consumed: 2,
                done: true
            }
        );
        assert!(c.is_done());
        assert_eq!(c.scan(b"x").consumed, 0);
        assert!(LengthCounter::new(0).is_done());
    }

    /// What [`ChunkDecoder`] made of a whole input.
    #[derive(Debug, PartialEq)]
    struct Decoded {
        data: Vec<u8>,
        /// Once the body ended.
        trailers: Option<HeaderMap>,
        /// Input left after the body (all of it is fed).
        rest: Vec<u8>,
    }

    /// Decodes `input` fed `step` bytes at a time until the body ends.
    fn decode_all(input: &[u8], step: usize) -> Result<Decoded, ChunkError> {
        let mut d = ChunkDecoder::default();
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut at = 0;
        while at < input.len() {
            let end = (at + step).min(input.len());
            buf.extend_from_slice(&input[at..end]);
            at = end;
            let (got, done) = d.decode(&mut buf)?;
            data.extend_from_slice(&got);
            if let Some(trailers) = done {
                buf.extend_from_slice(&input[at..]);
                return Ok(Decoded {
                    data,
                    trailers: Some(trailers),
                    rest: buf.to_vec(),
                });
            }
        }
        Ok(Decoded {
            data,
            trailers: None,
            rest: buf.to_vec(),
        })
    }

    #[test]
    fn decoder_data_and_trailers_in_any_fragments() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\ngrpc-status: 0\r\nX-A:b  \r\n\r\nNEXT";
        for step in 1..=body.len() {
            let got = decode_all(body, step).expect("decodes");
            assert_eq!(got.data, b"hello world", "step {step}");
            assert_eq!(got.rest, b"NEXT", "step {step}");
            let trailers = got.trailers.expect("ended");
            assert_eq!(trailers["grpc-status"], "0");
            assert_eq!(trailers["x-a"], "b");
        }
    }

    #[test]
    fn decoder_ends_where_the_scanner_ends() {
        let input = [SAMPLE, b"GET / HTTP/1.1\r\n"].concat();
        for step in 1..=input.len() {
            let got = decode_all(&input, step).expect("decodes");
            assert_eq!(got.rest, b"GET / HTTP/1.1\r\n", "step {step}");
            assert_eq!(
                got.data,
                [&b"hello"[..], b"abcdefghijklmnopqrstuvwxyz"].concat()
            );
            let trailers = got.trailers.expect("ended");
            assert_eq!(trailers["x-trailer"], "yes");
            assert_eq!(trailers["etag"], "\"t\"");
        }
        assert_eq!(
            decode_all(b"3\r\nab", 2),
            Ok(Decoded {
                data: b"ab".to_vec(),
                trailers: None,
                rest: Vec::new()
            })
        );
    }

    /// One grammar: every body the scanner refuses, the decoder refuses with the same error,
    /// however it is cut (the decoder once accepted `5 \r\n`, `5;a=\"b\r\n` and more).
    #[test]
    fn decoder_refuses_what_the_scanner_refuses() {
        for (body, want) in MALFORMED {
            for step in [1, 2, body.len()] {
                assert_eq!(
                    decode_all(body, step).map(|_| ()),
                    Err(*want),
                    "step {step}: {:?}",
                    String::from_utf8_lossy(body)
                );
            }
        }
        let mut line = b"1;a=".to_vec();
        line.extend(std::iter::repeat_n(b'x', MAX_CHUNK_LINE_BYTES as usize));
        assert_eq!(decode_all(&line, 100), Err(ChunkError::LineTooLong));
        let mut trailer = b"0\r\n".to_vec();
        while trailer.len() < MAX_TRAILER_BYTES as usize + 10 {
            trailer.extend_from_slice(b"X-Long-Trailer: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(decode_all(&trailer, 100), Err(ChunkError::TrailerTooLarge));
        let mut d = ChunkDecoder::default();
        assert!(d.decode(&mut BytesMut::from(&b"z"[..])).is_err());
        assert_eq!(
            d.decode(&mut BytesMut::from(&b"0\r\n\r\n"[..])),
            Err(ChunkError::InvalidSize),
            "an error is sticky"
        );
    }

    #[test]
    fn decoder_trailers_drop_framing_fields_and_keep_any_token() {
        let body = b"0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nconnection: x\r\n\
                     Host: h\r\nTE: trailers\r\n!#$%&'*+-.^_`|~: \tv\x80 w \r\n\r\n";
        let got = decode_all(body, body.len()).expect("decodes");
        let trailers = got.trailers.expect("ended");
        assert_eq!(trailers.len(), 1, "{trailers:?}");
        assert_eq!(trailers["!#$%&'*+-.^_`|~"].as_bytes(), b"v\x80 w");
    }
}
