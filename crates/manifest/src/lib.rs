//! The one model of a bottle that every other crate compiles against.
//!
//! Is: parsing and validation of manifests, routes files, remotes files and
//! queue records; host and path matching; the single-route merge; every
//! value the daemons and the launcher derive from a manifest. Pure: it parses
//! `&str` and returns validated types.
//!
//! Is not: anything that does I/O. No files, no network, no Docker, no
//! async: callers read the bytes and hand them in with an origin name that
//! errors will quote.
#![forbid(unsafe_code)]

pub mod agent;
pub mod bottle;
pub mod defaults;
pub mod effective;
pub mod error;
pub mod host;
pub mod limits;
pub mod merge;
pub mod path;
pub mod pipelock;
pub mod queue;
pub mod remotes;
pub mod routes;
pub mod yaml;

pub use agent::{Agent, AgentName, ImageSource, Manifest, parse_markdown_agent};
pub use bottle::{
    AgentEnvVar, Bottle, DlpAction, DlpDetectors, Egress, EgressAuth, EgressRoute, GitAuth,
    GitRemote, InjectionAction,
};
pub use defaults::{DEFAULT_MANIFEST_ORIGIN, default_manifest};
pub use error::{Diagnostic, ManifestError};
pub use host::{HostError, HostPattern, IpLiterals, RequestHost};
pub use limits::{Limits, MemorySize, WorkspaceMode};
pub use merge::{
    Merge, ProposalError, ProposedAuth, ProposedRoute, TokenSlot, merge_route, valid_env_name,
};
pub use path::{PathError, PathPrefix, normalize_path};
pub use remotes::{BranchRules, RefPattern, Remote, RemoteAuth, RemoteName, RemotesFile};
pub use routes::{AuthScheme, Role, Route, RouteAuth, RouteTable};
