//! Parallel decoding in order: the groups of a file (Parquet row groups) are decoded on worker
//! threads while the import consumes their items (batches) one group after the other, in file
//! order, as if it had decoded them itself.
//!
//! Each group has a bounded channel of `depth` items; a worker claims the next group, decodes
//! it into its channel and claims another. Groups are claimed in increasing order, so the group
//! the consumer waits for is always being decoded (or done). Memory is bounded twice: a worker
//! claims a group only while fewer than one group per worker is claimed and not yet read
//! through ([`Gate`]), and it holds at most `depth` items of its group ahead of the consumer. A
//! depth that holds a whole group lets a worker decode the next group while the consumer still
//! reads the current one; a shallower one leaves that worker blocked on its full channel, and a
//! core idle. Dropping the consumer closes the channels and the gate; a worker stops at its
//! next item and the drop waits for it.
//!
//! The workers are threads of their own rather than rayon's: they block on full channels, and a
//! blocked rayon worker would hold up the queries sharing its pool.
//!
//! A panic while decoding a group (the decoder is a large body of third-party code, and the
//! file may be hostile) reaches the consumer as [`Failed`] at that point of the stream.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

/// The fewest items a worker may decode ahead of the consumer, per group.
pub(crate) const MIN_DEPTH: usize = 2;

/// The decoding of a group panicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failed;

/// Where a worker puts the items of the group it decodes.
pub(crate) struct Emit<T> {
    tx: SyncSender<Result<T, Failed>>,
    spare: Arc<Mutex<Vec<T>>>,
    open: bool,
}

impl<T> Emit<T> {
    /// An item the consumer is done with, to reuse (its buffers keep their capacity).
    pub(crate) fn spare(&mut self) -> Option<T> {
        self.spare.lock().ok()?.pop()
    }

    /// Hands `item` to the consumer, waiting while the group's channel is full; `false` when
    /// the consumer is gone (stop decoding).
    pub(crate) fn send(&mut self, item: T) -> bool {
        self.open = self.open && self.tx.send(Ok(item)).is_ok();
        self.open
    }
}

/// Which groups the workers may claim: at most `window` of them claimed and not yet read
/// through by the consumer.
#[derive(Debug)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
    window: usize,
}

#[derive(Debug, Default)]
struct GateState {
    /// The next group to claim.
    next: usize,
    /// Groups the consumer has read through.
    read: usize,
    /// The consumer is gone.
    closed: bool,
}

impl Gate {
    /// The next of `groups` groups, once the window allows it; `None` after the last group, or
    /// once the consumer is gone.
    fn claim(&self, groups: usize) -> Option<usize> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while !s.closed && s.next < groups && s.next >= s.read + self.window {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        if s.closed || s.next >= groups {
            return None;
        }
        s.next += 1;
        Some(s.next - 1)
    }

    fn update(&self, f: impl FnOnce(&mut GateState)) {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
        self.changed.notify_all();
    }
}

/// The items of `groups` groups, decoded in parallel, read in order.
pub(crate) struct Ordered<T> {
    /// The channels of the groups not finished yet, the current one first.
    groups: VecDeque<Receiver<Result<T, Failed>>>,
    /// The index of the current group.
    current: usize,
    spare: Arc<Mutex<Vec<T>>>,
    spare_max: usize,
    gate: Arc<Gate>,
    workers: Vec<JoinHandle<()>>,
}

