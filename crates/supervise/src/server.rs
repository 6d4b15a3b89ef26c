//! The MCP handler: lists the tools and runs a call — validate, queue, wait
//! for the operator's decision while sending progress notifications, or
//! answer from the egress proxy / the queue.
//!
//! Is: the only code that knows MCP types (`rmcp`). One [`Supervisor`] is
//! made per MCP session; all of them share one [`Shared`] state.
//!
//! Is not: the queue format (that is `queue` + `manifest::queue`) or the
//! wording of the tools (that is `tools`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use manifest::queue::{Proposal, ProposalId};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::queue::{Queue, QueueError, Status};
use crate::tools::{self, Reply};

/// State shared by every session.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub queue: Arc<Queue>,
    /// Cancelled first on server shutdown: waiting calls return "pending".
    pub stop_waiting: CancellationToken,
    /// Tracks waiting calls, so shutdown can let their "pending" answers
    /// go out before the MCP sessions close.
    pub waits: TaskTracker,
}

/// One MCP session's handler.
#[derive(Clone, Debug)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

impl Supervisor {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn tools(&self) -> Vec<Tool> {
        tools::list(
            self.shared.config.pipelock,
            self.shared.config.decision_timeout.as_secs(),
        )
    }

    /// Runs a queue operation on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Queue) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, String> {
        let queue = self.shared.queue.clone();
        match tokio::task::spawn_blocking(move || f(&queue)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("queue operation failed: {e}")),
        }
    }

    async fn ask(
        &self,
        tool: &str,
        ask: tools::Ask,
        ctx: &RequestContext<RoleServer>,
    ) -> CallToolResult {
        let bottle = self.shared.config.bottle.clone();
        let now = jiff::Timestamp::now();
        let submitted = match self
            .blocking(move |q| q.submit(&bottle, ask.request, &ask.justification, now))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(tool, error = %e, "queueing a proposal failed");
                return error(format!("{tool}: could not queue the proposal: {e}"));
            }
        };
        let proposal = submitted.proposal;
        tracing::info!(
            tool,
            id = %proposal.id,
            bottle = %proposal.bottle,
            reused = submitted.reused,
            "proposal queued; waiting for the operator"
        );
        self.shared
            .waits
            .track_future(self.wait(proposal, ctx))
            .await
    }

    /// Polls for the decision until it arrives, the decision timeout
    /// passes, the client cancels, or the server shuts down.
    async fn wait(&self, proposal: Proposal, ctx: &RequestContext<RoleServer>) -> CallToolResult {
        let cfg = &self.shared.config;
        let started = Instant::now();
        let progress_token = ctx.meta.get_progress_token();
        let mut last_progress = Instant::now();
        let mut warned = false;
        let tool = proposal.request.tool();
        loop {
            let id = proposal.id.clone();
            match self.blocking(move |q| q.decision(&id)).await {
                Ok(Some(decision)) => {
                    tracing::info!(tool, id = %proposal.id, outcome = ?decision.outcome, "decision observed");
                    return ok(tools::decided(tool, &decision));
                }
                Ok(None) => {}
                Err(e) => {
                    if !warned {
                        tracing::warn!(id = %proposal.id, error = %e, "skipping unreadable decision file; still waiting");
                        warned = true;
                    }
                }
            }
            let waited = started.elapsed();
            if waited >= cfg.decision_timeout {
                tracing::info!(tool, id = %proposal.id, "no decision before the timeout; answering pending");
                return ok(tools::pending(
                    &proposal,
                    Some(cfg.decision_timeout.as_secs()),
                ));
            }
            if let Some(token) = &progress_token
                && last_progress.elapsed() >= cfg.keepalive_interval
            {
                last_progress = Instant::now();
                let secs = waited.as_secs();
                let param = ProgressNotificationParam::new(token.clone(), waited.as_secs_f64())
                    .with_total(cfg.decision_timeout.as_secs_f64())
                    .with_message(format!(
                        "waiting for the operator's decision on proposal {} ({secs}s)",
                        proposal.id
                    ));
                if let Err(e) = ctx.peer.notify_progress(param).await {
                    tracing::debug!(id = %proposal.id, error = %e, "progress notification not delivered");
                }
            }
            let nap = cfg
                .poll_interval
                .min(cfg.decision_timeout.saturating_sub(waited));
            tokio::select! {
                () = tokio::time::sleep(nap.max(Duration::from_millis(1))) => {}
                () = ctx.ct.cancelled() => {
                    tracing::info!(id = %proposal.id, "client cancelled the call; the proposal stays queued");
                    return ok(tools::pending(&proposal, None));
                }
                () = self.shared.stop_waiting.cancelled() => {
                    tracing::info!(id = %proposal.id, "shutting down; the proposal stays queued");
                    return ok(tools::pending(&proposal, None));
                }
            }
        }
    }

    async fn status(&self, id: ProposalId) -> CallToolResult {
        let lookup = id.clone();
        match self.blocking(move |q| q.status(&lookup)).await {
            Ok(Status::Decided { proposal, decision }) => {
                let tool = proposal.as_ref().map_or("", |p| p.request.tool());
                ok(tools::decided(tool, &decision))
            }
            Ok(Status::Pending(p)) => ok(tools::pending(&p, None)),
            Ok(Status::Unknown) => error(format!(
                "{}: no proposal with id {id:?} in this bottle's queue; use the id a pending call returned",
                tools::PROPOSAL_STATUS
            )),
            Err(e) => {
                tracing::warn!(id = %id, error = %e, "proposal-status could not read the queue");
                error(format!(
                    "{}: the queue entry for {id} is unreadable ({e}); it counts as pending - ask the operator",
                    tools::PROPOSAL_STATUS
                ))
            }
        }
    }

    async fn list_routes(&self) -> CallToolResult {
        let Some(proxy) = &self.shared.config.egress_proxy else {
            return error(format!(
                "{}: this supervise was started without --egress-proxy, so it cannot read the route table",
                tools::LIST_EGRESS_ROUTES
            ));
        };
        match crate::egress::fetch_routes(proxy).await {
            Ok(table) => {
                let text =
                    serde_json::to_string_pretty(&table).unwrap_or_else(|_| table.to_string());
                let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
                result.structured_content = Some(table);
                result
            }
            Err(e) => {
                tracing::warn!(error = %e, "list-egress-routes failed");
                error(format!("{}: {e}", tools::LIST_EGRESS_ROUTES))
            }
        }
    }

    async fn current_dockerfile(&self) -> Option<String> {
        let path = self.shared.config.dockerfile.clone()?;
        let read = tokio::task::spawn_blocking(move || read_limited(&path)).await;
        match read {
            Ok(Ok(text)) => Some(text),
            Ok(Err(e)) => {
                // The agent is not shown the reason: it names operator paths.
                tracing::warn!(error = %e, "cannot read the current Dockerfile; proposals are not compared with it");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the current Dockerfile failed");
                None
            }
        }
    }
}

