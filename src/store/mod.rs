//! The store: every job's state, the files' metadata and the outbox of calls
//! to the website, behind one trait of domain verbs.
//!
//! Each verb is one transaction. Every state change is a single guarded
//! statement (`... WHERE state = <expected>`), so a cancel racing a completion,
//! or two StartJobs, end in exactly one outcome; the loser sees
//! [`Change::WrongState`] or [`Change::NotFound`]. No SQL crosses this seam:
//! it lives only in `postgres.rs` and `sqlite.rs`. What a verb decides
//! (the calls it queues, whether progress is due, what recovery does, how a
//! row becomes a [`Job`]) is written once, at the end of this file.
//!
//! May use: `job`.

pub mod batch;
pub mod migrate;
pub mod postgres;
pub mod sqlite;

use crate::job::{FileRecord, Job, JobId, JobKind, JobResult, JobState, JobSummary, NewJob};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The outcome of a guarded state change.
// `Done` is large next to the other variants, but a Change lives for one
// call and is matched at once: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// The change was made; the job as it is now.
    Done(Job),
    NotFound,
    /// The job exists but was in this state, which the change does not accept.
    WrongState(JobState),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Insert {
    Inserted,
    AlreadyExists,
    /// The first input (in the job's order) that is not a file the store
    /// knows; nothing was written.
    MissingInput(String),
}

/// A progress report from a running job.
#[derive(Clone, Debug)]
pub struct ProgressUpdate<'a> {
    pub id: &'a JobId,
    /// 0..=100, or -1 when it can't be known.
    pub progress: i32,
    pub now: SystemTime,
    /// Least time between two JobProgress calls for a job: a call is queued
    /// only when the progress differs from the last one queued and this much
    /// time passed since it (both kept in the job's row).
    pub interval: Duration,
}

/// How a running job ended.
#[derive(Clone, Debug)]
pub struct Finish<'a> {
    pub id: &'a JobId,
    /// `Success` or `Failed`.
    pub state: JobState,
    pub result_code: i32,
    pub error_message: &'a str,
    pub result: &'a str,
    pub outputs: &'a [String],
    pub now: SystemTime,
}

/// What `delete_job` removed, so the caller can remove the files from disk.
#[derive(Clone, Debug, PartialEq)]
pub struct Deleted {
    /// FileIDs of the job's outputs; their rows are already gone.
    pub output_files: Vec<String>,
}

/// What start-up recovery did (contract §7).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recovery {
    /// Jobs found InProgress and put back to Started, one attempt used.
    pub requeued: Vec<JobId>,
    /// Jobs found InProgress past `max_attempts`: now Failed with code 7.
    pub failed: Vec<JobId>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FileDelete {
    Deleted,
    NotFound,
    /// An unfinished job still needs it.
    InUse(JobId),
}

/// One parameter of a call to the website.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum CallParam {
    Int(i32),
    Str(String),
}

/// A call to the website, written in the same transaction as the change
/// that causes it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewCall {
    /// The job the call is about; calls of one job are delivered in order.
    pub job: Option<JobId>,
    pub url: String,
    pub method: String,
    pub params: Vec<CallParam>,
    pub now: SystemTime,
}

/// A pending call, as the delivery thread sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub id: i64,
    pub job: Option<JobId>,
    pub url: String,
    pub method: String,
    pub params: Vec<CallParam>,
    /// Failed deliveries so far.
    pub attempts: i32,
    pub created_at: SystemTime,
    pub next_attempt_at: SystemTime,
}

/// What went wrong talking to the store.
#[derive(Clone, Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The store can't be reached right now (connection refused or lost,
    /// pool timeout, database restarting, busy): retry later.
    Unavailable,
    /// The schema in the store is newer than this binary knows.
    SchemaTooNew,
    /// Anything else: a bug or a corrupt store.
    Internal,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True when the same call may succeed later (answer 7, not 8).
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Unavailable
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// The verbs. Every method is one transaction and is safe to call from many
/// threads at once.
pub trait Store: Send + Sync {
    /// "PostgreSQL at 127.0.0.1:5432/test" or "SQLite at ./jobengine-data/jobengine.db":
    /// for logs, never containing a password.
    fn describe(&self) -> String;

