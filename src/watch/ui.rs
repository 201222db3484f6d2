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

use crate::display::feed::{BedCommand, BedKey};
use crate::display::state::{AlarmView, BedView, BoardView, VitalView};

/// What the user is doing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ui {
    /// Index into [`selectable`] of the selected alarm.
    pub selected: usize,
    /// The bed session keys act on (index into the view's beds; Tab
    /// moves it).
    pub bed: usize,
    /// The command being typed, if any.
    pub input: Option<Prompt>,
    /// The name or initials given last: offered again in every prompt
    /// (asked once per shift, not once per alarm).
    pub by: Option<String>,
    /// Alarm feed lines scrolled up from the newest.
    pub feed_scroll: usize,
    /// A message for the status line (errors of the last action).
    pub message: Option<String>,
    /// Only this site's beds (`f` steps through the sites); `None`: all.
    pub site: Option<String>,
}

/// The view as this UI shows it: only the chosen site's beds (the board
/// already puts the worst bed first).
pub fn arrange(ui: &Ui, view: &mut BoardView) {
    if let Some(site) = &ui.site {
        view.only_sites(std::slice::from_ref(site));
    }
}

/// What a prompt is for.
#[derive(Clone, Debug, PartialEq)]
pub enum Goal {
    /// Acknowledge one alarm.
    Acknowledge(String),
    /// Acknowledge every open alarm of the bed.
    AcknowledgeAll,
    /// Start a session (asks for its code).
    StartSession,
    /// A dose (asks for the route and the amount in mg).
    Dose,
    /// Start recovery.
    StartRecovery,
    /// End the session.
    EndSession,
    /// Pause audio for two minutes.
    PauseAudio,
    /// Resume audio.
    ResumeAudio,
}

impl Goal {
    /// What the prompt line says it does.
    fn title(&self) -> String {
        match self {
            Goal::Acknowledge(alarm) => format!("Acknowledge {alarm}"),
            Goal::AcknowledgeAll => "Acknowledge all alarms".into(),
            Goal::StartSession => "Start a session".into(),
            Goal::Dose => "Dose given".into(),
            Goal::StartRecovery => "Start recovery".into(),
            Goal::EndSession => "End the session".into(),
            Goal::PauseAudio => format!("Pause audio for {PAUSE_S} s"),
            Goal::ResumeAudio => "Resume audio".into(),
        }
    }

    /// The fields it asks for before the name or initials.
    fn fields(&self) -> &'static [&'static str] {
        match self {
            Goal::StartSession => &["session code (pseudonymous)"],
            Goal::Dose => &["route (im, iv, sl, in, po)", "amount in mg (Enter: none)"],
            _ => &[],
        }
    }
}

/// How long the terminal's audio pause lasts.
pub const PAUSE_S: u32 = 120;

/// A command being typed: its fields one after the other, then the name
/// or initials.
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    /// Bed.
    pub bed: String,
    /// What for.
    pub goal: Goal,
    /// Fields typed so far (the last one is being typed).
    pub values: Vec<String>,
    /// Typed so far in the current field.
    pub text: String,
}

impl Prompt {
    fn new(bed: &str, goal: Goal, by: Option<&str>) -> Prompt {
        let mut p = Prompt {
            bed: bed.to_owned(),
            goal,
            values: Vec::new(),
            text: String::new(),
        };
        if p.goal.fields().is_empty() {
            p.text = by.unwrap_or_default().to_owned();
        }
        p
    }

