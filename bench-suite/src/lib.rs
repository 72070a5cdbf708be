//! Shared helpers for tilt's benchmarks.
