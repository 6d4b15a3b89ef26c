//! The launcher's library: everything `launcher` does to turn a manifest
//! into a running bottle on Docker, behind a thin `main.rs`.
//!
//! Is: finding and reading the manifest in its search order ([`load`]),
//! the bottle identity and Docker object names ([`identity`]), the launch
//! plan as a pure function of an agent and options ([`plan`]) and its y/N
//! summary ([`preflight`]), the per-bottle CA ([`ca`]), tar archives with
//! explicit modes for copying files into containers ([`archive`]),
//! per-bottle state on the host ([`state`]), the host's Debian mirror
//! ([`apt`]), image preparation with a content-hash cache ([`images`]), the
//! Docker engine layer over bollard ([`docker`]) and the lifecycle that
//! executes a plan and tears it down ([`lifecycle`]).
//!
//! Is not: a daemon. The sidecars (egress-proxy, git-gate, supervise) run as
//! containers built from their own binaries; the launcher never links their
//! code. Only this crate knows Docker.
#![forbid(unsafe_code)]

pub mod apply;
pub mod approvals;
pub mod apt;
pub mod archive;
pub mod attach;
pub mod ca;
pub mod capability;
pub mod dashboard;
pub mod docker;
pub mod images;
pub mod lifecycle;
pub mod plan;
pub mod queue_ops;
pub mod resume;
pub mod routes_edit;
pub mod state;
