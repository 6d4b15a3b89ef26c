//! [`BottleEngine`] on Docker: a component of a bottle is the container
//! `claude-bottle-<component>-<identity>`
//! ([`Identity::container_name`]); a bottle is every container, volume
//! and network labelled with its identity.

use std::collections::BTreeMap;

use super::{DockerError, Engine};
use crate::engine::archive::{self, Fetched, FileEntry};
use crate::engine::{BottleEngine, ExecOutput, Found, Running};
use crate::plan::identity::{
    Component, Identity, LABEL_AGENT, LABEL_COMPONENT, LABEL_IDENTITY, LABEL_LAUNCHER_PID,
    LABEL_MANAGED,
};

impl BottleEngine for Engine {
    type Error = DockerError;

    async fn state_of(
        &self,
        bottle: &Identity,
        component: Component,
    ) -> Result<Running, DockerError> {
        match Engine::running(self, &bottle.container_name(component)).await {
            Ok((true, _)) => Ok(Running::Yes),
            Ok((false, code)) => Ok(Running::Exited(code)),
            Err(DockerError::InspectContainer {
                source:
                    bollard::errors::Error::DockerResponseServerError {
                        status_code: 404, ..
                    },
                ..
            }) => Ok(Running::Missing),
            Err(e) => Err(e),
        }
    }

    async fn copy_in(
        &self,
        bottle: &Identity,
        component: Component,
        files: &[FileEntry],
    ) -> Result<(), DockerError> {
        let name = bottle.container_name(component);
        let tar = archive::build(files).map_err(|source| DockerError::Archive {
            name: name.clone(),
            source,
        })?;
        self.upload(&name, tar).await
    }

    async fn read_from(
        &self,
        bottle: &Identity,
        component: Component,
        path: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, DockerError> {
        let name = bottle.container_name(component);
        Ok(match Engine::read_file(self, &name, path, limit).await? {
            Some(Fetched::File(bytes)) => Some(bytes),
            _ => None,
        })
    }

    async fn exec_in(
        &self,
        bottle: &Identity,
        component: Component,
        user: &str,
        cmd: &[String],
    ) -> Result<ExecOutput, DockerError> {
        Engine::exec(self, &bottle.container_name(component), user, cmd).await
    }

    async fn signal(
        &self,
        bottle: &Identity,
        component: Component,
        signal: &str,
    ) -> Result<(), DockerError> {
        self.kill(&bottle.container_name(component), signal).await
    }

    async fn logs_of(
        &self,
        bottle: &Identity,
        component: Component,
        lines: usize,
    ) -> Result<String, DockerError> {
        Engine::tail_logs(self, &bottle.container_name(component), lines).await
    }

    async fn bottles(&self) -> Result<Vec<Found>, DockerError> {
        let mut out: BTreeMap<String, Found> = BTreeMap::new();
        for c in self
            .containers_with_labels(&[(LABEL_MANAGED, "true")])
            .await?
        {
            let labels = c.labels.clone().unwrap_or_default();
            let Some(identity) = labels.get(LABEL_IDENTITY).cloned() else {
                continue;
            };
            let entry = out.entry(identity.clone()).or_insert_with(|| Found {
                identity,
                agent: labels.get(LABEL_AGENT).cloned().unwrap_or_default(),
                containers: BTreeMap::new(),
                launcher_pid: labels.get(LABEL_LAUNCHER_PID).and_then(|p| p.parse().ok()),
            });
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_default();
            let state = c.state.map(|s| s.to_string()).unwrap_or_default();
            entry.containers.insert(name, state);
        }
        Ok(out.into_values().collect())
    }

    async fn remove_bottle(&self, identity: &str) -> Result<Vec<String>, DockerError> {
        let labels = [(LABEL_MANAGED, "true"), (LABEL_IDENTITY, identity)];
        let mut removed = Vec::new();
        // Agent first, then sidecars, mirroring teardown order.
        let mut containers = self.containers_with_labels(&labels).await?;
        containers.sort_by_key(|c| {
            let comp = c
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_COMPONENT))
                .and_then(|s| Component::parse(s).ok());
            std::cmp::Reverse(comp)
        });
        for c in containers {
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_owned())
                .or(c.id.clone())
                .unwrap_or_default();
            self.remove_container(&name).await?;
            removed.push(name);
        }
        for v in self.volumes_with_labels(&labels).await? {
            self.remove_volume(&v.name).await?;
            removed.push(v.name);
        }
        for n in self.networks_with_labels(&labels).await? {
            if let Some(name) = n.name {
                self.remove_network(&name).await?;
                removed.push(name);
            }
        }
        Ok(removed)
    }
}
