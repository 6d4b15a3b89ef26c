//! Property tests for the manifest crate's public API: host matching, path
//! normalisation, routes-file round trips, and parsers that never panic.

mod docs;
mod hosts;
mod manifests;
mod paths;
mod routes;
