//! Feature functions φ(x) for tilt (skeleton; filled by issue 2).
#![deny(missing_docs)]
