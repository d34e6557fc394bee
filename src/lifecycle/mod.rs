//! Wiring: open the store, recover, start workers, the courier and HTTP;
//! then follow the controls from signals until a graceful stop, which
//! undoes it all in reverse, each step within the shutdown grace.
//!
//! May use: everything below it.

pub mod signals;

use crate::api::http::Service;
use crate::api::Api;
use crate::config::{Config, Database, Flags, LiveConfig, RESTART_KEYS};
use crate::error::ExitError;
use crate::files::Files;
use crate::notify::Courier;
use crate::protocol::xmlrpc::Limits;
use crate::store::{self, CallParam, NewCall, Store};
use crate::worker::{self, Pool};
use signals::Control;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Threads answering HTTP requests (connections each have their own reader).
const HTTP_THREADS: usize = 16;

/// Opens the store the configuration names, applying migrations.
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, ExitError> {
    let opened: store::Result<Arc<dyn Store>> = match &config.database {
        Database::Postgres(url) => {
            let pool = (HTTP_THREADS + config.workers + 4) as u32;
            store::postgres::PgStore::open(url, pool).map(|s| Arc::new(s) as Arc<dyn Store>)
        }
        Database::Sqlite(path) => {
            store::sqlite::SqliteStore::open(path).map(|s| Arc::new(s) as Arc<dyn Store>)
        }
    };
    opened.map_err(|e| {
        ExitError::Store(format!(
            "cannot open the store {}: {e}",
            config.database_for_log()
        ))
    })
}

/// `jobengine serve`: runs until SIGTERM/SIGINT.
pub fn serve(flags: Flags, config: Config) -> Result<(), ExitError> {
    let controls = signals::listen()
        .map_err(|e| ExitError::Fatal(format!("cannot install signal handlers: {e}")))?;
    let engine = Running::start(config)?;
    engine.follow(&flags, &controls);
    // A second signal during the graceful stop exits at once.
    std::thread::spawn(move || {
        if controls.recv() == Ok(Control::ExitNow) {
            log::warn!("second signal: exiting now; running jobs are recovered on the next start");
            std::process::exit(1);
        }
    });
    engine.stop();
    Ok(())
}

/// A started engine: every part that `stop` takes down again.
struct Running {
    live: Arc<LiveConfig>,
    store: Arc<dyn Store>,
    engine_id: String,
    pool: Pool,
    courier: Courier,
    accepting: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
    http_thread: std::thread::JoinHandle<()>,
    stop_http: std::sync::mpsc::Sender<()>,
}

impl Running {
    /// Store, recovery, workers, HTTP, courier; then EngineStarted and ready.
    fn start(config: Config) -> Result<Running, ExitError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            ExitError::Fatal(format!(
                "cannot create the data dir {}: {e}",
                config.data_dir.display()
            ))
        })?;
        let store = open_store(&config)?;
        let files = Files::open(&config.data_dir).map_err(|e| {
            ExitError::Fatal(format!("cannot prepare {}: {e}", config.data_dir.display()))
        })?;
        let engine_id = match &config.engine_id {
            Some(id) => id.clone(),
            None => store
                .engine_id(&uuid::Uuid::new_v4().to_string())
                .map_err(|e| ExitError::Store(format!("cannot read the engine ID: {e}")))?,
        };
        recover(&*store, config.max_attempts)?;

        let live = Arc::new(LiveConfig::new(config.clone()));
        let agent = crate::net::agent(&config);
        let pool = Pool::start(
            config.workers,
            worker::Deps {
                store: store.clone(),
                files: files.clone(),
                config: live.clone(),
                agent: agent.clone(),
                kinds: crate::kinds::for_job,
            },
        );
        let queued = store
            .started_jobs()
            .map_err(|e| ExitError::Store(format!("cannot read the queue: {e}")))?;
        for id in &queued {
            pool.handle().enqueue(id.clone());
        }

        let accepting = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(AtomicBool::new(false));
        let service = Service {
            api: Api::new(
                store.clone(),
                files.clone(),
                pool.handle(),
                live.clone(),
                accepting.clone(),
            ),
            store: store.clone(),
            files,
            ready: ready.clone(),
            limits: Limits::default(),
        };
        let server = rouille::Server::new(config.listen, move |request| service.handle(request))
            .map_err(|e| ExitError::Fatal(format!("cannot listen on {}: {e}", config.listen)))?
            .pool_size(HTTP_THREADS);
        let bound = server.server_addr();
        let (http_thread, stop_http) = server.stoppable();
        let courier = Courier::start(store.clone(), agent, live.clone());

        let engine = Running {
            live,
            store,
            engine_id,
            pool,
            courier,
            accepting,
            ready,
            http_thread,
            stop_http,
        };
        let engine_url = if config.listen.port() == 0 {
            config
                .engine_url
                .replace(&config.listen.to_string(), &bound.to_string())
        } else {
            config.engine_url.clone()
        };
        engine.notice("EngineStarted", Some(engine_url));
        engine.accepting.store(true, Ordering::SeqCst);
        engine.ready.store(true, Ordering::SeqCst);
        log::info!(
            "jobengine {} listening on http://{bound} (XML-RPC at /RPC2), engine {}, store {}, data in {}, {} workers, encoder {}; {} job(s) queued",
            env!("CARGO_PKG_VERSION"),
            engine.engine_id,
            engine.store.describe(),
            config.data_dir.display(),
            config.workers,
            config.encoder.program(),
            queued.len()
        );
        Ok(engine)
    }

    /// Follows the controls from signals, sending heartbeats meanwhile,
    /// until a shutdown is asked for.
    fn follow(&self, flags: &Flags, controls: &crossbeam_channel::Receiver<Control>) {
        let beat_at = |cfg: &Config| cfg.heartbeat_interval.map(|every| Instant::now() + every);
        let mut next_beat = beat_at(&self.live.get());
        loop {
            let timeout = next_beat.map_or(Duration::from_secs(3600), |at| {
                at.saturating_duration_since(Instant::now())
            });
            match controls.recv_timeout(timeout) {
                Ok(Control::Shutdown | Control::ExitNow)
                | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                Ok(Control::Reload) => {
                    reload(flags, &self.live);
                    sweep(&*self.store, &self.pool);
                    // A heartbeat switched on or off takes effect now.
                    if next_beat.is_none() || self.live.get().heartbeat_interval.is_none() {
                        next_beat = beat_at(&self.live.get());
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    self.notice("EngineAlive", None);
                    next_beat = beat_at(&self.live.get());
                }
            }
        }
    }

    /// Graceful stop, within the grace: refuse new work, say so to the
    /// website, put running jobs back, deliver what can be delivered.
    fn stop(self) {
        let cfg = self.live.get();
        let deadline = Instant::now() + cfg.shutdown_grace;
        log::info!(
            "stopping: no new jobs; running ones go back to Started (grace {:?})",
            cfg.shutdown_grace
        );
        self.accepting.store(false, Ordering::SeqCst);
        self.ready.store(false, Ordering::SeqCst);
        self.notice("EngineStopping", None);
        // Keep a little of the grace for the website notice and the HTTP stop.
        let pool_grace = cfg.shutdown_grace.mul_f32(0.8);
        if !self.pool.shutdown(pool_grace) {
            log::warn!(
                "some jobs did not stop within {pool_grace:?}; they are recovered on the next start"
            );
        }
        self.courier.drain(deadline);
        let _ = self.stop_http.send(());
        join_within(
            self.http_thread,
            deadline.saturating_duration_since(Instant::now()),
        );
        log::info!("stopped");
    }

    /// Queues an engine notice to `website_url`, if one is set:
    /// `method(EngineID[, extra])`.
    fn notice(&self, method: &str, extra: Option<String>) {
        let Some(url) = self.live.get().website_url.clone() else {
            return;
        };
        let params = std::iter::once(self.engine_id.clone())
            .chain(extra)
            .map(CallParam::Str)
            .collect();
        let call = NewCall {
            job: None,
            url,
            method: method.to_owned(),
            params,
            now: SystemTime::now(),
        };
        match self.store.enqueue_call(&call) {
            Ok(()) => self.courier.wake(),
            Err(e) => log::error!("{method} not queued: {e}"),
        }
    }
}

