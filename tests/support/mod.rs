//! Helpers shared by the integration tests: a fresh temporary directory per
//! test, and a private PostgreSQL schema per test so tests run in parallel
//! without seeing each other's rows.
#![allow(dead_code)]

pub mod engine;
pub mod private_pg;
pub mod website;

use std::path::{Path, PathBuf};

/// A temporary directory, removed when dropped.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    /// `name` shows in the directory name, to find a failing test's files.
    pub fn new(name: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("jobengine-{name}-"))
            .tempdir()
            .expect("cannot create a temporary directory");
        TestDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }
}

/// The PostgreSQL the tests use: `JOBENGINE_TEST_DATABASE`, or a local one
/// with trust auth.
pub fn pg_url() -> String {
    std::env::var("JOBENGINE_TEST_DATABASE")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn pg_connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is not reachable at {} ({e:?}). The tests need a real one: \
             `apt-get install postgresql`, start it, allow trust auth for user postgres \
             on 127.0.0.1 and `createdb -U postgres test`; or point \
             JOBENGINE_TEST_DATABASE at another database (a postgres:// URL).",
            redact(url)
        )
    })
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if scheme < at => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{}", &url[..scheme + 3 + colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A schema `t_<random>` of its own, dropped with everything in it at the
/// end. [`PgSchema::url`] connects with `search_path` set to it and
/// `application_name` set to its name (to find the test's connections in
/// `pg_stat_activity`).
pub struct PgSchema {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl PgSchema {
    pub fn new() -> PgSchema {
        let admin_url = pg_url();
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        pg_connect(&admin_url)
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .unwrap_or_else(|e| panic!("cannot create schema {name}: {e:?}"));
        let url = with_session(&admin_url, &name);
        PgSchema {
            name,
            url,
            admin_url,
        }
    }

    /// A plain client on the schema, for checks the store does not offer.
    pub fn client(&self) -> postgres::Client {
        pg_connect(&self.url)
    }

    /// A client outside the schema (to look at or end other sessions).
    pub fn admin(&self) -> postgres::Client {
        pg_connect(&self.admin_url)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// `url` whose sessions use `schema` first and are named after it.
fn with_session(url: &str, schema: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-csearch_path%3D{schema}&application_name={schema}")
    } else {
        format!("{url} options='-csearch_path={schema}' application_name={schema}")
    }
}

/// A tone MP3 of `seconds`, made once with ffmpeg and kept in cargo's
/// scratch dir for later tests and runs.
pub fn long_mp3(seconds: u32) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("media");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("tone-{seconds}s.mp3"));
    if path.is_file() {
        return path;
    }
    let partial = dir.join(format!(
        "tone-{seconds}s.{}.part.mp3",
        uuid::Uuid::new_v4().simple()
    ));
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=44100:duration={seconds}"
        ))
        .args(["-ac", "1", "-c:a", "libmp3lame", "-b:a", "32k"])
        .arg(&partial)
        .status()
        .expect("ffmpeg is needed for the tests: apt-get install ffmpeg");
    assert!(
        status.success(),
        "ffmpeg could not make {}",
        partial.display()
    );
    std::fs::rename(&partial, &path).unwrap();
    path
}
