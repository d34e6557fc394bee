//! The embedded SQLite backend of the store: one file, WAL, a single writer
//! connection and a few reader connections so reads never wait on writes.
//!
//! Writes run as `BEGIN IMMEDIATE` transactions on the one writer, so they
//! are serialised: a guarded UPDATE that matches nothing can look up the
//! job's state knowing nobody changed it in between. Timestamps are stored
//! as TEXT, UTC RFC 3339 with six fractional digits
//! (`2024-05-01T12:34:56.123456Z`): readable in `sqlite3`, and they sort and
//! compare as text. Times round-trip at microsecond precision (floored).
//!
//! Known deficiency: one process at a time should write the file; a second
//! one (say `jobengine migrate` against a running engine) waits up to
//! [`BUSY_TIMEOUT`] for the lock, then gets [`ErrorKind::Unavailable`].
//!
//! May use: `store`, `job`.

use super::batch::Batcher;
use super::migrate::{self, Dialect, Migration, Target};
use super::{
    call_from_row, corrupt, file_from_row, job_changed, job_from_row, jobs_columns,
    load_summary_sql, params_to_json, parse_id, parse_state, summary_from_row, Call, Change,
    Columns, Deleted, Error, ErrorKind, FileDelete, Finish, Insert, NewCall, ProgressUpdate,
    Recover, Recovery, Result, Store, SUMMARY_COLUMNS,
};
use crate::job::{FileRecord, Job, JobId, JobState, JobSummary, NewJob};
use rusqlite::{params, Connection, OptionalExtension, ToSql, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// How long a statement waits for another process's lock on the file.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Most CreateJobs in one write transaction.
const MAX_BATCH: usize = 64;

/// Idle reader connections kept for the next reads; more are opened while
/// more reads run at once, and closed as they come back past this many.
const IDLE_READERS: usize = 32;

const TIME_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// The columns each kind of read selects, in SELECT order. A row is read
/// through [`Named`] with the same list.
const JOB_COLUMNS: &[&str] = &[
    "id",
    "job_type",
    "state",
    "details",
    "callback",
    "progress",
    "result_code",
    "error_message",
    "result",
    "attempts",
    "checkpoint",
    "start_seq",
    "created_at",
    "last_state_change",
];
const CALL_COLUMNS: &[&str] = &[
    "id",
    "job_id",
    "url",
    "method",
    "params",
    "attempts",
    "created_at",
    "next_attempt_at",
];
const FILE_COLUMNS: &[&str] = &["id", "name", "size", "sha256", "owner_job", "created_at"];

/// One job by id, a row per file in role and list order (one row with
/// NULL files when it has none): the job's columns, then the file's role
/// and id.
static LOAD_JOB: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {}, f.role, f.file_id \
         FROM jobs LEFT JOIN job_files f ON f.job_id = jobs.id \
         WHERE jobs.id = ?1 ORDER BY f.role, f.position",
        jobs_columns(JOB_COLUMNS)
    )
});

/// GetJob's read (see [`load_summary_sql`]).
static LOAD_SUMMARY: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| load_summary_sql("?1"));

/// The store in one SQLite file.
pub struct SqliteStore {
    name: String,
    writer: Mutex<Connection>,
    path: PathBuf,
    /// Reader connections not in use. A read takes one (opening one when
    /// none is free) and gives it back: reads never wait for each other.
    idle_readers: Mutex<Vec<Connection>>,
    /// CreateJobs that arrive together share one write transaction.
    inserts: Batcher<NewJob, Insert>,
}

