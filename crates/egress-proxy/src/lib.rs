//! TLS-intercepting forward proxy: a bottle's only door to the network.
//!
//! Is: an HTTP/1.1 forward proxy (absolute-form `http://` and `CONNECT`)
//! that intercepts every tunnel with a leaf certificate minted by the
//! bottle's CA, decides each request against the routes file (universal
//! git-push block → host → normalised path → credential injection), streams
//! allowed requests to the upstream (direct or through a parent proxy) and
//! answers everything else with a readable 403/400/502. With DLP on, the
//! URL, headers and body of each request are scanned for secrets as they
//! stream out (see [`dlp`]); text responses are scanned for prompt
//! injection (see [`inbound`]). It hot-reloads the
//! routes file on demand and answers introspection on `_egress.local`.
//!
//! Is not: a config reader or a signal handler — `main.rs` parses flags,
//! loads a validated [`Config`] and wires SIGHUP/SIGTERM to
//! [`Proxy::reload`] and the shutdown token. It does not parse routes files
//! itself (that is `manifest::RouteTable`), and it never passes bytes it has
//! not decided on.
#![forbid(unsafe_code)]

pub mod addr;
pub mod allowlist;
pub mod ca;
pub mod codec;
pub mod config;
pub mod decision;
pub mod dlp;
pub mod drain;
pub mod env;
pub mod hostlabel;
pub mod inbound;
pub mod journal;
pub mod proxy;
pub mod resolve;
pub mod stream;
pub mod upstream;
pub mod ws;
pub mod ws_scan;

pub use allowlist::{Allowlist, LoadError, LoadedTable};
pub use ca::{CaError, CertAuthority};
pub use config::{Config, ConfigError, Limits, Settings, parse_duration};
pub use decision::{DECISION_HEADER, MAGIC_HOST};
pub use dlp::{Dlp, DlpAction, DlpError, DlpHit, DlpSettings, parse_detector};
pub use env::{Env, MapEnv, ProcessEnv, Secret, TokenDir};
pub use inbound::{Inbound, InboundAction};
pub use proxy::{Proxy, run};
pub use resolve::{Resolver, StaticResolver, SystemResolver};
pub use upstream::UpstreamProxy;
