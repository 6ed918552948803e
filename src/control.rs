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

/// Removes `pid_file` and its status file when they are still this process's (a newer process
/// may have written its own since).
pub fn remove_pid(pid_file: &Path) {
    if read_pid(pid_file).ok() == Some(std::process::id()) {
        let _ = fs::remove_file(pid_file);
        let _ = fs::remove_file(status_path(pid_file));
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
