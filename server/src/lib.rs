//! The Gantry server: receives GitHub webhooks, turns pushes into builds and
//! jobs with [`gantry_pipeline`], hands jobs to runners over the runner API,
//! stores builds and logs, and serves the JSON API and the web viewer.
//!
//! Not built yet: see the server issue. `gantry server` says so and exits 2.
