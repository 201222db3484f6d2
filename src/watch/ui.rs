//! The terminal view's screen and keys, as pure functions of the board view
//! and a small UI state: [`render`] draws, [`on_key`] turns a key into an
//! [`Action`]. Testable with ratatui's `TestBackend`.
//!
//! Flashing follows the board's convention, driven by the view's own time:
//! high priority toggles every 250 ms, medium every 800 ms, low is steady.
//!
//! Depends on [`crate::display::state`] and [`crate::display::feed`].

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use crate::display::feed::BedKey;
use crate::display::state::{AlarmView, BedView, BoardView};

/// What the user is doing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ui {
    /// Index into [`selectable`] of the selected alarm.
    pub selected: usize,
    /// The acknowledgement being typed, if any.
    pub input: Option<AckInput>,
    /// Alarm feed lines scrolled up from the newest.
    pub feed_scroll: usize,
    /// A message for the status line (errors of the last action).
    pub message: Option<String>,
}

/// An acknowledgement waiting for the name or initials.
#[derive(Clone, Debug, PartialEq)]
pub struct AckInput {
    /// Bed.
    pub bed: String,
    /// Alarm id.
    pub alarm: String,
    /// Typed so far.
    pub text: String,
}

/// What a key asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Nothing beyond the UI state.
    None,
    /// Leave.
    Quit,
    /// Publish an acknowledgement.
    Acknowledge {
        /// Bed.
        bed: BedKey,
        /// Alarm id.
        alarm: String,
        /// Name or initials.
        by: String,
    },
}

/// The alarms that can be selected: `(bed index, alarm index)` of live beds.
pub fn selectable(view: &BoardView) -> Vec<(usize, usize)> {
    view.beds
        .iter()
        .enumerate()
        .filter(|(_, b)| b.live)
        .flat_map(|(i, b)| (0..b.alarms.len()).map(move |j| (i, j)))
        .collect()
}

/// Handles one key.
pub fn on_key(ui: &mut Ui, key: KeyEvent, view: &BoardView) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::None;
    }
    if let Some(input) = &mut ui.input {
        match key.code {
            KeyCode::Esc => ui.input = None,
            KeyCode::Backspace => {
                input.text.pop();
            }
            KeyCode::Enter => {
                let by = input.text.trim().to_owned();
                if by.is_empty() {
                    ui.message = Some("type your name or initials, then Enter".into());
                    return Action::None;
                }
                let Ok(bed) = BedKey::parse(&input.bed) else {
                    ui.input = None;
                    return Action::None;
                };
                let alarm = input.alarm.clone();
                ui.input = None;
                ui.message = None;
                return Action::Acknowledge { bed, alarm, by };
            }
            KeyCode::Char(c)
                if !key.modifiers.contains(KeyModifiers::CONTROL)
                    && input.text.chars().count() < 32 =>
            {
                input.text.push(c);
            }
            _ => {}
        }
        return Action::None;
    }
    let items = selectable(view);
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return Action::Quit,
        KeyCode::Down | KeyCode::Char('j') if ui.selected + 1 < items.len() => ui.selected += 1,
        KeyCode::Up | KeyCode::Char('k') => ui.selected = ui.selected.saturating_sub(1),
        KeyCode::PageUp => ui.feed_scroll = (ui.feed_scroll + 5).min(view.feed.len()),
        KeyCode::PageDown => ui.feed_scroll = ui.feed_scroll.saturating_sub(5),
        KeyCode::Char('a') | KeyCode::Enter => {
            match items.get(ui.selected.min(items.len().saturating_sub(1))) {
                Some(&(b, a)) => {
                    ui.input = Some(AckInput {
                        bed: view.beds[b].key.clone(),
                        alarm: view.beds[b].alarms[a].id.clone(),
                        text: String::new(),
                    });
                    ui.message = None;
                }
                None => ui.message = Some("no alarm to acknowledge".into()),
            }
        }
        _ => {}
    }
    Action::None
}

