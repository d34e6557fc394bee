//! One integration-test binary; one module per topic.

mod store;
mod support;
mod api;
mod files;
mod lifecycle;
mod worker;
