//! `vigil watch` through ratatui's TestBackend: alarms shown, the
//! acknowledge key publishes the command on MQTT, NO DATA when blind.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use vigil::display::feed::{self, BedKey, TopicKind, Topics};
use vigil::display::link::{self, LinkSettings, Shared};
use vigil::display::state::{Board, BoardView, Settings};
use vigil::mqtt::link::{parse_broker_url, LinkConfig, FLAG_KEYS};
use vigil::time::rfc3339;
use vigil::watch::ui::{self, Action, Ui};

use crate::util::daemon::temp_dir;
use crate::util::feed::{Broker, Publisher, Subscriber};

fn screen(ui: &Ui, view: &BoardView) -> String {
    screen_of(ui, view, 110, 30)
}

fn screen_of(ui: &Ui, view: &BoardView, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| ui::render(f, ui, view)).unwrap();
    let buf = term.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn bed() -> BedKey {
    BedKey::new("clinic-a", "bed-2")
}

/// A board fed through the feed parser, as the link would.
fn fed_board(now: SystemTime) -> Board {
    let mut b = Board::new(Settings::default(), &[bed()]);
    b.link_up();
    let t = rfc3339(now);
    let msgs = [
        (
            TopicKind::Status,
            format!(
                r#"{{"schema_version":1,"seq":1,"time":"{t}","state":"online","beat":3,"sources":[{{"name":"monitor","up":true}}]}}"#
            ),
        ),
        (
            TopicKind::Vitals,
            format!(
                r#"{{"schema_version":1,"seq":2,"time":"{t}","vitals":{{"hr":{{"value":72,"validity":"valid","unit":"/min","time":"{t}"}},"spo2":{{"value":88,"validity":"valid","unit":"%","time":"{t}"}}}}}}"#
            ),
        ),
        (
            TopicKind::Alarms,
            format!(
                r#"{{"schema_version":1,"seq":3,"time":"{t}","alarm":{{"id":"spo2.low","kind":"physiological","priority":"high","phase":"start","state":"active","value":88,"limit":90,"onset":"{t}","determined":"{t}","ack":null}}}}"#
            ),
        ),
        (
            TopicKind::Alarms,
            format!(
                r#"{{"schema_version":1,"seq":4,"time":"{t}","alarm":{{"id":"hr.high","kind":"physiological","priority":"medium","phase":"start","state":"acknowledged","value":125,"limit":120,"onset":"{t}","determined":"{t}","ack":{{"by":"AB","at":"{t}"}}}}}}"#
            ),
        ),
    ];
    for (kind, json) in msgs {
        let (env, msg) = feed::parse("t", kind, json.as_bytes()).unwrap();
        b.apply(&bed(), &env, msg, false, now);
    }
    b
}

#[test]
fn watch_shows_the_limits_in_force_in_the_bed() {
    use vigil::engine::{EngineConfig, Limit, Priority};
    use vigil::mqtt::payload::{limits, Ctx};
    use vigil::vitals::Vital;
    let now = SystemTime::now();
    let mut board = fed_board(now);
    let mut rules = EngineConfig::default().vitals;
    rules[Vital::SpO2.index()].low = Some(Limit::new(92.0, Priority::High));
    let ctx = Ctx {
        site: "clinic-a",
        bed: "bed-2",
        names: &[],
        epoch: "0123456789abcdef",
    };
    let body = limits(&ctx, 4, now, &rules);
    let (env, msg) = feed::parse("t", TopicKind::Limits, &body).unwrap();
    board.apply(&bed(), &env, msg, true, now);
    let s = screen(&Ui::default(), &board.view(now));
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("watch-limits.txt"),
        &s,
    );
    let line = s
        .lines()
        .find(|l| l.contains("limits "))
        .unwrap_or_else(|| panic!("no limits line:\n{s}"));
    assert!(line.contains("HR 50-120 /min"), "{line}");
    assert!(line.contains("SpO2 low 92 %"), "the reloaded limit: {line}");
    assert!(line.contains("NIBP sys 90-180, dia 50-110 mmHg"), "{line}");
    // Under the vitals, above the alarms.
    let at = |t: &str| s.find(t).unwrap_or_else(|| panic!("{t}:\n{s}"));
    assert!(
        at("HR 72") < at("limits ") && at("limits ") < at("HIGH   SpO2"),
        "{s}"
    );
}

