//! The benchmark suite's baselines (bench/run starts them; see BENCHMARKS.md):
//! the ceilings of our own stack, measured beside the engine in the same run.
//!
//! ```text
//! bench_baseline hello     LISTEN            fixed XML-RPC reply (the HTTP layer's ceiling)
//! bench_baseline pgget     LISTEN URL N      + one pooled PostgreSQL SELECT by primary key
//! bench_baseline sqliteget LISTEN PATH N     + one SQLite SELECT by primary key
//! bench_baseline pginsert  LISTEN URL        one pooled single-row PostgreSQL INSERT per call
//! bench_baseline sqliteinsert LISTEN PATH    one single-row SQLite INSERT per call (one writer)
//! bench_baseline static    LISTEN DIR        GET /NAME serves DIR/NAME; PUT|POST /NAME stores it
//! ```
//!
//! The servers are rouille with a fixed pool of 16 handler threads (as the
//! engine), built in this package, so they run over the same patched
//! tiny_http as the engine: the ceiling of *our* HTTP layer. Each prints
//! `listening on http://ADDR` on stderr once it accepts connections.
//!
//! The INSERT baselines answer a CreateJob-shaped reply. The SELECT baselines read the engine's own `jobs` table (the job IDs the
//! suite seeded, `bench-0000` up to N-1), cycling through the IDs, and answer a
//! GetProgress-shaped struct built from the row.

use rouille::{Request, Response};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Handler threads, as the engine's `HTTP_THREADS`.
const HTTP_THREADS: usize = 16;
/// PostgreSQL connections, as many as handler threads.
const PG_POOL: u32 = 16;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str { args.get(i).map(String::as_str).unwrap_or_else(|| usage()) };
    match arg(0) {
        "hello" => serve(arg(1), 1, |_| Ok(progress_reply("Created", 0))),
        "hellojob" => serve(arg(1), 1000, |n| Ok(job_reply(n))),
        "pgget" => pgget(arg(1), arg(2), arg(3).parse().unwrap_or_else(|_| usage())),
        "sqliteget" => sqliteget(arg(1), arg(2), arg(3).parse().unwrap_or_else(|_| usage())),
        "static" => static_files(arg(1), arg(2)),
        "pginsert" => pginsert(arg(1), arg(2)),
        "sqliteinsert" => sqliteinsert(arg(1), arg(2)),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: bench_baseline hello LISTEN | hellojob LISTEN | pgget LISTEN URL N | sqliteget LISTEN PATH N | static LISTEN DIR | pginsert LISTEN URL | sqliteinsert LISTEN PATH");
    std::process::exit(2)
}

/// Runs an XML-RPC server at `listen` whose handler reads the body, then
/// answers what `reply` makes for the next of `ids` row numbers (or a 500
/// with its error).
fn serve<F>(listen: &str, ids: usize, reply: F) -> !
where
    F: Fn(usize) -> Result<String, String> + Send + Sync + 'static,
{
    let next = AtomicUsize::new(0);
    run(listen, move |request| {
        if request.method() != "POST" || !matches!(request.url().as_str(), "/" | "/RPC2") {
            return Response::empty_404();
        }
        let mut body = Vec::new();
        if let Some(mut data) = request.data() {
            if data.read_to_end(&mut body).is_err() {
                return Response::text("body not read").with_status_code(400);
            }
        }
        let n = next.fetch_add(1, Ordering::Relaxed) % ids.max(1);
        match reply(n) {
            Ok(xml) => Response::from_data("text/xml", xml),
            Err(e) => Response::text(e).with_status_code(500),
        }
    })
}

fn run<F>(listen: &str, handler: F) -> !
where
    F: Fn(&Request) -> Response + Send + Sync + 'static,
{
    let server = rouille::Server::new(listen, handler)
        .unwrap_or_else(|e| {
            eprintln!("cannot listen on {listen}: {e}");
            std::process::exit(1)
        })
        .pool_size(HTTP_THREADS);
    eprintln!("listening on http://{}", server.server_addr());
    server.run();
    std::process::exit(0)
}

fn job_id(n: usize) -> String {
    format!("bench-{n:04}")
}