    /// The label of the field being typed.
    fn label(&self) -> &'static str {
        self.goal
            .fields()
            .get(self.values.len())
            .copied()
            .unwrap_or("name or initials")
    }
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
    /// Acknowledge every open alarm of a bed.
    AcknowledgeAll {
        /// Bed.
        bed: BedKey,
        /// Name or initials.
        by: String,
    },
    /// Publish a session or audio command.
    Command {
        /// Bed.
        bed: BedKey,
        /// The command.
        command: BedCommand,
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
                let typed = input.text.trim().to_owned();
                let asking_by = input.values.len() == input.goal.fields().len();
                if asking_by && typed.is_empty() {
                    ui.message = Some("type your name or initials, then Enter".into());
                    return Action::None;
                }
                input.values.push(typed);
                input.text.clear();
                if !asking_by {
                    if input.values.len() == input.goal.fields().len() {
                        input.text = ui.by.clone().unwrap_or_default();
                    }
                    return Action::None;
                }
                let input = ui.input.take().expect("a prompt");
                ui.message = None;
                return finish(ui, input);
            }
            KeyCode::Char(c)
                if !key.modifiers.contains(KeyModifiers::CONTROL)
                    && input.text.chars().count() < 40 =>
            {
                input.text.push(c);
            }
            _ => {}
        }
        return Action::None;
    }
    if let Some(goal) = session_goal(key.code) {
        let live: Vec<&BedView> = view.beds.iter().filter(|b| b.live).collect();
        let bed = view
            .beds
            .get(ui.bed)
            .filter(|b| b.live)
            .or(live.first().copied());
        match bed {
            Some(b) => {
                ui.input = Some(Prompt::new(&b.key, goal, ui.by.as_deref()));
                ui.message = None;
            }
            None => ui.message = Some("no live bed to send a command for".into()),
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
        KeyCode::Tab if !view.beds.is_empty() => ui.bed = (ui.bed + 1) % view.beds.len(),
        KeyCode::Char('f') => {
            // All sites, then each site in turn.
            let names: Vec<&str> = view.sites.iter().map(|s| s.site.as_str()).collect();
            let at = ui
                .site
                .as_deref()
                .and_then(|s| names.iter().position(|n| *n == s));
            ui.site = match at {
                None => names.first().map(|s| (*s).to_owned()),
                Some(i) => names.get(i + 1).map(|s| (*s).to_owned()),
            };
            ui.selected = 0;
            ui.bed = 0;
        }
        KeyCode::Char('a') | KeyCode::Enter => {
            match items.get(ui.selected.min(items.len().saturating_sub(1))) {
                Some(&(b, a)) => {
                    ui.input = Some(Prompt::new(
                        &view.beds[b].key,
                        Goal::Acknowledge(view.beds[b].alarms[a].id.clone()),
                        ui.by.as_deref(),
                    ));
                    ui.message = None;
                }
                None => ui.message = Some("no alarm to acknowledge".into()),
            }
        }
        _ => {}
    }
    Action::None
}

/// The session key pressed, if it is one: `s` start, `d` dose, `r`
/// recovery, `e` end, `p` pause audio, `u` resume audio, `A` acknowledge all.
fn session_goal(code: KeyCode) -> Option<Goal> {
    Some(match code {
        KeyCode::Char('s') => Goal::StartSession,
        KeyCode::Char('d') => Goal::Dose,
        KeyCode::Char('r') => Goal::StartRecovery,
        KeyCode::Char('e') => Goal::EndSession,
        KeyCode::Char('p') => Goal::PauseAudio,
        KeyCode::Char('u') => Goal::ResumeAudio,
        KeyCode::Char('A') => Goal::AcknowledgeAll,
        _ => return None,
    })
}

/// A completed prompt as the action it asks for (or a message saying what
/// to type instead).
fn finish(ui: &mut Ui, prompt: Prompt) -> Action {
    let Ok(bed) = BedKey::parse(&prompt.bed) else {
        return Action::None;
    };
    let mut values = prompt.values;
    let by = values.pop().unwrap_or_default();
    ui.by = Some(by.clone());
    let command = match prompt.goal {
        Goal::Acknowledge(alarm) => return Action::Acknowledge { bed, alarm, by },
        Goal::AcknowledgeAll => return Action::AcknowledgeAll { bed, by },
        Goal::StartSession => BedCommand::StartSession {
            session: values.remove(0),
        },
        Goal::Dose => {
            let amount = match values[1].as_str() {
                "" => None,
                a => match a.parse::<f64>() {
                    Ok(v) => Some(v),
                    Err(_) => {
                        ui.message = Some(format!("amount {a:?} is not a number of mg"));
                        return Action::None;
                    }
                },
            };
            BedCommand::Dose {
                amount,
                unit: amount.map(|_| "mg".to_owned()),
                route: values[0].to_lowercase(),
                note: String::new(),
            }
        }
        Goal::StartRecovery => BedCommand::StartRecovery,
        Goal::EndSession => BedCommand::EndSession,
        Goal::PauseAudio => BedCommand::PauseAudio {
            duration_s: PAUSE_S,
        },
        Goal::ResumeAudio => BedCommand::ResumeAudio,
    };
    match command.clone().checked() {
        Ok(_) => Action::Command { bed, command, by },
        Err(e) => {
            ui.message = Some(e.to_string());
            Action::None
        }
    }
}

/// Draws the whole screen.
pub fn render(frame: &mut Frame<'_>, ui: &Ui, view: &BoardView) {
    let area = frame.area();
    let heights: Vec<u16> = view.beds.iter().map(bed_height).collect();
    let total: u16 = heights.iter().sum();
    if total > area.height.saturating_sub(6) && view.beds.len() > 1 {
        return render_compact(frame, ui, view);
    }
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
        let current = view.beds.len() > 1 && i == ui.bed.min(view.beds.len() - 1);
        render_bed(frame, *r, bed, i, selected, view.now_ms, current);
    }
    render_feed(frame, feed, ui, view);
    frame.render_widget(Paragraph::new(footer(ui)), bottom);
}

