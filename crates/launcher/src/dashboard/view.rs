//! Drawing the dashboard (pure: an [`App`] in, a frame out). Every text
//! that came from a bottle goes through [`sanitize`] or
//! [`agent_text`] first.
//!
//! The preview pane has three fixed parts, so no agent text can push
//! another out of sight: what is asked (host, paths, credential, the
//! grant warning) on top; what approval changes (the diff, scrolled with
//! PgUp/PgDn) in the middle; the agent's justification, cut to a few
//! lines under a label saying whose words they are, at the bottom (`w`
//! shows it whole).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph};

use super::{App, Mode, PendingItem, Preview, Verdict};
use crate::approvals::preview::{self, asked, change_lines};
use crate::approvals::{agent_text, sanitize};
use manifest::queue::ProposalRequest;

/// Draws the whole screen.
pub fn draw(f: &mut Frame<'_>, app: &App) {
    let [header, body, timeline, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(8),
        Constraint::Length(7),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let pending = app.snapshot.pending.len();
    let running = app.snapshot.bottles.iter().filter(|b| b.running).count();
    f.render_widget(
        Paragraph::new(format!(
            "{running} running {pending} pending │ a approve A w/o auth r reject w why q quit"
        ))
        .style(Style::default().add_modifier(Modifier::BOLD)),
        header,
    );
    let [left, right] =
        Layout::horizontal([Constraint::Length(32), Constraint::Min(20)]).areas(body);
    let bottle_rows = (app.snapshot.bottles.len().max(1) as u16 + 2).min(left.height / 2);
    let [bottles, proposals] =
        Layout::vertical([Constraint::Length(bottle_rows), Constraint::Min(3)]).areas(left);
    draw_bottles(f, app, bottles);
    draw_proposals(f, app, proposals);
    draw_preview(f, app, right);
    draw_timeline(f, app, timeline);
    draw_footer(f, app, footer);
    match &app.mode {
        Mode::ConfirmGrant {
            id,
            token_ref,
            host,
            carried_by,
            typed,
        } => draw_confirm_grant(f, body, id, token_ref, host, carried_by, typed),
        Mode::Reading { id, scroll } => draw_reading(f, app, body, id, *scroll),
        _ => {}
    }
}

fn draw_bottles(f: &mut Frame<'_>, app: &App, area: Rect) {
    let items: Vec<ListItem<'_>> = if app.snapshot.bottles.is_empty() {
        vec![ListItem::new("(none)")]
    } else {
        app.snapshot
            .bottles
            .iter()
            .map(|b| {
                let st = match (b.running, b.preserved) {
                    (true, _) => "running",
                    (false, true) => "preserved",
                    (false, false) => "stopped",
                };
                ListItem::new(format!("{} {st}", b.identity))
            })
            .collect()
    };
    f.render_widget(
        List::new(items).block(Block::default().borders(Borders::ALL).title("Bottles")),
        area,
    );
}

fn draw_proposals(f: &mut Frame<'_>, app: &App, area: Rect) {
    let items: Vec<ListItem<'_>> = app
        .snapshot
        .pending
        .iter()
        .map(|p| {
            let what = match &p.proposal.request {
                ProposalRequest::Egress(_) => asked(&p.proposal.request)
                    .into_iter()
                    .next()
                    .map(|(_, host)| host)
                    .unwrap_or_default(),
                ProposalRequest::Capability { .. } => "Dockerfile".to_owned(),
                ProposalRequest::Pipelock { host } => {
                    format!("pipelock {}", agent_text::one_line(host))
                }
            };
            let grant = match &p.preview {
                Preview::Routes(r) if !r.attaches.is_empty() => "! ",
                _ => "",
            };
            ListItem::new(format!("{grant}{} {what}", p.identity))
        })
        .collect();
    let empty = items.is_empty();
    let list = List::new(if empty {
        vec![ListItem::new(if app.loaded {
            "(none pending)"
        } else {
            "loading…"
        })]
    } else {
        items
    })
    .block(Block::default().borders(Borders::ALL).title("Pending"))
    .highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .highlight_symbol("> ");
    let mut state = ListState::default();
    if !empty {
        state.select(Some(app.selected));
    }
    f.render_stateful_widget(list, area, &mut state);
}

/// Justification lines shown in the preview (its label comes on top).
const WHY_LINES: usize = 2;
/// Diff lines the preview holds (the rest: `launcher proposals show`).
const DIFF_MAX: usize = 2000;

