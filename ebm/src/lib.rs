//! Energy-based targets for tilt (skeleton; filled by issue 2).
#![deny(missing_docs)]
