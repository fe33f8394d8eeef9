//! Parallel decoding in order: the groups of a file (Parquet row groups) are decoded on worker
//! threads while the import consumes their items (batches) one group after the other, in file
//! order, as if it had decoded them itself.
//!
//! Each group has a bounded channel of [`DEPTH`] items; a worker claims the next group, decodes
//! it into its channel and claims another. Groups are claimed in increasing order, so the group
//! the consumer waits for is always being decoded (or done): the workers at most run
//! `DEPTH` items per group ahead, which bounds memory. Dropping the consumer closes the
//! channels; a worker stops at its next item and the drop waits for it.
//!
//! The workers are threads of their own rather than rayon's: they block on full channels, and a
//! blocked rayon worker would hold up the queries sharing its pool.
//!
//! A panic while decoding a group (the decoder is a large body of third-party code, and the
//! file may be hostile) reaches the consumer as [`Failed`] at that point of the stream.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Items a worker may decode ahead of the consumer, per group.
pub(crate) const DEPTH: usize = 2;

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

/// The items of `groups` groups, decoded in parallel, read in order.
pub(crate) struct Ordered<T> {
    /// The channels of the groups not finished yet, the current one first.
    groups: VecDeque<Receiver<Result<T, Failed>>>,
    /// The index of the current group.
    current: usize,
    spare: Arc<Mutex<Vec<T>>>,
    spare_max: usize,
    workers: Vec<JoinHandle<()>>,
}

impl<T: Send + 'static> Ordered<T> {
    /// Starts `threads` workers (at least one, at most one per group) running `decode(group,
    /// emit)` for groups `0..groups`.
    pub(crate) fn start<F>(groups: usize, threads: usize, decode: F) -> std::io::Result<Self>
    where
        F: Fn(usize, &mut Emit<T>) + Send + Sync + 'static,
    {
        let mut senders = Vec::with_capacity(groups);
        let mut receivers = VecDeque::with_capacity(groups);
        for _ in 0..groups {
            let (tx, rx) = sync_channel(DEPTH);
            senders.push(Some(tx));
            receivers.push_back(rx);
        }
        let senders = Arc::new(Mutex::new(senders));
        let next = Arc::new(AtomicUsize::new(0));
        let spare = Arc::new(Mutex::new(Vec::new()));
        let decode = Arc::new(decode);
        let threads = threads.clamp(1, groups.max(1));
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (senders, next, spare, decode) =
                (senders.clone(), next.clone(), spare.clone(), decode.clone());
            let worker = std::thread::Builder::new()
                .name("portrait-import".into())
                .spawn(move || {
                    loop {
                        let g = next.fetch_add(1, Ordering::Relaxed);
                        if g >= groups {
                            return;
                        }
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
            spare_max: threads * (DEPTH + 1) + 1,
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
        // Closing the channels stops every worker at its next item.
        self.groups.clear();
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
    use super::*;

    /// What the consumer read: per item, its group and the item.
    type Read = Vec<(usize, Result<(usize, usize), Failed>)>;

    /// Group `g` yields `g % 5` items `(g, i)`, after a delay that makes later groups finish
    /// first; group 7 panics after one item when `panic_at_7`.
    fn run(groups: usize, threads: usize, panic_at_7: bool) -> Read {
        let mut o = Ordered::start(
            groups,
            threads,
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
            assert_eq!(run(23, threads, false), want, "{threads} threads");
        }
        assert!(run(0, 2, false).is_empty());
    }

    #[test]
    fn a_panic_is_reported_where_it_happened() {
        let got = run(12, 3, true);
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
        let mut o = Ordered::start(100, 4, move |_, emit: &mut Emit<usize>| {
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
        // Each of 4 workers ran at most DEPTH + 1 items past what was read before stopping.
        assert!(sent.load(Ordering::Relaxed) <= 1 + 4 * (DEPTH + 2));
    }
}
