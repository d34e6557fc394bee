//! The worker pool in-process, with stand-in kinds: a panicking job fails
//! with code 8 and its worker lives on; a shutdown puts a running job back.

use crate::engine_test;
use crate::support::engine::{Backend, PgDatabase};
use jobengine::config::{Config, LiveConfig};
use jobengine::files::Files;
use jobengine::job::{JobId, JobKind, JobResult, JobState, NewJob, Outcome};
use jobengine::kinds::{Kind, RunCtx, StopReason};
use jobengine::store::{Change, Store};
use jobengine::worker::{Deps, Pool};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

struct Panicky;
impl Kind for Panicky {
    fn run(&self, ctx: &RunCtx) -> Outcome {
        if ctx.job.id.as_str().starts_with("panic") {
            panic!("stand-in kind panicked on purpose");
        }
        Outcome::Success {
            result: "done".into(),
            outputs: vec![],
        }
    }
}
static PANICKY: Panicky = Panicky;

/// Runs until stopped, then reports why.
struct UntilStopped;
impl Kind for UntilStopped {
    fn run(&self, ctx: &RunCtx) -> Outcome {
        (ctx.progress)(10);
        loop {
            match ctx.stop.wait(Duration::from_secs(60)) {
                Some(StopReason::Shutdown) => return Outcome::Interrupted,
                Some(StopReason::Cancelled) => {
                    return Outcome::failed(JobResult::Cancelled, "cancelled")
                }
                None => {}
            }
        }
    }
}
static UNTIL_STOPPED: UntilStopped = UntilStopped;

struct Fixture {
    store: Arc<dyn Store>,
    deps: Deps,
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

fn fixture(backend: Backend, kinds: fn(JobKind) -> &'static dyn Kind) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (store, pg): (Arc<dyn Store>, _) = match backend {
        Backend::Sqlite => (
            Arc::new(
                jobengine::store::sqlite::SqliteStore::open(&dir.path().join("s.db")).unwrap(),
            ),
            None,
        ),
        Backend::Postgres => {
            let db = PgDatabase::create();
            (
                Arc::new(jobengine::store::postgres::PgStore::open(&db.url, 4).unwrap()),
                Some(db),
            )
        }
    };
    let files = Files::open(dir.path()).unwrap();
    let config = Config::defaults();
    let agent = jobengine::net::agent(&config);
    let deps = Deps {
        store: store.clone(),
        files,
        config: Arc::new(LiveConfig::new(config)),
        agent,
        kinds,
    };
    Fixture {
        store,
        deps,
        _dir: dir,
        _pg: pg,
    }
}

fn start(store: &dyn Store, id: &str) -> JobId {
    let id = JobId::parse(id).unwrap();
    let new = NewJob {
        id: id.clone(),
        kind: JobKind::Encoder,
        details: r#"{"AudioFile":"00000000-0000-0000-0000-000000000000"}"#.into(),
        secrets: None,
        callback: String::new(),
        inputs: vec![],
        now: SystemTime::now(),
    };
    store.insert_job(&new).unwrap();
    assert!(matches!(
        store.start_job(&id, SystemTime::now()).unwrap(),
        Change::Done(_)
    ));
    id
}

fn wait_state(store: &dyn Store, id: &JobId, state: JobState) -> jobengine::job::Job {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let job = store.get_job(id).unwrap().unwrap();
        if job.state == state {
            return job;
        }
        assert!(Instant::now() < deadline, "{id} stuck in {:?}", job.state);
        std::thread::sleep(Duration::from_millis(5));
    }
}

engine_test!(a_panicking_job_fails_8_and_the_worker_lives_on, |backend| {
    let f = fixture(backend, |_| &PANICKY);
    let pool = Pool::start(1, f.deps.clone());
    let boom = start(&*f.store, "panic-1");
    pool.handle().enqueue(boom.clone());
    let failed = wait_state(&*f.store, &boom, JobState::Failed);
    assert_eq!(failed.result_code, 8);
    assert!(
        failed.error_message.contains("panicked on purpose"),
        "{}",
        failed.error_message
    );
    // The one worker is still there.
    let fine = start(&*f.store, "fine-1");
    pool.handle().enqueue(fine.clone());
    let done = wait_state(&*f.store, &fine, JobState::Success);
    assert_eq!(done.result, "done");
    assert!(pool.shutdown(Duration::from_secs(5)));
});

engine_test!(
    shutdown_puts_a_running_job_back_without_using_an_attempt,
    |backend| {
        let f = fixture(backend, |_| &UNTIL_STOPPED);
        let pool = Pool::start(2, f.deps.clone());
        let id = start(&*f.store, "long-1");
        pool.handle().enqueue(id.clone());
        wait_state(&*f.store, &id, JobState::InProgress);
        assert!(
            pool.shutdown(Duration::from_secs(5)),
            "the job stopped within the grace"
        );
        let job = f.store.get_job(&id).unwrap().unwrap();
        assert_eq!(job.state, JobState::Started);
        assert_eq!(job.attempts, 0);
        assert_eq!(f.store.started_jobs().unwrap(), vec![id]);
    }
);

engine_test!(cancel_reaches_the_running_kind, |backend| {
    let f = fixture(backend, |_| &UNTIL_STOPPED);
    let pool = Pool::start(1, f.deps.clone());
    let id = start(&*f.store, "cancel-1");
    pool.handle().enqueue(id.clone());
    wait_state(&*f.store, &id, JobState::InProgress);
    assert!(matches!(
        f.store.cancel_job(&id, SystemTime::now()).unwrap(),
        Change::Done(_)
    ));
    assert!(pool.handle().stop(&id, StopReason::Cancelled));
    assert!(
        pool.handle().wait_gone(&id, Duration::from_secs(1)),
        "the kind stopped within a second"
    );
    let job = f.store.get_job(&id).unwrap().unwrap();
    assert_eq!((job.state, job.result_code), (JobState::Failed, 1));
    assert!(pool.shutdown(Duration::from_secs(5)));
});
