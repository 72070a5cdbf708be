//! Estimator unbiasedness on the enumerable model, on the selected backend.
//!
//! Reserved for the tilt-estimators engineer: on a toy policy whose whole sequence space can
//! be enumerated (as tilt-ebm's 625-sequence space), the Monte Carlo gradient of each
//! estimator (RM, DPG, CDPG, f-DPG) must average to the exact gradient computed by
//! enumeration, within a bound derived from its sample variance. Write the test generic over
//! `B: AutodiffBackend` and instantiate it with `tilt_tests::TestBackend` on
//! `tilt_tests::device()`, as tests/parity.rs does. No test lives here yet.
