//! YoutubeUploaderJob (stub, to be written).
use super::{Kind, RunCtx};
use crate::job::{JobResult, Outcome};
pub struct YoutubeUploaderJob;
impl Kind for YoutubeUploaderJob {
    fn run(&self, _ctx: &RunCtx) -> Outcome {
        Outcome::failed(JobResult::Internal, "not built yet")
    }
}
