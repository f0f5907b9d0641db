//! Chapter 6: int8 quantization, from one scale per tensor to ggml's blocks.
//!
//! - [`f16`]: half precision by hand, the type of every block's scale;
//! - [`blocks`]: ggml's Q8_0, Q8_1, Q4_0 and Q4_1 blocks, byte for byte;
//! - [`matrix`]: a weight matrix in one of those formats ([`matrix::Format`], [`matrix::QMatrix`]),
//!   and its products with activations, `y = x W^T`;
//! - [`kernels`]: integer dot products of a row of weight blocks with an activation row
//!   quantized on the fly, portable and AVX2.
//! - [`absmax`]: int8 with one scale per tensor (symmetric or with a zero point) or per row;
//! - [`speed`]: memory bandwidth, the products' speed at SmolLM2's shapes, bytes per token;
//! - [`stats`]: a quantization's error, measured and predicted (Δ²/12, 6.02 dB per bit);
//! - [`outliers`]: LLM.int8's mixed-precision decomposition for outlier features;
//! - [`gguf`]: the GGUF container llama.cpp reads (a file memory-mapped, its tensors views
//!   of the map), and ([`gguf::llama`]) a chapter 4 Llama written and read as llama.cpp's
//!   converter does.
//! - [`report`]: a trained model in every format, its bytes, its weights' error and its
//!   cross-entropy, and the bytes a generated token reads;
//! - [`tour`]: the chapter's step of the tour, on chapter 4's toy-world model.

pub mod absmax;
pub mod blocks;
pub mod f16;
pub mod gguf;
pub mod kernels;
pub mod matrix;
pub mod outliers;
pub mod report;
pub mod speed;
pub mod stats;
pub mod tour;
