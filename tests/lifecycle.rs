//! Calls to the website, graceful shutdown and crash recovery, with a real
//! engine process and a website stand-in that records what it gets.

use crate::engine_test;
use crate::support::engine::{fixture, int, string, Backend, Engine, EngineOptions};
use crate::support::long_mp3;
use crate::support::private_pg::PrivatePg;
use crate::support::website::{summary, Mode, Received, Website};
use std::time::{Duration, Instant};

fn options(backend: Backend, website: &Website) -> EngineOptions {
    EngineOptions::new(backend)
        .set("website_url", &website.url)
        .set("engine_id", "engine-under-test")
}

/// Creates and starts an EncoderJob whose callback is the website.
fn start_job(engine: &Engine, website: &Website, id: &str, audio: &str) {
    let details = format!("<EncoderJob><AudioFile>{audio}</AudioFile></EncoderJob>");
    let (code, msg, _) = engine.op("CreateJob", &[id, "EncoderJob", &details, &website.url]);
    assert_eq!(code, 0, "CreateJob {id}: {msg}");
    let (code, msg, _) = engine.op("StartJob", &[id]);
    assert_eq!(code, 0, "StartJob {id}: {msg}");
}

fn of_job<'a>(calls: &'a [Received], id: &str) -> Vec<&'a Received> {
    calls
        .iter()
        .filter(|c| c.method.starts_with("Job") && c.str(0) == id)
        .collect()
}

/// A job's calls: progress calls (never the same value twice in a row,
/// never falling), then exactly one JobCompleted, last.
fn check_job_calls(calls: &[Received], id: &str) -> (String, i32) {
    let mine = of_job(calls, id);
    let completed: Vec<_> = mine.iter().filter(|c| c.method == "JobCompleted").collect();
    assert_eq!(
        completed.len(),
        1,
        "{id}: one JobCompleted expected: {:?}",
        summary(calls)
    );
    assert_eq!(
        mine.last().unwrap().method,
        "JobCompleted",
        "{id}: JobCompleted comes last"
    );
    let progress: Vec<i32> = mine
        .iter()
        .filter(|c| c.method == "JobProgress")
        .map(|c| c.int(1))
        .collect();
    for pair in progress.windows(2) {
        assert!(
            pair[0] != pair[1],
            "{id}: the same progress sent twice in a row: {progress:?}"
        );
    }
    let done = completed[0];
    (done.str(1).to_owned(), done.int(2))
}

