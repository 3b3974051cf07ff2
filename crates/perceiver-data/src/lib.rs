//! Datasets and loaders for the Perceiver.
//!
//! This crate will hold a dataset trait and a batching loader (seeded shuffling, background
//! prefetch) and readers for images (MNIST IDX, CIFAR-10, image folders), audio (WAV, log-mel),
//! point clouds (OFF, PLY) and procedural datasets (shapes, point clouds, video).
