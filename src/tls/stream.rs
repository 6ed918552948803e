//! BoringSSL on monoio: a synchronous `SslStream` driven over in-memory buffers.
//!
//! BoringSSL reads ciphertext from `Bio::incoming` and writes ciphertext to `Bio::outgoing`;
//! it never touches the socket. When it wants more input we fill `incoming` with one
//! owned-buffer read of the `Socket`, and whatever it produced is drained by an owned-buffer
//! write. The `Socket` parks in-flight operations, so a `TlsStream` call dropped mid-way (a
//! timeout) loses no bytes: the next call resumes from the same buffers.

use std::io::{self, Read, Write};

use boring::ssl::{self, ErrorCode, Ssl, SslRef, SslStream};
use bytes::{Buf, BytesMut};
use foreign_types::ForeignTypeRef;

use crate::io::Socket;

/// Decrypted bytes asked of BoringSSL per call: one TLS record's worth.
const PLAINTEXT_CHUNK: usize = 16 * 1024;

/// The in-memory transport under `SslStream`.
#[derive(Default)]
pub struct Bio {
    incoming: BytesMut,
    outgoing: Vec<u8>,
}

impl Read for Bio {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.incoming.is_empty() {
            // Tells BoringSSL to return SSL_ERROR_WANT_READ; the async side refills.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.incoming.len());
        buf[..n].copy_from_slice(&self.incoming[..n]);
        self.incoming.advance(n);
        Ok(n)
    }
}

