//! What a job is: its identity, kind, state and stored row. No I/O.
//!
//! May use: nothing else in the crate.

pub mod details;
pub mod outcome;
pub mod state;

pub use outcome::{JobResult, Outcome};
pub use state::JobState;

use std::fmt;
use std::time::SystemTime;

/// A validated job identifier: 1 to 64 characters of ASCII letters, digits,
/// `-`, `_`, `.`, `{`, `}` (contract §2). Never used as a path on its own.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(String);

impl JobId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<JobId, String> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(format!(
                "JobID must be 1 to {} characters, got {}",
                Self::MAX_LEN,
                raw.chars().count()
            ));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.{}".contains(c);
        match raw.chars().find(|&c| !allowed(c)) {
            None => Ok(JobId(raw.to_owned())),
            Some(bad) => Err(format!(
                "JobID '{}' contains {:?}; allowed are ASCII letters, digits and - _ . {{ }}",
                crate::shorten(raw, 64),
                bad
            )),
        }
    }

    /// A fresh UUID, for a CreateJob whose JobID is empty. Version 7, so
    /// IDs made one after another sort one after another: a new job's key
    /// lands beside the last one in every index keyed by JobID instead of on
    /// a random page (CreateJob on SQLite wrote 30 KB per job with random
    /// version 4 IDs, 13 KB with these).
    pub fn generate() -> JobId {
        JobId(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The job types the engine knows (contract §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    Encoder,
    YoutubeUploader,
}

impl JobKind {
    pub const ALL: [JobKind; 2] = [JobKind::Encoder, JobKind::YoutubeUploader];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Encoder => "EncoderJob",
            JobKind::YoutubeUploader => "YoutubeUploaderJob",
        }
    }

    pub fn parse(raw: &str) -> Option<JobKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job as stored: everything GetJob shows plus the bookkeeping the engine
/// needs. Secrets are never part of this struct (see [`NewJob::secrets`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub kind: JobKind,
    pub state: JobState,
    /// Canonical JSON of the job details, secrets removed.
    pub details: String,
    /// Empty, or the absolute http(s) URL JobProgress/JobCompleted go to.
    pub callback: String,
    pub progress: i32,
    /// Job outcome code (contract §3, second table); 0 unless Failed.
    pub result_code: i32,
    pub error_message: String,
    /// Type-specific result (the uploader's video ID).
    pub result: String,
    /// FileIDs the job produced.
    pub outputs: Vec<String>,
    /// FileIDs the job reads; a file is not deletable while an unfinished job needs it.
    pub inputs: Vec<String>,
    /// Runs of this job that the engine died under (contract §2).
    pub attempts: i32,
    /// Kind-specific resume point (the uploader's session URI); survives restarts.
    pub checkpoint: String,
    pub created_at: SystemTime,
    pub last_state_change: SystemTime,
    /// Monotonic order in which jobs were started; the queue order.
    pub start_seq: i64,
}

/// What GetJob shows of a job (the Job struct of contract §1), read on its own:
/// none of the details, callback, inputs or bookkeeping a worker needs.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSummary {
    pub id: JobId,
    pub kind: JobKind,
    pub state: JobState,
    pub progress: i32,
    pub result_code: i32,
    pub error_message: String,
    pub result: String,
    /// FileIDs the job produced, in order.
    pub outputs: Vec<String>,
    pub last_state_change: SystemTime,
}

impl From<Job> for JobSummary {
    fn from(job: Job) -> JobSummary {
        JobSummary {
            id: job.id,
            kind: job.kind,
            state: job.state,
            progress: job.progress,
            result_code: job.result_code,
            error_message: job.error_message,
            result: job.result,
            outputs: job.outputs,
            last_state_change: job.last_state_change,
        }
    }
}

/// What CreateJob writes.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    pub id: JobId,
    pub kind: JobKind,
    pub details: String,
    /// Secret fields (JSON object), kept apart from `details`, removed when the job ends.
    pub secrets: Option<String>,
    pub callback: String,
    pub inputs: Vec<String>,
    pub now: SystemTime,
}

/// A file the engine holds (contract §5).
#[derive(Clone, Debug, PartialEq)]
pub struct FileRecord {
    pub id: String,
    /// The client's name for it, for display only: never a path.
    pub name: String,
    pub size: i64,
    pub sha256: String,
    /// The job that produced it, for outputs; deleted with that job.
    pub owner_job: Option<JobId>,
    pub created_at: SystemTime,
}

#[cfg(test)]
mod tests {
    use super::JobId;

    #[test]
    fn generated_ids_are_valid_uuids_in_creation_order() {
        let ids: Vec<JobId> = (0..1000).map(|_| JobId::generate()).collect();
        for id in &ids {
            assert_eq!(JobId::parse(id.as_str()), Ok(id.clone()));
            let uuid = uuid::Uuid::parse_str(id.as_str()).unwrap();
            assert_eq!(uuid.get_version_num(), 7, "{}", id.as_str());
        }
        assert!(
            ids.windows(2).all(|w| w[0].as_str() < w[1].as_str()),
            "generated IDs must sort in the order they were made"
        );
    }
}
