//! The approval loop's egress side on Kubernetes: [`EgressControl`] over
//! the API server.
//!
//! Is: the routes file is the `routes.yaml` key of the egress ConfigMap
//! (read and merge-patched), a granted token is a key of the egress
//! tokens Secret (merge-patched), the reload is the proxy's own watch of
//! its mounted routes file (`--watch-routes`: the kubelet swaps the
//! projected volume, tokens and routes together), and `/status` is asked
//! with the same probe as on Docker, run by `exec` in the egress container
//! ([`PodExec`], shared with the queue's exec path). Because the kubelet syncs volumes on its own period,
//! `reload` waits up to [`CONFIRM_TIMEOUT`] for the written table to show
//! in `/status` (the shared apply sequence then confirms it within its
//! usual 15 s).
//!
//! Is not: deciding or merging (that is `crate::approvals`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use manifest::routes::RouteTable;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams};

use super::{EGRESS_ROUTES_PATH, EgressControl, EgressStatus};
use crate::engine::kubernetes::client::{FIELD_MANAGER, classify};
pub use crate::engine::kubernetes::exec::{ApiExec, ExecOutput, PodExec};
use crate::engine::kubernetes::render::{EGRESS_CONFIGMAP, EGRESS_TOKENS_SECRET, ROUTES_KEY};
use crate::plan::egress_status_probe;
use crate::plan::identity::Component;

/// How long an approval waits for `/status` to show the new table: the
/// kubelet's volume sync period (default 60 s) plus its cache TTL, plus
/// the proxy's watch interval.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(150);

/// The egress side of bottle in namespace `ns`.
pub struct KubeEgress<E> {
    client: kube::Client,
    ns: String,
    exec: E,
    /// The routes text last written, awaited by `reload`.
    written: Mutex<Option<String>>,
    /// How long `reload` waits for the kubelet to deliver it.
    pub propagation: Duration,
    /// How often `reload` asks `/status`.
    pub poll: Duration,
}

impl<E> std::fmt::Debug for KubeEgress<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeEgress")
            .field("ns", &self.ns)
            .finish_non_exhaustive()
    }
}

impl<E: PodExec> KubeEgress<E> {
    /// The egress proxy of the bottle in namespace `ns`.
    pub fn new(client: kube::Client, ns: &str, exec: E) -> Self {
        Self {
            client,
            ns: ns.to_owned(),
            exec,
            written: Mutex::new(None),
            propagation: CONFIRM_TIMEOUT,
            poll: Duration::from_secs(1),
        }
    }

    fn err(&self, e: kube::Error, verb: &'static str, resource: &str, name: &str) -> String {
        classify(e, verb, resource, name, Some(&self.ns)).to_string()
    }
}

impl<E: PodExec> EgressControl for KubeEgress<E> {
    async fn read_routes(&self) -> Result<String, String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.ns);
        let cm = api
            .get(EGRESS_CONFIGMAP)
            .await
            .map_err(|e| self.err(e, "get", "configmaps", EGRESS_CONFIGMAP))?;
        cm.data
            .and_then(|mut d| d.remove(ROUTES_KEY))
            .ok_or_else(|| {
                format!(
                    "ConfigMap {EGRESS_CONFIGMAP} in namespace {} has no key {ROUTES_KEY}",
                    self.ns
                )
            })
    }

    async fn write_routes(&self, text: &str) -> Result<(), String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.ns);
        let patch = serde_json::json!({ "data": { ROUTES_KEY: text } });
        api.patch(
            EGRESS_CONFIGMAP,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| self.err(e, "patch", "configmaps", EGRESS_CONFIGMAP))?;
        *self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(text.to_owned());
        Ok(())
    }

    async fn write_token(&self, token_env: &str, value: &str) -> Result<(), String> {
        let valid = !token_env.is_empty()
            && token_env
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !valid {
            return Err(format!(
                "token slot {token_env:?} is not a valid Secret key (letters, digits, '_', '-', '.')"
            ));
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns);
        // `stringData` is write-only: the value never comes back in the
        // answer, and is never part of an error message.
        let patch = serde_json::json!({ "stringData": { token_env: value } });
        api.patch(
            EGRESS_TOKENS_SECRET,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await
        .map(|_| ())
        .map_err(|e| self.err(e, "patch", "secrets", EGRESS_TOKENS_SECRET))
    }

    async fn reload(&self) -> Result<(), String> {
        // egress-proxy runs with --watch-routes: the kubelet's swap of the
        // mounted ConfigMap is the reload. There is no signal to send
        // across the API (and the scratch image has no `kill`). Wait until
        // the written table is live, a reload fails, or the kubelet had
        // its time; the caller's confirmation decides which.
        let written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(want) = written
            .and_then(|t| RouteTable::parse(&t, EGRESS_ROUTES_PATH).ok())
            .map(|t| t.version_hash())
        else {
            return Ok(());
        };
        let first = self.status().await.ok();
        let deadline = Instant::now() + self.propagation;
        while Instant::now() < deadline {
            match self.status().await {
                Ok(s) if s.version == want => break,
                Ok(s)
                    if s.last_reload_error.is_some()
                        && s.last_reload_attempt
                            != first.as_ref().and_then(|f| f.last_reload_attempt.clone()) =>
                {
                    break;
                }
                _ => tokio::time::sleep(self.poll).await,
            }
        }
        Ok(())
    }

    async fn status(&self) -> Result<EgressStatus, String> {
        let pod = Component::Egress.as_str();
        let ExecOutput {
            code, stdout: out, ..
        } = self
            .exec
            .exec(pod, pod, &egress_status_probe(5), None)
            .await?;
        if code != Some(0) {
            return Err(format!(
                "_egress.local/status: the probe exited {code:?}: {}",
                out.trim()
            ));
        }
        serde_json::from_str(out.trim()).map_err(|e| {
            format!("_egress.local/status answered something that is not its JSON: {e}")
        })
    }
}

#[cfg(test)]
mod tests;
