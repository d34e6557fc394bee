//! One integration-test binary; one module per topic.

mod store;
mod support;
