//! One integration-test binary; one module per topic.

mod api;
mod encoder;
mod files;
mod lifecycle;
mod perf;
mod store;
mod support;
mod worker;
