//! Method names to handlers, positional string parameters to domain calls,
//! and every outcome to a result struct or a fault, in one place.
//!
//! Operation failures are result structs with a ResultCode and a message a
//! person can act on (contract §1); faults are for protocol errors only.

use crate::config::LiveConfig;
use crate::files::Files;
use crate::job::details::{self, Details};
use crate::job::{JobId, JobKind, JobSummary, NewJob};
use crate::kinds::StopReason;
use crate::protocol::{Fault, MethodCall, Value};
use crate::shorten;
use crate::store::{self, Change, Insert, Store};
use crate::worker::Handle;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Operation ResultCodes (contract §3, first table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Code {
    Ok = 0,
    NotFound = 1,
    AlreadyExists = 2,
    UnknownJobType = 3,
    InvalidJobDetails = 4,
    InvalidState = 5,
    InvalidArgument = 6,
    Unavailable = 7,
    Internal = 8,
}

/// A failed operation: its code and message.
#[derive(Debug)]
struct Refusal(Code, String);

type OpResult<T> = Result<T, Refusal>;

impl From<store::Error> for Refusal {
    fn from(e: store::Error) -> Refusal {
        if e.is_transient() {
            Refusal(
                Code::Unavailable,
                format!("storage is unavailable ({e}); retry later"),
            )
        } else {
            log::error!("store error: {e}");
            Refusal(Code::Internal, format!("internal error in the store: {e}"))
        }
    }
}

/// Longest time DeleteJob waits for a cancelled job's worker to let go.
const DELETE_WAIT: Duration = Duration::from_secs(3);

pub struct Api {
    store: Arc<dyn Store>,
    files: Files,
    workers: Handle,
    config: Arc<LiveConfig>,
    /// False while starting and once shutting down: CreateJob/StartJob answer 7.
    accepting: Arc<AtomicBool>,
}

/// One XML-RPC method: its name, help text and signature (return type first).
struct Method {
    name: &'static str,
    help: &'static str,
    params: &'static [&'static str],
}

const OPERATIONS: &[Method] = &[
    Method {
        name: "CreateJob",
        help: "CreateJob(JobID, JobType, JobDetails, Callback) -> {ResultCode, ErrorMessage, JobID}. \
               Creates a job in state Created; an empty JobID gets a generated UUID.",
        params: &["JobID", "JobType", "JobDetails", "Callback"],
    },
    Method {
        name: "GetJob",
        help: "GetJob(JobID) -> {ResultCode, ErrorMessage, Job}.",
        params: &["JobID"],
    },
    Method {
        name: "StartJob",
        help: "StartJob(JobID) -> {ResultCode, ErrorMessage}. Queues a Created job.",
        params: &["JobID"],
    },
    Method {
        name: "GetProgress",
        help: "GetProgress(JobID) -> {ResultCode, ErrorMessage, Progress}.",
        params: &["JobID"],
    },
    Method {
        name: "CancelJob",
        help: "CancelJob(JobID) -> {ResultCode, ErrorMessage}. Stops a Started or InProgress job.",
        params: &["JobID"],
    },
    Method {
        name: "DeleteJob",
        help: "DeleteJob(JobID) -> {ResultCode, ErrorMessage}. Cancels if running, then removes every trace.",
        params: &["JobID"],
    },
];

const SYSTEM_METHODS: &[&str] = &[
    "system.listMethods",
    "system.methodHelp",
    "system.methodSignature",
    "system.multicall",
];

impl Api {
    pub fn new(
        store: Arc<dyn Store>,
        files: Files,
        workers: Handle,
        config: Arc<LiveConfig>,
        accepting: Arc<AtomicBool>,
    ) -> Api {
        Api {
            store,
            files,
            workers,
            config,
            accepting,
        }
    }

    /// Runs one XML-RPC call.
    pub fn call(&self, call: &MethodCall) -> Result<Value, Fault> {
        self.call_depth(&call.method, &call.params, 0)
    }

    fn call_depth(&self, method: &str, params: &[Value], depth: usize) -> Result<Value, Fault> {
        match method {
            "system.listMethods" => {
                no_params(method, params)?;
                let mut names: Vec<&str> = OPERATIONS
                    .iter()
                    .map(|m| m.name)
                    .chain(SYSTEM_METHODS.iter().copied())
                    .collect();
                names.sort_unstable();
                Ok(Value::Array(names.into_iter().map(Value::str).collect()))
            }
            "system.methodHelp" => {
                let [name] = strings::<1>(method, params, &["methodName"])?;
                Ok(Value::str(find(&name).map_or("", |m| m.help)))
            }
            "system.methodSignature" => {
                let [name] = strings::<1>(method, params, &["methodName"])?;
                Ok(match find(&name) {
                    Some(m) => {
                        let sig =
                            std::iter::once("struct").chain(m.params.iter().map(|_| "string"));
                        Value::Array(vec![Value::Array(sig.map(Value::str).collect())])
                    }
                    None => Value::str("signatures not supported"),
                })
            }
            "system.multicall" => self.multicall(params, depth),
            _ => {
                let op = find(method).ok_or_else(|| {
                    Fault::new(
                        Fault::METHOD_NOT_FOUND,
                        format!(
                            "method '{}' is not supported; see system.listMethods",
                            shorten(method, 64)
                        ),
                    )
                })?;
                Ok(self.operation(op, params)?)
            }
        }
    }