fn read_limited(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = Vec::new();
    file.take(tools::MAX_DOCKERFILE_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() > tools::MAX_DOCKERFILE_BYTES {
        return Err(format!(
            "{}: larger than {} bytes",
            path.display(),
            tools::MAX_DOCKERFILE_BYTES
        ));
    }
    String::from_utf8(buf).map_err(|_| format!("{}: not UTF-8", path.display()))
}

/// A successful reply. The structured copy repeats the text as `message`,
/// so a client that shows the model only `structuredContent` still passes
/// on what to do next.
fn ok(reply: Reply) -> CallToolResult {
    let mut structured = reply.structured;
    if let Some(obj) = structured.as_object_mut() {
        obj.insert(
            "message".into(),
            serde_json::Value::String(reply.text.clone()),
        );
    }
    let mut result = CallToolResult::success(vec![ContentBlock::text(reply.text)]);
    result.structured_content = Some(structured);
    result
}

fn error(message: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

impl ServerHandler for Supervisor {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("supervise", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Ask the operator of this bottle for more access. When the egress proxy refuses a \
request (403), call egress-block; when the image lacks a tool, call capability-block; when a \
call returns pending, ask proposal-status later with its id.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.as_ref();
        let name = request.name.as_ref();
        tracing::debug!(tool = name, "tool call");
        let result = match name {
            tools::EGRESS_BLOCK => match tools::egress_block(args) {
                Ok(ask) => self.ask(name, ask, &context).await,
                Err(e) => error(e),
            },
            tools::CAPABILITY_BLOCK => {
                let current = self.current_dockerfile().await;
                match tools::capability_block(args, current.as_deref()) {
                    Ok(ask) => self.ask(name, ask, &context).await,
                    Err(e) => error(e),
                }
            }
            tools::PIPELOCK_BLOCK if self.shared.config.pipelock => {
                match tools::pipelock_block(args) {
                    Ok(ask) => self.ask(name, ask, &context).await,
                    Err(e) => error(e),
                }
            }
            tools::PROPOSAL_STATUS => match tools::proposal_status(args) {
                Ok(id) => self.status(id).await,
                Err(e) => error(e),
            },
            tools::LIST_EGRESS_ROUTES => match tools::no_args(name, args) {
                Ok(()) => self.list_routes().await,
                Err(e) => error(e),
            },
            _ => {
                let known: Vec<String> = self
                    .tools()
                    .into_iter()
                    .map(|t| t.name.into_owned())
                    .collect();
                return Err(ErrorData::invalid_params(
                    format!(
                        "unknown tool {name:?}; this server has {}",
                        known.join(", ")
                    ),
                    None,
                ));
            }
        };
        Ok(result.into())
    }
}
