//! A short end-to-end training run on the selected backend.
//!
//! Reserved for the tilt-trainer engineer: a few DPG steps on the tiny fixture model (or a
//! seeded `Gpt2Config::tiny()`) towards a target with a known moment, asserting that the
//! constraint moment moves towards its target and that KL(p || π) decreases, driven through
//! the trainer's library API with `tilt_tests::TestBackend` on `tilt_tests::device()`.
//! No test lives here yet.
