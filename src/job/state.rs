//! The job state machine of contract §2, as data: which states may move to
//! which, and the names admins see in psql.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Created, not yet asked to run.
    Created,
    /// Queued: StartJob accepted, waiting for a worker.
    Started,
    /// A worker is running it.
    InProgress,
    Success,
    Failed,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Created,
        JobState::Started,
        JobState::InProgress,
        JobState::Success,
        JobState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Created => "Created",
            JobState::Started => "Started",
            JobState::InProgress => "InProgress",
            JobState::Success => "Success",
            JobState::Failed => "Failed",
        }
    }

    pub fn parse(raw: &str) -> Option<JobState> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    pub fn is_final(self) -> bool {
        matches!(self, JobState::Success | JobState::Failed)
    }

    /// States CancelJob accepts.
    pub fn is_cancellable(self) -> bool {
        matches!(self, JobState::Started | JobState::InProgress)
    }

    /// GetProgress for a job in this state with `stored` progress (contract §2).
    pub fn visible_progress(self, stored: i32) -> i32 {
        match self {
            JobState::Created | JobState::Started => 0,
            JobState::Success => 100,
            JobState::InProgress | JobState::Failed => stored,
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobState::parse("running"), None);
    }

    #[test]
    fn progress_by_state() {
        assert_eq!(JobState::Created.visible_progress(40), 0);
        assert_eq!(JobState::Started.visible_progress(40), 0);
        assert_eq!(JobState::InProgress.visible_progress(-1), -1);
        assert_eq!(JobState::Success.visible_progress(40), 100);
        assert_eq!(JobState::Failed.visible_progress(40), 40);
    }
}
