//! No code: see `Cargo.toml`. This crate only lists features so that the
//! demo's build and the workspace's tests ask Cargo for the same ones.

#![forbid(unsafe_code)]