    fn multicall(&self, params: &[Value], depth: usize) -> Result<Value, Fault> {
        let calls = match params {
            [Value::Array(calls)] => calls,
            _ => {
                return Err(Fault::new(
                    Fault::INVALID_PARAMS,
                    "system.multicall expects one array of {methodName, params} structs",
                ))
            }
        };
        if depth > 0 {
            return Err(Fault::new(
                Fault::INVALID_REQUEST,
                "system.multicall may not be nested",
            ));
        }
        let mut results = Vec::with_capacity(calls.len());
        for (i, call) in calls.iter().enumerate() {
            let (Some(Value::String(name)), Some(Value::Array(args))) =
                (call.member("methodName"), call.member("params"))
            else {
                return Err(Fault::new(
                    Fault::INVALID_PARAMS,
                    format!(
                        "system.multicall entry {i} needs a methodName string and a params array"
                    ),
                ));
            };
            results.push(match self.call_depth(name, args, depth + 1) {
                Ok(v) => Value::Array(vec![v]),
                Err(f) => Value::Struct(vec![
                    ("faultCode".into(), Value::Int(f.code)),
                    ("faultString".into(), Value::str(f.message)),
                ]),
            });
        }
        Ok(Value::Array(results))
    }

    fn operation(&self, op: &Method, params: &[Value]) -> Result<Value, Fault> {
        let reply = match op.name {
            "CreateJob" => {
                let [id, kind, details, callback] = strings::<4>(op.name, params, op.params)?;
                let mut given = id.clone();
                let result = self.create_job(&id, &kind, &details, &callback).map(|id| {
                    given = id.clone();
                });
                respond(result, |()| vec![]).with_member("JobID", Value::str(given))
            }
            _ => {
                let [raw_id] = strings::<1>(op.name, params, op.params)?;
                let id = match JobId::parse(&raw_id) {
                    Ok(id) => id,
                    Err(why) => return Ok(refused(Refusal(Code::InvalidArgument, why))),
                };
                match op.name {
                    "GetJob" => respond(self.get_job(&id), |job| vec![("Job", job_struct(job))]),
                    "GetProgress" => respond(self.get_progress(&id), |(state, progress)| {
                        vec![("Progress", Value::Int(state.visible_progress(progress)))]
                    }),
                    "StartJob" => respond(self.start_job(&id), |()| vec![]),
                    "CancelJob" => respond(self.cancel_job(&id), |()| vec![]),
                    "DeleteJob" => respond(self.delete_job(&id), |()| vec![]),
                    other => {
                        return Err(Fault::new(
                            Fault::INTERNAL_ERROR,
                            format!("no handler for {other}"),
                        ));
                    }
                }
            }
        };
        Ok(reply)
    }

    fn create_job(
        &self,
        raw_id: &str,
        raw_kind: &str,
        raw_details: &str,
        raw_callback: &str,
    ) -> OpResult<String> {
        self.check_accepting()?;
        let id = if raw_id.is_empty() {
            JobId::generate()
        } else {
            JobId::parse(raw_id).map_err(|why| Refusal(Code::InvalidArgument, why))?
        };
        let (new, details) = match self.new_job(&id, raw_kind, raw_details, raw_callback) {
            Ok(new) => new,
            // A taken ID is the answer whatever else is wrong (say a retried
            // CreateJob whose input was deleted since). Asked only here: on
            // the good path the insert itself tells.
            Err(_) if self.store.get_progress(&id)?.is_some() => return Err(already_exists(&id)),
            Err(refusal) => return Err(refusal),
        };
        match self.store.insert_job(&new)? {
            Insert::Inserted => {
                log::info!("job {id}: Created ({})", new.kind);
                Ok(id.to_string())
            }
            Insert::AlreadyExists => Err(already_exists(&id)),
            Insert::MissingInput(file) => {
                let field = details
                    .input_fields()
                    .into_iter()
                    .find(|(_, f)| *f == file)
                    .map_or("an input", |(field, _)| field);
                Err(missing_input(field, &file))
            }
        }
    }

