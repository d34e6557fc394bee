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

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// The four command-line flags of `serve` (contract §8).
#[derive(Clone, Debug, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub database: Option<String>,
    pub data_dir: Option<String>,
}

/// A configuration problem, naming the key and where its value came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Every key the file and the environment may set.
pub const KEYS: &[&str] = &[
    "listen",
    "database",
    "data_dir",
    "workers",
    "encoder",
    "job_timeout",
    "max_attempts",
    "shutdown_grace",
    "upload_limit",
    "website_url",
    "engine_id",
    "engine_url",
    "progress_interval",
    "heartbeat_interval",
    "callback_give_up",
    "youtube_upload_url",
    "youtube_api_url",
    "oauth_token_url",
    "youtube_chunk_size",
    "oauth_client_id",
    "oauth_client_secret",
];

/// Keys whose values are secret: never logged or shown.
pub const SECRET_KEYS: &[&str] = &["oauth_client_secret"];

/// A raw value and where it came from, for messages.
#[derive(Clone, Debug)]
struct Raw {
    text: String,
    source: String,
}

/// Raw key/values from one layer before validation (the "low" config).
#[derive(Default)]
struct RawConfig(BTreeMap<&'static str, Raw>);

impl RawConfig {
    fn set(&mut self, key: &str, text: String, source: String) -> Result<(), ConfigError> {
        let key = KEYS.iter().find(|k| **k == key).ok_or_else(|| {
            ConfigError(format!(
                "unknown configuration key '{}' in {}; known keys: {}",
                crate::shorten(key, 40),
                source,
                KEYS.join(", ")
            ))
        })?;
        self.0.insert(key, Raw { text, source });
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(transparent)]
struct FileTable(BTreeMap<String, toml::Value>);

impl Config {
    /// Reads the file named by `flags.config` (if any), the `JOBENGINE_*`
    /// variables in `env`, and the flags, and validates the result once.
    pub fn load(
        flags: &Flags,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut raw = RawConfig::default();
        if let Some(path) = &flags.config {
            read_file(path, &mut raw)?;
        }
        for (name, value) in env {
            if let Some(key) = name.strip_prefix("JOBENGINE_") {
                // JOBENGINE_TEST_* belong to the test suite, not the engine.
                if key.starts_with("TEST_") {
                    continue;
                }
                raw.set(
                    &key.to_ascii_lowercase(),
                    value,
                    format!("environment variable {name}"),
                )?;
            }
        }
        let flag_values = [
            ("listen", &flags.listen),
            ("database", &flags.database),
            ("data_dir", &flags.data_dir),
        ];
        for (key, value) in flag_values {
            if let Some(v) = value {
                raw.set(key, v.clone(), format!("flag --{}", key.replace('_', "-")))?;
            }
        }
        Config::validate(&raw)
    }

    /// The defaults of contract §8, as if nothing were set.
    pub fn defaults() -> Config {
        Config::validate(&RawConfig::default()).expect("the defaults are valid")
    }

    fn validate(raw: &RawConfig) -> Result<Config, ConfigError> {
        let v = Validator(raw);
        let listen: SocketAddr =
            v.parse("listen", "127.0.0.1:8080", "an address like 127.0.0.1:8080")?;
        if !listen.ip().is_loopback() {
            // Nobody may call in from another machine without credentials,
            // and this engine has no authentication yet.
            return Err(v.bad(
                "listen",
                "a loopback address such as 127.0.0.1:8080: the engine has no authentication yet, \
                 so reach it from other machines only through a proxy that authenticates",
            ));
        }
        let data_dir = PathBuf::from(v.text("data_dir").unwrap_or("./jobengine-data"));
        if data_dir.as_os_str().is_empty() {
            return Err(v.bad("data_dir", "a directory path"));
        }
        let database = match v.text("database") {
            None | Some("") => Database::Sqlite(data_dir.join("jobengine.db")),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Database::Postgres(url.to_owned())
            }
            Some(url) => match url.strip_prefix("sqlite:") {
                Some(path) if !path.is_empty() => Database::Sqlite(PathBuf::from(path)),
                _ => return Err(v.bad("database", "postgres://… or sqlite:PATH")),
            },
        };
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let workers: usize = v.parse(
            "workers",
            &cpus.to_string(),
            "a whole number of threads, 1 to 256",
        )?;
        if !(1..=256).contains(&workers) {
            return Err(v.bad("workers", "a whole number of threads, 1 to 256"));
        }
        let encoder = match v.text("encoder").unwrap_or("mencoder") {
            "mencoder" => Encoder::Mencoder,
            "ffmpeg" => Encoder::Ffmpeg,
            _ => return Err(v.bad("encoder", "\"mencoder\" or \"ffmpeg\"")),
        };
        let max_attempts: i32 = v.parse("max_attempts", "3", "a whole number, 1 or more")?;
        if max_attempts < 1 {
            return Err(v.bad("max_attempts", "a whole number, 1 or more"));
        }
        let upload_limit: u64 = v.parse("upload_limit", "2147483648", "a size in bytes")?;
        let chunk: u64 = v.parse("youtube_chunk_size", "8388608", "a size in bytes")?;
        if chunk == 0 || chunk % 262_144 != 0 {
            return Err(v.bad("youtube_chunk_size", "a positive multiple of 262144 bytes"));
        }
        let website_url = v.url("website_url")?;
        let engine_url = match v.url("engine_url")? {
            Some(url) => url,
            None => format!("http://{listen}/RPC2"),
        };
        let heartbeat = v.seconds("heartbeat_interval", 0)?;
        Ok(Config {
            listen,
            database,
            data_dir,
            workers,
            encoder,
            job_timeout: v.positive_seconds("job_timeout", 7200)?,
            max_attempts,
            shutdown_grace: v.positive_seconds("shutdown_grace", 30)?,
            upload_limit,
            website_url,
            engine_id: v
                .text("engine_id")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            engine_url,
            progress_interval: v.seconds("progress_interval", 5)?,
            heartbeat_interval: (!heartbeat.is_zero()).then_some(heartbeat),
            callback_give_up: v.positive_seconds("callback_give_up", 259_200)?,
            youtube_upload_url: v
                .url("youtube_upload_url")?
                .unwrap_or_else(|| "https://www.googleapis.com/upload/youtube/v3/videos".into()),
            youtube_api_url: v
                .url("youtube_api_url")?
                .unwrap_or_else(|| "https://www.googleapis.com/youtube/v3".into()),
            oauth_token_url: v
                .url("oauth_token_url")?
                .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
            youtube_chunk_size: chunk,
            oauth_client_id: v.text("oauth_client_id").map(str::to_owned),
            oauth_client_secret: v.text("oauth_client_secret").map(str::to_owned),
        })
    }

    /// Human-readable differences to `newer`, secrets masked, for the SIGHUP
    /// log: one "key: old → new" per changed key.
    pub fn changes_to(&self, newer: &Config) -> Vec<String> {
        let (a, b) = (self.describe(), newer.describe());
        a.iter()
            .zip(b.iter())
            .filter(|((_, x), (_, y))| x != y)
            .map(|((k, x), (_, y))| format!("{k}: {x} → {y}"))
            .collect()
    }

    /// Every key with its value as text; secrets masked.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "(none)".into());
        let secs = |d: Duration| format!("{}s", d.as_secs());
        vec![
            ("listen", self.listen.to_string()),
            ("database", self.database_for_log()),
            ("data_dir", self.data_dir.display().to_string()),
            ("workers", self.workers.to_string()),
            ("encoder", self.encoder.program().into()),
            ("job_timeout", secs(self.job_timeout)),
            ("max_attempts", self.max_attempts.to_string()),
            ("shutdown_grace", secs(self.shutdown_grace)),
            ("upload_limit", self.upload_limit.to_string()),
            ("website_url", opt(&self.website_url)),
            ("engine_id", opt(&self.engine_id)),
            ("engine_url", self.engine_url.clone()),
            ("progress_interval", secs(self.progress_interval)),
            (
                "heartbeat_interval",
                self.heartbeat_interval.map_or("off".into(), secs),
            ),
            ("callback_give_up", secs(self.callback_give_up)),
            ("youtube_upload_url", self.youtube_upload_url.clone()),
            ("youtube_api_url", self.youtube_api_url.clone()),
            ("oauth_token_url", self.oauth_token_url.clone()),
            ("youtube_chunk_size", self.youtube_chunk_size.to_string()),
            ("oauth_client_id", opt(&self.oauth_client_id)),
            (
                "oauth_client_secret",
                self.oauth_client_secret
                    .as_ref()
                    .map_or("(none)".into(), |_| "(set)".into()),
            ),
        ]
    }

    /// The database setting with any password replaced by `***`.
    pub fn database_for_log(&self) -> String {
        match &self.database {
            Database::Sqlite(path) => format!("sqlite:{}", path.display()),
            Database::Postgres(url) => mask_password(url),
        }
    }
}

