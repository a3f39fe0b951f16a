//! What both binaries share: `gantry` (every subcommand) and `gantry-runner`
//! (the runner alone, for machines that only run jobs).

pub mod logging;
pub mod memory;
pub mod runner;
pub mod signal;
