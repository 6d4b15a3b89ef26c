//! The approval loop on Kubernetes end to end against fakes: the API
//! server is `engine::kubernetes::fake` (the routes ConfigMap), `exec` is
//! [`InCluster`], which runs the real `supervise queue` logic
//! (`bottle_queue::cli::run`) on a temp dir for the supervise container
//! and answers egress's `/status` from the ConfigMap.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use manifest::queue::Outcome;
use manifest::routes::RouteTable;

use super::*;
use crate::approvals::apply::NoPipelock;
use crate::approvals::apply::kubernetes::KubeEgress;
use crate::approvals::queue::tests::{proposal, put_proposal};
use crate::approvals::{
    ApprovalError, Located, approve_egress_in, list_pending_in, locate_in, reject_in,
};
use crate::engine::kubernetes::fake::{self, status};
use crate::engine::kubernetes::render::{EGRESS_CONFIGMAP, ROUTES_KEY};
use crate::plan::egress_status_probe;
use crate::plan::identity::Identity;

const NS: &str = "claude-bottle-dev-k3x9a";
const BOTTLE: &str = "dev-k3x9a";
const ID: &str = "20261123-140509-aaaaaaaa";
const OLD: &str = "version: 1\nroutes:\n  - host: api.anthropic.com\n";

/// One exec: the Pod and the command.
type Run = (String, Vec<String>);

/// The bottle's Pods as `exec` reaches them.
#[derive(Clone)]
struct InCluster {
    /// supervise's queue volume.
    queue: PathBuf,
    /// What the egress Pod has mounted (the ConfigMap, instantly).
    routes: Arc<Mutex<String>>,
    /// Every command run, with its stdin.
    seen: Arc<Mutex<Vec<Run>>>,
}

impl PodExec for InCluster {
    async fn exec(
        &self,
        pod: &str,
        container: &str,
        cmd: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, String> {
        assert_eq!(pod, container);
        self.seen
            .lock()
            .unwrap()
            .push((pod.to_owned(), cmd.to_vec()));
        match pod {
            "egress" => {
                assert_eq!(cmd, egress_status_probe(5).as_slice());
                let v = RouteTable::parse(&self.routes.lock().unwrap(), "routes.yaml")
                    .map_err(|e| e.to_string())?
                    .version_hash();
                Ok(ExecOutput {
                    code: Some(0),
                    stdout: serde_json::json!({ "version": v }).to_string(),
                    stderr: String::new(),
                })
            }
            "supervise" => {
                assert_eq!(&cmd[..2], ["supervise", "queue"]);
                let out =
                    bottle_queue::cli::run(&cmd[2..], &mut stdin.unwrap_or_default(), &self.queue);
                Ok(ExecOutput {
                    code: Some(i32::from(out.code)),
                    stdout: out.stdout,
                    stderr: out.stderr,
                })
            }
            other => Err(format!("no pod {other}")),
        }
    }
}

struct World {
    _tmp: tempfile::TempDir,
    state_root: PathBuf,
    pod: InCluster,
    routes: Arc<Mutex<String>>,
    log: Arc<Mutex<Vec<fake::Seen>>>,
    client: kube::Client,
}

impl World {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let queue = tmp.path().join("queue");
        std::fs::create_dir_all(&queue).unwrap();
        put_proposal(&queue, &proposal(ID, BOTTLE, "docs.example.com"));
        let state_root = tmp.path().join("state");
        let identity = Identity::parse(BOTTLE).unwrap();
        std::fs::create_dir_all(
            crate::lifecycle::state::BottleState::new(&state_root, &identity).dir(),
        )
        .unwrap();
        let routes = Arc::new(Mutex::new(OLD.to_owned()));
        let r = routes.clone();
        let (client, log) = fake::client(move |s| {
            let cm = format!("/api/v1/namespaces/{NS}/configmaps/{EGRESS_CONFIGMAP}");
            let path = s.uri.split('?').next().unwrap_or_default();
            let cm_json = |text: &str| serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": EGRESS_CONFIGMAP}, "data": {ROUTES_KEY: text}});
            match (s.method.as_str(), path) {
                ("GET", p) if p == cm => Some((200, cm_json(&r.lock().ok()?.clone()))),
                ("PATCH", p) if p == cm => {
                    let v: serde_json::Value = serde_json::from_str(&s.body).ok()?;
                    let text = v["data"][ROUTES_KEY].as_str()?.to_owned();
                    *r.lock().ok()? = text.clone();
                    Some((200, cm_json(&text)))
                }
                _ => Some((404, status(404, "NotFound", "not found"))),
            }
        });
        let pod = InCluster {
            queue,
            routes: routes.clone(),
            seen: Arc::default(),
        };
        Self {
            _tmp: tmp,
            state_root,
            pod,
            routes,
            log,
            client,
        }
    }

