//! TLS over in-memory pipes: two `SslStream`s wired back to back with no socket and no runtime,
//! so a handshake's cost can be measured alone (criterion benches, callgrind workloads).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::rc::Rc;

use boring::ssl::{HandshakeError, MidHandshakeSslStream, SslStream};

type Buf = Rc<RefCell<VecDeque<u8>>>;

/// One end of an in-memory connection: reads what the other end wrote, `WouldBlock` when there
/// is nothing (BoringSSL then reports WANT_READ).
pub struct Pipe {
    rx: Buf,
    tx: Buf,
}

impl Pipe {
    /// Frees both directions' buffers once they are empty, so that an idle connection's pipe
    /// holds no memory (what certgate's socket does between requests).
    pub fn release(&self) {
        for buf in [&self.rx, &self.tx] {
            let mut b = buf.borrow_mut();
            if b.is_empty() {
                *b = VecDeque::new();
            }
        }
    }
}

impl Read for Pipe {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut rx = self.rx.borrow_mut();
        if rx.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        rx.read(out)
    }
}

impl Write for Pipe {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.tx.borrow_mut().extend(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Two connected ends.
pub fn pipes() -> (Pipe, Pipe) {
    let (a, b) = (Buf::default(), Buf::default());
    (
        Pipe {
            rx: a.clone(),
            tx: b.clone(),
        },
        Pipe { rx: b, tx: a },
    )
}

/// One peer of a handshake being pumped in turn with the other.
pub enum Side {
    Mid(MidHandshakeSslStream<Pipe>),
    Done(SslStream<Pipe>),
}

impl Side {
    /// Advances the handshake as far as the bytes in the pipe allow.
    ///
    /// # Panics
    /// When the handshake fails: this is for benchmarks with known-good peers.
    pub fn step(self) -> Side {
        match self {
            Side::Mid(mid) => match mid.handshake() {
                Ok(s) => Side::Done(s),
                Err(HandshakeError::WouldBlock(mid)) => Side::Mid(mid),
                Err(e) => panic!("handshake failed: {e}"),
            },
            done => done,
        }
    }

    /// The finished stream.
    ///
    /// # Panics
    /// When the handshake has not finished.
    pub fn done(self) -> SslStream<Pipe> {
        match self {
            Side::Done(s) => s,
            Side::Mid(_) => panic!("handshake not finished"),
        }
    }
}
