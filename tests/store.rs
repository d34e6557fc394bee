//! The store conformance suite: every case runs on both backends (a fresh
//! SQLite file, a fresh PostgreSQL schema) through `store_test!`.

use crate::support::{PgSchema, TestDir};
use jobengine::job::{FileRecord, Job, JobId, JobKind, JobState, JobSummary, NewJob};
use jobengine::store::migrate::LATEST;
use jobengine::store::postgres::PgStore;
use jobengine::store::sqlite::SqliteStore;
use jobengine::store::{
    self, Call, CallParam, Change, Deleted, ErrorKind, FileDelete, Finish, Insert, NewCall,
    ProgressUpdate, Recovery, Store,
};
use std::sync::Barrier;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where a case's store lives.
enum Place {
    Sqlite(TestDir),
    Postgres(PgSchema),
}

/// A store under test and the place it lives in; the store goes first.
struct Harness {
    store: Option<Box<dyn Store>>,
    place: Place,
}

impl Harness {
    fn sqlite() -> Harness {
        Harness::at(Place::Sqlite(TestDir::new("store")))
    }

    fn postgres() -> Harness {
        Harness::at(Place::Postgres(PgSchema::new()))
    }

    fn at(place: Place) -> Harness {
        let mut h = Harness { store: None, place };
        h.store = Some(
            h.open()
                .unwrap_or_else(|e| panic!("opening the store failed: {e}")),
        );
        h
    }

    /// Opens another store on the same place (what a restart does).
    fn open(&self) -> store::Result<Box<dyn Store>> {
        Ok(match &self.place {
            Place::Sqlite(dir) => Box::new(SqliteStore::open(&dir.join("data/jobengine.db"))?),
            Place::Postgres(schema) => Box::new(PgStore::open(&schema.url, 8)?),
        })
    }

    fn store(&self) -> &dyn Store {
        self.store.as_deref().expect("the store is closed")
    }

    fn close(&mut self) {
        self.store = None;
    }

    fn reopen(&mut self) {
        self.close();
        self.store = Some(
            self.open()
                .unwrap_or_else(|e| panic!("reopening failed: {e}")),
        );
    }

    /// Runs SQL on the backend directly: what another binary or an admin did.
    fn exec(&self, sql: &str) {
        match &self.place {
            Place::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.join("data/jobengine.db")).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            Place::Postgres(schema) => schema.client().batch_execute(sql).unwrap(),
        }
    }

    /// A query whose columns are all text (use CAST), row by row.
    fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        match &self.place {
            Place::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.join("data/jobengine.db")).unwrap();
                let mut stmt = conn.prepare(sql).unwrap();
                let n = stmt.column_count();
                let rows = stmt
                    .query_map([], |r| (0..n).map(|i| r.get(i)).collect())
                    .unwrap();
                rows.map(Result::unwrap).collect()
            }
            Place::Postgres(schema) => {
                let rows = schema.client().query(sql, &[]).unwrap();
                rows.iter()
                    .map(|r| (0..r.len()).map(|i| r.get(i)).collect())
                    .collect()
            }
        }
    }

    /// Every outbox row as (job, method, params JSON, state), oldest first.
    fn outbox(&self) -> Vec<(Option<String>, String, String, String)> {
        self.rows("SELECT job_id, method, params, state FROM outbox ORDER BY id")
            .into_iter()
            .map(|r| {
                let text = |i: usize| r[i].clone().unwrap_or_default();
                (r[0].clone(), text(1), text(2), text(3))
            })
            .collect()
    }

    /// Outbox rows of one job with one method, as (params JSON, state).
    fn calls_of(&self, job: &str, method: &str) -> Vec<(String, String)> {
        self.outbox()
            .into_iter()
            .filter(|(j, m, _, _)| j.as_deref() == Some(job) && m == method)
            .map(|(_, _, params, state)| (params, state))
            .collect()
    }
}

/// Expands a case into one test per backend.
macro_rules! store_test {
    ($name:ident, |$h:ident| $body:block) => {
        mod $name {
            use super::*;

            #[test]
            #[allow(unused_mut)]
            fn sqlite() {
                let mut $h = Harness::sqlite();
                $body
            }

            #[test]
            #[allow(unused_mut)]
            fn postgres() {
                let mut $h = Harness::postgres();
                $body
            }
        }
    };
}

/// A fixed instant plus `secs`, with whole microseconds (what both stores keep).
fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs) + Duration::from_micros(123_456)
}

fn id(raw: &str) -> JobId {
    JobId::parse(raw).unwrap()
}

const CALLBACK: &str = "http://site.example/rpc";