    fn bottles(&self) -> Vec<(Identity, ExecQueue<InCluster>)> {
        vec![(
            Identity::parse(BOTTLE).unwrap(),
            ExecQueue::new(self.pod.clone(), NS),
        )]
    }

    fn egress(&self) -> KubeEgress<InCluster> {
        let mut e = KubeEgress::new(self.client.clone(), NS, self.pod.clone());
        e.propagation = Duration::from_secs(5);
        e.poll = Duration::from_millis(10);
        e
    }

    fn queue(&self) -> &Path {
        &self.pod.queue
    }

    fn patches(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == "PATCH")
            .count()
    }

    async fn locate(&self) -> (Located, ExecQueue<InCluster>) {
        let bottles = self.bottles();
        let (loc, i) = locate_in(&bottles, &self.state_root, ID).await.unwrap();
        (loc, bottles[i].1.clone())
    }

    async fn approve(
        &self,
        loc: &Located,
        q: &ExecQueue<InCluster>,
    ) -> Result<crate::approvals::EgressApproved, ApprovalError> {
        approve_egress_in(
            loc,
            q,
            &self.egress(),
            None::<&NoPipelock>,
            "go ahead",
            false,
            None,
            false,
        )
        .await
    }
}

fn id() -> ProposalId {
    ProposalId::parse(ID).unwrap()
}