    /// The job CreateJob would write, once every argument checks out, and
    /// its parsed details.
    fn new_job(
        &self,
        id: &JobId,
        raw_kind: &str,
        raw_details: &str,
        raw_callback: &str,
    ) -> OpResult<(NewJob, Details)> {
        let kind = JobKind::parse(raw_kind).ok_or_else(|| {
            Refusal(
                Code::UnknownJobType,
                format!(
                    "JobType '{}' is not known; use EncoderJob or YoutubeUploaderJob",
                    shorten(raw_kind, 64)
                ),
            )
        })?;
        let parsed =
            details::parse(kind, raw_details).map_err(|e| Refusal(Code::InvalidJobDetails, e.0))?;
        self.check_inputs_on_disk(&parsed.details)?;
        let callback =
            normalize_callback(raw_callback).map_err(|why| Refusal(Code::InvalidArgument, why))?;
        let new = NewJob {
            id: id.clone(),
            kind,
            details: parsed.details.to_json(),
            secrets: parsed.secrets,
            callback,
            inputs: parsed.details.inputs(),
            now: SystemTime::now(),
        };
        Ok((new, parsed.details))
    }

    /// Every FileID the details name must be a file on this engine's disk
    /// (the store checks that it knows it, in the same step as the insert).
    fn check_inputs_on_disk(&self, details: &Details) -> OpResult<()> {
        for (field, file) in details.input_fields() {
            if !self.files.path_of(file).is_some_and(|p| p.is_file()) {
                return Err(missing_input(field, file));
            }
        }
        Ok(())
    }

    fn get_job(&self, id: &JobId) -> OpResult<JobSummary> {
        self.store.get_job_summary(id)?.ok_or_else(|| not_found(id))
    }

    fn get_progress(&self, id: &JobId) -> OpResult<(crate::job::JobState, i32)> {
        self.store.get_progress(id)?.ok_or_else(|| not_found(id))
    }

    fn start_job(&self, id: &JobId) -> OpResult<()> {
        self.check_accepting()?;
        match self.store.start_job(id, SystemTime::now())? {
            Change::Done(_) => {
                log::info!("job {id}: Started");
                self.workers.enqueue(id.clone());
                Ok(())
            }
            Change::NotFound => Err(not_found(id)),
            Change::WrongState(state) => Err(Refusal(
                Code::InvalidState,
                format!("job '{id}' is {state}; only a Created job can be started"),
            )),
        }
    }

    fn cancel_job(&self, id: &JobId) -> OpResult<()> {
        match self.store.cancel_job(id, SystemTime::now())? {
            Change::Done(_) => {
                log::info!("job {id}: cancelled");
                self.workers.stop(id, StopReason::Cancelled);
                Ok(())
            }
            Change::NotFound => Err(not_found(id)),
            Change::WrongState(state) => Err(Refusal(
                Code::InvalidState,
                format!("job '{id}' is {state}; only a Started or InProgress job can be cancelled"),
            )),
        }
    }

    fn delete_job(&self, id: &JobId) -> OpResult<()> {
        // The row (and with it any pending call) goes first, so a running
        // job's worker finds nothing to finish and no JobCompleted is ever
        // queued for it; then the worker is stopped and waited for, so
        // nothing it writes outlives the delete.
        let deleted = self.store.delete_job(id)?.ok_or_else(|| not_found(id))?;
        if self.workers.stop(id, StopReason::Cancelled) && !self.workers.wait_gone(id, DELETE_WAIT)
        {
            log::warn!(
                "job {id}: still stopping after {DELETE_WAIT:?}; its worker discards what it made"
            );
        }
        for file in &deleted.output_files {
            if let Err(e) = self.files.remove(file) {
                log::warn!("job {id}: output {file} not removed: {e}");
            }
        }
        if let Err(e) = self.files.remove_work_dir(id) {
            log::warn!("job {id}: work dir not removed: {e}");
        }
        log::info!("job {id}: deleted");
        Ok(())
    }

    fn check_accepting(&self) -> OpResult<()> {
        if self.accepting.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Refusal(
                Code::Unavailable,
                "the engine is starting or shutting down; retry later".into(),
            ))
        }
    }

    /// The configuration in force (for the HTTP layer's limits).
    pub fn config(&self) -> Arc<crate::config::Config> {
        self.config.get()
    }
}

fn find(name: &str) -> Option<&'static Method> {
    OPERATIONS.iter().find(|m| m.name == name)
}

fn already_exists(id: &JobId) -> Refusal {
    Refusal(
        Code::AlreadyExists,
        format!("job '{id}' already exists; delete it first or use another JobID"),
    )
}

