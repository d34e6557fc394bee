//! Group commit: callers of one write verb that arrive while a transaction
//! of that verb is running share the next one.
//!
//! A transaction's cost is mostly per commit, not per row (a PostgreSQL
//! commit, a SQLite WAL write of every page it touched), so sixteen
//! CreateJobs in one transaction cost little more than one. No thread of
//! its own and no timer: the first caller to find nobody running becomes
//! the leader and runs everything queued so far, on its own thread, while
//! later callers queue for the next turn. A lone caller runs at once.
//!
//! May use: `store`.

use super::{Error, ErrorKind, Result};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// Queues items of one verb and runs them in batches of at most `max`,
/// at most `leaders` batches at a time.
pub struct Batcher<T, R> {
    state: Mutex<State<T, R>>,
    max: usize,
    leaders: usize,
}

struct State<T, R> {
    /// Items waiting for the next batch, each with its caller's wake-up.
    queue: VecDeque<Waiting<T, R>>,
    /// Callers running a batch. The queue holds items only while all
    /// `leaders` are busy: a leader that finishes hands the next batch on.
    leading: usize,
}

type Waiting<T, R> = (T, Arc<Slot<T, R>>);

/// Where a waiting caller sleeps until it is woken, exactly once: a batch
/// of sixteen wakes sixteen threads, not sixteen times sixteen. A plain
/// condition variable, not a channel: channels spin and yield before they
/// sleep, which on two busy cores costs more than the batch saves.
struct Slot<T, R> {
    wake: Mutex<Option<Wake<T, R>>>,
    woken: Condvar,
}

impl<T, R> Slot<T, R> {
    fn new() -> Arc<Slot<T, R>> {
        Arc::new(Slot {
            wake: Mutex::new(None),
            woken: Condvar::new(),
        })
    }

    fn wake(&self, wake: Wake<T, R>) {
        *self.wake.lock().unwrap_or_else(PoisonError::into_inner) = Some(wake);
        self.woken.notify_one();
    }

    fn wait(&self) -> Wake<T, R> {
        let mut wake = self.wake.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(w) = wake.take() {
                return w;
            }
            wake = self
                .woken
                .wait(wake)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// What a waiting caller is woken for.
enum Wake<T, R> {
    Done(Result<R>),
    /// Run this batch, which holds your item, taken off the queue for you.
    Lead(Vec<Waiting<T, R>>),
}

impl<T, R> Batcher<T, R> {
    /// `leaders` above one lets a batch start while others wait on their
    /// commit (PostgreSQL); one suits a store with a single writer.
    pub fn new(max: usize, leaders: usize) -> Batcher<T, R> {
        Batcher {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                leading: 0,
            }),
            max: max.max(1),
            leaders: leaders.max(1),
        }
    }

    /// Queues `item` and returns its result once a batch ran it. `run` gets
    /// a batch in arrival order and returns one result per item, in order;
    /// its error (or panic) is every item's error.
    pub fn submit(&self, item: T, run: impl Fn(&[T]) -> Result<Vec<R>>) -> Result<R> {
        let slot = Slot::new();
        let mut state = self.lock();
        let batch = if state.leading == self.leaders {
            state.queue.push_back((item, slot.clone()));
            drop(state);
            match slot.wait() {
                Wake::Done(result) => return result,
                Wake::Lead(batch) => batch,
            }
        } else {
            // A free leader's place means an empty queue: run alone, now.
            state.leading += 1;
            drop(state);
            vec![(item, slot.clone())]
        };
        let (items, slots): (Vec<T>, Vec<Arc<Slot<T, R>>>) = batch.into_iter().unzip();
        let outcome = catch_unwind(AssertUnwindSafe(|| run(&items)))
            .unwrap_or_else(|_| Err(failed("the batch panicked")));
        let results: Vec<Result<R>> = match outcome {
            Ok(results) if results.len() == slots.len() => results.into_iter().map(Ok).collect(),
            Ok(results) => {
                let why = format!("{} results for {} items", results.len(), slots.len());
                slots.iter().map(|_| Err(failed(&why))).collect()
            }
            Err(e) => slots.iter().map(|_| Err(e.clone())).collect(),
        };
        for (slot, result) in slots.iter().zip(results) {
            slot.wake(Wake::Done(result));
        }
        let mut state = self.lock();
        if state.queue.is_empty() {
            state.leading -= 1;
        } else {
            let take = state.queue.len().min(self.max);
            let next: Vec<Waiting<T, R>> = state.queue.drain(..take).collect();
            let head = next[0].1.clone();
            head.wake(Wake::Lead(next));
        }
        drop(state);
        match slot.wait() {
            Wake::Done(result) => result,
            Wake::Lead(_) => Err(failed("handed a batch twice")),
        }
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    fn lock(&self) -> MutexGuard<'_, State<T, R>> {
        // The lock is never held while a batch runs, so nothing panics
        // under it; a poisoned state is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn failed(why: &str) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("a batched write failed: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};

    #[test]
    fn a_lone_caller_runs_its_own_batch() {
        let batcher = Batcher::new(8, 1);
        let r = batcher.submit(21, |items: &[i32]| {
            Ok(items.iter().map(|i| i * 2).collect())
        });
        assert_eq!(r.unwrap(), 42);
    }

    #[test]
    fn concurrent_callers_share_batches_and_each_gets_its_own_result() {
        const CALLERS: usize = 16;
        let batcher = Arc::new(Batcher::new(CALLERS, 2));
        let batches = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(CALLERS));
        let threads: Vec<_> = (0..CALLERS)
            .map(|i| {
                let (batcher, batches, start) = (batcher.clone(), batches.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    (0..200)
                        .map(|round| {
                            let item = i * 1000 + round;
                            let got = batcher.submit(item, |items: &[usize]| {
                                batches.fetch_add(1, Ordering::Relaxed);
                                std::thread::yield_now();
                                Ok(items.iter().map(|x| x + 1).collect())
                            });
                            assert_eq!(got.unwrap(), item + 1);
                        })
                        .count()
                })
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, CALLERS * 200);
        let batches = batches.load(Ordering::Relaxed);
        assert!(batches <= total, "{batches} batches for {total} items");
    }