impl SqliteStore {
    /// Opens (creating it and its directories if needed) the store file at
    /// `path` and brings its schema to [`migrate::LATEST`]. Refuses a schema
    /// newer than this binary ([`ErrorKind::SchemaTooNew`]).
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let name = format!("SQLite at {}", path.display());
        let fail = |kind: ErrorKind, what: String| Error::new(kind, format!("{name}: {what}"));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                fail(
                    ErrorKind::Internal,
                    format!("cannot create the directory '{}': {e}", dir.display()),
                )
            })?;
        }
        let context = |e: Error| fail(e.kind(), format!("open: {e}"));
        let mut writer = connect(path, false).map_err(context)?;
        let tx = writer
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| context(e.into()))?;
        migrate::run(Dialect::Sqlite, &mut SqliteTarget { conn: &tx })
            .map_err(|e| fail(e.kind(), format!("migrate: {e}")))?;
        tx.commit().map_err(|e| context(e.into()))?;
        let first_reader = connect(path, true).map_err(context)?;
        Ok(SqliteStore {
            name,
            writer: Mutex::new(writer),
            path: path.to_owned(),
            idle_readers: Mutex::new(vec![first_reader]),
            inserts: Batcher::new(MAX_BATCH, 1),
        })
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer; commits
    /// when it returns Ok.
    fn write<T>(&self, verb: &str, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut conn = lock(&self.writer);
        in_transaction(&mut conn, TransactionBehavior::Immediate, f)
            .map_err(|e| self.context(verb, e))
    }

    /// Runs `f` in one read transaction (a consistent snapshot) on a reader.
    fn read<T>(&self, verb: &str, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.on_reader(verb, |conn| {
            in_transaction(conn, TransactionBehavior::Deferred, f)
        })
    }

    /// Runs `f` on a reader connection, outside any transaction: enough for
    /// one statement, which is its own snapshot.
    fn on_reader<T>(&self, verb: &str, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let run = || -> Result<T> {
            let idle = self
                .idle_readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let mut conn = match idle {
                Some(conn) => conn,
                None => connect(&self.path, true)?,
            };
            let out = f(&mut conn);
            let mut idle = self
                .idle_readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
            out
        };
        run().map_err(|e| self.context(verb, e))
    }

    fn context(&self, verb: &str, e: Error) -> Error {
        Error::new(e.kind(), format!("{}: {verb}: {e}", self.name))
    }

    /// A change of state alone: `sql` moves job `?1` out of the state it
    /// accepts, at time `?2`.
    fn transition(&self, verb: &str, id: &JobId, sql: &str, now: SystemTime) -> Result<Change> {
        let now = ts(now)?;
        self.write(verb, |c| {
            let n = c.prepare_cached(sql)?.execute(params![id.as_str(), now])?;
            if n == 0 {
                refusal(c, id)
            } else {
                changed(c, id)
            }
        })
    }

    /// Ends a job as `end` says: `sql` (with `params`) is the guarded UPDATE
    /// that moves it out of the states it accepts and returns its callback.
    /// Its outputs become `end.outputs`, and the end's side effects follow.
    fn end_job(
        &self,
        verb: &str,
        end: &Finish,
        sql: &str,
        params: &[&dyn ToSql],
    ) -> Result<Change> {
        let id = end.id;
        self.write(verb, |c| {
            let callback: Option<String> = c
                .prepare_cached(sql)?
                .query_row(params, |r| r.get(0))
                .optional()?;
            let Some(callback) = callback else {
                return refusal(c, id);
            };
            c.prepare_cached("DELETE FROM job_files WHERE job_id = ?1 AND role = 'output'")?
                .execute([id.as_str()])?;
            insert_job_files(c, id, "output", end.outputs)?;
            ended(c, end, &callback)?;
            changed(c, id)
        })
    }
}

/// Runs `f` in one transaction on `conn`; commits when it returns Ok.
fn in_transaction<T>(
    conn: &mut Connection,
    behavior: TransactionBehavior,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let tx = conn.transaction_with_behavior(behavior)?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

/// A connection that panicked mid-transaction rolled back as it unwound, so
/// a poisoned lock still guards a usable connection.
fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn connect(path: &Path, reader: bool) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if reader {
        conn.pragma_update(None, "query_only", "ON")?;
    } else {
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "the file system refused write-ahead logging (journal_mode is '{mode}'); \
                     put the data dir on a local file system"
                ),
            ));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    Ok(conn)
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        use rusqlite::ErrorCode::*;
        let kind = match e.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked | DiskFull) => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, e.to_string())
    }
}

