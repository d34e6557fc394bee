//! The PostgreSQL backend of the store: a bounded r2d2 pool of blocking
//! `postgres` clients, every verb one READ COMMITTED transaction of guarded
//! statements.
//!
//! A state change is one `UPDATE ... WHERE id = $1 AND state IN (...)`, so
//! PostgreSQL's row lock decides races: the loser's UPDATE re-reads the row
//! after the winner commits and matches nothing. Connections are not tested
//! on checkout (a round trip on every verb); instead a verb that finds its
//! connection lost before it changed anything (a read, BEGIN, a write's test
//! query) runs again on another, so the pool heals by itself after
//! PostgreSQL restarts. While it is down every verb answers
//! [`ErrorKind::Unavailable`] within [`CONNECT_TIMEOUT`]. CreateJobs that
//! arrive together share one statement (and one checkout): see
//! [`super::batch`].
//!
//! May use: `store`, `job`.

use super::batch::Batcher;
use super::migrate::{self, Dialect, Migration, Target};
use super::{
    call_from_row, corrupt, file_from_row, job_changed, job_from_row, load_summary_sql,
    params_to_json, parse_id, parse_state, summary_from_row, Call, Change, Columns, Deleted, Error,
    ErrorKind, FileDelete, Finish, Insert, NewCall, ProgressUpdate, Recover, Recovery, Result,
    Store,
};
use crate::job::{FileRecord, Job, JobId, JobState, JobSummary, NewJob};
use postgres::config::Host;
use postgres::types::{ToSql, Type};
use postgres::{GenericClient, NoTls, Row, Statement, Transaction};
use r2d2_postgres::PostgresConnectionManager;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// How long a verb waits for a connection (and a connection attempt for the
/// server) before answering Unavailable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long sent data may stay unacknowledged before the connection counts
/// as lost (a pulled cable must not hang a verb forever).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// Most CreateJobs in one statement.
const MAX_BATCH: usize = 64;

/// CreateJob statements in flight at once: one fills while others wait on
/// their commit.
const LEADERS: usize = 2;

/// Advisory lock key that serialises migrations of one database ("jobeng").
const MIGRATION_LOCK: i64 = 0x6a6f_6265_6e67;

/// One job by id, a row per file in role and list order (one row with
/// NULL files when it has none): one statement, so one snapshot, and a
/// plain index join (two correlated `array_agg` subqueries cost GetJob
/// twice GetProgress's PostgreSQL CPU).
const LOAD_JOB: &str = "\
    SELECT jobs.id, jobs.job_type, jobs.state, jobs.details, jobs.callback, jobs.progress, \
           jobs.result_code, jobs.error_message, jobs.result, jobs.attempts, jobs.checkpoint, \
           jobs.start_seq, jobs.created_at, jobs.last_state_change, \
           f.role AS file_role, f.file_id AS file_id \
    FROM jobs LEFT JOIN job_files f ON f.job_id = jobs.id \
    WHERE jobs.id = $1 ORDER BY f.role, f.position";

/// GetJob's read (see [`load_summary_sql`]).
static LOAD_SUMMARY: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| load_summary_sql("$1"));

const CALL_COLUMNS: &str = "id, job_id, url, method, params, attempts, created_at, next_attempt_at";

/// A pooled connection with the statements prepared on it for the hot
/// verbs (by SQL text): those are parsed and planned once per connection
/// instead of on every call.
pub struct Conn {
    client: postgres::Client,
    prepared: HashMap<String, Statement>,
    /// A call on it failed as a lost connection does: drop it, don't pool it.
    lost: bool,
}

impl std::ops::Deref for Conn {
    type Target = postgres::Client;
    fn deref(&self) -> &postgres::Client {
        &self.client
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        &mut self.client
    }
}

