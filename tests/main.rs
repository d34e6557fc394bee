//! One integration-test binary; one module per topic.

mod uploader;
mod youtube_standin;
