//! The Gantry web viewer: server-rendered pages for repositories, builds and
//! live job logs, with CSS and JS embedded in the binary.
//!
//! Not built yet: see the web viewer issue.
