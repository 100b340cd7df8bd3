//! A periodic CLOCK_MONOTONIC `timerfd` driven by tokio's reactor.
//!
//! tokio's own timer has 1 ms granularity, far too coarse to schedule sends
//! every 200 µs; a timerfd wakes the (single-threaded) generator within a few
//! microseconds of each scheduled send time.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

pub struct TimerFd {
    fd: AsyncFd<OwnedFd>,
}

fn timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

impl TimerFd {
    /// Must be called inside a tokio runtime.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the returned fd is checked and then owned.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh, valid fd that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: `owned` is a valid open fd, owned by the AsyncFd for its whole lifetime.
        let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE)? };
        Ok(Self { fd })
    }

    /// First expiry at absolute `first_ns` (CLOCK_MONOTONIC), then every `period_ns`.
    pub fn set_periodic(&self, first_ns: u64, period_ns: u64) -> io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: timespec(period_ns),
            it_value: timespec(first_ns.max(1)),
        };
        // SAFETY: valid fd and a fully initialised itimerspec.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd.get_ref().as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for the next expiry; returns how many expiries happened since the last read.
    pub async fn wait(&self) -> io::Result<u64> {
        loop {
            let mut guard = self.fd.readable().await?;
            let res = guard.try_io(|inner| {
                let mut buf = 0u64;
                // SAFETY: reading 8 bytes into a u64 from a timerfd.
                let n = unsafe {
                    libc::read(
                        inner.get_ref().as_raw_fd(),
                        (&mut buf as *mut u64).cast::<libc::c_void>(),
                        8,
                    )
                };
                if n == 8 {
                    Ok(buf)
                } else {
                    Err(io::Error::last_os_error())
                }
            });
            match res {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}
