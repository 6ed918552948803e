//! One worker: a monoio runtime on one thread, accepting on its own listening sockets and
//! serving each connection as a task. Per-worker state is `Rc`; only `Config` is shared.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use arc_swap::ArcSwap;
use monoio::net::TcpListener;
use tracing::{debug, warn};

use super::Driver;
use crate::config::Config;
use crate::upstream::Pool;

/// io_uring submission queue size per worker.
const RING_ENTRIES: u32 = 1024;

/// What a worker's tasks share.
pub struct Worker {
    /// The worker's number, from 0, as in its thread name and log lines.
    pub id: usize,
    /// The configuration the worker was started with.
    pub config: Arc<Config>,
    /// One pool per configured upstream, same order.
    pub pools: Vec<Rc<Pool>>,
    /// The worker's drain: shared by every configuration generation of the worker.
    pub drain: Rc<Drain>,
    /// This worker's counters (the same across reloads).
    pub metrics: Arc<crate::metrics::WorkerStats>,
}

/// How often a worker looks at the process's drain flag (set by the signal thread).
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// One worker's side of a drain: once fired, responses carry `Connection: close` and idle
/// keep-alive connections close; the worker ends when its last connection has.
#[derive(Default)]
pub struct Drain {
    fired: Cell<bool>,
    /// Connections open on this worker, every listener together.
    open: Cell<usize>,
    /// Tasks waiting in [`Drain::fired`], by ticket.
    waiting: RefCell<HashMap<u64, Waker>>,
    next: Cell<u64>,
}

impl Drain {
    /// Whether the drain has begun.
    pub fn started(&self) -> bool {
        self.fired.get()
    }

    /// Completes once the drain begins.
    pub fn fired(&self) -> Fired<'_> {
        let ticket = self.next.get();
        self.next.set(ticket.wrapping_add(1));
        Fired {
            drain: self,
            ticket,
        }
    }

    fn fire(&self) {
        self.fired.set(true);
        for (_, w) in self.waiting.borrow_mut().drain() {
            w.wake();
        }
    }

    fn enter(self: &Rc<Self>) -> Entered {
        self.open.set(self.open.get() + 1);
        Entered(self.clone())
    }
}

/// The future of [`Drain::fired`]; dropping it forgets its waker.
pub struct Fired<'a> {
    drain: &'a Drain,
    ticket: u64,
}

