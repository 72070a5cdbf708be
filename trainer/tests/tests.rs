//! Integration tests of tilt-trainer (one test binary; one module per topic).

mod bleu;
