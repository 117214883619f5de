//! Chunks of a large CSV object, for batch scoring (`batch/`): splitting the object into
//! line-aligned byte ranges (`ranges.rs`) and scoring one range's rows (`scoring.rs`).

mod ranges;
mod scoring;

pub use ranges::{plan, BlobSource, ByteSource, Chunk, FileSource, Plan, PlanError};
pub use scoring::{check_features, count_part, score_chunk, ScoredChunk};