impl Conn {
    /// The prepared statement for `sql`, preparing it on first use.
    fn statement(&mut self, sql: &str) -> std::result::Result<Statement, postgres::Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.prepared.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

/// How a verb's step failed, and whether it may run again on another
/// connection when the connection turns out lost.
enum Retry {
    /// Nothing was changed yet (BEGIN, a test query, a prepare).
    Yes(postgres::Error),
    /// A read: repeating it is harmless.
    Read(Error),
    /// A write that may have happened: never repeated.
    No(Error),
}

/// A verb's one-shot step, taken for the attempt that gets past the steps
/// that may be repeated.
fn once<F>(f: &mut Option<F>) -> std::result::Result<F, Retry> {
    f.take()
        .ok_or_else(|| Retry::No(corrupt("a verb's step ran twice".into())))
}

/// r2d2_postgres's manager, with a statement cache kept per connection.
pub struct Manager(PostgresConnectionManager<NoTls>);

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> std::result::Result<Conn, postgres::Error> {
        Ok(Conn {
            client: self.0.connect()?,
            prepared: HashMap::new(),
            lost: false,
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> std::result::Result<(), postgres::Error> {
        self.0.is_valid(&mut conn.client)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.lost || self.0.has_broken(&mut conn.client)
    }
}

/// The store in a PostgreSQL database.
pub struct PgStore {
    pool: r2d2::Pool<Manager>,
    /// CreateJobs that arrive together share one statement.
    inserts: Batcher<NewJob, Insert>,
    /// "PostgreSQL at host:port/db", never with a password.
    name: String,
}

impl PgStore {
    /// Connects to `url` (a `postgres://` URL or `key=value` string) with a
    /// pool of at most `pool_size` connections, and brings the schema to
    /// [`migrate::LATEST`]. Refuses a schema newer than this binary
    /// ([`ErrorKind::SchemaTooNew`]); an unreachable server is
    /// [`ErrorKind::Unavailable`].
    pub fn open(url: &str, pool_size: u32) -> Result<PgStore> {
        // The URL itself is never quoted: it may hold a password.
        let mut config: postgres::Config = url.parse().map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("the database URL is not a valid PostgreSQL connection string: {e}"),
            )
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        let name = describe_config(&config);
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            // Tested by the verbs instead: see `attempt`.
            .test_on_check_out(false)
            .build_unchecked(Manager(PostgresConnectionManager::new(config, NoTls)));
        let store = PgStore {
            pool,
            name,
            inserts: Batcher::new(MAX_BATCH, LEADERS),
        };
        store.tx("migrate", |tx| {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            migrate::run(Dialect::Postgres, &mut PgTarget { tx })
        })?;
        Ok(store)
    }

    /// Runs `f` in one transaction on a pooled connection; commits when it
    /// returns Ok. Errors are prefixed with the store and the verb.
    fn tx<T>(&self, verb: &str, f: impl FnOnce(&mut Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut f = Some(f);
        self.attempt(verb, |conn| {
            // BEGIN changes nothing, so a connection found dead here is
            // retried; past it, a failure is the caller's.
            let mut tx = conn.client.transaction().map_err(Retry::Yes)?;
            let out = once(&mut f)?(&mut tx).map_err(Retry::No)?;
            tx.commit().map_err(|e| Retry::No(e.into()))?;
            Ok(out)
        })
    }

    /// Runs one read outside an explicit transaction.
    fn read<T>(
        &self,
        verb: &str,
        mut f: impl FnMut(&mut postgres::Client) -> Result<T>,
    ) -> Result<T> {
        self.attempt(verb, |conn| f(&mut conn.client).map_err(Retry::Read))
    }

    /// Runs one read statement of a hot verb, prepared once per connection.
    fn prepared<T>(
        &self,
        verb: &str,
        sql: &str,
        mut f: impl FnMut(&mut postgres::Client, &Statement) -> Result<T>,
    ) -> Result<T> {
        self.attempt(verb, |conn| {
            let statement = conn.statement(sql).map_err(Retry::Yes)?;
            f(&mut conn.client, &statement).map_err(Retry::Read)
        })
    }

    /// Runs one write statement of a hot verb, prepared once per
    /// connection, after a test round trip (a write is not repeated).
    fn prepared_write<T>(
        &self,
        verb: &str,
        sql: &str,
        f: impl FnOnce(&mut postgres::Client, &Statement) -> Result<T>,
    ) -> Result<T> {
        let mut f = Some(f);
        self.attempt(verb, |conn| {
            conn.client.simple_query("").map_err(Retry::Yes)?;
            let statement = conn.statement(sql).map_err(Retry::Yes)?;
            once(&mut f)?(&mut conn.client, &statement).map_err(Retry::No)
        })
    }

    /// Runs `f` on a pooled connection, again on another one when it fails
    /// in a way `f` says may be repeated and the connection was lost (one
    /// that died idle in the pool, say PostgreSQL restarted): connections
    /// are not tested on checkout, which would cost every verb a round trip.
    fn attempt<T>(
        &self,
        verb: &str,
        mut f: impl FnMut(&mut Conn) -> std::result::Result<T, Retry>,
    ) -> Result<T> {
        // Each lost connection leaves the pool, so the pool's size bounds
        // the retries; a fresh one that fails is not a stale one.
        for _ in 0..=self.pool.max_size() {
            let mut conn = self.connection().map_err(|e| self.context(verb, e))?;
            let (e, repeatable) = match f(&mut conn) {
                Ok(out) => return Ok(out),
                Err(Retry::Yes(e)) => (Error::from(e), true),
                Err(Retry::Read(e)) => (e, true),
                Err(Retry::No(e)) => (e, false),
            };
            if e.kind() != ErrorKind::Unavailable {
                return Err(self.context(verb, e));
            }
            conn.lost = true;
            if !repeatable {
                return Err(self.context(verb, e));
            }
            log::debug!(
                "{}: {verb}: a pooled connection was lost ({e}); retrying",
                self.name
            );
        }
        Err(self.context(
            verb,
            Error::new(ErrorKind::Unavailable, "every pooled connection was lost"),
        ))
    }

    fn connection(&self) -> Result<r2d2::PooledConnection<Manager>> {
        self.pool.get().map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("no connection within {} s: {e}", CONNECT_TIMEOUT.as_secs()),
            )
        })
    }

