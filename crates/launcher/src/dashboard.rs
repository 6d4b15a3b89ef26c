//! `launcher dashboard`: a keyboard-only terminal UI over every bottle —
//! the bottles, their pending proposals with a preview of exactly what
//! approval changes (what is asked, the routes diff against the live
//! table or the Dockerfile diff against the current one, then the agent's
//! justification, cut, with `w` to read it whole), approve / reject with a
//! note, an explicit confirm step before a credential goes to a new host,
//! and one timeline of proposals, decisions and egress allow/deny lines.
//!
//! Is: [`App`], the UI state as a pure state machine (keys and worker
//! results in, [`Request`]s out; unit-tested), the drawing ([`view`],
//! snapshot-tested on ratatui's `TestBackend` at 80x24) and the loop
//! ([`run`]) that owns the terminal. All Docker and file work happens on a
//! worker thread ([`worker`]); the UI thread never waits on it.
//!
//! Is not: a second implementation of deciding — the worker calls
//! [`crate::approvals`] exactly like `launcher approve` / `reject`.

use manifest::queue::Proposal;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

pub mod view;
pub mod worker;

/// A bottle as the dashboard lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BottleRow {
    /// The identity.
    pub identity: String,
    /// The agent.
    pub agent: String,
    /// Whether its egress container runs.
    pub running: bool,
    /// State kept for `launcher resume` (after a capability change).
    pub preserved: bool,
}

/// What approving a proposal would change (shared with `launcher
/// proposals`).
pub use crate::approvals::preview::Changes as Preview;

/// A pending proposal with its preview.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingItem {
    /// The bottle.
    pub identity: String,
    /// The proposal.
    pub proposal: Proposal,
    /// What approval changes.
    pub preview: Preview,
}

/// One line of the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// When (RFC 3339, as logged).
    pub at: String,
    /// The bottle.
    pub bottle: String,
    /// `proposal`, `approved`, `rejected`, `allow`, `deny`, …
    pub kind: String,
    /// What happened.
    pub text: String,
}

/// Everything the worker found in one refresh.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Bottles, by identity.
    pub bottles: Vec<BottleRow>,
    /// Pending proposals, oldest first.
    pub pending: Vec<PendingItem>,
    /// Timeline, oldest first (the view shows the newest).
    pub timeline: Vec<Event>,
    /// Problems reading queues or Docker.
    pub problems: Vec<String>,
}

/// Approve or reject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Approve (egress: apply, then decide).
    Approve {
        /// Drop a proposed credential for a new host.
        without_auth: bool,
        /// The credential the operator confirmed sending to a new host
        /// (the `--grant` of the CLI).
        grant: Option<String>,
    },
    /// Reject (note required).
    Reject,
}

impl Verdict {
    /// Approve, without a grant.
    pub const APPROVE: Self = Self::Approve {
        without_auth: false,
        grant: None,
    };
}

/// What the UI is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Browsing.
    Browse,
    /// Confirming that a credential goes to a host that does not carry
    /// it: the operator types the variable's name.
    ConfirmGrant {
        /// The proposal.
        id: String,
        /// The variable to type.
        token_ref: String,
        /// The host that would get it.
        host: String,
        /// Where egress sends it now ("" when it does not hold it).
        carried_by: String,
        /// What was typed so far.
        typed: String,
    },
    /// Typing the note for a verdict on proposal `id`.
    Note {
        /// The verdict.
        verdict: Verdict,
        /// The proposal.
        id: String,
        /// The note so far.
        text: String,
    },
    /// Reading a proposal's whole justification.
    Reading {
        /// The proposal.
        id: String,
        /// Lines scrolled down.
        scroll: u16,
    },
    /// Waiting for the worker to finish a decision.
    Busy(String),
}

/// What the UI asks the worker (or the loop) to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Nothing.
    None,
    /// Leave the dashboard.
    Quit,
    /// Refresh the snapshot now.
    Refresh,
    /// Decide a proposal.
    Decide {
        /// The proposal.
        id: String,
        /// The verdict.
        verdict: Verdict,
        /// The note.
        note: String,
    },
}

