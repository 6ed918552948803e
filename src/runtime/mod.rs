//! Workers: one thread per configured CPU, each pinned, each with its own monoio runtime
//! (io_uring, or epoll where io_uring is missing) and its own SO_REUSEPORT listening socket per
//! listener, so the kernel spreads connections and no lock is taken on the accept path.

mod listen;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tracing::{info, warn};

use crate::config::{Config, IoMode};

/// The I/O driver a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// Linux io_uring (monoio's `IoUringDriver`).
    IoUring,
    /// epoll (monoio's `LegacyDriver`), where io_uring is missing or refused.
    Epoll,
}

/// Decides the driver: io_uring unless configured otherwise or unavailable.
pub fn choose_driver(mode: IoMode) -> io::Result<Driver> {
    match mode {
        IoMode::Epoll => Ok(Driver::Epoll),
        IoMode::IoUring => {
            probe_uring().map_err(|e| io::Error::other(format!("io = \"io_uring\": {e}")))?;
            Ok(Driver::IoUring)
        }
        IoMode::Auto => match probe_uring() {
            Ok(()) => Ok(Driver::IoUring),
            Err(e) => {
                warn!("io_uring is not available ({e}); falling back to epoll");
                Ok(Driver::Epoll)
            }
        },
    }
}

fn probe_uring() -> io::Result<()> {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(8)
        .build()
        .map(drop)
}

/// Binds every listener once per worker, starts the workers and returns their handles. Binding
/// happens here, before any worker runs, so an address in use is reported at start.
pub fn start(config: Arc<Config>) -> io::Result<Running> {
    start_with(config, Vec::new())
}

/// As [`start`], on the listening sockets a running certgate handed over (`run --upgrade`)
/// where their address matches a listener: those are served as they are (a worker may accept
/// on several when there are fewer workers than before), extra ones join their group; the
/// others are closed.
pub fn start_with(
    config: Arc<Config>,
    mut inherited: Vec<(SocketAddr, std::net::TcpListener)>,
) -> io::Result<Running> {
    let driver = choose_driver(config.runtime.io)?;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let workers = config.runtime.workers;
    let mut handles = Vec::with_capacity(workers);
    let mut sockets: Vec<Vec<(usize, std::net::TcpListener)>> = (0..workers)
        .map(|_| Vec::with_capacity(config.listeners.len()))
        .collect();
    let mut listening = Vec::new();
    for (index, l) in config.listeners.iter().enumerate() {
        let (taken, rest): (Vec<_>, Vec<_>) =
            inherited.into_iter().partition(|(a, _)| *a == l.addr);
        inherited = rest;
        let taken: Vec<_> = taken.into_iter().map(|(_, s)| s).collect();
        let group = if taken.is_empty() {
            listen::bind_group(l.addr, workers)
        } else {
            listen::join_group(l.addr, taken, workers)
        }
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("listener {:?}: cannot listen on {}: {e}", l.name, l.addr),
            )
        })?;
        for (i, socket) in group.into_iter().enumerate() {
            listening.push((l.addr, socket.as_raw_fd()));
            sockets[i % workers].push((index, socket));
        }
    }
    for (addr, _) in &inherited {
        info!(%addr, "no listener has this address any more: its socket is closed");
    }
    drop(inherited);
    let current = Arc::new(ArcSwap::new(config.clone()));
    let draining = Arc::new(AtomicBool::new(false));
    for (id, listeners) in sockets.into_iter().enumerate() {
        let current = current.clone();
        let draining = draining.clone();
        let core = if config.runtime.pin_workers && !cores.is_empty() {
            Some(cores[id % cores.len()])
        } else {
            None
        };
        let handle = std::thread::Builder::new()
            .name(format!("certgate-w{id}"))
            .spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core) {
                        warn!(worker = id, "could not pin worker to CPU {}", core.id);
                    }
                }
                if let Err(e) = worker::run(id, driver, current, listeners, draining) {
                    tracing::error!(worker = id, "worker stopped: {e}");
                    std::process::exit(1);
                }
            })?;
        handles.push(handle);
    }
    start_background(&config)?;
    info!(
        workers = config.runtime.workers,
        driver = ?driver,
        "certgate started"
    );
    for l in &config.listeners {
        info!(listener = %l.name, addr = %l.addr, tls = l.tls.is_some(), "listening");
        if l.tls.is_none() && is_public(l.addr.ip()) {
            let upstream = &config.upstreams[l.upstream];
            let with_cert = upstream
                .tls
                .as_ref()
                .is_some_and(|t| t.presents_certificate());
            let what = if with_cert {
                "anyone who reaches it uses the upstream's client certificate"
            } else {
                "anyone who reaches it reaches the upstream without any client authentication"
            };
            warn!(
                listener = %l.name,
                addr = %l.addr,
                "a plain-HTTP listener binds a public address: {what}; bind it to loopback or a \
                 private address"
            );
        }
    }
    Ok(Running {
        workers: handles,
        listening,
        current,
        draining,
        shared: Arc::new(AtomicBool::new(false)),
    })
}

