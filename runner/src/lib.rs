//! The Gantry runner: claims jobs from a server (or takes one from a local
//! checkout with `gantry exec`), clones the commit and runs each job's phases
//! in a throwaway Docker container, streaming the log back.
//!
//! Not built yet: see the runner issue. `gantry runner` and `gantry exec` say so and exit 2.