    fn context(&self, verb: &str, e: Error) -> Error {
        Error::new(e.kind(), format!("{}: {verb}: {e}", self.name))
    }

    /// CreateJobs that arrived together, each as one statement would do
    /// it: a statement per round, a round holding each JobID once (a JobID
    /// twice in one batch: the second finds it taken).
    fn insert_batch(&self, jobs: &[NewJob]) -> Result<Vec<Insert>> {
        let mut rounds: Vec<Vec<&NewJob>> = Vec::new();
        for job in jobs {
            match rounds.iter_mut().find(|r| r.iter().all(|j| j.id != job.id)) {
                Some(round) => round.push(job),
                None => rounds.push(vec![job]),
            }
        }
        let mut outcomes = HashMap::new();
        for round in rounds {
            for (id, outcome) in self.insert_round(&round)? {
                outcomes.entry(id).or_insert_with(Vec::new).push(outcome);
            }
        }
        // Back in the callers' order; a repeated JobID's outcomes in round order.
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            let outcome = outcomes
                .get_mut(job.id.as_str())
                .filter(|o| !o.is_empty())
                .map(|o| o.remove(0))
                .ok_or_else(|| corrupt(format!("insert_job: no outcome for job '{}'", job.id)))?;
            results.push(outcome);
        }
        Ok(results)
    }

    /// One statement for jobs of distinct IDs: a share lock on their input
    /// files (a delete_file in flight either finishes first, and the file
    /// counts as missing, or then sees the job), each job unless one of its
    /// inputs is missing or its ID is taken, and the input lists.
    fn insert_round(&self, jobs: &[&NewJob]) -> Result<Vec<(String, Insert)>> {
        const INSERT: &str = "\
            WITH new AS ( \
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                                     $6::timestamptz[]) \
                    AS n(id, job_type, details, secrets, callback, created_at)), \
            given AS ( \
                SELECT * FROM unnest($7::text[], $8::integer[], $9::text[]) \
                    AS g(job_id, position, file_id)), \
            locked AS ( \
                SELECT id FROM files WHERE id = ANY($9) FOR SHARE), \
            missing AS ( \
                SELECT DISTINCT ON (g.job_id) g.job_id, g.file_id FROM given g \
                WHERE g.file_id NOT IN (SELECT id FROM locked) \
                ORDER BY g.job_id, g.position), \
            job AS ( \
                INSERT INTO jobs (id, job_type, state, details, secrets, callback, progress, \
                                  created_at, last_state_change) \
                SELECT n.id, n.job_type, 'Created', n.details, n.secrets, n.callback, 0, \
                       n.created_at, n.created_at \
                FROM new n WHERE n.id NOT IN (SELECT job_id FROM missing) \
                ORDER BY n.id \
                ON CONFLICT (id) DO NOTHING RETURNING id), \
            inputs AS ( \
                INSERT INTO job_files (job_id, role, position, file_id) \
                SELECT g.job_id, 'input', g.position, g.file_id \
                FROM given g JOIN job ON job.id = g.job_id) \
            SELECT n.id, n.id IN (SELECT id FROM job), m.file_id \
            FROM new n LEFT JOIN missing m ON m.job_id = n.id";
        let column = |f: fn(&NewJob) -> &str| jobs.iter().map(|j| f(j)).collect::<Vec<_>>();
        let ids = column(|j| j.id.as_str());
        let kinds = column(|j| j.kind.as_str());
        let details = column(|j| &j.details);
        let callbacks = column(|j| &j.callback);
        let secrets: Vec<Option<&str>> = jobs.iter().map(|j| j.secrets.as_deref()).collect();
        let created: Vec<SystemTime> = jobs.iter().map(|j| j.now).collect();
        let (mut input_jobs, mut positions, mut files) = (Vec::new(), Vec::new(), Vec::new());
        for job in jobs {
            for (position, file) in job.inputs.iter().enumerate() {
                input_jobs.push(job.id.as_str());
                positions.push(position as i32);
                files.push(file.as_str());
            }
        }
        let rows = self.prepared_write("insert_job", INSERT, |c, statement| {
            Ok(c.query(
                statement,
                &[
                    &ids,
                    &kinds,
                    &details,
                    &secrets,
                    &callbacks,
                    &created,
                    &input_jobs,
                    &positions,
                    &files,
                ],
            )?)
        })?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0)?;
                let inserted: bool = row.try_get(1)?;
                let missing: Option<String> = row.try_get(2)?;
                let outcome = match (inserted, missing) {
                    (true, _) => Insert::Inserted,
                    // A taken ID wins over a missing input. Asked apart, and
                    // only here: inside the statement, a check of every ID
                    // could be planned as a scan of all jobs.
                    (false, Some(file)) if !self.job_exists(&id)? => Insert::MissingInput(file),
                    // Taken before this statement, or by a CreateJob that
                    // committed while it ran.
                    _ => Insert::AlreadyExists,
                };
                Ok((id, outcome))
            })
            .collect()
    }

    fn job_exists(&self, id: &str) -> Result<bool> {
        self.read("insert_job", |c| {
            Ok(c.query_opt("SELECT 1 FROM jobs WHERE id = $1", &[&id])?
                .is_some())
        })
    }

    /// A change of state alone: `sql` moves job `$1` out of `from` at time
    /// `$2` and returns its id.
    fn transition(
        &self,
        verb: &str,
        id: &JobId,
        from: JobState,
        sql: &str,
        now: SystemTime,
    ) -> Result<Change> {
        self.tx(verb, |tx| {
            let done = guarded(tx, id, &[from], |tx| {
                Ok(tx.query_opt(sql, &[&id.as_str(), &now])?)
            })?;
            match done {
                Ok(_) => changed(tx, id),
                Err(refused) => Ok(refused),
            }
        })
    }

    /// Ends a job as `end` says: `sql` (with `params`) is the guarded UPDATE
    /// that moves it out of one of `accepts` and returns its callback. Its
    /// outputs become `end.outputs`, and the end's side effects follow.
    fn end_job(
        &self,
        verb: &str,
        end: &Finish,
        accepts: &[JobState],
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Change> {
        let id = end.id;
        self.tx(verb, |tx| {
            let done = guarded(tx, id, accepts, |tx| {
                let row = tx.query_opt(sql, params)?;
                Ok(row.map(|r| r.try_get::<_, String>(0)).transpose()?)
            })?;
            let callback = match done {
                Ok(callback) => callback,
                Err(refused) => return Ok(refused),
            };
            tx.execute(
                "DELETE FROM job_files WHERE job_id = $1 AND role = 'output'",
                &[&id.as_str()],
            )?;
            insert_job_files(tx, id, "output", end.outputs)?;
            ended(tx, end, &callback)?;
            changed(tx, id)
        })
    }
}

