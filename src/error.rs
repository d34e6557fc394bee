//! How the process ends: each way maps to one exit code, in one place.

use std::fmt;

#[derive(Debug)]
pub enum ExitError {
    /// Bad command line or configuration (exit 2).
    Usage(String),
    /// The store can't be opened or migrated (exit 3).
    Store(String),
    /// Anything else that stops the engine from running (exit 1).
    Fatal(String),
}

impl ExitError {
    pub fn code(&self) -> i32 {
        match self {
            ExitError::Fatal(_) => 1,
            ExitError::Usage(_) => 2,
            ExitError::Store(_) => 3,
        }
    }
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitError::Usage(m) | ExitError::Store(m) | ExitError::Fatal(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ExitError {}