/// `t` as stored: UTC, six fractional digits, floored to the microsecond.
fn ts(t: SystemTime) -> Result<String> {
    let nanos: i128 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    let micros = nanos.div_euclid(1000);
    OffsetDateTime::from_unix_timestamp_nanos(micros * 1000)
        .ok()
        .and_then(|t| t.format(TIME_FORMAT).ok())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                format!("time {t:?} is outside years 1..9999"),
            )
        })
}

/// A stored timestamp. The store writes one shape only,
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, read digit by digit here (the generic parser
/// cost GetJob 4 % of its instructions for its two timestamps); anything else
/// goes to the `time` parser, which says what is wrong with it.
fn parse_ts(raw: &str) -> Result<SystemTime> {
    if let Some(t) = parse_stored_ts(raw.as_bytes()) {
        return Ok(t);
    }
    PrimitiveDateTime::parse(raw, TIME_FORMAT)
        .map(|t| SystemTime::from(t.assume_utc()))
        .map_err(|e| corrupt(format!("timestamp '{}': {e}", crate::shorten(raw, 40))))
}

fn parse_stored_ts(b: &[u8]) -> Option<SystemTime> {
    let shape = b.len() == 27
        && [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (26, b'Z'),
        ]
        .iter()
        .all(|&(at, c)| b[at] == c);
    if !shape {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let small = |from: usize, to: usize| number(from, to).and_then(|n| u8::try_from(n).ok());
    let month = time::Month::try_from(small(5, 7)?).ok()?;
    let year = i32::try_from(number(0, 4)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, small(8, 10)?).ok()?;
    let clock = time::Time::from_hms_micro(
        small(11, 13)?,
        small(14, 16)?,
        small(17, 19)?,
        number(20, 26)?,
    )
    .ok()?;
    Some(SystemTime::from(
        PrimitiveDateTime::new(date, clock).assume_utc(),
    ))
}

fn parse_opt_ts(raw: Option<String>) -> Result<Option<SystemTime>> {
    raw.as_deref().map(parse_ts).transpose()
}

/// A row read by column name without asking SQLite: rusqlite's by-name
/// `get` fetches and compares the name of every column on each call (a
/// fifth of GetJob's time in the store). `names` is the SELECT's own list.
struct Named<'a, 'r> {
    row: &'a rusqlite::Row<'r>,
    names: &'static [&'static str],
}

impl Named<'_, '_> {
    fn index(&self, column: &str) -> Result<usize> {
        self.names.iter().position(|n| *n == column).ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                format!("column {column} is not in this read"),
            )
        })
    }

    fn get<T: rusqlite::types::FromSql>(&self, column: &str) -> Result<T> {
        Ok(self.row.get(self.index(column)?)?)
    }
}

impl Columns for Named<'_, '_> {
    fn text(&self, column: &str) -> Result<String> {
        self.get(column)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        self.get(column)
    }
    fn int(&self, column: &str) -> Result<i32> {
        self.get(column)
    }
    fn big(&self, column: &str) -> Result<i64> {
        self.get(column)
    }
    fn opt_big(&self, column: &str) -> Result<Option<i64>> {
        self.get(column)
    }
    fn time(&self, column: &str) -> Result<SystemTime> {
        let raw = self.row.get_ref(self.index(column)?)?;
        parse_ts(raw.as_str().map_err(rusqlite::Error::from)?)
    }
}