/// The threads a configuration needs besides the workers: ticket-key rotation, CRL refresh (one
/// per listener or upstream with CRLs) and active health checks (one per upstream with `[upstream.health]`,
/// not one per worker). All end by themselves once a reload retires the configuration.
fn start_background(config: &Config) -> io::Result<()> {
    for l in &config.listeners {
        if let Some(keys) = &l.tickets {
            if let Some(every) = keys.rotation() {
                let keys = Arc::downgrade(keys);
                std::thread::Builder::new()
                    .name("certgate-tickets".into())
                    .spawn(move || loop {
                        std::thread::sleep(every);
                        match keys.upgrade() {
                            Some(k) => k.rotate(),
                            None => return,
                        }
                    })?;
            }
        }
    }
    let upstream_crls = config
        .upstreams
        .iter()
        .filter_map(|u| u.tls.as_ref().and_then(|t| t.crls()));
    for crls in config
        .listeners
        .iter()
        .flat_map(|l| std::iter::once(l).chain(l.sni.iter()))
        .filter_map(|l| l.crls.as_ref())
        .chain(upstream_crls)
    {
        let every = crls.refresh_interval();
        let crls = Arc::downgrade(crls);
        std::thread::Builder::new()
            .name("certgate-crl".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                match crls.upgrade() {
                    Some(c) => c.refresh(),
                    None => return,
                }
            })?;
    }
    let staplers = config
        .listeners
        .iter()
        .flat_map(|l| std::iter::once(l).chain(l.sni.iter()))
        .filter_map(|l| l.tls.as_deref().and_then(crate::tls::ocsp::of));
    for stapler in staplers {
        let stapler = Arc::downgrade(stapler);
        std::thread::Builder::new()
            .name("certgate-ocsp".into())
            .spawn(move || loop {
                std::thread::sleep(crate::tls::ocsp::POLL_INTERVAL);
                match stapler.upgrade() {
                    Some(s) => s.refresh(),
                    None => return,
                }
            })?;
    }
    for u in &config.upstreams {
        crate::upstream::health::start_checks(u)?;
    }
    Ok(())
}

/// The started workers.
pub struct Running {
    /// One thread per worker; each returns when its runtime stops.
    pub workers: Vec<std::thread::JoinHandle<()>>,
    listening: Vec<(SocketAddr, RawFd)>,
    current: Arc<ArcSwap<Config>>,
    draining: Arc<AtomicBool>,
    /// Set once the listening sockets were handed to another process: from then on they are
    /// never shut down (that would stop the other process's accepts too).
    pub shared: Arc<AtomicBool>,
}

impl Running {
    /// Puts `next` in force: new connections use it from their accept on, connections in
    /// progress finish under the configuration they started with. The listeners (names and
    /// addresses, in order) must stay as they are: the sockets are bound once, at start.
    pub fn reload(&self, next: Config) -> Result<(), String> {
        let old = self.current.load_full();
        let same = old.listeners.len() == next.listeners.len()
            && old
                .listeners
                .iter()
                .zip(&next.listeners)
                .all(|(a, b)| a.name == b.name && a.addr == b.addr);
        if !same {
            return Err("listeners were added, removed or moved: that needs a restart".into());
        }
        if next.runtime.workers != old.runtime.workers || next.runtime.io != old.runtime.io {
            warn!("[runtime] changes take effect at the next restart, not on reload");
        }
        start_background(&next).map_err(|e| format!("cannot start background threads: {e}"))?;
        self.current.store(Arc::new(next));
        for u in &old.upstreams {
            u.retired.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Stops every listening socket at once, from outside the workers: new connections are
    /// refused from now on, even while io_uring still holds the sockets (a ring's teardown at
    /// exit is deferred, so an exiting process could otherwise keep accepting for a moment).
    pub fn stop_accepting(&self) {
        for &(_, fd) in &self.listening {
            // SAFETY: shutdown on descriptors the workers keep open for the process's life.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
    }
}

impl Running {
    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.current.load_full()
    }

    /// Begins a drain: no new connection is accepted; responses in progress finish with
    /// `Connection: close`; idle keep-alive connections close; each worker ends once its
    /// connections have.
    pub fn drain(&self) {
        if !self.shared.load(Ordering::Acquire) {
            self.stop_accepting();
        }
        self.draining.store(true, Ordering::Release);
    }

    /// Every listening socket with its address, for a handover.
    pub fn listening(&self) -> Vec<(SocketAddr, RawFd)> {
        self.listening.clone()
    }

    /// Waits until every worker has ended or `deadline` passed; `true` when they all ended.
    pub fn wait(&self, deadline: Instant) -> bool {
        loop {
            if self.workers.iter().all(|w| w.is_finished()) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10).min(deadline - now));
        }
    }
}

pub use self::worker::{Drain, Fired, Worker};

/// Whether `ip` may be reachable from outside: not loopback, private, link-local or unique-local.
/// The unspecified address (all interfaces) counts as public.
pub fn is_public(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => !(v4.is_loopback() || v4.is_private() || v4.is_link_local()),
        std::net::IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(std::net::IpAddr::V4(v4));
            }
            let seg0 = v6.segments()[0];
            !(v6.is_loopback() || (seg0 & 0xfe00) == 0xfc00 || (seg0 & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_public;

    #[test]
    fn public_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["0.0.0.0", "8.8.8.8", "::", "2001:db8::1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
