//! BoringSSL on monoio: a synchronous `SslStream` driven over in-memory buffers.
//!
//! BoringSSL reads ciphertext from `Bio::incoming` and writes ciphertext to `Bio::outgoing`;
//! it never touches the socket. When it wants more input we fill `incoming` with one
//! owned-buffer read of the `Socket`, and whatever it produced is drained by an owned-buffer
//! write. The `Socket` parks in-flight operations, so a `TlsStream` call dropped mid-way (a
//! timeout) loses no bytes: the next call resumes from the same buffers.
//!
//! BoringSSL's error queue is per thread, and every connection of a worker shares the thread:
//! it is emptied before each handshake step, read, write and shutdown (as Pingora's boring
//! stream does before every poll), so an error one connection left can never be reported as
//! another's.

use std::cell::Cell;
use std::ffi::c_int;
use std::io::{self, Read, Write};

use boring::error::ErrorStack;
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
    /// The peer closed the connection without sending a byte (a port probe, a health check).
    Closed,
    /// The peer closed the connection in the middle of the handshake.
    Eof,
    /// Reading or writing the socket failed.
    Io(io::Error),
    /// TLS ended the handshake: BoringSSL's error, the alert that ended it (received from the
    /// peer, or sent to it), and the certificate verification error when the peer presented a
    /// certificate that failed verification.
    Tls(ssl::Error, Option<Alert>, Option<&'static str>),
}

/// A fatal TLS alert that ended a handshake, by its description code (RFC 8446, 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    /// The peer refused us.
    Received(u8),
    /// We refused the peer.
    Sent(u8),
}

/// The TLS name of an alert description (`unknown_ca`, `handshake_failure`...).
pub fn alert_name(description: u8) -> Option<&'static str> {
    Some(match description {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        121 => "ech_required",
        _ => return None,
    })
}

struct AlertName(u8);

impl std::fmt::Display for AlertName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match alert_name(self.0) {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

impl HandshakeError {
    /// The cause in words, calling the peer `peer` (`"client"`, `"server"`): one phrase, no
    /// prefix, e.g. `client sent alert unknown_ca (it does not trust our certificate's CA)`.
    pub fn cause(&self, peer: &'static str) -> Cause<'_> {
        Cause { error: self, peer }
    }
}

/// [`HandshakeError::cause`].
pub struct Cause<'a> {
    error: &'a HandshakeError,
    peer: &'static str,
}

impl std::fmt::Display for Cause<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let peer = self.peer;
        let (e, alert, verify) = match self.error {
            HandshakeError::Closed => {
                return write!(f, "{peer} closed the connection without sending anything")
            }
            HandshakeError::Eof => {
                return write!(f, "{peer} closed the connection during the handshake")
            }
            HandshakeError::Io(e) => return write!(f, "i/o error during the handshake: {e}"),
            HandshakeError::Tls(e, alert, verify) => (e, *alert, *verify),
        };
        if let Some(Alert::Received(a)) = alert {
            write!(f, "{peer} sent alert {}", AlertName(a))?;
            return match a {
                48 => f.write_str(" (it does not trust the CA of our certificate)"),
                42 | 43 | 45 | 46 => f.write_str(" (it refused our certificate)"),
                _ => Ok(()),
            };
        }
        // The first reason of the SSL library is the cause; the ones after it are context.
        let reason = e.ssl_error().and_then(|stack| {
            stack
                .errors()
                .iter()
                .find(|r| r.library_code() == boring_sys::ERR_LIB_SSL.0 as i32)
                .or_else(|| stack.errors().first())
        });
        match (reason.map(|r| r.reason_code()), verify) {
            (Some(boring_sys::SSL_R_CERTIFICATE_VERIFY_FAILED), Some(v)) => {
                write!(f, "{peer} certificate verification failed: {v}")?
            }
            (Some(boring_sys::SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE), _) => {
                write!(f, "{peer} sent no certificate")?
            }
            (Some(boring_sys::SSL_R_HTTP_REQUEST | boring_sys::SSL_R_HTTPS_PROXY_REQUEST), _) => {
                write!(f, "{peer} sent plain HTTP, not TLS")?
            }
            (Some(boring_sys::SSL_R_WRONG_VERSION_NUMBER), _) => write!(
                f,
                "{peer} did not send a TLS handshake (wrong version number)"
            )?,
            (Some(boring_sys::SSL_R_NO_SHARED_CIPHER), _) => {
                write!(f, "no cipher suite in common with the {peer}")?
            }
            (Some(boring_sys::SSL_R_UNSUPPORTED_PROTOCOL), _) => {
                write!(f, "no TLS version in common with the {peer}")?
            }
            _ => match reason.and_then(|r| r.reason()) {
                Some(r) => write!(f, "{}", r.to_ascii_lowercase().replace('_', " "))?,
                None => write!(f, "{e}")?,
            },
        }
        match alert {
            Some(Alert::Sent(a)) => write!(f, "; sent alert {}", AlertName(a)),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.cause("peer").fmt(f)
    }
}