/// One job with its files, in one statement (its own snapshot, so no
/// transaction is needed): a row per file, the job's columns on each.
fn load_job(conn: &Connection, id: &str) -> Result<Option<Job>> {
    let mut stmt = conn.prepare_cached(&LOAD_JOB)?;
    let mut rows = stmt.query([id])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let mut job = job_from_row(&Named {
        row,
        names: JOB_COLUMNS,
    })?;
    let (role_at, file_at) = (JOB_COLUMNS.len(), JOB_COLUMNS.len() + 1);
    let mut row = Some(row);
    while let Some(r) = row {
        let role = r
            .get_ref(role_at)?
            .as_str_or_null()
            .map_err(rusqlite::Error::from)?;
        let file: Option<String> = r.get(file_at)?;
        match (role, file) {
            (Some("input"), Some(file)) => job.inputs.push(file),
            (Some(_), Some(file)) => job.outputs.push(file),
            _ => {}
        }
        row = rows.next()?;
    }
    Ok(Some(job))
}

fn load_summary(conn: &Connection, id: &JobId) -> Result<Option<JobSummary>> {
    let mut stmt = conn.prepare_cached(&LOAD_SUMMARY)?;
    let mut rows = stmt.query([id.as_str()])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let mut summary = summary_from_row(
        id,
        &Named {
            row,
            names: SUMMARY_COLUMNS,
        },
    )?;
    let mut row = Some(row);
    while let Some(r) = row {
        if let Some(file) = r.get(SUMMARY_COLUMNS.len())? {
            summary.outputs.push(file);
        }
        row = rows.next()?;
    }
    Ok(Some(summary))
}

/// The job as it is after a change made in this transaction.
fn changed(conn: &Connection, id: &JobId) -> Result<Change> {
    job_changed(id, load_job(conn, id.as_str())?)
}

/// Why a guarded UPDATE changed nothing. Writes are serialised, so the
/// state read here is the one the UPDATE saw.
fn refusal(conn: &Connection, id: &JobId) -> Result<Change> {
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM jobs WHERE id = ?1")?
        .query_row([id.as_str()], |r| r.get(0))
        .optional()?;
    match state {
        None => Ok(Change::NotFound),
        Some(state) => Ok(Change::WrongState(parse_state(&state)?)),
    }
}

fn queue_call(conn: &Connection, call: &NewCall) -> Result<()> {
    let params = params_to_json(&call.params)?;
    let now = ts(call.now)?;
    conn.prepare_cached(
        "INSERT INTO outbox (job_id, url, method, params, created_at, next_attempt_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )?
    .execute(params![
        call.job.as_ref().map(JobId::as_str),
        call.url,
        call.method,
        params,
        now
    ])?;
    Ok(())
}

fn supersede_progress(conn: &Connection, id: &JobId) -> Result<()> {
    conn.prepare_cached(
        "UPDATE outbox SET state = 'superseded' \
         WHERE job_id = ?1 AND state = 'pending' AND method = 'JobProgress'",
    )?
    .execute([id.as_str()])?;
    Ok(())
}

/// The side effects of a job ending as `end` says: pending progress calls
/// dropped and, with a callback, JobCompleted queued.
fn ended(conn: &Connection, end: &Finish, callback: &str) -> Result<()> {
    supersede_progress(conn, end.id)?;
    match NewCall::job_completed(end, callback) {
        Some(call) => queue_call(conn, &call),
        None => Ok(()),
    }
}

/// Writes a job's file list of one role, keeping its order.
/// One CreateJob, inside the writer's transaction. The writer is
/// serialised, so nobody adds or removes a file or a job between these
/// statements; a job earlier in the same batch counts as taken.
fn insert_one(c: &Connection, job: &NewJob) -> Result<Insert> {
    let mut known = c.prepare_cached("SELECT 1 FROM files WHERE id = ?1")?;
    for file in &job.inputs {
        if !known.exists([file])? {
            let taken = c
                .prepare_cached("SELECT 1 FROM jobs WHERE id = ?1")?
                .exists([job.id.as_str()])?;
            return Ok(if taken {
                Insert::AlreadyExists
            } else {
                Insert::MissingInput(file.clone())
            });
        }
    }
    let inserted = c
        .prepare_cached(
            "INSERT INTO jobs (id, job_type, state, details, secrets, callback, progress, \
                               created_at, last_state_change) \
             VALUES (?1, ?2, 'Created', ?3, ?4, ?5, 0, ?6, ?6) \
             ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![
            job.id.as_str(),
            job.kind.as_str(),
            job.details,
            job.secrets,
            job.callback,
            ts(job.now)?
        ])?;
    if inserted == 0 {
        return Ok(Insert::AlreadyExists);
    }
    insert_job_files(c, &job.id, "input", &job.inputs)?;
    Ok(Insert::Inserted)
}

