//! `--protocol h2`: requests as HTTP/2 streams, `--streams` of them in flight per connection.
//!
//! A load generator must cost the client machine less than the server under test costs its
//! own, or it measures itself: with the `h2` crate's full client, a request cost this tool
//! about three times what h2load spends. So the client side of HTTP/2 is written here for the
//! one thing a load generator does (GET without a body, read the answer), over certgate's
//! cancel-safe connection (`Conn`): the request's header block is encoded once per connection
//! (HPACK literals, never indexed, so it can be sent again as it is), the server's header blocks
//! go through a real HPACK decoder (`httlib-hpack`, dynamic table and Huffman included), and
//! every frame queued while the connection's task was busy leaves in one write.
//!
//! A connection is one task (`drive`) and one [`Link`] that the `--streams` slots sharing it
//! queue their requests on. What the task does: the preface and SETTINGS, SETTINGS and PING
//! acknowledgements, WINDOW_UPDATE for what arrived (connection and stream), the server's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` (slots beyond it wait), interim 1xx heads, trailers,
//! RST_STREAM and GOAWAY. A request the server did not process (REFUSED_STREAM, above the
//! GOAWAY's last stream, or the connection lost before any answer) is sent once more on a new
//! connection. A request dropped mid-way (its `--timeout`) resets its stream (CANCEL).
//!
//! Like HTTP/1.1 keep-alive, the slot that finds no usable connection opens one (and the
//! connection's handshake counts in its operation); the other slots of that connection wait.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use monoio::task::JoinHandle;

use super::client::{io_kind, Client};
use super::report::{ErrorDetail, ErrorKind, Outcome};
use crate::hpack::literal;
use certgate::conn::Conn;

