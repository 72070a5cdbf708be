//! Gradient estimators for tilt (skeleton; filled by issue 4).
#![deny(missing_docs)]