fn new_job(raw: &str, callback: &str, inputs: &[&str]) -> NewJob {
    NewJob {
        id: id(raw),
        kind: JobKind::Encoder,
        details: format!(r#"{{"AudioFile":"{raw}-audio"}}"#),
        secrets: Some(r#"{"RefreshToken":"1//secret"}"#.to_owned()),
        callback: callback.to_owned(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        now: t(0),
    }
}

fn done(change: Change) -> Job {
    match change {
        Change::Done(job) => job,
        other => panic!("expected Done, got {other:?}"),
    }
}

/// Creates `raw` and moves it to `state` (Created, Started or InProgress).
fn job_in(s: &dyn Store, raw: &str, callback: &str, state: JobState) -> Job {
    assert_eq!(
        s.insert_job(&new_job(raw, callback, &[])).unwrap(),
        Insert::Inserted
    );
    let mut job = s.get_job(&id(raw)).unwrap().unwrap();
    if matches!(state, JobState::Started | JobState::InProgress) {
        job = done(s.start_job(&id(raw), t(1)).unwrap());
    }
    if state == JobState::InProgress {
        job = done(s.claim_job(&id(raw), t(2)).unwrap());
    }
    assert_eq!(job.state, state);
    job
}

fn finish<'a>(job: &'a JobId, state: JobState, code: i32, message: &'a str) -> Finish<'a> {
    Finish {
        id: job,
        state,
        result_code: code,
        error_message: message,
        result: "",
        outputs: &[],
        now: t(50),
    }
}

fn progress(job: &JobId, value: i32, at: SystemTime) -> ProgressUpdate<'_> {
    ProgressUpdate {
        id: job,
        progress: value,
        now: at,
        interval: Duration::from_secs(5),
    }
}

fn file(raw: &str, owner: Option<&str>) -> FileRecord {
    FileRecord {
        id: raw.to_owned(),
        name: format!("{raw}.mp3"),
        size: 5_000_000_123,
        sha256: "ab".repeat(32),
        owner_job: owner.map(id),
        created_at: t(3),
    }
}

fn call(job: Option<&str>, method: &str, at: SystemTime) -> NewCall {
    NewCall {
        job: job.map(id),
        url: CALLBACK.to_owned(),
        method: method.to_owned(),
        params: vec![
            CallParam::Str(job.unwrap_or("engine").to_owned()),
            CallParam::Int(-1),
        ],
        now: at,
    }
}

fn methods(calls: &[Call]) -> Vec<(Option<String>, String)> {
    calls
        .iter()
        .map(|c| (c.job.as_ref().map(|j| j.to_string()), c.method.clone()))
        .collect()
}

// --- jobs -------------------------------------------------------------------

store_test!(insert_then_get_round_trips, |h| {
    let s = h.store();
    for input in ["in-b", "in-a", "in-c"] {
        s.insert_file(&file(input, None)).unwrap();
    }
    let new = new_job("job-1", CALLBACK, &["in-b", "in-a", "in-c"]);
    assert_eq!(s.insert_job(&new).unwrap(), Insert::Inserted);
    let job = s.get_job(&id("job-1")).unwrap().unwrap();
    assert_eq!(
        job,
        Job {
            id: id("job-1"),
            kind: JobKind::Encoder,
            state: JobState::Created,
            details: new.details.clone(),
            callback: CALLBACK.to_owned(),
            progress: 0,
            result_code: 0,
            error_message: String::new(),
            result: String::new(),
            outputs: vec![],
            inputs: vec!["in-b".into(), "in-a".into(), "in-c".into()],
            attempts: 0,
            checkpoint: String::new(),
            created_at: t(0),
            last_state_change: t(0),
            start_seq: 0,
        }
    );
    assert_eq!(s.get_secrets(&id("job-1")).unwrap(), new.secrets);

    let mut again = new_job("job-1", "", &[]);
    again.details = "{}".into();
    assert_eq!(s.insert_job(&again).unwrap(), Insert::AlreadyExists);
    // A taken ID wins over a missing input.
    let again = new_job("job-1", "", &["in-a", "nowhere"]);
    assert_eq!(s.insert_job(&again).unwrap(), Insert::AlreadyExists);
    assert_eq!(
        s.get_job(&id("job-1")).unwrap().unwrap(),
        job,
        "the first job is untouched"
    );

    assert_eq!(s.get_job(&id("nope")).unwrap(), None);
    assert_eq!(s.get_secrets(&id("nope")).unwrap(), None);

    let mut upload = new_job("{up.1}", "", &[]);
    upload.kind = JobKind::YoutubeUploader;
    upload.secrets = None;
    s.insert_job(&upload).unwrap();
    let job = s.get_job(&id("{up.1}")).unwrap().unwrap();
    assert_eq!(job.kind, JobKind::YoutubeUploader);
    assert_eq!(s.get_secrets(&id("{up.1}")).unwrap(), None);
});

store_test!(an_unknown_input_writes_nothing, |h| {
    let s = h.store();
    s.insert_file(&file("in-a", None)).unwrap();
    let new = new_job("job-1", CALLBACK, &["in-a", "gone-1", "gone-2"]);
    assert_eq!(
        s.insert_job(&new).unwrap(),
        Insert::MissingInput("gone-1".into()),
        "the first missing input, in the job's order"
    );
    assert_eq!(s.get_job(&id("job-1")).unwrap(), None);
    assert_eq!(
        s.delete_file("in-a").unwrap(),
        FileDelete::Deleted,
        "no job holds the input"
    );
    assert_eq!(
        s.insert_job(&new_job("job-1", CALLBACK, &[])).unwrap(),
        Insert::Inserted,
        "the ID is still free"
    );
});

store_test!(timestamps_keep_microseconds, |h| {
    let s = h.store();
    let precise = UNIX_EPOCH + Duration::new(1_714_567_890, 987_654_321);
    let micros = UNIX_EPOCH + Duration::new(1_714_567_890, 987_654_000);
    let mut new = new_job("ts", CALLBACK, &[]);
    new.now = precise;
    s.insert_job(&new).unwrap();
    let job = s.get_job(&id("ts")).unwrap().unwrap();
    assert_eq!(job.created_at, micros);
    assert_eq!(job.last_state_change, micros);

    let started = done(
        s.start_job(&id("ts"), precise + Duration::from_micros(1))
            .unwrap(),
    );
    assert_eq!(started.last_state_change, micros + Duration::from_micros(1));
    assert_eq!(started.created_at, micros);

    let mut f = file("ts-file", None);
    f.created_at = precise;
    s.insert_file(&f).unwrap();
    assert_eq!(s.get_file("ts-file").unwrap().unwrap().created_at, micros);

    s.enqueue_call(&call(None, "EngineStarted", precise))
        .unwrap();
    let calls = s.due_calls(precise, 10).unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].created_at, micros);
    assert_eq!(calls[0].next_attempt_at, micros);
    assert_eq!(s.next_call_due().unwrap(), Some(micros));
});

store_test!(start_job_queues_once, |h| {
    let s = h.store();
    job_in(s, "a", "", JobState::Created);
    let job = done(s.start_job(&id("a"), t(10)).unwrap());
    assert_eq!(job.state, JobState::Started);
    assert!(
        job.start_seq > 0,
        "a started job has a queue place, got {}",
        job.start_seq
    );
    assert_eq!(job.last_state_change, t(10));
    assert_eq!(job.created_at, t(0));

    assert_eq!(
        s.start_job(&id("a"), t(11)).unwrap(),
        Change::WrongState(JobState::Started)
    );
    assert_eq!(s.start_job(&id("nope"), t(11)).unwrap(), Change::NotFound);
    let again = s.get_job(&id("a")).unwrap().unwrap();
    assert_eq!(
        again.last_state_change,
        t(10),
        "a refused start changes nothing"
    );
    assert_eq!(again.start_seq, job.start_seq);

    job_in(s, "b", "", JobState::InProgress);
    assert_eq!(
        s.start_job(&id("b"), t(11)).unwrap(),
        Change::WrongState(JobState::InProgress)
    );
    job_in(s, "c", "", JobState::Created);
    let later = done(s.start_job(&id("c"), t(12)).unwrap());
    assert!(later.start_seq > job.start_seq, "later starts queue behind");
});

store_test!(claim_job_takes_only_started, |h| {
    let s = h.store();
    job_in(s, "a", "", JobState::Created);
    assert_eq!(
        s.claim_job(&id("a"), t(5)).unwrap(),
        Change::WrongState(JobState::Created)
    );
    assert_eq!(s.claim_job(&id("nope"), t(5)).unwrap(), Change::NotFound);
    s.start_job(&id("a"), t(5)).unwrap();
    let job = done(s.claim_job(&id("a"), t(6)).unwrap());
    assert_eq!(job.state, JobState::InProgress);
    assert_eq!(job.progress, 0);
    assert_eq!(job.last_state_change, t(6));
    assert_eq!(
        s.claim_job(&id("a"), t(7)).unwrap(),
        Change::WrongState(JobState::InProgress)
    );
    assert!(s.started_jobs().unwrap().is_empty());
});

