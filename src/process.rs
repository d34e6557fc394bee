//! Runs a child process (an encoder or a probe) with a bound on everything:
//! its run time, its silence, the memory its output may take, and the time
//! a stop request takes to reach it.
//!
//! A child is started from an argv (never through a shell) in a process
//! group of its own, stdin closed. stdout and stderr are each read on their
//! own thread, so a chatty child cannot fill a pipe and deadlock (ripgrep's
//! lesson, STYLE.md §1). stdout is split into lines on `\r` and `\n` (an
//! encoder's progress lines end with `\r`) and handed to the caller, who
//! says which lines showed progress; the other lines, and stderr, are kept
//! only as a bounded tail for error messages (ffmpeg fed a bad image writes
//! 8 MB/s of errors to stderr, MEDIA-NOTES A5).
//!
//! The wait loop wakes on each stdout line and the moment the child exits
//! (a thread blocks in `waitid` for it), and at least every [`TICK`]: it
//! asks the caller's stop check, delivers lines, and looks at the deadline
//! and the stall watchdog. (It used to sleep the whole tick in the stop
//! check, so every child's end was seen up to a tick late: 5 children per
//! encode cost about 140 ms, measured by bench/run.) Ending a child means SIGTERM to its whole group,
//! SIGKILL after a grace period, and always a reap. The group is also
//! SIGKILLed once the leader exits, before it is reaped (so its id cannot
//! have been reused): nothing a tool started outlives it.
//!
//! Known deficiency: a child that puts itself in another group or session
//! and keeps our pipes open escapes the group kill; we then stop reading
//! its output after [`DRAIN_LIMIT`] and leave the reader threads behind.
//!
//! May use: nothing else in the crate.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The longest the wait loop sleeps before it looks at the stop check, the
/// clock and the watchdog again (a line or the child's exit wakes it at once).
pub const TICK: Duration = Duration::from_millis(50);
/// Longest wait for the output pipes to close once the child has gone.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// Longest stdout line passed on; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 4096;
/// Lines waiting for the caller; the reader blocks (and so the child) when full.
const LINE_QUEUE: usize = 256;

/// What to run and the bounds to run it in.
#[derive(Clone, Debug)]
pub struct Spec {
    /// A program name looked up in PATH, or a path.
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Working directory; it must exist.
    pub cwd: Option<PathBuf>,
    /// Longest run; the child is ended after it ([`Ended::TimedOut`]).
    pub timeout: Duration,
    /// Longest time without a progress line; None = no watchdog.
    pub stall: Option<Duration>,
    /// Between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Bytes of non-progress stdout lines kept.
    pub stdout_tail: usize,
    /// Bytes of stderr kept (the last ones).
    pub stderr_tail: usize,
}

impl Spec {
    /// A spec with the defaults: 60 s timeout, no stall watchdog, 1 s kill
    /// grace, 16 KiB of stdout and 4 KiB of stderr kept.
    pub fn new<S: Into<OsString>>(
        program: impl Into<OsString>,
        args: impl IntoIterator<Item = S>,
    ) -> Spec {
        Spec {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            cwd: None,
            timeout: Duration::from_secs(60),
            stall: None,
            kill_grace: Duration::from_secs(1),
            stdout_tail: 16 * 1024,
            stderr_tail: 4 * 1024,
        }
    }

    pub fn timeout(mut self, timeout: Duration) -> Spec {
        self.timeout = timeout;
        self
    }

    pub fn stall(mut self, stall: Duration) -> Spec {
        self.stall = Some(stall);
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Spec {
        self.cwd = Some(dir.into());
        self
    }

    fn program_name(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }
}

/// A child that exited with code 0: what it left in its tails.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// The last non-progress stdout lines, joined by `\n`.
    pub stdout: String,
    /// The last bytes of stderr.
    pub stderr: String,
}

/// How a run that was not a success ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The program does not exist (not in PATH, or no such file).
    NotFound,
    /// It exists but could not be started (permissions, bad cwd, no memory).
    SpawnFailed,
    /// Exited by itself with this non-zero code.
    Exited(i32),
    /// Killed by a signal we did not send.
    Signalled(i32),
    /// The caller's stop check asked for it; we ended it.
    Stopped,
    /// Ran past [`Spec::timeout`]; we ended it.
    TimedOut,
    /// No progress line for [`Spec::stall`]; we ended it.
    Stalled,
}

