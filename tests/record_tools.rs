//! Record tools: CSV import, export of readings and events, and the HTML
//! report, including a render check in headless Chromium.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::Duration;

use vigil::engine::{AlarmId, Command, Condition};
use vigil::pipeline::Input;
use vigil::record::export::{self, parse_rfc3339, Format};
use vigil::record::import::{self, ImportOptions};
use vigil::record::{file, Record, Timed};
use vigil::replay;
use vigil::report::{self, colour, ReportOptions};
use vigil::time::Instant;
use vigil::vitals::{ShortText, Vital};

use crate::util::daemon::temp_dir;

pub(crate) const START: &str = "2026-03-01T09:30:00Z";

/// A 40-minute session, one reading a second: a desaturation (SpO2 88 for
/// 100 s), tachycardia long enough to escalate (HR 128 for 200 s), a sensor
/// off for 30 s, NIBP every 5 minutes.
fn scenario_csv() -> String {
    let mut rows = vec!["time,vital,value,validity".to_owned()];
    for s in 0..2400u32 {
        let wave = [0, 1, 2, 1, 0, -1, -2, -1][(s / 20 % 8) as usize];
        let hr = if (900..1100).contains(&s) {
            128
        } else {
            72 + wave
        };
        if (1500..1530).contains(&s) {
            rows.push(format!("{s},spo2,,sensor_off"));
        } else {
            let spo2 = if (600..700).contains(&s) { 88 } else { 97 };
            rows.push(format!("{s},spo2,{spo2},"));
        }
        rows.push(format!("{s},hr,{hr},"));
        rows.push(format!("{s},pr,{},", hr - 1));
        if s % 300 == 0 {
            let (sys, dia, mean) = if s == 1200 || s == 1500 {
                (186, 112, 137)
            } else {
                (122 + s / 100, 78, 93)
            };
            rows.push(format!("{s},nibp,{sys}/{dia}/{mean},"));
        }
    }
    rows.join("\n") + "\n"
}

/// Inserts commands into imported records, in time order, before the end record.
pub(crate) fn with_commands(mut records: Vec<Timed>, commands: &[(f64, Command)]) -> Vec<Timed> {
    for &(secs, command) in commands {
        let at = Instant::from_nanos((secs * 1e9) as u64);
        let pos = records
            .iter()
            .position(|r| r.at > at || matches!(r.record, Record::End(_)))
            .unwrap_or(records.len());
        records.insert(
            pos,
            Timed {
                at,
                record: Record::Input(Input::Command(command)),
            },
        );
    }
    records
}

fn options() -> ImportOptions {
    ImportOptions {
        start: parse_rfc3339(START).unwrap(),
        ..ImportOptions::default()
    }
}

/// The scenario as a recording with a session, a dose and acknowledgements.
fn scenario_recording(dir: &Path) -> PathBuf {
    scenario_recording_with(dir, &options())
}

