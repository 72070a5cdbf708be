//! Integration tests of tilt-policies (one binary).

mod checkpoint;
mod common;
mod parity;
mod sampling;
mod tokenizer;
