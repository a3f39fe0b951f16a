//! The Gantry web viewer: server-rendered pages for repositories, builds and
//! job logs, with CSS and JS embedded in the binary. This crate renders; the
//! server owns the routes and the data.
//!
//! - [`ansi`]: terminal colours to escaped HTML — a log never becomes markup.
//! - [`log`]: numbered lines and foldable phases from Travis's markers.
//! - [`badge`]: the shields-style status badge.

pub mod ansi;
pub mod badge;
pub mod log;
pub mod pages;
