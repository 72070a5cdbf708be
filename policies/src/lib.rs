//! Language models for tilt (skeleton; filled by issue 3).
#![deny(missing_docs)]
