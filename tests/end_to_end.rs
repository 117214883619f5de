//! Every end-to-end test in one binary, a module per file: each runs the real binaries
//! (`nomaly`, the functions under cargo lambda) on real data. Run one file's tests with a
//! filter, e.g. `cargo test -p nomaly-tests --test end_to_end detect_quality::`.

mod alerts;
mod contract;
mod detect_cli;
mod detect_quality;
mod docs_links;
mod keys_cli;
mod lambda_emulator;
mod load;
mod observe;
mod quickstart;
mod serve;
mod stream_quality;
mod template;