/// Keys a SIGHUP can't apply: they need a restart.
pub const RESTART_KEYS: &[&str] = &["listen", "database", "data_dir", "workers", "engine_id"];

fn mask_password(url: &str) -> String {
    // postgres://user:password@host/db → postgres://user:***@host/db
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.split("password=").next().unwrap_or(url).to_owned()
}

fn read_file(path: &Path, raw: &mut RawConfig) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    let table: FileTable = toml::from_str(&text).map_err(|e| {
        ConfigError(format!(
            "config file {} is not valid TOML: {e}",
            path.display()
        ))
    })?;
    for (key, value) in table.0 {
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(ConfigError(format!(
                    "key '{key}' in {} must be a string or a number, not {}",
                    path.display(),
                    other.type_str()
                )))
            }
        };
        raw.set(&key, text, format!("config file {}", path.display()))?;
    }
    Ok(())
}

/// Typed access to raw values, with messages naming the key and its source.
struct Validator<'a>(&'a RawConfig);

impl Validator<'_> {
    fn text(&self, key: &str) -> Option<&str> {
        self.0 .0.get(key).map(|r| r.text.as_str())
    }

    fn bad(&self, key: &str, expected: &str) -> ConfigError {
        match self.0 .0.get(key) {
            Some(r) => {
                let shown = if SECRET_KEYS.contains(&key) {
                    "***".to_owned()
                } else {
                    crate::shorten(&r.text, 80)
                };
                ConfigError(format!(
                    "{key} = '{shown}' (from {}) is not valid: expected {expected}",
                    r.source
                ))
            }
            None => ConfigError(format!("{key}: expected {expected}")),
        }
    }

    fn parse<T: std::str::FromStr>(
        &self,
        key: &str,
        default: &str,
        expected: &str,
    ) -> Result<T, ConfigError> {
        self.text(key)
            .unwrap_or(default)
            .trim()
            .parse()
            .map_err(|_| self.bad(key, expected))
    }

    fn seconds(&self, key: &str, default: u64) -> Result<Duration, ConfigError> {
        let s: u64 = self.parse(key, &default.to_string(), "whole seconds")?;
        Ok(Duration::from_secs(s))
    }

    fn positive_seconds(&self, key: &str, default: u64) -> Result<Duration, ConfigError> {
        let d = self.seconds(key, default)?;
        if d.is_zero() {
            return Err(self.bad(key, "whole seconds, at least 1"));
        }
        Ok(d)
    }

    fn url(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.text(key) {
            None | Some("") => Ok(None),
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                Ok(Some(u.to_owned()))
            }
            Some(_) => Err(self.bad(key, "an absolute http:// or https:// URL")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = Config::defaults();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            c.database,
            Database::Sqlite(PathBuf::from("./jobengine-data/jobengine.db"))
        );
        assert_eq!(c.encoder, Encoder::Mencoder);
        assert_eq!(c.job_timeout, Duration::from_secs(7200));
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.upload_limit, 2_147_483_648);
        assert_eq!(c.progress_interval, Duration::from_secs(5));
        assert_eq!(c.heartbeat_interval, None);
        assert_eq!(c.callback_give_up, Duration::from_secs(259_200));
        assert_eq!(c.youtube_chunk_size, 8_388_608);
        assert_eq!(c.engine_url, "http://127.0.0.1:8080/RPC2");
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1\"\nworkers = 3\nencoder = \"ffmpeg\"\n",
        )
        .unwrap();
        let flags = Flags {
            config: Some(file),
            listen: Some("127.0.0.1:3".into()),
            ..Flags::default()
        };
        let c = Config::load(
            &flags,
            env(&[
                ("JOBENGINE_LISTEN", "127.0.0.1:2"),
                ("JOBENGINE_WORKERS", "5"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:3");
        assert_eq!(c.workers, 5);
        assert_eq!(c.encoder, Encoder::Ffmpeg);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::load(&Flags::default(), env(&[("JOBENGINE_WROKERS", "2")])).unwrap_err();
        assert!(
            err.0.contains("'wrokers'") && err.0.contains("JOBENGINE_WROKERS"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "colour = 1\n").unwrap();
        let flags = Flags {
            config: Some(file),
            ..Flags::default()
        };
        assert!(Config::load(&flags, env(&[]))
            .unwrap_err()
            .0
            .contains("'colour'"));
    }

    #[test]
    fn bad_values_name_key_value_and_source() {
        let cases = [
            ("JOBENGINE_WORKERS", "lots", "workers = 'lots'"),
            ("JOBENGINE_ENCODER", "handbrake", "encoder = 'handbrake'"),
            ("JOBENGINE_YOUTUBE_CHUNK_SIZE", "1000", "multiple of 262144"),
            ("JOBENGINE_DATABASE", "mysql://x", "database = 'mysql://x'"),
            ("JOBENGINE_WEBSITE_URL", "ftp://x", "website_url"),
            ("JOBENGINE_JOB_TIMEOUT", "0", "at least 1"),
            ("JOBENGINE_LISTEN", "0.0.0.0:8080", "no authentication yet"),
        ];
        for (var, value, expect) in cases {
            let err = Config::load(&Flags::default(), env(&[(var, value)])).unwrap_err();
            assert!(
                err.0.contains(expect) && err.0.contains(var),
                "{var}: {err}"
            );
        }
    }

    #[test]
    fn secrets_and_passwords_are_masked() {
        let c = Config::load(
            &Flags {
                database: Some("postgres://u:hunter2@h/db".into()),
                ..Flags::default()
            },
            env(&[("JOBENGINE_OAUTH_CLIENT_SECRET", "s3cret")]),
        )
        .unwrap();
        let shown = format!("{:?}", c.describe());
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(shown.contains("postgres://u:***@h/db"));
    }

    #[test]
    fn sqlite_database_forms() {
        let c = Config::load(
            &Flags {
                database: Some("sqlite:/tmp/x.db".into()),
                ..Flags::default()
            },
            env(&[]),
        )
        .unwrap();
        assert_eq!(c.database, Database::Sqlite(PathBuf::from("/tmp/x.db")));
        let c = Config::load(
            &Flags {
                data_dir: Some("/srv/je".into()),
                ..Flags::default()
            },
            env(&[]),
        )
        .unwrap();
        assert_eq!(
            c.database,
            Database::Sqlite(PathBuf::from("/srv/je/jobengine.db"))
        );
    }
}

/// The configuration in force, swapped whole by SIGHUP. Readers take a
/// snapshot (`get`) and keep it for the duration of one job or request.
#[derive(Debug)]
pub struct LiveConfig(std::sync::RwLock<std::sync::Arc<Config>>);

impl LiveConfig {
    pub fn new(config: Config) -> LiveConfig {
        LiveConfig(std::sync::RwLock::new(std::sync::Arc::new(config)))
    }

    pub fn get(&self) -> std::sync::Arc<Config> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, config: Config) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(config);
    }
}