/// A run that was not a success, with what the child said.
#[derive(Debug)]
pub struct ChildError {
    pub program: String,
    /// How it ended; an exit code or a signal is the exit status.
    pub ended: Ended,
    /// Why spawning failed, for NotFound and SpawnFailed.
    pub io: Option<io::Error>,
    /// How long the child ran.
    pub ran: Duration,
    /// The bound that was hit, for TimedOut and Stalled.
    pub limit: Option<Duration>,
    pub stdout: String,
    pub stderr: String,
}

impl ChildError {
    pub fn is_not_found(&self) -> bool {
        self.ended == Ended::NotFound
    }

    /// The last few lines the child wrote to stderr (or, if none, to
    /// stdout), for a message a person reads; empty if it said nothing.
    pub fn said(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        last_lines(text, 5, 600)
    }
}

impl fmt::Display for ChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.program;
        let secs = |d: Option<Duration>| d.unwrap_or(self.ran).as_secs_f64();
        match self.ended {
            Ended::NotFound => write!(f, "{p} not found")?,
            Ended::SpawnFailed => match &self.io {
                Some(e) => write!(f, "{p} could not be started: {e}")?,
                None => write!(f, "{p} could not be started")?,
            },
            Ended::Exited(code) => write!(f, "{p} exited with code {code}")?,
            Ended::Signalled(sig) => write!(f, "{p} was killed by signal {sig}")?,
            Ended::Stopped => write!(f, "{p} was stopped")?,
            Ended::TimedOut => write!(f, "{p} did not finish within {:.0} s", secs(self.limit))?,
            Ended::Stalled => write!(f, "{p} made no progress for {:.0} s", secs(self.limit))?,
        }
        let said = self.said();
        if !said.is_empty() {
            write!(f, ": {said}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ChildError {}

/// A stop check for runs nobody stops: sleeps the tick, never says stop.
pub fn never_stop(tick: Duration) -> bool {
    thread::sleep(tick);
    false
}

/// Runs a child whose stdout is only kept (a probe): every line goes to the
/// tail, there is no stall watchdog.
pub fn output(spec: &Spec, stop: &dyn Fn(Duration) -> bool) -> Result<Output, ChildError> {
    run(spec, stop, &mut |_| false)
}

/// Runs `spec` to its end. `stop(tick)` waits up to `tick` and returns true
/// once the child must be stopped; `on_line` gets each stdout line and
/// returns true when the line showed progress (which feeds the stall
/// watchdog and keeps the line out of the tail). Exit code 0 is `Ok`.
pub fn run(
    spec: &Spec,
    stop: &dyn Fn(Duration) -> bool,
    on_line: &mut dyn FnMut(&str) -> bool,
) -> Result<Output, ChildError> {
    let started = Instant::now();
    let fail = |ended: Ended, io: Option<io::Error>| ChildError {
        program: spec.program_name(),
        ended,
        io,
        ran: Duration::ZERO,
        limit: None,
        stdout: String::new(),
        stderr: String::new(),
    };
    if let Some(dir) = &spec.cwd {
        if !dir.is_dir() {
            let e = io::Error::new(
                io::ErrorKind::NotFound,
                format!("working directory {} does not exist", dir.display()),
            );
            return Err(fail(Ended::SpawnFailed, Some(e)));
        }
    }
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // The child dies with the engine (kill -9 included) instead of running
    // on unowned: a restarted engine runs the job again from the start.
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(fail(Ended::NotFound, Some(e)))
        }
        Err(e) => return Err(fail(Ended::SpawnFailed, Some(e))),
    };
    // process_group(0): the group's id is the child's pid.
    let pid = child.id() as libc::pid_t;

    // Some(line) from the stdout reader; None once the leader has exited.
    let (line_tx, lines) = mpsc::sync_channel::<Option<String>>(LINE_QUEUE);
    let exit_tx = line_tx.clone();
    thread::spawn(move || {
        wait_exit(pid);
        let _ = exit_tx.send(None);
    });
    if let Some(out) = child.stdout.take() {
        thread::spawn(move || read_lines(out, line_tx));
    }
    let (err_tx, err_rx) = mpsc::channel::<Vec<u8>>();
    if let Some(err) = child.stderr.take() {
        let keep = spec.stderr_tail;
        thread::spawn(move || {
            let _ = err_tx.send(read_tail(err, keep));
        });
    }

    let mut stdout = Tail::new(spec.stdout_tail);
    let mut deliver = |line: String, last_progress: &mut Instant| {
        if on_line(&line) {
            *last_progress = Instant::now();
        } else {
            stdout.push(line);
        }
    };

    let mut last_progress = started;
    let mut limit = None;
    let ours = loop {
        // Woken by a line, the child's exit, or the tick.
        if let Ok(Some(line)) = lines.recv_timeout(TICK) {
            deliver(line, &mut last_progress);
        }
        if stop(Duration::ZERO) {
            break Some(Ended::Stopped);
        }
        while let Ok(message) = lines.try_recv() {
            if let Some(line) = message {
                deliver(line, &mut last_progress);
            }
        }
        if leader_exited(pid) {
            break None;
        }
        if started.elapsed() >= spec.timeout {
            limit = Some(spec.timeout);
            break Some(Ended::TimedOut);
        }
        if let Some(stall) = spec.stall {
            if last_progress.elapsed() >= stall {
                limit = Some(stall);
                break Some(Ended::Stalled);
            }
        }
    };
    if ours.is_some() {
        signal_group(pid, libc::SIGTERM);
        let grace_end = Instant::now() + spec.kill_grace;
        while !leader_exited(pid) && Instant::now() < grace_end {
            thread::sleep(Duration::from_millis(5));
        }
    }
    let status = finish(&mut child, pid);

    // The pipes close once every holder is gone; deliver what is left.
    let drain_end = Instant::now() + DRAIN_LIMIT;
    loop {
        let left = drain_end.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(Some(line)) => deliver(line, &mut last_progress),
            Ok(None) => {}
            Err(_) => break,
        }
    }
    let left = drain_end.saturating_duration_since(Instant::now());
    let stderr = err_rx.recv_timeout(left).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    let stdout = stdout.text();

    let ended = match (ours, &status) {
        (Some(ended), _) => ended,
        (None, Ok(st)) => match (st.code(), st.signal()) {
            (Some(0), _) => return Ok(Output { stdout, stderr }),
            (Some(code), _) => Ended::Exited(code),
            (None, Some(sig)) => Ended::Signalled(sig),
            (None, None) => Ended::Exited(-1),
        },
        // Reaping failed: the child is gone from our view; report it as
        // lost rather than guess a code.
        (None, Err(_)) => Ended::Signalled(libc::SIGKILL),
    };
    Err(ChildError {
        program: spec.program_name(),
        ended,
        io: None,
        ran: started.elapsed(),
        limit,
        stdout,
        stderr,
    })
}