/// The dashboard's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    /// The last snapshot.
    pub snapshot: Snapshot,
    /// Index into `snapshot.pending`.
    pub selected: usize,
    /// Lines the preview is scrolled down.
    pub scroll: u16,
    /// The mode.
    pub mode: Mode,
    /// The status line (last result or error).
    pub status: String,
    /// Whether a snapshot has arrived yet.
    pub loaded: bool,
}

impl Default for App {
    fn default() -> Self {
        Self {
            snapshot: Snapshot::default(),
            selected: 0,
            scroll: 0,
            mode: Mode::Browse,
            status: "loading…".into(),
            loaded: false,
        }
    }
}

impl App {
    /// The selected pending proposal.
    pub fn current(&self) -> Option<&PendingItem> {
        self.snapshot.pending.get(self.selected)
    }

    /// A new snapshot: the selection stays on the same proposal if it is
    /// still pending, else is clamped.
    pub fn on_snapshot(&mut self, s: Snapshot) {
        let keep = self.current().map(|p| p.proposal.id.clone());
        self.snapshot = s;
        self.selected = keep
            .and_then(|id| {
                self.snapshot
                    .pending
                    .iter()
                    .position(|p| p.proposal.id == id)
            })
            .unwrap_or(self.selected)
            .min(self.snapshot.pending.len().saturating_sub(1));
        if !self.loaded {
            self.loaded = true;
            self.status = "ready".into();
        }
    }

    /// The worker finished a decision.
    pub fn on_decided(&mut self, result: Result<String, String>) {
        self.mode = Mode::Browse;
        self.status = match result {
            Ok(s) => s,
            Err(e) => format!("error: {e}"),
        };
    }

    /// One key press.
    pub fn on_key(&mut self, key: KeyEvent) -> Request {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Request::Quit;
        }
        match &mut self.mode {
            Mode::Busy(_) => Request::None,
            Mode::Reading { scroll, .. } => {
                match key.code {
                    KeyCode::Esc | KeyCode::Char('q' | 'w') | KeyCode::Enter => {
                        self.mode = Mode::Browse;
                    }
                    KeyCode::Down | KeyCode::Char('j') => *scroll = scroll.saturating_add(1),
                    KeyCode::Up | KeyCode::Char('k') => *scroll = scroll.saturating_sub(1),
                    KeyCode::PageDown => *scroll = scroll.saturating_add(10),
                    KeyCode::PageUp => *scroll = scroll.saturating_sub(10),
                    _ => {}
                }
                Request::None
            }
            Mode::ConfirmGrant {
                id,
                token_ref,
                typed,
                ..
            } => match key.code {
                KeyCode::Esc => {
                    self.mode = Mode::Browse;
                    self.status = "cancelled: nothing was granted".into();
                    Request::None
                }
                KeyCode::Enter if typed == token_ref => {
                    self.mode = Mode::Note {
                        verdict: Verdict::Approve {
                            without_auth: false,
                            grant: Some(token_ref.clone()),
                        },
                        id: id.clone(),
                        text: String::new(),
                    };
                    Request::None
                }
                KeyCode::Enter => {
                    self.status = format!(
                        "type {token_ref} exactly to grant it, or Esc (A approves without it)"
                    );
                    Request::None
                }
                KeyCode::Backspace => {
                    typed.pop();
                    Request::None
                }
                KeyCode::Char(c) if !c.is_control() && typed.len() < 256 => {
                    typed.push(c);
                    Request::None
                }
                _ => Request::None,
            },
            Mode::Note { verdict, id, text } => match key.code {
                KeyCode::Esc => {
                    self.mode = Mode::Browse;
                    self.status = "cancelled".into();
                    Request::None
                }
                KeyCode::Enter => {
                    if *verdict == Verdict::Reject && text.trim().is_empty() {
                        self.status = "a rejection needs a note telling the agent why".into();
                        return Request::None;
                    }
                    let req = Request::Decide {
                        id: id.clone(),
                        verdict: verdict.clone(),
                        note: text.trim().to_owned(),
                    };
                    self.mode = Mode::Busy(format!("deciding {id}…"));
                    req
                }
                KeyCode::Backspace => {
                    text.pop();
                    Request::None
                }
                KeyCode::Char(c) if !c.is_control() && text.chars().count() < 2000 => {
                    text.push(c);
                    Request::None
                }
                _ => Request::None,
            },
            Mode::Browse => self.browse_key(key),
        }
    }

    fn browse_key(&mut self, key: KeyEvent) -> Request {
        let n = self.snapshot.pending.len();
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => Request::Quit,
            KeyCode::Down | KeyCode::Char('j') if n > 0 => {
                self.selected = (self.selected + 1).min(n - 1);
                self.scroll = 0;
                Request::None
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.selected = self.selected.saturating_sub(1);
                self.scroll = 0;
                Request::None
            }
            KeyCode::PageDown => {
                self.scroll = self.scroll.saturating_add(5);
                Request::None
            }
            KeyCode::PageUp => {
                self.scroll = self.scroll.saturating_sub(5);
                Request::None
            }
            KeyCode::Char('R') | KeyCode::F(5) => {
                self.status = "refreshing…".into();
                Request::Refresh
            }
            KeyCode::Char(c @ ('a' | 'A' | 'r' | 'w')) => {
                let Some(p) = self.current() else {
                    self.status = "no pending proposal selected".into();
                    return Request::None;
                };
                let id = p.proposal.id.to_string();
                // A credential for a host that does not carry it: the
                // operator confirms it by name before anything else.
                let grant = match &p.preview {
                    Preview::Routes(r) if c == 'a' => r.attaches.first().cloned(),
                    _ => None,
                };
                if grant.is_some() {
                    self.status =
                        "type the variable's name and Enter to grant it; Esc cancels".into();
                }
                self.mode = match (c, grant) {
                    ('w', _) => Mode::Reading { id, scroll: 0 },
                    (_, Some(g)) => Mode::ConfirmGrant {
                        id,
                        token_ref: g.name().to_owned(),
                        host: g.host.clone(),
                        carried_by: g.carried_by.join(", "),
                        typed: String::new(),
                    },
                    ('a', None) => Mode::Note {
                        verdict: Verdict::APPROVE,
                        id,
                        text: String::new(),
                    },
                    ('A', None) => Mode::Note {
                        verdict: Verdict::Approve {
                            without_auth: true,
                            grant: None,
                        },
                        id,
                        text: String::new(),
                    },
                    _ => Mode::Note {
                        verdict: Verdict::Reject,
                        id,
                        text: String::new(),
                    },
                };
                Request::None
            }
            _ => Request::None,
        }
    }
}