store_test!(summary_is_what_get_job_shows, |h| {
    // GetJob's own read: the same fields as the full job, outputs only
    // (inputs and outputs share a table), in their order.
    let s = h.store();
    for input in ["in-b", "in-a"] {
        s.insert_file(&file(input, None)).unwrap();
    }
    s.insert_job(&new_job("sum", CALLBACK, &["in-b", "in-a"]))
        .unwrap();
    let summary = |raw: &str| s.get_job_summary(&id(raw)).unwrap();
    let full = |raw: &str| s.get_job(&id(raw)).unwrap().map(JobSummary::from);
    assert_eq!(summary("sum"), full("sum"));
    assert_eq!(summary("sum").unwrap().outputs, Vec::<String>::new());
    assert_eq!(summary("nope"), None);

    s.start_job(&id("sum"), t(1)).unwrap();
    s.claim_job(&id("sum"), t(2)).unwrap();
    let outputs = vec![
        "out-z".to_string(),
        "out-a".to_string(),
        "out-m".to_string(),
    ];
    s.finish_job(&Finish {
        outputs: &outputs,
        ..finish(&id("sum"), JobState::Failed, 3, "mencoder exited with 1")
    })
    .unwrap();
    let shown = summary("sum").unwrap();
    assert_eq!(Some(shown.clone()), full("sum"));
    assert_eq!(
        (shown.state, shown.result_code, shown.error_message.as_str()),
        (JobState::Failed, 3, "mencoder exited with 1")
    );
    assert_eq!(shown.outputs, outputs, "outputs keep their order");
});

store_test!(finish_job_ends_only_running_jobs, |h| {
    let s = h.store();
    job_in(s, "created", "", JobState::Created);
    job_in(s, "started", "", JobState::Started);
    job_in(s, "running", CALLBACK, JobState::InProgress);
    let created = id("created");
    let started = id("started");
    let nope = id("nope");
    let running = id("running");
    assert_eq!(
        s.finish_job(&finish(&created, JobState::Success, 0, ""))
            .unwrap(),
        Change::WrongState(JobState::Created)
    );
    assert_eq!(
        s.finish_job(&finish(&started, JobState::Success, 0, ""))
            .unwrap(),
        Change::WrongState(JobState::Started)
    );
    assert_eq!(
        s.finish_job(&finish(&nope, JobState::Success, 0, ""))
            .unwrap(),
        Change::NotFound
    );

    let outputs = vec!["out-2".to_string(), "out-1".to_string()];
    let job = done(
        s.finish_job(&Finish {
            id: &running,
            state: JobState::Success,
            result_code: 0,
            error_message: "",
            result: "dQw4w9WgXcQ",
            outputs: &outputs,
            now: t(40),
        })
        .unwrap(),
    );
    assert_eq!(job.state, JobState::Success);
    assert_eq!(job.result, "dQw4w9WgXcQ");
    assert_eq!(job.outputs, outputs, "outputs keep their order");
    assert_eq!(job.last_state_change, t(40));
    assert_eq!(s.get_job(&running).unwrap().unwrap(), job);
    assert_eq!(
        s.finish_job(&finish(&running, JobState::Failed, 3, "late"))
            .unwrap(),
        Change::WrongState(JobState::Success)
    );

    job_in(s, "bad", "", JobState::InProgress);
    let bad = id("bad");
    let job = done(
        s.finish_job(&finish(&bad, JobState::Failed, 3, "mencoder exited 1"))
            .unwrap(),
    );
    assert_eq!((job.state, job.result_code), (JobState::Failed, 3));
    assert_eq!(job.error_message, "mencoder exited 1");

    job_in(s, "odd", "", JobState::InProgress);
    let odd = id("odd");
    let err = s
        .finish_job(&finish(&odd, JobState::Started, 0, ""))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert_eq!(
        s.get_job(&odd).unwrap().unwrap().state,
        JobState::InProgress
    );
});

