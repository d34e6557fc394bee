//! EncoderJob (stub, to be written).
use super::{Kind, RunCtx};
use crate::job::{JobResult, Outcome};
pub struct EncoderJob;
impl Kind for EncoderJob {
    fn run(&self, _ctx: &RunCtx) -> Outcome {
        Outcome::failed(JobResult::Internal, "not built yet")
    }
}
