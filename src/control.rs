//! How a running `certgate run` and the commands that drive it (`certgate reload`) find and
//! answer each other: the pid file (`[runtime] pid_file`) and, next to it, the reload status
//! file the running process rewrites after every reload, so that `reload` can wait for the
//! outcome of its own signal, as `nginx -s reload` users expect.
//!
//! The status file (`<pid_file>.status`) holds one line, `<generation> ok` or
//! `<generation> failed: <reason>`, then the configuration path the process runs with. It is
//! written to a temporary name and renamed, so a reader never sees half of it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The outcome of the running process's latest configuration load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    /// 0 at start, one more on every SIGHUP.
    pub generation: u64,
    /// `None` when the reload was put in force, else why not.
    pub failure: Option<String>,
    /// The configuration file the process re-reads on SIGHUP.
    pub config: PathBuf,
}

impl ReloadStatus {
    fn render(&self) -> String {
        let outcome = match &self.failure {
            None => "ok".to_owned(),
            // One line: the reason's own line breaks would end the record.
            Some(why) => format!("failed: {}", why.replace('\n', " ")),
        };
        format!("{} {outcome}\n{}\n", self.generation, self.config.display())
    }

    fn parse(text: &str) -> Option<ReloadStatus> {
        let mut lines = text.lines();
        let first = lines.next()?;
        let (generation, outcome) = first.split_once(' ')?;
        let generation = generation.parse().ok()?;
        let failure = match outcome {
            "ok" => None,
            other => Some(other.strip_prefix("failed: ")?.to_owned()),
        };
        let config = PathBuf::from(lines.next()?);
        Some(ReloadStatus {
            generation,
            failure,
            config,
        })
    }
}

/// The status file that goes with `pid_file`.
pub fn status_path(pid_file: &Path) -> PathBuf {
    let mut name = pid_file.as_os_str().to_owned();
    name.push(".status");
    PathBuf::from(name)
}

/// Writes `contents` to `path` through a temporary file and a rename.
fn replace(path: &Path, contents: &str) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, contents)?;
    fs::rename(&tmp, path)
}

/// Writes this process's id to `pid_file`.
///
/// # Errors
/// The file cannot be written (its directory is missing or not writable).
pub fn write_pid(pid_file: &Path) -> io::Result<()> {
    replace(pid_file, &format!("{}\n", std::process::id()))
}

/// Removes `pid_file`, its status file and its control socket when they are still this process's (a newer process
/// may have written its own since).
pub fn remove_pid(pid_file: &Path) {
    if read_pid(pid_file).ok() == Some(std::process::id()) {
        let _ = fs::remove_file(pid_file);
        let _ = fs::remove_file(status_path(pid_file));
        let _ = fs::remove_file(socket_path(pid_file));
    }
}

/// The process id in `pid_file`.
///
/// # Errors
/// The file cannot be read or does not hold a process id.
pub fn read_pid(pid_file: &Path) -> io::Result<u32> {
    let text = fs::read_to_string(pid_file)?;
    text.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{:?} is not a process id", text.trim()),
        )
    })
}

/// Records the outcome of a configuration load for `certgate reload`.
///
/// # Errors
/// The status file cannot be written.
pub fn write_status(pid_file: &Path, status: &ReloadStatus) -> io::Result<()> {
    replace(&status_path(pid_file), &status.render())
}

/// The latest recorded outcome, if any.
pub fn read_status(pid_file: &Path) -> Option<ReloadStatus> {
    ReloadStatus::parse(&fs::read_to_string(status_path(pid_file)).ok()?)
}

/// Why `certgate reload` could not get an answer.
#[derive(Debug)]
pub enum ReloadError {
    /// No process to signal: the pid file is missing, unreadable or stale.
    NotRunning(String),
    /// The process got the signal but wrote no outcome in time.
    NoAnswer(Duration),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotRunning(why) => write!(f, "{why}"),
            Self::NoAnswer(t) => write!(
                f,
                "the running process did not report the reload's outcome within {t:?}; its \
                 log says what happened"
            ),
        }
    }
}