fn insert_job_files(conn: &Connection, id: &JobId, role: &str, files: &[String]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO job_files (job_id, role, position, file_id) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (position, file) in files.iter().enumerate() {
        stmt.execute(params![id.as_str(), role, position as i64, file])?;
    }
    Ok(())
}

/// Pending calls that are first in their job's line (or belong to no job).
const HEAD_OF_LINE: &str = "state = 'pending' \
    AND NOT EXISTS (SELECT 1 FROM outbox older \
                    WHERE older.job_id = o.job_id AND older.state = 'pending' \
                      AND older.id < o.id)";

struct SqliteTarget<'a> {
    conn: &'a Connection,
}

impl Target for SqliteTarget<'_> {
    fn recorded_version(&mut self) -> Result<i32> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
                version    INTEGER PRIMARY KEY,\
                name       TEXT    NOT NULL,\
                applied_at TEXT    NOT NULL)",
        )?;
        Ok(self.conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?)
    }

    fn apply(&mut self, migration: &Migration) -> Result<()> {
        self.conn.execute_batch(migration.sql)?;
        self.conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![migration.version, migration.name, ts(SystemTime::now())?],
        )?;
        Ok(())
    }
}

impl Store for SqliteStore {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn ping(&self) -> Result<()> {
        self.read("ping", |c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
    }

    fn insert_job(&self, job: &NewJob) -> Result<Insert> {
        self.inserts.submit(job.clone(), |jobs| {
            self.write("insert_job", |c| {
                jobs.iter().map(|job| insert_one(c, job)).collect()
            })
        })
    }

    fn get_job(&self, id: &JobId) -> Result<Option<Job>> {
        self.on_reader("get_job", |c| load_job(c, id.as_str()))
    }

    fn get_job_summary(&self, id: &JobId) -> Result<Option<JobSummary>> {
        self.on_reader("get_job_summary", |c| load_summary(c, id))
    }

    fn get_progress(&self, id: &JobId) -> Result<Option<(JobState, i32)>> {
        self.on_reader("get_progress", |conn| {
            let row: Option<(String, i32)> = conn
                .prepare_cached("SELECT state, progress FROM jobs WHERE id = ?1")?
                .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            row.map(|(state, progress)| Ok((parse_state(&state)?, progress)))
                .transpose()
        })
    }

    fn get_secrets(&self, id: &JobId) -> Result<Option<String>> {
        self.read("get_secrets", |c| {
            let secrets: Option<Option<String>> = c
                .prepare_cached("SELECT secrets FROM jobs WHERE id = ?1")?
                .query_row([id.as_str()], |r| r.get(0))
                .optional()?;
            Ok(secrets.flatten())
        })
    }

    fn start_job(&self, id: &JobId, now: SystemTime) -> Result<Change> {
        self.transition(
            "start_job",
            id,
            "UPDATE jobs SET state = 'Started', \
               start_seq = (SELECT COALESCE(MAX(start_seq), 0) + 1 FROM jobs \
                            WHERE start_seq IS NOT NULL), \
               last_state_change = ?2 \
             WHERE id = ?1 AND state = 'Created'",
            now,
        )
    }

    fn claim_job(&self, id: &JobId, now: SystemTime) -> Result<Change> {
        self.transition(
            "claim_job",
            id,
            "UPDATE jobs SET state = 'InProgress', progress = 0, last_state_change = ?2 \
             WHERE id = ?1 AND state = 'Started'",
            now,
        )
    }

