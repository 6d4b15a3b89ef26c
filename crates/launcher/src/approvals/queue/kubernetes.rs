//! A bottle's queue on Kubernetes: supervise's volume in the cluster,
//! reached by running `supervise queue …` in the supervise container
//! through `pods/exec` (the image is FROM scratch: no shell, no `cat`, so
//! the binary that serves the queue is also the one that reads it).
//!
//! Is: [`ExecQueue`], the [`BottleQueue`] whose every operation is one
//! exec; the exit codes of `bottle_queue::cli` mapped back to the same
//! errors as a local queue where they matter (no proposal, already
//! decided), the command's own message otherwise. Is not: the rules
//! (those run in the container: `bottle_queue::decide`).

use bottle_queue::cli::{EXIT_DECIDED, EXIT_NO_PROPOSAL, EXIT_OK};
use manifest::queue::{Decision, OperatorAuditRecord, ProposalId};

use super::{BottleQueue, Entry, QueueError, Scan};
use crate::approvals::ApprovalError;
use crate::engine::kubernetes::exec::{ExecOutput, PodExec};
use crate::plan::identity::Component;

/// The queue of the bottle in namespace `ns`, through `exec`.
#[derive(Clone, Debug)]
pub struct ExecQueue<E> {
    exec: E,
    ns: String,
}

impl<E: PodExec> ExecQueue<E> {
    /// supervise's queue in namespace `ns`.
    pub fn new(exec: E, ns: &str) -> Self {
        Self {
            exec,
            ns: ns.to_owned(),
        }
    }

    /// Runs `supervise queue <args>` in the supervise container.
    async fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<ExecOutput, ApprovalError> {
        let pod = Component::Supervise.as_str();
        let mut cmd = vec!["supervise".to_owned(), "queue".to_owned()];
        cmd.extend(args.iter().map(|a| (*a).to_owned()));
        self.exec
            .exec(pod, pod, &cmd, stdin)
            .await
            .map_err(|reason| ApprovalError::QueueExec {
                ns: self.ns.clone(),
                command: args.join(" "),
                reason,
            })
    }

    /// The error of a run that did not succeed.
    fn failed(&self, args: &[&str], out: &ExecOutput) -> ApprovalError {
        let said = out.stderr.trim();
        let said = said.strip_prefix("supervise queue: ").unwrap_or(said);
        ApprovalError::QueueExec {
            ns: self.ns.clone(),
            command: args.join(" "),
            reason: match out.code {
                Some(c) => format!(
                    "exited {c}: {}",
                    crate::approvals::agent_text::one_line(said)
                ),
                None => format!(
                    "no exit status came back: {}",
                    crate::approvals::agent_text::one_line(said)
                ),
            },
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        args: &[&str],
        out: &ExecOutput,
    ) -> Result<T, ApprovalError> {
        serde_json::from_str(out.stdout.trim()).map_err(|e| ApprovalError::QueueExec {
            ns: self.ns.clone(),
            command: args.join(" "),
            reason: format!("its answer is not the expected JSON: {e}"),
        })
    }
}

impl<E: PodExec> BottleQueue for ExecQueue<E> {
    fn describe(&self) -> String {
        format!(
            "supervise's queue in namespace {} ({})",
            self.ns,
            bottle_queue::cli::CONTAINER_QUEUE
        )
    }

    async fn scan(&self) -> Result<Scan, ApprovalError> {
        let args = ["list"];
        let out = self.run(&args, None).await?;
        if out.code != Some(i32::from(EXIT_OK)) {
            return Err(self.failed(&args, &out));
        }
        self.parse(&args, &out)
    }

    async fn entry(&self, id: &ProposalId) -> Result<Option<Entry>, ApprovalError> {
        let args = ["show", id.as_str()];
        let out = self.run(&args, None).await?;
        match out.code {
            Some(c) if c == i32::from(EXIT_OK) => {
                let entry: Entry = self.parse(&args, &out)?;
                if &entry.proposal.id != id {
                    return Err(ApprovalError::QueueExec {
                        ns: self.ns.clone(),
                        command: args.join(" "),
                        reason: format!("it answered proposal {}", entry.proposal.id),
                    });
                }
                Ok(Some(entry))
            }
            Some(c) if c == i32::from(EXIT_NO_PROPOSAL) => Ok(None),
            _ => Err(self.failed(&args, &out)),
        }
    }

    async fn ensure_undecided(&self, id: &ProposalId) -> Result<(), ApprovalError> {
        // `show` fails naming an invalid decision file, as a local check
        // does.
        match self.entry(id).await? {
            Some(Entry {
                decision: Some(d), ..
            }) => Err(QueueError::already_decided(&d).into()),
            _ => Ok(()),
        }
    }

    async fn decide(&self, decision: &Decision) -> Result<(), ApprovalError> {
        let id = decision.id.as_str();
        let args = ["decide", id];
        let json = serde_json::to_vec(decision).map_err(|e| ApprovalError::QueueExec {
            ns: self.ns.clone(),
            command: args.join(" "),
            reason: format!("serialising the decision: {e}"),
        })?;
        let out = self.run(&args, Some(&json)).await?;
        match out.code {
            Some(c) if c == i32::from(EXIT_OK) => Ok(()),
            Some(c) if c == i32::from(EXIT_NO_PROPOSAL) => Err(QueueError::NoProposal {
                id: id.to_owned(),
                queue: self.describe().into(),
            }
            .into()),
            Some(c) if c == i32::from(EXIT_DECIDED) => match self.entry(&decision.id).await {
                Ok(Some(Entry {
                    decision: Some(d), ..
                })) => Err(QueueError::already_decided(&d).into()),
                _ => Err(self.failed(&args, &out)),
            },
            Some(_) => Err(self.failed(&args, &out)),
            // The API server closed the exec without a status (an older
            // one closes everything when stdin ends): the file is the
            // truth.
            None => match self.entry(&decision.id).await? {
                Some(Entry {
                    decision: Some(d), ..
                }) if &d == decision => Ok(()),
                _ => Err(self.failed(&args, &out)),
            },
        }
    }

    async fn append_operator(&self, record: &OperatorAuditRecord) -> Result<(), ApprovalError> {
        let args = ["audit", "--append"];
        let json = serde_json::to_vec(record).map_err(|e| ApprovalError::QueueExec {
            ns: self.ns.clone(),
            command: args.join(" "),
            reason: format!("serialising the record: {e}"),
        })?;
        let out = self.run(&args, Some(&json)).await?;
        if out.code == Some(i32::from(EXIT_OK)) {
            Ok(())
        } else {
            Err(self.failed(&args, &out))
        }
    }
}

#[cfg(test)]
mod tests;
