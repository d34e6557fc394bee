//! The one HTTP client agent (stub until the uploader work lands).
use crate::config::Config;
pub fn agent(_config: &Config) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}
