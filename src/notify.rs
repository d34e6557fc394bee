//! The courier: delivers the outbox of calls to the website, one thread,
//! durable and at-least-once. Calls of one job go in order (the store hands
//! out only the head of each job's queue); a failing website is retried
//! with exponential backoff and jitter, for `callback_give_up`, then the
//! call is marked undeliverable (visible in the store) and logged.
//!
//! A delivery fails on a connection error, a timeout, a non-2xx status, a
//! body that is not an XML-RPC response, or an XML-RPC fault.
//!
//! May use: `config`, `protocol`, `store`.

use crate::config::LiveConfig;
use crate::job::JobId;
use crate::protocol::xmlrpc::{self, Limits};
use crate::protocol::Value;
use crate::store::{Call, CallParam, Store};
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Longest idle wait between two looks at the outbox (a safety net: the
/// courier is woken when calls are queued and knows when the next is due).
const IDLE_LOOK: Duration = Duration::from_secs(1);
/// Calls taken per look.
const BATCH: usize = 64;
/// Largest response body read from the website.
const MAX_REPLY: u64 = 1024 * 1024;

pub struct Courier {
    wake: Sender<Wake>,
    /// Disconnects when the courier thread ends.
    ended: Receiver<()>,
}

enum Wake {
    Look,
    /// Deliver what is due until the deadline, then stop.
    Drain(Instant),
}

impl Courier {
    pub fn start(store: Arc<dyn Store>, agent: ureq::Agent, config: Arc<LiveConfig>) -> Courier {
        let (wake, woken) = crossbeam_channel::unbounded();
        let (alive, ended) = crossbeam_channel::bounded::<()>(0);
        std::thread::Builder::new()
            .name("courier".into())
            .spawn(move || {
                let _alive = alive;
                Delivery {
                    store,
                    agent,
                    config,
                    last_progress: HashMap::new(),
                }
                .run(woken)
            })
            .expect("spawning the courier thread");
        Courier { wake, ended }
    }

    /// Something was queued: look now.
    pub fn wake(&self) {
        let _ = self.wake.send(Wake::Look);
    }

    /// Delivers what is due until `deadline`, then stops the thread.
    pub fn drain(self, deadline: Instant) {
        let _ = self.wake.send(Wake::Drain(deadline));
        // Returns when the thread ends (the channel disconnects) or at the
        // deadline, whichever is first; a call still in flight is left to die
        // with the process and is sent again on the next start.
        let _ = self.ended.recv_deadline(deadline);
    }
}

struct Delivery {
    store: Arc<dyn Store>,
    agent: ureq::Agent,
    config: Arc<LiveConfig>,
    /// When the last JobProgress of each running job was delivered: the
    /// store spaces progress calls when it queues them, and this keeps
    /// them spaced on arrival too, when one was delivered late.
    last_progress: HashMap<JobId, Instant>,
}

/// What one pass over the due calls left behind.
struct Pass {
    /// Some call was delivered (it may have released the next of its job).
    delivered: bool,
    /// The earliest time a progress call held back for spacing may go.
    held_until: Option<Instant>,
}

impl Delivery {
    fn run(mut self, woken: Receiver<Wake>) {
        let mut drain_until: Option<Instant> = None;
        loop {
            let pass = self.deliver_due(drain_until);
            if let Some(deadline) = drain_until {
                if !pass.delivered || Instant::now() >= deadline {
                    return;
                }
                continue;
            }
            // A held-back progress call is still due in the store, so wait
            // for its time rather than for the store's due time.
            let wait = match pass.held_until {
                Some(at) => at.saturating_duration_since(Instant::now()).min(IDLE_LOOK),
                None => self.until_next_due(),
            };
            match woken.recv_timeout(wait) {
                Ok(Wake::Look) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Ok(Wake::Drain(deadline)) => drain_until = Some(deadline),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn until_next_due(&self) -> Duration {
        match self.store.next_call_due() {
            Ok(Some(at)) => at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
                .min(IDLE_LOOK),
            _ => IDLE_LOOK,
        }
    }

    /// One pass over the due calls.
    fn deliver_due(&mut self, deadline: Option<Instant>) -> Pass {
        let mut pass = Pass {
            delivered: false,
            held_until: None,
        };
        let due = match self.store.due_calls(SystemTime::now(), BATCH) {
            Ok(due) => due,
            Err(e) => {
                log::warn!("outbox unreadable: {e}");
                return pass;
            }
        };
        let spacing = self.config.get().progress_interval;
        // Only deliveries inside the spacing window matter.
        self.last_progress.retain(|_, at| at.elapsed() < spacing);
        for call in &due {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Pass {
                    delivered: false,
                    ..pass
                };
            }
            let job = call.job.as_ref();
            if call.method == "JobProgress" {
                let last = job.and_then(|j| self.last_progress.get(j));
                if let Some(free_at) = last
                    .map(|at| *at + spacing)
                    .filter(|at| *at > Instant::now())
                {
                    pass.held_until = Some(pass.held_until.map_or(free_at, |h| h.min(free_at)));
                    continue;
                }
            }
            if self.attempt(call) {
                pass.delivered = true;
                match (call.method.as_str(), job) {
                    ("JobProgress", Some(j)) => {
                        self.last_progress.insert(j.clone(), Instant::now());
                    }
                    ("JobCompleted", Some(j)) => {
                        self.last_progress.remove(j);
                    }
                    _ => {}
                }
            }
        }
        pass
    }

    /// One delivery attempt; true when delivered.
    fn attempt(&self, call: &Call) -> bool {
        let now = SystemTime::now();
        match self.send(call) {
            Ok(()) => {
                if let Err(e) = self.store.call_delivered(call.id, now) {
                    log::warn!(
                        "{} delivered but not marked ({e}); it may be sent again",
                        describe(call)
                    );
                }
                true
            }
            Err(why) => {
                let config = self.config.get();
                let age = now
                    .duration_since(call.created_at)
                    .unwrap_or(Duration::ZERO);
                if age >= config.callback_give_up {
                    log::error!(
                        "{} undeliverable after {} attempts: {why}",
                        describe(call),
                        call.attempts + 1
                    );
                    let _ = self.store.call_undeliverable(call.id, &why, now);
                } else {
                    let retry_in = backoff(call.attempts + 1);
                    log::warn!(
                        "{} failed ({why}); retrying in {retry_in:?}",
                        describe(call)
                    );
                    let _ = self.store.call_failed(call.id, &why, now + retry_in);
                }
                false
            }
        }
    }

    fn send(&self, call: &Call) -> Result<(), String> {
        let params: Vec<Value> = call
            .params
            .iter()
            .map(|p| match p {
                CallParam::Int(i) => Value::Int(*i),
                CallParam::Str(s) => Value::str(s.clone()),
            })
            .collect();
        let body = xmlrpc::write_call(&call.method, &params);
        let response = self
            .agent
            .post(&call.url)
            .header("Content-Type", "text/xml")
            .send(&body[..])
            .map_err(|e| format!("{e}"))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(format!("HTTP status {status}"));
        }
        let mut reply = Vec::new();
        response
            .into_body()
            .into_reader()
            .take(MAX_REPLY)
            .read_to_end(&mut reply)
            .map_err(|e| format!("reading the reply: {e}"))?;
        match xmlrpc::parse_response(&reply, &Limits::default()) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(fault)) => Err(format!("fault {}: {}", fault.code, fault.message)),
            Err(bad) => Err(format!("not an XML-RPC response: {}", bad.message)),
        }
    }
}

/// Wait before attempt `n` (1-based): 2^n seconds, capped at 10 minutes,
/// with full jitter between half and all of it.
pub fn backoff(attempt: i32) -> Duration {
    let ceiling =
        Duration::from_secs(1u64 << attempt.clamp(0, 10) as u32).min(Duration::from_secs(600));
    let jitter = jitter_fraction();
    ceiling.mul_f64(0.5 + 0.5 * jitter)
}

/// A number in [0, 1) from the clock and a counter; good enough to spread
/// retries, not for anything secret.
fn jitter_fraction() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let mut x = nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn describe(call: &Call) -> String {
    match &call.job {
        Some(job) => format!("{} for job {job}", call.method),
        None => call.method.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for n in 1..20 {
            let d = backoff(n);
            let ceiling = Duration::from_secs(1u64 << n.min(10)).min(Duration::from_secs(600));
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {n}: {d:?}");
        }
    }
}