/// [`scenario_recording`] with other import options (site, bed, start).
pub(crate) fn scenario_recording_with(dir: &Path, options: &ImportOptions) -> PathBuf {
    let rows = import::parse_csv(&scenario_csv()).unwrap();
    // The session starts after the first cuff reading, so one NIBP falls in
    // the baseline phase: a site that takes one pre-dose reading as enough.
    let mut opts = options.clone();
    opts.config.engine.baseline_min.nibp_readings = 1;
    let records = import::build(&rows, &opts).unwrap();
    let ack = |vital, condition, by: &str| Command::Acknowledge {
        alarm: AlarmId::vital(vital, condition),
        by: ShortText::new(by),
    };
    let records = with_commands(
        records,
        &[
            (
                0.5,
                Command::StartSession {
                    session: ShortText::new("KT-0042"),
                },
            ),
            (
                300.5,
                Command::Dose {
                    route: ShortText::new("im"),
                    amount: vigil::engine::DoseAmount::new(0.5, vigil::engine::DoseUnit::MgPerKg),
                    note: ShortText::new("racemic ketamine"),
                },
            ),
            (642.0, ack(Vital::SpO2, Condition::Low, "RN")),
            // The tachycardia after it escalated to high at 09:47:10.
            (1040.0, ack(Vital::HeartRate, Condition::High, "RN")),
            (1512.0, ack(Vital::SpO2, Condition::SensorOff, "MD")),
            (1800.5, Command::StartRecovery),
            (2390.5, Command::EndSession),
        ],
    );
    let path = dir.join("session.vrec");
    file::write_all(&path, &records).unwrap();
    path
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

#[test]
fn import_replay_export_gives_back_the_input_rows() {
    // Unordered rows, every vital, NIBP as components and whole, values
    // with decimals, missing values and non-valid validities.
    let csv = "\
time,vital,value,validity
2,hr,73,
0,hr,72,
0,spo2,97.5,valid
1,spo2,,sensor_off
1,pr,71,
2,spo2,95,artifact
3,pr,,unavailable
60,nibp_sys,124,
60,nibp_dia,80,
60,nibp_mean,95,
61.25,hr,74,questionable
90,nibp,130/85/100,
120,nibp,118/76,
150,nibp,-/-/-,sensor_off
151.5,spo2,96,
180,nibp_sys,124,
180,nibp_dia,80,
180,nibp_mean,,invalid
210,nibp_mean,92,
240,nibp_sys,120,
240,nibp_dia,10,
";
    let dir = temp_dir("roundtrip");
    let (input, vrec) = (dir.join("in.csv"), dir.join("in.vrec"));
    std::fs::write(&input, csv).unwrap();
    assert_eq!(import::import(&input, &vrec, &options()).unwrap(), 21);

    // The recording: one vigil-line source, the defaults, the start time.
    let session = replay::load(&vrec).unwrap();
    assert_eq!(session.config.sources.len(), 1);
    assert_eq!(session.config.sources[0].protocol.key(), "vigil-line");
    assert_eq!(
        session.config.engine.vitals,
        vigil::config::Config::default().engine.vitals
    );
    assert_eq!(session.meta("started"), Some("2026-03-01T09:30:00.000Z"));
    assert_eq!(session.meta("site"), Some("demo-clinic"));

    let mut out = Vec::new();
    export::export(&vrec, Format::Csv, &mut out).unwrap();
    let rows = csv_rows(&String::from_utf8(out).unwrap());
    assert_eq!(rows[0], export::COLUMNS);
    let col = |name: &str| export::COLUMNS.iter().position(|c| *c == name).unwrap();
    let got: Vec<(String, String, String, String)> = rows[1..]
        .iter()
        .filter(|r| r[0] == "reading")
        .map(|r| {
            (
                r[col("time")].clone(),
                r[col("vital")].clone(),
                r[col("value")].clone(),
                r[col("validity")].clone(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String, String)> = [
        ("0.000", "hr", "72", "valid"),
        ("0.000", "spo2", "97.5", "valid"),
        ("1.000", "spo2", "", "sensor_off"),
        ("1.000", "pr", "71", "valid"),
        ("2.000", "hr", "73", "valid"),
        ("2.000", "spo2", "95", "artifact"),
        ("3.000", "pr", "", "unavailable"),
        ("60.000", "nibp_sys", "124", "valid"),
        ("60.000", "nibp_dia", "80", "valid"),
        ("60.000", "nibp_mean", "95", "valid"),
        ("61.250", "hr", "74", "questionable"),
        ("90.000", "nibp_sys", "130", "valid"),
        ("90.000", "nibp_dia", "85", "valid"),
        ("90.000", "nibp_mean", "100", "valid"),
        ("120.000", "nibp_sys", "118", "valid"),
        ("120.000", "nibp_dia", "76", "valid"),
        ("120.000", "nibp_mean", "", "unavailable"),
        ("150.000", "nibp_sys", "", "sensor_off"),
        ("150.000", "nibp_dia", "", "sensor_off"),
        ("150.000", "nibp_mean", "", "sensor_off"),
        ("151.500", "spo2", "96", "valid"),
        // Components of one time with validities of their own (real data).
        ("180.000", "nibp_sys", "124", "valid"),
        ("180.000", "nibp_dia", "80", "valid"),
        ("180.000", "nibp_mean", "", "invalid"),
        ("210.000", "nibp_sys", "", "unavailable"),
        ("210.000", "nibp_dia", "", "unavailable"),
        ("210.000", "nibp_mean", "92", "valid"),
        // A diastolic of 10 is implausible: the engine takes the whole
        // measurement as an artifact, and the export says what it decided.
        ("240.000", "nibp_sys", "120", "artifact"),
        ("240.000", "nibp_dia", "10", "artifact"),
        ("240.000", "nibp_mean", "", "unavailable"),
    ]
    .iter()
    .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
    .collect();
    assert_eq!(got, expected);

    // Wall time from the start; every reading row names the source and unit.
    let first = &rows[1];
    assert_eq!(first[col("wall_time")], "2026-03-01T09:30:00.000Z");
    assert_eq!(first[col("source")], "import");
    assert_eq!(first[col("unit")], "/min");

    // The export re-imports as it is (its `type` column is honoured).
    let again = dir.join("again.vrec");
    let mut exported = Vec::new();
    export::export(&vrec, Format::Csv, &mut exported).unwrap();
    let exported_csv = dir.join("exported.csv");
    std::fs::write(&exported_csv, &exported).unwrap();
    import::import(&exported_csv, &again, &options()).unwrap();
    let mut twice = Vec::new();
    export::export(&again, Format::Csv, &mut twice).unwrap();
    let readings = |b: &[u8]| -> Vec<String> {
        String::from_utf8(b.to_vec())
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("reading,"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(readings(&exported), readings(&twice));
}

#[test]
fn export_lists_alarm_and_session_events() {
    let dir = temp_dir("export");
    let vrec = scenario_recording(&dir);
    let mut out = Vec::new();
    export::export(&vrec, Format::Csv, &mut out).unwrap();
    let rows = csv_rows(&String::from_utf8(out).unwrap());
    let col = |name: &str| export::COLUMNS.iter().position(|c| *c == name).unwrap();
    let find = |kind: &str, f: &dyn Fn(&Vec<String>) -> bool| -> Vec<Vec<String>> {
        rows.iter()
            .filter(|r| r[0] == kind && f(r))
            .cloned()
            .collect()
    };
    // 2400 s x (HR, PR, SpO2) + 8 NIBP x 3 components.
    assert_eq!(find("reading", &|_| true).len(), 2400 * 3 + 8 * 3);

    let low = find("alarm", &|r| r[col("alarm")] == "spo2.low");
    let phases: Vec<&str> = low.iter().map(|r| r[col("phase")].as_str()).collect();
    assert_eq!(phases, ["start", "acknowledge", "end"]);
    let start = &low[0];
    assert_eq!(
        start[col("time")],
        "615.000",
        "after the 15 s condition delay"
    );
    assert_eq!(start[col("wall_time")], "2026-03-01T09:40:15.000Z");
    assert_eq!(start[col("priority")], "medium");
    assert_eq!(start[col("kind")], "physiological");
    assert_eq!(start[col("state")], "active");
    assert_eq!(start[col("value")], "88");
    assert_eq!(start[col("limit")], "90");
    assert_eq!(low[1][col("ack_by")], "RN");
    assert_eq!(low[1][col("state")], "acknowledged");

    let high = find("alarm", &|r| r[col("alarm")] == "hr.high");
    let phases: Vec<(&str, &str)> = high
        .iter()
        .map(|r| (r[col("phase")].as_str(), r[col("priority")].as_str()))
        .collect();
    assert_eq!(
        phases,
        [
            ("start", "medium"),
            ("escalate", "high"),
            ("acknowledge", "high"),
            ("end", "high")
        ]
    );
    let sensor = find("alarm", &|r| r[col("alarm")] == "spo2.sensor_off");
    assert_eq!(sensor[0][col("kind")], "technical");
    assert_eq!(sensor[0][col("validity")], "sensor_off");

    let session = find("session", &|_| true);
    let kinds: Vec<(&str, &str)> = session
        .iter()
        .map(|r| (r[col("kind")].as_str(), r[col("phase")].as_str()))
        .collect();
    assert!(kinds.starts_with(&[("phase", "baseline")]), "{kinds:?}");
    assert!(kinds.contains(&("dose", "")) && kinds.contains(&("baseline", "")));
    assert!(kinds.contains(&("phase", "recovery")) && kinds.contains(&("phase", "ended")));
    let dose = find("session", &|r| r[col("kind")] == "dose");
    assert_eq!(dose[0][col("time")], "300.500");
    assert!(dose[0][col("detail")].contains("dose 1 route=im note=racemic ketamine"));
    assert_eq!(
        (
            dose[0][col("value")].as_str(),
            dose[0][col("unit")].as_str()
        ),
        ("0.5", "mg/kg")
    );
    let hr_base = find("session", &|r| {
        r[col("kind")] == "baseline" && r[col("vital")] == "hr"
    });
    assert_eq!(hr_base[0][col("value")], "72");

    // JSONL: the same rows, one object each, with a type.
    let mut json = Vec::new();
    export::export(&vrec, Format::Jsonl, &mut json).unwrap();
    let json = String::from_utf8(json).unwrap();
    assert_eq!(json.lines().count(), rows.len() - 1);
    assert!(json
        .lines()
        .all(|l| l.starts_with("{\"type\":\"") && l.ends_with('}')));
    assert!(json.contains(
        "{\"type\":\"alarm\",\"time\":615.000,\"wall_time\":\"2026-03-01T09:40:15.000Z\",\"vital\":\"spo2\",\"value\":88,\"unit\":\"%\",\"alarm\":\"spo2.low\",\"kind\":\"physiological\",\"phase\":\"start\",\"priority\":\"medium\",\"state\":\"active\",\"limit\":90,"
    ));
}

#[test]
fn report_shows_alarm_spans_doses_limits_and_summary() {
    let dir = temp_dir("report");
    let vrec = scenario_recording(&dir);
    let html_path = dir.join("session.html");
    let a = report::report(&vrec, &html_path, &ReportOptions::default()).unwrap();
    let html = std::fs::read_to_string(&html_path).unwrap();

    // What was analysed.
    assert_eq!(a.series[0].len(), 2400);
    assert_eq!(a.nibp.len(), 8);
    let keys: Vec<&str> = a.episodes.iter().map(|e| e.key.as_str()).collect();
    for k in ["spo2.low", "hr.high", "spo2.sensor_off", "nibp.high"] {
        assert!(keys.contains(&k), "{k} in {keys:?}");
    }
    let low = a.episodes.iter().find(|e| e.key == "spo2.low").unwrap();
    assert_eq!((low.start, low.end), (615.0, Some(700.0)));
    assert_eq!(low.acks, [(642.0, "RN".to_owned())]);

    // Self-contained: nothing to fetch, no scripts.
    for banned in ["<script", "src=", "href=", "@import", "url(http", "<link"] {
        assert!(!html.contains(banned), "{banned}");
    }
    // Pseudonymous id, clock times, axis with units, legend.
    assert!(html.contains("<span id=\"session-id\">KT-0042</span>"));
    assert!(html.contains("09:30:00 (clock time, UTC)"));
    assert!(html.contains("Heart rate (HR) and pulse rate (PR), /min"));
    assert!(html.contains("SpO2, %"));
    assert!(html.contains("mmHg"));
    assert!(html.contains(">09:40<"), "a clock tick on the time axis");
    assert!(html.contains("class=\"legend\""));
    // No capnograph in this recording: no breathing panel, peaks or rows.
    for absent in ["Breathing:", "peak-rr", "data-vital=\"rr\"", "RR 0,"] {
        assert!(!html.contains(absent), "{absent}");
    }

    // Alarm spans: the desaturation (medium, physiological) from 09:40:15 to
    // 09:41:40; the tachycardia in medium then high after escalation; the
    // sensor-off hatched as technical.
    assert!(html.contains("<title>spo2.low (medium physiological) 09:40:15–09:41:40</title>"));
    assert!(html.contains("<title>hr.high (medium physiological) 09:45:10–09:47:10</title>"));
    assert!(html.contains("<title>hr.high (high physiological) 09:47:10–09:48:20</title>"));
    assert!(html.contains("class=\"alarm-span medium technical\""));
    assert!(html.contains("fill=\"url(#hatch-medium)\""));
    assert!(html.contains(&format!("fill=\"{}\"", colour::HIGH)));
    // Acknowledgements and the dose marker.
    assert!(html.contains("<title>spo2.low acknowledged at 09:40:42 by RN</title>"));
    assert!(html.contains("<title>spo2.sensor_off acknowledged at 09:55:12 by MD</title>"));
    assert!(html.contains("<title>Dose 1 at 09:35:00 (im) 0.5 mg/kg, racemic ketamine</title>"));
    assert!(html.contains(">Dose 1 im</text>"));
    // Baseline band and limits of the recorded configuration.
    assert!(html.contains("<title>hr baseline 72 (band 72–93.6)</title>"));
    assert!(html.contains("<title>HR high limit 120</title>"));
    assert!(html.contains("<title>crit. low limit 85</title>"));
    assert!(html.contains("<title>sys high limit 180</title>"));

    // Summary: counts by priority and kind, time to acknowledge, time outside limits.
    assert!(html.contains("Alarms started, by priority and kind"));
    // Medium: spo2.rate_fall, spo2.low, hr.high, pr.high and the technical
    // spo2.sensor_off; hr.high and pr.high escalated to high.
    assert!(html.contains("medium</td><td>4</td><td>1</td><td>5</td><td>2</td></tr>"));
    // Time to acknowledge by FINAL priority: spo2.low after 27 s and
    // spo2.sensor_off after 7 s as medium; hr.high, acknowledged 2 min 10 s
    // after it started and after it escalated, as high. (A reading over
    // both NIBP limits is one nibp.high, not a systolic and a diastolic
    // alarm.)
    assert!(html.contains("<th>final priority</th>"));
    assert!(html.contains(
        "<tr><td>high</td><td>1 of 5</td><td>2 min 10 s</td><td>2 min 10 s</td><td>4</td></tr>"
    ));
    // Fewer than before nibp.high: the systolic and diastolic baseline
    // rises end at 09:55, when nibp.high starts and covers them.
    assert!(html
        .contains("<tr><td>medium</td><td>2 of 5</td><td>17 s</td><td>27 s</td><td>3</td></tr>"));
    // The date of the chart, and no discharge readiness in this session.
    assert!(html.contains("<b>Date</b> <span id=\"date\">2026-03-01</span>"));
    assert!(html.contains(
        "<span id=\"dose-to-discharge\">criteria not met in recovery by the end of the recording</span>"
    ));
    let spo2_row = html
        .lines()
        .find(|l| l.starts_with("<tr data-vital=\"spo2\">"))
        .unwrap();
    assert!(
        spo2_row.contains("<td>90</td><td>1 min 40 s</td>"),
        "{spo2_row}"
    );
    let hr_row = html
        .lines()
        .find(|l| l.starts_with("<tr data-vital=\"hr\">"))
        .unwrap();
    assert!(
        hr_row.contains("<td>120</td><td>3 min 20 s</td>"),
        "{hr_row}"
    );
    let sys_row = html
        .lines()
        .find(|l| l.starts_with("<tr data-vital=\"nibp_sys\">"))
        .unwrap();
    assert!(
        sys_row.contains("<td>180</td><td>2 measurement(s)</td>"),
        "{sys_row}"
    );
    assert!(!html.contains("NaN"));

    // The summary: peaks with their times, the dose with amount and route.
    assert!(html.contains("<tr id=\"peak-nibp\"><td>Highest NIBP</td><td>186/112 (137) mmHg</td><td>09:50:00</td></tr>"));
    assert!(html
        .contains("<tr id=\"peak-hr\"><td>Highest HR</td><td>128 /min</td><td>09:45:00</td></tr>"));
    assert!(html
        .contains("<tr id=\"peak-spo2\"><td>Lowest SpO2</td><td>88 %</td><td>09:40:00</td></tr>"));
    assert!(html.contains("<tr class=\"dose\"><td>1</td><td>09:35:00</td><td>0.5 mg/kg</td><td>im</td><td>racemic ketamine</td></tr>"));
    // The vitals table: every 5 min of the session (09:30:00.5 to 10:09:50.5)
    // and every NIBP, sharing the row of the interval it was taken with.
    let rows: Vec<&str> = html
        .lines()
        .filter(|l| {
            l.starts_with("<tr class=\"interval\">") || l.starts_with("<tr class=\"nibp\">")
        })
        .collect();
    assert_eq!(rows.len(), 8, "{rows:#?}");
    assert!(html.contains("<h2>Vitals every 5 min, and every NIBP</h2>"));
    assert!(
        rows[0].starts_with(
            "<tr class=\"interval\"><td>09:30:01</td><td>72</td><td>71</td><td>97</td><td></td>"
        ),
        "{}",
        rows[0]
    );
    assert!(rows.contains(&"<tr class=\"interval\"><td>09:40:00</td><td>70</td><td>69</td><td>88</td><td>128/78 (93)</td></tr>"), "{rows:#?}");
    assert!(rows.contains(&"<tr class=\"interval\"><td>09:50:00</td><td>72</td><td>71</td><td>97</td><td>186/112 (137)</td></tr>"), "{rows:#?}");
    // The NIBP before the session started is not in the session's table.
    assert!(!rows.iter().any(|r| r.contains("122/78 (93)")), "{rows:#?}");

    // The alarm list names each alarm as the displays do, the id in the
    // cell's title: one row per episode, none showing a raw id.
    let alarm_rows: Vec<&str> = html
        .lines()
        .filter(|l| l.starts_with("<tr class=\"alarm prio-"))
        .collect();
    assert_eq!(alarm_rows.len(), a.episodes.len(), "{alarm_rows:#?}");
    for (row, e) in alarm_rows.iter().zip(&a.episodes) {
        let cell = format!("<td title=\"{}\">", e.key);
        let name = row
            .split_once(&cell)
            .and_then(|(_, rest)| rest.split_once("</td>"))
            .map(|(name, _)| name)
            .unwrap_or_else(|| panic!("{cell} in {row}"));
        assert_ne!(name, e.key, "{row}");
        assert!(!name.contains('_') && !name.contains('.'), "{row}");
    }
    for (id, name) in [
        ("spo2.low", "SpO2 low"),
        ("hr.high", "HR high"),
        ("spo2.sensor_off", "SpO2 sensor off"),
        ("nibp.high", "NIBP high"),
        ("nibp_sys.baseline_rise", "NIBP systolic above baseline"),
    ] {
        let cell = format!("<td title=\"{id}\">{name}</td>");
        assert!(
            alarm_rows.iter().any(|r| r.contains(&cell)),
            "{cell} in {alarm_rows:#?}"
        );
    }
}

/// The report's interval is configurable.
#[test]
fn report_vitals_table_takes_the_interval() {
    let dir = temp_dir("report-interval");
    let vrec = scenario_recording(&dir);
    let html_path = dir.join("session.html");
    let options = ReportOptions {
        interval: Duration::from_secs(600),
        ..ReportOptions::default()
    };
    report::report(&vrec, &html_path, &options).unwrap();
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("<h2>Vitals every 10 min, and every NIBP</h2>"));
    let times: Vec<&str> = html
        .lines()
        .filter(|l| {
            l.starts_with("<tr class=\"interval\">") || l.starts_with("<tr class=\"nibp\">")
        })
        .map(|l| &l[l.find("<td>").unwrap() + 4..][..8])
        .collect();
    assert_eq!(
        times,
        [
            "09:30:01", "09:35:00", "09:40:00", "09:45:00", "09:50:00", "09:55:00", "10:00:00",
            "10:05:00"
        ]
    );
}

/// PNG decoding for the render check (8-bit RGB or RGBA, not interlaced).
fn decode_png(data: &[u8]) -> (u32, u32, Vec<[u8; 3]>) {
    assert_eq!(&data[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let mut pos = 8;
    let (mut width, mut height, mut channels) = (0u32, 0u32, 0usize);
    let mut idat = Vec::new();
    while pos + 8 <= data.len() {
        let len = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &data[pos + 4..pos + 8];
        let body = &data[pos + 8..pos + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(body[0..4].try_into().unwrap());
                height = u32::from_be_bytes(body[4..8].try_into().unwrap());
                assert_eq!(body[8], 8, "bit depth");
                channels = match body[9] {
                    2 => 3,
                    6 => 4,
                    c => panic!("PNG colour type {c}"),
                };
                assert_eq!(body[12], 0, "not interlaced");
            }
            b"IDAT" => idat.extend_from_slice(body),
            b"IEND" => break,
            _ => {}
        }
        pos += 12 + len;
    }
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&idat).expect("inflate");
    let stride = width as usize * channels;
    let mut prev = vec![0u8; stride];
    let mut pixels = Vec::with_capacity(width as usize * height as usize);
    for row in raw.chunks(stride + 1).take(height as usize) {
        let (filter, line) = (row[0], &row[1..]);
        let mut cur = line.to_vec();
        for i in 0..stride {
            let a = if i >= channels { cur[i - channels] } else { 0 };
            let b = prev[i];
            let c = if i >= channels { prev[i - channels] } else { 0 };
            let add = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("PNG filter {f}"),
            };
            cur[i] = cur[i].wrapping_add(add);
        }
        pixels.extend(cur.chunks(channels).map(|p| [p[0], p[1], p[2]]));
        prev = cur;
    }
    (width, height, pixels)
}

fn rgb(hex: &str) -> [u8; 3] {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap();
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(p) = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        }) {
            return p;
        }
    }
    panic!(
        "the report render check needs headless Chromium, which is not installed: \
         run `apt-get install -y chromium` (scripts/test installs it when missing)"
    );
}

/// Opens the report in headless Chromium, takes a screenshot and checks the
/// chart was drawn: the colours of the series, the alarm priorities and the
/// dose marker are on the page. The screenshot stays under the target
/// directory (`target/tmp/report-render/session.png`) to be looked at.
#[test]
fn report_renders_in_headless_chromium() {
    let browser = chromium();
    let dir = temp_dir("render");
    let vrec = scenario_recording(&dir);
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-render");
    std::fs::create_dir_all(&out).unwrap();
    let html = out.join("session.html");
    let png = out.join("session.png");
    let _ = std::fs::remove_file(&png);
    report::report(&vrec, &html, &ReportOptions::default()).unwrap();

    run_chromium(
        &browser,
        &dir,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1400,1600".into(),
        ],
        &html,
    );
    let data = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot: {e}"));
    let (w, h, pixels) = decode_png(&data);
    assert_eq!((w, h), (1400, 1600));
    check_chart_colours(&pixels, 1.0);
}

