//! The worker pool: a fixed number of threads fed by a crossbeam channel of
//! JobIDs. StartJob (and start-up recovery) send an ID; a free worker wakes
//! at once, claims the job in the store, runs its kind and writes the
//! outcome. No store connection is held while a job runs.
//!
//! May use: `job`, `config`, `store`, `files`, `kinds`.

mod run;
pub mod running;

use crate::config::LiveConfig;
use crate::files::Files;
use crate::job::JobId;
use crate::kinds::StopReason;
use crate::store::Store;
use crossbeam_channel::{Receiver, Sender};
use running::Running;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What the pool needs from the rest of the engine.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub files: Files,
    pub config: Arc<LiveConfig>,
    pub agent: ureq::Agent,
    /// Which kind runs a job type: `kinds::for_job`, or a stand-in in tests.
    pub kinds: fn(crate::job::JobKind) -> &'static dyn crate::kinds::Kind,
}

/// The clonable face of the pool: queue a job, stop a running one.
#[derive(Clone)]
pub struct Handle {
    queue: Sender<JobId>,
    running: Arc<Running>,
}

impl Handle {
    /// Queues a Started job; a free worker picks it up at once.
    pub fn enqueue(&self, id: JobId) {
        // The receivers live as long as the pool; after shutdown the job
        // simply stays Started in the store and runs on the next start.
        let _ = self.queue.send(id);
    }

    /// Asks the job to stop if it runs here; true if it was running.
    pub fn stop(&self, id: &JobId, reason: StopReason) -> bool {
        self.running.stop(id, reason)
    }

    /// Waits (bounded) until the job no longer runs here.
    pub fn wait_gone(&self, id: &JobId, timeout: Duration) -> bool {
        self.running.wait_gone(id, timeout)
    }

    /// Jobs running right now.
    pub fn running_count(&self) -> usize {
        self.running.count()
    }
}

pub struct Pool {
    handle: Handle,
    closing: Arc<AtomicBool>,
    /// Dropped at shutdown: its receivers then wake every idle worker.
    wake_all: Sender<()>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    pub fn start(workers: usize, deps: Deps) -> Pool {
        let (queue, jobs) = crossbeam_channel::unbounded();
        let running = Arc::new(Running::default());
        let closing = Arc::new(AtomicBool::new(false));
        let (wake_all, woken) = crossbeam_channel::bounded::<()>(0);
        let threads = (0..workers)
            .map(|n| {
                let worker = run::Worker {
                    deps: deps.clone(),
                    running: running.clone(),
                    closing: closing.clone(),
                };
                let jobs: Receiver<JobId> = jobs.clone();
                let woken = woken.clone();
                std::thread::Builder::new()
                    .name(format!("worker-{n}"))
                    .spawn(move || worker.serve(jobs, woken))
                    .expect("spawning a worker thread")
            })
            .collect();
        Pool {
            handle: Handle { queue, running },
            closing,
            wake_all,
            threads,
        }
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Graceful stop: no new job is taken, running ones are told to stop
    /// (they go back to Started), and the threads are joined if they end
    /// within `grace`. True when every job was put back in time.
    pub fn shutdown(self, grace: Duration) -> bool {
        self.closing.store(true, Ordering::SeqCst);
        self.handle.running.stop_all(StopReason::Shutdown);
        drop(self.wake_all);
        let all_left = self.handle.running.wait_all_gone(grace);
        if all_left {
            for t in self.threads {
                let _ = t.join();
            }
        }
        all_left
    }
}