#[tokio::test]
async fn approving_on_kubernetes_patches_the_configmap_then_decides_through_exec() {
    let w = World::new();
    let bottles = w.bottles();
    let (pending, problems) = list_pending_in(&bottles).await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].proposal.id, id());

    let (loc, q) = w.locate().await;
    let a = w.approve(&loc, &q).await.unwrap();
    assert!(a.changed);
    // The route is live: the ConfigMap holds it and /status confirmed it.
    assert!(w.routes.lock().unwrap().contains("docs.example.com"));
    assert_eq!(
        a.version,
        RouteTable::parse(&w.routes.lock().unwrap(), "t")
            .unwrap()
            .version_hash()
    );
    assert_eq!(w.patches(), 1, "one ConfigMap patch");
    // The decision is in supervise's volume, read the way supervise's
    // waiting call reads it: approved, with the diff.
    let d = bottle_queue::QueueDir::new(w.queue())
        .decision(&id())
        .unwrap()
        .expect("decided");
    assert_eq!(d.outcome, Outcome::Approved);
    assert_eq!(d.note, "go ahead");
    assert!(d.diff.unwrap_or_default().contains("docs.example.com"));
    // Both audit lines went through exec too.
    let audit = std::fs::read_to_string(w.queue().join(bottle_queue::AUDIT)).unwrap();
    assert!(audit.contains("\"event\":\"routes_edit\""), "{audit}");
    assert!(audit.contains("\"event\":\"decision\""), "{audit}");
    // Nothing is pending any more.
    let (pending, _) = list_pending_in(&bottles).await.unwrap();
    assert!(pending.is_empty());
    // The decision went over stdin to `supervise queue decide <id>`.
    let seen = w.pod.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(pod, cmd)| pod == "supervise" && cmd[2..] == ["decide", ID]),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_second_decision_on_kubernetes_is_refused_and_changes_nothing() {
    let w = World::new();
    let (loc, q) = w.locate().await;
    w.approve(&loc, &q).await.unwrap();
    let file = w.queue().join("decisions").join(format!("{ID}.json"));
    let first = std::fs::read_to_string(&file).unwrap();
    let routes = w.routes.lock().unwrap().clone();
    let patches = w.patches();

    let e = w.approve(&loc, &q).await.expect_err("decided already");
    assert!(e.to_string().contains("already decided: approved"), "{e}");
    let e = reject_in(&loc, &q, "no")
        .await
        .expect_err("decided already");
    assert!(e.to_string().contains("a decision is final"), "{e}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), first);
    assert_eq!(*w.routes.lock().unwrap(), routes);
    assert_eq!(w.patches(), patches, "no ConfigMap patch after the first");
}

#[tokio::test]
async fn rejecting_on_kubernetes_writes_the_note() {
    let w = World::new();
    let (loc, q) = w.locate().await;
    let d = reject_in(&loc, &q, "  use the mirror  ").await.unwrap();
    assert_eq!(d.note, "use the mirror");
    let d = bottle_queue::QueueDir::new(w.queue())
        .decision(&id())
        .unwrap()
        .expect("decided");
    assert_eq!(d.outcome, Outcome::Rejected);
    assert_eq!(d.note, "use the mirror");
    assert_eq!(w.patches(), 0);
    assert!(matches!(
        reject_in(&loc, &q, " ").await,
        Err(ApprovalError::EmptyNote)
    ));
}

#[tokio::test]
async fn an_unknown_or_bad_id_on_kubernetes_is_refused_and_changes_nothing() {
    let w = World::new();
    let bottles = w.bottles();
    let e = locate_in(&bottles, &w.state_root, "20261123-140509-zzzzzzzz")
        .await
        .expect_err("unknown");
    assert!(matches!(e, ApprovalError::UnknownId { .. }), "{e}");
    assert!(e.to_string().contains(NS), "{e}");
    let e = locate_in(&bottles, &w.state_root, "../pending/x")
        .await
        .expect_err("bad");
    assert!(matches!(e, ApprovalError::BadId(_)), "{e}");
    // A decision for a proposal the queue does not have.
    let (mut loc, q) = w.locate().await;
    loc.proposal.id = ProposalId::parse("20261123-140509-zzzzzzzz").unwrap();
    let e = reject_in(&loc, &q, "no").await.expect_err("no proposal");
    assert!(
        e.to_string()
            .contains("no proposal 20261123-140509-zzzzzzzz"),
        "{e}"
    );
    assert!(
        !w.queue().join("decisions").exists()
            || std::fs::read_dir(w.queue().join("decisions"))
                .unwrap()
                .next()
                .is_none()
    );
    assert_eq!(w.patches(), 0);
    assert_eq!(*w.routes.lock().unwrap(), OLD);
}

#[tokio::test]
async fn a_proposal_naming_another_bottle_or_an_invalid_file_is_named() {
    let w = World::new();
    std::fs::write(w.queue().join("pending/20261123-140509-bbbbbbbb.json"), "{").unwrap();
    put_proposal(
        w.queue(),
        &proposal("20261123-140509-cccccccc", "other-a1b2c", "x.example"),
    );
    let (pending, problems) = list_pending_in(&w.bottles()).await.unwrap();
    assert_eq!(pending.len(), 1);
    let all = problems.join("\n");
    assert!(
        all.contains("20261123-140509-bbbbbbbb.json") && all.contains("not JSON"),
        "{all}"
    );
    assert!(all.contains("claims bottle \"other-a1b2c\""), "{all}");
    let e = locate_in(&w.bottles(), &w.state_root, "20261123-140509-cccccccc")
        .await
        .expect_err("wrong bottle");
    assert!(matches!(e, ApprovalError::WrongBottle { .. }), "{e}");
}

#[tokio::test]
async fn a_failing_exec_is_an_error_naming_the_namespace() {
    struct Down;
    impl PodExec for Down {
        async fn exec(
            &self,
            _: &str,
            _: &str,
            _: &[String],
            _: Option<&[u8]>,
        ) -> Result<ExecOutput, String> {
            Err("`create` on `pods/exec` is forbidden".into())
        }
    }
    let q = ExecQueue::new(Down, NS);
    let e = q.scan().await.expect_err("down");
    let m = e.to_string();
    assert!(
        m.contains(NS) && m.contains("supervise queue list") && m.contains("forbidden"),
        "{m}"
    );
}

/// An API server that closes the whole exec when stdin ends (before the
/// v5 protocol): no exit status comes back for `decide`.
#[derive(Clone)]
struct NoStatusOnStdin(InCluster);

impl PodExec for NoStatusOnStdin {
    async fn exec(
        &self,
        pod: &str,
        container: &str,
        cmd: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, String> {
        let mut out = self.0.exec(pod, container, cmd, stdin).await?;
        if stdin.is_some() {
            out.code = None;
            out.stdout.clear();
        }
        Ok(out)
    }
}

#[tokio::test]
async fn a_decision_whose_exit_status_is_lost_is_read_back() {
    let w = World::new();
    let (loc, _) = w.locate().await;
    let q = ExecQueue::new(NoStatusOnStdin(w.pod.clone()), NS);
    let d = reject_in(&loc, &q, "no").await.expect("read back: ours");
    assert_eq!(d.outcome, Outcome::Rejected);
    // A second one is refused: the decision read back is not ours.
    let e = reject_in(&loc, &q, "other words")
        .await
        .expect_err("not ours");
    let m = e.to_string();
    assert!(
        m.contains("already decided") || m.contains("no exit status"),
        "{m}"
    );
    let file = bottle_queue::QueueDir::new(w.queue())
        .decision(&id())
        .unwrap();
    assert_eq!(file.map(|d| d.note), Some("no".to_owned()));
}

/// A bottle whose supervise does not answer.
#[derive(Clone)]
enum Either {
    Up(InCluster),
    Down,
}

impl PodExec for Either {
    async fn exec(
        &self,
        pod: &str,
        container: &str,
        cmd: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, String> {
        match self {
            Self::Up(p) => p.exec(pod, container, cmd, stdin).await,
            Self::Down => Err("pod supervise is not running".into()),
        }
    }
}

#[tokio::test]
async fn a_bottle_whose_supervise_is_down_does_not_hide_the_others() {
    let w = World::new();
    let down = Identity::parse("dev-zzzzz").unwrap();
    let bottles = vec![
        (
            down,
            ExecQueue::new(Either::Down, "claude-bottle-dev-zzzzz"),
        ),
        (
            Identity::parse(BOTTLE).unwrap(),
            ExecQueue::new(Either::Up(w.pod.clone()), NS),
        ),
    ];
    let (pending, problems) = list_pending_in(&bottles).await.unwrap();
    assert_eq!(pending.len(), 1);
    let all = problems.join("\n");
    assert!(
        all.contains("bottle dev-zzzzz") && all.contains("not running"),
        "{all}"
    );
    let (loc, i) = locate_in(&bottles, &w.state_root, ID).await.unwrap();
    assert_eq!((loc.identity.as_str(), i), (BOTTLE, 1));
    // Not anywhere readable: the unreadable bottle's error, not "unknown".
    let e = locate_in(&bottles, &w.state_root, "20261123-140509-zzzzzzzz")
        .await
        .expect_err("maybe in the down one");
    assert!(e.to_string().contains("not running"), "{e}");
}