/// The engine's GetProgress reply, member for member.
fn progress_reply(state: &str, progress: i32) -> String {
    let progress = if state == "Created" { 0 } else { progress };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<methodResponse><params><param><value><struct>\
         <member><name>ResultCode</name><value><int>0</int></value></member>\
         <member><name>ErrorMessage</name><value><string></string></value></member>\
         <member><name>Progress</name><value><int>{progress}</int></value></member>\
         </struct></value></param></params></methodResponse>\n"
    )
}

/// A reply of GetJob's shape and size (a Created job, no outputs), with no
/// work behind it: what the wire and the client cost for GetJob alone.
fn job_reply(n: usize) -> String {
    let id = job_id(n);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<methodResponse><params><param><value><struct>\
         <member><name>ResultCode</name><value><int>0</int></value></member>\
         <member><name>ErrorMessage</name><value><string></string></value></member>\
         <member><name>Job</name><value><struct>\
         <member><name>JobID</name><value><string>{id}</string></value></member>\
         <member><name>JobType</name><value><string>EncoderJob</string></value></member>\
         <member><name>State</name><value><string>Created</string></value></member>\
         <member><name>LastStateChange</name><value><dateTime.iso8601>20261128T01:02:03</dateTime.iso8601></value></member>\
         <member><name>ProgressAmount</name><value><int>0</int></value></member>\
         <member><name>ErrorMessage</name><value><string></string></value></member>\
         <member><name>ResultCode</name><value><int>0</int></value></member>\
         <member><name>Outputs</name><value><array><data></data></array></value></member>\
         <member><name>Result</name><value><string></string></value></member>\
         </struct></value></member>\
         </struct></value></param></params></methodResponse>\n"
    )
}

fn pgget(listen: &str, url: &str, ids: usize) -> ! {
    let pool = pg_pool(url);
    serve(listen, ids, move |n| {
        let mut conn = pool.get().map_err(|e| e.to_string())?;
        let row = conn
            .query_one(
                "SELECT state, progress FROM jobs WHERE id = $1",
                &[&job_id(n)],
            )
            .map_err(|e| e.to_string())?;
        Ok(progress_reply(row.get(0), row.get(1)))
    })
}

type PgPool = r2d2::Pool<r2d2_postgres::PostgresConnectionManager<postgres::NoTls>>;

fn pg_pool(url: &str) -> PgPool {
    let config: postgres::Config = url.parse().unwrap_or_else(|e| {
        eprintln!("bad database URL: {e}");
        std::process::exit(2)
    });
    let manager = r2d2_postgres::PostgresConnectionManager::new(config, postgres::NoTls);
    // As the engine's pool: one connection kept idle, more on demand, and
    // r2d2's defaults otherwise (test on check-out).
    r2d2::Pool::builder()
        .max_size(PG_POOL)
        .min_idle(Some(1))
        .build(manager)
        .unwrap_or_else(|e| {
            eprintln!("cannot connect to PostgreSQL: {e}");
            std::process::exit(1)
        })
}

thread_local! {
    static SQLITE: std::cell::RefCell<Option<rusqlite::Connection>> = const { std::cell::RefCell::new(None) };
}

fn sqliteget(listen: &str, path: &str, ids: usize) -> ! {
    let path = path.to_owned();
    serve(listen, ids, move |n| {
        SQLITE.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                let conn = rusqlite::Connection::open(&path).map_err(|e| e.to_string())?;
                conn.pragma_update(None, "query_only", "ON")
                    .map_err(|e| e.to_string())?;
                conn.busy_timeout(Duration::from_secs(5))
                    .map_err(|e| e.to_string())?;
                *slot = Some(conn);
            }
            let conn = slot.as_ref().ok_or("no connection")?;
            let mut stmt = conn
                .prepare_cached("SELECT state, progress FROM jobs WHERE id = ?1")
                .map_err(|e| e.to_string())?;
            let (state, progress): (String, i32) = stmt
                .query_row([job_id(n)], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| e.to_string())?;
            Ok(progress_reply(&state, progress))
        })
    })
}