/// Connection-level receive window: large enough that a body never waits for a WINDOW_UPDATE
/// round trip with `--streams` bodies in flight.
const CONNECTION_WINDOW: u32 = 4 << 20;
/// Each stream's receive window (`SETTINGS_INITIAL_WINDOW_SIZE`).
const STREAM_WINDOW: u32 = 1 << 20;
/// The largest frame the server may send (the protocol's default, which is not changed).
const MAX_FRAME: usize = 16_384;
/// The largest header block (HEADERS and its CONTINUATIONs) accepted.
const MAX_BLOCK: usize = 256 * 1024;
/// How long the end of a run waits for its connections to close cleanly (GOAWAY, close_notify).
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// What a read asks for at least.
const READ_CHUNK: usize = 16 * 1024;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types and flags (RFC 9113, section 6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

// Settings identifiers and error codes used here.
const SETTINGS_ENABLE_PUSH: u16 = 0x2;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const NO_ERROR: u32 = 0x0;
const PROTOCOL_ERROR: u32 = 0x1;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;

/// Why a stream (or its whole connection) failed.
#[derive(Clone, Debug)]
struct Failure {
    kind: ErrorKind,
    what: String,
    /// The server did not process the request: sending it again is safe.
    unprocessed: bool,
    /// The connection cannot take more requests.
    gone: bool,
}

impl Failure {
    fn protocol(what: impl Into<String>) -> Failure {
        Failure {
            kind: ErrorKind::Protocol,
            what: what.into(),
            unprocessed: false,
            gone: true,
        }
    }

    fn io(e: &io::Error) -> Failure {
        Failure {
            kind: io_kind(e),
            what: e.to_string(),
            unprocessed: false,
            gone: true,
        }
    }

    fn detail(self) -> (ErrorKind, ErrorDetail) {
        (self.kind, ErrorDetail::H2(self.what))
    }
}

/// One stream in flight.
struct Stream {
    id: u32,
    /// The final status, once its head arrived.
    status: Option<u16>,
    done: Option<Result<u16, Failure>>,
    waker: Option<Waker>,
    /// DATA bytes received since the last stream WINDOW_UPDATE.
    unacked: u32,
}

impl Stream {
    fn new(id: u32) -> Stream {
        Stream {
            id,
            status: None,
            done: None,
            waker: None,
            unacked: 0,
        }
    }
}

/// What a connection's task and the slots using it share.
struct Link {
    /// Frames to write, sent together at the task's next turn.
    out: RefCell<Vec<u8>>,
    /// The task, when it waits for frames to write.
    driver: Cell<Option<Waker>>,
    streams: RefCell<Vec<Stream>>,
    /// Slots waiting for the server's stream limit to allow one more.
    room: RefCell<Vec<Waker>>,
    next_id: Cell<u32>,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` from the server.
    max_streams: Cell<u32>,
    /// No new stream: GOAWAY received, or the connection failed.
    refusing: RefCell<Option<Failure>>,
    /// End of the run: close once the last stream ended.
    closing: Cell<bool>,
    /// The request's header block (see [`request_block`]).
    block: Vec<u8>,
}

impl Link {
    fn new(block: Vec<u8>) -> Link {
        Link {
            out: RefCell::new(Vec::with_capacity(4096)),
            driver: Cell::new(None),
            streams: RefCell::new(Vec::new()),
            room: RefCell::new(Vec::new()),
            next_id: Cell::new(1),
            max_streams: Cell::new(u32::MAX),
            refusing: RefCell::new(None),
            closing: Cell::new(false),
            block,
        }
    }

    fn wake_driver(&self) {
        if let Some(w) = self.driver.take() {
            w.wake();
        }
    }

    /// Queues a frame for the task's next write.
    fn queue(&self, kind: u8, flags: u8, id: u32, payload: &[u8]) {
        let mut out = self.out.borrow_mut();
        push_frame(&mut out, kind, flags, id, payload);
        drop(out);
        self.wake_driver();
    }

    /// Ends stream `id` (if still open) with `result`.
    fn complete(&self, id: u32, result: Result<u16, Failure>) {
        let mut streams = self.streams.borrow_mut();
        if let Some(s) = streams.iter_mut().find(|s| s.id == id && s.done.is_none()) {
            s.done = Some(result);
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
    }

    /// Refuses new streams from now on and fails the open ones that `fails` selects.
    fn refuse(&self, why: Failure, fails: impl Fn(&Stream) -> Option<Failure>) {
        self.refusing.borrow_mut().get_or_insert(why);
        let mut streams = self.streams.borrow_mut();
        for s in streams.iter_mut().filter(|s| s.done.is_none()) {
            if let Some(f) = fails(s) {
                s.done = Some(Err(f));
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        }
        drop(streams);
        for w in self.room.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// A stream left the table: a slot waiting for room may go.
    fn freed(&self) {
        if let Some(w) = self.room.borrow_mut().pop() {
            w.wake();
        }
        if self.closing.get() || self.refusing.borrow().is_some() {
            self.wake_driver();
        }
    }
}

/// Takes stream `id` out of the table when its slot stops waiting for it; a stream still open
/// then is reset (CANCEL), so the server stops working on it.
struct StreamGuard<'a> {
    link: &'a Link,
    id: u32,
}

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        let mut streams = self.link.streams.borrow_mut();
        let Some(i) = streams.iter().position(|s| s.id == self.id) else {
            return;
        };
        let open = streams.swap_remove(i).done.is_none();
        drop(streams);
        if open {
            self.link
                .queue(RST_STREAM, 0, self.id, &CANCEL.to_be_bytes());
        }
        self.link.freed();
    }
}

/// One HTTP/2 connection and the slots that share it.
#[derive(Default)]
pub struct H2Conn {
    state: RefCell<State>,
    /// Slots waiting while another one connects.
    waiters: RefCell<Vec<Waker>>,
    /// Connections opened so far; tells a lost connection from its successor.
    generation: Cell<u64>,
    /// The tasks driving this slot's connections, awaited at the end of the run.
    drivers: RefCell<Vec<JoinHandle<()>>>,
}

#[derive(Default)]
enum State {
    /// No connection: the next request opens one.
    #[default]
    Idle,
    /// A slot is opening one; the others wait.
    Connecting,
    Ready {
        generation: u64,
        link: Rc<Link>,
    },
}

impl H2Conn {
    /// The current connection, waiting while another slot connects; `None` when there is none
    /// and the caller should connect.
    async fn sender(&self) -> Option<(u64, Rc<Link>)> {
        poll_fn(|cx| match &*self.state.borrow() {
            State::Ready { generation, link } => Poll::Ready(Some((*generation, link.clone()))),
            State::Idle => Poll::Ready(None),
            State::Connecting => {
                let mut waiters = self.waiters.borrow_mut();
                if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }

    /// Forgets connection `generation` (the next request opens a new one); requests in flight
    /// on it go on.
    pub fn lost(&self, generation: u64) {
        let mut state = self.state.borrow_mut();
        if matches!(&*state, State::Ready { generation: g, .. } if *g == generation) {
            *state = State::Idle;
        }
    }

    /// Forgets whatever connection is current (a request on it timed out).
    pub fn abandon(&self) {
        let mut state = self.state.borrow_mut();
        if matches!(&*state, State::Ready { .. }) {
            *state = State::Idle;
        }
    }

    fn wake_all(&self) {
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// End of the run: each connection sends GOAWAY and closes once its last stream ended;
    /// waits (bounded) for the connection tasks.
    pub async fn close(&self) {
        if let State::Ready { link, .. } = std::mem::take(&mut *self.state.borrow_mut()) {
            link.closing.set(true);
            link.wake_driver();
        }
        let drivers: Vec<_> = self.drivers.borrow_mut().drain(..).collect();
        for d in drivers {
            let _ = monoio::time::timeout(CLOSE_GRACE, d).await;
        }
    }
}

/// Puts the connection back to `Idle` and wakes the waiters if the connecting slot gives up
/// (an error, or its operation was dropped by a timeout).
struct ConnectingGuard<'a>(&'a H2Conn);

impl Drop for ConnectingGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.borrow_mut();
        if matches!(&*state, State::Connecting) {
            *state = State::Idle;
        }
        drop(state);
        self.0.wake_all();
    }
}

/// Opens a connection for `conn` (TCP, TLS with ALPN h2 or h2c, the preface), starts its task
/// and publishes it.
async fn connect(
    client: &Client,
    conn: &Rc<H2Conn>,
    out: &mut Outcome,
) -> Result<(u64, Rc<Link>), (ErrorKind, ErrorDetail)> {
    *conn.state.borrow_mut() = State::Connecting;
    let guard = ConnectingGuard(conn);
    let mut io = client.connect_h2(out).await?;
    let mut preface = Vec::with_capacity(64);
    preface.extend_from_slice(PREFACE);
    let mut settings = Vec::with_capacity(18);
    for (id, value) in [
        (SETTINGS_ENABLE_PUSH, 0),
        (SETTINGS_MAX_CONCURRENT_STREAMS, 0),
        (SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW),
    ] {
        settings.extend_from_slice(&id.to_be_bytes());
        settings.extend_from_slice(&value.to_be_bytes());
    }
    push_frame(&mut preface, SETTINGS, 0, 0, &settings);
    push_frame(
        &mut preface,
        WINDOW_UPDATE,
        0,
        0,
        &(CONNECTION_WINDOW - 65_535).to_be_bytes(),
    );
    if let Err(e) = io.write_all(&preface).await {
        return Err((io_kind(&e), ErrorDetail::Io(e)));
    }
    let link = Rc::new(Link::new(request_block(&client.plan.h2_request)));
    let generation = conn.generation.get() + 1;
    conn.generation.set(generation);
    let (shared, task_link) = (conn.clone(), link.clone());
    let driver = monoio::spawn(async move {
        drive(&task_link, &shared, generation, io).await;
    });
    {
        let mut drivers = conn.drivers.borrow_mut();
        // Finished tasks of earlier connections are not kept.
        drivers.retain(|d| !d.is_finished());
        drivers.push(driver);
    }
    *conn.state.borrow_mut() = State::Ready {
        generation,
        link: link.clone(),
    };
    drop(guard);
    Ok((generation, link))
}

/// Opens the slot's connection before the measurement (a failure shows up again, counted, in
/// the measured requests).
pub async fn prime(client: &Client, conn: &Rc<H2Conn>) {
    let mut scratch = Outcome::default();
    let _ = monoio::time::timeout(client.plan.timeout, connect(client, conn, &mut scratch)).await;
}

/// One request on the slot's connection, opening one if needed; sent once more on a new
/// connection when the server refused it unprocessed.
pub async fn request(
    client: &Client,
    conn: &Rc<H2Conn>,
    out: &mut Outcome,
) -> Result<(), (ErrorKind, ErrorDetail)> {
    let mut retried = false;
    loop {
        let (generation, link) = match conn.sender().await {
            Some(s) => s,
            None => connect(client, conn, out).await?,
        };
        match exchange(&link).await {
            Ok(status) => {
                out.completed = true;
                return if (200..300).contains(&status) {
                    Ok(())
                } else {
                    Err((ErrorKind::HttpStatus, ErrorDetail::Status(status)))
                };
            }
            Err(f) => {
                if f.gone {
                    conn.lost(generation);
                }
                if f.unprocessed && !retried {
                    retried = true;
                    continue;
                }
                return Err(f.detail());
            }
        }
    }
}

/// Queues the request's HEADERS for stream `id`, with CONTINUATION frames when the block is
/// larger than a frame may be (a very long `--path`).
fn queue_headers(link: &Link, id: u32) {
    let mut out = link.out.borrow_mut();
    let mut chunks = link.block.chunks(MAX_FRAME).peekable();
    let mut kind = HEADERS;
    let mut flags = END_STREAM;
    while let Some(chunk) = chunks.next() {
        if chunks.peek().is_none() {
            flags |= END_HEADERS;
        }
        push_frame(&mut out, kind, flags, id, chunk);
        (kind, flags) = (CONTINUATION, 0);
    }
    if link.block.is_empty() {
        push_frame(&mut out, HEADERS, END_STREAM | END_HEADERS, id, &[]);
    }
    drop(out);
    link.wake_driver();
}

/// Sends the request on a new stream and waits for its whole response; the final status.
async fn exchange(link: &Link) -> Result<u16, Failure> {
    // The server's concurrency limit: wait for room (or for the connection to refuse).
    poll_fn(|cx| {
        if let Some(f) = &*link.refusing.borrow() {
            return Poll::Ready(Err(Failure {
                unprocessed: true,
                gone: true,
                ..f.clone()
            }));
        }
        if link.streams.borrow().len() < link.max_streams.get() as usize {
            return Poll::Ready(Ok(()));
        }
        link.room.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    })
    .await?;
    let id = link.next_id.get();
    if id > 0x7fff_ffff {
        // Stream ids ran out: a new connection.
        return Err(Failure {
            unprocessed: true,
            ..Failure::protocol("stream identifiers exhausted")
        });
    }
    link.next_id.set(id + 2);
    link.streams.borrow_mut().push(Stream::new(id));
    let guard = StreamGuard { link, id };
    queue_headers(link, id);
    let result = poll_fn(|cx| {
        let mut streams = link.streams.borrow_mut();
        let Some(s) = streams.iter_mut().find(|s| s.id == id) else {
            return Poll::Ready(Err(Failure::protocol("stream vanished")));
        };
        match s.done.take() {
            Some(r) => Poll::Ready(r),
            None => {
                if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    s.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    })
    .await;
    drop(guard);
    result
}

/// A connection's task: writes what the slots queued, reads and answers the server's frames,
/// ends the streams; closes after GOAWAY or at the end of the run once no stream is open.
async fn drive(link: &Link, owner: &H2Conn, generation: u64, mut io: Conn) {
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut wbuf = Vec::with_capacity(4096);
    let mut reader = Reader::default();
    let end = loop {
        if !link.out.borrow().is_empty() {
            std::mem::swap(&mut *link.out.borrow_mut(), &mut wbuf);
            let written = io.write_all(&wbuf).await;
            wbuf.clear();
            if let Err(e) = written {
                break Err(Failure::io(&e));
            }
            continue;
        }
        let idle = link.streams.borrow().is_empty();
        if idle && (link.closing.get() || link.refusing.borrow().is_some()) {
            break Ok(());
        }
        let read = monoio::select! {
            r = io.read_into(&mut rbuf) => Some(r),
            _ = poll_fn(|cx| {
                if link.out.borrow().is_empty() && !link.closing.get() {
                    link.driver.set(Some(cx.waker().clone()));
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            }) => None,
        };
        match read {
            None => {}
            Some(Err(e)) => break Err(Failure::io(&e)),
            Some(Ok(0)) => {
                break Err(Failure {
                    kind: ErrorKind::Io,
                    ..Failure::protocol("the server closed the connection")
                })
            }
            Some(Ok(_)) => {
                if let Err(f) = reader.read_frames(link, &mut rbuf) {
                    let mut goaway = Vec::with_capacity(8);
                    goaway.extend_from_slice(&(reader.last_seen & 0x7fff_ffff).to_be_bytes());
                    goaway.extend_from_slice(&PROTOCOL_ERROR.to_be_bytes());
                    link.queue(GOAWAY, 0, 0, &goaway);
                    let out = std::mem::take(&mut *link.out.borrow_mut());
                    let _ = io.write_all(&out).await;
                    break Err(f);
                }
                if link.refusing.borrow().is_some() {
                    owner.lost(generation);
                }
            }
        }
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
    };
    owner.lost(generation);
    match end {
        Ok(()) => {
            let mut goaway = Vec::with_capacity(8);
            goaway.extend_from_slice(&0u32.to_be_bytes());
            goaway.extend_from_slice(&NO_ERROR.to_be_bytes());
            let mut last = Vec::with_capacity(17);
            push_frame(&mut last, GOAWAY, 0, 0, &goaway);
            let _ = io.write_all(&last).await;
            let _ = io.shutdown_write().await;
        }
        // Streams still open did not get an answer: unprocessed as far as this side knows
        // only when no head arrived.
        Err(f) => link.refuse(f.clone(), |s| {
            Some(Failure {
                unprocessed: s.status.is_none(),
                ..f.clone()
            })
        }),
    }
}

/// Frame reading state of one connection.
#[derive(Default)]
struct Reader {
    hpack: httlib_hpack::Decoder<'static>,
    /// The decoded fields of the last header block (kept for its capacity).
    fields: Vec<(Vec<u8>, Vec<u8>, u8)>,
    /// A header block waiting for its CONTINUATION frames: stream, END_STREAM, bytes.
    block: Option<(u32, bool, Vec<u8>)>,
    /// DATA bytes received since the last connection WINDOW_UPDATE.
    unacked: u32,
    /// The highest stream id a frame arrived for (for a GOAWAY of ours).
    last_seen: u32,
}

impl Reader {
    /// Handles every whole frame in `buf` (and leaves a partial one there).
    fn read_frames(&mut self, link: &Link, buf: &mut BytesMut) -> Result<(), Failure> {
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if len > MAX_FRAME {
                return Err(Failure::protocol(format!(
                    "a frame of {len} bytes, above the {MAX_FRAME} allowed"
                )));
            }
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let id = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            self.last_seen = self.last_seen.max(id);
            let frame = buf.split_to(9 + len);
            self.frame(link, kind, flags, id, &frame[9..])?;
        }
        Ok(())
    }

    fn frame(
        &mut self,
        link: &Link,
        kind: u8,
        flags: u8,
        id: u32,
        payload: &[u8],
    ) -> Result<(), Failure> {
        if self.block.is_some() && kind != CONTINUATION {
            return Err(Failure::protocol("a frame inside a header block"));
        }
        match kind {
            DATA => {
                if id == 0 {
                    return Err(Failure::protocol("DATA on stream 0"));
                }
                let len = payload.len() as u32;
                self.unacked += len;
                if self.unacked >= CONNECTION_WINDOW / 2 {
                    link.queue(WINDOW_UPDATE, 0, 0, &self.unacked.to_be_bytes());
                    self.unacked = 0;
                }
                let end = flags & END_STREAM != 0;
                let mut streams = link.streams.borrow_mut();
                let Some(s) = streams.iter_mut().find(|s| s.id == id) else {
                    return Ok(());
                };
                let Some(status) = s.status else {
                    return Err(Failure::protocol("DATA before the response head"));
                };
                if end {
                    drop(streams);
                    link.complete(id, Ok(status));
                } else {
                    s.unacked += len;
                    if s.unacked >= STREAM_WINDOW / 2 {
                        let n = std::mem::take(&mut s.unacked);
                        drop(streams);
                        link.queue(WINDOW_UPDATE, 0, id, &n.to_be_bytes());
                    }
                }
            }
            HEADERS => {
                if id == 0 {
                    return Err(Failure::protocol("HEADERS on stream 0"));
                }
                let mut p = unpad(flags, payload)?;
                if flags & PRIORITY != 0 {
                    if p.len() < 5 {
                        return Err(Failure::protocol("a HEADERS priority field cut short"));
                    }
                    p = &p[5..];
                }
                self.block = Some((id, flags & END_STREAM != 0, p.to_vec()));
                if flags & END_HEADERS != 0 {
                    self.head(link)?;
                }
            }
            CONTINUATION => {
                let Some((block_id, _, block)) = self.block.as_mut() else {
                    return Err(Failure::protocol("CONTINUATION without HEADERS"));
                };
                if *block_id != id {
                    return Err(Failure::protocol("CONTINUATION on another stream"));
                }
                if block.len() + payload.len() > MAX_BLOCK {
                    return Err(Failure::protocol("a header block above 256 KiB"));
                }
                block.extend_from_slice(payload);
                if flags & END_HEADERS != 0 {
                    self.head(link)?;
                }
            }
            RST_STREAM => {
                if payload.len() != 4 {
                    return Err(Failure::protocol("RST_STREAM of the wrong size"));
                }
                let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                link.complete(
                    id,
                    Err(Failure {
                        kind: ErrorKind::Protocol,
                        what: format!("stream reset by the server ({:?})", h2::Reason::from(code)),
                        unprocessed: code == REFUSED_STREAM,
                        gone: false,
                    }),
                );
            }
            SETTINGS => {
                if flags & ACK != 0 {
                    return Ok(());
                }
                if id != 0 || !payload.len().is_multiple_of(6) {
                    return Err(Failure::protocol("a malformed SETTINGS frame"));
                }
                for s in payload.chunks_exact(6) {
                    let key = u16::from_be_bytes([s[0], s[1]]);
                    let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
                    if key == SETTINGS_MAX_CONCURRENT_STREAMS {
                        link.max_streams.set(value);
                    }
                }
                link.queue(SETTINGS, ACK, 0, &[]);
                // A higher limit lets waiting slots go.
                for w in link.room.borrow_mut().drain(..) {
                    w.wake();
                }
            }
            PING => {
                if payload.len() != 8 {
                    return Err(Failure::protocol("PING of the wrong size"));
                }
                if flags & ACK == 0 {
                    link.queue(PING, ACK, 0, payload);
                }
            }
            GOAWAY => {
                if payload.len() < 8 {
                    return Err(Failure::protocol("GOAWAY cut short"));
                }
                let last = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                    & 0x7fff_ffff;
                let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                let why = Failure {
                    kind: ErrorKind::Protocol,
                    what: format!("GOAWAY from the server ({:?})", h2::Reason::from(code)),
                    unprocessed: true,
                    gone: true,
                };
                // Streams above `last` were not processed; the others go on.
                link.refuse(why.clone(), |s| (s.id > last).then(|| why.clone()));
            }
            PUSH_PROMISE => return Err(Failure::protocol("PUSH_PROMISE with push disabled")),
            // WINDOW_UPDATE (nothing is sent under flow control), PRIORITY, unknown types.
            _ => {}
        }
        Ok(())
    }

    /// A whole header block: decoded (the dynamic table must follow every block, whatever
    /// its stream), then the response head, an interim 1xx, or trailers.
    fn head(&mut self, link: &Link) -> Result<(), Failure> {
        let Some((id, end, mut block)) = self.block.take() else {
            return Ok(());
        };
        let (hpack, fields) = (&mut self.hpack, &mut self.fields);
        fields.clear();
        // The decoder is third-party code reached by network input: a panic in it is an error
        // of the connection, never of the run.
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            hpack.decode(&mut block, fields)
        }));
        match decoded {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(Failure::protocol(format!("HPACK: {e:?}"))),
            Err(_) => return Err(Failure::protocol("HPACK: undecodable header block")),
        }
        let status = fields
            .iter()
            .find(|(name, _, _)| name == b":status")
            .and_then(|(_, value, _)| parse_status(value));
        let mut streams = link.streams.borrow_mut();
        let Some(s) = streams.iter_mut().find(|s| s.id == id) else {
            return Ok(());
        };
        match (s.status, status) {
            // Trailers (or a second head) must end the stream.
            (Some(done), _) if end => {
                drop(streams);
                link.complete(id, Ok(done));
            }
            (Some(_), _) => return Err(Failure::protocol("trailers without END_STREAM")),
            (None, Some(code)) if (100..200).contains(&code) => {
                if end {
                    return Err(Failure::protocol("an interim 1xx head ending its stream"));
                }
            }
            (None, Some(code)) => {
                s.status = Some(code);
                if end {
                    drop(streams);
                    link.complete(id, Ok(code));
                }
            }
            (None, None) => return Err(Failure::protocol("a response head without :status")),
        }
        Ok(())
    }
}

/// The payload without its padding (PADDED flag).
fn unpad(flags: u8, payload: &[u8]) -> Result<&[u8], Failure> {
    if flags & PADDED == 0 {
        return Ok(payload);
    }
    let Some((&pad, rest)) = payload.split_first() else {
        return Err(Failure::protocol("a padded frame without its pad length"));
    };
    rest.len()
        .checked_sub(usize::from(pad))
        .map(|n| &rest[..n])
        .ok_or_else(|| Failure::protocol("padding longer than the frame"))
}

fn parse_status(v: &[u8]) -> Option<u16> {
    if v.len() != 3 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn push_frame(out: &mut Vec<u8>, kind: u8, flags: u8, id: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// The request's HPACK header block: indexed fields for `GET` and the scheme, literals never
/// added to the server's table for the rest, so the same bytes serve every stream.
fn request_block(req: &http::Request<()>) -> Vec<u8> {
    let mut b = Vec::with_capacity(128);
    match req.method().as_str() {
        "GET" => b.push(0x82),
        "POST" => b.push(0x83),
        m => literal(&mut b, 2, b"", m.as_bytes()),
    }
    match req.uri().scheme_str() {
        Some("http") => b.push(0x86),
        _ => b.push(0x87),
    }
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    literal(&mut b, 4, b"", path.as_bytes());
    if let Some(a) = req.uri().authority() {
        literal(&mut b, 1, b"", a.as_str().as_bytes());
    }
    for (name, value) in req.headers() {
        literal(&mut b, 0, name.as_str().as_bytes(), value.as_bytes());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Wake};

    struct Count(std::sync::atomic::AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn request() -> http::Request<()> {
        http::Request::get("https://localhost:8443/x?y=1")
            .header("user-agent", "certgate-load/test")
            .header("accept", "*/*")
            .body(())
            .unwrap()
    }

    fn frame(kind: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        push_frame(&mut v, kind, flags, id, payload);
        v
    }

    /// A server's header block for `fields`: Huffman-coded and indexed into its table, as
    /// servers do.
    fn encode(enc: &mut httlib_hpack::Encoder, fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        let flags = httlib_hpack::Encoder::HUFFMAN_VALUE
            | httlib_hpack::Encoder::WITH_INDEXING
            | httlib_hpack::Encoder::BEST_FORMAT;
        let mut out = Vec::new();
        for &(n, v) in fields {
            enc.encode((n.to_vec(), v.to_vec(), flags), &mut out)
                .unwrap();
        }
        out
    }

    fn decode(d: &mut httlib_hpack::Decoder, block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut fields = Vec::new();
        d.decode(&mut block.to_vec(), &mut fields).unwrap();
        fields.into_iter().map(|(n, v, _)| (n, v)).collect()
    }

    /// The frames queued on `link`: type, flags, stream, payload.
    fn queued(link: &Link) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let out = link.out.borrow();
        let mut frames = Vec::new();
        let mut at = 0;
        while at < out.len() {
            let len = usize::from(out[at]) << 16
                | usize::from(out[at + 1]) << 8
                | usize::from(out[at + 2]);
            let id = u32::from_be_bytes([out[at + 5], out[at + 6], out[at + 7], out[at + 8]]);
            frames.push((
                out[at + 3],
                out[at + 4],
                id,
                out[at + 9..at + 9 + len].to_vec(),
            ));
            at += 9 + len;
        }
        frames
    }

    fn open(link: &Link, id: u32) {
        link.streams.borrow_mut().push(Stream::new(id));
    }

    fn done(link: &Link, id: u32) -> Option<Result<u16, Failure>> {
        let streams = link.streams.borrow();
        let s = streams.iter().find(|s| s.id == id)?;
        s.done.clone()
    }

    #[test]
    fn the_request_block_decodes_to_the_request() {
        let block = request_block(&request());
        let got = decode(&mut Default::default(), &block);
        let want: Vec<(Vec<u8>, Vec<u8>)> = [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/x?y=1"),
            (":authority", "localhost:8443"),
            ("user-agent", "certgate-load/test"),
            ("accept", "*/*"),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
        assert_eq!(got, want);
        // Never indexed: the server's table stays empty, so the block can be sent again.
        let mut d = httlib_hpack::Decoder::default();
        assert_eq!(decode(&mut d, &block), decode(&mut d, &block));
        // Long values take the multi-byte integer form.
        let long = http::Request::get(format!("http://h/{}", "a".repeat(300)))
            .body(())
            .unwrap();
        let got = decode(&mut Default::default(), &request_block(&long));
        assert_eq!(got[1].1, b"http");
        assert_eq!(got[2].1.len(), 301);
    }

    #[test]
    fn a_response_in_frames_ends_its_stream_and_credit_goes_back() {
        let link = Link::new(Vec::new());
        open(&link, 1);
        open(&link, 3);
        let mut enc = httlib_hpack::Encoder::default();
        let mut wire = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 1]);
        wire.extend(frame(PING, 0, 0, b"12345678"));
        // Stream 1: an interim 103, the head split over HEADERS + CONTINUATION, 600 KiB of
        // DATA in frames, trailers.
        wire.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &encode(&mut enc, &[(b":status", b"103")]),
        ));
        let head = encode(&mut enc, &[(b":status", b"200"), (b"server", b"t")]);
        wire.extend(frame(HEADERS, 0, 1, &head[..2]));
        wire.extend(frame(CONTINUATION, END_HEADERS, 1, &head[2..]));
        let chunk = vec![7u8; MAX_FRAME];
        for _ in 0..(600 * 1024 / MAX_FRAME) {
            wire.extend(frame(DATA, 0, 1, &chunk));
        }
        wire.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &encode(&mut enc, &[(b"grpc-status", b"0")]),
        ));
        // Stream 3: a padded head with END_STREAM, by the table entries stream 1 made.
        let mut padded = vec![2u8];
        padded.extend(encode(&mut enc, &[(b":status", b"404"), (b"server", b"t")]));
        padded.extend([0, 0]);
        wire.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM | PADDED,
            3,
            &padded,
        ));
        let (cut, rest) = wire.split_at(wire.len() - 5);
        let mut buf = BytesMut::from(cut);
        let mut reader = Reader::default();
        reader.read_frames(&link, &mut buf).unwrap();
        assert!(done(&link, 3).is_none(), "the last frame is incomplete");
        buf.extend_from_slice(rest);
        reader.read_frames(&link, &mut buf).unwrap();
        assert!(buf.is_empty());
        assert_eq!(done(&link, 1).unwrap().unwrap(), 200);
        assert_eq!(done(&link, 3).unwrap().unwrap(), 404);
        assert_eq!(link.max_streams.get(), 1);
        // Queued: SETTINGS ACK, PING ACK, a stream WINDOW_UPDATE at half the stream window.
        let kinds: Vec<_> = queued(&link)
            .into_iter()
            .map(|(kind, flags, id, _)| (kind, flags, id as u8))
            .collect();
        assert_eq!(
            kinds,
            [(SETTINGS, ACK, 0), (PING, ACK, 0), (WINDOW_UPDATE, 0, 1)]
        );
    }

    #[test]
    fn goaway_and_resets_tell_unprocessed_requests() {
        let link = Link::new(Vec::new());
        for id in [1, 3, 5, 7] {
            open(&link, id);
        }
        let mut wire = frame(RST_STREAM, 0, 1, &REFUSED_STREAM.to_be_bytes());
        wire.extend(frame(RST_STREAM, 0, 3, &2u32.to_be_bytes()));
        let mut goaway = 5u32.to_be_bytes().to_vec();
        goaway.extend(NO_ERROR.to_be_bytes());
        wire.extend(frame(GOAWAY, 0, 0, &goaway));
        let mut buf = BytesMut::from(&wire[..]);
        Reader::default().read_frames(&link, &mut buf).unwrap();
        let refused = done(&link, 1).unwrap().unwrap_err();
        assert!(refused.unprocessed && !refused.gone, "{refused:?}");
        let reset = done(&link, 3).unwrap().unwrap_err();
        assert!(!reset.unprocessed, "{reset:?}");
        assert!(reset.what.contains("INTERNAL_ERROR"), "{}", reset.what);
        // 5 is at or below the GOAWAY's last stream: it goes on; 7 was never processed.
        assert!(done(&link, 5).is_none());
        let above = done(&link, 7).unwrap().unwrap_err();
        assert!(above.unprocessed && above.gone, "{above:?}");
        assert!(link.refusing.borrow().is_some());
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let cases: Vec<Vec<u8>> = vec![
            frame(DATA, 0, 1, b"x"),                    // DATA before the head
            frame(HEADERS, END_HEADERS, 1, &[0xff; 8]), // an undecodable block
            frame(HEADERS, END_HEADERS | PADDED, 1, &[9, 1]),
            frame(HEADERS, 0, 1, &[0x88]),
            frame(CONTINUATION, END_HEADERS, 1, &[0x88]),
            frame(SETTINGS, 0, 0, &[0, 3, 0]),
            frame(PING, 0, 0, b"short"),
            frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2]),
            frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x08\x03103"), // 103 ending it
            vec![0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0],                    // above the frame size
        ];
        for (i, mut wire) in cases.into_iter().enumerate() {
            let link = Link::new(Vec::new());
            open(&link, 1);
            if i == 3 {
                // HEADERS without END_HEADERS, then something else than CONTINUATION.
                wire.extend(frame(PING, 0, 0, b"12345678"));
            }
            let mut buf = BytesMut::from(&wire[..]);
            let r = Reader::default().read_frames(&link, &mut buf);
            assert!(r.is_err(), "case {i} accepted");
        }
    }

    #[test]
    fn waiters_wake_when_the_connecting_slot_gives_up() {
        let conn = H2Conn::default();
        let count = Arc::new(Count(Default::default()));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            std::pin::pin!(conn.sender()).as_mut().poll(&mut cx),
            Poll::Ready(None)
        ));
        *conn.state.borrow_mut() = State::Connecting;
        let guard = ConnectingGuard(&conn);
        // Polled twice while another slot connects: parked once.
        let mut waiting = Box::pin(conn.sender());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert_eq!(conn.waiters.borrow().len(), 1);
        // The connecting slot's operation is dropped (timeout): the waiter wakes, finds no
        // connection and connects itself.
        drop(guard);
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(matches!(waiting.as_mut().poll(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn a_lost_connection_does_not_forget_its_successor() {
        let conn = H2Conn::default();
        *conn.state.borrow_mut() = State::Ready {
            generation: 2,
            link: Rc::new(Link::new(Vec::new())),
        };
        let mut cx = Context::from_waker(Waker::noop());
        let mut current = || match std::pin::pin!(conn.sender()).as_mut().poll(&mut cx) {
            Poll::Ready(r) => r.map(|(g, _)| g),
            Poll::Pending => panic!("no slot is connecting"),
        };
        // The task of connection 1 ends late: connection 2 stays.
        conn.lost(1);
        assert_eq!(current(), Some(2));
        conn.lost(2);
        assert_eq!(current(), None);
    }

    #[test]
    fn a_long_request_block_goes_in_continuation_frames() {
        let mut block = vec![0x82];
        block.resize(MAX_FRAME * 2 + 10, 0x82);
        let link = Link::new(block.clone());
        queue_headers(&link, 5);
        let frames: Vec<_> = queued(&link)
            .into_iter()
            .map(|(kind, flags, id, payload)| (kind, flags, id, payload.len()))
            .collect();
        let joined: Vec<u8> = queued(&link).into_iter().flat_map(|f| f.3).collect();
        assert_eq!(
            frames,
            [
                (HEADERS, END_STREAM, 5, MAX_FRAME),
                (CONTINUATION, 0, 5, MAX_FRAME),
                (CONTINUATION, END_HEADERS, 5, 10)
            ]
        );
        assert_eq!(joined, block);
    }

    #[test]
    fn a_stream_dropped_mid_way_is_reset() {
        let link = Link::new(b"\x82".to_vec());
        let mut cx = Context::from_waker(Waker::noop());
        let mut ex = Box::pin(exchange(&link));
        assert!(ex.as_mut().poll(&mut cx).is_pending());
        assert_eq!(link.streams.borrow().len(), 1);
        drop(ex);
        assert!(link.streams.borrow().is_empty());
        let out = link.out.borrow();
        // HEADERS for stream 1, then RST_STREAM CANCEL for it.
        assert_eq!(out[3], HEADERS);
        let rst = &out[9 + 1..];
        assert_eq!((rst[3], &rst[5..9]), (RST_STREAM, &1u32.to_be_bytes()[..]));
        assert_eq!(&rst[9..13], &CANCEL.to_be_bytes());
    }
}
