//! Integration tests of the `launcher` binary, run as a process.

mod kubernetes;
mod layers;
mod validate;