#[test]
fn watch_shows_alarms_by_priority_with_acknowledgement() {
    let now = SystemTime::now();
    let view = fed_board(now).view(now);
    let s = screen(&Ui::default(), &view);
    // Kept as an artefact to look at.
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("watch-alarms.txt"),
        &s,
    );
    assert!(s.contains("clinic-a/bed-2"), "{s}");
    assert!(s.contains("HR 72"), "{s}");
    let high = s
        .find("HIGH   SpO2 low 88 % (limit 90 %)")
        .expect("high alarm line");
    let medium = s
        .find("MEDIUM HR high 125 /min (limit 120 /min)")
        .expect("medium alarm line");
    assert!(high < medium, "sorted by priority:\n{s}");
    assert!(s.contains("acknowledged by AB"), "{s}");
    assert!(s.contains("▶ HIGH"), "the first alarm is selected:\n{s}");
    assert!(s.contains("SpO2 low"), "alarm feed:\n{s}");
    assert!(!s.contains("start       spo2.low"), "no raw ids:\n{s}");
    assert!(!s.contains("NO DATA"), "{s}");
}

#[test]
fn watch_shows_an_old_measurement_with_its_number_marked_old() {
    let now = SystemTime::now();
    let mut board = fed_board(now);
    let t = rfc3339(now);
    let json = format!(
        r#"{{"schema_version":1,"seq":5,"time":"{t}","vitals":{{"nibp_sys":{{"value":182,"validity":"old","unit":"mm[Hg]","time":"{t}"}},"nibp_dia":{{"value":95,"validity":"old","unit":"mm[Hg]","time":"{t}"}}}}}}"#
    );
    let (env, msg) = feed::parse("t", TopicKind::Vitals, json.as_bytes()).unwrap();
    board.apply(&bed(), &env, msg, false, now);
    let s = screen(&Ui::default(), &board.view(now));
    assert!(s.contains("NIBP 182/95 mmHg (old measurement)"), "{s}");
}

/// Issue #13: RR and EtCO2 on a line of their own, questionable values
/// and NIBP components marked `?`, an alarm on a questionable value says so;
/// the vitals are the daemon's own payload.
#[test]
fn watch_shows_breathing_and_marks_questionable_values() {
    use vigil::mqtt::payload::Latest;
    use vigil::vitals::{Measurement, Sample, Validity};
    let now = SystemTime::now();
    let mut board = fed_board(now);
    let s = screen(&Ui::default(), &board.view(now));
    assert!(
        !s.contains("RR ") && !s.contains("EtCO2"),
        "no capnography:\n{s}"
    );

    let mut latest = Latest::default();
    let nibp = crate::util::feed::nibp(
        Sample::valid(126.0),
        Sample::new(79.0, Validity::Questionable),
        Sample::missing(Validity::Unavailable),
    );
    for m in [
        Measurement::HeartRate(Sample::valid(72.0)),
        Measurement::SpO2(Sample::new(82.0, Validity::Questionable)),
        Measurement::RespRate(Sample::valid(14.0)),
        Measurement::EtCo2(Sample::valid(38.0)),
        nibp,
    ] {
        latest.apply(&m, now, 0);
    }
    let body = crate::util::feed::vitals_body("clinic-a", "bed-2", 5, &latest);
    let (env, msg) = feed::parse("t", TopicKind::Vitals, &body).unwrap();
    board.apply(&bed(), &env, msg, false, now);
    let t = rfc3339(now);
    let alarm = format!(
        r#"{{"schema_version":1,"seq":6,"time":"{t}","alarm":{{"id":"spo2.critical_low","kind":"physiological","priority":"high","phase":"start","state":"active","value":82,"limit":85,"validity":"questionable","onset":"{t}","determined":"{t}","ack":null}}}}"#
    );
    let (env, msg) = feed::parse("t", TopicKind::Alarms, alarm.as_bytes()).unwrap();
    board.apply(&bed(), &env, msg, false, now);
    let s = screen(&Ui::default(), &board.view(now));
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("watch-breathing.txt"),
        &s,
    );
    let line = |t: &str| {
        s.lines()
            .find(|l| l.contains(t))
            .unwrap_or_else(|| panic!("no {t:?}:\n{s}"))
            .to_owned()
    };
    let first = line("HR 72");
    assert!(
        first.contains("SpO2 82? % (? questionable signal)"),
        "{first}"
    );
    assert!(
        first.contains("NIBP 126/79? mmHg (? dia questionable signal, 0 s ago)"),
        "no fake mean: {first}"
    );
    let breathing = line("RR 14");
    assert!(breathing.contains("RR 14 /min"), "{breathing}");
    assert!(breathing.contains("EtCO2 38 mmHg"), "{breathing}");
    assert!(!breathing.contains("HR "), "a line of its own: {breathing}");
    assert!(
        s.contains("HIGH   SpO2 critically low 82 % (limit 85 %) ? questionable signal"),
        "{s}"
    );
}

