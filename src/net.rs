//! The engine's one HTTP client: a shared `ureq::Agent` with bounded waits,
//! plus the helpers every caller of it needs (reading a reply body with a
//! cap, classifying transport errors, keeping secrets out of messages).
//!
//! May use: `config`.
//!
//! The agent answers 4xx/5xx as ordinary responses (`http_status_as_error`
//! is off): callers classify status codes themselves. Timeouts are fixed
//! constants for now; no config key sets them.

use crate::config::Config;
use std::io::Read;
use std::time::Duration;

/// Sent as `User-Agent` on every request.
pub const USER_AGENT: &str = concat!("jobengine/", env!("CARGO_PKG_VERSION"));

/// Longest wait for a TCP (and TLS) connection to be set up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest a single socket read or write may wait without progress. A peer
/// that neither sends nor takes a byte for this long is treated as gone.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds the engine's shared agent. Cheap to clone (an `Arc` over its
/// connection pool); build it once and hand clones around.
pub fn agent(_config: &Config) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_per_read(Some(IO_TIMEOUT))
        .timeout_per_write(Some(IO_TIMEOUT))
        .user_agent(USER_AGENT)
        .http_status_as_error(false)
        .build();
    ureq::Agent::new_with_config(config)
}

/// At most `limit` bytes of a reply body as text (invalid UTF-8 replaced).
/// A body that can't be read gives what was read so far: the caller wants
/// a message, not another error.
pub fn read_text(body: &mut ureq::Body, limit: u64) -> String {
    let mut bytes = Vec::new();
    let _ = body.as_reader().take(limit).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// True for transport failures worth retrying: refused, reset, broken pipe,
/// timeout, TLS trouble, a reply cut short, a failed DNS lookup.
pub fn is_transient(e: &ureq::Error) -> bool {
    use ureq::Error as E;
    matches!(
        e,
        E::Io(_)
            | E::Timeout(_)
            | E::ConnectionFailed
            | E::HostNotFound
            | E::Protocol(_)
            | E::Tls(_)
    )
}

/// A transport error as text that can be logged or shown: any bearer token
/// in it is masked.
pub fn describe(e: &ureq::Error) -> String {
    redact(&e.to_string(), &[])
}

/// `text` with every occurrence of the given secrets, and every token after
/// `Bearer `, replaced by `[redacted]`.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret, "[redacted]");
    }
    let mut masked = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = find_ascii_ci(rest, "bearer ") {
        let after = at + "bearer ".len();
        masked.push_str(&rest[..after]);
        let token_len = rest[after..]
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',')
            .unwrap_or(rest.len() - after);
        if token_len > 0 {
            masked.push_str("[redacted]");
        }
        rest = &rest[after + token_len..];
    }
    masked.push_str(rest);
    masked
}

fn find_ascii_ci(haystack: &str, needle: &str) -> Option<usize> {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    (0..h.len().checked_sub(n.len())? + 1).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_masks_secrets_and_bearer_tokens() {
        let text = "Authorization: Bearer ya29.abc-def, refresh 1//0g-secret and bearer x";
        let out = redact(text, &["1//0g-secret"]);
        assert_eq!(
            out,
            "Authorization: Bearer [redacted], refresh [redacted] and bearer [redacted]"
        );
        assert!(!out.contains("ya29"));
    }

    #[test]
    fn redact_leaves_plain_text_alone() {
        assert_eq!(
            redact("connection reset by peer", &["", "zzz"]),
            "connection reset by peer"
        );
        assert_eq!(redact("Bearer", &[]), "Bearer");
    }

    #[test]
    fn user_agent_names_the_engine_and_version() {
        assert_eq!(
            USER_AGENT,
            format!("jobengine/{}", env!("CARGO_PKG_VERSION"))
        );
    }
}