    /// Cheap round trip, for /healthz.
    fn ping(&self) -> Result<()>;

    // --- jobs -------------------------------------------------------------

    /// Writes a Created job with progress 0 and a share of its inputs, in
    /// one step: a taken ID is [`Insert::AlreadyExists`] (whatever the
    /// inputs), else an input the store does not know is
    /// [`Insert::MissingInput`].
    fn insert_job(&self, job: &NewJob) -> Result<Insert>;

    fn get_job(&self, id: &JobId) -> Result<Option<Job>>;

    /// What GetJob shows: the columns of its answer and the outputs only.
    fn get_job_summary(&self, id: &JobId) -> Result<Option<JobSummary>>;

    /// State and stored progress only: GetProgress's lighter read.
    fn get_progress(&self, id: &JobId) -> Result<Option<(JobState, i32)>> {
        Ok(self.get_job(id)?.map(|job| (job.state, job.progress)))
    }

    /// The job's secrets (JSON), while it has not ended.
    fn get_secrets(&self, id: &JobId) -> Result<Option<String>>;

    /// Created → Started; gives the job the next `start_seq` (queue order).
    fn start_job(&self, id: &JobId, now: SystemTime) -> Result<Change>;

    /// Started → InProgress (a worker takes it); progress back to 0.
    fn claim_job(&self, id: &JobId, now: SystemTime) -> Result<Change>;

    /// Writes the progress of an InProgress job and, when due (see
    /// [`ProgressUpdate::interval`]) and the job has a callback, queues
    /// `JobProgress(JobID, Progress)`, superseding any pending one of that job.
    /// Does not change `last_state_change`. False when the job is not InProgress.
    fn record_progress(&self, update: &ProgressUpdate) -> Result<bool>;

    /// Stores the kind's resume point of an InProgress job. False when not InProgress.
    fn set_checkpoint(&self, id: &JobId, checkpoint: &str) -> Result<bool>;

    /// InProgress → Success/Failed. Clears the secrets, drops pending
    /// JobProgress calls of the job and, with a callback, queues
    /// `JobCompleted(JobID, State, ResultCode, ErrorMessage)`.
    fn finish_job(&self, finish: &Finish) -> Result<Change>;

    /// Started/InProgress → Failed with job ResultCode 1 (Cancelled), the
    /// error message "cancelled by CancelJob". Same side effects as `finish_job`.
    fn cancel_job(&self, id: &JobId, now: SystemTime) -> Result<Change>;

    /// InProgress → Started, keeping its place in the queue and its attempts
    /// (a graceful shutdown interrupted it).
    fn requeue_job(&self, id: &JobId, now: SystemTime) -> Result<Change>;

    /// Removes every trace of a job in any state: its row, secrets, pending
    /// calls and the rows of its output files. None when there was no such job.
    fn delete_job(&self, id: &JobId) -> Result<Option<Deleted>>;

    /// Start-up, after any way of dying: every InProgress job uses one
    /// attempt; below `max_attempts` it goes back to Started (keeping its
    /// place), at it it ends Failed with code 7 (queuing JobCompleted).
    fn recover_jobs(&self, max_attempts: i32, now: SystemTime) -> Result<Recovery>;

    /// Started jobs in start order: the queue to load at start-up.
    fn started_jobs(&self) -> Result<Vec<JobId>>;

    // --- files ------------------------------------------------------------

    fn insert_file(&self, file: &FileRecord) -> Result<()>;

    fn get_file(&self, id: &str) -> Result<Option<FileRecord>>;

    /// Removes a file's row unless a job that has not ended reads it.
    fn delete_file(&self, id: &str) -> Result<FileDelete>;

    // --- outbox of calls to the website ------------------------------------

    /// Queues a call not tied to a state change (engine notices).
    fn enqueue_call(&self, call: &NewCall) -> Result<()>;

    /// Calls due at `now`, oldest first, at most `limit`, and never a call
    /// that has an older pending call of the same job before it.
    fn due_calls(&self, now: SystemTime, limit: usize) -> Result<Vec<Call>>;

    /// When the earliest pending call is due, if any.
    fn next_call_due(&self) -> Result<Option<SystemTime>>;

