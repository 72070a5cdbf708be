//! Integration tests of tilt-constraints: one binary, a module per topic.

mod external;
mod readme;
mod spec;

use std::path::PathBuf;

/// The directory of the committed test scorers.
pub fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("scripts")
}
