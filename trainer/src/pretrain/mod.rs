//! Building the demo base model "tilt-mini": corpora, byte-level BPE tokenizer, causal-LM
//! pretraining.
