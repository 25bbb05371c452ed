//! What the test binaries share. Every area's `main.rs` includes this directory with
//! `#[path = "../support/mod.rs"] mod support;`, so each binary compiles all of it and
//! uses what it needs (hence `dead_code` allowed):
//!
//! - [`rng`]: the one random number generator of the tests;
//! - [`alloc`]: helpers of the tests that run with `CgMalloc` as the global allocator
//!   (interface-file parsing, quiescing a group, block patterns, page residency);
//! - [`programs`]: helpers of the tests that build and run programs (the library's path,
//!   scratch directories, compiling C, running a child with a time limit, the soak
//!   switches).
#![allow(dead_code)]

pub mod alloc;
pub mod programs;
pub mod rng;