store_test!(
    finish_clears_secrets_supersedes_progress_queues_completed,
    |h| {
        let s = h.store();
        job_in(s, "j", CALLBACK, JobState::InProgress);
        let j = id("j");
        assert!(s.record_progress(&progress(&j, 40, t(10))).unwrap());
        assert_eq!(
            h.calls_of("j", "JobProgress"),
            vec![(r#"["j",40]"#.into(), "pending".into())]
        );
        assert!(s.get_secrets(&j).unwrap().is_some());

        done(
            s.finish_job(&finish(&j, JobState::Failed, 3, "encoder: bad \"media\""))
                .unwrap(),
        );
        assert_eq!(
            s.get_secrets(&j).unwrap(),
            None,
            "secrets go when the job ends"
        );
        assert_eq!(
            h.calls_of("j", "JobProgress"),
            vec![(r#"["j",40]"#.into(), "superseded".into())]
        );
        assert_eq!(
            h.calls_of("j", "JobCompleted"),
            vec![(
                r#"["j","Failed",3,"encoder: bad \"media\""]"#.into(),
                "pending".into()
            )]
        );
        let due = s.due_calls(t(60), 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].url, CALLBACK);
        assert_eq!(
            due[0].params,
            vec![
                CallParam::Str("j".into()),
                CallParam::Str("Failed".into()),
                CallParam::Int(3),
                CallParam::Str("encoder: bad \"media\"".into()),
            ]
        );
        assert_eq!(due[0].created_at, t(50));
    }
);

store_test!(cancel_job_accepts_started_and_running, |h| {
    let s = h.store();
    job_in(s, "created", CALLBACK, JobState::Created);
    job_in(s, "started", CALLBACK, JobState::Started);
    job_in(s, "running", CALLBACK, JobState::InProgress);
    assert_eq!(
        s.cancel_job(&id("created"), t(9)).unwrap(),
        Change::WrongState(JobState::Created)
    );
    assert_eq!(s.cancel_job(&id("nope"), t(9)).unwrap(), Change::NotFound);
    for raw in ["started", "running"] {
        let job = done(s.cancel_job(&id(raw), t(9)).unwrap());
        assert_eq!(job.state, JobState::Failed);
        assert_eq!(job.result_code, 1);
        assert_eq!(job.error_message, "cancelled by CancelJob");
        assert_eq!(job.last_state_change, t(9));
        assert_eq!(s.get_secrets(&id(raw)).unwrap(), None);
        assert_eq!(
            h.calls_of(raw, "JobCompleted"),
            vec![(
                format!(r#"["{raw}","Failed",1,"cancelled by CancelJob"]"#),
                "pending".into()
            )]
        );
        assert_eq!(
            s.cancel_job(&id(raw), t(10)).unwrap(),
            Change::WrongState(JobState::Failed)
        );
    }
    job_in(s, "won", "", JobState::InProgress);
    let won = id("won");
    done(
        s.finish_job(&finish(&won, JobState::Success, 0, ""))
            .unwrap(),
    );
    assert_eq!(
        s.cancel_job(&won, t(60)).unwrap(),
        Change::WrongState(JobState::Success)
    );
    assert_eq!(s.get_job(&won).unwrap().unwrap().state, JobState::Success);
});

store_test!(
    started_jobs_are_in_start_order_and_requeue_keeps_place,
    |h| {
        let s = h.store();
        for raw in ["a", "b", "c", "d"] {
            job_in(s, raw, "", JobState::Created);
        }
        for raw in ["c", "a", "d", "b"] {
            done(s.start_job(&id(raw), t(1)).unwrap());
        }
        assert_eq!(
            s.started_jobs().unwrap(),
            vec![id("c"), id("a"), id("d"), id("b")]
        );

        let before = done(s.claim_job(&id("a"), t(2)).unwrap());
        assert_eq!(s.started_jobs().unwrap(), vec![id("c"), id("d"), id("b")]);
        assert!(s.record_progress(&progress(&id("a"), 70, t(3))).unwrap());
        let job = done(s.requeue_job(&id("a"), t(4)).unwrap());
        assert_eq!(job.state, JobState::Started);
        assert_eq!(
            job.start_seq, before.start_seq,
            "requeue keeps the queue place"
        );
        assert_eq!(job.attempts, 0, "a graceful stop uses no attempt");
        assert_eq!(job.progress, 0);
        assert_eq!(job.last_state_change, t(4));
        assert_eq!(
            s.started_jobs().unwrap(),
            vec![id("c"), id("a"), id("d"), id("b")]
        );

        assert_eq!(
            s.requeue_job(&id("a"), t(5)).unwrap(),
            Change::WrongState(JobState::Started)
        );
        assert_eq!(s.requeue_job(&id("nope"), t(5)).unwrap(), Change::NotFound);
    }
);

store_test!(checkpoint_only_while_running, |h| {
    let s = h.store();
    job_in(s, "a", "", JobState::Started);
    assert!(!s
        .set_checkpoint(&id("a"), "https://upload/session/1")
        .unwrap());
    assert!(!s.set_checkpoint(&id("nope"), "x").unwrap());
    done(s.claim_job(&id("a"), t(2)).unwrap());
    assert!(s
        .set_checkpoint(&id("a"), "https://upload/session/1")
        .unwrap());
    let job = done(s.requeue_job(&id("a"), t(3)).unwrap());
    assert_eq!(
        job.checkpoint, "https://upload/session/1",
        "the resume point survives"
    );
    assert_eq!(job.last_state_change, t(3));
});

store_test!(recover_jobs_uses_attempts_then_fails_with_7, |h| {
    let s = h.store();
    job_in(s, "loud", CALLBACK, JobState::InProgress);
    job_in(s, "quiet", "", JobState::InProgress);
    job_in(s, "queued", CALLBACK, JobState::Started);
    job_in(s, "new", CALLBACK, JobState::Created);
    let seq = s.get_job(&id("loud")).unwrap().unwrap().start_seq;

    let first = s.recover_jobs(2, t(100)).unwrap();
    let mut requeued = first.requeued.clone();
    requeued.sort();
    assert_eq!(requeued, vec![id("loud"), id("quiet")]);
    assert!(first.failed.is_empty());
    let loud = s.get_job(&id("loud")).unwrap().unwrap();
    assert_eq!(
        (loud.state, loud.attempts, loud.start_seq),
        (JobState::Started, 1, seq)
    );
    assert_eq!(loud.last_state_change, t(100));
    assert_eq!(
        s.started_jobs().unwrap(),
        vec![id("loud"), id("quiet"), id("queued")]
    );
    assert_eq!(
        s.get_job(&id("new")).unwrap().unwrap().state,
        JobState::Created
    );
    assert!(
        s.get_secrets(&id("loud")).unwrap().is_some(),
        "a requeued job keeps its secrets"
    );

    for raw in ["loud", "quiet"] {
        done(s.claim_job(&id(raw), t(101)).unwrap());
    }
    let second = s.recover_jobs(2, t(200)).unwrap();
    assert!(second.requeued.is_empty());
    let mut failed = second.failed.clone();
    failed.sort();
    assert_eq!(failed, vec![id("loud"), id("quiet")]);
    let message = "interrupted: the engine stopped 2 times while running this job";
    for raw in ["loud", "quiet"] {
        let job = s.get_job(&id(raw)).unwrap().unwrap();
        assert_eq!(
            (job.state, job.result_code, job.attempts),
            (JobState::Failed, 7, 2)
        );
        assert_eq!(job.error_message, message);
        assert_eq!(job.last_state_change, t(200));
        assert_eq!(s.get_secrets(&id(raw)).unwrap(), None);
    }
    assert_eq!(
        h.calls_of("loud", "JobCompleted"),
        vec![(
            format!(r#"["loud","Failed",7,"{message}"]"#),
            "pending".into()
        )]
    );
    assert!(
        h.calls_of("quiet", "JobCompleted").is_empty(),
        "no callback, no call"
    );
    assert_eq!(s.started_jobs().unwrap(), vec![id("queued")]);
    assert_eq!(s.recover_jobs(2, t(300)).unwrap(), Recovery::default());
});

store_test!(progress_calls_are_throttled_and_superseded, |h| {
    let s = h.store();
    let before = job_in(s, "p", CALLBACK, JobState::InProgress);
    let p = id("p");
    let pending = |h: &Harness| -> Vec<String> {
        h.calls_of("p", "JobProgress")
            .into_iter()
            .filter(|(_, state)| state == "pending")
            .map(|(params, _)| params)
            .collect()
    };
    assert!(s.record_progress(&progress(&p, 10, t(10))).unwrap());
    assert_eq!(pending(&h), vec![r#"["p",10]"#]);

    // Changed, but too soon: stored, not sent.
    assert!(s.record_progress(&progress(&p, 20, t(14))).unwrap());
    let job = s.get_job(&p).unwrap().unwrap();
    assert_eq!(job.progress, 20);
    assert_eq!(
        job.last_state_change, before.last_state_change,
        "progress is no state change"
    );
    assert_eq!(pending(&h), vec![r#"["p",10]"#]);

    // Interval passed, progress differs from the last sent: the new call supersedes the old.
    assert!(s.record_progress(&progress(&p, 20, t(16))).unwrap());
    assert_eq!(
        h.calls_of("p", "JobProgress"),
        vec![
            (r#"["p",10]"#.into(), "superseded".into()),
            (r#"["p",20]"#.into(), "pending".into())
        ]
    );

    // Same as the last sent: nothing, however long after.
    assert!(s.record_progress(&progress(&p, 20, t(100))).unwrap());
    assert_eq!(h.calls_of("p", "JobProgress").len(), 2);

    // A delivered call stays delivered; exactly `interval` later is due.
    let due = s.due_calls(t(100), 10).unwrap();
    s.call_delivered(due[0].id, t(100)).unwrap();
    assert!(s.record_progress(&progress(&p, -1, t(100))).unwrap());
    assert!(s.record_progress(&progress(&p, 30, t(105))).unwrap());
    assert_eq!(
        h.calls_of("p", "JobProgress"),
        vec![
            (r#"["p",10]"#.into(), "superseded".into()),
            (r#"["p",20]"#.into(), "delivered".into()),
            (r#"["p",-1]"#.into(), "superseded".into()),
            (r#"["p",30]"#.into(), "pending".into()),
        ]
    );

    job_in(s, "idle", CALLBACK, JobState::Started);
    assert!(!s
        .record_progress(&progress(&id("idle"), 50, t(10)))
        .unwrap());
    assert_eq!(s.get_job(&id("idle")).unwrap().unwrap().progress, 0);
    assert!(!s
        .record_progress(&progress(&id("nope"), 50, t(10)))
        .unwrap());
    assert!(h.calls_of("idle", "JobProgress").is_empty());
});

store_test!(a_job_without_callback_queues_no_calls, |h| {
    let s = h.store();
    job_in(s, "a", "", JobState::InProgress);
    job_in(s, "b", "", JobState::Started);
    job_in(s, "c", "", JobState::InProgress);
    assert!(s.record_progress(&progress(&id("a"), 50, t(10))).unwrap());
    done(
        s.finish_job(&finish(&id("a"), JobState::Success, 0, ""))
            .unwrap(),
    );
    done(s.cancel_job(&id("b"), t(10)).unwrap());
    s.recover_jobs(1, t(20)).unwrap();
    assert_eq!(s.get_job(&id("c")).unwrap().unwrap().result_code, 7);
    assert!(h.outbox().is_empty(), "{:?}", h.outbox());
    assert_eq!(s.next_call_due().unwrap(), None);
});

store_test!(delete_job_removes_every_trace_and_frees_the_id, |h| {
    let s = h.store();
    s.insert_file(&file("input", None)).unwrap();
    s.insert_job(&new_job("gone", CALLBACK, &["input"]))
        .unwrap();
    done(s.start_job(&id("gone"), t(1)).unwrap());
    done(s.claim_job(&id("gone"), t(2)).unwrap());
    s.record_progress(&progress(&id("gone"), 50, t(10)))
        .unwrap();
    s.insert_file(&file("out-b", Some("gone"))).unwrap();
    s.insert_file(&file("out-a", Some("gone"))).unwrap();
    let outputs = vec!["out-b".to_string(), "out-a".to_string()];
    s.finish_job(&Finish {
        id: &id("gone"),
        state: JobState::Success,
        result_code: 0,
        error_message: "",
        result: "",
        outputs: &outputs,
        now: t(20),
    })
    .unwrap();
    job_in(s, "kept", CALLBACK, JobState::InProgress);
    s.insert_file(&file("kept-out", Some("kept"))).unwrap();
    s.record_progress(&progress(&id("kept"), 5, t(10))).unwrap();
    assert_eq!(h.calls_of("gone", "JobCompleted").len(), 1);

    assert_eq!(
        s.delete_job(&id("gone")).unwrap(),
        Some(Deleted {
            output_files: vec!["out-a".into(), "out-b".into()]
        })
    );
    assert_eq!(s.get_job(&id("gone")).unwrap(), None);
    assert_eq!(s.get_secrets(&id("gone")).unwrap(), None);
    assert_eq!(s.get_file("out-a").unwrap(), None);
    assert_eq!(s.get_file("out-b").unwrap(), None);
    assert!(
        s.get_file("input").unwrap().is_some(),
        "inputs belong to nobody"
    );
    assert!(h
        .outbox()
        .iter()
        .all(|(job, ..)| job.as_deref() != Some("gone")));
    assert_eq!(
        h.rows("SELECT job_id FROM job_files WHERE job_id = 'gone'")
            .len(),
        0,
        "no file links left"
    );
    assert_eq!(
        h.calls_of("kept", "JobProgress").len(),
        1,
        "other jobs keep their calls"
    );
    assert!(s.get_file("kept-out").unwrap().is_some());
    assert_eq!(s.delete_job(&id("gone")).unwrap(), None);

    assert_eq!(
        s.insert_job(&new_job("gone", "", &[])).unwrap(),
        Insert::Inserted
    );
    let fresh = s.get_job(&id("gone")).unwrap().unwrap();
    assert_eq!(
        (fresh.state, fresh.outputs.len(), fresh.inputs.len()),
        (JobState::Created, 0, 0)
    );

    job_in(s, "created", "", JobState::Created);
    assert_eq!(
        s.delete_job(&id("created")).unwrap(),
        Some(Deleted {
            output_files: vec![]
        })
    );
    assert_eq!(
        s.delete_job(&id("kept")).unwrap().unwrap().output_files,
        vec!["kept-out"]
    );
    assert_eq!(s.delete_job(&id("nope")).unwrap(), None);
});

// --- files ------------------------------------------------------------------

store_test!(files_insert_get_delete, |h| {
    let s = h.store();
    let upload = file("f-1", None);
    s.insert_file(&upload).unwrap();
    assert_eq!(s.get_file("f-1").unwrap(), Some(upload));
    job_in(s, "owner", "", JobState::InProgress);
    let output = file("f-2", Some("owner"));
    s.insert_file(&output).unwrap();
    assert_eq!(s.get_file("f-2").unwrap(), Some(output));
    assert_eq!(s.get_file("nope").unwrap(), None);

    assert_eq!(s.delete_file("f-1").unwrap(), FileDelete::Deleted);
    assert_eq!(s.get_file("f-1").unwrap(), None);
    assert_eq!(s.delete_file("f-1").unwrap(), FileDelete::NotFound);
    assert_eq!(s.delete_file("nope").unwrap(), FileDelete::NotFound);
});

store_test!(a_file_an_unfinished_job_reads_is_in_use, |h| {
    let s = h.store();
    s.insert_file(&file("audio", None)).unwrap();
    s.insert_file(&file("image", None)).unwrap();
    s.insert_job(&new_job("done-job", "", &["audio"])).unwrap();
    done(s.start_job(&id("done-job"), t(1)).unwrap());
    done(s.claim_job(&id("done-job"), t(1)).unwrap());
    done(
        s.finish_job(&finish(&id("done-job"), JobState::Success, 0, ""))
            .unwrap(),
    );
    s.insert_job(&new_job("user", "", &["image", "audio"]))
        .unwrap();

    // Created, Started and InProgress all hold their inputs.
    assert_eq!(
        s.delete_file("audio").unwrap(),
        FileDelete::InUse(id("user"))
    );
    done(s.start_job(&id("user"), t(2)).unwrap());
    assert_eq!(
        s.delete_file("image").unwrap(),
        FileDelete::InUse(id("user"))
    );
    done(s.claim_job(&id("user"), t(3)).unwrap());
    assert_eq!(
        s.delete_file("audio").unwrap(),
        FileDelete::InUse(id("user"))
    );
    assert!(s.get_file("audio").unwrap().is_some());

    done(s.cancel_job(&id("user"), t(4)).unwrap());
    assert_eq!(s.delete_file("audio").unwrap(), FileDelete::Deleted);
    assert_eq!(s.delete_file("image").unwrap(), FileDelete::Deleted);
    assert_eq!(
        s.get_job(&id("user")).unwrap().unwrap().inputs,
        vec!["image", "audio"],
        "an ended job still lists what it read"
    );
});

// --- outbox -----------------------------------------------------------------

store_test!(due_calls_keep_each_jobs_line, |h| {
    let s = h.store();
    assert_eq!(s.next_call_due().unwrap(), None);
    assert!(s.due_calls(t(1000), 10).unwrap().is_empty());
    s.enqueue_call(&call(Some("a"), "A1", t(0))).unwrap();
    s.enqueue_call(&call(Some("b"), "B1", t(0))).unwrap();
    s.enqueue_call(&call(None, "EngineStarted", t(0))).unwrap();
    s.enqueue_call(&call(Some("a"), "A2", t(0))).unwrap();
    s.enqueue_call(&call(Some("c"), "C1", t(30))).unwrap();

    let due = s.due_calls(t(0), 10).unwrap();
    assert_eq!(
        methods(&due),
        vec![
            (Some("a".into()), "A1".into()),
            (Some("b".into()), "B1".into()),
            (None, "EngineStarted".into()),
        ],
        "A2 waits behind A1; C1 is not due"
    );
    assert_eq!(due[0].url, CALLBACK);
    assert_eq!(
        due[0].params,
        vec![CallParam::Str("a".into()), CallParam::Int(-1)]
    );
    assert_eq!(
        (due[0].attempts, due[0].created_at, due[0].next_attempt_at),
        (0, t(0), t(0))
    );
    assert!(due[0].id < due[1].id && due[1].id < due[2].id);
    assert_eq!(methods(&s.due_calls(t(0), 2).unwrap()).len(), 2);
    assert_eq!(s.next_call_due().unwrap(), Some(t(0)));

    let (a1, b1, engine) = (due[0].id, due[1].id, due[2].id);
    s.call_failed(a1, "HTTP 503 from http://site.example/rpc", t(60))
        .unwrap();
    s.call_delivered(b1, t(1)).unwrap();
    s.call_delivered(engine, t(1)).unwrap();
    assert!(
        s.due_calls(t(1), 10).unwrap().is_empty(),
        "A2 may not pass the failed A1"
    );
    assert_eq!(
        s.next_call_due().unwrap(),
        Some(t(30)),
        "C1 is next; A2 is blocked"
    );
    let due = s.due_calls(t(60), 10).unwrap();
    assert_eq!(
        methods(&due),
        vec![
            (Some("a".into()), "A1".into()),
            (Some("c".into()), "C1".into())
        ]
    );
    assert_eq!((due[0].attempts, due[0].next_attempt_at), (1, t(60)));

    s.call_delivered(a1, t(61)).unwrap();
    let due = s.due_calls(t(61), 10).unwrap();
    assert_eq!(
        methods(&due),
        vec![
            (Some("a".into()), "A2".into()),
            (Some("c".into()), "C1".into())
        ]
    );
    for c in &due {
        s.call_delivered(c.id, t(62)).unwrap();
    }
    assert_eq!(s.next_call_due().unwrap(), None);
    assert!(h.outbox().iter().all(|(.., state)| state == "delivered"));
});

store_test!(an_undeliverable_call_unblocks_its_job, |h| {
    let s = h.store();
    s.enqueue_call(&call(Some("a"), "A1", t(0))).unwrap();
    s.enqueue_call(&call(Some("a"), "A2", t(0))).unwrap();
    let first = s.due_calls(t(0), 10).unwrap();
    assert_eq!(methods(&first), vec![(Some("a".into()), "A1".into())]);
    s.call_failed(first[0].id, "connection refused", t(10))
        .unwrap();
    s.call_undeliverable(
        first[0].id,
        "gave up after 3 days: connection refused",
        t(20),
    )
    .unwrap();
    let due = s.due_calls(t(20), 10).unwrap();
    assert_eq!(methods(&due), vec![(Some("a".into()), "A2".into())]);
    let rows =
        h.rows("SELECT state, CAST(attempts AS TEXT), last_error FROM outbox WHERE method = 'A1'");
    assert_eq!(
        rows,
        vec![vec![
            Some("undeliverable".to_string()),
            Some("2".to_string()),
            Some("gave up after 3 days: connection refused".to_string())
        ]]
    );
    // A late report on a given-up call changes nothing.
    s.call_failed(first[0].id, "late", t(30)).unwrap();
    assert_eq!(h.calls_of("a", "A1")[0].1, "undeliverable");
    assert_eq!(s.next_call_due().unwrap(), Some(t(0)));
});

// --- engine, schema, reopening ----------------------------------------------

store_test!(engine_id_is_stable, |h| {
    assert_eq!(h.store().engine_id("first-id").unwrap(), "first-id");
    assert_eq!(h.store().engine_id("second-id").unwrap(), "first-id");
    h.reopen();
    assert_eq!(h.store().engine_id("third-id").unwrap(), "first-id");
});

store_test!(a_schema_newer_than_the_binary_is_refused, |h| {
    h.close();
    let future = LATEST + 1;
    h.exec(&format!(
        "INSERT INTO schema_migrations (version, name, applied_at) \
         VALUES ({future}, 'from_the_future', '2030-01-01T00:00:00.000000Z')"
    ));
    let err = match h.open() {
        Ok(_) => panic!("a store at version {future} opened"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::SchemaTooNew);
    assert!(!err.is_transient());
    let msg = err.to_string();
    assert!(msg.contains(&format!("version {future}")), "{msg}");
    assert!(msg.contains(&format!("version {LATEST}")), "{msg}");
});

store_test!(reopening_keeps_everything_and_migrates_once, |h| {
    let s = h.store();
    assert!(s.describe().starts_with("SQLite at ") || s.describe().starts_with("PostgreSQL at "));
    s.ping().unwrap();
    s.insert_file(&file("in", None)).unwrap();
    s.insert_job(&new_job("a", CALLBACK, &["in"])).unwrap();
    job_in(s, "b", CALLBACK, JobState::Started);
    job_in(s, "c", CALLBACK, JobState::InProgress);
    s.record_progress(&progress(&id("c"), 33, t(10))).unwrap();
    s.set_checkpoint(&id("c"), "resume-here").unwrap();
    s.enqueue_call(&call(None, "EngineStarted", t(5))).unwrap();
    let jobs: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|j| s.get_job(&id(j)).unwrap())
        .collect();
    let calls = s.due_calls(t(100), 10).unwrap();
    let secrets = s.get_secrets(&id("a")).unwrap();

    h.reopen();
    let s = h.store();
    s.ping().unwrap();
    let again: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|j| s.get_job(&id(j)).unwrap())
        .collect();
    assert_eq!(again, jobs);
    assert_eq!(s.due_calls(t(100), 10).unwrap(), calls);
    assert_eq!(s.get_secrets(&id("a")).unwrap(), secrets);
    assert_eq!(s.get_file("in").unwrap(), Some(file("in", None)));
    assert_eq!(s.started_jobs().unwrap(), vec![id("b")]);
    assert_eq!(
        h.rows("SELECT CAST(COUNT(*) AS TEXT), CAST(MAX(version) AS TEXT) FROM schema_migrations"),
        vec![vec![Some(LATEST.to_string()), Some(LATEST.to_string())]]
    );
});

// --- races ------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Start,
    Claim,
    Cancel,
    Finish,
    Delete,
}

store_test!(concurrent_create_jobs_each_get_their_own_answer, |h| {
    // CreateJobs that arrive together share a transaction (group commit):
    // each caller must still get its own outcome, exactly one caller of a
    // JobID wins, and a job with a missing input writes nothing.
    let s = h.store();
    s.insert_file(&file("in", None)).unwrap();
    let gate = Barrier::new(RACE_THREADS);
    let outcomes: Vec<(usize, usize, Insert)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..RACE_THREADS)
            .map(|thread| {
                let gate = &gate;
                scope.spawn(move || {
                    gate.wait();
                    (0..4)
                        .map(|round| {
                            // Own IDs, IDs every tenth thread shares, and
                            // every seventh job naming a file that is gone.
                            let raw = if thread % 10 == 0 {
                                format!("shared-{round}")
                            } else {
                                format!("own-{thread}-{round}")
                            };
                            let input = if (thread + round) % 7 == 0 {
                                "gone"
                            } else {
                                "in"
                            };
                            let got = s.insert_job(&new_job(&raw, "", &[input])).unwrap();
                            (thread, round, got)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut shared_winners = std::collections::HashMap::new();
    for (thread, round, got) in &outcomes {
        let missing = (thread + round) % 7 == 0;
        let raw = if thread % 10 == 0 {
            format!("shared-{round}")
        } else {
            format!("own-{thread}-{round}")
        };
        let stored = s.get_job(&id(&raw)).unwrap();
        match got {
            Insert::Inserted => {
                assert!(!missing, "{raw}: inserted with a missing input");
                assert_eq!(stored.unwrap().inputs, vec!["in".to_owned()], "{raw}");
                if thread % 10 == 0 {
                    *shared_winners.entry(raw).or_insert(0) += 1;
                }
            }
            Insert::MissingInput(file) => {
                assert!(missing, "{raw}: refused for {file}");
                assert_eq!(file, "gone");
                if thread % 10 != 0 {
                    assert_eq!(stored, None, "{raw}: nothing written");
                }
            }
            Insert::AlreadyExists => {
                assert_eq!(thread % 10, 0, "{raw}: only shared IDs are taken");
                assert!(stored.is_some(), "{raw}");
            }
        }
    }
    for round in 0..4 {
        let raw = format!("shared-{round}");
        let exists = s.get_job(&id(&raw)).unwrap().is_some();
        let winners = shared_winners.get(&raw).copied().unwrap_or(0);
        assert_eq!(
            winners,
            usize::from(exists),
            "{raw}: one winner if it exists"
        );
    }
});

const RACE_JOBS: usize = 3;
const RACE_THREADS: usize = 50;

/// Runs `ops` from 50 threads released at once on `RACE_JOBS` jobs, each
/// thread doing four rounds; returns (job index, op, outcome) of every call.
fn race(s: &dyn Store, ops: &[Op]) -> Vec<(usize, Op, Change)> {
    let gate = Barrier::new(RACE_THREADS);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..RACE_THREADS)
            .map(|thread| {
                let gate = &gate;
                scope.spawn(move || {
                    gate.wait();
                    let mut seen = Vec::new();
                    for round in 0..4 {
                        let job = (thread + round) % RACE_JOBS;
                        let op = ops[(thread / RACE_JOBS + round) % ops.len()];
                        let jid = id(&format!("race-{job}"));
                        let change = match op {
                            Op::Start => s.start_job(&jid, t(1)),
                            Op::Claim => s.claim_job(&jid, t(2)),
                            Op::Cancel => s.cancel_job(&jid, t(3)),
                            Op::Finish => {
                                let state = if thread % 2 == 0 {
                                    JobState::Success
                                } else {
                                    JobState::Failed
                                };
                                s.finish_job(&finish(&jid, state, 3 * (thread % 2) as i32, ""))
                            }
                            Op::Delete => s.delete_job(&jid).map(|d| match d {
                                Some(_) => Change::Done(placeholder(&jid)),
                                None => Change::NotFound,
                            }),
                        };
                        let change = change.unwrap_or_else(|e| panic!("{op:?} failed: {e}"));
                        seen.push((job, op, change));
                    }
                    seen
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// Stands for "delete_job removed it" among the Changes.
fn placeholder(jid: &JobId) -> Job {
    Job {
        id: jid.clone(),
        kind: JobKind::Encoder,
        state: JobState::Created,
        details: "deleted".into(),
        callback: String::new(),
        progress: 0,
        result_code: 0,
        error_message: String::new(),
        result: String::new(),
        outputs: vec![],
        inputs: vec![],
        attempts: 0,
        checkpoint: String::new(),
        created_at: t(0),
        last_state_change: t(0),
        start_seq: 0,
    }
}

fn wins(results: &[(usize, Op, Change)], job: usize, op: Op) -> Vec<Job> {
    results
        .iter()
        .filter(|(j, o, _)| *j == job && *o == op)
        .filter_map(|(_, _, c)| match c {
            Change::Done(job) => Some(job.clone()),
            _ => None,
        })
        .collect()
}

store_test!(racing_verbs_have_one_winner_each, |h| {
    let s = h.store();
    for j in 0..RACE_JOBS {
        job_in(s, &format!("race-{j}"), CALLBACK, JobState::Created);
    }
    let results = race(s, &[Op::Start, Op::Claim, Op::Cancel, Op::Finish]);
    assert_eq!(results.len(), RACE_THREADS * 4);
    for (_, op, change) in &results {
        assert!(!matches!(change, Change::NotFound), "{op:?} lost the job");
    }
    for j in 0..RACE_JOBS {
        let raw = format!("race-{j}");
        let starts = wins(&results, j, Op::Start);
        let claims = wins(&results, j, Op::Claim);
        let cancels = wins(&results, j, Op::Cancel);
        let finishes = wins(&results, j, Op::Finish);
        assert_eq!(starts.len(), 1, "{raw}: exactly one StartJob wins");
        assert!(claims.len() <= 1, "{raw}: {} claims won", claims.len());
        assert!(cancels.len() + finishes.len() <= 1, "{raw}: ended twice");
        assert!(
            finishes.is_empty() || claims.len() == 1,
            "{raw}: finished unclaimed"
        );
        assert_eq!(starts[0].state, JobState::Started);

        let job = s.get_job(&id(&raw)).unwrap().unwrap();
        let expected = if let Some(f) = finishes.first() {
            assert!(f.state.is_final());
            f.state
        } else if cancels.len() == 1 {
            assert_eq!(job.result_code, 1);
            JobState::Failed
        } else if claims.len() == 1 {
            JobState::InProgress
        } else {
            JobState::Started
        };
        assert_eq!(job.state, expected, "{raw}");
        assert_eq!(job.start_seq, starts[0].start_seq);
        let completed = h.calls_of(&raw, "JobCompleted").len();
        assert_eq!(
            completed,
            usize::from(expected.is_final()),
            "{raw}: JobCompleted once"
        );
    }
    let seqs: std::collections::BTreeSet<i64> = (0..RACE_JOBS)
        .map(|j| wins(&results, j, Op::Start)[0].start_seq)
        .collect();
    assert_eq!(seqs.len(), RACE_JOBS, "every start has its own queue place");
});

store_test!(racing_deletes_leave_nothing_half_done, |h| {
    let s = h.store();
    for j in 0..RACE_JOBS {
        job_in(s, &format!("race-{j}"), CALLBACK, JobState::Created);
        s.insert_file(&file(&format!("race-{j}-out"), Some(&format!("race-{j}"))))
            .unwrap();
    }
    let results = race(
        s,
        &[Op::Start, Op::Claim, Op::Delete, Op::Cancel, Op::Finish],
    );
    for j in 0..RACE_JOBS {
        let raw = format!("race-{j}");
        let deletes = wins(&results, j, Op::Delete);
        assert!(deletes.len() <= 1, "{raw}: deleted twice");
        assert!(
            wins(&results, j, Op::Start).len() <= 1,
            "{raw}: started twice"
        );
        match s.get_job(&id(&raw)).unwrap() {
            None => {
                assert_eq!(deletes.len(), 1, "{raw} vanished without a delete");
                assert!(h
                    .outbox()
                    .iter()
                    .all(|(job, ..)| job.as_deref() != Some(raw.as_str())));
                assert_eq!(s.get_file(&format!("{raw}-out")).unwrap(), None);
                let links = h.rows(&format!(
                    "SELECT file_id FROM job_files WHERE job_id = '{raw}'"
                ));
                assert!(links.is_empty(), "{raw}: {links:?}");
            }
            Some(job) => {
                assert!(deletes.is_empty(), "{raw} survived its delete");
                let completed = h.calls_of(&raw, "JobCompleted").len();
                assert_eq!(completed, usize::from(job.state.is_final()), "{raw}");
                assert!(s.get_file(&format!("{raw}-out")).unwrap().is_some());
            }
        }
    }
});

// --- PostgreSQL only --------------------------------------------------------

#[test]
fn postgres_describe_never_shows_the_password() {
    let schema = PgSchema::new();
    let plain = PgStore::open(&schema.url, 1).unwrap().describe();
    assert!(plain.starts_with("PostgreSQL at "), "{plain}");
    // Trust auth ignores a password, so the store opens with one in the URL.
    let (scheme, rest) = schema
        .url
        .split_once("://")
        .expect("a postgres:// test URL");
    let (user, host) = rest.split_once('@').expect("a user in the test URL");
    let user = user.split(':').next().unwrap_or(user);
    let url = format!("{scheme}://{user}:hunter2@{host}");
    let described = PgStore::open(&url, 1).unwrap().describe();
    assert!(!described.contains("hunter2"), "{described}");
    assert_eq!(described, plain);
}

#[test]
fn postgres_outage_answers_unavailable_fast() {
    // Nothing listens on port 1: connection refused.
    let started = Instant::now();
    let err = match PgStore::open("postgres://postgres:pw@127.0.0.1:1/test", 2) {
        Ok(_) => panic!("opened a store on a closed port"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_transient());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let msg = err.to_string();
    assert!(
        msg.contains("127.0.0.1:1/test") && !msg.contains("pw@"),
        "{msg}"
    );
}

#[test]
fn postgres_pool_recovers_when_its_connections_are_killed() {
    let schema = PgSchema::new();
    let store = PgStore::open(&schema.url, 2).unwrap();
    store.insert_job(&new_job("survivor", "", &[])).unwrap();
    let kill = || {
        let killed: i64 = schema
            .admin()
            .query_one(
                "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1) AS t",
                &[&schema.name],
            )
            .unwrap()
            .get(0);
        assert!(
            killed >= 1,
            "the store's connections should show in pg_stat_activity"
        );
    };
    kill();
    // A dead connection fails its first call, which runs again on another.
    store.ping().unwrap();
    let job = store.get_job(&id("survivor")).unwrap().unwrap();
    assert_eq!(job.state, JobState::Created);
    // Writes too: a test round trip (CreateJob) or BEGIN (a transaction)
    // finds the connection dead before anything is written.
    kill();
    assert_eq!(
        store.insert_job(&new_job("second", "", &[])).unwrap(),
        Insert::Inserted
    );
    kill();
    assert_eq!(
        done(store.start_job(&id("survivor"), t(1)).unwrap()).state,
        JobState::Started
    );
}

// --- SQLite only ------------------------------------------------------------

#[test]
fn sqlite_creates_its_directories_and_uses_wal() {
    let dir = TestDir::new("sqlite-open");
    let path = dir.join("deep/er/jobengine.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.describe(), format!("SQLite at {}", path.display()));
    store.ping().unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let stamp: String = {
        store.insert_job(&new_job("a", "", &[])).unwrap();
        conn.query_row("SELECT created_at FROM jobs", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(
        stamp, "2023-11-14T22:13:20.123456Z",
        "readable UTC with microseconds"
    );
}

store_test!(get_progress_reads_state_and_progress, |h| {
    let s = h.store();
    assert_eq!(s.get_progress(&id("nope")).unwrap(), None);
    job_in(s, "g", CALLBACK, JobState::InProgress);
    let g = id("g");
    assert_eq!(s.get_progress(&g).unwrap(), Some((JobState::InProgress, 0)));
    assert!(s.record_progress(&progress(&g, 42, t(10))).unwrap());
    assert_eq!(
        s.get_progress(&g).unwrap(),
        Some((JobState::InProgress, 42))
    );
});
