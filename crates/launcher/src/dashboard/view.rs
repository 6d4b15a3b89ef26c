//! Drawing the dashboard (pure: an [`App`] in, a frame out). Every text
//! that came from a bottle goes through [`sanitize`] first.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Wrap};

use super::{App, Mode, Preview, Verdict};
use crate::approvals::sanitize;
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
            "{running} running {pending} pending │ a approve  A w/o auth  r reject  R refresh  q quit"
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
                ProposalRequest::Egress(r) => sanitize(&r.host),
                ProposalRequest::Capability { .. } => "Dockerfile".to_owned(),
                ProposalRequest::Pipelock { host } => format!("pipelock {}", sanitize(host)),
            };
            ListItem::new(format!("{} {what}", p.identity))
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

fn draw_preview(f: &mut Frame<'_>, app: &App, area: Rect) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title("What approval changes");
    let Some(p) = app.current() else {
        f.render_widget(Paragraph::new("").block(block), area);
        return;
    };
    let mut lines: Vec<Line<'_>> = vec![
        Line::from(format!(
            "{} {} from {}",
            p.proposal.id,
            p.proposal.request.tool(),
            p.identity
        )),
        Line::from(format!("why: {}", sanitize(&p.proposal.justification))),
    ];
    if let ProposalRequest::Egress(r) = &p.proposal.request
        && let Some(a) = &r.auth
    {
        lines.push(Line::from(format!(
            "auth: {} from ${}",
            sanitize(&a.scheme),
            sanitize(&a.token_ref)
        )));
    }
    lines.push(Line::from(""));
    let body = match &p.preview {
        Preview::RouteDiff(d) => d.clone(),
        Preview::NoChange => "already allowed: approving changes nothing".to_owned(),
        Preview::Dockerfile(d) => format!("proposed Dockerfile:\n{d}"),
        Preview::Unavailable(why) => format!("no preview: {why}"),
    };
    for l in sanitize(&body).lines() {
        let style = if l.starts_with('+') && !l.starts_with("+++") {
            Style::default().add_modifier(Modifier::BOLD)
        } else if l.starts_with('-') && !l.starts_with("---") {
            Style::default().add_modifier(Modifier::CROSSED_OUT)
        } else {
            Style::default()
        };
        lines.push(Line::from(Span::styled(l.to_owned(), style)));
    }
    f.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((app.scroll, 0)),
        area,
    );
}

fn draw_timeline(f: &mut Frame<'_>, app: &App, area: Rect) {
    let rows = usize::from(area.height.saturating_sub(2));
    let tl = &app.snapshot.timeline;
    let mut lines: Vec<Line<'_>> = tl[tl.len().saturating_sub(rows)..]
        .iter()
        .map(|e| {
            let time = e.at.get(11..19).unwrap_or(&e.at);
            Line::from(sanitize(&format!(
                "{time} {} {:8} {}",
                e.bottle, e.kind, e.text
            )))
        })
        .collect();
    if let Some(p) = app.snapshot.problems.last() {
        lines.push(Line::from(sanitize(&format!("! {p}"))));
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
                Verdict::Approve {
                    without_auth: false,
                } => "approve",
                Verdict::Approve { without_auth: true } => "approve without auth",
                Verdict::Reject => "reject",
            };
            format!("{what} {id}, note (Enter sends, Esc cancels): {text}_")
        }
    };
    // Keep the end (the cursor) visible when a note is longer than the line.
    let width = usize::from(area.width);
    let count = text.chars().count();
    let text: String = text.chars().skip(count.saturating_sub(width)).collect();
    f.render_widget(Paragraph::new(text), area);
}