impl std::error::Error for HandshakeError {}

thread_local! {
    /// The last alert BoringSSL sent or received on this thread. Handshake steps run
    /// synchronously, so right after one it can only be that step's alert.
    static LAST_ALERT: Cell<Option<Alert>> = const { Cell::new(None) };
}

/// `SSL_set_info_callback`: notes alerts (called from inside BoringSSL, on this thread).
unsafe extern "C" fn note_alert(_ssl: *const boring_sys::SSL, kind: c_int, value: c_int) {
    if kind & boring_sys::SSL_CB_ALERT == 0 {
        return;
    }
    // value = level << 8 | description.
    let description = (value & 0xff) as u8;
    let alert = if kind & boring_sys::SSL_CB_READ_ALERT == boring_sys::SSL_CB_READ_ALERT {
        Alert::Received(description)
    } else {
        Alert::Sent(description)
    };
    LAST_ALERT.with(|a| a.set(Some(alert)));
}

/// An alert record in plaintext at the head of `incoming`: `15 03 0x 00 02 level description`.
/// A TLS 1.3 peer that refuses our certificate before it has keys sends one where BoringSSL
/// expects an encrypted record, and BoringSSL then only reports a bad record.
fn plaintext_alert(incoming: &[u8]) -> Option<u8> {
    match incoming {
        [0x15, 0x03, _, 0x00, 0x02, _, description, ..] => Some(*description),
        _ => None,
    }
}