/// The station at scale: one line per bed, worst first, the bed's worst
/// alarm (or the selected one) on its line, scrolled so that the current
/// bed and the selected alarm stay in sight.
fn render_compact(frame: &mut Frame<'_>, ui: &Ui, view: &BoardView) {
    let area = frame.area();
    let [top, list, feed, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(6.min(area.height / 4).max(3)),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(banner(view)), top);
    let items = selectable(view);
    let selected = items
        .get(ui.selected.min(items.len().saturating_sub(1)))
        .copied();
    let current = ui.bed.min(view.beds.len().saturating_sub(1));
    let rows = list.height.saturating_sub(2) as usize;
    // Keep the selected alarm's bed (else the current bed) in sight.
    let focus = selected.map_or(current, |(b, _)| b);
    let first = focus.saturating_sub(rows.saturating_sub(2));
    let shown = view.beds.len().saturating_sub(first).min(rows);
    let mut lines: Vec<Line<'static>> = view.beds[first..first + shown]
        .iter()
        .enumerate()
        .map(|(n, b)| {
            let i = first + n;
            let pick = selected.filter(|(sb, _)| *sb == i).map(|(_, a)| a);
            compact_line(b, i == current, pick, view.now_ms)
        })
        .collect();
    let below = view.beds.len() - first - shown;
    if below > 0 && !lines.is_empty() {
        let alarming = view.beds[first + shown..]
            .iter()
            .filter(|b| b.worst.is_some() || (!b.live && !b.stopped))
            .count();
        lines.pop();
        lines.push(Line::from(Span::styled(
            format!(
                " ... {} more beds below ({alarming} alarming or without data)",
                below + 1
            ),
            Style::default().fg(Color::DarkGray),
        )));
    }
    let title = match &ui.site {
        Some(s) => format!(" {} beds of {s} (f: next site) ", view.beds.len()),
        None => format!(" {} beds, worst first (f: one site) ", view.beds.len()),
    };
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)),
        list,
    );
    render_feed(frame, feed, ui, view);
    frame.render_widget(Paragraph::new(footer(ui)), bottom);
}

/// One bed on one line: key, numbers, and its worst (or the selected) alarm.
fn compact_line(b: &BedView, current: bool, pick: Option<usize>, now_ms: u64) -> Line<'static> {
    let dim = Style::default().fg(Color::DarkGray);
    let mut spans = vec![Span::styled(
        format!("{}{:<18}", if current { "▶" } else { " " }, b.key),
        Style::default().add_modifier(Modifier::BOLD),
    )];
    for v in &b.vitals {
        let text = match v.state {
            "ok" | "old" | "questionable" => v.text.split(" (").next().unwrap_or("").to_owned(),
            "none" => "-".to_owned(),
            _ => "--".to_owned(),
        };
        let style = match (b.live, v.alarm) {
            (false, _) => dim,
            (_, Some("high")) => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            (_, Some("medium")) => Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
            _ if v.state == "ok" => Style::default().add_modifier(Modifier::BOLD),
            _ if v.state == "questionable" => questionable_style(),
            _ => dim,
        };
        spans.push(Span::styled(format!(" {} ", v.label), dim));
        // Breathing values are short: less room, so the alarm stays in sight.
        let width = if v.key == "rr" || v.key == "etco2" {
            4
        } else {
            7
        };
        spans.push(Span::styled(format!("{text:<width$}"), style));
    }
    spans.push(Span::raw(" "));
    if b.stopped {
        spans.push(Span::styled("stopped", dim));
    } else if let Some(nd) = &b.no_data {
        spans.push(Span::styled(
            format!(" NO DATA: {nd} "),
            Style::default()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD),
        ));
    } else {
        let open = b.alarms.iter().filter(|a| !a.acknowledged).count();
        let shown = pick.or_else(|| (!b.alarms.is_empty()).then_some(0));
        match shown.and_then(|j| b.alarms.get(j)) {
            Some(a) => {
                let mark = if pick.is_some() { "▶ " } else { "" };
                let mut line = alarm_line(a, mark, b.live, now_ms);
                spans.append(&mut line.spans);
                if open > 1 {
                    spans.push(Span::styled(format!("  +{} more", open - 1), dim));
                }
            }
            None => spans.push(Span::styled(
                b.phase.as_deref().unwrap_or("idle").to_owned(),
                dim,
            )),
        }
    }
    Line::from(spans)
}