fn near(p: &[u8; 3], c: [u8; 3]) -> bool {
    p.iter()
        .zip(c)
        .all(|(a, b)| (i16::from(*a) - i16::from(b)).abs() <= 24)
}

pub(crate) fn colour_count(pixels: &[[u8; 3]], hex: &str) -> usize {
    pixels.iter().filter(|p| near(p, rgb(hex))).count()
}

/// The chart is drawn: its series, alarm and dose colours are on the page
/// (`scale`: the chart's size against the 1400-pixel-wide screenshot's).
fn check_chart_colours(pixels: &[[u8; 3]], scale: f64) {
    let non_white = pixels.iter().filter(|p| p.iter().any(|c| *c < 235)).count();
    assert!(
        non_white > pixels.len() / 20,
        "the page is nearly blank: {non_white} drawn pixels"
    );
    for (what, hex, min) in [
        ("heart rate line", colour::HR, 300),
        ("SpO2 line", colour::SPO2, 300),
        ("NIBP bars", colour::NIBP, 100),
        ("high priority alarm", colour::HIGH, 100),
        ("medium priority alarm", colour::MEDIUM, 100),
        ("low priority alarm", colour::LOW, 50),
        ("dose marker", colour::DOSE, 50),
    ] {
        let min = ((min as f64) * scale).ceil() as usize;
        let n = colour_count(pixels, hex);
        assert!(
            n >= min,
            "{what} ({hex}): {n} pixels, expected at least {min}"
        );
    }
}

