//! git-gate: the bottle's only git write path.
//!
//! Is: a git smart-HTTP server (`/<name>.git/…` per remote of the remotes
//! file) that runs the system `git http-backend` as a CGI child over a bare
//! mirror; refreshes the mirror from upstream (with the gate's credentials)
//! before serving fetches; and, in pre-receive hook mode ([`hook`]), scans
//! every push with [`secret_scan`], enforces branch rules and pushes the
//! same ref updates upstream *before* the mirror accepts them.
//!
//! Is not: a config reader (`main.rs` turns flags and environment into a
//! [`Config`]), a git implementation (git does the protocol), or a
//! credential store: tokens come from the environment, reach git children
//! only as `GIT_CONFIG_*` variables and never appear in argv, URLs, logs or
//! messages to the agent.
#![forbid(unsafe_code)]

pub mod cgi;
pub mod config;
pub mod hook;
pub mod intake;
pub mod mirror;
pub mod pack;
pub mod pktline;
pub mod scan;
pub mod server;
pub mod sideband;
pub mod tree;
pub mod upstream;

pub use config::Config;
pub use server::{GateError, run};
