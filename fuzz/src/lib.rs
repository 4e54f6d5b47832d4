//! Shared parts of meshd's fuzz targets (one file per target under `fuzz_targets/`).

pub mod fixture;