    fn record_progress(&self, update: &ProgressUpdate) -> Result<bool> {
        let id = update.id;
        let now = ts(update.now)?;
        self.write("record_progress", |c| {
            let row: Option<(String, Option<i32>, Option<String>)> = c
                .prepare_cached(
                    "UPDATE jobs SET progress = ?2 WHERE id = ?1 AND state = 'InProgress' \
                     RETURNING callback, progress_sent, progress_sent_at",
                )?
                .query_row(params![id.as_str(), update.progress], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            let Some((callback, sent, sent_at)) = row else {
                return Ok(false);
            };
            if update.due(&callback, sent, parse_opt_ts(sent_at)?) {
                supersede_progress(c, id)?;
                queue_call(c, &NewCall::job_progress(update, callback))?;
                c.prepare_cached(
                    "UPDATE jobs SET progress_sent = ?2, progress_sent_at = ?3 WHERE id = ?1",
                )?
                .execute(params![id.as_str(), update.progress, now])?;
            }
            Ok(true)
        })
    }

    fn set_checkpoint(&self, id: &JobId, checkpoint: &str) -> Result<bool> {
        self.write("set_checkpoint", |c| {
            let n = c
                .prepare_cached(
                    "UPDATE jobs SET checkpoint = ?2 WHERE id = ?1 AND state = 'InProgress'",
                )?
                .execute(params![id.as_str(), checkpoint])?;
            Ok(n == 1)
        })
    }

    fn finish_job(&self, finish: &Finish) -> Result<Change> {
        finish.check().map_err(|e| self.context("finish_job", e))?;
        self.end_job(
            "finish_job",
            finish,
            "UPDATE jobs SET state = ?2, result_code = ?3, error_message = ?4, \
                             result = ?5, secrets = NULL, last_state_change = ?6 \
             WHERE id = ?1 AND state = 'InProgress' RETURNING callback",
            params![
                finish.id.as_str(),
                finish.state.as_str(),
                finish.result_code,
                finish.error_message,
                finish.result,
                ts(finish.now)?
            ],
        )
    }

    fn cancel_job(&self, id: &JobId, now: SystemTime) -> Result<Change> {
        let end = Finish::cancelled(id, now);
        self.end_job(
            "cancel_job",
            &end,
            "UPDATE jobs SET state = 'Failed', result_code = ?2, error_message = ?3, \
                             secrets = NULL, last_state_change = ?4 \
             WHERE id = ?1 AND state IN ('Started', 'InProgress') RETURNING callback",
            params![id.as_str(), end.result_code, end.error_message, ts(now)?],
        )
    }

    fn requeue_job(&self, id: &JobId, now: SystemTime) -> Result<Change> {
        self.transition(
            "requeue_job",
            id,
            "UPDATE jobs SET state = 'Started', progress = 0, last_state_change = ?2 \
             WHERE id = ?1 AND state = 'InProgress'",
            now,
        )
    }

    fn delete_job(&self, id: &JobId) -> Result<Option<Deleted>> {
        self.write("delete_job", |c| {
            let gone = c
                .prepare_cached("DELETE FROM jobs WHERE id = ?1")?
                .execute([id.as_str()])?;
            if gone == 0 {
                return Ok(None);
            }
            c.prepare_cached("DELETE FROM outbox WHERE job_id = ?1")?
                .execute([id.as_str()])?;
            c.prepare_cached("DELETE FROM job_files WHERE job_id = ?1")?
                .execute([id.as_str()])?;
            let mut stmt =
                c.prepare_cached("DELETE FROM files WHERE owner_job = ?1 RETURNING id")?;
            let mut output_files = stmt
                .query_map([id.as_str()], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            output_files.sort();
            Ok(Some(Deleted { output_files }))
        })
    }

    fn recover_jobs(&self, max_attempts: i32, now: SystemTime) -> Result<Recovery> {
        let at = ts(now)?;
        self.write("recover_jobs", |c| {
            let running: Vec<(String, i32, String)> = c
                .prepare_cached(
                    "SELECT id, attempts, callback FROM jobs WHERE state = 'InProgress' \
                     ORDER BY start_seq, id",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut recovery = Recovery::default();
            for (raw, attempts, callback) in running {
                let id = parse_id(&raw)?;
                match Recover::decide(attempts, max_attempts) {
                    Recover::Fail { attempts, message } => {
                        let end = Finish::interrupted(&id, &message, now);
                        c.prepare_cached(
                            "UPDATE jobs SET state = 'Failed', attempts = ?2, result_code = ?3, \
                                             error_message = ?4, secrets = NULL, \
                                             last_state_change = ?5 \
                             WHERE id = ?1 AND state = 'InProgress'",
                        )?
                        .execute(params![
                            raw,
                            attempts,
                            end.result_code,
                            message,
                            at
                        ])?;
                        ended(c, &end, &callback)?;
                        recovery.failed.push(id);
                    }
                    Recover::Requeue { attempts } => {
                        c.prepare_cached(
                            "UPDATE jobs SET state = 'Started', attempts = ?2, progress = 0, \
                                             last_state_change = ?3 \
                             WHERE id = ?1 AND state = 'InProgress'",
                        )?
                        .execute(params![raw, attempts, at])?;
                        recovery.requeued.push(id);
                    }
                }
            }
            Ok(recovery)
        })
    }

    fn started_jobs(&self) -> Result<Vec<JobId>> {
        self.read("started_jobs", |c| {
            let ids: Vec<String> = c
                .prepare_cached(
                    "SELECT id FROM jobs WHERE state = 'Started' ORDER BY start_seq, id",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            ids.iter().map(|id| parse_id(id)).collect()
        })
    }

    fn insert_file(&self, file: &FileRecord) -> Result<()> {
        let created = ts(file.created_at)?;
        self.write("insert_file", |c| {
            c.prepare_cached(
                "INSERT INTO files (id, name, size, sha256, owner_job, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                file.id,
                file.name,
                file.size,
                file.sha256,
                file.owner_job.as_ref().map(JobId::as_str),
                created
            ])?;
            Ok(())
        })
    }

    fn get_file(&self, id: &str) -> Result<Option<FileRecord>> {
        self.read("get_file", |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {} FROM files WHERE id = ?1",
                FILE_COLUMNS.join(", ")
            ))?;
            let mut rows = stmt.query([id])?;
            rows.next()?
                .map(|row| {
                    file_from_row(&Named {
                        row,
                        names: FILE_COLUMNS,
                    })
                })
                .transpose()
        })
    }

