//! A TLS client that resumes: it keeps the last session the server gave it (a TLS 1.3 ticket,
//! or a TLS 1.2 session ID) and offers it on its next connection.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boring::ssl::{
    SslConnector, SslFiletype, SslMethod, SslOptions, SslSession, SslSessionCacheMode, SslVersion,
};

use super::{get, CertKey, HttpReader, Response};

/// A client that keeps the last session it was given and offers it on the next connection.
pub struct ResumingClient {
    /// Its TLS settings, for a connection made by hand.
    pub connector: SslConnector,
    /// The session offered next (tests may carry one from another client).
    pub session: Arc<Mutex<Option<SslSession>>>,
}

impl ResumingClient {
    /// A client of exactly `version` presenting `client`; for TLS 1.2 it asks for no ticket, so
    /// the server's session cache (session IDs) must do the work.
    pub fn new(server_ca: &Path, client: &CertKey, version: SslVersion) -> Self {
        let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
        b.set_ca_file(server_ca).unwrap();
        b.set_certificate_chain_file(&client.cert).unwrap();
        b.set_private_key_file(&client.key, SslFiletype::PEM)
            .unwrap();
        b.set_min_proto_version(Some(version)).unwrap();
        b.set_max_proto_version(Some(version)).unwrap();
        if version == SslVersion::TLS1_2 {
            b.set_options(SslOptions::NO_TICKET);
        }
        b.set_session_cache_mode(SslSessionCacheMode::CLIENT);
        let session: Arc<Mutex<Option<SslSession>>> = Arc::default();
        let slot = session.clone();
        // TLS 1.3 tickets arrive after the handshake: only this callback sees them.
        b.set_new_session_callback(move |_, s| *slot.lock().unwrap() = Some(s));
        Self {
            connector: b.build(),
            session,
        }
    }

    /// One connection with one GET; returns (resumed, response).
    pub fn get(&self, addr: SocketAddr) -> (bool, Response) {
        let mut cfg = self.connector.configure().unwrap();
        if let Some(s) = self.session.lock().unwrap().as_ref() {
            // SAFETY: the session came from this connector's own context.
            unsafe { cfg.set_session(s).unwrap() };
        }
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let tls = cfg.connect("localhost", tcp).expect("handshake");
        let resumed = tls.ssl().session_reused();
        let mut c = HttpReader::new(tls);
        let resp = c.roundtrip(&get("localhost", "/", &["Connection: close"]));
        (resumed, resp)
    }
}
