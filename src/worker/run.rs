//! One worker thread: take a JobID, claim it, run its kind, write the outcome.

use super::running::Running;
use super::Deps;
use crate::job::details::Details;
use crate::job::{Job, JobId, JobResult, JobState, Outcome};
use crate::kinds::{RunCtx, StopReason};
use crate::store::{self, Change, Finish, ProgressUpdate};
use crossbeam_channel::{select, Receiver};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Least time between two progress writes of one job.
const PROGRESS_WRITE_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Worker {
    pub deps: Deps,
    pub running: Arc<Running>,
    pub closing: Arc<AtomicBool>,
}

impl Worker {
    pub fn serve(&self, jobs: Receiver<JobId>, woken: Receiver<()>) {
        loop {
            let id = select! {
                recv(jobs) -> id => match id { Ok(id) => id, Err(_) => return },
                recv(woken) -> _ => return,
            };
            if self.closing.load(Ordering::SeqCst) {
                // Still Started in the store: the next start queues it again.
                return;
            }
            self.take(&id);
        }
    }

    fn take(&self, id: &JobId) {
        let stop = self.running.enter(id);
        let claimed = self.with_store_retry(id, "claiming", || {
            self.deps.store.claim_job(id, SystemTime::now())
        });
        match claimed {
            Some(Change::Done(job)) => {
                log::info!("job {id}: InProgress (attempt {})", job.attempts + 1);
                self.run(job, &stop);
            }
            // Cancelled or deleted while queued, or already taken: nothing to do.
            Some(Change::NotFound) | Some(Change::WrongState(_)) => {}
            None => log::warn!("job {id}: left Started, the engine is stopping"),
        }
        self.running.leave(id);
    }

    fn run(&self, job: Job, stop: &crate::kinds::StopSignal) {
        let config = self.deps.config.get();
        let files = &self.deps.files;
        let produced = Mutex::new(Vec::<String>::new());
        let outcome = match self.prepare(&job) {
            Err(outcome) => outcome,
            Ok((details, secrets, work_dir)) => {
                let progress = self.progress_reporter(&job.id, config.progress_interval);
                let checkpoint = |text: &str| -> Result<(), String> {
                    match self.deps.store.set_checkpoint(&job.id, text) {
                        Ok(true) => Ok(()),
                        Ok(false) => Err("the job is no longer InProgress".into()),
                        Err(e) => Err(format!("could not save the checkpoint: {e}")),
                    }
                };
                let register_output = |path: &Path, name: &str| -> Result<String, String> {
                    let id = self.register_output(&job.id, path, name)?;
                    produced
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(id.clone());
                    Ok(id)
                };
                let ctx = RunCtx {
                    job: &job,
                    details: &details,
                    secrets: secrets.as_deref(),
                    config: &config,
                    files,
                    work_dir: &work_dir,
                    stop,
                    agent: &self.deps.agent,
                    progress: &progress,
                    checkpoint: &checkpoint,
                    register_output: &register_output,
                };
                let kind = (self.deps.kinds)(job.kind);
                catch_unwind(AssertUnwindSafe(|| kind.run(&ctx))).unwrap_or_else(|panic| {
                    let what = panic_message(&*panic);
                    log::error!("job {}: the {} kind panicked: {what}", job.id, job.kind);
                    Outcome::failed(JobResult::Internal, format!("internal error: {what}"))
                })
            }
        };
        let produced = produced.into_inner().unwrap_or_else(|e| e.into_inner());
        let kept = self.record(&job.id, outcome, stop.reason());
        if !kept {
            self.discard_outputs(&produced);
        }
        if let Err(e) = files.remove_work_dir(&job.id) {
            log::warn!("job {}: could not remove its work dir: {e}", job.id);
        }
    }

    /// Details, secrets and a fresh work dir, or the outcome that ends the job.
    fn prepare(&self, job: &Job) -> Result<(Details, Option<String>, std::path::PathBuf), Outcome> {
        let details = Details::from_json(job.kind, &job.details).map_err(|e| {
            Outcome::failed(
                JobResult::Internal,
                format!("stored details are unreadable: {}", e.0),
            )
        })?;
        let secrets = self.deps.store.get_secrets(&job.id).map_err(|e| {
            Outcome::failed(
                JobResult::Internal,
                format!("could not read the job's secrets: {e}"),
            )
        })?;
        let work_dir = self.deps.files.fresh_work_dir(&job.id).map_err(|e| {
            Outcome::failed(
                JobResult::Internal,
                format!("could not create a work dir: {e}"),
            )
        })?;
        Ok((details, secrets, work_dir))
    }

