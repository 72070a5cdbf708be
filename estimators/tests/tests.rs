//! Integration tests of tilt-estimators against exact answers on an enumerable GPT-2
//! (vocabulary 6, prompt = BOS, 4 new tokens: 1,296 sequences).

mod cdpg;
mod common;
mod exact;
mod inputs;
mod loss_path;
mod proposal;
mod theorem;
mod training;