impl Write for Bio {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why a handshake did not complete.
#[derive(Debug)]
pub enum HandshakeError {
    /// The peer closed the connection before the handshake finished.
    Eof,
    /// Reading or writing the socket failed.
    Io(io::Error),
    /// TLS refused the peer (bad certificate, no shared cipher, alert received...), with the
    /// certificate verification error when that was the cause.
    Tls(ssl::Error, Option<&'static str>),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Eof => f.write_str("peer closed the connection during the handshake"),
            Self::Io(e) => write!(f, "i/o error during the handshake: {e}"),
            Self::Tls(e, verify) => {
                match e.ssl_error() {
                    Some(stack) => write!(f, "TLS handshake failed: {stack}")?,
                    None => write!(f, "TLS handshake failed: {e}")?,
                }
                match verify {
                    Some(reason) => write!(f, " (certificate verification: {reason})"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl std::error::Error for HandshakeError {}

/// A TLS connection over a `Socket`.
pub struct TlsStream {
    tls: SslStream<Bio>,
    sock: Socket,
    /// Set once the peer's close_notify or EOF was read: later reads return 0.
    read_closed: bool,
}

impl TlsStream {
    /// Runs the server side of the handshake.
    pub async fn accept(ssl: Ssl, sock: Socket) -> Result<Self, HandshakeError> {
        // SAFETY: a plain setter on the SSL object this call owns.
        unsafe { boring_sys::SSL_set_accept_state(ssl.as_ptr()) };
        let mut stream = Self::new(ssl, sock)?;
        stream.handshake().await?;
        // BoringSSL holds TLS 1.3 session tickets back until the server's first write; a
        // zero-byte write queues them now, so a client that sends nothing (TCP mode, a probe)
        // still gets one. They go out with the first response, or before the connection idles.
        // SAFETY: a zero-length write from a valid (empty) buffer on the stream's own SSL.
        let _ = unsafe {
            boring_sys::SSL_write(stream.tls.ssl().as_ptr(), [0u8; 0].as_ptr().cast(), 0)
        };
        Ok(stream)
    }

    /// Runs the client side of the handshake.
    pub async fn connect(ssl: Ssl, sock: Socket) -> Result<Self, HandshakeError> {
        // SAFETY: a plain setter on the SSL object this call owns.
        unsafe { boring_sys::SSL_set_connect_state(ssl.as_ptr()) };
        let mut stream = Self::new(ssl, sock)?;
        stream.handshake().await?;
        Ok(stream)
    }

    fn new(ssl: Ssl, sock: Socket) -> Result<Self, HandshakeError> {
        let tls = SslStream::new(ssl, Bio::default())
            .map_err(|e| HandshakeError::Io(io::Error::other(e)))?;
        Ok(Self {
            tls,
            sock,
            read_closed: false,
        })
    }

    async fn handshake(&mut self) -> Result<(), HandshakeError> {
        loop {
            let res = self.tls.do_handshake();
            // Whatever BoringSSL produced goes out first, alerts included.
            let flushed = self.flush_tls().await;
            match res {
                Ok(()) => return flushed.map_err(HandshakeError::Io),
                Err(e) if e.code() == ErrorCode::WANT_READ => {
                    flushed.map_err(HandshakeError::Io)?;
                    if self.fill().await.map_err(HandshakeError::Io)? == 0 {
                        return Err(HandshakeError::Eof);
                    }
                }
                Err(e) if e.code() == ErrorCode::WANT_WRITE => {
                    flushed.map_err(HandshakeError::Io)?;
                }
                Err(e) => {
                    let verify = self
                        .tls
                        .ssl()
                        .verify_result()
                        .err()
                        .map(|v| v.error_string());
                    return Err(HandshakeError::Tls(e, verify));
                }
            }
        }
    }

    pub fn ssl(&self) -> &SslRef {
        self.tls.ssl()
    }

    pub fn socket(&self) -> &Socket {
        &self.sock
    }

    /// Bytes received from the peer but not yet decrypted (e.g. a pipelined request that came
    /// with the handshake's last flight).
    pub fn has_buffered_input(&self) -> bool {
        !self.tls.get_ref().incoming.is_empty() || self.tls.ssl().pending() > 0
    }

    async fn fill(&mut self) -> io::Result<usize> {
        // The socket reads into its own buffer and appends: no reservation needed here.
        self.sock.read_into(&mut self.tls.get_mut().incoming).await
    }

    async fn flush_tls(&mut self) -> io::Result<()> {
        let out = &mut self.tls.get_mut().outgoing;
        if out.is_empty() {
            return self.sock.flush().await;
        }
        self.sock.write_owned(out).await
    }

    /// Decrypts what the peer sent and appends it to `dst`.
    ///
    /// # Return
    /// The number of plaintext bytes appended; 0 when the peer closed (close_notify or EOF).
    ///
    /// # Cancel safety
    /// Cancel-safe: ciphertext in flight stays with the socket and is decrypted next call.
    pub async fn read_into(&mut self, dst: &mut BytesMut) -> io::Result<usize> {
        if self.read_closed {
            return Ok(0);
        }
        loop {
            dst.reserve(PLAINTEXT_CHUNK);
            let res = self.tls.ssl_read_uninit(dst.spare_capacity_mut());
            match res {
                Ok(n) => {
                    // SAFETY: BoringSSL initialised the first `n` spare bytes.
                    unsafe { dst.set_len(dst.len() + n) };
                    // Post-handshake messages (key updates) may have produced output.
                    if !self.tls.get_ref().outgoing.is_empty() {
                        self.flush_tls().await?;
                    }
                    return Ok(n);
                }
                Err(e) if e.code() == ErrorCode::WANT_READ => {
                    self.flush_tls().await?;
                    if self.fill().await? == 0 {
                        // EOF without close_notify: HTTP framing tells truncation apart.
                        self.read_closed = true;
                        return Ok(0);
                    }
                }
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    self.read_closed = true;
                    return Ok(0);
                }
                Err(e) if e.code() == ErrorCode::WANT_WRITE => self.flush_tls().await?,
                Err(e) => return Err(tls_io_error(e)),
            }
        }
    }

    /// Waits until the peer sent something, without holding a read buffer meanwhile.
    pub async fn readable(&mut self) -> io::Result<()> {
        if self.has_buffered_input() || self.read_closed {
            return Ok(());
        }
        // Nothing may stay queued while the connection idles (session tickets, above all).
        if !self.tls.get_ref().outgoing.is_empty() {
            self.flush_tls().await?;
        }
        self.sock.readable().await
    }

    /// Encrypts and sends all of `data`.
    ///
    /// # Cancel safety
    /// Bytes accepted before a cancellation are still sent, in order, by the next call or
    /// `flush`; the caller must not send them again.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let mut rest = data;
        while !rest.is_empty() {
            match self.tls.ssl_write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.code() == ErrorCode::WANT_WRITE => self.flush_tls().await?,
                Err(e) => return Err(tls_io_error(e)),
            }
        }
        self.flush_tls().await
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().await
    }

    /// Sends close_notify and a FIN; the peer may still send.
    pub async fn shutdown_write(&mut self) -> io::Result<()> {
        let _ = self.tls.shutdown();
        self.flush_tls().await?;
        self.sock.shutdown_write().await
    }

    /// Frees buffers an idle connection does not need.
    pub fn release_buffers(&mut self) {
        let bio = self.tls.get_mut();
        if bio.incoming.is_empty() {
            bio.incoming = BytesMut::new();
        }
        if bio.outgoing.is_empty() {
            bio.outgoing = Vec::new();
        }
        self.sock.release_buffers();
    }
}

fn tls_io_error(e: ssl::Error) -> io::Error {
    match e.into_io_error() {
        Ok(io) => io,
        Err(e) => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boring::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
    use monoio::net::{TcpListener, TcpStream};
    use std::time::Duration;

    fn contexts(dir: &std::path::Path) -> (boring::ssl::SslContext, boring::ssl::SslContext) {
        let pki = crate::pki::generate(dir).unwrap();
        let settings = crate::tls::ServerSettings {
            cert_pem: &std::fs::read(&pki.server.cert).unwrap(),
            key_pem: &std::fs::read(&pki.server.key).unwrap(),
            ca_pem: Some(&std::fs::read(&pki.client_ca_bundle).unwrap()),
            mode: crate::config::VerifyMode::Required,
            reject: crate::config::Reject::Http,
            verify_depth: 2,
            min_tls13: false,
            policy_tag: b"test",
            tickets: None,
            session_cache_size: 1024,
            session_timeout: Duration::from_secs(300),
            verify_cache: 16,
        };
        let server = crate::tls::server_context(&settings).unwrap();
        let mut client = SslConnector::builder(SslMethod::tls()).unwrap();
        client.set_ca_file(&pki.server_ca).unwrap();
        client
            .set_certificate_chain_file(&pki.client1.cert)
            .unwrap();
        client
            .set_private_key_file(&pki.client1.key, SslFiletype::PEM)
            .unwrap();
        client.set_verify(SslVerifyMode::PEER);
        (server, client.build().into_context())
    }

    async fn connected(dir: &std::path::Path) -> (TlsStream, TlsStream) {
        let (server_ctx, client_ctx) = contexts(dir);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = monoio::spawn(async move {
            let tcp = TcpStream::connect_addr(addr).await.unwrap();
            let mut ssl = Ssl::new(&client_ctx).unwrap();
            ssl.set_hostname("localhost").unwrap();
            TlsStream::connect(ssl, Socket::new(tcp).unwrap())
                .await
                .unwrap()
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let server = TlsStream::accept(Ssl::new(&server_ctx).unwrap(), Socket::new(tcp).unwrap())
            .await
            .unwrap();
        (server, client.await)
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn mtls_handshake_exposes_client_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _client) = connected(dir.path()).await;
        let peer = server.ssl().peer_certificate().expect("client certificate");
        assert!(server.ssl().verify_result().is_ok());
        let cn = peer
            .subject_name()
            .entries()
            .last()
            .unwrap()
            .data()
            .as_utf8()
            .unwrap();
        assert_eq!(cn.to_string(), "client.1.local");
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn timed_out_read_keeps_ciphertext() {
        let dir = tempfile::tempdir().unwrap();
        let (mut server, mut client) = connected(dir.path()).await;
        let mut buf = BytesMut::new();
        let r = monoio::time::timeout(Duration::from_millis(30), server.read_into(&mut buf)).await;
        assert!(r.is_err(), "nothing was sent yet");
        // Many records, so some arrive while no read is being awaited.
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&payload).await.unwrap();
        client.shutdown_write().await.unwrap();
        while buf.len() < payload.len() {
            // Cancel reads at random-ish points: every cancellation must lose nothing.
            let _ =
                monoio::time::timeout(Duration::from_micros(50), server.read_into(&mut buf)).await;
            if buf.len() < payload.len() {
                let n = server.read_into(&mut buf).await.unwrap();
                assert!(
                    n > 0 || buf.len() == payload.len(),
                    "early EOF at {}",
                    buf.len()
                );
            }
        }
        assert_eq!(&buf[..], &payload[..]);
        assert_eq!(server.read_into(&mut buf).await.unwrap(), 0);
    }
}
