//! Integration tests: the proxy in-process (and as a spawned binary) on
//! 127.0.0.1, a local TLS upstream, and real clients (curl, git, Python
//! requests, and a hyper/rustls client for what curl cannot express).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod basic;
mod binary;
mod chain;
mod corpus;
mod dlp;
mod doors;
mod errors;
mod git;
mod log;
mod refusals;
mod reload;
mod ssrf;
mod streaming;
mod third_client;
mod watch;
mod websocket;
