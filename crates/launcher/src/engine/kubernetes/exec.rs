//! Running a command in a bottle's container through the API server
//! (`pods/exec`, a WebSocket): how the launcher asks egress for `/status`
//! and reads or decides supervise's queue, whose images have no shell.
//!
//! Is: the [`PodExec`] seam (tests give a fake that runs the real command
//! logic) and [`ApiExec`], its kube-rs implementation. Is not: what the
//! commands mean (`approvals::apply::kubernetes`,
//! `approvals::queue::kubernetes`).

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::client::classify;

/// What a command run by [`PodExec`] left.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its exit code; `None` when the API server did not report one.
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs a command in a container.
#[allow(async_fn_in_trait)] // used with concrete types only
pub trait PodExec {
    /// Runs `cmd` in `container` of Pod `pod`, with `stdin` (then end of
    /// file) when given.
    async fn exec(
        &self,
        pod: &str,
        container: &str,
        cmd: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, String>;
}

/// [`PodExec`] through the API server (`pods/exec`, a WebSocket).
#[derive(Clone)]
pub struct ApiExec {
    api: Api<Pod>,
}

impl std::fmt::Debug for ApiExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiExec").finish_non_exhaustive()
    }
}

impl ApiExec {
    /// Execs in namespace `ns`.
    pub fn new(client: kube::Client, ns: &str) -> Self {
        Self {
            api: Api::namespaced(client, ns),
        }
    }
}

impl PodExec for ApiExec {
    async fn exec(
        &self,
        pod: &str,
        container: &str,
        cmd: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, String> {
        let ap = AttachParams::default()
            .container(container)
            .stdin(stdin.is_some())
            .stdout(true)
            .stderr(true);
        let mut proc = self
            .api
            .exec(pod, cmd.to_vec(), &ap)
            .await
            .map_err(|e| classify(e, "create", "pods/exec", pod, None).to_string())?;
        if let (Some(bytes), Some(mut w)) = (stdin, proc.stdin()) {
            w.write_all(bytes)
                .await
                .map_err(|e| format!("writing to exec in {pod}: {e}"))?;
            // Dropping the writer closes stdin (the v5 protocol's stream
            // close; an older API server closes the whole exec, and the
            // caller checks the result another way).
            let _ = w.shutdown().await;
            drop(w);
        }
        let (mut out, mut err) = (String::new(), String::new());
        let stdout = proc.stdout();
        let stderr = proc.stderr();
        let read_out = async {
            if let Some(mut s) = stdout {
                s.read_to_string(&mut out).await?;
            }
            std::io::Result::Ok(())
        };
        let read_err = async {
            if let Some(mut s) = stderr {
                s.read_to_string(&mut err).await?;
            }
            std::io::Result::Ok(())
        };
        let (a, b) = tokio::join!(read_out, read_err);
        a.and(b)
            .map_err(|e| format!("reading the output of exec in {pod}: {e}"))?;
        let status = match proc.take_status() {
            Some(s) => s.await,
            None => None,
        };
        let code = status.map(|s| {
            if s.status.as_deref() == Some("Success") {
                0
            } else {
                // NonZeroExitCode carries the code in details.causes.
                s.details
                    .and_then(|d| d.causes)
                    .into_iter()
                    .flatten()
                    .find(|c| c.reason.as_deref() == Some("ExitCode"))
                    .and_then(|c| c.message)
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(1)
            }
        });
        Ok(ExecOutput {
            code,
            stdout: out,
            stderr: err,
        })
    }
}
