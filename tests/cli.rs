//! The command line: `migrate`, exit codes, configuration errors, and a
//! store whose schema is newer than the binary.

use crate::support::engine::PgDatabase;
use std::process::{Command, Output};

fn jobengine(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jobengine"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("running jobengine")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn migrate_applies_the_schema_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sub/dir/jobengine.db");
    let sqlite = format!("sqlite:{}", db.display());
    let out = jobengine(&["migrate", "--database", &sqlite], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(db.is_file());
    assert!(
        stderr(&out).contains("up to date (version"),
        "{}",
        stderr(&out)
    );

    let pg = PgDatabase::create();
    let out = jobengine(&["migrate", "--database", &pg.url], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut client = postgres::Client::connect(&pg.url, postgres::NoTls).unwrap();
    let version: i32 = client
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, jobengine::store::migrate::LATEST);
    // Again: nothing to do, still fine.
    assert!(jobengine(&["migrate", "--database", &pg.url], &[])
        .status
        .success());
}

#[test]
fn a_schema_newer_than_the_binary_is_refused_naming_both_versions() {
    let pg = PgDatabase::create();
    assert!(jobengine(&["migrate", "--database", &pg.url], &[])
        .status
        .success());
    let mut client = postgres::Client::connect(&pg.url, postgres::NoTls).unwrap();
    client
        .batch_execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'from_the_future', now())")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = jobengine(&["serve", "--database", &pg.url, "--data-dir", data], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    let latest = jobengine::store::migrate::LATEST;
    assert!(
        err.contains("version 999") && err.contains(&format!("version {latest}")),
        "{err}"
    );
}

#[test]
fn configuration_errors_exit_2_naming_the_key() {
    let out = jobengine(&["serve"], &[("JOBENGINE_WORKRES", "2")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("'workres'"), "{}", stderr(&out));
    let out = jobengine(&["serve", "--listen", "not-an-address"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("listen = 'not-an-address' (from flag --listen)"),
        "{}",
        stderr(&out)
    );
    let out = jobengine(&["serve", "--colour"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown argument '--colour'"),
        "{}",
        stderr(&out)
    );
    let out = jobengine(&[], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("usage: jobengine serve"),
        "{}",
        stderr(&out)
    );
}
