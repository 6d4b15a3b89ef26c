//! One module per `launcher` command: its clap arguments and what it
//! prints. `main.rs` holds the command tree and the dispatch; the work is
//! in the `launcher` library.

pub mod approvals;
pub mod bottles;
pub mod images;
pub mod kubernetes;
pub mod resume;
pub mod start;
pub mod validate;
