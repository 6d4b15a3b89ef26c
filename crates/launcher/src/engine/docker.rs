//! The Docker engine layer: every call the launcher makes to Docker, over
//! bollard, each failure naming the operation and the object and keeping
//! Docker's own message.
//!
//! Is: connecting (with API version negotiation: the engine may be older
//! than bollard's default), the engine's own report ([`Engine::info`]),
//! images (exists, import a root file system, build), networks (with
//! driver options, and what Docker says it made), volumes, containers
//! (create from a [`ContainerPlan`] with its confinement, upload archives —
//! into the writable mounts when the root is read-only —, read a file back,
//! start, exec, readiness polling, logs, removal) and listing objects by
//! label.
//!
//! Is not: the launch order or teardown policy (see `lifecycle`), nor the
//! plan. Secret values pass through [`Engine::create_container`] into the
//! container's environment and are never logged.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::body_full;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerSummary, EndpointSettings, HostConfig, Mount, MountType, Network,
    NetworkConnectRequest, NetworkCreateRequest, NetworkingConfig, Volume, VolumeCreateRequest,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    DownloadFromContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    ListVolumesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::{Stream, StreamExt as _, TryStreamExt as _};

use crate::engine::archive::{self, ArchiveError, Fetched};
use crate::plan::preflight::engine::EngineInfo;
use crate::plan::{ContainerPlan, NetworkPlan, VolumePlan};

/// A Docker operation that failed; each variant names what was being done.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's message documents it
pub enum DockerError {
    #[error("connecting to the Docker engine: {0}")]
    Connect(#[source] bollard::errors::Error),
    #[error(
        "Docker engine does not answer (is it running, and may this user use its socket?): {0}"
    )]
    Ping(#[source] bollard::errors::Error),
    #[error("inspecting image {image}: {source}")]
    InspectImage {
        image: String,
        source: bollard::errors::Error,
    },
    #[error("importing root file system as image {image}: {source}")]
    ImportImage {
        image: String,
        source: bollard::errors::Error,
    },
    #[error("building image {image}: {source}")]
    BuildImage {
        image: String,
        source: bollard::errors::Error,
    },
    #[error("building image {image}: {message}")]
    BuildFailed { image: String, message: String },
    #[error("creating network {name}: {source}")]
    CreateNetwork {
        name: String,
        source: bollard::errors::Error,
    },
    #[error("removing network {name}: {source}")]
    RemoveNetwork {
        name: String,
        source: bollard::errors::Error,
    },
    #[error("connecting container {container} to network {network}: {source}")]
    ConnectNetwork {
        container: String,
        network: String,
        source: bollard::errors::Error,
    },
    #[error("creating container {name}: {source}")]
    CreateContainer {
        name: String,
        source: bollard::errors::Error,
    },
    #[error("copying files into container {name}: {source}")]
    Upload {
        name: String,
        source: bollard::errors::Error,
    },
    #[error("starting container {name}: {source}")]
    StartContainer {
        name: String,
        source: bollard::errors::Error,
    },
    #[error("removing container {name}: {source}")]
    RemoveContainer {
        name: String,
        source: bollard::errors::Error,
    },
    #[error("inspecting container {name}: {source}")]
    InspectContainer {
        name: String,
        source: bollard::errors::Error,
    },
    #[error("running {cmd:?} in container {name}: {source}")]
    Exec {
        name: String,
        cmd: String,
        source: bollard::errors::Error,
    },
    #[error("signalling container {name}: {source}")]
    Signal {
        name: String,
        source: bollard::errors::Error,
    },
    #[error("reading logs of container {name}: {source}")]
    Logs {
        name: String,
        source: bollard::errors::Error,
    },
    #[error("inspecting network {name}: {source}")]
    InspectNetwork {
        name: String,
        source: bollard::errors::Error,
    },
    #[error("pulling image {image}: {source}")]
    PullImage {
        image: String,
        source: bollard::errors::Error,
    },
    #[error("asking the Docker engine for its version and configuration: {0}")]
    Info(#[source] bollard::errors::Error),
    #[error("creating volume {name}: {source}")]
    CreateVolume {
        name: String,
        source: bollard::errors::Error,
    },
    #[error("removing volume {name}: {source}")]
    RemoveVolume {
        name: String,
        source: bollard::errors::Error,
    },
    #[error("listing volumes: {0}")]
    ListVolumes(#[source] bollard::errors::Error),
    #[error("reading {path} from container {name}: {source}")]
    Download {
        name: String,
        path: String,
        source: bollard::errors::Error,
    },
    #[error("files for container {name}: {source}")]
    Archive { name: String, source: ArchiveError },
    #[error("listing containers: {0}")]
    ListContainers(#[source] bollard::errors::Error),
    #[error("listing networks: {0}")]
    ListNetworks(#[source] bollard::errors::Error),
    #[error(
        "container {name} exited before it was ready (exit code {code:?}); its last log lines:\n{logs}"
    )]
    ExitedEarly {
        name: String,
        code: Option<i64>,
        logs: String,
    },
    #[error(
        "container {name} was not ready after {secs} s (readiness check {check:?} kept failing: {last}); its last log lines:\n{logs}"
    )]
    NotReady {
        name: String,
        secs: u64,
        check: String,
        last: String,
        logs: String,
    },
}