/// "PostgreSQL at 127.0.0.1:5432/test": hosts, ports and database only.
fn describe_config(config: &postgres::Config) -> String {
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let hosts: Vec<String> = if config.get_hosts().is_empty() {
        vec![format!("localhost:{}", port(0))]
    } else {
        config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| match host {
                Host::Tcp(name) => format!("{name}:{}", port(i)),
                Host::Unix(dir) => format!("{}:{}", dir.display(), port(i)),
            })
            .collect()
    };
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("PostgreSQL at {}/{db}", hosts.join(","))
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Error {
        Error::new(classify(&e), describe_error(&e))
    }
}

/// Unavailable for what a retry can fix: a lost or refused connection, a
/// server shutting down or starting up, too many clients, a deadlock or
/// serialization failure. Everything else is Internal.
fn classify(e: &postgres::Error) -> ErrorKind {
    if let Some(state) = e.code() {
        let code = state.code();
        let transient = code.starts_with("08")
            || code.starts_with("57P0")
            || matches!(code, "53300" | "40001" | "40P01");
        return if transient {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Internal
        };
    }
    let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Internal
    }
}

fn describe_error(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{db} (SQLSTATE {})", db.code().code()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

impl Columns for Row {
    fn text(&self, column: &str) -> Result<String> {
        Ok(self.try_get(column)?)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        Ok(self.try_get(column)?)
    }
    fn int(&self, column: &str) -> Result<i32> {
        Ok(self.try_get(column)?)
    }
    fn big(&self, column: &str) -> Result<i64> {
        Ok(self.try_get(column)?)
    }
    fn opt_big(&self, column: &str) -> Result<Option<i64>> {
        Ok(self.try_get(column)?)
    }
    fn time(&self, column: &str) -> Result<SystemTime> {
        Ok(self.try_get(column)?)
    }
}

/// A job from the rows of [`LOAD_JOB`], its inputs and outputs included.
fn job_with_files(rows: &[Row]) -> Result<Option<Job>> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut job = job_from_row(first)?;
    for row in rows {
        let role: Option<&str> = row.try_get("file_role")?;
        let file: Option<String> = row.try_get("file_id")?;
        match (role, file) {
            (Some("input"), Some(file)) => job.inputs.push(file),
            (Some(_), Some(file)) => job.outputs.push(file),
            _ => {}
        }
    }
    Ok(Some(job))
}