    fn call_delivered(&self, id: i64, now: SystemTime) -> Result<()>;

    /// Records a failed attempt and when to try again.
    fn call_failed(&self, id: i64, error: &str, retry_at: SystemTime) -> Result<()>;

    /// Gives up on a call (past `callback_give_up`); it stays visible to admins.
    fn call_undeliverable(&self, id: i64, error: &str, now: SystemTime) -> Result<()>;

    // --- engine -------------------------------------------------------------

    /// This engine's stable ID: the stored one, or `generated` stored now.
    fn engine_id(&self, generated: &str) -> Result<String>;
}

// --- the domain decisions both backends share ------------------------------
//
// The backends hold SQL and the glue to run it; what a verb decides (which
// call to queue, whether progress is due, what recovery does with a job)
// lives here once.

impl NewCall {
    /// `JobCompleted(JobID, State, ResultCode, ErrorMessage)` of a job that
    /// ended as `end` says, to its callback; None when it has no callback.
    fn job_completed(end: &Finish, callback: &str) -> Option<NewCall> {
        if callback.is_empty() {
            return None;
        }
        Some(NewCall {
            job: Some(end.id.clone()),
            url: callback.to_owned(),
            method: "JobCompleted".to_owned(),
            params: vec![
                CallParam::Str(end.id.as_str().to_owned()),
                CallParam::Str(end.state.as_str().to_owned()),
                CallParam::Int(end.result_code),
                CallParam::Str(end.error_message.to_owned()),
            ],
            now: end.now,
        })
    }

    /// `JobProgress(JobID, Progress)` to the job's callback.
    fn job_progress(update: &ProgressUpdate, callback: String) -> NewCall {
        NewCall {
            job: Some(update.id.clone()),
            url: callback,
            method: "JobProgress".to_owned(),
            params: vec![
                CallParam::Str(update.id.as_str().to_owned()),
                CallParam::Int(update.progress),
            ],
            now: update.now,
        }
    }
}

impl ProgressUpdate<'_> {
    /// Whether this update queues a JobProgress call, given the job's
    /// callback and the progress last queued (`sent`) and when (`sent_at`):
    /// only with a callback, a changed progress and `interval` passed.
    fn due(&self, callback: &str, sent: Option<i32>, sent_at: Option<SystemTime>) -> bool {
        let due_before = self.now.checked_sub(self.interval).unwrap_or(UNIX_EPOCH);
        !callback.is_empty()
            && sent != Some(self.progress)
            && !sent_at.is_some_and(|at| at > due_before)
    }
}

impl<'a> Finish<'a> {
    /// How CancelJob ends a job: Failed, ResultCode 1 (Cancelled).
    fn cancelled(id: &'a JobId, now: SystemTime) -> Finish<'a> {
        Finish::failed(id, JobResult::Cancelled, "cancelled by CancelJob", now)
    }

    /// How start-up recovery ends a job out of attempts: Failed, ResultCode 7
    /// (Interrupted), with the message of [`Recover::Fail`].
    fn interrupted(id: &'a JobId, message: &'a str, now: SystemTime) -> Finish<'a> {
        Finish::failed(id, JobResult::Interrupted, message, now)
    }

    /// A job the engine ends Failed, with no result and no outputs.
    fn failed(id: &'a JobId, code: JobResult, message: &'a str, now: SystemTime) -> Finish<'a> {
        Finish {
            id,
            state: JobState::Failed,
            result_code: code.code(),
            error_message: message,
            result: "",
            outputs: &[],
            now,
        }
    }

    /// Refuses an end state that is not final.
    fn check(&self) -> Result<()> {
        if self.state.is_final() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Internal,
            format!("a job ends Success or Failed, not {}", self.state),
        ))
    }
}

/// What start-up recovery does with one job it found InProgress.
#[derive(Clone, Debug, PartialEq)]
enum Recover {
    /// Back to Started, with this many attempts used.
    Requeue { attempts: i32 },
    /// Failed (see [`Finish::interrupted`]) with this message, its attempts
    /// used up.
    Fail { attempts: i32, message: String },
}

