//! A coarse monotonic clock, for bookkeeping that needs no precision (how long a pooled
//! connection has been idle): `CLOCK_MONOTONIC_COARSE` is the kernel's last tick, read from the
//! vDSO without reading the time-stamp counter, at a few milliseconds' resolution.

use std::time::Duration;

/// Time since an arbitrary fixed point, at tick resolution (1–10 ms); never goes backwards.
pub fn coarse() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec we own; this clock id exists on every Linux since 2.6.32.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_with_time_and_never_back() {
        let a = coarse();
        std::thread::sleep(Duration::from_millis(30));
        let b = coarse();
        assert!(b >= a + Duration::from_millis(15), "{a:?} -> {b:?}");
    }
}