/// Sends SIGHUP to the process named in `pid_file` and waits up to `limit` for the outcome it
/// records.
///
/// # Errors
/// See [`ReloadError`].
pub fn reload(pid_file: &Path, limit: Duration) -> Result<ReloadStatus, ReloadError> {
    let pid = read_pid(pid_file).map_err(|e| {
        ReloadError::NotRunning(format!(
            "cannot read the pid file {}: {e} (is certgate running with this configuration?)",
            pid_file.display()
        ))
    })?;
    let before = read_status(pid_file).map_or(0, |s| s.generation);
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| ReloadError::NotRunning(format!("{pid} is not a valid process id")))?;
    // SAFETY: kill(2) has no memory effects; a stale pid is reported by ESRCH.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        let e = io::Error::last_os_error();
        return Err(ReloadError::NotRunning(format!(
            "cannot signal process {pid} from {}: {e} (a stale pid file?)",
            pid_file.display()
        )));
    }
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(s) = read_status(pid_file) {
            if s.generation > before {
                return Ok(s);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(ReloadError::NoAnswer(limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip() {
        for failure in [None, Some("a.toml:3: x: bad\nsecond line".to_owned())] {
            let s = ReloadStatus {
                generation: 7,
                failure: failure.clone(),
                config: "/etc/certgate/certgate.toml".into(),
            };
            let back = ReloadStatus::parse(&s.render()).unwrap();
            assert_eq!(back.generation, 7);
            assert_eq!(back.config, s.config);
            assert_eq!(
                back.failure,
                failure.map(|f| f.replace('\n', " ")),
                "{}",
                s.render()
            );
        }
        assert_eq!(ReloadStatus::parse("x ok\n/a\n"), None);
        assert_eq!(ReloadStatus::parse("1 maybe\n/a\n"), None);
    }

    #[test]
    fn pid_file_is_removed_only_by_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let pid = dir.path().join("certgate.pid");
        write_pid(&pid).unwrap();
        assert_eq!(read_pid(&pid).unwrap(), std::process::id());
        fs::write(&pid, "1\n").unwrap();
        remove_pid(&pid);
        assert!(pid.exists(), "another process's pid file was removed");
        write_pid(&pid).unwrap();
        remove_pid(&pid);
        assert!(!pid.exists());
    }

    #[test]
    fn reload_without_a_process_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let pid = dir.path().join("certgate.pid");
        let e = reload(&pid, Duration::from_millis(10)).unwrap_err();
        assert!(e.to_string().contains("cannot read the pid file"), "{e}");
    }
}

/// The control socket that goes with `pid_file`: `<pid_file>.sock`, where a running process
/// hands its listening sockets to `certgate run --upgrade`.
pub fn socket_path(pid_file: &Path) -> PathBuf {
    let mut name = pid_file.as_os_str().to_owned();
    name.push(".sock");
    PathBuf::from(name)
}

pub use self::handover::{take_over, Handover, Offer};

/// The listening-socket handover of `certgate run --upgrade`, over a `SOCK_SEQPACKET` Unix
/// socket (message boundaries kept, so each descriptor travels with its own line):
///
/// 1. the new process connects to the running one's control socket;
/// 2. the running process sends one message per listening socket, `fd <address>` with the
///    descriptor attached (SCM_RIGHTS), then `end`;
/// 3. the new process starts its workers on those sockets (the same sockets, so nothing queued
///    in their accept queues is lost), binds any extra ones into the same SO_REUSEPORT group,
///    and sends `ready`;
/// 4. the running process drains as on SIGQUIT, without shutting the shared sockets down.
mod handover {
    use std::io;
    use std::mem;
    use std::net::SocketAddr;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// Longest message: `fd ` and a socket address.
    const MAX_MESSAGE: usize = 128;

    fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    fn address(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
        // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
        let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = path.as_os_str().as_bytes();
        if bytes.len() >= addr.sun_path.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: longer than a Unix socket path may be ({} bytes); choose a shorter \
                     pid_file",
                    path.display(),
                    addr.sun_path.len() - 1
                ),
            ));
        }
        for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        let len = mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
        Ok((addr, len as libc::socklen_t))
    }

    fn seqpacket() -> io::Result<OwnedFd> {
        // SAFETY: socket(2); the descriptor is owned from here on.
        let fd = cvt(unsafe {
            libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0)
        })?;
        // SAFETY: a fresh descriptor nobody else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn send(sock: &OwnedFd, text: &str, fd: Option<RawFd>) -> io::Result<()> {
        let mut iov = libc::iovec {
            iov_base: text.as_ptr() as *mut libc::c_void,
            iov_len: text.len(),
        };
        // Room for one descriptor, aligned as cmsghdr wants.
        let mut control = [0u64; 4];
        // SAFETY: msghdr is plain data; the pointers set below outlive the sendmsg call.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let Some(fd) = fd {
            // SAFETY: CMSG_* on a control buffer large enough for one int (32 bytes).
            unsafe {
                let space = libc::CMSG_SPACE(mem::size_of::<RawFd>() as u32) as usize;
                msg.msg_control = control.as_mut_ptr().cast();
                msg.msg_controllen = space as _;
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<RawFd>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
            }
        }
        // SAFETY: msg points at live buffers.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// One message and the descriptor it carried, if any; `None` at end of stream.
    fn recv(sock: &OwnedFd) -> io::Result<Option<(String, Option<OwnedFd>)>> {
        let mut buf = [0u8; MAX_MESSAGE];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 4];
        // SAFETY: as in `send`.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = mem::size_of_val(&control) as _;
        // SAFETY: msg points at live buffers; received descriptors are close-on-exec.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Ok(None);
        }
        let mut fd = None;
        // SAFETY: walking the control messages the kernel wrote into `control`.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let raw = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
                    fd = Some(OwnedFd::from_raw_fd(raw));
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        let text = String::from_utf8_lossy(&buf[..n as usize]).into_owned();
        Ok(Some((text, fd)))
    }

    /// The running process's side: offers its listening sockets on the control socket.
    pub struct Offer {
        listener: OwnedFd,
    }

    impl Offer {
        /// Binds the control socket at `path` (replacing a stale one).
        ///
        /// # Errors
        /// The socket cannot be created or bound.
        pub fn bind(path: &Path) -> io::Result<Offer> {
            let (addr, len) = address(path)?;
            let listener = seqpacket()?;
            let _ = std::fs::remove_file(path);
            // SAFETY: bind/listen on our socket with a valid address.
            cvt(unsafe {
                libc::bind(
                    listener.as_raw_fd(),
                    (&addr as *const libc::sockaddr_un).cast(),
                    len,
                )
            })?;
            cvt(unsafe { libc::listen(listener.as_raw_fd(), 4) })?;
            Ok(Offer { listener })
        }

        /// Serves upgrades on a thread of its own: each new process gets `sockets`; once one
        /// reports ready, `shared` is set and `on_ready` runs (the caller drains).
        ///
        /// # Errors
        /// The thread cannot be started.
        pub fn serve(
            self,
            sockets: Vec<(SocketAddr, RawFd)>,
            shared: Arc<AtomicBool>,
            on_ready: impl Fn() + Send + 'static,
        ) -> io::Result<()> {
            std::thread::Builder::new()
                .name("certgate-control".into())
                .spawn(move || loop {
                    // SAFETY: accept(2) on our listening socket.
                    let fd = unsafe {
                        libc::accept4(
                            self.listener.as_raw_fd(),
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                            libc::SOCK_CLOEXEC,
                        )
                    };
                    if fd < 0 {
                        let e = io::Error::last_os_error();
                        if e.kind() == io::ErrorKind::Interrupted {
                            continue;
                        }
                        tracing::warn!("control socket: accept failed: {e}");
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        continue;
                    }
                    // SAFETY: a fresh descriptor from accept4.
                    let conn = unsafe { OwnedFd::from_raw_fd(fd) };
                    // From the first descriptor sent, the sockets are shared: a stop must no
                    // longer shut them down.
                    shared.store(true, Ordering::Release);
                    match offer(&conn, &sockets) {
                        Ok(()) => {
                            tracing::info!("a new process took over the listening sockets");
                            on_ready();
                            return;
                        }
                        Err(e) => tracing::warn!("upgrade abandoned, serving on: {e}"),
                    }
                })
                .map(drop)
        }
    }

    fn offer(conn: &OwnedFd, sockets: &[(SocketAddr, RawFd)]) -> io::Result<()> {
        for (addr, fd) in sockets {
            send(conn, &format!("fd {addr}"), Some(*fd))?;
        }
        send(conn, "end", None)?;
        match recv(conn)? {
            Some((text, _)) if text == "ready" => Ok(()),
            Some((text, _)) => Err(io::Error::other(format!(
                "the new process answered {text:?}"
            ))),
            None => Err(io::Error::other(
                "the new process closed the control connection before it was ready",
            )),
        }
    }

    /// The new process's side: the sockets taken over, and the connection to report ready on.
    pub struct Handover {
        conn: OwnedFd,
        /// The listening sockets, each with the address it is bound to.
        pub sockets: Vec<(SocketAddr, std::net::TcpListener)>,
    }

    impl Handover {
        /// Tells the old process that this one serves: it drains from now on.
        ///
        /// # Errors
        /// The old process went away.
        pub fn ready(self) -> io::Result<()> {
            send(&self.conn, "ready", None)
        }
    }

    /// Connects to the running process's control socket at `path` and receives its listening
    /// sockets.
    ///
    /// # Errors
    /// Nothing listens at `path`, or the exchange failed.
    pub fn take_over(path: &Path) -> io::Result<Handover> {
        let (addr, len) = address(path)?;
        let conn = seqpacket()?;
        // SAFETY: connect(2) on our socket with a valid address.
        cvt(unsafe {
            libc::connect(
                conn.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        })
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot reach the running process at {}: {e} (is it running with this \
                     pid_file?)",
                    path.display()
                ),
            )
        })?;
        let mut sockets = Vec::new();
        loop {
            match recv(&conn)? {
                Some((text, None)) if text == "end" => break,
                Some((text, Some(fd))) => {
                    let addr: SocketAddr = text
                        .strip_prefix("fd ")
                        .and_then(|a| a.parse().ok())
                        .ok_or_else(|| io::Error::other(format!("unexpected {text:?}")))?;
                    let l = std::net::TcpListener::from(fd);
                    l.set_nonblocking(true)?;
                    sockets.push((addr, l));
                }
                Some((text, None)) => return Err(io::Error::other(format!("unexpected {text:?}"))),
                None => return Err(io::Error::other("the running process hung up")),
            }
        }
        Ok(Handover { conn, sockets })
    }
}
