//! Which jobs are running on this engine, each with the signal that stops it.

use crate::job::JobId;
use crate::kinds::{StopReason, StopSignal};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Running {
    jobs: Mutex<HashMap<JobId, Arc<StopSignal>>>,
    left: Condvar,
}

impl Running {
    /// Registers `id` before its worker claims it, so a cancel that lands
    /// between the claim and the run is never missed.
    pub fn enter(&self, id: &JobId) -> Arc<StopSignal> {
        let signal = Arc::new(StopSignal::new());
        self.lock().insert(id.clone(), signal.clone());
        signal
    }

    pub fn leave(&self, id: &JobId) {
        self.lock().remove(id);
        self.left.notify_all();
    }

    /// Asks a running job to stop. False when it is not running here.
    pub fn stop(&self, id: &JobId, reason: StopReason) -> bool {
        match self.lock().get(id) {
            Some(signal) => {
                signal.stop(reason);
                true
            }
            None => false,
        }
    }

    pub fn stop_all(&self, reason: StopReason) {
        for signal in self.lock().values() {
            signal.stop(reason);
        }
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Waits until `id` is no longer running, or `timeout`. True when it left.
    pub fn wait_gone(&self, id: &JobId, timeout: Duration) -> bool {
        self.wait_until(timeout, |jobs| !jobs.contains_key(id))
    }

    /// Waits until nothing runs, or `timeout`. True when all left.
    pub fn wait_all_gone(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |jobs| jobs.is_empty())
    }

    fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&HashMap<JobId, Arc<StopSignal>>) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut jobs = self.lock();
        while !done(&jobs) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            jobs = self
                .left
                .wait_timeout(jobs, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Arc<StopSignal>>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }
}