/// Output and status of a finished exec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code (`None` if Docker did not report one).
    pub code: Option<i64>,
    /// stdout and stderr, interleaved as Docker delivered them.
    pub output: String,
}

/// A connected Docker engine.
#[derive(Clone, Debug)]
pub struct Engine {
    docker: Docker,
}

impl Engine {
    /// Connects with the local defaults (`DOCKER_HOST` or the Unix socket),
    /// negotiates the API version, and pings.
    pub async fn connect() -> Result<Self, DockerError> {
        let docker = Docker::connect_with_local_defaults().map_err(DockerError::Connect)?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(DockerError::Ping)?;
        docker.ping().await.map_err(DockerError::Ping)?;
        Ok(Self { docker })
    }

    /// The engine's report about itself: version, API version, OS,
    /// platform and component names, rootless mode, network drivers.
    pub async fn info(&self) -> Result<EngineInfo, DockerError> {
        let v = self.docker.version().await.map_err(DockerError::Info)?;
        let i = self.docker.info().await.map_err(DockerError::Info)?;
        let mut platform: Vec<String> = v.platform.map(|p| p.name).into_iter().collect();
        platform.extend(v.components.unwrap_or_default().into_iter().map(|c| c.name));
        Ok(EngineInfo {
            version: v.version.or(i.server_version).unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
            os: v.os.or(i.os_type).unwrap_or_default(),
            platform,
            rootless: i
                .security_options
                .unwrap_or_default()
                .iter()
                .any(|o| o.split(',').any(|kv| kv == "name=rootless")),
            network_drivers: i.plugins.and_then(|p| p.network).unwrap_or_default(),
        })
    }