impl Future for Fired<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.drain.fired.get() {
            return Poll::Ready(());
        }
        // Polled again by the same task (a loop's `select!`): the waker stored is kept.
        match self.drain.waiting.borrow_mut().entry(self.ticket) {
            Entry::Occupied(mut e) if !e.get().will_wake(cx.waker()) => {
                e.insert(cx.waker().clone());
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(e) => {
                e.insert(cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl Drop for Fired<'_> {
    fn drop(&mut self) {
        self.drain.waiting.borrow_mut().remove(&self.ticket);
    }
}

/// Counts one open connection in its worker's [`Drain`] until dropped.
struct Entered(Rc<Drain>);

impl Drop for Entered {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get().saturating_sub(1));
    }
}

/// Runs worker `id` until its listeners are shut down and, once `draining` is set, its last
/// connection has closed.
pub fn run(
    id: usize,
    driver: Driver,
    current: Arc<ArcSwap<Config>>,
    listeners: Vec<(usize, std::net::TcpListener)>,
    draining: Arc<AtomicBool>,
) -> io::Result<()> {
    match driver {
        Driver::IoUring => {
            let mut rt = uring_runtime()?;
            crate::io::set_kernel_driven(true);
            rt.block_on(main(id, current, listeners, draining))
        }
        Driver::Epoll => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()?
            .block_on(main(id, current, listeners, draining)),
    }
}

/// The worker's io_uring runtime. Completions run as task work when the worker asks for events
/// (`DEFER_TASKRUN`, with `SINGLE_ISSUER`: the ring belongs to this one thread), not by
/// interrupting it with an IPI per completion, which cost ~5 % of a loaded worker's CPU and
/// split its batches. Kernels before 6.1 refuse that; 5.19 has the weaker `COOP_TASKRUN` (no
/// IPI, work run at the next kernel entry); older ones get a plain ring.
fn uring_runtime() -> io::Result<monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>> {
    let tunings: [fn(&mut io_uring::Builder); 3] = [
        |b| {
            b.setup_single_issuer().setup_defer_taskrun();
        },
        |b| {
            b.setup_coop_taskrun();
        },
        |_| {},
    ];
    let mut last = None;
    for tune in tunings {
        let mut urb = io_uring::IoUring::builder();
        tune(&mut urb);
        match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(RING_ENTRIES)
            .uring_builder(urb)
            .enable_timer()
            .build()
        {
            Ok(rt) => return Ok(rt),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no io_uring setup was accepted")))
}

/// The worker's view of the configuration in force: replaced at the first accept after a
/// reload. Connections keep the generation they started with.
struct Generation {
    id: usize,
    current: Arc<ArcSwap<Config>>,
    worker: RefCell<Rc<Worker>>,
    drain: Rc<Drain>,
}

impl Generation {
    fn worker(&self) -> Rc<Worker> {
        let config = self.current.load();
        let mut w = self.worker.borrow_mut();
        if !Arc::ptr_eq(&w.config, &config) {
            *w = Rc::new(Worker::new(
                self.id,
                Arc::clone(&config),
                self.drain.clone(),
            ));
        }
        w.clone()
    }
}

impl Worker {
    /// The state of worker `id` for `config` (a new generation after a reload).
    pub fn new(id: usize, config: Arc<Config>, drain: Rc<Drain>) -> Self {
        let metrics = crate::metrics::worker(id, &config);
        Self {
            id,
            pools: config
                .upstreams
                .iter()
                .map(|u| Rc::new(Pool::with_metrics(u.clone(), &metrics)))
                .collect(),
            metrics,
            config,
            drain,
        }
    }
}

async fn main(
    id: usize,
    current: Arc<ArcSwap<Config>>,
    listeners: Vec<(usize, std::net::TcpListener)>,
    draining: Arc<AtomicBool>,
) -> io::Result<()> {
    let drain = Rc::new(Drain::default());
    let generation = Rc::new(Generation {
        id,
        worker: RefCell::new(Rc::new(Worker::new(id, current.load_full(), drain.clone()))),
        current,
        drain: drain.clone(),
    });
    let mut tasks = Vec::new();
    // One count per listener, whatever the number of its sockets this worker accepts on.
    let mut open: HashMap<usize, Rc<Cell<usize>>> = HashMap::new();
    for (index, std_listener) in listeners {
        let l = TcpListener::from_std(std_listener)?;
        let open = open.entry(index).or_default().clone();
        tasks.push(monoio::spawn(accept_loop(
            l,
            index,
            generation.clone(),
            open,
        )));
    }
    let watch = drain.clone();
    monoio::spawn(async move {
        while !draining.load(Ordering::Acquire) {
            monoio::time::sleep(DRAIN_POLL).await;
        }
        watch.fire();
    });
    crate::metrics::worker_listening();
    for t in tasks {
        t.await?;
    }
    // The listeners are shut (the process is stopping): finish what is open.
    drain.fired().await;
    while drain.open.get() > 0 {
        monoio::time::sleep(DRAIN_POLL).await;
    }
    debug!(worker = id, "drained");
    Ok(())
}

async fn accept_loop(
    l: TcpListener,
    index: usize,
    generation: Rc<Generation>,
    open: Rc<Cell<usize>>,
) -> io::Result<()> {
    let drain = generation.drain.clone();
    loop {
        // A drain ends the loop even when the socket stays open (handed to a new process).
        let accepted = monoio::select! {
            a = l.accept() => a,
            _ = drain.fired() => return Ok(()),
        };
        let worker = generation.worker();
        // Reloads keep the listener list (name and address) as it was: same index.
        let Some(listener) = worker.config.listeners.get(index).cloned() else {
            return Ok(());
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            // The listening socket was shut down: the process is stopping.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
            Err(e) => {
                // EMFILE and friends: keep serving the connections we have.
                warn!(listener = %listener.name, "accept failed: {e}");
                monoio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.get() >= listener.limits.max_connections {
            debug!(listener = %listener.name, %peer, "connection limit reached; closing");
            drop(stream);
            continue;
        }
        open.set(open.get() + 1);
        let guard = OpenGuard(open.clone());
        let entered = generation.drain.enter();
        monoio::spawn(async move {
            let _guard = guard;
            let _entered = entered;
            crate::proxy::serve(stream, peer, listener, worker).await;
        });
    }
}

struct OpenGuard(Rc<Cell<usize>>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn fired_keeps_one_waker_per_future_and_wakes_it_once() {
        let drain = Drain::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut a = std::pin::pin!(drain.fired());
        let mut b = std::pin::pin!(drain.fired());
        for _ in 0..3 {
            assert!(a.as_mut().poll(&mut cx).is_pending());
        }
        assert!(b.as_mut().poll(&mut cx).is_pending());
        assert_eq!(drain.waiting.borrow().len(), 2);
        // Another task polls `b` now: its waker replaces the first.
        let other = Arc::new(Count(AtomicUsize::new(0)));
        let other_waker = Waker::from(other.clone());
        assert!(b
            .as_mut()
            .poll(&mut Context::from_waker(&other_waker))
            .is_pending());
        drain.fire();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert_eq!(other.0.load(Ordering::Relaxed), 1);
        assert!(a.as_mut().poll(&mut cx).is_ready());
        assert!(b.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn a_dropped_fired_forgets_its_waker() {
        let drain = Drain::default();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        {
            let mut f = std::pin::pin!(drain.fired());
            assert!(f.as_mut().poll(&mut cx).is_pending());
            assert_eq!(drain.waiting.borrow().len(), 1);
        }
        assert!(drain.waiting.borrow().is_empty());
    }
}