/// Draws the whole screen.
pub fn render(frame: &mut Frame<'_>, ui: &Ui, view: &BoardView) {
    let area = frame.area();
    let heights: Vec<u16> = view.beds.iter().map(bed_height).collect();
    let total: u16 = heights.iter().sum();
    let [top, beds, feed, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(total.min(area.height.saturating_sub(6))),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(banner(view)), top);
    let bed_areas = Layout::vertical(heights.iter().map(|h| Constraint::Length(*h))).split(beds);
    let items = selectable(view);
    let selected = items
        .get(ui.selected.min(items.len().saturating_sub(1)))
        .copied();
    for (i, (bed, r)) in view.beds.iter().zip(bed_areas.iter()).enumerate() {
        render_bed(frame, *r, bed, i, selected, view.now_ms);
    }
    render_feed(frame, feed, ui, view);
    frame.render_widget(Paragraph::new(footer(ui)), bottom);
}

fn bed_height(b: &BedView) -> u16 {
    // Border (2) + vitals + meta + alarms (at least one line) + result.
    let alarms = b.alarms.len().max(1) as u16;
    2 + 1 + 1 + alarms + u16::from(b.result.is_some()) + u16::from(!b.live)
}

fn banner(view: &BoardView) -> Line<'static> {
    match &view.banner {
        Some(text) => Line::from(Span::styled(
            format!(" NO DATA: {text} ").to_string() + &" ".repeat(200),
            Style::default()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD),
        )),
        None => Line::from(vec![
            Span::styled(
                " vigil watch ",
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::styled(
                " broker connected ",
                Style::default().fg(Color::Black).bg(Color::Green),
            ),
            Span::raw(format!("  {} UTC", clock(view.now_ms))),
        ]),
    }
}