engine_test!(calls_survive_a_website_outage_in_order, |backend| {
    let mp3 = long_mp3(300);
    let website = Website::start();
    website.set_mode(Mode::Down);
    let engine = Engine::with(options(backend, &website).set("progress_interval", 1));
    let audio = engine.upload(&mp3);
    start_job(&engine, &website, "outage-1", &audio);
    let job = engine.wait_end("outage-1", Duration::from_secs(120));
    assert_eq!(string(&job, "State"), "Success");
    assert!(
        website.refused() > 0,
        "the engine tried while the website was down"
    );
    // Every kind of failure counts: the engine keeps retrying through each.
    for (mode, what) in [(Mode::Error500, "HTTP 500"), (Mode::Fault, "faults")] {
        website.set_mode(mode);
        let refused = website.refused();
        let deadline = Instant::now() + Duration::from_secs(30);
        while website.refused() == refused {
            assert!(
                Instant::now() < deadline,
                "no retry while the website answers {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    website.set_mode(Mode::Up);
    // The backoff after a long outage can reach a minute or two.
    let calls = website.wait_for(
        Duration::from_secs(240),
        "JobCompleted after the outage",
        |calls| {
            calls.iter().any(|c| c.method == "JobCompleted")
                && calls.iter().any(|c| c.method == "EngineStarted")
        },
    );
    assert_eq!(
        check_job_calls(&calls, "outage-1"),
        ("Success".to_owned(), 0)
    );
    assert!(calls
        .iter()
        .any(|c| c.method == "EngineStarted" && c.str(0) == "engine-under-test"));
});

engine_test!(progress_calls_are_spaced_by_the_interval, |backend| {
    let mp3 = long_mp3(120);
    let website = Website::start();
    let engine = Engine::with(
        options(backend, &website)
            .set("progress_interval", 1)
            .set("encoder", "ffmpeg"),
    );
    let audio = engine.upload(&mp3);
    start_job(&engine, &website, "spaced-1", &audio);
    let calls = website.wait_for(Duration::from_secs(300), "JobCompleted", |calls| {
        calls.iter().any(|c| c.method == "JobCompleted")
    });
    assert_eq!(
        check_job_calls(&calls, "spaced-1"),
        ("Success".to_owned(), 0)
    );
    let progress: Vec<&Received> = of_job(&calls, "spaced-1")
        .into_iter()
        .filter(|c| c.method == "JobProgress")
        .collect();
    assert!(
        progress.len() >= 2,
        "several progress calls expected: {:?}",
        summary(&calls)
    );
    for pair in progress.windows(2) {
        let gap = pair[1].at - pair[0].at;
        // Queued at least 1 s apart; delivery adds jitter of a few ms either way.
        assert!(
            gap >= Duration::from_millis(900),
            "progress calls {gap:?} apart: {:?}",
            summary(&calls)
        );
    }
});

engine_test!(kill_9_three_times_then_restart_loses_nothing, |backend| {
    let mp3 = long_mp3(600);
    let website = Website::start();
    let mut engine = Engine::with(
        options(backend, &website)
            .set("workers", 2)
            .set("max_attempts", 3)
            .set("encoder", "ffmpeg"),
    );
    let audio = engine.upload(&mp3);
    let short = engine.upload(&fixture("tone-20s.mp3"));
    let ids = ["crash-a", "crash-b", "crash-c"];
    start_job(&engine, &website, ids[0], &audio);
    start_job(&engine, &website, ids[1], &audio);
    start_job(&engine, &website, ids[2], &short);
    for round in 0..3 {
        engine.wait_state(ids[0], "InProgress", Duration::from_secs(60));
        engine.kill9();
        engine.restart();
        eprintln!("round {round}: restarted");
    }
    let mut outcomes = vec![];
    for id in ids {
        let job = engine.wait_end(id, Duration::from_secs(300));
        let (state, code) = (string(&job, "State"), int(&job, "ResultCode"));
        assert!(
            state == "Success" || (state == "Failed" && code == 7),
            "{id}: {job:?}"
        );
        outcomes.push((id, state, code));
    }
    // crash-a was InProgress at every kill: three deaths reach max_attempts.
    assert_eq!(outcomes[0].1, "Failed", "{outcomes:?}");
    let calls = website.wait_for(Duration::from_secs(60), "a JobCompleted per job", |calls| {
        ids.iter().all(|id| {
            calls
                .iter()
                .any(|c| c.method == "JobCompleted" && c.str(0) == *id)
        })
    });
    for (id, state, code) in &outcomes {
        assert_eq!(check_job_calls(&calls, id), (state.clone(), *code));
    }
    // At least once per start: a kill right after a delivery, before it
    // was marked delivered, sends it again on the next start.
    let started = calls.iter().filter(|c| c.method == "EngineStarted").count();
    assert!(
        (4..=7).contains(&started),
        "one EngineStarted per start: {:?}",
        summary(&calls)
    );
    assert!(crate::support::engine::descendants(engine.pid()).is_empty());
});

engine_test!(
    sigterm_stops_cleanly_and_the_job_finishes_after_restart,
    |backend| {
        let mp3 = long_mp3(120);
        let website = Website::start();
        let mut engine = Engine::with(
            options(backend, &website)
                .set("shutdown_grace", 10)
                .set("encoder", "ffmpeg"),
        );
        let audio = engine.upload(&mp3);
        start_job(&engine, &website, "term-1", &audio);
        engine.wait_state("term-1", "InProgress", Duration::from_secs(60));
        let asked = Instant::now();
        let status = engine.sigterm(Duration::from_secs(10));
        assert!(status.success(), "exit status {status:?}\n{}", engine.log());
        assert!(asked.elapsed() < Duration::from_secs(10));
        let calls = website.wait_for(Duration::from_secs(5), "EngineStopping", |calls| {
            calls
                .iter()
                .any(|c| c.method == "EngineStopping" && c.str(0) == "engine-under-test")
        });
        assert!(
            !calls.iter().any(|c| c.method == "JobCompleted"),
            "the job was not completed: {:?}",
            summary(&calls)
        );
        engine.restart();
        let job = engine.wait_end("term-1", Duration::from_secs(300));
        assert_eq!(string(&job, "State"), "Success", "{job:?}");
        let calls = website.wait_for(Duration::from_secs(30), "JobCompleted", |calls| {
            calls.iter().any(|c| c.method == "JobCompleted")
        });
        assert_eq!(check_job_calls(&calls, "term-1"), ("Success".to_owned(), 0));
    }
);

#[test]
fn postgres_restarted_under_load_loses_no_job() {
    let pg = PrivatePg::start();
    let mp3 = long_mp3(300);
    let website = Website::start();
    let engine = Engine::with(
        options(Backend::Postgres, &website)
            .database(&pg.url())
            .set("workers", 2),
    );
    let audio = engine.upload(&mp3);
    let ids: Vec<String> = (0..4).map(|i| format!("pg-{i}")).collect();
    for id in &ids {
        start_job(&engine, &website, id, &audio);
    }
    engine.wait_state(&ids[0], "InProgress", Duration::from_secs(60));
    pg.stop();
    // During the outage the engine answers, quickly, with 7.
    let asked = Instant::now();
    let (code, msg, _) = engine.op("GetJob", &[&ids[0]]);
    assert_eq!(code, 7, "{msg}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "answered in {:?}",
        asked.elapsed()
    );
    assert!(msg.contains("retry"), "{msg}");
    let (status, body) = engine.get("/healthz");
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    pg.start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.get("/healthz").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "not ready again after the restart\n{}",
            engine.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (code, _, v) = engine.op("GetJob", &[id]);
            if code == 0 {
                let state = string(v.member("Job").unwrap(), "State");
                if state == "Success" {
                    break;
                }
                assert_ne!(state, "Failed", "{id}: {v:?}\n{}", engine.log());
            }
            assert!(
                Instant::now() < deadline,
                "{id} did not finish after the restart\n{}",
                engine.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let calls = website.wait_for(Duration::from_secs(60), "every JobCompleted", |calls| {
        ids.iter().all(|id| {
            calls
                .iter()
                .any(|c| c.method == "JobCompleted" && c.str(0) == id)
        })
    });
    for id in &ids {
        assert_eq!(check_job_calls(&calls, id), ("Success".to_owned(), 0));
    }
}

engine_test!(a_deleted_job_sends_no_completion, |backend| {
    let mp3 = long_mp3(600);
    let website = Website::start();
    let engine = Engine::with(
        options(backend, &website)
            .set("encoder", "ffmpeg")
            .set("workers", 1),
    );
    let long = engine.upload(&mp3);
    let short = engine.upload(&fixture("tone-20s.mp3"));
    start_job(&engine, &website, "doomed", &long);
    engine.wait_state("doomed", "InProgress", Duration::from_secs(60));
    assert_eq!(engine.op("DeleteJob", &["doomed"]).0, 0);
    assert!(
        crate::support::engine::descendants(engine.pid()).is_empty(),
        "the encoder was stopped"
    );
    // Calls go out in the order they were queued: once the next job's
    // completion has arrived, a completion of the deleted job would have too.
    start_job(&engine, &website, "after", &short);
    let calls = website.wait_for(
        Duration::from_secs(120),
        "JobCompleted of the next job",
        |calls| {
            calls
                .iter()
                .any(|c| c.method == "JobCompleted" && c.str(0) == "after")
        },
    );
    assert!(
        of_job(&calls, "doomed")
            .iter()
            .all(|c| c.method != "JobCompleted"),
        "{:?}",
        summary(&calls)
    );
    assert!(
        std::fs::read_dir(engine.data_dir.join("work"))
            .unwrap()
            .next()
            .is_none(),
        "work dirs removed"
    );
});

engine_test!(heartbeat_and_sighup_reload, |backend| {
    let website = Website::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jobengine.toml");
    std::fs::write(&config, "progress_interval = 5\nheartbeat_interval = 1\n").unwrap();
    let engine = Engine::with(options(backend, &website).config_file(&config));
    website.wait_for(Duration::from_secs(10), "two EngineAlive", |calls| {
        calls
            .iter()
            .filter(|c| c.method == "EngineAlive" && c.str(0) == "engine-under-test")
            .count()
            >= 2
    });
    std::fs::write(
        &config,
        "progress_interval = 2\nheartbeat_interval = 1\nworkers = 7\n",
    )
    .unwrap();
    engine.signal(libc::SIGHUP);
    engine.wait_log(
        "reload: progress_interval: 5s → 2s",
        Duration::from_secs(10),
    );
    engine.wait_log("reload: workers:", Duration::from_secs(1));
    assert!(
        engine.log().contains("(needs a restart to take effect)"),
        "{}",
        engine.log()
    );
    engine.wait_log(
        "sweep: 0 Started job(s) queued again",
        Duration::from_secs(1),
    );
    // A broken file is refused and the running configuration kept.
    std::fs::write(&config, "colour = 3\n").unwrap();
    engine.signal(libc::SIGHUP);
    engine.wait_log(
        "reload refused, keeping the running configuration",
        Duration::from_secs(10),
    );
    assert_eq!(engine.get("/healthz").0, 200);
});

engine_test!(while_stopping_new_work_is_refused_with_7, |backend| {
    let website = Website::start();
    let mut engine = Engine::with(options(backend, &website).set("shutdown_grace", 4));
    website.wait_for(Duration::from_secs(10), "EngineStarted", |calls| {
        calls.iter().any(|c| c.method == "EngineStarted")
    });
    // A website that never answers keeps the engine in its stop for the
    // whole grace, trying to deliver EngineStopping.
    website.set_mode(Mode::Hang);
    let audio = engine.upload(&fixture("tone-20s.mp3"));
    let details = format!("<EncoderJob><AudioFile>{audio}</AudioFile></EncoderJob>");
    assert_eq!(
        engine
            .op("CreateJob", &["late-start", "EncoderJob", &details, ""])
            .0,
        0
    );
    engine.signal(libc::SIGTERM);
    engine.wait_log("stopping: no new jobs", Duration::from_secs(5));
    let (code, msg, _) = engine.op("CreateJob", &["late", "EncoderJob", &details, ""]);
    assert_eq!(code, 7, "{msg}");
    assert!(msg.contains("retry later"), "{msg}");
    assert_eq!(engine.op("StartJob", &["late-start"]).0, 7);
    assert_eq!(
        engine.op("GetJob", &["late-start"]).0,
        0,
        "reads still work while stopping"
    );
    assert_eq!(engine.get("/healthz").0, 503);
    let status = engine.sigterm_wait(Duration::from_secs(8));
    assert!(status.success(), "{status:?}\n{}", engine.log());
    website.set_mode(Mode::Up);
});

/// Rows of the engine's outbox as (method, state, attempts), oldest first.
fn outbox(engine: &Engine) -> Vec<(String, String, i32)> {
    let sql = "SELECT method, state, attempts FROM outbox ORDER BY id";
    match engine.database.strip_prefix("sqlite:") {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).unwrap();
            let mut stmt = conn.prepare(sql).unwrap();
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap();
            rows.map(Result::unwrap).collect()
        }
        None => {
            let mut client = postgres::Client::connect(&engine.database, postgres::NoTls).unwrap();
            client
                .query(sql, &[])
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect()
        }
    }
}

engine_test!(
    a_call_past_callback_give_up_is_marked_undeliverable,
    |backend| {
        let website = Website::start();
        website.set_mode(Mode::Down);
        let engine = Engine::with(options(backend, &website).set("callback_give_up", 2));
        let audio = engine.upload(&fixture("tone-20s.mp3"));
        start_job(&engine, &website, "given-up", &audio);
        engine.wait_end("given-up", Duration::from_secs(60));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let rows = outbox(&engine);
            let completed = rows.iter().find(|(m, _, _)| m == "JobCompleted").cloned();
            if let Some((_, state, attempts)) = completed.filter(|(_, s, _)| s != "pending") {
                assert_eq!(state, "undeliverable", "{rows:?}");
                assert!(attempts >= 1, "{rows:?}");
                break;
            }
            assert!(Instant::now() < deadline, "still pending: {rows:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            engine
                .log()
                .contains("JobCompleted for job given-up undeliverable"),
            "{}",
            engine.log()
        );
    }
);
