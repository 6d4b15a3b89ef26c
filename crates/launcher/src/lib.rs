//! The launcher's library: everything `launcher` does to turn a manifest
//! into a running bottle on Docker, behind a thin `main.rs` (the command
//! tree) and `cli/` (one module per command).
//!
//! Is, in layers (each imports only the layers above it):
//! - [`plan`]: what a bottle will be, decided before an engine is touched —
//!   the manifest in its search order, the identity and object names, the
//!   launch plan as a pure function of an agent and options, the workspace
//!   survey, skills, and the y/N preflight;
//! - [`engine`]: what talks to an engine — Docker over bollard, image
//!   preparation with a content-hash cache, tar archives with explicit
//!   modes, the interactive attach;
//! - [`lifecycle`]: executing a plan and tearing it down, per-bottle state
//!   on the host, the per-bottle CA, and what `resume` needs;
//! - [`approvals`]: the operator side of the approval loop — the queue
//!   (over `bottle-queue`), previews, deciding, applying routes live
//!   ([`approvals::apply::EgressControl`]), capability approvals, editing
//!   routes and pipelock's config;
//! - [`dashboard`]: the terminal UI over all of it.
//!
//! Is not: a daemon. The sidecars (egress-proxy, git-gate, supervise) run as
//! containers built from their own binaries; the launcher never links their
//! code. Only this crate knows Docker.
#![forbid(unsafe_code)]

pub mod approvals;
pub mod dashboard;
pub mod engine;
pub mod lifecycle;
pub mod plan;
