//! Cross-crate integration tests for tilt.