/// Start-up recovery after any way of dying (contract §7).
fn recover(store: &dyn Store, max_attempts: i32) -> Result<(), ExitError> {
    let recovery = store
        .recover_jobs(max_attempts, SystemTime::now())
        .map_err(|e| ExitError::Store(format!("recovery failed: {e}")))?;
    for id in &recovery.requeued {
        log::warn!(
            "job {id}: was InProgress when the engine died; queued again (one attempt used)"
        );
    }
    for id in &recovery.failed {
        log::error!("job {id}: was InProgress when the engine died, past max_attempts; Failed (7)");
    }
    Ok(())
}

/// SIGHUP: reads the configuration again and applies what can be applied.
fn reload(flags: &Flags, live: &LiveConfig) {
    match Config::load(flags, std::env::vars()) {
        Err(e) => log::error!("reload refused, keeping the running configuration: {e}"),
        Ok(newer) => {
            let current = live.get();
            let changes = current.changes_to(&newer);
            if changes.is_empty() {
                log::info!("reload: configuration unchanged");
                return;
            }
            for change in &changes {
                let key = change.split(':').next().unwrap_or("");
                if RESTART_KEYS.contains(&key) {
                    log::warn!("reload: {change} (needs a restart to take effect)");
                } else {
                    log::info!("reload: {change}");
                }
            }
            live.set(newer);
        }
    }
}

/// SIGHUP: queues again any Started job no worker holds (the queue is
/// idempotent: a claim is guarded, so a duplicate entry is skipped).
fn sweep(store: &dyn Store, pool: &Pool) {
    match store.started_jobs() {
        Ok(ids) => {
            let unique: HashSet<_> = ids.iter().collect();
            for id in &ids {
                pool.handle().enqueue(id.clone());
            }
            log::info!("sweep: {} Started job(s) queued again", unique.len());
        }
        Err(e) => log::error!("sweep failed: {e}"),
    }
}

/// Joins `handle` if it ends within `within`; otherwise leaves it to die
/// with the process.
fn join_within(handle: std::thread::JoinHandle<()>, within: Duration) {
    let (done, ended) = crossbeam_channel::bounded::<()>(1);
    std::thread::spawn(move || {
        let _ = handle.join();
        let _ = done.send(());
    });
    let _ = ended.recv_timeout(within);
}

/// `jobengine migrate`: applies the schema and exits.
pub fn migrate(config: &Config) -> Result<(), ExitError> {
    if let Database::Sqlite(path) = &config.database {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| ExitError::Fatal(format!("cannot create {}: {e}", dir.display())))?;
        }
    }
    let store = open_store(config)?;
    log::info!(
        "schema of {} is up to date (version {})",
        store.describe(),
        store::migrate::LATEST
    );
    Ok(())
}