/// Runs headless Chromium on a page with `args` and waits for it.
fn run_chromium(browser: &Path, dir: &Path, args: &[String], html: &Path) {
    let profile = dir.join("chromium-profile");
    let mut child = Process::new(browser)
        .args(crate::util::browser::HEADLESS)
        .arg("--hide-scrollbars")
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", html.canonicalize().unwrap().display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(status.success(), "chromium failed: {status}\n{stderr}");
}

/// pdftoppm (poppler-utils), to look at printed pages.
fn pdftoppm() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("pdftoppm"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "the report print check needs pdftoppm, which is not installed: \
             run `apt-get install -y poppler-utils` (scripts/test installs it when missing)"
        )
    })
}

/// A page printed at 100 dpi: width, height and pixels.
pub(crate) type Printed = (u32, u32, Vec<[u8; 3]>);

/// Prints the report of `vrec` to PDF in headless Chromium on Letter and on
/// A4, and turns the pages into PNGs (kept under `target/tmp/<tag>/` to be
/// looked at): each paper's name and its pages, decoded.
pub(crate) fn printed_report(vrec: &Path, tag: &str) -> Vec<(&'static str, Vec<Printed>)> {
    let browser = chromium();
    let pdftoppm = pdftoppm();
    let dir = temp_dir(tag);
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(tag);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let html = out.join("session.html");
    report::report(vrec, &html, &ReportOptions::default()).unwrap();
    let page = std::fs::read_to_string(&html).unwrap();
    let mut printed = Vec::new();
    // Chromium's default paper is Letter; A4 as a site's print settings would.
    for (paper, style) in [("letter", ""), ("a4", "<style>@page { size: A4; }</style>")] {
        let variant = out.join(format!("session-{paper}.html"));
        std::fs::write(
            &variant,
            page.replace("</head>", &format!("{style}</head>")),
        )
        .unwrap();
        let pdf = out.join(format!("session-{paper}.pdf"));
        run_chromium(
            &browser,
            &dir,
            &[
                format!("--print-to-pdf={}", pdf.display()),
                "--no-pdf-header-footer".into(),
            ],
            &variant,
        );
        let prefix = out.join(paper);
        let status = Process::new(&pdftoppm)
            .args(["-r", "100", "-png"])
            .arg(&pdf)
            .arg(&prefix)
            .status()
            .expect("run pdftoppm");
        assert!(status.success(), "pdftoppm failed on {}", pdf.display());
        let mut pages: Vec<PathBuf> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{paper}-")) && n.ends_with(".png"))
            })
            .collect();
        pages.sort();
        let pages = pages
            .iter()
            .map(|p| decode_png(&std::fs::read(p).unwrap()))
            .collect();
        printed.push((paper, pages));
    }
    printed
}