impl Recover {
    /// `attempts`: the job's attempts before this interruption.
    fn decide(attempts: i32, max_attempts: i32) -> Recover {
        let attempts = attempts.saturating_add(1);
        if attempts < max_attempts {
            return Recover::Requeue { attempts };
        }
        Recover::Fail {
            attempts,
            message: format!(
                "interrupted: the engine stopped {attempts} times while running this job"
            ),
        }
    }
}

/// A result row of either backend, read by column name: all a backend says
/// about its row type, so that [`Job`], [`Call`] and [`FileRecord`] are
/// built from rows in one place.
trait Columns {
    fn text(&self, column: &str) -> Result<String>;
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    fn int(&self, column: &str) -> Result<i32>;
    fn big(&self, column: &str) -> Result<i64>;
    fn opt_big(&self, column: &str) -> Result<Option<i64>>;
    fn time(&self, column: &str) -> Result<SystemTime>;
}

/// A job from its `jobs` row. Its inputs and outputs are left empty: each
/// backend reads them from `job_files` its own way.
fn job_from_row(row: &impl Columns) -> Result<Job> {
    let id = row.text("id")?;
    Ok(Job {
        id: parse_id(&id)?,
        kind: parse_kind(&id, &row.text("job_type")?)?,
        state: parse_state(&row.text("state")?)?,
        details: row.text("details")?,
        callback: row.text("callback")?,
        progress: row.int("progress")?,
        result_code: row.int("result_code")?,
        error_message: row.text("error_message")?,
        result: row.text("result")?,
        outputs: Vec::new(),
        inputs: Vec::new(),
        attempts: row.int("attempts")?,
        checkpoint: row.text("checkpoint")?,
        created_at: row.time("created_at")?,
        last_state_change: row.time("last_state_change")?,
        start_seq: row.opt_big("start_seq")?.unwrap_or(0),
    })
}

/// What GetJob shows of job `id`, from a row of the columns
/// [`SUMMARY_COLUMNS`] names; its outputs are left empty.
fn summary_from_row(id: &JobId, row: &impl Columns) -> Result<JobSummary> {
    Ok(JobSummary {
        id: id.clone(),
        kind: parse_kind(id.as_str(), &row.text("job_type")?)?,
        state: parse_state(&row.text("state")?)?,
        progress: row.int("progress")?,
        result_code: row.int("result_code")?,
        error_message: row.text("error_message")?,
        result: row.text("result")?,
        outputs: Vec::new(),
        last_state_change: row.time("last_state_change")?,
    })
}

/// `columns` of the `jobs` table, qualified, for a SELECT that joins it.
fn jobs_columns(columns: &[&str]) -> String {
    columns
        .iter()
        .map(|c| format!("jobs.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What GetJob shows of the job whose id is `param`: a row per output in
/// list order (one row with a NULL file when it has none), the columns of
/// [`SUMMARY_COLUMNS`], then the file. `param` is the backend's placeholder.
fn load_summary_sql(param: &str) -> String {
    format!(
        "SELECT {}, f.file_id \
         FROM jobs LEFT JOIN job_files f ON f.job_id = jobs.id AND f.role = 'output' \
         WHERE jobs.id = {param} ORDER BY f.position",
        jobs_columns(SUMMARY_COLUMNS)
    )
}

/// The `jobs` columns a [`JobSummary`] is made of.
const SUMMARY_COLUMNS: &[&str] = &[
    "job_type",
    "state",
    "progress",
    "result_code",
    "error_message",
    "result",
    "last_state_change",
];

/// A call from its `outbox` row.
fn call_from_row(row: &impl Columns) -> Result<Call> {
    let id = row.big("id")?;
    Ok(Call {
        id,
        job: row
            .opt_text("job_id")?
            .as_deref()
            .map(parse_id)
            .transpose()?,
        url: row.text("url")?,
        method: row.text("method")?,
        params: params_from_json(id, &row.text("params")?)?,
        attempts: row.int("attempts")?,
        created_at: row.time("created_at")?,
        next_attempt_at: row.time("next_attempt_at")?,
    })
}

/// A file from its `files` row.
fn file_from_row(row: &impl Columns) -> Result<FileRecord> {
    Ok(FileRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        size: row.big("size")?,
        sha256: row.text("sha256")?,
        owner_job: row
            .opt_text("owner_job")?
            .as_deref()
            .map(parse_id)
            .transpose()?,
        created_at: row.time("created_at")?,
    })
}

/// A change just made to job `id`, given the job as re-read in the same
/// transaction (it cannot be missing there).
fn job_changed(id: &JobId, job: Option<Job>) -> Result<Change> {
    match job {
        Some(job) => Ok(Change::Done(job)),
        None => Err(corrupt(format!(
            "job '{id}' vanished inside its own transaction"
        ))),
    }
}

/// A stored value this binary cannot read.
fn corrupt(what: String) -> Error {
    Error::new(ErrorKind::Internal, format!("corrupt row: {what}"))
}

fn parse_id(raw: &str) -> Result<JobId> {
    JobId::parse(raw).map_err(corrupt)
}

fn parse_state(raw: &str) -> Result<JobState> {
    JobState::parse(raw).ok_or_else(|| corrupt(format!("unknown job state '{raw}'")))
}

/// The `job_type` of the job `id`.
fn parse_kind(id: &str, raw: &str) -> Result<JobKind> {
    JobKind::parse(raw).ok_or_else(|| corrupt(format!("job '{id}' has unknown job_type '{raw}'")))
}

/// Call parameters as stored in the outbox: a JSON array.
fn params_to_json(params: &[CallParam]) -> Result<String> {
    serde_json::to_string(params).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("call parameters do not serialise: {e}"),
        )
    })
}