/// Blocks until the child `pid` has exited (or can no longer be waited
/// on), without reaping it (WNOWAIT): [`finish`] reaps it.
fn wait_exit(pid: libc::pid_t) {
    loop {
        // SAFETY: waitid only writes into the zeroed siginfo_t we own.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// Has the child `pid` exited? Looks without reaping (WNOWAIT), so the pid
/// and the group id stay ours until [`finish`].
fn leader_exited(pid: libc::pid_t) -> bool {
    loop {
        // SAFETY: waitid only writes into the zeroed siginfo_t we own.
        let (rc, exited) = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let rc = libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            (rc, info.si_pid() != 0)
        };
        if rc == 0 {
            return exited;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            // ECHILD: not our child any more (someone reaped it), so it
            // has exited; anything else cannot be waited on either.
            _ => return true,
        }
    }
}

fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill has no memory effects; a negative pid names the group
    // this module created, whose leader is not yet reaped. ESRCH (group
    // already empty) is fine.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Kills whatever is left of the group, then reaps the leader.
fn finish(child: &mut Child, pid: libc::pid_t) -> io::Result<ExitStatus> {
    // The leader may still be running if it ignored SIGTERM.
    signal_group(pid, libc::SIGKILL);
    child.wait()
}

/// Reads `out` to its end, sending lines split on `\r` and `\n` (empty ones
/// skipped, long ones cut at [`MAX_LINE`]). Stops sending, but keeps
/// draining the pipe, once the receiver has gone.
fn read_lines(mut out: impl Read, tx: mpsc::SyncSender<Option<String>>) {
    let mut buf = [0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    let mut open = true;
    let send = |line: &mut Vec<u8>, open: &mut bool| {
        if !line.is_empty() && *open {
            let text = String::from_utf8_lossy(line).into_owned();
            *open = tx.send(Some(text)).is_ok();
        }
        line.clear();
    };
    loop {
        let n = match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for &b in &buf[..n] {
            if b == b'\r' || b == b'\n' {
                send(&mut line, &mut open);
                cut = false;
            } else if line.len() < MAX_LINE && !cut {
                line.push(b);
            } else {
                cut = true;
            }
        }
    }
    send(&mut line, &mut open);
}

/// Reads `err` to its end, keeping only the last `keep` bytes.
fn read_tail(mut err: impl Read, keep: usize) -> Vec<u8> {
    let mut buf = [0u8; 8192];
    let mut tail: Vec<u8> = Vec::with_capacity(2 * keep.min(1 << 20));
    loop {
        let n = match err.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 2 * keep {
            tail.drain(..tail.len() - keep);
        }
    }
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
    }
    tail
}

/// The last lines, at most `max` bytes of them.
struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
    max: usize,
}