/// A printed page is portrait Letter (8.5x11 in) or A4 (8.27x11.69 in) at
/// 100 dpi.
pub(crate) fn check_paper(paper: &str, (w, h, _): &Printed) {
    let (ew, eh) = if paper == "a4" {
        (827.0, 1169.0)
    } else {
        (850.0, 1100.0)
    };
    assert!(
        (f64::from(*w) - ew).abs() <= 2.0 && (f64::from(*h) - eh).abs() <= 2.0,
        "{paper}: a page of {w}x{h} pixels"
    );
}

/// None of the chart's `series` colours on `page`: the chart did not spill.
pub(crate) fn check_no_chart(paper: &str, page: &Printed, series: &[(&str, &str)]) {
    for (what, hex) in series {
        assert_eq!(
            colour_count(&page.2, hex),
            0,
            "{paper}: the chart's {what} spills onto a later page"
        );
    }
}

/// The header, summary and the whole chart are on the first page, the
/// tables on the second, and nothing of the chart spills over.
#[test]
fn report_prints_summary_and_charts_on_one_page_on_a4_and_letter() {
    let dir = temp_dir("print");
    let vrec = scenario_recording(&dir);
    for (paper, pages) in printed_report(&vrec, "report-print") {
        assert_eq!(pages.len(), 2, "{paper}: {} pages", pages.len());
        check_paper(paper, &pages[0]);
        // The chart printed at about 60 % of the screen's width, 100 dpi.
        check_chart_colours(&pages[0].2, 0.4);
        let second = &pages[1];
        assert!(
            second
                .2
                .iter()
                .filter(|p| p.iter().any(|c| *c < 160))
                .count()
                > 1000,
            "{paper}: the tables are on the second page"
        );
        check_no_chart(
            paper,
            second,
            &[
                ("heart rate line", colour::HR),
                ("SpO2 line", colour::SPO2),
                ("dose marker", colour::DOSE),
            ],
        );
    }
}

