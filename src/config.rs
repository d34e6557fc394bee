//! Configuration: the TOML file, `JOBENGINE_*` variables and the four flags,
//! merged (flags > environment > file > defaults) and validated once, here.
//! The rest of the engine sees only the validated [`Config`].
//!
//! May use: nothing else in the crate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Which store backs the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// `postgres://…` (kept whole: the postgres crate parses it).
    Postgres(String),
    /// `sqlite:PATH`, or the default `<data_dir>/jobengine.db`.
    Sqlite(PathBuf),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoder {
    Mencoder,
    Ffmpeg,
}

impl Encoder {
    pub fn program(self) -> &'static str {
        match self {
            Encoder::Mencoder => "mencoder",
            Encoder::Ffmpeg => "ffmpeg",
        }
    }
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: Database,
    pub data_dir: PathBuf,
    pub workers: usize,
    pub encoder: Encoder,
    pub job_timeout: Duration,
    pub max_attempts: i32,
    pub shutdown_grace: Duration,
    pub upload_limit: u64,
    pub website_url: Option<String>,
    pub engine_id: Option<String>,
    pub engine_url: String,
    pub progress_interval: Duration,
    pub heartbeat_interval: Option<Duration>,
    pub callback_give_up: Duration,
    pub youtube_upload_url: String,
    pub youtube_api_url: String,
    pub oauth_token_url: String,
    pub youtube_chunk_size: u64,
    pub oauth_client_id: Option<String>,
    pub oauth_client_secret: Option<String>,
}