fn load_job(c: &mut impl GenericClient, id: &str) -> Result<Option<Job>> {
    // Typed parameters: parse, bind and execute go in one round trip,
    // without a separate prepare first.
    job_with_files(&c.query_typed(LOAD_JOB, &[(&id, Type::TEXT)])?)
}

/// The job as it is after a change made in this transaction.
fn changed(tx: &mut Transaction<'_>, id: &JobId) -> Result<Change> {
    job_changed(id, load_job(tx, id.as_str())?)
}

/// Runs a guarded UPDATE (`update` returns the row it changed, if any);
/// when it changed nothing, says why: no such job, or the state it is in.
/// A state that became acceptable between the two reads is tried again.
fn guarded<T>(
    tx: &mut Transaction<'_>,
    id: &JobId,
    accepts: &[JobState],
    mut update: impl FnMut(&mut Transaction<'_>) -> Result<Option<T>>,
) -> Result<std::result::Result<T, Change>> {
    for _ in 0..3 {
        if let Some(done) = update(tx)? {
            return Ok(Ok(done));
        }
        let row = tx.query_opt("SELECT state FROM jobs WHERE id = $1", &[&id.as_str()])?;
        let Some(row) = row else {
            return Ok(Err(Change::NotFound));
        };
        let state = parse_state(row.try_get(0)?)?;
        if !accepts.contains(&state) {
            return Ok(Err(Change::WrongState(state)));
        }
    }
    Err(Error::new(
        ErrorKind::Unavailable,
        format!("job '{id}' kept changing state under a guarded update; try again"),
    ))
}

fn state_names(states: &[JobState]) -> Vec<&'static str> {
    states.iter().map(|s| s.as_str()).collect()
}

fn queue_call(tx: &mut Transaction<'_>, call: &NewCall) -> Result<()> {
    let job = call.job.as_ref().map(JobId::as_str);
    tx.execute(
        "INSERT INTO outbox (job_id, url, method, params, created_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
        &[
            &job,
            &call.url,
            &call.method,
            &params_to_json(&call.params)?,
            &call.now,
        ],
    )?;
    Ok(())
}

fn supersede_progress(tx: &mut Transaction<'_>, id: &JobId) -> Result<()> {
    tx.execute(
        "UPDATE outbox SET state = 'superseded' \
         WHERE job_id = $1 AND state = 'pending' AND method = 'JobProgress'",
        &[&id.as_str()],
    )?;
    Ok(())
}

/// The side effects of a job ending as `end` says: pending progress calls
/// dropped and, with a callback, JobCompleted queued.
fn ended(tx: &mut Transaction<'_>, end: &Finish, callback: &str) -> Result<()> {
    supersede_progress(tx, end.id)?;
    match NewCall::job_completed(end, callback) {
        Some(call) => queue_call(tx, &call),
        None => Ok(()),
    }
}

/// Writes a job's file list of one role, keeping its order.
fn insert_job_files(
    tx: &mut Transaction<'_>,
    id: &JobId,
    role: &str,
    files: &[String],
) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO job_files (job_id, role, position, file_id) \
         SELECT $1, $2, (t.ord - 1)::integer, t.file_id \
         FROM unnest($3::text[]) WITH ORDINALITY AS t(file_id, ord)",
        &[&id.as_str(), &role, &files],
    )?;
    Ok(())
}

struct PgTarget<'a, 'b> {
    tx: &'a mut Transaction<'b>,
}