/// Makes `ssl` the server side of a connection, as [`TlsStream::accept`] does.
///
/// BoringSSL is also told to free the handshake configuration (the SSL object's copy of the
/// certificate, key and verification settings) the moment the handshake completes: a server
/// never renegotiates, and tickets are sealed before that moment, so an established connection
/// does not need it. After that, the certificate this connection served is the one of
/// `ssl.ssl_context()` (the listener's, or the SNI block's), not `ssl.certificate()`.
pub fn server_side(ssl: &SslRef) {
    // SAFETY: plain setters on a live SSL object, before its handshake.
    unsafe {
        boring_sys::SSL_set_accept_state(ssl.as_ptr());
        boring_sys::SSL_set_shed_handshake_config(ssl.as_ptr(), 1);
    }
}

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
        Self::accept_after(ssl, sock, BytesMut::new()).await
    }

    /// Runs the server side of the handshake on a connection whose first bytes, `early`, were
    /// already read (what followed a PROXY protocol header).
    pub async fn accept_after(
        ssl: Ssl,
        sock: Socket,
        early: BytesMut,
    ) -> Result<Self, HandshakeError> {
        server_side(&ssl);
        let mut stream = Self::new(ssl, sock)?;
        stream.tls.get_mut().incoming = early;
        stream.handshake().await?;
        stream.queue_tickets()?;
        Ok(stream)
    }

    /// BoringSSL holds TLS 1.3 session tickets back until the server's first write; a
    /// zero-byte write queues them now, so a client that sends nothing (TCP mode, a probe)
    /// still gets one. They go out with the first response, or before the connection idles.
    fn queue_tickets(&mut self) -> Result<(), HandshakeError> {
        clear_error_queue();
        // SAFETY: a zero-length write from a valid (empty) buffer on the stream's own SSL.
        let ret =
            unsafe { boring_sys::SSL_write(self.tls.ssl().as_ptr(), [0u8; 0].as_ptr().cast(), 0) };
        if ret >= 0 {
            return Ok(());
        }
        match self.tls.ssl().error_code(ret) {
            // Nothing to report: our transport never blocks, so this is only for completeness.
            ErrorCode::WANT_READ | ErrorCode::WANT_WRITE => Ok(()),
            // The write failed (a ticket could not be sealed): the connection cannot write
            // either, and the error leaves the queue with it.
            _ => Err(HandshakeError::Tls(
                ssl::Error::from(ErrorStack::get()),
                None,
                None,
            )),
        }
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
        // SAFETY: a plain setter on the SSL object this call owns; the callback is a plain
        // function that touches nothing but a thread-local.
        unsafe { boring_sys::SSL_set_info_callback(ssl.as_ptr(), Some(note_alert)) };
        let tls = SslStream::new(ssl, Bio::default())
            .map_err(|e| HandshakeError::Io(io::Error::other(e)))?;
        Ok(Self {
            tls,
            sock,
            read_closed: false,
        })
    }

    async fn handshake(&mut self) -> Result<(), HandshakeError> {
        let mut received = false;
        loop {
            let head_alert = plaintext_alert(&self.tls.get_ref().incoming);
            LAST_ALERT.with(|a| a.set(None));
            clear_error_queue();
            let res = self.tls.do_handshake();
            // Whatever BoringSSL produced goes out first, alerts included.
            let flushed = self.flush_tls().await;
            match res {
                Ok(()) => return flushed.map_err(HandshakeError::Io),
                Err(e) if e.code() == ErrorCode::WANT_READ => {
                    flushed.map_err(HandshakeError::Io)?;
                    if self.fill().await.map_err(HandshakeError::Io)? == 0 {
                        return Err(if received {
                            HandshakeError::Eof
                        } else {
                            HandshakeError::Closed
                        });
                    }
                    received = true;
                }
                Err(e) if e.code() == ErrorCode::WANT_WRITE => {
                    flushed.map_err(HandshakeError::Io)?;
                }
                Err(e) => return Err(self.failure(e, head_alert)),
            }
        }
    }

    /// Why BoringSSL ended the handshake; `head_alert` is a plaintext alert that stood at the
    /// head of the input when the failing step began.
    fn failure(&self, e: ssl::Error, head_alert: Option<u8>) -> HandshakeError {
        let noted = LAST_ALERT.with(Cell::take);
        let stack = e.ssl_error();
        let has = |code: c_int| {
            stack.is_some_and(|s| {
                s.errors().iter().any(|r| {
                    r.library_code() == boring_sys::ERR_LIB_SSL.0 as c_int
                        && r.reason_code() == code
                })
            })
        };
        let alert = match (noted, head_alert) {
            (Some(a @ Alert::Received(_)), _) => Some(a),
            (_, Some(d))
                if has(boring_sys::SSL_R_BAD_PACKET_LENGTH)
                    || has(boring_sys::SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC) =>
            {
                Some(Alert::Received(d))
            }
            (noted, _) => noted,
        };
        // A verification error only when a certificate was presented and judged.
        let verify = if has(boring_sys::SSL_R_CERTIFICATE_VERIFY_FAILED) {
            self.tls.ssl().verify_result().err().and_then(|v| {
                (v.as_raw() != boring_sys::X509_V_ERR_INVALID_CALL).then(|| v.error_string())
            })
        } else {
            None
        };
        HandshakeError::Tls(e, alert, verify)
    }

    /// The BoringSSL connection, for the peer certificate, version, cipher and verify result.
    pub fn ssl(&self) -> &SslRef {
        self.tls.ssl()
    }

    /// The TCP socket underneath.
    pub fn socket(&self) -> &Socket {
        &self.sock
    }

    /// The TCP socket underneath, to check a pooled connection.
    pub fn socket_mut(&mut self) -> &mut Socket {
        &mut self.sock
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
            clear_error_queue();
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
            clear_error_queue();
            match self.tls.ssl_write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.code() == ErrorCode::WANT_WRITE => self.flush_tls().await?,
                Err(e) => return Err(tls_io_error(e)),
            }
        }
        self.flush_tls().await
    }

    /// Writes out every TLS record still buffered.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().await
    }

    /// Sends close_notify and a FIN; the peer may still send.
    pub async fn shutdown_write(&mut self) -> io::Result<()> {
        clear_error_queue();
        // A failed close_notify changes nothing: the FIN below ends the stream all the same.
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

/// Empties this thread's error queue when something left an error in it, so that the next
/// BoringSSL call's failure is its own. (BoringSSL's `SSL_do_handshake`, `SSL_read`,
/// `SSL_write` and `SSL_shutdown` also clear it on entry; the peek keeps the common case at
/// one thread-local load.)
#[inline]
fn clear_error_queue() {
    // SAFETY: both calls touch only this thread's error queue.
    if unsafe { boring_sys::ERR_peek_error() } != 0 {
        unsafe { boring_sys::ERR_clear_error() };
    }
}

/// A TLS failure of a read or write as an `io::Error` whose source is the `ssl::Error`.
fn tls_io_error(e: ssl::Error) -> io::Error {
    match e.into_io_error() {
        Ok(io) => io,
        Err(e) => io::Error::new(io::ErrorKind::InvalidData, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boring::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode, SslVersion};
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

    /// The server's handshake error when a client that trusts `client_ca` (not the server's CA)
    /// connects, offering at most `max` TLS version.
    async fn untrusting_client(dir: &std::path::Path, max: Option<SslVersion>) -> HandshakeError {
        let (server_ctx, _) = contexts(dir);
        let mut client = SslConnector::builder(SslMethod::tls()).unwrap();
        client.set_ca_file(dir.join("rogue-ca.pem")).unwrap();
        client.set_max_proto_version(max).unwrap();
        let client_ctx = client.build().into_context();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = monoio::spawn(async move {
            let tcp = TcpStream::connect_addr(addr).await.unwrap();
            let mut ssl = Ssl::new(&client_ctx).unwrap();
            ssl.set_hostname("localhost").unwrap();
            TlsStream::connect(ssl, Socket::new(tcp).unwrap())
                .await
                .err()
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let server =
            TlsStream::accept(Ssl::new(&server_ctx).unwrap(), Socket::new(tcp).unwrap()).await;
        assert!(client.await.is_some(), "the client must refuse the server");
        match server {
            Ok(_) => panic!("the server handshake succeeded"),
            Err(e) => e,
        }
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn an_untrusting_client_is_named_by_its_alert() {
        for max in [None, Some(SslVersion::TLS1_2)] {
            let dir = tempfile::tempdir().unwrap();
            let e = untrusting_client(dir.path(), max).await;
            assert!(
                matches!(e, HandshakeError::Tls(_, Some(Alert::Received(48)), None)),
                "{max:?}: {e:?}"
            );
            assert_eq!(
                e.cause("client").to_string(),
                "client sent alert unknown_ca (it does not trust the CA of our certificate)"
            );
        }
    }

    /// Leaves an error in this thread's queue, as a call whose failure nobody read does.
    fn leave_an_error() {
        boring::x509::X509::from_pem(b"not a certificate")
            .unwrap_err()
            .put();
        // SAFETY: reads this thread's error queue only.
        assert_ne!(unsafe { boring_sys::ERR_peek_error() }, 0);
    }

    #[monoio::test_all(timer_enabled = true)]
    async fn a_leftover_error_is_never_another_connections() {
        // One connection fails mid-handshake on this thread, and an error is left behind...
        let failed = tempfile::tempdir().unwrap();
        let e = untrusting_client(failed.path(), None).await;
        assert!(matches!(e, HandshakeError::Tls(..)), "{e:?}");
        leave_an_error();
        // ...the next connection's handshake, reads, writes and shutdown are its own.
        let dir = tempfile::tempdir().unwrap();
        let (mut server, mut client) = connected(dir.path()).await;
        let mut buf = BytesMut::new();
        leave_an_error();
        client.write_all(b"ping").await.unwrap();
        leave_an_error();
        assert_eq!(server.read_into(&mut buf).await.unwrap(), 4);
        leave_an_error();
        server.write_all(b"pong").await.unwrap();
        leave_an_error();
        assert_eq!(client.read_into(&mut buf).await.unwrap(), 4);
        assert_eq!(&buf[..], b"pingpong");
        leave_an_error();
        server.shutdown_write().await.unwrap();
        leave_an_error();
        assert_eq!(client.read_into(&mut buf).await.unwrap(), 0);
    }

    #[test]
    fn an_io_error_keeps_the_tls_error_as_its_source() {
        let stack = boring::x509::X509::from_pem(b"not a certificate").unwrap_err();
        let text = stack.to_string();
        let e = tls_io_error(ssl::Error::from(stack));
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let source = e.get_ref().and_then(|s| s.downcast_ref::<ssl::Error>());
        assert!(source.is_some_and(|s| s.ssl_error().is_some()), "{e:?}");
        assert!(e.to_string().contains(&text), "{e} / {text}");
    }

    #[test]
    fn a_plaintext_alert_is_recognised() {
        assert_eq!(plaintext_alert(b"\x15\x03\x03\x00\x02\x02\x30"), Some(48));
        assert_eq!(plaintext_alert(b"\x15\x03\x03\x00\x02\x02"), None);
        assert_eq!(plaintext_alert(b"\x17\x03\x03\x00\x02\x02\x30"), None);
        assert_eq!(plaintext_alert(b"\x15\x03\x03\x00\x13\x02\x30"), None);
    }

    #[test]
    fn closes_name_the_peer() {
        assert_eq!(
            HandshakeError::Eof.cause("client").to_string(),
            "client closed the connection during the handshake"
        );
        assert_eq!(
            HandshakeError::Closed.cause("server").to_string(),
            "server closed the connection without sending anything"
        );
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
    async fn an_established_connection_sheds_its_handshake_config() {
        let dir = tempfile::tempdir().unwrap();
        let (mut server, mut client) = connected(dir.path()).await;
        // SAFETY: a read-only check on a live SSL object; 0 once its configuration is freed.
        let config_held = unsafe { boring_sys::SSL_check_private_key(server.ssl().as_ptr()) } == 1;
        assert!(!config_held, "the handshake configuration is still held");
        // SAFETY: as above; the client keeps its configuration.
        assert_eq!(
            unsafe { boring_sys::SSL_check_private_key(client.ssl().as_ptr()) },
            1
        );
        // What the connection still needs is there: the client certificate and its
        // verification, the certificate served (through the context), data both ways.
        assert!(server.ssl().peer_certificate().is_some());
        assert!(server.ssl().verify_result().is_ok());
        assert!(server.ssl().ssl_context().certificate().is_some());
        let mut buf = BytesMut::new();
        client.write_all(b"ping").await.unwrap();
        assert_eq!(server.read_into(&mut buf).await.unwrap(), 4);
        server.write_all(b"pong").await.unwrap();
        assert_eq!(client.read_into(&mut buf).await.unwrap(), 4);
        assert_eq!(&buf[..], b"pingpong");
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
