//! The Gantry runner: claims jobs from a server (or takes one from a local
//! checkout with `gantry exec`), checks out the commit and runs each job's
//! phases in a throwaway Docker container, streaming the log back.
//!
//! ```text
//! agent (claim, heartbeat, upload) ─▶ job::run ─▶ workspace (git mirror → checkout)
//!                                              ├▶ docker (image, network, job container, services)
//!                                              ├▶ script (the phases, as sh) ─exec─▶ output (FIFO) ─▶ logs (mask, time, chunk)
//!                                              └▶ destroy (always)
//! ```

pub mod agent;
pub mod artifacts;
pub mod cache;
pub mod client;
pub mod config;
pub mod deploy;
pub mod docker;
#[cfg(test)]
mod elsewhere;
pub mod git_tls;
pub mod job;
pub mod job_files;
pub mod job_process;
pub mod local;
pub mod logs;
pub mod output;
pub mod script;
pub mod snapshot;
pub mod travis_env;
pub mod upload;
pub mod workspace;
