//! What a job kind reports when it stops running: the engine turns it into a
//! final state (or a requeue) in one guarded store write.

/// Job outcome codes (contract §3, second table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum JobResult {
    Ok = 0,
    Cancelled = 1,
    InputMissing = 2,
    ToolFailed = 3,
    TimedOut = 4,
    RemoteRejected = 5,
    RemoteUnavailable = 6,
    Interrupted = 7,
    Internal = 8,
}

impl JobResult {
    pub fn code(self) -> i32 {
        self as i32
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Finished well. `outputs` are FileIDs already registered by the kind's
    /// `RunCtx::register_output`; `result` is the type-specific result string.
    Success {
        result: String,
        outputs: Vec<String>,
    },
    /// Finished badly, with the code and a message a person can act on.
    Failed { code: JobResult, message: String },
    /// Stopped because the engine is shutting down: back to Started, no
    /// attempt used, resumed on the next start.
    Interrupted,
}

impl Outcome {
    pub fn failed(code: JobResult, message: impl Into<String>) -> Outcome {
        Outcome::Failed {
            code,
            message: message.into(),
        }
    }
}