/// Runs the dashboard on the terminal until the operator quits.
/// `state_root` is where bottles' queues are.
pub fn run(state_root: std::path::PathBuf) -> std::io::Result<()> {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use ratatui::crossterm::event::{self, Event as TermEvent, KeyEventKind};

    let (to_worker, from_ui) = mpsc::channel::<Request>();
    let (to_ui, from_worker) = mpsc::channel::<worker::Message>();
    let handle = worker::spawn(state_root, from_ui, to_ui)?;
    let mut terminal = ratatui::init();
    let mut app = App::default();
    let refresh_every = Duration::from_secs(3);
    let mut last_refresh = Instant::now();
    let _ = to_worker.send(Request::Refresh);
    let result = (|| -> std::io::Result<()> {
        loop {
            while let Ok(m) = from_worker.try_recv() {
                match m {
                    worker::Message::Snapshot(s) => app.on_snapshot(s),
                    worker::Message::Decided(r) => {
                        app.on_decided(r);
                        let _ = to_worker.send(Request::Refresh);
                    }
                }
            }
            terminal.draw(|f| view::draw(f, &app))?;
            if last_refresh.elapsed() >= refresh_every {
                last_refresh = Instant::now();
                let _ = to_worker.send(Request::Refresh);
            }
            if event::poll(Duration::from_millis(200))?
                && let TermEvent::Key(k) = event::read()?
                && k.kind == KeyEventKind::Press
            {
                match app.on_key(k) {
                    Request::None => {}
                    Request::Quit => return Ok(()),
                    r => {
                        let _ = to_worker.send(r);
                    }
                }
            }
        }
    })();
    ratatui::restore();
    drop(to_worker);
    let _ = handle.join();
    result
}

#[cfg(test)]
mod tests;