#[test]
fn watch_shows_no_data_when_the_heartbeat_is_late_or_the_broker_lost() {
    let now = SystemTime::now();
    let mut board = fed_board(now);
    let s = screen(&Ui::default(), &board.view(now + Duration::from_secs(16)));
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("watch-nodata.txt"),
        &s,
    );
    assert!(s.contains("NO DATA: no heartbeat for 16 s"), "{s}");
    assert!(!s.contains("72"), "no stale numbers:\n{s}");
    assert!(s.contains("HR --"), "{s}");
    board.link_down(now, "connection refused");
    let s = screen(&Ui::default(), &board.view(now + Duration::from_secs(1)));
    assert!(s.contains("NO DATA: broker unreachable"), "{s}");
    // Nothing to acknowledge while blind.
    let mut ui = Ui::default();
    assert_eq!(
        ui::on_key(&mut ui, key(KeyCode::Char('a')), &board.view(now)),
        Action::None
    );
    assert!(ui.input.is_none());
}

/// Starts the link on a runtime thread; returns the shared state.
fn start_link(port: u16) -> (Arc<Shared>, tokio::sync::oneshot::Sender<()>) {
    start_link_for(port, vec![bed()])
}

/// The displays' link to `port` for `beds` (empty: every bed on the broker).
fn start_link_for(port: u16, beds: Vec<BedKey>) -> (Arc<Shared>, tokio::sync::oneshot::Sender<()>) {
    let shown = beds.clone();
    let settings = LinkSettings {
        link: LinkConfig::new(
            parse_broker_url(&format!("mqtt://127.0.0.1:{port}")).unwrap(),
            FLAG_KEYS,
        ),
        client_id: "test-watch".into(),
        persistent: false,
        topics: Topics::new(feed::DEFAULT_PREFIX).unwrap(),
        beds,
        protocol: None,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (shared, _task) =
                link::spawn(settings, Board::new(Settings::default(), &shown)).unwrap();
            tx.send(shared).unwrap();
            let _ = stop_rx.await;
        });
    });
    (rx.recv().unwrap(), stop_tx)
}