fn missing_input(field: &str, file: &str) -> Refusal {
    Refusal(
        Code::InvalidJobDetails,
        format!(
            "{field} names file '{}', which this engine does not have; upload it with POST /files first",
            shorten(file, 64)
        ),
    )
}

fn not_found(id: &JobId) -> Refusal {
    Refusal(Code::NotFound, format!("no job with JobID '{id}'"))
}

fn no_params(method: &str, params: &[Value]) -> Result<(), Fault> {
    if params.is_empty() {
        Ok(())
    } else {
        Err(Fault::new(
            Fault::INVALID_PARAMS,
            format!("{method} takes no parameters, got {}", params.len()),
        ))
    }
}

/// Exactly N string parameters; a `<value>` without a type is a string.
fn strings<const N: usize>(
    method: &str,
    params: &[Value],
    names: &[&str],
) -> Result<[String; N], Fault> {
    let expected = || {
        format!(
            "{method} expects {N} string parameter(s) ({})",
            names.join(", ")
        )
    };
    if params.len() != N {
        return Err(Fault::new(
            Fault::INVALID_PARAMS,
            format!("{}; got {}", expected(), params.len()),
        ));
    }
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (i, value) in params.iter().enumerate() {
        out[i] = match value {
            Value::String(s) => s.to_string(),
            other => {
                return Err(Fault::new(
                    Fault::INVALID_PARAMS,
                    format!(
                        "{}; {} is {}",
                        expected(),
                        names.get(i).unwrap_or(&"a parameter"),
                        other.type_name()
                    ),
                ))
            }
        };
    }
    Ok(out)
}

/// A successful or refused operation as its result struct.
fn respond<T>(result: OpResult<T>, members: impl FnOnce(T) -> Vec<(&'static str, Value)>) -> Value {
    match result {
        Ok(v) => {
            let members = members(v);
            let mut s = Vec::with_capacity(2 + members.len());
            s.push(("ResultCode".into(), Value::Int(0)));
            s.push(("ErrorMessage".into(), Value::str("")));
            s.extend(members.into_iter().map(|(k, v)| (k.into(), v)));
            Value::Struct(s)
        }
        Err(refusal) => refused(refusal),
    }
}

fn refused(Refusal(code, message): Refusal) -> Value {
    Value::Struct(vec![
        ("ResultCode".into(), Value::Int(code as i32)),
        ("ErrorMessage".into(), Value::str(message)),
    ])
}

trait WithMember {
    fn with_member(self, name: &'static str, value: Value) -> Value;
}

impl WithMember for Value {
    fn with_member(mut self, name: &'static str, value: Value) -> Value {
        if let Value::Struct(members) = &mut self {
            members.push((name.into(), value));
        }
        self
    }
}

/// The Job struct of GetJob (contract §1). It takes the job over, so its
/// strings move into the answer instead of being copied.
fn job_struct(job: JobSummary) -> Value {
    let changed = time::OffsetDateTime::from(job.last_state_change)
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Value::Struct(vec![
        ("JobID".into(), Value::str(job.id.into_string())),
        ("JobType".into(), Value::str(job.kind.as_str())),
        ("State".into(), Value::str(job.state.as_str())),
        ("LastStateChange".into(), Value::DateTime(changed)),
        (
            "ProgressAmount".into(),
            Value::Int(job.state.visible_progress(job.progress)),
        ),
        ("ErrorMessage".into(), Value::str(job.error_message)),
        ("ResultCode".into(), Value::Int(job.result_code)),
        (
            "Outputs".into(),
            Value::Array(job.outputs.into_iter().map(Value::str).collect()),
        ),
        ("Result".into(), Value::str(job.result)),
    ])
}

/// Empty, or an absolute http(s) URL with any non-ASCII percent-encoded
/// (contract §2).
fn normalize_callback(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(String::new());
    }
    let bad = || {
        format!(
            "Callback '{}' is not an absolute http:// or https:// URL",
            shorten(raw, 80)
        )
    };
    let rest = raw
        .strip_prefix("http://")
        .or_else(|| raw.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty()
        || host.starts_with(':')
        || raw.chars().any(|c| c.is_ascii_control() || c == ' ')
    {
        return Err(bad());
    }
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks() {
        assert_eq!(normalize_callback("").unwrap(), "");
        assert_eq!(
            normalize_callback("http://site/cb").unwrap(),
            "http://site/cb"
        );
        assert_eq!(
            normalize_callback("https://site/é").unwrap(),
            "https://site/%C3%A9"
        );
        for bad in [
            "ftp://x",
            "site/cb",
            "http://",
            "http:///x",
            "http://a b",
            "javascript:alert(1)",
        ] {
            assert!(
                normalize_callback(bad).unwrap_err().contains("Callback"),
                "{bad}"
            );
        }
    }
}
