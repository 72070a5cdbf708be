//! Integration tests of tilt-ebm against exact answers on an enumerable toy space.

mod toy;

mod divergence;
mod errors;
mod moment_fit;
mod numerics;
mod partition;
mod qrs;