    fn delete_file(&self, id: &str) -> Result<FileDelete> {
        self.write("delete_file", |c| {
            if !c
                .prepare_cached("SELECT 1 FROM files WHERE id = ?1")?
                .exists([id])?
            {
                return Ok(FileDelete::NotFound);
            }
            let user: Option<String> = c
                .prepare_cached(
                    "SELECT f.job_id FROM job_files f JOIN jobs j ON j.id = f.job_id \
                     WHERE f.file_id = ?1 AND f.role = 'input' \
                       AND j.state IN ('Created', 'Started', 'InProgress') \
                     ORDER BY f.job_id LIMIT 1",
                )?
                .query_row([id], |r| r.get(0))
                .optional()?;
            if let Some(job) = user {
                return Ok(FileDelete::InUse(parse_id(&job)?));
            }
            c.prepare_cached("DELETE FROM files WHERE id = ?1")?
                .execute([id])?;
            Ok(FileDelete::Deleted)
        })
    }

    fn enqueue_call(&self, call: &NewCall) -> Result<()> {
        self.write("enqueue_call", |c| queue_call(c, call))
    }

    fn due_calls(&self, now: SystemTime, limit: usize) -> Result<Vec<Call>> {
        let now = ts(now)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read("due_calls", |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {} FROM outbox o \
                 WHERE next_attempt_at <= ?1 AND {HEAD_OF_LINE} \
                 ORDER BY id LIMIT ?2",
                CALL_COLUMNS.join(", ")
            ))?;
            let mut rows = stmt.query(params![now, limit])?;
            let mut calls = Vec::new();
            while let Some(row) = rows.next()? {
                calls.push(call_from_row(&Named {
                    row,
                    names: CALL_COLUMNS,
                })?);
            }
            Ok(calls)
        })
    }

    fn next_call_due(&self) -> Result<Option<SystemTime>> {
        self.read("next_call_due", |c| {
            // Only heads of their job's line: a later call of a job waits for
            // the older one however early it is due.
            let due: Option<String> = c
                .prepare_cached(&format!(
                    "SELECT MIN(next_attempt_at) FROM outbox o WHERE {HEAD_OF_LINE}"
                ))?
                .query_row([], |r| r.get(0))?;
            parse_opt_ts(due)
        })
    }

    fn call_delivered(&self, id: i64, now: SystemTime) -> Result<()> {
        let now = ts(now)?;
        self.write("call_delivered", |c| {
            c.prepare_cached(
                "UPDATE outbox SET state = 'delivered', delivered_at = ?2 \
                 WHERE id = ?1 AND state IN ('pending', 'superseded')",
            )?
            .execute(params![id, now])?;
            Ok(())
        })
    }

    fn call_failed(&self, id: i64, error: &str, retry_at: SystemTime) -> Result<()> {
        let retry_at = ts(retry_at)?;
        self.write("call_failed", |c| {
            c.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, \
                                   next_attempt_at = ?3 \
                 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![id, error, retry_at])?;
            Ok(())
        })
    }

    fn call_undeliverable(&self, id: i64, error: &str, now: SystemTime) -> Result<()> {
        let now = ts(now)?;
        self.write("call_undeliverable", |c| {
            c.prepare_cached(
                "UPDATE outbox SET state = 'undeliverable', attempts = attempts + 1, \
                                   last_error = ?2, delivered_at = ?3 \
                 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![id, error, now])?;
            Ok(())
        })
    }

    fn engine_id(&self, generated: &str) -> Result<String> {
        self.write("engine_id", |c| {
            c.prepare_cached(
                "INSERT INTO engine (key, value) VALUES ('engine_id', ?1) \
                 ON CONFLICT (key) DO NOTHING",
            )?
            .execute([generated])?;
            Ok(c.query_row(
                "SELECT value FROM engine WHERE key = 'engine_id'",
                [],
                |r| r.get(0),
            )?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_timestamps_read_the_same_as_the_time_parser_reads_them() {
        for raw in [
            "2024-05-01T12:34:56.123456Z",
            "0001-01-01T00:00:00.000000Z",
            "9999-12-31T23:59:59.999999Z",
            "2024-02-29T00:00:00.000001Z",
        ] {
            let slow = PrimitiveDateTime::parse(raw, TIME_FORMAT)
                .map(|t| SystemTime::from(t.assume_utc()));
            assert_eq!(parse_stored_ts(raw.as_bytes()), slow.ok(), "{raw}");
            assert_eq!(ts(parse_ts(raw).unwrap()).unwrap(), raw);
        }
    }

    #[test]
    fn other_shapes_go_to_the_time_parser_and_are_refused_with_the_text() {
        for raw in [
            "2023-02-29T00:00:00.000000Z",
            "2024-13-01T00:00:00.000000Z",
            "2024-05-01T24:00:00.000000Z",
            "2024-05-01 12:34:56.123456Z",
            "2024-05-01T12:34:56.12345Z",
            "2024-05-01T12:34:5x.123456Z",
            "+024-05-01T12:34:56.123456Z",
            "",
        ] {
            assert_eq!(parse_stored_ts(raw.as_bytes()), None, "{raw}");
            let e = parse_ts(raw).unwrap_err().to_string();
            assert!(e.contains("corrupt row: timestamp"), "{raw}: {e}");
        }
    }
}