    /// A progress callback that writes at most about once a second, and
    /// always when the value first changes after a quiet second.
    fn progress_reporter<'a>(
        &'a self,
        id: &'a JobId,
        interval: Duration,
    ) -> impl Fn(i32) + Sync + 'a {
        let last: Mutex<Option<(Instant, i32)>> = Mutex::new(None);
        move |value: i32| {
            let value = value.clamp(-1, 100);
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            let due = match *last {
                None => true,
                Some((at, v)) => v != value && at.elapsed() >= PROGRESS_WRITE_EVERY,
            };
            if !due {
                return;
            }
            *last = Some((Instant::now(), value));
            let update = ProgressUpdate {
                id,
                progress: value,
                now: SystemTime::now(),
                interval,
            };
            if let Err(e) = self.deps.store.record_progress(&update) {
                log::warn!("job {id}: progress {value} not written: {e}");
            }
        }
    }

    fn register_output(&self, job: &JobId, path: &Path, name: &str) -> Result<String, String> {
        let stored = self
            .deps
            .files
            .adopt(path)
            .map_err(|e| format!("could not store the output: {e}"))?;
        let record = crate::job::FileRecord {
            id: stored.id.clone(),
            name: name.to_owned(),
            size: stored.size as i64,
            sha256: stored.sha256,
            owner_job: Some(job.clone()),
            created_at: SystemTime::now(),
        };
        if let Err(e) = self.deps.store.insert_file(&record) {
            let _ = self.deps.files.remove(&stored.id);
            return Err(format!("could not record the output: {e}"));
        }
        Ok(stored.id)
    }

    /// Writes the outcome. False when the job was no longer ours (cancelled
    /// or deleted meanwhile), so its outputs must go.
    fn record(&self, id: &JobId, outcome: Outcome, stop: Option<StopReason>) -> bool {
        let store = &self.deps.store;
        let (state, code, message, result, outputs) = match outcome {
            Outcome::Interrupted => {
                let change = self
                    .with_store_retry(id, "requeuing", || store.requeue_job(id, SystemTime::now()));
                log::info!("job {id}: interrupted by shutdown, back to Started");
                return matches!(change, Some(Change::Done(_)));
            }
            Outcome::Success { result, outputs } => {
                (JobState::Success, 0, String::new(), result, outputs)
            }
            Outcome::Failed { code, message } => (
                JobState::Failed,
                code.code(),
                message,
                String::new(),
                vec![],
            ),
        };
        if stop == Some(StopReason::Shutdown) && state == JobState::Failed {
            // A kind that failed because we stopped it is not a real failure.
            let _ =
                self.with_store_retry(id, "requeuing", || store.requeue_job(id, SystemTime::now()));
            return false;
        }
        let finish = Finish {
            id,
            state,
            result_code: code,
            error_message: &message,
            result: &result,
            outputs: &outputs,
            now: SystemTime::now(),
        };
        match self.with_store_retry(id, "finishing", || store.finish_job(&finish)) {
            Some(Change::Done(_)) => {
                if state == JobState::Success {
                    log::info!("job {id}: Success");
                } else {
                    log::info!("job {id}: Failed ({code}): {message}");
                }
                true
            }
            Some(_) => false,
            None => {
                log::error!("job {id}: outcome {state} not written before shutdown; it runs again on the next start");
                false
            }
        }
    }

    fn discard_outputs(&self, produced: &[String]) {
        for file in produced {
            let _ = self.deps.store.delete_file(file);
            let _ = self.deps.files.remove(file);
        }
    }

    /// Runs a store call, retrying with backoff while the store is
    /// unreachable; gives up (None) only when the engine is stopping and
    /// the store still does not answer.
    fn with_store_retry<T>(
        &self,
        id: &JobId,
        what: &str,
        call: impl Fn() -> store::Result<T>,
    ) -> Option<T> {
        let mut delay = Duration::from_millis(100);
        loop {
            match call() {
                Ok(v) => return Some(v),
                Err(e) if e.is_transient() && !self.closing.load(Ordering::SeqCst) => {
                    log::warn!(
                        "job {id}: store unavailable while {what} ({e}); retrying in {delay:?}"
                    );
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    log::error!("job {id}: store error while {what}: {e}");
                    return None;
                }
            }
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
