//! Keeping the cores awake between calls (`idle_poll_us`; off by default).
//!
//! Every call hands work between threads: the connection's async thread, the engine's workers,
//! the client's thread. When the machine is otherwise idle, each hand-over wakes a thread whose
//! core is halted, and on a virtual machine a halted vCPU takes tens of microseconds to resume
//! (about 40 to 80 µs per wake-up on the 2-vCPU benchmark machine, several per call). That
//! wait, not the work, is most of an idle server's latency.
//!
//! With `idle_poll_us = N`, the server keeps one spinning thread per core for N µs after each
//! call starts and after it ends. The spinners run at `SCHED_IDLE` priority: the scheduler gives
//! them a core only when nothing else wants it and takes it back at once, so they never delay
//! the server's work (but see below for other processes), but while they spin the core does not halt, and a woken thread starts in a few
//! microseconds. After N µs without calls they go to sleep until the next call. ScyllaDB's
//! `--idle-poll-time-us` makes the same trade: CPU time burnt at idle priority for latency.
//! The price is that the cores show as busy (to `top` and to a hypervisor) while calls keep
//! coming; it suits a dedicated host, not a shared laptop.
//!
//! Only Linux has `SCHED_IDLE`; elsewhere the setting is refused at start-up, because a spinner
//! at normal priority would compete with the work it is meant to speed up.
//!
//! Idle priority holds only within a scheduling group. Linux first shares the cores between the
//! groups of processes (one per session under autogroups, one per cgroup with the `cpu`
//! controller), and only then between the threads of a group by their policy. A client process
//! in another group whose thread wakes on a core where a spinner runs is not preferred to it and
//! can wait out the spinner's time slice: a client started from another terminal session took
//! about 2 ms per call with a 2 ms window, against 0.13 ms with idle polling off. The server's
//! own threads, and clients in its group, always run first.
//!
//! A call never waits for a spinner: spinners sleep with [`std::thread::park`] and
//! [`IdlePoll::touch`] wakes them with `unpark`, which takes no lock. A lock shared with them
//! would risk a priority inversion: a spinner preempted while holding it runs again only when a
//! core is free, and a call waiting for the lock would wait with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The spinners of a server; they stop when this is dropped.
#[derive(Debug)]
pub struct IdlePoll {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    /// How long the spinners spin after the last call started or ended.
    window: Duration,
    epoch: Instant,
    /// Nanoseconds from `epoch` to the latest call start or end.
    last: AtomicU64,
    /// Spinners asleep (or about to be), whom `touch` must wake.
    asleep: AtomicU64,
    stop: AtomicBool,
    /// Spinners currently spinning (for tests and logs).
    spinning: AtomicU64,
}

impl Shared {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn quiet(&self) -> bool {
        self.now().saturating_sub(self.last.load(Ordering::SeqCst)) >= self.window.as_nanos() as u64
    }
}

impl IdlePoll {
    /// Starts `threads` spinners that spin for `window` after every [`IdlePoll::touch`].
    pub fn start(window: Duration, threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            window,
            epoch: Instant::now(),
            last: AtomicU64::new(0),
            asleep: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            spinning: AtomicU64::new(0),
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut threads_out = Vec::with_capacity(threads);
        for _ in 0..threads.max(1) {
            let shared = shared.clone();
            let ready = ready_tx.clone();
            let handle = std::thread::Builder::new()
                .name("portraitd-idle".into())
                .spawn(move || {
                    let lowered = lower_priority();
                    let ok = lowered.is_ok();
                    let _ = ready.send(lowered);
                    if ok {
                        spin(&shared);
                    }
                })?;
            threads_out.push(handle);
        }
        drop(ready_tx);
        let poll = IdlePoll {
            shared,
            threads: threads_out,
        };
        // Every spinner must run at idle priority, or none may spin.
        for _ in 0..poll.threads.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(std::io::Error::other("an idle-poll thread died")),
            }
        }
        Ok(poll)
    }

    /// A call started or ended: the spinners spin for the next `window`.
    pub fn touch(&self) {
        let s = &self.shared;
        s.last.store(s.now(), Ordering::SeqCst);
        // Pairs with the spinner's `asleep` increment before its last look at `last`: either it
        // sees this call's time and stays awake, or this sees it asleep and unparks it (a token
        // that also covers a spinner not yet parked).
        if s.asleep.load(Ordering::SeqCst) > 0 {
            self.unpark_all();
        }
    }

    fn unpark_all(&self) {
        for t in &self.threads {
            t.thread().unpark();
        }
    }

    /// Spinners spinning right now.
    pub fn spinning(&self) -> u64 {
        self.shared.spinning.load(Ordering::SeqCst)
    }
}

impl Drop for IdlePoll {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.unpark_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A spinner's life: spin while calls come, sleep when they stop, until told to stop.
fn spin(s: &Shared) {
    while !s.stop.load(Ordering::Relaxed) {
        if !s.quiet() {
            s.spinning.fetch_add(1, Ordering::SeqCst);
            while !s.quiet() && !s.stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    std::hint::spin_loop();
                }
            }
            s.spinning.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        // Published before the last look at `last`: a `touch` after that look sees it.
        s.asleep.fetch_add(1, Ordering::SeqCst);
        while s.quiet() && !s.stop.load(Ordering::SeqCst) {
            // Returns on `unpark` (or spuriously); the loop looks again.
            std::thread::park();
        }
        s.asleep.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Moves the calling thread to `SCHED_IDLE`.
#[cfg(target_os = "linux")]
fn lower_priority() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param; pid 0 is the calling thread.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "idle polling needs SCHED_IDLE, which only Linux has",
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !ok() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn spinners_spin_after_a_touch_then_sleep_and_stop_when_dropped() {
        let poll = IdlePoll::start(Duration::from_millis(50), 2).unwrap();
        // Nothing happened yet: asleep.
        wait_for("the spinners to sleep", || poll.spinning() == 0);
        poll.touch();
        wait_for("both spinners to spin", || poll.spinning() == 2);
        // No more calls: they stop spinning once the window has passed.
        wait_for("the spinners to sleep again", || poll.spinning() == 0);
        wait_for("both to be asleep", || {
            poll.shared.asleep.load(Ordering::SeqCst) == 2
        });
        poll.touch();
        wait_for("the spinners to wake", || poll.spinning() > 0);
        let threads: Vec<_> = poll.threads.iter().map(|t| t.thread().id()).collect();
        assert_eq!(threads.len(), 2);
        // Dropping joins every thread (a hang here fails the test by its harness timeout).
        drop(poll);
    }
}
