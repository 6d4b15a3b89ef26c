//! The engines a bottle runs on, and everything that talks to one.
//!
//! Is: the Docker engine layer over bollard ([`docker`]), image
//! preparation with a content-hash cache ([`images`], with the host's
//! Debian mirror from [`apt`]), tar archives with explicit modes, the only
//! way files are copied into containers ([`archive`]), and an interactive
//! session in the agent ([`attach`]).
//!
//! Is not: the plan (that is [`crate::plan`], which never imports this
//! module) or the launch order (that is [`crate::lifecycle`]).

pub mod apt;
pub mod archive;
pub mod attach;
pub mod docker;
pub mod images;