impl Target for PgTarget<'_, '_> {
    fn recorded_version(&mut self) -> Result<i32> {
        self.tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
                version    integer     PRIMARY KEY,\
                name       text        NOT NULL,\
                applied_at timestamptz NOT NULL)",
        )?;
        let row = self.tx.query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )?;
        Ok(row.try_get(0)?)
    }

    fn apply(&mut self, migration: &Migration) -> Result<()> {
        self.tx.batch_execute(migration.sql)?;
        self.tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, now())",
            &[&migration.version, &migration.name],
        )?;
        Ok(())
    }
}

impl Store for PgStore {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn ping(&self) -> Result<()> {
        self.read("ping", |c| {
            c.simple_query("SELECT 1")?;
            Ok(())
        })
    }

    fn insert_job(&self, job: &NewJob) -> Result<Insert> {
        self.inserts
            .submit(job.clone(), |jobs| self.insert_batch(jobs))
    }

    fn get_job(&self, id: &JobId) -> Result<Option<Job>> {
        self.prepared("get_job", LOAD_JOB, |c, statement| {
            job_with_files(&c.query(statement, &[&id.as_str()])?)
        })
    }

    fn get_job_summary(&self, id: &JobId) -> Result<Option<JobSummary>> {
        self.prepared("get_job_summary", &LOAD_SUMMARY, |c, statement| {
            let rows = c.query(statement, &[&id.as_str()])?;
            let Some(first) = rows.first() else {
                return Ok(None);
            };
            let mut summary = summary_from_row(id, first)?;
            for row in &rows {
                if let Some(file) = row.try_get("file_id")? {
                    summary.outputs.push(file);
                }
            }
            Ok(Some(summary))
        })
    }

    fn get_progress(&self, id: &JobId) -> Result<Option<(JobState, i32)>> {
        let sql = "SELECT state, progress FROM jobs WHERE id = $1";
        self.prepared("get_progress", sql, |c, statement| {
            let row = c.query_opt(statement, &[&id.as_str()])?;
            row.map(|r| Ok((parse_state(r.try_get(0)?)?, r.try_get(1)?)))
                .transpose()
        })
    }

    fn get_secrets(&self, id: &JobId) -> Result<Option<String>> {
        self.read("get_secrets", |c| {
            let row = c.query_opt("SELECT secrets FROM jobs WHERE id = $1", &[&id.as_str()])?;
            Ok(row
                .map(|r| r.try_get::<_, Option<String>>(0))
                .transpose()?
                .flatten())
        })
    }

    fn start_job(&self, id: &JobId, now: SystemTime) -> Result<Change> {
        self.transition(
            "start_job",
            id,
            JobState::Created,
            "UPDATE jobs SET state = 'Started', start_seq = nextval('job_start_seq'), \
                             last_state_change = $2 \
             WHERE id = $1 AND state = 'Created' RETURNING id",
            now,
        )
    }

    fn claim_job(&self, id: &JobId, now: SystemTime) -> Result<Change> {
        self.transition(
            "claim_job",
            id,
            JobState::Started,
            "UPDATE jobs SET state = 'InProgress', progress = 0, last_state_change = $2 \
             WHERE id = $1 AND state = 'Started' RETURNING id",
            now,
        )
    }

    fn record_progress(&self, update: &ProgressUpdate) -> Result<bool> {
        let id = update.id;
        self.tx("record_progress", |tx| {
            let row = tx.query_opt(
                "UPDATE jobs SET progress = $2 WHERE id = $1 AND state = 'InProgress' \
                 RETURNING callback, progress_sent, progress_sent_at",
                &[&id.as_str(), &update.progress],
            )?;
            let Some(row) = row else { return Ok(false) };
            let callback: String = row.try_get("callback")?;
            if update.due(&callback, row.try_get(1)?, row.try_get(2)?) {
                supersede_progress(tx, id)?;
                queue_call(tx, &NewCall::job_progress(update, callback))?;
                tx.execute(
                    "UPDATE jobs SET progress_sent = $2, progress_sent_at = $3 WHERE id = $1",
                    &[&id.as_str(), &update.progress, &update.now],
                )?;
            }
            Ok(true)
        })
    }

    fn set_checkpoint(&self, id: &JobId, checkpoint: &str) -> Result<bool> {
        self.tx("set_checkpoint", |tx| {
            let n = tx.execute(
                "UPDATE jobs SET checkpoint = $2 WHERE id = $1 AND state = 'InProgress'",
                &[&id.as_str(), &checkpoint],
            )?;
            Ok(n == 1)
        })
    }