    #[test]
    fn callers_that_arrive_during_a_batch_share_the_next_one() {
        let batcher = Arc::new(Batcher::new(8, 1));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let (started_tx, started) = crossbeam_channel::bounded(0);
        let (go, go_rx) = crossbeam_channel::bounded::<()>(0);
        let run = {
            let sizes = sizes.clone();
            move |items: &[usize]| {
                sizes.lock().unwrap().push(items.len());
                if items == [0] {
                    started_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                }
                Ok(items.to_vec())
            }
        };
        let run = Arc::new(run);
        let spawn = |item: usize| {
            let (batcher, run) = (batcher.clone(), run.clone());
            std::thread::spawn(move || batcher.submit(item, |i| run(i)).unwrap())
        };
        let first = spawn(0);
        started.recv().unwrap();
        let later: Vec<_> = (1..=3).map(spawn).collect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while batcher.queued() < 3 {
            assert!(std::time::Instant::now() < deadline, "callers never queued");
            std::thread::yield_now();
        }
        go.send(()).unwrap();
        assert_eq!(first.join().unwrap(), 0);
        let mut got: Vec<usize> = later.into_iter().map(|t| t.join().unwrap()).collect();
        got.sort();
        assert_eq!(got, [1, 2, 3]);
        assert_eq!(*sizes.lock().unwrap(), [1, 3]);
    }

    #[test]
    fn a_second_leader_runs_while_the_first_batch_waits() {
        let batcher = Arc::new(Batcher::new(8, 2));
        let (started_tx, started) = crossbeam_channel::bounded(0);
        let (go, go_rx) = crossbeam_channel::bounded::<()>(0);
        let first = {
            let batcher = batcher.clone();
            std::thread::spawn(move || {
                batcher.submit(1, |items: &[i32]| {
                    started_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                    Ok(items.to_vec())
                })
            })
        };
        started.recv().unwrap();
        assert_eq!(batcher.submit(2, |i: &[i32]| Ok(i.to_vec())).unwrap(), 2);
        go.send(()).unwrap();
        assert_eq!(first.join().unwrap().unwrap(), 1);
    }

    #[test]
    fn an_error_or_a_panic_reaches_every_item_of_the_batch_and_the_next_batch_runs() {
        let batcher = Batcher::new(4, 1);
        let err = batcher
            .submit(1, |_: &[i32]| -> Result<Vec<i32>> {
                Err(Error::new(ErrorKind::Unavailable, "down"))
            })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        let err = batcher
            .submit(2, |_: &[i32]| -> Result<Vec<i32>> { panic!("bug") })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(err.to_string().contains("panicked"), "{err}");
        let err = batcher.submit(3, |_: &[i32]| Ok(vec![])).unwrap_err();
        assert!(err.to_string().contains("0 results for 1 items"), "{err}");
        assert_eq!(batcher.submit(4, |i: &[i32]| Ok(i.to_vec())).unwrap(), 4);
    }
}