fn clock(ms: u64) -> String {
    let s = (ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
}

fn render_bed(
    frame: &mut Frame<'_>,
    area: Rect,
    bed: &BedView,
    index: usize,
    selected: Option<(usize, usize)>,
    now_ms: u64,
) {
    let dim = Style::default().fg(Color::DarkGray);
    let mut title = format!(" {} ", bed.key);
    if let Some(s) = &bed.session {
        title.push_str(&format!("session {s} "));
    }
    let border = if !bed.live {
        Style::default().fg(Color::Red)
    } else {
        Style::default()
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(border)
        .title(Span::styled(
            title,
            Style::default().add_modifier(Modifier::BOLD),
        ));
    let mut lines: Vec<Line<'static>> = Vec::new();
    if bed.stopped {
        lines.push(Line::from(Span::styled(
            " stopped: vigil was shut down on this bed ".to_owned(),
            Style::default().fg(Color::White).bg(Color::DarkGray),
        )));
    } else if let Some(nd) = &bed.no_data {
        lines.push(Line::from(Span::styled(
            format!(" NO DATA: {nd} "),
            Style::default()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD),
        )));
    }
    let mut vitals = Vec::new();
    for v in &bed.vitals {
        vitals.push(Span::styled(format!("{} ", v.label), dim));
        let shown = match v.state {
            "ok" => format!("{}{}", v.text, v.arrow()),
            "none" => "-".to_owned(),
            _ => "--".to_owned(),
        };
        let style = if v.state == "ok" {
            Style::default().add_modifier(Modifier::BOLD)
        } else {
            dim
        };
        vitals.push(Span::styled(shown, style));
        vitals.push(Span::styled(format!(" {}", v.unit), dim));
        let note: Vec<&str> = [v.note.as_deref(), v.age.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if !note.is_empty() && bed.live {
            vitals.push(Span::styled(
                format!(" ({})", note.join(", ")),
                Style::default().fg(Color::Yellow),
            ));
        }
        vitals.push(Span::raw("   "));
    }
    lines.push(Line::from(vitals));
    let mut meta = vec![Span::styled(
        format!("phase {}", bed.phase.as_deref().unwrap_or("-")),
        dim,
    )];
    if let Some(d) = &bed.since_dose {
        meta.push(Span::styled(format!("   since dose {d}"), dim));
    }
    if bed.audio_paused {
        meta.push(Span::styled(
            "   audio paused",
            Style::default().fg(Color::Yellow),
        ));
    }
    for s in &bed.sources {
        meta.push(Span::styled(
            format!("   {} {}", s.name, s.status),
            if s.up {
                dim
            } else {
                Style::default().fg(Color::Red)
            },
        ));
    }
    lines.push(Line::from(meta));
    if bed.alarms.is_empty() {
        lines.push(Line::from(Span::styled(
            if bed.live {
                "no alarms"
            } else {
                "alarms unknown"
            },
            dim,
        )));
    }
    for (j, a) in bed.alarms.iter().enumerate() {
        let mark = if selected == Some((index, j)) {
            "▶ "
        } else {
            "  "
        };
        lines.push(alarm_line(a, mark, bed.live, now_ms));
    }
    if let Some(r) = &bed.result {
        let color = match r.outcome {
            "accepted" => Color::Green,
            "pending" => Color::Gray,
            _ => Color::Red,
        };
        lines.push(Line::from(Span::styled(
            r.text.clone(),
            Style::default().fg(color),
        )));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn alarm_line(a: &AlarmView, mark: &'static str, live: bool, now_ms: u64) -> Line<'static> {
    let color = match a.priority {
        "high" => Color::Red,
        "medium" => Color::Yellow,
        _ => Color::Cyan,
    };
    let on = match a.flash {
        "fast" => (now_ms / 250).is_multiple_of(2),
        "slow" => (now_ms / 800).is_multiple_of(2),
        _ => true,
    };
    let style = if !live {
        Style::default().fg(Color::DarkGray)
    } else if a.acknowledged {
        Style::default().fg(color)
    } else if on {
        Style::default()
            .fg(Color::Black)
            .bg(color)
            .add_modifier(Modifier::BOLD)
    } else {
        Style::default().fg(color).add_modifier(Modifier::BOLD)
    };
    let mut text = format!(
        "{mark}{:<6} {}  {}",
        a.priority.to_uppercase(),
        a.label,
        a.since
    );
    if a.acknowledged {
        text.push_str(&match &a.ack_by {
            Some(by) => format!("  acknowledged by {by}"),
            None => "  acknowledged".into(),
        });
    } else if a.state == "latched" {
        text.push_str("  latched");
    }
    Line::from(Span::styled(text, style))
}

fn render_feed(frame: &mut Frame<'_>, area: Rect, ui: &Ui, view: &BoardView) {
    let rows = area.height.saturating_sub(2) as usize;
    let end = view.feed.len().saturating_sub(ui.feed_scroll);
    let start = end.saturating_sub(rows);
    let lines: Vec<Line<'static>> = view.feed[start..end]
        .iter()
        .map(|f| {
            let color = match f.priority {
                "high" => Color::Red,
                "medium" => Color::Yellow,
                _ => Color::Cyan,
            };
            Line::from(Span::styled(
                format!("{} {} {}", f.time, f.bed, f.text),
                Style::default().fg(color),
            ))
        })
        .collect();
    let title = if ui.feed_scroll > 0 {
        format!(" alarm events (scrolled {} up) ", ui.feed_scroll)
    } else {
        " alarm events ".to_owned()
    };
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

fn footer(ui: &Ui) -> Line<'static> {
    if let Some(i) = &ui.input {
        return Line::from(vec![
            Span::styled(
                format!(" Acknowledge {} on {}: name or initials: ", i.alarm, i.bed),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::styled(
                format!("{}_", i.text),
                Style::default().fg(Color::Black).bg(Color::White),
            ),
            Span::raw("  (Enter send, Esc cancel)"),
        ]);
    }
    if let Some(m) = &ui.message {
        return Line::from(Span::styled(
            format!(" {m}"),
            Style::default().fg(Color::Red),
        ));
    }
    Line::from(Span::styled(
        " ↑/↓ select alarm   a acknowledge   PgUp/PgDn scroll events   q quit",
        Style::default().fg(Color::DarkGray),
    ))
}
