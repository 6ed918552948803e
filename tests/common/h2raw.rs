//! A raw HTTP/2 client for tests that must send what well-behaved clients never do (floods,
//! malformed frames): frames written byte by byte, header blocks as HPACK literals without
//! indexing (no Huffman, no dynamic table), frames read back undecoded except `:status` when the
//! server used the static table.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use boring::ssl::{SslConnector, SslFiletype, SslMethod, SslStream};

use super::CertKey;

/// The client connection preface (RFC 9113, 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

/// Error codes (RFC 9113, 7).
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame as read.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// GOAWAY's or RST_STREAM's error code.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            GOAWAY => 4,
            RST_STREAM => 0,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The `:status` of a HEADERS frame whose block starts with a static-table status (200, 204,
    /// 206, 304, 400, 404, 500), or a literal status, plain or Huffman-coded (as the h2 crate
    /// sends the others).
    pub fn status(&self) -> Option<u16> {
        if self.kind != HEADERS {
            return None;
        }
        let mut block = &self.payload[..];
        if self.flags & 0x8 != 0 {
            let pad = *block.first()? as usize;
            block = block.get(1..block.len().checked_sub(pad)?)?;
        }
        if self.flags & 0x20 != 0 {
            block = block.get(5..)?;
        }
        let first = *block.first()?;
        let code = match first {
            0x88 => 200,
            0x89 => 204,
            0x8a => 206,
            0x8b => 304,
            0x8c => 400,
            0x8d => 404,
            0x8e => 500,
            // Literal with name index 8..14 (:status).
            0x08..=0x0e | 0x18..=0x1e | 0x48..=0x4e => {
                let len = *block.get(1)?;
                let v = block.get(2..2 + usize::from(len & 0x7f))?;
                if len & 0x80 != 0 {
                    return huffman_status(v);
                }
                std::str::from_utf8(v).ok()?.parse().ok()?
            }
            _ => return None,
        };
        Some(code)
    }
}

/// Three Huffman-coded digits: 0-2 are the 5-bit codes 0-2, 3-9 the 6-bit codes 0x19-0x1f
/// (RFC 7541, Appendix B).
fn huffman_status(coded: &[u8]) -> Option<u16> {
    let bits: Vec<u8> = coded
        .iter()
        .flat_map(|byte| (0..8).rev().map(move |i| (byte >> i) & 1))
        .collect();
    let (mut at, mut status) = (0, 0u16);
    for _ in 0..3 {
        let five = bits.get(at..at + 5)?.iter().fold(0u8, |a, &b| a << 1 | b);
        let digit = if five < 3 {
            at += 5;
            five
        } else {
            let six = bits.get(at..at + 6)?.iter().fold(0u8, |a, &b| a << 1 | b);
            at += 6;
            six.checked_sub(0x19)? + 3
        };
        if digit > 9 {
            return None;
        }
        status = status * 10 + u16::from(digit);
    }
    Some(status)
}

/// HPACK: a literal header field without indexing, new name, no Huffman: any bytes go through,
/// uppercase and control characters included.
pub fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    certgate_tools::hpack::literal(out, 0, name, value);
}

/// A header block of literals.
pub fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in fields {
        literal(&mut out, n.as_bytes(), v.as_bytes());
    }
    out
}

/// A header block of literals, any bytes in names and values.
pub fn block_bytes(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in fields {
        literal(&mut out, n, v);
    }
    out
}

/// A GET's header block for `path` at `authority`.
pub fn get_block(authority: &str, path: &str) -> Vec<u8> {
    block(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", authority),
        (":path", path),
    ])
}

/// A serialized frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    assert!(len < 1 << 24);
    let mut out = Vec::with_capacity(9 + len);
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A SETTINGS frame with the given (id, value) pairs.
pub fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in pairs {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &p)
}

/// A raw HTTP/2 connection, TLS (ALPN h2) or plain (prior knowledge).
pub struct H2Raw<S> {
    pub stream: S,
    rbuf: Vec<u8>,
}

impl H2Raw<SslStream<TcpStream>> {
    /// Connects with ALPN `h2` only, SNI `localhost`, presenting `client` if given; fails unless
    /// the server selected h2.
    pub fn tls(
        addr: SocketAddr,
        server_ca: &Path,
        client: Option<&CertKey>,
    ) -> Result<Self, String> {
        let mut b = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
        b.set_ca_file(server_ca).map_err(|e| e.to_string())?;
        b.set_alpn_protos(b"\x02h2").map_err(|e| e.to_string())?;
        if let Some(ck) = client {
            b.set_certificate_chain_file(&ck.cert)
                .map_err(|e| e.to_string())?;
            b.set_private_key_file(&ck.key, SslFiletype::PEM)
                .map_err(|e| e.to_string())?;
        }
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("TCP connect {addr}: {e}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        tcp.set_nodelay(true).unwrap();
        let tls = b
            .build()
            .connect("localhost", tcp)
            .map_err(|e| format!("TLS handshake: {e}"))?;
        if tls.ssl().selected_alpn_protocol() != Some(b"h2") {
            return Err("the server did not select ALPN h2".into());
        }
        Ok(Self {
            stream: tls,
            rbuf: Vec::new(),
        })
    }

    pub fn tcp(&self) -> &TcpStream {
        self.stream.get_ref()
    }
}

impl H2Raw<TcpStream> {
    /// Connects in plain TCP (h2c with prior knowledge).
    pub fn plain(addr: SocketAddr) -> Result<Self, String> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("TCP connect {addr}: {e}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        tcp.set_nodelay(true).unwrap();
        Ok(Self {
            stream: tcp,
            rbuf: Vec::new(),
        })
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.stream
    }
}

impl<S: Read + Write> H2Raw<S> {
    /// Sends the preface and a SETTINGS frame with `pairs`.
    pub fn start(&mut self, pairs: &[(u16, u32)]) -> io::Result<()> {
        let mut out = PREFACE.to_vec();
        out.extend_from_slice(&settings(pairs));
        self.send(&out)
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    pub fn send_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        self.send(&frame(kind, flags, stream, payload))
    }

    /// Reads one frame; `Ok(None)` at end of stream.
    pub fn read_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if self.rbuf.len() >= 9 {
                let len = (self.rbuf[0] as usize) << 16
                    | (self.rbuf[1] as usize) << 8
                    | self.rbuf[2] as usize;
                if self.rbuf.len() >= 9 + len {
                    let f = Frame {
                        kind: self.rbuf[3],
                        flags: self.rbuf[4],
                        stream: u32::from_be_bytes([
                            self.rbuf[5],
                            self.rbuf[6],
                            self.rbuf[7],
                            self.rbuf[8],
                        ]) & 0x7fff_ffff,
                        payload: self.rbuf[9..9 + len].to_vec(),
                    };
                    self.rbuf.drain(..9 + len);
                    return Ok(Some(f));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = match self.stream.read(&mut chunk) {
                Ok(n) => n,
                // A reset after GOAWAY is the end of the stream too.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(None);
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads frames until `want` matches one (returned) or the stream ends (`None`). Answers
    /// the server's SETTINGS with an ACK on the way, as a client must.
    pub fn read_until(
        &mut self,
        mut want: impl FnMut(&Frame) -> bool,
    ) -> io::Result<Option<Frame>> {
        while let Some(f) = self.read_frame()? {
            if f.kind == SETTINGS && f.flags & ACK == 0 {
                self.send_frame(SETTINGS, ACK, 0, &[])?;
            }
            if want(&f) {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }
}