fn wait(shared: &Shared, what: &str, f: impl Fn(&BoardView) -> bool) -> BoardView {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = shared.board().view(SystemTime::now());
        if f(&v) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {v:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn watch_ack_key_publishes_the_command() {
    let dir = temp_dir("watch-ack");
    let broker = Broker::start(&dir);
    let publisher = Publisher::start(broker.port, "clinic-a", "bed-2", Duration::from_millis(500));
    let cmds = Subscriber::start(broker.port, "vigil/v1/clinic-a/bed-2/cmd");
    let (shared, _stop) = start_link(broker.port);
    // Subscribed once the retained heartbeat is in.
    wait(&shared, "bed live", |v| v.beds[0].live);
    publisher.alarm(
        "spo2.low",
        "high",
        "start",
        "active",
        None,
        SystemTime::now(),
    );
    let view = wait(&shared, "alarm arrives", |v| {
        v.beds[0].live && !v.beds[0].alarms.is_empty()
    });

    let mut ui = Ui::default();
    assert_eq!(
        ui::on_key(&mut ui, key(KeyCode::Char('a')), &view),
        Action::None
    );
    let s = screen(&ui, &view);
    assert!(
        s.contains("Acknowledge spo2.low on clinic-a/bed-2: name or initials:"),
        "{s}"
    );
    for c in "JD".chars() {
        ui::on_key(&mut ui, key(KeyCode::Char(c)), &view);
    }
    let action = ui::on_key(&mut ui, key(KeyCode::Enter), &view);
    assert_eq!(
        action,
        Action::Acknowledge {
            bed: bed(),
            alarm: "spo2.low".into(),
            by: "JD".into()
        }
    );
    assert_eq!(vigil::watch::perform(&shared, &action), None);
    let (_, cmd) = cmds.next_json(Duration::from_secs(5));
    assert_eq!(cmd["command"], "acknowledge");
    assert_eq!(cmd["alarm"], "spo2.low");
    assert_eq!(cmd["by"], "JD");
    let id = cmd["id"].as_str().unwrap().to_owned();
    publisher.result(&id, true, None);
    let view = wait(&shared, "result arrives", |v| {
        v.beds[0]
            .result
            .as_ref()
            .is_some_and(|r| r.outcome == "accepted")
    });
    let s = screen(&ui, &view);
    assert!(s.contains("acknowledge spo2.low by JD: accepted"), "{s}");
}

/// Types `text` and Enter into the prompt.
fn answer(ui: &mut Ui, view: &BoardView, text: &str) -> Action {
    for c in text.chars() {
        ui::on_key(ui, key(KeyCode::Char(c)), view);
    }
    ui::on_key(ui, key(KeyCode::Enter), view)
}

#[test]
fn watch_session_keys_publish_session_and_audio_commands() {
    use crate::util::mqtt::assert_valid;
    use vigil::display::feed::BedCommand;

    let dir = temp_dir("watch-session");
    let broker = Broker::start(&dir);
    let publisher = Publisher::start(broker.port, "clinic-a", "bed-2", Duration::from_millis(500));
    let cmds = Subscriber::start(broker.port, "vigil/v1/clinic-a/bed-2/cmd");
    let (shared, _stop) = start_link(broker.port);
    let view = wait(&shared, "bed live", |v| v.beds[0].live);
    let mut ui = Ui::default();

    // Start: the code, then the initials (asked this once).
    ui::on_key(&mut ui, key(KeyCode::Char('s')), &view);
    assert!(screen(&ui, &view).contains("Start a session on clinic-a/bed-2: session code"));
    assert_eq!(answer(&mut ui, &view, "K-0142"), Action::None);
    assert!(screen(&ui, &view).contains("name or initials"));
    let action = answer(&mut ui, &view, "JD");
    assert_eq!(
        action,
        Action::Command {
            bed: bed(),
            command: BedCommand::StartSession {
                session: "K-0142".into()
            },
            by: "JD".into()
        }
    );
    assert_eq!(vigil::watch::perform(&shared, &action), None);
    let (_, cmd) = cmds.next_json(Duration::from_secs(5));
    assert_valid("command", &cmd);
    assert_eq!(cmd["command"], "start_session");
    assert_eq!(cmd["session"], "K-0142");

    // Dose: route and amount; the initials are offered again, Enter keeps them.
    ui::on_key(&mut ui, key(KeyCode::Char('d')), &view);
    answer(&mut ui, &view, "IM");
    answer(&mut ui, &view, "25");
    assert!(screen(&ui, &view).contains("name or initials: JD_"));
    let action = answer(&mut ui, &view, "");
    assert_eq!(vigil::watch::perform(&shared, &action), None);
    let (_, cmd) = cmds.next_json(Duration::from_secs(5));
    assert_valid("command", &cmd);
    assert_eq!(cmd["command"], "dose");
    assert_eq!(cmd["route"], "im");
    assert_eq!(
        (&cmd["amount"], &cmd["unit"]),
        (&serde_json::json!(25.0), &serde_json::json!("mg"))
    );

    // Audio pause, bounded, and its end.
    for (k, expected) in [
        ('p', "pause_audio"),
        ('u', "resume_audio"),
        ('r', "start_recovery"),
        ('e', "end_session"),
    ] {
        ui::on_key(&mut ui, key(KeyCode::Char(k)), &view);
        let action = answer(&mut ui, &view, "");
        assert_eq!(vigil::watch::perform(&shared, &action), None, "{k}");
        let (_, cmd) = cmds.next_json(Duration::from_secs(5));
        assert_valid("command", &cmd);
        assert_eq!(cmd["command"], expected);
        if expected == "pause_audio" {
            assert_eq!(cmd["duration_s"], ui::PAUSE_S);
        }
    }

    // A name is no session code; a route the engine does not know is refused.
    ui::on_key(&mut ui, key(KeyCode::Char('s')), &view);
    answer(&mut ui, &view, "Jane Doe");
    assert_eq!(answer(&mut ui, &view, ""), Action::None);
    assert!(
        ui.message.as_deref().unwrap().contains("pseudonymous"),
        "{:?}",
        ui.message
    );
    ui::on_key(&mut ui, key(KeyCode::Char('d')), &view);
    answer(&mut ui, &view, "oral");
    answer(&mut ui, &view, "");
    assert_eq!(answer(&mut ui, &view, ""), Action::None);
    assert!(
        ui.message.as_deref().unwrap().contains("route"),
        "{:?}",
        ui.message
    );

    // Acknowledge all with nothing open says so.
    ui::on_key(&mut ui, key(KeyCode::Char('A')), &view);
    let action = answer(&mut ui, &view, "");
    let refused = vigil::watch::perform(&shared, &action).expect("refused");
    assert!(refused.contains("no unacknowledged alarm"), "{refused}");

    // With alarms open, one acknowledge_all command covers them all.
    for id in ["spo2.low", "hr.high"] {
        publisher.alarm(id, "high", "start", "active", None, SystemTime::now());
    }
    let view = wait(&shared, "alarms arrive", |v| v.beds[0].alarms.len() == 2);
    ui::on_key(&mut ui, key(KeyCode::Char('A')), &view);
    let action = answer(&mut ui, &view, "");
    assert_eq!(vigil::watch::perform(&shared, &action), None);
    let (_, cmd) = cmds.next_json(Duration::from_secs(5));
    assert_valid("command", &cmd);
    assert_eq!(cmd["command"], "acknowledge_all");
    assert_eq!(cmd["by"], "JD");
}

#[test]
fn watch_shows_64_beds_a_line_each_worst_first_and_one_site_at_a_time() {
    use crate::util::ward::{Plan, Ward};
    let dir = temp_dir("watch-64");
    let broker = Broker::start(&dir);
    let _ward = Ward::start(Plan {
        burst_every: Duration::from_secs(2),
        burst_size: 5,
        hold: Duration::from_secs(30),
        ..Plan::on_one_broker(broker.port, &crate::station::SITES, 16)
    });
    let (shared, _stop) = start_link_for(broker.port, Vec::new());
    let view = wait(&shared, "64 live beds, 5 in a high alarm", |v| {
        v.beds.len() == 64
            && v.beds.iter().all(|b| b.live)
            && v.beds.iter().filter(|b| b.worst == Some("high")).count() == 5
    });
    let mut ui = Ui::default();
    let text = screen_of(&ui, &view, 150, 40);
    // For a person to look at.
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("station");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("watch-64-beds-150x40.txt"), &text).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // One line per bed, worst first: the five high alarms on top.
    assert!(lines[1].contains("64 beds, worst first"), "{text}");
    for line in &lines[2..7] {
        assert!(line.contains("HIGH") && line.contains("SpO2 low"), "{text}");
    }
    assert!(lines[2].contains("▶room-1/bed-01"), "{text}");
    assert!(text.contains("more beds below"), "{text}");
    // f: one site at a time.
    assert_eq!(
        ui::on_key(&mut ui, key(KeyCode::Char('f')), &view),
        Action::None
    );
    assert_eq!(ui.site.as_deref(), Some("room-1"));
    assert_eq!(
        ui::on_key(&mut ui, key(KeyCode::Char('f')), &view),
        Action::None
    );
    assert_eq!(ui.site.as_deref(), Some("room-2"));
    let mut only = shared.board().view(SystemTime::now());
    ui::arrange(&ui, &mut only);
    assert_eq!(only.beds.len(), 16);
    let text = screen_of(&ui, &only, 150, 40);
    assert!(text.contains("16 beds of room-2"), "{text}");
    assert!(!text.contains("room-1/bed-"), "{text}");
    assert!(text.contains("room-2/bed-16"), "all 16 fit: {text}");
    // The selected alarm's bed stays in sight when scrolling down the list.
    ui.site = None;
    ui.selected = 4;
    let text = screen_of(&ui, &view, 150, 20);
    assert!(text.contains("▶ HIGH"), "{text}");
}
