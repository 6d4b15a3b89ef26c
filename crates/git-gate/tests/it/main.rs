//! git-gate against real git, all on loopback.
//!
//! The upstream is a bare repository served by `git http-backend` under a
//! tiny CGI host (this file, reusing `git_gate::cgi`) on 127.0.0.1:0 that
//! demands HTTP basic auth with the gate's token, so every test also proves
//! credentials flow gate → upstream and never through the agent's client.
//! The agent is the real `git` client with HOME and GIT_CONFIG_GLOBAL in a
//! tempdir so the machine's git config cannot interfere.

mod harden;
mod harness;
mod lease;
mod names;
mod push;
mod serve;
mod trust;
