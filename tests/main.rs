//! One integration-test binary; one module per topic.

mod api;
mod cli;
mod encoder;
mod files;
mod layers;
mod lifecycle;
mod perf;
mod store;
mod support;
mod upload_engine;
mod uploader;
mod worker;
mod youtube_standin;