fn diff_style(l: &str) -> Style {
    // A compact diff has no header: every +/- line is a change.
    if l.starts_with('+') {
        Style::default().add_modifier(Modifier::BOLD)
    } else if l.starts_with('-') {
        Style::default().add_modifier(Modifier::CROSSED_OUT)
    } else {
        Style::default()
    }
}

/// The top part: the proposal, what it asks for and what the credential
/// rule says, wrapped to `width` (all of it the launcher's own layout;
/// agent-written values are escaped and cut).
fn asked_lines(p: &PendingItem, width: usize) -> Vec<Line<'static>> {
    let mut lines = vec![Line::from(agent_text::cut(
        &format!(
            "{} {} from {}",
            p.proposal.id,
            p.proposal.request.tool(),
            p.identity
        ),
        width,
    ))];
    for (k, v) in asked(&p.proposal.request) {
        lines.push(Line::from(agent_text::cut(&format!("{k:<10} {v}"), width)));
    }
    let warn = Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED);
    if let Preview::Routes(r) = &p.preview {
        for a in &r.attaches {
            let text = format!(
                "GRANT NEEDED: ${} to {} ({})",
                a.name(),
                a.host,
                if a.new_slot {
                    "not held yet".to_owned()
                } else if a.carried_by.is_empty() {
                    "held, no host".to_owned()
                } else {
                    format!("now only {}", a.carried_by.join(", "))
                }
            );
            for piece in agent_text::wrap_words(&text, width) {
                lines.push(Line::from(Span::styled(piece, warn)));
            }
        }
        if r.ignored_credential {
            for piece in agent_text::wrap_words(
                "credential ignored: the host has a route, its own auth stays",
                width,
            ) {
                lines.push(Line::from(piece));
            }
        }
    }
    let (headline, _) = change_lines(&p.preview);
    for piece in agent_text::wrap_words(&headline, width) {
        lines.push(Line::from(Span::styled(
            piece,
            Style::default().add_modifier(Modifier::UNDERLINED),
        )));
    }
    lines
}

fn draw_preview(f: &mut Frame<'_>, app: &App, area: Rect) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title("What approval changes");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(p) = app.current() else {
        return;
    };
    let width = usize::from(inner.width).max(1);
    let top = asked_lines(p, width);
    // The justification: a label and a few lines, quoted and cut.
    let why = agent_text::Excerpt::of(
        &p.proposal.justification,
        WHY_LINES,
        width.saturating_sub(2),
    );
    let label = if why.is_whole() {
        "agent's justification:".to_owned()
    } else {
        format!(
            "agent's justification ({} lines, cut; w: all)",
            p.proposal.justification.trim_end().lines().count().max(1)
        )
    };
    let mut bottom: Vec<Line<'_>> = vec![Line::from(Span::styled(
        agent_text::cut(&label, width),
        Style::default().add_modifier(Modifier::ITALIC),
    ))];
    bottom.extend(why.lines.iter().map(|l| Line::from(format!("> {l}"))));
    // The asked part always fits first; the diff gets at least 2 rows
    // when there is room, the justification what is left of its lines.
    let h = usize::from(inner.height);
    let top_rows = top.len().min(h);
    let bottom_rows = bottom.len().min(h.saturating_sub(top_rows + 2));
    let [top_area, diff_area, bottom_area] = Layout::vertical([
        Constraint::Length(top_rows as u16),
        Constraint::Min(0),
        Constraint::Length(bottom_rows as u16),
    ])
    .areas(inner);
    f.render_widget(Paragraph::new(top), top_area);
    let (_, diff) = change_lines(&p.preview);
    // Routes diffs read alone; a Dockerfile line needs its neighbours.
    let context = usize::from(matches!(p.preview, Preview::Dockerfile(_)));
    let all: Vec<String> = preview::compact_diff(&diff, context)
        .iter()
        .map(|l| agent_text::one_line(l))
        .collect();
    let mut body: Vec<Line<'_>> = all
        .iter()
        .take(DIFF_MAX)
        .map(|l| Line::from(Span::styled(agent_text::cut(l, width), diff_style(l))))
        .collect();
    if all.len() > DIFF_MAX {
        body.push(Line::from(format!(
            "… {} more lines: launcher proposals show {}",
            all.len() - DIFF_MAX,
            p.proposal.id
        )));
    }
    f.render_widget(Paragraph::new(body).scroll((app.scroll, 0)), diff_area);
    f.render_widget(Paragraph::new(bottom), bottom_area);
}