    /// The bollard client, for callers that need an operation not wrapped here.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Whether an image with this reference exists locally.
    pub async fn image_exists(&self, image: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(source) => Err(DockerError::InspectImage {
                image: image.to_owned(),
                source,
            }),
        }
    }

    /// `docker import`: a tar of a root file system becomes image
    /// `repo:tag`, with Dockerfile `changes` (e.g. `ENV PATH=…`).
    pub async fn import_rootfs(
        &self,
        rootfs_tar: impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
        repo: &str,
        tag: &str,
        changes: Vec<String>,
    ) -> Result<(), DockerError> {
        let image = format!("{repo}:{tag}");
        let opts = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .changes(changes)
            .build();
        let mut stream =
            self.docker
                .create_image(Some(opts), Some(bollard::body_try_stream(rootfs_tar)), None);
        while let Some(item) = stream.next().await {
            item.map_err(|source| DockerError::ImportImage {
                image: image.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Builds `context_tar` (a tar with a `Dockerfile`) as `tag`, calling
    /// `progress` with each line of build output.
    pub async fn build_image(
        &self,
        context_tar: Vec<u8>,
        tag: &str,
        build_args: HashMap<String, String>,
        labels: HashMap<String, String>,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), DockerError> {
        self.build_image_on(context_tar, tag, build_args, labels, None, progress)
            .await
    }

    /// [`Engine::build_image`] with the `RUN` steps' containers on
    /// `network` (`Some("none")`: no network at all; `None`: the engine's
    /// default bridge).
    pub async fn build_image_on(
        &self,
        context_tar: Vec<u8>,
        tag: &str,
        build_args: HashMap<String, String>,
        labels: HashMap<String, String>,
        network: Option<&str>,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), DockerError> {
        let mut opts = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(tag)
            .rm(true)
            .forcerm(true)
            .pull("false")
            .buildargs(&build_args)
            .labels(&labels);
        if let Some(n) = network {
            opts = opts.networkmode(n);
        }
        let opts = opts.build();
        let mut stream = self
            .docker
            .build_image(opts, None, Some(body_full(context_tar.into())));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|source| DockerError::BuildImage {
                image: tag.to_owned(),
                source,
            })?;
            if let Some(detail) = info.error_detail {
                return Err(DockerError::BuildFailed {
                    image: tag.to_owned(),
                    message: detail.message.unwrap_or_else(|| "unknown error".into()),
                });
            }
            if let Some(text) = info.stream.as_deref() {
                for line in strip_ansi(text)
                    .lines()
                    .map(str::trim_end)
                    .filter(|l| !l.is_empty())
                {
                    progress(line);
                }
            }
        }
        Ok(())
    }

    /// Creates a network from its plan (driver options included).
    pub async fn create_network(&self, plan: &NetworkPlan) -> Result<(), DockerError> {
        let req = NetworkCreateRequest {
            name: plan.name.clone(),
            driver: Some("bridge".into()),
            internal: Some(plan.internal),
            options: Some(plan.options.clone().into_iter().collect()),
            labels: Some(plan.labels.clone().into_iter().collect()),
            ..Default::default()
        };
        self.docker
            .create_network(req)
            .await
            .map(|_| ())
            .map_err(|source| DockerError::CreateNetwork {
                name: plan.name.clone(),
                source,
            })
    }

    /// What Docker made of network `name`: its id, driver options,
    /// subnets and gateways.
    pub async fn network_facts(&self, name: &str) -> Result<NetworkFacts, DockerError> {
        let net = self
            .docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .map_err(|source| DockerError::InspectNetwork {
                name: name.to_owned(),
                source,
            })?;
        let config = net.ipam.and_then(|i| i.config).unwrap_or_default();
        Ok(NetworkFacts {
            id: net.id.unwrap_or_default(),
            options: net.options.unwrap_or_default().into_iter().collect(),
            subnets: config.iter().filter_map(|c| c.subnet.clone()).collect(),
            gateways: config.iter().filter_map(|c| c.gateway.clone()).collect(),
        })
    }

    /// Creates a named volume from its plan.
    pub async fn create_volume(&self, plan: &VolumePlan) -> Result<(), DockerError> {
        let req = VolumeCreateRequest {
            name: Some(plan.name.clone()),
            driver: Some("local".into()),
            labels: Some(plan.labels.clone().into_iter().collect()),
            ..Default::default()
        };
        self.docker
            .create_volume(req)
            .await
            .map(|_| ())
            .map_err(|source| DockerError::CreateVolume {
                name: plan.name.clone(),
                source,
            })
    }

    /// Removes a volume; a missing one is fine.
    pub async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        let opts = RemoveVolumeOptionsBuilder::default().force(true).build();
        match self.docker.remove_volume(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(source) => Err(DockerError::RemoveVolume {
                name: name.to_owned(),
                source,
            }),
        }
    }

    /// Volumes carrying every `key=value` label.
    pub async fn volumes_with_labels(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<Volume>, DockerError> {
        let filters = label_filters(labels);
        let opts = ListVolumesOptionsBuilder::default()
            .filters(&filters)
            .build();
        Ok(self
            .docker
            .list_volumes(Some(opts))
            .await
            .map_err(DockerError::ListVolumes)?
            .volumes
            .unwrap_or_default())
    }

    /// The subnets (CIDR text) Docker assigned to network `name`.
    pub async fn network_subnets(&self, name: &str) -> Result<Vec<String>, DockerError> {
        let net = self
            .docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .map_err(|source| DockerError::InspectNetwork {
                name: name.to_owned(),
                source,
            })?;
        Ok(net
            .ipam
            .and_then(|i| i.config)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| c.subnet)
            .collect())
    }

    /// Pulls `image` (a reference pinned by digest), calling `progress`
    /// with each status line.
    pub async fn pull_image(
        &self,
        image: &str,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), DockerError> {
        let opts = CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        let mut stream = self.docker.create_image(Some(opts), None, None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|source| DockerError::PullImage {
                image: image.to_owned(),
                source,
            })?;
            if let Some(status) = info.status.as_deref() {
                progress(status);
            }
        }
        Ok(())
    }

    /// Removes a network; a missing one is fine.
    pub async fn remove_network(&self, name: &str) -> Result<(), DockerError> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(source) => Err(DockerError::RemoveNetwork {
                name: name.to_owned(),
                source,
            }),
        }
    }

    /// Creates a container from its plan on its first network (with that
    /// network's aliases), then connects it to the others. `secret_env`
    /// holds `NAME=value` pairs resolved from the operator's environment.
    pub async fn create_container(
        &self,
        plan: &ContainerPlan,
        secret_env: &[(String, String)],
    ) -> Result<(), DockerError> {
        let mut env: Vec<String> = plan.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.extend(secret_env.iter().map(|(k, v)| format!("{k}={v}")));
        // The Mounts API, not Binds: a missing host path is an error (Binds
        // would create it as root), and no path is parsed at `:`.
        let mut mounts: Vec<Mount> = plan
            .mounts
            .iter()
            .map(|m| Mount {
                typ: Some(MountType::BIND),
                source: Some(m.source.display().to_string()),
                target: Some(m.target.clone()),
                read_only: Some(m.read_only),
                ..Default::default()
            })
            .collect();
        mounts.extend(plan.volumes.iter().map(|v| Mount {
            typ: Some(MountType::VOLUME),
            source: Some(v.volume.clone()),
            target: Some(v.target.clone()),
            read_only: Some(false),
            ..Default::default()
        }));
        let c = &plan.confinement;
        let map = |m: &std::collections::BTreeMap<String, String>| {
            (!m.is_empty()).then(|| m.clone().into_iter().collect::<HashMap<_, _>>())
        };
        let memory = i64::try_from(c.memory_bytes).unwrap_or(i64::MAX);
        let first = plan.networks.first();
        let endpoints = first.map(|a| {
            HashMap::from([(
                a.network.clone(),
                EndpointSettings {
                    aliases: Some(a.aliases.clone()),
                    ..Default::default()
                },
            )])
        });
        let body = ContainerCreateBody {
            image: Some(plan.image.clone()),
            cmd: Some(plan.cmd.clone()),
            user: Some(plan.user.clone()),
            env: Some(env),
            working_dir: plan.workdir.clone(),
            labels: Some(plan.labels.clone().into_iter().collect()),
            host_config: Some(HostConfig {
                mounts: (!mounts.is_empty()).then_some(mounts),
                network_mode: first.map(|a| a.network.clone()),
                init: Some(true),
                cap_drop: (!c.cap_drop.is_empty()).then(|| c.cap_drop.clone()),
                cap_add: (!c.cap_add.is_empty()).then(|| c.cap_add.clone()),
                security_opt: c
                    .no_new_privileges
                    .then(|| vec!["no-new-privileges:true".to_owned()]),
                readonly_rootfs: c.read_only_rootfs.then_some(true),
                tmpfs: map(&c.tmpfs),
                // 0: no limit (only helper containers of the tests).
                memory: (memory > 0).then_some(memory),
                // Equal to memory: no swap on top of the limit.
                memory_swap: (memory > 0).then_some(memory),
                pids_limit: (c.pids_limit > 0).then(|| i64::from(c.pids_limit)),
                sysctls: map(&c.sysctls),
                dns: c.dns.as_ref().map(|d| d.servers.clone()),
                dns_options: c.dns.as_ref().map(|d| d.options.clone()),
                ..Default::default()
            }),
            networking_config: endpoints.map(|e| NetworkingConfig {
                endpoints_config: Some(e),
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .name(&plan.name)
            .build();
        self.docker
            .create_container(Some(opts), body)
            .await
            .map_err(|source| DockerError::CreateContainer {
                name: plan.name.clone(),
                source,
            })?;
        for a in plan.networks.iter().skip(1) {
            let req = NetworkConnectRequest {
                container: plan.name.clone(),
                endpoint_config: Some(EndpointSettings {
                    aliases: Some(a.aliases.clone()),
                    ..Default::default()
                }),
            };
            self.docker
                .connect_network(&a.network, req)
                .await
                .map_err(|source| DockerError::ConnectNetwork {
                    container: plan.name.clone(),
                    network: a.network.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Extracts `tar` (entries relative to `/`, see [`crate::engine::archive`]) in
    /// the container. When its root file system is read-only, the archive
    /// is split by the container's writable mounts and each part extracted
    /// there (Docker accepts uploads only into a volume or bind mount); a
    /// file on none of them is an error naming it.
    pub async fn upload(&self, name: &str, tar: Vec<u8>) -> Result<(), DockerError> {
        let info = self
            .docker
            .inspect_container(name, None)
            .await
            .map_err(|source| DockerError::InspectContainer {
                name: name.to_owned(),
                source,
            })?;
        let read_only = info
            .host_config
            .as_ref()
            .and_then(|h| h.readonly_rootfs)
            .unwrap_or(false);
        let parts = if read_only {
            let roots: Vec<String> = info
                .mounts
                .unwrap_or_default()
                .into_iter()
                .filter(|m| m.rw.unwrap_or(false))
                .filter_map(|m| m.destination)
                .collect();
            archive::reroot(&tar, &roots).map_err(|source| DockerError::Archive {
                name: name.to_owned(),
                source,
            })?
        } else {
            vec![("/".to_owned(), tar)]
        };
        for (root, part) in parts {
            self.upload_at(name, &root, part).await?;
        }
        Ok(())
    }

    /// Extracts the archive `tar` at `path` in the container.
    pub async fn upload_at(&self, name: &str, path: &str, tar: Vec<u8>) -> Result<(), DockerError> {
        let opts = UploadToContainerOptionsBuilder::default()
            .path(path)
            .build();
        self.docker
            .upload_to_container(name, Some(opts), body_full(tar.into()))
            .await
            .map_err(|source| DockerError::Upload {
                name: name.to_owned(),
                source,
            })
    }

    /// Extracts an archive streamed from `tar` at `path` in the container
    /// (the copy workspace mode: a whole directory, never in memory).
    pub async fn upload_stream(
        &self,
        name: &str,
        path: &str,
        tar: impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    ) -> Result<(), DockerError> {
        let opts = UploadToContainerOptionsBuilder::default()
            .path(path)
            .build();
        self.docker
            .upload_to_container(name, Some(opts), bollard::body_try_stream(tar))
            .await
            .map_err(|source| DockerError::Upload {
                name: name.to_owned(),
                source,
            })
    }

    /// Reads the file at `path` in the container (created or running),
    /// at most `limit` bytes; `Ok(None)` when there is none.
    pub async fn read_file(
        &self,
        name: &str,
        path: &str,
        limit: u64,
    ) -> Result<Option<Fetched>, DockerError> {
        let opts = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let err = |source| DockerError::Download {
            name: name.to_owned(),
            path: path.to_owned(),
            source,
        };
        let mut stream = self.docker.download_from_container(name, Some(opts));
        let mut tar = Vec::new();
        // The archive carries headers on top of the file: allow a margin.
        let cap = limit.saturating_add(64 * 1024);
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    tar.extend_from_slice(&bytes);
                    if tar.len() as u64 > cap {
                        return Err(DockerError::Archive {
                            name: name.to_owned(),
                            source: ArchiveError::TooLarge {
                                path: path.to_owned(),
                                limit,
                            },
                        });
                    }
                }
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(err(e)),
            }
        }
        archive::single_file(&tar, path, limit)
            .map(Some)
            .map_err(|source| DockerError::Archive {
                name: name.to_owned(),
                source,
            })
    }

    /// Starts a created container.
    pub async fn start(&self, name: &str) -> Result<(), DockerError> {
        self.docker
            .start_container(name, None)
            .await
            .map_err(|source| DockerError::StartContainer {
                name: name.to_owned(),
                source,
            })
    }

    /// Force-removes a container (running or not); a missing one is fine.
    /// Sends `signal` (e.g. `SIGHUP`) to container `name`'s main process.
    pub async fn kill(&self, name: &str, signal: &str) -> Result<(), DockerError> {
        let opts = bollard::query_parameters::KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        self.docker
            .kill_container(name, Some(opts))
            .await
            .map_err(|source| DockerError::Signal {
                name: name.to_owned(),
                source,
            })
    }

    pub async fn remove_container(&self, name: &str) -> Result<(), DockerError> {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // Removal already in progress (a concurrent cleanup): fine.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(source) => Err(DockerError::RemoveContainer {
                name: name.to_owned(),
                source,
            }),
        }
    }

    /// Whether the container is running, and its exit code if it is not.
    pub async fn running(&self, name: &str) -> Result<(bool, Option<i64>), DockerError> {
        let info = self
            .docker
            .inspect_container(name, None)
            .await
            .map_err(|source| DockerError::InspectContainer {
                name: name.to_owned(),
                source,
            })?;
        let state = info.state.unwrap_or_default();
        Ok((state.running.unwrap_or(false), state.exit_code))
    }

    /// Runs `cmd` as `user` in the container and collects its output.
    pub async fn exec(
        &self,
        name: &str,
        user: &str,
        cmd: &[String],
    ) -> Result<ExecOutput, DockerError> {
        let mut output = String::new();
        let code = self
            .exec_streaming(name, user, cmd, &mut |_, chunk| {
                output.push_str(&String::from_utf8_lossy(chunk))
            })
            .await?;
        Ok(ExecOutput { code, output })
    }

    /// Runs `cmd` as `user` in the container, handing each output chunk to
    /// `out` (`true` for stderr) as it arrives; returns the exit code.
    pub async fn exec_streaming(
        &self,
        name: &str,
        user: &str,
        cmd: &[String],
        out: &mut (dyn FnMut(bool, &[u8]) + Send),
    ) -> Result<Option<i64>, DockerError> {
        let err = |source| DockerError::Exec {
            name: name.to_owned(),
            cmd: cmd.join(" "),
            source,
        };
        let created = self
            .docker
            .create_exec(
                name,
                CreateExecOptions {
                    cmd: Some(cmd.to_vec()),
                    user: Some(user.to_owned()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(err)?;
        if let StartExecResults::Attached {
            output: mut stream, ..
        } = self
            .docker
            .start_exec(&created.id, None)
            .await
            .map_err(err)?
        {
            while let Some(chunk) = stream.next().await {
                match chunk.map_err(err)? {
                    LogOutput::StdErr { message } => out(true, &message),
                    other => out(false, &other.into_bytes()),
                }
            }
        }
        Ok(self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(err)?
            .exit_code)
    }

    /// Polls `check` (run as `user`) until it exits 0, the container stops,
    /// or `timeout` passes. Each failure names the container and includes
    /// its last log lines.
    pub async fn wait_ready(
        &self,
        name: &str,
        user: &str,
        check: &[String],
        timeout: Duration,
    ) -> Result<(), DockerError> {
        let deadline = Instant::now() + timeout;
        let mut delay = Duration::from_millis(100);
        loop {
            let (running, code) = self.running(name).await?;
            if !running {
                return Err(DockerError::ExitedEarly {
                    name: name.to_owned(),
                    code,
                    logs: self.tail_logs(name, 20).await.unwrap_or_default(),
                });
            }
            let last = match self.exec(name, user, check).await {
                Ok(ExecOutput { code: Some(0), .. }) => return Ok(()),
                Ok(out) => format!("exit {:?}: {}", out.code, out.output.trim()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(DockerError::NotReady {
                    name: name.to_owned(),
                    secs: timeout.as_secs(),
                    check: check.join(" "),
                    last,
                    logs: self.tail_logs(name, 20).await.unwrap_or_default(),
                });
            }
            tokio::time::sleep(delay.min(deadline.saturating_duration_since(Instant::now()))).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// The last `n` log lines of a container.
    pub async fn tail_logs(&self, name: &str, n: usize) -> Result<String, DockerError> {
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&n.to_string())
            .build();
        let chunks: Vec<_> = self
            .docker
            .logs(name, Some(opts))
            .try_collect()
            .await
            .map_err(|source| DockerError::Logs {
                name: name.to_owned(),
                source,
            })?;
        Ok(chunks
            .into_iter()
            .map(|c| String::from_utf8_lossy(&c.into_bytes()).into_owned())
            .collect())
    }

    /// A log stream (for `launcher logs [--follow]`).
    pub fn logs(
        &self,
        name: &str,
        follow: bool,
    ) -> impl Stream<Item = Result<bytes::Bytes, DockerError>> + '_ {
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(follow)
            .build();
        let name = name.to_owned();
        self.docker.logs(&name, Some(opts)).map(move |r| {
            r.map(|c| c.into_bytes())
                .map_err(|source| DockerError::Logs {
                    name: name.clone(),
                    source,
                })
        })
    }

    /// Containers (running or not) carrying every `key=value` label.
    pub async fn containers_with_labels(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ContainerSummary>, DockerError> {
        let filters = label_filters(labels);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.docker
            .list_containers(Some(opts))
            .await
            .map_err(DockerError::ListContainers)
    }

    /// Networks carrying every `key=value` label.
    pub async fn networks_with_labels(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<Network>, DockerError> {
        let filters = label_filters(labels);
        let opts = ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        self.docker
            .list_networks(Some(opts))
            .await
            .map_err(DockerError::ListNetworks)
    }

    /// Containers, networks and volumes whose name is exactly one of
    /// `names` (the orphan probe: Docker's name filter is a substring
    /// match, so results are re-checked for equality).
    pub async fn existing_names(&self, names: &[String]) -> Result<Vec<String>, DockerError> {
        let mut found = Vec::new();
        for name in names {
            let filters = HashMap::from([("name".to_owned(), vec![name.clone()])]);
            let cs = self
                .docker
                .list_containers(Some(
                    ListContainersOptionsBuilder::default()
                        .all(true)
                        .filters(&filters)
                        .build(),
                ))
                .await
                .map_err(DockerError::ListContainers)?;
            if cs
                .iter()
                .flat_map(|c| c.names.iter().flatten())
                .any(|n| n.trim_start_matches('/') == name)
            {
                found.push(name.clone());
                continue;
            }
            let ns = self
                .docker
                .list_networks(Some(
                    ListNetworksOptionsBuilder::default()
                        .filters(&filters)
                        .build(),
                ))
                .await
                .map_err(DockerError::ListNetworks)?;
            if ns.iter().any(|n| n.name.as_deref() == Some(name.as_str())) {
                found.push(name.clone());
                continue;
            }
            let vs = self
                .docker
                .list_volumes(Some(
                    ListVolumesOptionsBuilder::default()
                        .filters(&filters)
                        .build(),
                ))
                .await
                .map_err(DockerError::ListVolumes)?;
            if vs.volumes.iter().flatten().any(|v| v.name == *name) {
                found.push(name.clone());
            }
        }
        Ok(found)
    }
}

/// What Docker reports about a network it created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkFacts {
    /// The network id (the bridge interface is `br-<first 12>`).
    pub id: String,
    /// Driver options as stored.
    pub options: std::collections::BTreeMap<String, String>,
    /// Subnets (CIDR).
    pub subnets: Vec<String>,
    /// Gateway addresses.
    pub gateways: Vec<String>,
}

/// Removes terminal escape sequences (`ESC [ … letter`) from build output,
/// which Docker colours.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn label_filters(labels: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
    )])
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

mod bottle;

#[cfg(test)]
mod tests;