fn bed_height(b: &BedView) -> u16 {
    // Border (2) + vitals (breathing on a line of its own) + limits + meta
    // + alarms (at least one line) + result.
    let alarms = b.alarms.len().max(1) as u16;
    let vitals = b.vitals.len().div_ceil(MAIN_VITALS).max(1) as u16;
    let limits = limits_lines(b).len() as u16;
    2 + vitals + limits + 1 + alarms + u16::from(b.result.is_some()) + u16::from(!b.live)
}

/// HR, SpO2 and NIBP: the first line of a bed; RR and EtCO2 (beds with
/// capnography) go on the next.
const MAIN_VITALS: usize = 3;

/// A value the monitor flagged questionable: yellow, not bold, its parts
/// marked `?` in the text.
fn questionable_style() -> Style {
    Style::default().fg(Color::Yellow)
}

/// The alarm limits in force, a line per line of vitals that has any:
/// `limits  HR 50-120 /min   SpO2 low 90 %`.
fn limits_lines(bed: &BedView) -> Vec<Line<'static>> {
    bed.vitals
        .chunks(MAIN_VITALS)
        .filter_map(|group| {
            let parts: Vec<String> = group
                .iter()
                .filter_map(|v| v.limits_text.as_ref().map(|t| format!("{} {t}", v.label)))
                .collect();
            (!parts.is_empty()).then(|| {
                Line::from(Span::styled(
                    format!("limits  {}", parts.join("   ")),
                    Style::default().fg(Color::DarkGray),
                ))
            })
        })
        .collect()
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
    current: bool,
) {
    let dim = Style::default().fg(Color::DarkGray);
    let mut title = format!(" {}{} ", if current { "▶ " } else { "" }, bed.key);
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
    for group in bed.vitals.chunks(MAIN_VITALS) {
        lines.push(vitals_line(group, bed.live));
    }
    lines.extend(limits_lines(bed));
    let mut meta = vec![Span::styled(
        format!("phase {}", bed.phase.as_deref().unwrap_or("-")),
        dim,
    )];
    if let Some(d) = &bed.since_dose {
        meta.push(Span::styled(format!("   since dose {d}"), dim));
    }
    if !bed.baselines.is_empty() {
        meta.push(Span::styled(
            format!("   baseline {}", bed.baselines.join(", ")),
            dim,
        ));
    }
    if bed.discharge_ready {
        meta.push(Span::styled(
            "   ready for discharge review",
            Style::default().fg(Color::Green),
        ));
    }
    if bed.audio_paused {
        let left = bed.audio_pause_left_s.map_or(String::new(), |s| {
            let s = s.max(0.0).ceil() as u64;
            format!(" {}:{:02}", s / 60, s % 60)
        });
        meta.push(Span::styled(
            format!("   audio paused{left}"),
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

/// Vitals on one line: `HR 72→ /min   SpO2 82? % (? questionable: ...)`.
fn vitals_line(vitals: &[VitalView], live: bool) -> Line<'static> {
    let dim = Style::default().fg(Color::DarkGray);
    let mut spans = Vec::new();
    for v in vitals {
        spans.push(Span::styled(format!("{} ", v.label), dim));
        let (shown, style) = match v.state {
            "ok" => (
                format!("{}{}", v.text, v.arrow()),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            // Questionable: the number (or the mark alone) with its `?`.
            "questionable" => (v.text.clone(), questionable_style()),
            // An old measurement: the number, dim, with its note.
            "old" => (v.text.clone(), dim),
            "none" => ("-".to_owned(), dim),
            _ => ("--".to_owned(), dim),
        };
        spans.push(Span::styled(shown, style));
        spans.push(Span::styled(format!(" {}", v.unit), dim));
        // A terminal line is short: the board's note on a questionable
        // value, in few words (NIBP: which components).
        let doubt = (v.state == "questionable").then(|| {
            let parts: Vec<&str> = v
                .parts
                .iter()
                .filter(|p| p.questionable && v.key == "nibp")
                .map(|p| p.key)
                .collect();
            format!(
                "? {}questionable signal",
                parts.iter().map(|p| format!("{p} ")).collect::<String>()
            )
        });
        let note: Vec<&str> = [doubt.as_deref().or(v.note.as_deref()), v.age.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if !note.is_empty() && live {
            spans.push(Span::styled(
                format!(" ({})", note.join(", ")),
                Style::default().fg(Color::Yellow),
            ));
        }
        spans.push(Span::raw("   "));
    }
    Line::from(spans)
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
                format!(" {} on {}: {}: ", i.goal.title(), i.bed, i.label()),
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
        " ↑/↓ alarm  a ack  A ack all  Tab bed  f site  s start  d dose  r recovery  e end  p pause  u resume  PgUp/PgDn events  q quit",
        Style::default().fg(Color::DarkGray),
    ))
}