impl<T: Send + 'static> Ordered<T> {
    /// Starts `threads` workers (at least one, at most one per group) running `decode(group,
    /// emit)` for groups `0..groups`, each group's items held up to `depth` (at least
    /// [`MIN_DEPTH`]) ahead of the consumer.
    pub(crate) fn start<F>(
        groups: usize,
        threads: usize,
        depth: usize,
        decode: F,
    ) -> std::io::Result<Self>
    where
        F: Fn(usize, &mut Emit<T>) + Send + Sync + 'static,
    {
        let depth = depth.max(MIN_DEPTH);
        let mut senders = Vec::with_capacity(groups);
        let mut receivers = VecDeque::with_capacity(groups);
        for _ in 0..groups {
            let (tx, rx) = sync_channel(depth);
            senders.push(Some(tx));
            receivers.push_back(rx);
        }
        let senders = Arc::new(Mutex::new(senders));
        let spare = Arc::new(Mutex::new(Vec::new()));
        let decode = Arc::new(decode);
        let threads = threads.clamp(1, groups.max(1));
        let gate = Arc::new(Gate {
            state: Mutex::new(GateState::default()),
            changed: Condvar::new(),
            window: threads,
        });
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (senders, gate, spare, decode) =
                (senders.clone(), gate.clone(), spare.clone(), decode.clone());
            let worker = std::thread::Builder::new()
                .name("portrait-import".into())
                .spawn(move || {
                    while let Some(g) = gate.claim(groups) {
                        let Some(tx) = senders.lock().ok().and_then(|mut s| s[g].take()) else {
                            return;
                        };
                        let mut emit = Emit {
                            tx,
                            spare: spare.clone(),
                            open: true,
                        };
                        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            decode(g, &mut emit)
                        }));
                        if run.is_err() {
                            let _ = emit.tx.send(Err(Failed));
                        }
                        if !emit.open {
                            return;
                        }
                    }
                });
            match worker {
                Ok(w) => workers.push(w),
                // Fewer workers still decode every group; none cannot.
                Err(e) if workers.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        Ok(Self {
            groups: receivers,
            current: 0,
            spare,
            spare_max: threads * (depth + 1) + 1,
            gate,
            workers,
        })
    }

    /// The next item and the index of its group; `None` after the last group.
    pub(crate) fn next(&mut self) -> Option<(usize, Result<T, Failed>)> {
        loop {
            let rx = self.groups.front()?;
            match rx.recv() {
                Ok(item) => return Some((self.current, item)),
                // The group's worker is done with it.
                Err(_) => {
                    self.groups.pop_front();
                    self.current += 1;
                    self.gate.update(|s| s.read += 1);
                }
            }
        }
    }

    /// Gives back an item the consumer is done with, for a worker to reuse.
    pub(crate) fn recycle(&mut self, item: T) {
        if let Ok(mut spare) = self.spare.lock()
            && spare.len() < self.spare_max
        {
            spare.push(item);
        }
    }
}

