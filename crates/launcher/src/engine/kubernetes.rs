//! The bottle on Kubernetes: the same [`Plan`] the Docker engine executes,
//! rendered as typed `k8s-openapi` objects ([`render`]) and applied to the
//! cluster of the current kubeconfig context ([`client`]). The approval
//! loop's egress side over the API server is
//! `approvals::apply::kubernetes`.
//!
//! Is: one namespace per bottle; Pods for the sidecars and the agent,
//! Services for the sidecars, NetworkPolicies that leave the agent only
//! its sidecars, credentials in Secrets mounted only where they are
//! injected. See docs/kubernetes.md for the isolation argument.
//!
//! Is not: a scheduler or a controller. The launcher creates the objects,
//! waits for them and deletes the namespace; nothing runs in the cluster
//! on its behalf.

pub mod client;
pub mod exec;
pub mod render;

#[cfg(test)]
pub(crate) mod fake;

// Everything this module uses from the plan, in one place.
pub(crate) use crate::plan::identity::{Component, LABEL_COMPONENT, LABEL_IDENTITY, LABEL_MANAGED};
pub(crate) use crate::plan::{
    AGENT_HOME, AGENT_UID, ContainerPlan, DNS_SINK, EGRESS_PORT,
    EGRESS_ROUTES as EGRESS_ROUTES_PATH, EGRESS_TOKENS_DIR, FileSource, GIT_GATE_PORT, Plan,
    SIDECAR_UID, SUPERVISE_PORT, SUPERVISE_QUEUE,
};
