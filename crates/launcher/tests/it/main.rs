//! Integration tests of the `launcher` binary, run as a process.

mod layers;
mod validate;
