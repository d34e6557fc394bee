//! Job kinds: what running a job of each type means. A kind gets a
//! [`RunCtx`] and returns an [`Outcome`]; it never touches the store; the
//! worker turns the outcome into a state change.
//!
//! May use: `job`, `config`, `process`, `files`, `net`.

pub mod encode;
pub mod upload;

use crate::config::Config;
use crate::files::Files;
use crate::job::details::Details;
use crate::job::{Job, JobKind, Outcome};
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Why a running job is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// CancelJob or DeleteJob: the job ends Failed 1 (the store already says so).
    Cancelled,
    /// Graceful shutdown: the kind stops and returns `Outcome::Interrupted`.
    Shutdown,
}

/// Set by the engine, watched by a running kind. Waiting on it wakes at once
/// when it is set, so a kind can use it as its sleep.
#[derive(Debug, Default)]
pub struct StopSignal {
    reason: Mutex<Option<StopReason>>,
    changed: Condvar,
}

impl StopSignal {
    pub fn new() -> StopSignal {
        StopSignal::default()
    }

    /// Asks the job to stop; the first reason given wins.
    pub fn stop(&self, reason: StopReason) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
        self.changed.notify_all();
    }

    pub fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps up to `timeout`, returning early with the reason once stopped.
    pub fn wait(&self, timeout: Duration) -> Option<StopReason> {
        let r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        let (r, _) = self
            .changed
            .wait_timeout_while(r, timeout, |r| r.is_none())
            .unwrap_or_else(|e| e.into_inner());
        *r
    }
}

/// Everything a kind may use while it runs one job.
pub struct RunCtx<'a> {
    pub job: &'a Job,
    pub details: &'a Details,
    /// The job's secrets (JSON object), when it has any.
    pub secrets: Option<&'a str>,
    pub config: &'a Config,
    pub files: &'a Files,
    /// A fresh, empty directory of this job's own; removed after the run.
    pub work_dir: &'a Path,
    pub stop: &'a StopSignal,
    pub agent: &'a ureq::Agent,
    /// Reports progress, 0..=100 or -1; cheap to call often (the engine throttles writes).
    pub progress: &'a (dyn Fn(i32) + Sync),
    /// Persists the kind's resume point (it comes back as `job.checkpoint` on a rerun).
    pub checkpoint: &'a (dyn Fn(&str) -> Result<(), String> + Sync),
    /// Moves a finished output file into the file store, owned by this job,
    /// with the display name given; returns its FileID.
    pub register_output: &'a (dyn Fn(&Path, &str) -> Result<String, String> + Sync),
}

pub trait Kind: Send + Sync {
    fn run(&self, ctx: &RunCtx) -> Outcome;
}

/// The kind that runs jobs of `kind`.
pub fn for_job(kind: JobKind) -> &'static dyn Kind {
    match kind {
        JobKind::Encoder => &encode::EncoderJob,
        JobKind::YoutubeUploader => &upload::YoutubeUploaderJob,
    }
}