#[test]
fn the_cli_imports_exports_and_reports_and_rejects_bad_rows() {
    let dir = temp_dir("cli");
    let vigil = env!("CARGO_BIN_EXE_vigil");
    let csv = dir.join("s.csv");
    std::fs::write(
        &csv,
        "time,vital,value\n0,hr,72\n1,spo2,97\n2,nibp,120/80/93\n",
    )
    .unwrap();
    let vrec = dir.join("s.vrec");
    let run = |args: &[&str]| {
        Process::new(vigil)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let p = |p: &Path| p.display().to_string();
    let out = run(&[
        "record",
        "import",
        &p(&csv),
        "-o",
        &p(&vrec),
        "--start",
        START,
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = run(&["record", "export", &p(&vrec), "--format", "jsonl"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("\"type\":\"reading\""))
            .count(),
        5
    );
    let html = dir.join("s.html");
    let out = run(&[
        "report",
        &p(&vrec),
        "-o",
        &p(&html),
        "--utc-offset",
        "+01:00",
    ]);
    assert!(out.status.success(), "{out:?}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("10:30:00 (clock time, UTC+01:00)"));
    // Without --utc-offset: the system's zone (here TZ, as a POSIX rule),
    // through `record report` too.
    let out = Process::new(vigil)
        .args(["record", "report", &p(&vrec), "-o", &p(&html)])
        .env("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("10:30:00 (clock time, CET, UTC+01:00)"),
        "{page}"
    );

    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "time,vital,value\n0,hr,72\n1,hr,fast\n-2,spo2,97\n3,temp,37\n",
    )
    .unwrap();
    let out = run(&[
        "record",
        "import",
        &p(&bad),
        "-o",
        &p(&dir.join("bad.vrec")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    for needle in [
        "line 3: value `fast`",
        "line 4: time `-2`",
        "line 5: vital `temp`",
    ] {
        assert!(err.contains(needle), "{needle} in {err}");
    }
    assert!(!dir.join("bad.vrec").exists());
}

#[test]
fn a_dose_on_a_short_baseline_is_exported_and_reported_as_incomplete() {
    // Ten seconds of HR and one NIBP after start_session, then the dose.
    let mut csv = "time,vital,value\n".to_owned();
    for s in 1..=10 {
        csv.push_str(&format!("{s},hr,72\n"));
    }
    csv.push_str("5,nibp,124/80/95\n20,hr,75\n");
    let dir = temp_dir("baseline-incomplete");
    let records = import::build(&import::parse_csv(&csv).unwrap(), &options()).unwrap();
    let records = with_commands(
        records,
        &[
            (
                0.5,
                Command::StartSession {
                    session: ShortText::new("KT-0043"),
                },
            ),
            (
                11.0,
                Command::Dose {
                    route: ShortText::new("im"),
                    amount: None,
                    note: ShortText::empty(),
                },
            ),
        ],
    );
    let vrec = dir.join("short.vrec");
    file::write_all(&vrec, &records).unwrap();
    let mut out = Vec::new();
    export::export(&vrec, Format::Csv, &mut out).unwrap();
    let rows = csv_rows(&String::from_utf8(out).unwrap());
    let col = |name: &str| export::COLUMNS.iter().position(|c| *c == name).unwrap();
    let advisory: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r[col("kind")] == "baseline_incomplete")
        .collect();
    assert_eq!(advisory.len(), 1, "{rows:?}");
    assert_eq!(advisory[0][col("time")], "11.000");
    assert_eq!(
        advisory[0][col("detail")],
        "missing hr pr nibp_sys nibp_dia nibp_mean"
    );
    let html_path = dir.join("short.html");
    report::report(&vrec, &html_path, &ReportOptions::default()).unwrap();
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(
        html.contains("Baseline incomplete: no baseline for hr, pr, nibp_sys, nibp_dia, nibp_mean"),
        "the report says which baselines are missing"
    );
}
