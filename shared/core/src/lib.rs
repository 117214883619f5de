//! nomaly's shared core: what every entry point (the `nomaly` command, the local
//! server, the Lambda functions) does the same way.

pub mod table;