impl Tail {
    fn new(max: usize) -> Tail {
        Tail {
            lines: VecDeque::new(),
            bytes: 0,
            max,
        }
    }

    fn push(&mut self, line: String) {
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.bytes > self.max {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len() + 1,
                None => break,
            }
        }
    }

    fn text(&self) -> String {
        let v: Vec<&str> = self.lines.iter().map(String::as_str).collect();
        v.join("\n")
    }
}

/// The last `lines` non-blank lines of `text`, at most `max` characters,
/// joined by " / " so they fit in one message line.
pub fn last_lines(text: &str, lines: usize, max: usize) -> String {
    let picked: Vec<&str> = text
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let from = picked.len().saturating_sub(lines);
    let joined = picked[from..].join(" / ");
    let count = joined.chars().count();
    if count <= max {
        joined
    } else {
        let skip = count - max;
        format!("…{}", joined.chars().skip(skip + 1).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn sh(script: &str) -> Spec {
        Spec::new("/bin/sh", ["-c", script]).timeout(Duration::from_secs(20))
    }

    fn alive(pid: libc::pid_t) -> bool {
        // Zombies count as gone: they hold no resources but a table slot.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => {
                let state = stat
                    .rsplit(')')
                    .next()
                    .and_then(|s| s.split_whitespace().next());
                state != Some("Z")
            }
            Err(_) => false,
        }
    }

    /// Polls `cond` until it holds or `limit` passes.
    fn eventually(limit: Duration, cond: impl Fn() -> bool) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if cond() {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        cond()
    }

    /// Fails if `pid` is still alive after a while, killing it first so a
    /// failed run leaves nothing behind.
    fn assert_gone(pid: libc::pid_t, what: &str) {
        if !eventually(Duration::from_secs(5), || !alive(pid)) {
            // SAFETY: plain kill of a pid this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{what}: pid {pid}");
        }
    }

    #[test]
    fn success_keeps_output_tails() {
        let out = output(
            &sh("echo out1; echo err1 >&2; printf 'a\\rb\\r\\nc'"),
            &never_stop,
        )
        .unwrap();
        assert_eq!(out.stdout, "out1\na\nb\nc");
        assert_eq!(out.stderr, "err1\n");
    }

    #[test]
    fn progress_lines_go_to_the_caller_not_the_tail() {
        let mut seen = Vec::new();
        let out = run(
            &sh("printf 'Pos: 1\\rPos: 2\\rnote\\nPos: 3\\n'"),
            &never_stop,
            &mut |l| {
                seen.push(l.to_owned());
                l.starts_with("Pos:")
            },
        )
        .unwrap();
        assert_eq!(seen, ["Pos: 1", "Pos: 2", "note", "Pos: 3"]);
        assert_eq!(out.stdout, "note");
    }

    #[test]
    fn exit_code_and_stderr_tail_in_the_error() {
        let e = output(&sh("echo 'Cannot open demuxer.' >&2; exit 3"), &never_stop).unwrap_err();
        assert_eq!(e.ended, Ended::Exited(3));
        assert_eq!(e.said(), "Cannot open demuxer.");
        assert!(
            e.to_string()
                .contains("exited with code 3: Cannot open demuxer."),
            "{e}"
        );
    }

    #[test]
    fn killed_by_foreign_signal() {
        let e = output(&sh("kill -9 $$"), &never_stop).unwrap_err();
        assert_eq!(e.ended, Ended::Signalled(libc::SIGKILL));
    }

    #[test]
    fn missing_program_is_not_found() {
        let e = output(&Spec::new("jobengine-no-such-tool", ["-v"]), &never_stop).unwrap_err();
        assert!(e.is_not_found(), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("jobengine-no-such-tool not found"),
            "{e}"
        );
        let e = output(
            &Spec::new("/nonexistent/dir/tool", Vec::<String>::new()),
            &never_stop,
        )
        .unwrap_err();
        assert!(e.is_not_found(), "{e:?}");
    }

    #[test]
    fn not_executable_and_missing_cwd_are_spawn_failures() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data.txt");
        std::fs::write(&file, "not a program").unwrap();
        let e = output(
            &Spec::new(file.as_os_str(), Vec::<String>::new()),
            &never_stop,
        )
        .unwrap_err();
        assert_eq!(e.ended, Ended::SpawnFailed, "{e:?}");
        let e = output(&sh("true").cwd(dir.path().join("gone")), &never_stop).unwrap_err();
        assert_eq!(e.ended, Ended::SpawnFailed, "{e:?}");
        assert!(e.to_string().contains("does not exist"), "{e}");
    }

    #[test]
    fn cwd_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let out = output(&sh("pwd").cwd(dir.path()), &never_stop).unwrap();
        let want = dir.path().canonicalize().unwrap();
        assert_eq!(
            PathBuf::from(out.stdout.trim()).canonicalize().unwrap(),
            want
        );
    }

    #[test]
    fn timeout_ends_the_child() {
        let e = output(
            &sh("exec sleep 30").timeout(Duration::from_millis(300)),
            &never_stop,
        )
        .unwrap_err();
        assert_eq!(e.ended, Ended::TimedOut);
        assert_eq!(e.limit, Some(Duration::from_millis(300)));
        assert!(e.ran < Duration::from_secs(30), "{:?}", e.ran);
        assert!(e.to_string().contains("did not finish within"), "{e}");
    }

    #[test]
    fn stall_watchdog_kills_a_silent_child_but_not_a_progressing_one() {
        let spec = sh("echo P; exec sleep 30").stall(Duration::from_millis(300));
        let e = run(&spec, &never_stop, &mut |l| l == "P").unwrap_err();
        assert_eq!(e.ended, Ended::Stalled);
        assert!(e.to_string().contains("made no progress"), "{e}");

        // Progress every 0.1 s for longer than the stall limit: no kill.
        let spec = sh("for i in 1 2 3 4 5 6 7 8; do echo P; sleep 0.1; done")
            .stall(Duration::from_millis(500));
        let mut n = 0;
        run(&spec, &never_stop, &mut |l| {
            n += 1;
            l == "P"
        })
        .unwrap();
        assert_eq!(n, 8);

        // Lines that are not progress do not feed the watchdog.
        let spec =
            sh("while true; do echo noise; sleep 0.05; done").stall(Duration::from_millis(300));
        let e = run(&spec, &never_stop, &mut |_| false).unwrap_err();
        assert_eq!(e.ended, Ended::Stalled);
        assert!(e.stdout.contains("noise"));
    }

    #[test]
    fn stop_kills_the_whole_group_including_a_grandchild() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        // The grandchild ignores SIGTERM, so only the SIGKILL after the
        // grace period ends it.
        let script = format!(
            "sh -c 'trap \"\" TERM; echo $$ > {p}.tmp; mv {p}.tmp {p}; while true; do sleep 0.05; done' & echo started; wait",
            p = pidfile.display()
        );
        let stop = Arc::new(AtomicBool::new(false));
        let stop_check = {
            let stop = stop.clone();
            move |tick: Duration| {
                thread::sleep(tick);
                stop.load(Ordering::SeqCst)
            }
        };
        let watcher = {
            let stop = stop.clone();
            let pidfile = pidfile.clone();
            thread::spawn(move || {
                assert!(
                    eventually(Duration::from_secs(10), || pidfile.exists()),
                    "grandchild never started"
                );
                stop.store(true, Ordering::SeqCst);
                std::fs::read_to_string(&pidfile)
                    .unwrap()
                    .trim()
                    .parse::<libc::pid_t>()
                    .unwrap()
            })
        };
        let mut spec = sh(&script);
        spec.kill_grace = Duration::from_millis(200);
        let e = output(&spec, &stop_check).unwrap_err();
        let grandchild = watcher.join().unwrap();
        assert_eq!(e.ended, Ended::Stopped);
        assert_gone(grandchild, "grandchild survived the group kill");
    }

    #[test]
    fn leftover_group_members_are_killed_when_the_leader_exits() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("bg.pid");
        // The leader starts a background sleeper (stdout closed, so our
        // pipe does not wait for it) and exits 0 at once.
        let script = format!(
            "sleep 30 >/dev/null 2>&1 & echo $! > {p}; exit 0",
            p = pidfile.display()
        );
        output(&sh(&script), &never_stop).unwrap();
        let bg: libc::pid_t = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_gone(bg, "background member outlived its leader");
    }

    #[test]
    fn stop_is_seen_quickly_through_the_stop_check() {
        let signal = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let stop_check = {
            let signal = signal.clone();
            move |tick: Duration| {
                let (lock, cv) = &*signal;
                let g = lock.lock().unwrap();
                let (g, _) = cv.wait_timeout_while(g, tick, |s| !*s).unwrap();
                *g
            }
        };
        let spec = sh("echo go; exec sleep 30");
        let asked = std::sync::Mutex::new(None::<Instant>);
        let e = run(&spec, &stop_check, &mut |l| {
            if l == "go" {
                *asked.lock().unwrap() = Some(Instant::now());
                let (lock, cv) = &*signal;
                *lock.lock().unwrap() = true;
                cv.notify_all();
            }
            false
        })
        .unwrap_err();
        let took = asked.lock().unwrap().map(|t| t.elapsed());
        assert_eq!(e.ended, Ended::Stopped);
        assert!(took.is_some(), "the progress line never arrived");
        eprintln!("stop to reaped: {took:?}");
    }

    #[test]
    fn a_childs_end_is_seen_at_once_not_at_the_next_tick() {
        // An encode runs five short tools in a row; waiting out a tick
        // after each one's end added up (bench/run). With the stop check
        // sleeping every tick it is asked for, five runs of `true` took at
        // least five ticks; the exit must wake the loop instead.
        let started = Instant::now();
        for _ in 0..5 {
            output(&Spec::new("true", Vec::<OsString>::new()), &never_stop).unwrap();
        }
        let took = started.elapsed();
        assert!(took < 5 * TICK, "5 runs of `true` took {took:?}");
    }

    #[test]
    fn huge_stderr_is_bounded_and_does_not_block() {
        // 8 MiB to stderr, 2 MiB of one endless stdout line.
        let spec = sh("head -c 8388608 /dev/zero | tr '\\0' 'e' >&2; head -c 2097152 /dev/zero | tr '\\0' 'o'; echo; echo END >&2");
        let out = output(&spec, &never_stop).unwrap();
        assert!(out.stderr.len() <= spec.stderr_tail, "{}", out.stderr.len());
        assert!(out.stderr.ends_with("eeeEND\n"), "tail lost the end");
        assert_eq!(out.stdout.len(), MAX_LINE, "a long line is cut at MAX_LINE");
    }

    #[test]
    fn stdout_tail_keeps_the_last_lines() {
        let mut spec = sh("i=0; while [ $i -lt 1000 ]; do echo line$i; i=$((i+1)); done");
        spec.stdout_tail = 64;
        let out = output(&spec, &never_stop).unwrap();
        assert!(out.stdout.len() <= 64, "{}", out.stdout.len());
        assert!(out.stdout.ends_with("line998\nline999"), "{}", out.stdout);
    }

    #[test]
    fn last_lines_picks_and_cuts() {
        assert_eq!(last_lines("a\n\nb\r\nc\n", 2, 100), "b / c");
        assert_eq!(last_lines("", 2, 100), "");
        let cut = last_lines(&"x".repeat(50), 1, 10);
        assert_eq!(cut.chars().count(), 10);
        assert!(cut.starts_with('…'));
    }
}