    fn finish_job(&self, finish: &Finish) -> Result<Change> {
        finish.check().map_err(|e| self.context("finish_job", e))?;
        self.end_job(
            "finish_job",
            finish,
            &[JobState::InProgress],
            "UPDATE jobs SET state = $2, result_code = $3, error_message = $4, \
                             result = $5, secrets = NULL, last_state_change = $6 \
             WHERE id = $1 AND state = 'InProgress' RETURNING callback",
            &[
                &finish.id.as_str(),
                &finish.state.as_str(),
                &finish.result_code,
                &finish.error_message,
                &finish.result,
                &finish.now,
            ],
        )
    }

    fn cancel_job(&self, id: &JobId, now: SystemTime) -> Result<Change> {
        let end = Finish::cancelled(id, now);
        let accepts = [JobState::Started, JobState::InProgress];
        self.end_job(
            "cancel_job",
            &end,
            &accepts,
            "UPDATE jobs SET state = 'Failed', result_code = $2, error_message = $3, \
                             secrets = NULL, last_state_change = $4 \
             WHERE id = $1 AND state = ANY($5) RETURNING callback",
            &[
                &id.as_str(),
                &end.result_code,
                &end.error_message,
                &now,
                &state_names(&accepts),
            ],
        )
    }

    fn requeue_job(&self, id: &JobId, now: SystemTime) -> Result<Change> {
        self.transition(
            "requeue_job",
            id,
            JobState::InProgress,
            "UPDATE jobs SET state = 'Started', progress = 0, last_state_change = $2 \
             WHERE id = $1 AND state = 'InProgress' RETURNING id",
            now,
        )
    }

    fn delete_job(&self, id: &JobId) -> Result<Option<Deleted>> {
        self.tx("delete_job", |tx| {
            // First, so the row lock orders this after any change in flight.
            let gone = tx.execute("DELETE FROM jobs WHERE id = $1", &[&id.as_str()])?;
            if gone == 0 {
                return Ok(None);
            }
            tx.execute("DELETE FROM outbox WHERE job_id = $1", &[&id.as_str()])?;
            tx.execute("DELETE FROM job_files WHERE job_id = $1", &[&id.as_str()])?;
            let rows = tx.query(
                "DELETE FROM files WHERE owner_job = $1 RETURNING id",
                &[&id.as_str()],
            )?;
            let mut output_files = rows
                .iter()
                .map(|r| r.try_get::<_, String>(0))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            output_files.sort();
            Ok(Some(Deleted { output_files }))
        })
    }

    fn recover_jobs(&self, max_attempts: i32, now: SystemTime) -> Result<Recovery> {
        self.tx("recover_jobs", |tx| {
            let rows = tx.query(
                "SELECT id, attempts, callback FROM jobs WHERE state = 'InProgress' \
                 ORDER BY start_seq, id FOR UPDATE",
                &[],
            )?;
            let mut recovery = Recovery::default();
            for row in rows {
                let raw: String = row.try_get(0)?;
                let id = parse_id(&raw)?;
                let callback: String = row.try_get(2)?;
                match Recover::decide(row.try_get(1)?, max_attempts) {
                    Recover::Fail { attempts, message } => {
                        let end = Finish::interrupted(&id, &message, now);
                        tx.execute(
                            "UPDATE jobs SET state = 'Failed', attempts = $2, result_code = $3, \
                                             error_message = $4, secrets = NULL, \
                                             last_state_change = $5 \
                             WHERE id = $1 AND state = 'InProgress'",
                            &[&raw, &attempts, &end.result_code, &message, &now],
                        )?;
                        ended(tx, &end, &callback)?;
                        recovery.failed.push(id);
                    }
                    Recover::Requeue { attempts } => {
                        tx.execute(
                            "UPDATE jobs SET state = 'Started', attempts = $2, progress = 0, \
                                             last_state_change = $3 \
                             WHERE id = $1 AND state = 'InProgress'",
                            &[&raw, &attempts, &now],
                        )?;
                        recovery.requeued.push(id);
                    }
                }
            }
            Ok(recovery)
        })
    }

    fn started_jobs(&self) -> Result<Vec<JobId>> {
        self.read("started_jobs", |c| {
            let rows = c.query(
                "SELECT id FROM jobs WHERE state = 'Started' ORDER BY start_seq, id",
                &[],
            )?;
            rows.iter().map(|r| parse_id(r.try_get(0)?)).collect()
        })
    }

