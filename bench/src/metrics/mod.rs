//! One module per group of measurements in the table.

pub mod claim;
pub mod clone;
pub mod idle;
pub mod ingest;
pub mod logs;
pub mod pickup;