/// A plain static server: no hashing, no fsync, no database.
fn static_files(listen: &str, dir: &str) -> ! {
    let dir = std::path::PathBuf::from(dir);
    run(listen, move |request| {
        let name = request.url().trim_start_matches('/').to_owned();
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Response::empty_404();
        }
        let path = dir.join(&name);
        match request.method() {
            "GET" => match std::fs::File::open(&path) {
                Ok(file) => Response::from_file("application/octet-stream", file),
                Err(_) => Response::empty_404(),
            },
            "PUT" | "POST" => {
                let Some(mut body) = request.data() else {
                    return Response::text("no body").with_status_code(400);
                };
                let stored = std::fs::File::create(&path).and_then(|mut out| {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut total = 0u64;
                    loop {
                        let n = body.read(&mut buf)?;
                        if n == 0 {
                            return Ok(total);
                        }
                        out.write_all(&buf[..n])?;
                        total += n as u64;
                    }
                });
                match stored {
                    Ok(n) => Response::text(format!("{n}\n")).with_status_code(201),
                    Err(e) => Response::text(e.to_string()).with_status_code(500),
                }
            }
            _ => Response::empty_404(),
        }
    })
}

/// A job-like row, as CreateJob's INSERT writes it.
const INSERT_COLUMNS: &str =
    "(id, job_type, state, details, callback, progress, created_at, last_state_change)";
const DETAILS: &str = "{\"AudioFile\":\"9b1d4e6a-2c3f-4a5b-8d7e-1f0a2b3c4d5e\",\"Format\":\"mp4\"}";

/// The engine's CreateJob reply, member for member.
fn created_reply(id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<methodResponse><params><param><value><struct>\
         <member><name>ResultCode</name><value><int>0</int></value></member>\
         <member><name>ErrorMessage</name><value><string></string></value></member>\
         <member><name>JobID</name><value><string>{id}</string></value></member>\
         </struct></value></param></params></methodResponse>\n"
    )
}

/// Each request: one pooled single-row INSERT (autocommit), as pgbench's script.
fn pginsert(listen: &str, url: &str) -> ! {
    let pool = pg_pool(url);
    if let Err(e) = pool.get().map_err(|e| e.to_string()).and_then(|mut c| {
        c.batch_execute(
            "CREATE TABLE IF NOT EXISTS bench_http_insert (id text PRIMARY KEY, job_type text NOT NULL, \
             state text NOT NULL, details text NOT NULL, callback text NOT NULL, progress int NOT NULL, \
             created_at timestamptz NOT NULL, last_state_change timestamptz NOT NULL)",
        )
        .map_err(|e| e.to_string())
    }) {
        eprintln!("cannot create the table: {e}");
        std::process::exit(1)
    }
    serve(listen, 1, move |_| {
        let id = uuid::Uuid::new_v4().to_string();
        let mut conn = pool.get().map_err(|e| e.to_string())?;
        conn.execute(
            &format!("INSERT INTO bench_http_insert {INSERT_COLUMNS} VALUES ($1, 'EncoderJob', 'Created', $2, '', 0, now(), now())"),
            &[&id, &DETAILS],
        )
        .map_err(|e| e.to_string())?;
        Ok(created_reply(&id))
    })
}

/// Each request: one single-row INSERT (autocommit) through one writer
/// connection, as the engine's SQLite store writes (WAL, synchronous=NORMAL).
fn sqliteinsert(listen: &str, path: &str) -> ! {
    let open = || -> rusqlite::Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            eprintln!("sqlite: journal_mode is {mode}, not WAL");
            std::process::exit(1)
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS bench_insert (id TEXT PRIMARY KEY, job_type TEXT NOT NULL, \
             state TEXT NOT NULL, details TEXT NOT NULL, callback TEXT NOT NULL, progress INTEGER NOT NULL, \
             created_at TEXT NOT NULL, last_state_change TEXT NOT NULL)",
        )?;
        Ok(conn)
    };
    let writer = Mutex::new(open().unwrap_or_else(|e| {
        eprintln!("sqlite: {e}");
        std::process::exit(1)
    }));
    serve(listen, 1, move |_| {
        let id = uuid::Uuid::new_v4().to_string();
        let now = "2026-01-01T00:00:00.000000Z";
        let conn = writer.lock().unwrap_or_else(|e| e.into_inner());
        conn.prepare_cached(&format!(
            "INSERT INTO bench_insert {INSERT_COLUMNS} VALUES (?1, 'EncoderJob', 'Created', ?2, '', 0, ?3, ?3)"
        ))
        .and_then(|mut s| s.execute(rusqlite::params![id, DETAILS, now]))
        .map_err(|e| e.to_string())?;
        Ok(created_reply(&id))
    })
}