    fn insert_file(&self, file: &FileRecord) -> Result<()> {
        self.tx("insert_file", |tx| {
            tx.execute(
                "INSERT INTO files (id, name, size, sha256, owner_job, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &file.id,
                    &file.name,
                    &file.size,
                    &file.sha256,
                    &file.owner_job.as_ref().map(JobId::as_str),
                    &file.created_at,
                ],
            )?;
            Ok(())
        })
    }

    fn get_file(&self, id: &str) -> Result<Option<FileRecord>> {
        let sql = "SELECT id, name, size, sha256, owner_job, created_at FROM files WHERE id = $1";
        self.prepared("get_file", sql, |c, statement| {
            let row = c.query_opt(statement, &[&id])?;
            row.as_ref().map(file_from_row).transpose()
        })
    }

    fn delete_file(&self, id: &str) -> Result<FileDelete> {
        self.tx("delete_file", |tx| {
            // Lock the row first: a CreateJob naming it waits (FOR SHARE) or is seen below.
            if tx
                .query_opt("SELECT 1 FROM files WHERE id = $1 FOR UPDATE", &[&id])?
                .is_none()
            {
                return Ok(FileDelete::NotFound);
            }
            let user = tx.query_opt(
                "SELECT f.job_id FROM job_files f JOIN jobs j ON j.id = f.job_id \
                 WHERE f.file_id = $1 AND f.role = 'input' \
                   AND j.state IN ('Created', 'Started', 'InProgress') \
                 ORDER BY f.job_id LIMIT 1",
                &[&id],
            )?;
            if let Some(row) = user {
                let job: String = row.try_get(0)?;
                return Ok(FileDelete::InUse(parse_id(&job)?));
            }
            tx.execute("DELETE FROM files WHERE id = $1", &[&id])?;
            Ok(FileDelete::Deleted)
        })
    }

    fn enqueue_call(&self, call: &NewCall) -> Result<()> {
        self.tx("enqueue_call", |tx| queue_call(tx, call))
    }

    fn due_calls(&self, now: SystemTime, limit: usize) -> Result<Vec<Call>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read("due_calls", |c| {
            let sql = format!(
                "SELECT {CALL_COLUMNS} FROM outbox o \
                 WHERE state = 'pending' AND next_attempt_at <= $1 \
                   AND NOT EXISTS (SELECT 1 FROM outbox older \
                                   WHERE older.job_id = o.job_id AND older.state = 'pending' \
                                     AND older.id < o.id) \
                 ORDER BY id LIMIT $2"
            );
            c.query(sql.as_str(), &[&now, &limit])?
                .iter()
                .map(call_from_row)
                .collect()
        })
    }

    fn next_call_due(&self) -> Result<Option<SystemTime>> {
        self.read("next_call_due", |c| {
            // Only heads of their job's line: a later call of a job waits for
            // the older one however early it is due.
            let row = c.query_one(
                "SELECT MIN(next_attempt_at) FROM outbox o \
                 WHERE state = 'pending' \
                   AND NOT EXISTS (SELECT 1 FROM outbox older \
                                   WHERE older.job_id = o.job_id AND older.state = 'pending' \
                                     AND older.id < o.id)",
                &[],
            )?;
            Ok(row.try_get(0)?)
        })
    }

    fn call_delivered(&self, id: i64, now: SystemTime) -> Result<()> {
        self.tx("call_delivered", |tx| {
            tx.execute(
                "UPDATE outbox SET state = 'delivered', delivered_at = $2 \
                 WHERE id = $1 AND state IN ('pending', 'superseded')",
                &[&id, &now],
            )?;
            Ok(())
        })
    }

    fn call_failed(&self, id: i64, error: &str, retry_at: SystemTime) -> Result<()> {
        self.tx("call_failed", |tx| {
            tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $2, \
                                   next_attempt_at = $3 \
                 WHERE id = $1 AND state = 'pending'",
                &[&id, &error, &retry_at],
            )?;
            Ok(())
        })
    }

    fn call_undeliverable(&self, id: i64, error: &str, now: SystemTime) -> Result<()> {
        self.tx("call_undeliverable", |tx| {
            tx.execute(
                "UPDATE outbox SET state = 'undeliverable', attempts = attempts + 1, \
                                   last_error = $2, delivered_at = $3 \
                 WHERE id = $1 AND state = 'pending'",
                &[&id, &error, &now],
            )?;
            Ok(())
        })
    }

    fn engine_id(&self, generated: &str) -> Result<String> {
        self.tx("engine_id", |tx| {
            tx.execute(
                "INSERT INTO engine (key, value) VALUES ('engine_id', $1) \
                 ON CONFLICT (key) DO NOTHING",
                &[&generated],
            )?;
            let row = tx.query_one("SELECT value FROM engine WHERE key = 'engine_id'", &[])?;
            Ok(row.try_get(0)?)
        })
    }
}
