//! One integration-test binary; one module per topic.
mod encoder;