/// The stored parameters of outbox call `id`.
fn params_from_json(id: i64, raw: &str) -> Result<Vec<CallParam>> {
    serde_json::from_str(raw)
        .map_err(|e| corrupt(format!("outbox call {id} has unreadable params: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(id: &JobId, progress: i32, now: u64) -> ProgressUpdate<'_> {
        ProgressUpdate {
            id,
            progress,
            now: UNIX_EPOCH + Duration::from_secs(now),
            interval: Duration::from_secs(5),
        }
    }

    #[test]
    fn progress_is_due_only_with_a_callback_a_change_and_the_interval_passed() {
        let id = JobId::parse("j").unwrap();
        let at = |s: u64| Some(UNIX_EPOCH + Duration::from_secs(s));
        let u = update(&id, 40, 100);
        assert!(u.due("http://w/", None, None), "the first report");
        assert!(!u.due("", None, None), "no callback");
        assert!(!u.due("http://w/", Some(40), at(0)), "same progress");
        assert!(u.due("http://w/", Some(30), at(95)), "interval just passed");
        assert!(!u.due("http://w/", Some(30), at(96)), "interval not passed");
        // Near the epoch the interval reaches back before it, and still compares.
        assert!(!update(&id, 40, 1).due("http://w/", Some(30), at(0)));
    }

    #[test]
    fn recovery_requeues_below_the_limit_and_fails_at_it() {
        assert_eq!(Recover::decide(0, 3), Recover::Requeue { attempts: 1 });
        assert_eq!(
            Recover::decide(2, 3),
            Recover::Fail {
                attempts: 3,
                message: "interrupted: the engine stopped 3 times while running this job".into(),
            }
        );
        assert_eq!(
            Recover::decide(i32::MAX, i32::MAX),
            Recover::Fail {
                attempts: i32::MAX,
                message: format!(
                    "interrupted: the engine stopped {} times while running this job",
                    i32::MAX
                ),
            }
        );
    }

    #[test]
    fn job_completed_goes_only_to_a_callback() {
        let id = JobId::parse("j").unwrap();
        let end = Finish::interrupted(&id, "x", UNIX_EPOCH);
        assert_eq!(NewCall::job_completed(&end, ""), None);
        let call = NewCall::job_completed(&end, "http://w/");
        assert_eq!(
            call.map(|c| c.params),
            Some(vec![
                CallParam::Str("j".into()),
                CallParam::Str("Failed".into()),
                CallParam::Int(7),
                CallParam::Str("x".into()),
            ])
        );
        let end = Finish::cancelled(&id, UNIX_EPOCH);
        assert_eq!(
            (end.state, end.result_code, end.error_message),
            (JobState::Failed, 1, "cancelled by CancelJob")
        );
    }
}