impl<T> Drop for Ordered<T> {
    fn drop(&mut self) {
        // Closing the channels stops every worker at its next item, closing the gate every
        // worker waiting to claim a group.
        self.groups.clear();
        self.gate.update(|s| s.closed = true);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl<T> std::fmt::Debug for Ordered<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ordered")
            .field("current", &self.current)
            .field("groups_left", &self.groups.len())
            .field("workers", &self.workers.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// What the consumer read: per item, its group and the item.
    type Read = Vec<(usize, Result<(usize, usize), Failed>)>;

    /// Group `g` yields `g % 5` items `(g, i)`, after a delay that makes later groups finish
    /// first; group 7 panics after one item when `panic_at_7`.
    fn run(groups: usize, threads: usize, depth: usize, panic_at_7: bool) -> Read {
        let mut o = Ordered::start(
            groups,
            threads,
            depth,
            move |g, emit: &mut Emit<(usize, usize)>| {
                std::thread::sleep(std::time::Duration::from_millis(((groups - g) % 3) as u64));
                for i in 0..g % 5 {
                    let _reused = emit.spare();
                    if !emit.send((g, i)) {
                        return;
                    }
                    if panic_at_7 && g == 7 {
                        panic!("a decoder bug");
                    }
                }
            },
        )
        .unwrap();
        let mut out = Vec::new();
        while let Some((g, item)) = o.next() {
            if let Ok(x) = item {
                o.recycle(x);
            }
            out.push((g, item));
        }
        out
    }

    #[test]
    fn items_come_in_group_order_whatever_the_threads() {
        let want: Read = (0..23)
            .flat_map(|g| (0..g % 5).map(move |i| (g, Ok((g, i)))))
            .collect();
        for threads in [1, 2, 3, 8, 40] {
            for depth in [0, 2, 3, 5, 64] {
                assert_eq!(
                    run(23, threads, depth, false),
                    want,
                    "{threads} threads, depth {depth}"
                );
            }
        }
        assert!(run(0, 2, 2, false).is_empty());
    }

    #[test]
    fn a_panic_is_reported_where_it_happened() {
        let got = run(12, 3, 2, true);
        let at = got.iter().position(|x| x.1.is_err()).unwrap();
        assert_eq!(got[at].0, 7);
        assert_eq!(got[at - 1], (7, Ok((7, 0))));
        // The other groups are decoded all the same.
        assert_eq!(got.last(), Some(&(11, Ok((11, 0)))));
    }

    #[test]
    fn dropping_the_consumer_early_stops_the_workers() {
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        let mut o = Ordered::start(100, 4, 3, move |_, emit: &mut Emit<usize>| {
            for i in 0..1000 {
                counter.fetch_add(1, Ordering::Relaxed);
                if !emit.send(i) {
                    return;
                }
            }
        })
        .unwrap();
        assert!(matches!(o.next(), Some((0, Ok(0)))));
        drop(o);
        // Each of 4 workers ran at most depth + 1 items past what was read before stopping.
        assert!(sent.load(Ordering::Relaxed) <= 1 + 4 * (3 + 2));
    }

    /// However deep the channels, the workers claim at most one group each beyond the groups
    /// the consumer has read through.
    #[test]
    fn workers_run_at_most_a_group_each_ahead() {
        const THREADS: usize = 2;
        let highest = Arc::new(AtomicUsize::new(0));
        let claimed = highest.clone();
        let mut o = Ordered::start(20, THREADS, 100, move |g, emit: &mut Emit<usize>| {
            claimed.fetch_max(g, Ordering::SeqCst);
            for i in 0..3 {
                if !emit.send(i) {
                    return;
                }
            }
        })
        .unwrap();
        let mut read = 0;
        while let Some((g, item)) = o.next() {
            assert!(item.is_ok());
            read += 1;
            // Time for the workers to run ahead if they could.
            std::thread::sleep(std::time::Duration::from_millis(2));
            let highest = highest.load(Ordering::SeqCst);
            assert!(
                highest < g + THREADS,
                "group {highest} claimed while the consumer reads group {g}"
            );
        }
        assert_eq!(read, 60);
    }

    /// With a depth that holds a whole group, the worker of the next group decodes all of it
    /// while the consumer still waits for the current one; with the least depth it cannot.
    #[test]
    fn a_deep_channel_lets_the_next_group_be_decoded_whole() {
        fn next_done_first(depth: usize) -> bool {
            const ITEMS: usize = 6;
            let sent = Arc::new(AtomicUsize::new(0));
            let counter = sent.clone();
            let mut o = Ordered::start(2, 2, depth, move |g, emit: &mut Emit<usize>| {
                if g == 0 {
                    // Group 0 waits (a bounded time) for group 1 to be decoded whole.
                    let waited = std::time::Instant::now();
                    while counter.load(Ordering::SeqCst) < ITEMS
                        && waited.elapsed() < std::time::Duration::from_secs(1)
                    {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    let whole = counter.load(Ordering::SeqCst) == ITEMS;
                    emit.send(usize::from(whole));
                } else {
                    for i in 0..ITEMS {
                        if !emit.send(i) {
                            return;
                        }
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
            .unwrap();
            let first = o.next();
            let rest: Vec<usize> = std::iter::from_fn(|| o.next())
                .map(|(_, item)| item.unwrap())
                .collect();
            assert_eq!(rest, (0..ITEMS).collect::<Vec<_>>());
            matches!(first, Some((0, Ok(1))))
        }
        assert!(next_done_first(6));
        assert!(!next_done_first(MIN_DEPTH));
    }
}
