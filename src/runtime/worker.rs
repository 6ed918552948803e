//! One worker: a monoio runtime on one thread, accepting on its own listening sockets and
//! serving each connection as a task. Per-worker state is `Rc`; only `Config` is shared.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::Arc;

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
    /// This worker's counters (the same across reloads).
    pub metrics: Arc<crate::metrics::WorkerStats>,
}

pub fn run(
    id: usize,
    driver: Driver,
    current: Arc<ArcSwap<Config>>,
    listeners: Vec<std::net::TcpListener>,
) -> io::Result<()> {
    match driver {
        Driver::IoUring => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(RING_ENTRIES)
            .enable_timer()
            .build()?
            .block_on(main(id, current, listeners)),
        Driver::Epoll => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()?
            .block_on(main(id, current, listeners)),
    }
}

/// The worker's view of the configuration in force: replaced at the first accept after a
/// reload. Connections keep the generation they started with.
struct Generation {
    id: usize,
    current: Arc<ArcSwap<Config>>,
    worker: RefCell<Rc<Worker>>,
}

impl Generation {
    fn worker(&self) -> Rc<Worker> {
        let config = self.current.load();
        let mut w = self.worker.borrow_mut();
        if !Arc::ptr_eq(&w.config, &config) {
            *w = Rc::new(Worker::new(self.id, Arc::clone(&config)));
        }
        w.clone()
    }
}

impl Worker {
    fn new(id: usize, config: Arc<Config>) -> Self {
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
        }
    }
}

async fn main(
    id: usize,
    current: Arc<ArcSwap<Config>>,
    listeners: Vec<std::net::TcpListener>,
) -> io::Result<()> {
    let generation = Rc::new(Generation {
        id,
        worker: RefCell::new(Rc::new(Worker::new(id, current.load_full()))),
        current,
    });
    let mut tasks = Vec::new();
    for (index, std_listener) in listeners.into_iter().enumerate() {
        let l = TcpListener::from_std(std_listener)?;
        tasks.push(monoio::spawn(accept_loop(l, index, generation.clone())));
    }
    crate::metrics::worker_listening();
    for t in tasks {
        t.await?;
    }
    Ok(())
}

async fn accept_loop(l: TcpListener, index: usize, generation: Rc<Generation>) -> io::Result<()> {
    let open = Rc::new(Cell::new(0usize));
    loop {
        let accepted = l.accept().await;
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
        monoio::spawn(async move {
            let _guard = guard;
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