/// The confirm step before a credential goes to a host that does not
/// carry it: names both, and takes the variable's name typed out.
fn draw_confirm_grant(
    f: &mut Frame<'_>,
    area: Rect,
    id: &str,
    token_ref: &str,
    host: &str,
    carried_by: &str,
    typed: &str,
) {
    let w = area.width.saturating_sub(4).min(64);
    let inner_w = usize::from(w.saturating_sub(2)).max(1);
    let mut text = vec![
        format!("Approving {id} sends your ${token_ref} to {host}, which does not carry it now."),
        if carried_by.is_empty() {
            "The bottle does not hold it yet: its value is read from this dashboard's environment and goes only into the egress container.".to_owned()
        } else {
            format!("Until now egress sends it only to {carried_by}.")
        },
        format!("Type {token_ref} and Enter to grant it; Esc cancels (A approves without it)."),
    ];
    text.push(format!("> {}_", agent_text::one_line(typed)));
    let lines: Vec<Line<'_>> = text
        .iter()
        .flat_map(|t| agent_text::wrap_words(t, inner_w))
        .map(Line::from)
        .collect();
    let h = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width.saturating_sub(w)) / 2,
        y: area.y + (area.height.saturating_sub(h)) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title("Grant a credential?")
                .style(Style::default().add_modifier(Modifier::BOLD)),
        ),
        popup,
    );
}

/// The whole justification of proposal `id`, over the body.
fn draw_reading(f: &mut Frame<'_>, app: &App, area: Rect, id: &str, scroll: u16) {
    let Some(p) = app
        .snapshot
        .pending
        .iter()
        .find(|p| p.proposal.id.as_str() == id)
    else {
        return;
    };
    let block = Block::default().borders(Borders::ALL).title(format!(
        "{id}: the agent's justification, whole (↑/↓ PgUp/PgDn, Esc closes)"
    ));
    let width = usize::from(block.inner(area).width).max(1);
    let lines: Vec<Line<'_>> = agent_text::lines(p.proposal.justification.trim_end())
        .iter()
        .flat_map(|l| agent_text::wrap_words(l, width))
        .map(Line::from)
        .collect();
    f.render_widget(Clear, area);
    f.render_widget(Paragraph::new(lines).block(block).scroll((scroll, 0)), area);
}

fn draw_timeline(f: &mut Frame<'_>, app: &App, area: Rect) {
    let rows = usize::from(area.height.saturating_sub(2));
    let tl = &app.snapshot.timeline;
    let mut lines: Vec<Line<'_>> = tl[tl.len().saturating_sub(rows)..]
        .iter()
        .map(|e| {
            let time = e.at.get(11..19).unwrap_or(&e.at);
            Line::from(agent_text::one_line(&format!(
                "{time} {} {:8} {}",
                e.bottle, e.kind, e.text
            )))
        })
        .collect();
    if let Some(p) = app.snapshot.problems.last() {
        lines.push(Line::from(agent_text::one_line(&format!("! {p}"))));
        let excess = lines.len().saturating_sub(rows);
        lines.drain(..excess);
    }
    let hint = app
        .snapshot
        .bottles
        .iter()
        .find(|b| b.preserved && !b.running)
        .map(|b| format!(" resume: launcher resume {} ", b.identity))
        .unwrap_or_default();
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!("Timeline{hint}")),
        ),
        area,
    );
}

fn draw_footer(f: &mut Frame<'_>, app: &App, area: Rect) {
    let text = match &app.mode {
        Mode::Browse => sanitize(&app.status),
        Mode::Busy(what) => what.clone(),
        Mode::Note { verdict, id, text } => {
            let what = match verdict {
                Verdict::Approve { grant: Some(g), .. } => format!("approve, granting ${g},"),
                Verdict::Approve {
                    without_auth: true, ..
                } => "approve without auth".to_owned(),
                Verdict::Approve { .. } => "approve".to_owned(),
                Verdict::Reject => "reject".to_owned(),
            };
            format!("{what} {id}, note (Enter sends, Esc cancels): {text}_")
        }
        Mode::ConfirmGrant { .. } => sanitize(&app.status),
        Mode::Reading { .. } => "reading; Esc closes".to_owned(),
    };
    // Keep the end (the cursor) visible when a note is longer than the line.
    let width = usize::from(area.width);
    let count = text.chars().count();
    let text: String = text.chars().skip(count.saturating_sub(width)).collect();
    f.render_widget(Paragraph::new(text), area);
}
