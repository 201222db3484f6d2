//! `vigil record import`: builds a recording from a CSV of timed readings
//! (a chart transcribed by hand, another system's export, a test scenario),
//! so it can be replayed, reported on and tuned against like a live session.
//!
//! # Input
//!
//! CSV as RFC 4180 has it (read with the `csv` crate): fields holding a
//! comma, a quote or a line break are quoted, a quote inside doubled
//! (`"say ""hi"""`); lines may end in CRLF; a UTF-8 byte-order mark is
//! skipped. A header row names the columns, in any order (other columns are
//! ignored):
//!
//! | column | content |
//! |---|---|
//! | `time` | seconds since the session started, decimal (`0`, `12.5`) |
//! | `vital` | `hr`, `pr`, `spo2`, `nibp_sys`, `nibp_dia`, `nibp_mean`, `nibp`, `rr` or `etco2` |
//! | `value` | a number, or empty for none; for `nibp`: `sys/dia/mean` or `sys/dia` |
//! | `validity` | optional: a validity name (`valid`, `sensor_off`, `artifact`, ...); default `valid` (`unavailable` when the value is empty) |
//!
//! If there is a `type` column (as in `vigil record export` output), only
//! rows of type `reading` are read, so an export re-imports as it is.
//! Blank lines are skipped. Every bad row is reported with its line (where
//! the row starts) and the column at fault; a row may be shorter than the
//! header when it ends before optional columns only.
//!
//! # The recording
//!
//! - One vigil-line source; its bytes are made with the line encoder
//!   ([`crate::protocol::line::encode_measurement`]), so replay goes through
//!   the real decoder. The readings of one time form one chunk of bytes.
//! - NIBP components (`nibp_sys`, `nibp_dia`, `nibp_mean`) at the same time
//!   form one measurement; a missing component is unavailable. Each
//!   component keeps its own validity (systolic and diastolic valid with
//!   the mean missing or invalid is the commonest shape of real data): the
//!   line protocol carries a validity per component. Each measurement carries its device
//!   time (`at=`, whole seconds), so equal consecutive values still count
//!   as new measurements.
//! - The configuration given (or the built-in defaults) with its sources
//!   replaced by that one source (named after a vigil-line source of the
//!   configuration if it has one, else `import`, with its timeout).
//! - Metadata: site and bed from the configuration, `started` from the
//!   start time given (the Unix epoch by default).
//! - Timer ticks where the live daemon would have run its timers (the
//!   pipeline's own deadlines), so time-driven alarms (stale data, silence,
//!   ends after a delay) replay as they would have happened live.
//! - An end record at the last row's time.

use core::time::Duration;
use std::path::Path;
use std::time::SystemTime;

use crate::config::{self, Config, Link, ProtocolKind, SourceConfig};
use crate::pipeline::{Feed, Input, Journal, Pipeline};
use crate::protocol::line;
use crate::record::{file, Record, Timed};
use crate::time::Instant;
use crate::vitals::{DeviceTime, Measurement, Nibp, NibpMode, Sample, SourceId, Validity, Vital};

/// Errors importing a CSV.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input could not be read.
    #[error("reading {path}: {cause}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// The header lacks a required column.
    #[error(
        "line 1: the header has no `{0}` column (needed: time, vital, value; optional: validity)"
    )]
    MissingColumn(&'static str),
    /// The input holds no header.
    #[error("the CSV is empty: it needs a header row (time,vital,value,validity) and readings")]
    Empty,
    /// Rows that do not parse, each with its line number.
    #[error("{} bad row(s):\n{}", .0.len(), .0.join("\n"))]
    Rows(Vec<String>),
    /// No reading rows at all.
    #[error("the CSV holds no readings")]
    NoReadings,
    /// The configuration with the import source does not validate.
    #[error("the configuration is not usable for an import: {0}")]
    Config(String),
    /// Writing the recording failed.
    #[error(transparent)]
    File(#[from] file::FileError),
}

/// One value of one vital at one time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    /// The CSV line number (1 is the header).
    pub line: usize,
    /// Offset from the session start.
    pub time: Duration,
    /// What the row holds.
    pub value: RowValue,
}

/// The reading a row holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RowValue {
    /// A continuous vital or one NIBP component.
    Single(Vital, Sample),
    /// A whole NIBP measurement (`nibp` rows): systolic, diastolic, mean.
    Nibp([Sample; 3]),
}

fn parse_value(text: &str) -> Result<Option<f32>, String> {
    let t = text.trim();
    if t.is_empty() || t == "-" {
        return Ok(None);
    }
    match t.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(format!("value `{t}` is not a number")),
    }
}

fn sample(value: Option<f32>, validity: Option<Validity>) -> Result<Sample, String> {
    match (value, validity) {
        (Some(v), None | Some(Validity::Valid)) => Ok(Sample::valid(v)),
        (Some(v), Some(validity)) => Ok(Sample::new(v, validity)),
        (None, None) => Ok(Sample::missing(Validity::Unavailable)),
        (None, Some(Validity::Valid)) => {
            Err("an empty value cannot be valid: give a number or another validity".into())
        }
        (None, Some(validity)) => Ok(Sample::missing(validity)),
    }
}

/// The columns an import reads, by position in the header.
struct Columns {
    /// The header's names, trimmed and lower-cased.
    names: Vec<String>,
    time: usize,
    vital: usize,
    value: usize,
    validity: Option<usize>,
    kind: Option<usize>,
}

impl Columns {
    fn from_header(line: usize, header: &csv::StringRecord) -> Result<Columns, ImportError> {
        let names: Vec<String> = header
            .iter()
            .map(|s| s.trim().to_ascii_lowercase())
            .collect();
        let col = |name: &'static str| -> Result<Option<usize>, ImportError> {
            let mut at = names.iter().enumerate().filter(|(_, n)| *n == name);
            match (at.next(), at.next()) {
                (Some((first, _)), Some((second, _))) => Err(ImportError::Rows(vec![format!(
                    "line {line}: the header names `{name}` twice (columns {} and {}): keep one",
                    first + 1,
                    second + 1
                )])),
                (first, _) => Ok(first.map(|(i, _)| i)),
            }
        };
        let required = |name| col(name)?.ok_or(ImportError::MissingColumn(name));
        Ok(Columns {
            time: required("time")?,
            vital: required("vital")?,
            value: required("value")?,
            validity: col("validity")?,
            kind: col("type")?,
            names,
        })
    }

    /// Where column `i` is, for a message: `column 3, value`.
    fn describe(&self, i: usize) -> String {
        format!("column {}, {}", i + 1, self.names[i])
    }
}

/// Ends the input so that a quote still open at its end shows: when every
/// quote is closed this is a row of its own, else it lands inside the open
/// field. (CSV readers accept an unclosed quote and read the rest of the
/// file into it; an import would lose those rows without a word.)
const END_MARK: &str = "\n\u{0}end of input\u{0}\n";

/// Parses the CSV text into rows, sorted by time (stable: rows of one time
/// keep their order). Every bad row is reported, with its line and column.
pub fn parse_csv(text: &str) -> Result<Vec<Row>, ImportError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(std::io::Read::chain(text.as_bytes(), END_MARK.as_bytes()));
    let end_mark = END_MARK.trim_matches('\n');
    let mut lines = LineCounter {
        text: text.as_bytes(),
        byte: 0,
        line: 1,
    };
    let mut columns = None;
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let n = lines.at(record.position().map_or(0, |p| p.byte() as usize));
        if record.len() == 1 && &record[0] == end_mark {
            break;
        }
        if let Some(i) = record.iter().position(|f| f.contains(end_mark)) {
            let at = columns
                .as_ref()
                .filter(|c: &&Columns| i < c.names.len())
                .map_or(format!("column {}", i + 1), |c| c.describe(i));
            errors.push(format!(
                "line {n}: a quote opens a field ({at}) and nothing closes it: close it, or double a quote meant as text (\"\")"
            ));
            break;
        }
        if record.iter().all(|f| f.trim().is_empty()) && record.len() == 1 {
            continue;
        }
        let Some(cols) = &columns else {
            columns = Some(Columns::from_header(n, &record)?);
            continue;
        };
        let get = |i: usize| record.get(i).map(str::trim);
        if let Some(t) = cols.kind {
            if get(t) != Some("reading") {
                continue;
            }
        }
        let required = [cols.time, cols.vital, cols.value];
        if let Some(&missing) = required.iter().find(|&&i| i >= record.len()) {
            errors.push(format!(
                "line {n}: the row ends after {} field(s), before {} (a field is missing)",
                record.len(),
                cols.describe(missing)
            ));
            continue;
        }
        let fields = RowFields {
            time: get(cols.time).unwrap_or(""),
            vital: get(cols.vital).unwrap_or(""),
            value: get(cols.value).unwrap_or(""),
            validity: cols.validity.and_then(get),
        };
        match parse_row(n, fields) {
            Ok(r) => rows.push(r),
            Err((column, e)) => {
                let i = match column {
                    Column::Time => cols.time,
                    Column::Vital => cols.vital,
                    Column::Value => cols.value,
                    Column::Validity => cols.validity.unwrap_or(cols.value),
                };
                errors.push(format!("line {n}: {e} ({})", cols.describe(i)));
            }
        }
    }
    if !errors.is_empty() {
        return Err(ImportError::Rows(errors));
    }
    if columns.is_none() {
        return Err(ImportError::Empty);
    }
    if rows.is_empty() {
        return Err(ImportError::NoReadings);
    }
    rows.sort_by_key(|r| r.time);
    Ok(rows)
}

/// The line a record starts on. (The reader's own line count is off after
/// CRLF line ends and blank lines: a record's position is where the reader
/// began looking for it, before the line ends it skipped.)
struct LineCounter<'a> {
    text: &'a [u8],
    /// Counted up to here.
    byte: usize,
    /// The line of `byte`.
    line: usize,
}

impl LineCounter<'_> {
    /// The line of the first byte at or after `start` that is not a line end
    /// (offsets only grow from one record to the next).
    fn at(&mut self, start: usize) -> usize {
        let text = self.text;
        let mut end = start.clamp(self.byte, text.len());
        while end < text.len() && matches!(text[end], b'\r' | b'\n') {
            end += 1;
        }
        self.line += text[self.byte..end].iter().filter(|&&b| b == b'\n').count();
        self.byte = end;
        self.line
    }
}

/// The fields of one row that an import reads, trimmed.
struct RowFields<'a> {
    time: &'a str,
    vital: &'a str,
    value: &'a str,
    validity: Option<&'a str>,
}

/// The column a row's error is about.
#[derive(Clone, Copy)]
enum Column {
    Time,
    Vital,
    Value,
    Validity,
}

fn parse_row(line: usize, fields: RowFields) -> Result<Row, (Column, String)> {
    let RowFields {
        time,
        vital,
        value,
        validity,
    } = fields;
    let at = |column: Column| move |e: String| (column, e);
    let secs: f64 = time
        .parse()
        .ok()
        .filter(|t: &f64| t.is_finite() && *t >= 0.0 && *t < 1e9)
        .ok_or_else(|| {
            (
                Column::Time,
                format!("time `{time}` is not a number of seconds from the start (e.g. 12.5)"),
            )
        })?;
    let time = Duration::from_nanos((secs * 1e9).round() as u64);
    let validity = match validity.unwrap_or("") {
        "" => None,
        v => Some(v.parse::<Validity>().map_err(|_| {
            let names: Vec<&str> = Validity::ALL.iter().map(|v| v.key()).collect();
            (
                Column::Validity,
                format!("validity `{v}` is not one of {}", names.join(", ")),
            )
        })?),
    };
    let value = if vital.eq_ignore_ascii_case("nibp") {
        let parts: Vec<&str> = value.split('/').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err((
                Column::Value,
                format!("nibp value `{value}` must be sys/dia/mean or sys/dia (e.g. 124/80/95)"),
            ));
        }
        let mut s = [Sample::missing(Validity::Unavailable); 3];
        let mut any = false;
        for (slot, part) in s.iter_mut().zip(&parts) {
            let v = parse_value(part).map_err(|e| (Column::Value, format!("nibp {e}")))?;
            any |= v.is_some();
            *slot = match (v, validity) {
                (None, Some(Validity::Valid) | None) => Sample::missing(Validity::Unavailable),
                _ => sample(v, validity).map_err(at(Column::Validity))?,
            };
        }
        if !any && validity.is_none_or(|v| v.is_valid()) {
            return Err((
                Column::Value,
                "an nibp row needs at least one number, or a validity".into(),
            ));
        }
        RowValue::Nibp(s)
    } else {
        let v: Vital = vital.to_ascii_lowercase().parse().map_err(|_| {
            (Column::Vital, format!(
                "vital `{vital}` is not one of hr, pr, spo2, nibp_sys, nibp_dia, nibp_mean, nibp, rr, etco2"
            ))
        })?;
        let number = parse_value(value).map_err(at(Column::Value))?;
        RowValue::Single(v, sample(number, validity).map_err(at(Column::Validity))?)
    };
    Ok(Row { line, time, value })
}

/// Readings of one time, ready to encode.
fn group(rows: &[Row]) -> Result<Vec<(Duration, Vec<Measurement>)>, ImportError> {
    let mut out: Vec<(Duration, Vec<Measurement>)> = Vec::new();
    let mut errors = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let time = rows[i].time;
        let mut j = i;
        let mut measurements = Vec::new();
        // NIBP components of this time, with the line that gave each.
        let mut nibp: [Option<(usize, Sample)>; 3] = [None; 3];
        let mut nibp_first_line = None;
        while j < rows.len() && rows[j].time == time {
            let r = rows[j];
            match r.value {
                RowValue::Single(v, s) if v.is_continuous() => {
                    measurements.extend(Measurement::of_continuous(v, s));
                }
                RowValue::Single(v, s) => {
                    let k = v.index() - Vital::NibpSystolic.index();
                    if let Some((prev, _)) = nibp[k] {
                        errors.push(format!(
                            "line {}: a second {} at the same time as line {prev}",
                            r.line,
                            v.key()
                        ));
                    }
                    nibp[k] = Some((r.line, s));
                    nibp_first_line.get_or_insert(r.line);
                }
                RowValue::Nibp(parts) => {
                    for (k, s) in parts.into_iter().enumerate() {
                        if let Some((prev, _)) = nibp[k] {
                            errors.push(format!(
                                "line {}: a second NIBP measurement at the same time as line {prev}",
                                r.line
                            ));
                            break;
                        }
                        nibp[k] = Some((r.line, s));
                    }
                    nibp_first_line.get_or_insert(r.line);
                }
            }
            j += 1;
        }
        if nibp_first_line.is_some() {
            let parts = nibp.map(|p| {
                p.map(|(_, s)| s)
                    .unwrap_or(Sample::missing(Validity::Unavailable))
            });
            measurements.push(Measurement::Nibp(Nibp {
                systolic: parts[0],
                diastolic: parts[1],
                mean: parts[2],
                measured_at: None,
                mode: NibpMode::Unknown,
            }));
        }
        out.push((time, measurements));
        i = j;
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ImportError::Rows(errors))
    }
}

/// What an import is built with.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The configuration (its sources are replaced by the import source).
    pub config: Config,
    /// The wall-clock time of the session start.
    pub start: SystemTime,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            config: Config::default(),
            start: SystemTime::UNIX_EPOCH,
        }
    }
}

/// The configuration of an import: `cfg` with one vigil-line source.
pub fn import_config(cfg: &Config) -> Result<Config, ImportError> {
    let template = cfg
        .sources
        .iter()
        .find(|s| s.protocol == ProtocolKind::Line);
    let source = SourceConfig {
        name: template.map_or("import".to_owned(), |s| s.name.clone()),
        protocol: ProtocolKind::Line,
        // Never opened: replay feeds the recorded bytes.
        link: template.map_or(
            Link::Tcp {
                address: "localhost:0".into(),
            },
            |s| s.link.clone(),
        ),
        timeout: template.map_or(Duration::from_secs(10), |s| s.timeout),
        vitals: crate::vitals::Vital::ALL.to_vec(),
    };
    let mut out = cfg.clone();
    out.sources = vec![source];
    // Validate the way a replay will read it.
    config::parse(&config::render(&out), "import").map_err(|e| ImportError::Config(e.to_string()))
}

/// Builds the records of a recording from parsed rows.
pub fn build(rows: &[Row], options: &ImportOptions) -> Result<Vec<Timed>, ImportError> {
    let cfg = import_config(&options.config)?;
    let groups = group(rows)?;
    let start_unix = options
        .start
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let meta = vec![
        (
            "vigil_version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
        ("site".to_owned(), cfg.site.clone()),
        ("bed".to_owned(), cfg.bed.clone()),
        ("started".to_owned(), crate::time::rfc3339(options.start)),
        ("speed".to_owned(), "1".to_owned()),
        ("imported".to_owned(), "csv".to_owned()),
    ];
    let mut records = vec![
        Timed {
            at: Instant::ZERO,
            record: Record::Meta(meta),
        },
        Timed {
            at: Instant::ZERO,
            record: Record::Config(config::render(&cfg)),
        },
    ];
    // Drive a pipeline as the daemon would, to place the timer ticks.
    let session_cfg = crate::replay::Session {
        meta: Vec::new(),
        config: cfg.clone(),
        start: Instant::ZERO,
        steps: Vec::new(),
        end: None,
        corrupt_tail: None,
        size: 0,
    };
    let mut pipeline = crate::replay::pipeline(&session_cfg, &cfg);
    let source = SourceId(0);
    let mut first = true;
    let mut end = Instant::ZERO;
    for (time, measurements) in groups {
        let at = Instant::ZERO + time;
        run_timers(&mut pipeline, at, false, &mut records);
        let mut data = Vec::new();
        if first {
            line::encode_header(&mut data);
            first = false;
        }
        let device_time = DeviceTime(start_unix + time.as_secs() as i64);
        for m in measurements {
            let m = match m {
                Measurement::Nibp(n) => Measurement::Nibp(Nibp {
                    measured_at: Some(device_time),
                    ..n
                }),
                m => m,
            };
            line::encode_measurement(&m, None, &mut data);
        }
        let input = Input::Bytes { source, data };
        let _ = pipeline.feed(&mut records, at, Feed::Input(&input));
        while pipeline.poll_event().is_some() {}
        end = at;
    }
    run_timers(&mut pipeline, end, true, &mut records);
    records.push(Timed {
        at: end,
        record: Record::End(vec![(
            "stopped".to_owned(),
            crate::time::rfc3339(options.start + end.since_origin()),
        )]),
    });
    Ok(records)
}

/// The records an import builds, as the pipeline's journal: what the
/// recorder would have written live.
impl Journal<Config> for Vec<Timed> {
    fn input(&mut self, at: Instant, input: &Input) {
        self.push(Timed {
            at,
            record: Record::Input(input.clone()),
        });
    }

    fn settings(&mut self, at: Instant, config: &Config) {
        self.push(Timed {
            at,
            record: Record::Config(config::render(config)),
        });
    }
}

/// Runs the pipeline's timers due before `until` (or at it, when
/// `inclusive`), recording a tick for each, as the daemon's driver loop does.
fn run_timers(p: &mut Pipeline, until: Instant, inclusive: bool, records: &mut Vec<Timed>) {
    let mut last = None;
    while let Some(t) = p.poll_timeout() {
        let due = if inclusive { t <= until } else { t < until };
        // A deadline that does not move on would loop forever.
        if !due || last.is_some_and(|l| t <= l) {
            break;
        }
        let _ = p.feed(records, t, Feed::<Config>::Input(&Input::Tick));
        while p.poll_event().is_some() {}
        last = Some(t);
    }
}

/// Reads a CSV file (`-` for standard input) and writes a recording; returns
/// the number of rows read.
pub fn import(csv: &Path, out: &Path, options: &ImportOptions) -> Result<usize, ImportError> {
    let text = if csv == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|source| {
            ImportError::Read {
                path: "standard input".into(),
                cause: source,
            }
        })?;
        s
    } else {
        std::fs::read_to_string(csv).map_err(|source| ImportError::Read {
            path: csv.display().to_string(),
            cause: source,
        })?
    };
    let rows = parse_csv(&text)?;
    let records = build(&rows, options)?;
    file::write_all(out, &records)?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        parse_csv(text).unwrap_err().to_string()
    }

    #[test]
    fn quoted_fields_keep_commas_quotes_and_line_breaks() {
        // A note column (ignored) with a comma, doubled quotes and a line
        // break inside quotes; quoted values are read like plain ones.
        let rows = parse_csv(
            "time,vital,value,note\n1,hr,72,\"calm, \"\"asleep\"\"\"\n\"2\",\"spo2\",\"97\",\"moved\nthe probe\"\n3,hr,70,\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1].value,
            RowValue::Single(Vital::SpO2, Sample::valid(97.0))
        );
        // The row after a two-line field starts on line 5.
        assert_eq!((rows[1].line, rows[2].line), (3, 5));
        assert_eq!(
            rows[2].value,
            RowValue::Single(Vital::HeartRate, Sample::valid(70.0))
        );
    }

    #[test]
    fn crlf_a_bom_and_blank_lines_are_read() {
        let rows =
            parse_csv("\u{feff}time,vital,value\r\n\r\n0,hr,72\r\n  \r\n1,hr,73\r\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].line, rows[1].line), (3, 5));
        assert_eq!(
            rows[1].value,
            RowValue::Single(Vital::HeartRate, Sample::valid(73.0))
        );
        // A field with a CR line end is not a value with a CR in it.
        assert!(parse_csv("time,vital,value\r\n0,hr,72\r").is_ok());
    }

    #[test]
    fn a_quote_left_open_is_reported_where_it_opens() {
        // Without the check, rows 3 and 4 would vanish into the note.
        let text = error("time,vital,value,note\n1,hr,72,\"moved\n2,hr,73,\n3,hr,74,\n");
        assert!(
            text.contains("line 2: a quote opens a field (column 4, note) and nothing closes it"),
            "{text}"
        );
        let text = error("time,vital,value\n\"open");
        assert!(
            text.contains("line 2: a quote opens a field (column 1, time)"),
            "{text}"
        );
    }

    #[test]
    fn errors_name_the_line_and_the_column() {
        let text = error("value,vital,time,validity\n72,hr,x,\n,hr,1,valid\n72,bp,2,\n");
        for needle in [
            "line 2: time `x` is not a number of seconds from the start (e.g. 12.5) (column 3, time)",
            "line 3: an empty value cannot be valid: give a number or another validity (column 4, validity)",
            "line 4: vital `bp` is not one of",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert!(text.ends_with("(column 2, vital)"), "{text}");
        // A short row: the required field it lacks, by name and position.
        let text = error("time,vital,value,validity\n1,hr,72\n2,hr\n");
        assert!(
            text.contains("line 3: the row ends after 2 field(s), before column 3, value"),
            "{text}"
        );
        assert!(
            !text.contains("line 2"),
            "a row without its optional validity is whole"
        );
        let text = error("time,vital,value,Time\n1,hr,72,2\n");
        assert!(
            text.contains("line 1: the header names `time` twice (columns 1 and 4)"),
            "{text}"
        );
    }

    #[test]
    fn rows_parse_and_sort_by_time() {
        let rows = parse_csv(
            "vital,time,value,validity,extra\nspo2,2,97,,x\nhr,1.5,72\nnibp,3,124/80/95,\nspo2,4,,sensor_off\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].time, Duration::from_millis(1500));
        assert_eq!(rows[0].line, 3);
        assert_eq!(
            rows[1].value,
            RowValue::Single(Vital::SpO2, Sample::valid(97.0))
        );
        assert!(matches!(rows[2].value, RowValue::Nibp(p) if p[2].get() == Some(95.0)));
        assert!(
            matches!(rows[3].value, RowValue::Single(Vital::SpO2, s) if s.validity == Validity::SensorOff)
        );
    }

    #[test]
    fn breathing_rows_import_as_their_own_vitals() {
        let rows = parse_csv("time,vital,value,validity\n1,rr,14\n1,etco2,38.5\n2,rr,,\n").unwrap();
        let groups = group(&rows).unwrap();
        assert_eq!(
            groups[0].1,
            vec![
                Measurement::RespRate(Sample::valid(14.0)),
                Measurement::EtCo2(Sample::valid(38.5))
            ]
        );
        assert!(matches!(
            groups[1].1[..],
            [Measurement::RespRate(s)] if s.validity == Validity::Unavailable
        ));
    }

    #[test]
    fn bad_rows_are_all_reported_with_line_numbers() {
        let err = parse_csv(
            "time,vital,value,validity\n1,hr,72\nx,hr,72\n2,bp,1\n3,spo2,abc\n4,hr,,valid\n5,hr,70,wobbly\n6,nibp,120\n",
        )
        .unwrap_err();
        let text = err.to_string();
        for n in 3..=8 {
            assert!(text.contains(&format!("line {n}:")), "{text}");
        }
        assert!(!text.contains("line 2:"), "{text}");
        assert!(matches!(
            parse_csv("time,value\n1,2\n"),
            Err(ImportError::MissingColumn("vital"))
        ));
        assert!(matches!(parse_csv(""), Err(ImportError::Empty)));
        assert!(matches!(
            parse_csv("time,vital,value\n"),
            Err(ImportError::NoReadings)
        ));
    }

    #[test]
    fn nibp_components_of_one_time_make_one_measurement() {
        let rows = parse_csv(
            "time,vital,value\n60,nibp_sys,124\n60,nibp_dia,80\n60,nibp_mean,95\n61,hr,70\n",
        )
        .unwrap();
        let groups = group(&rows).unwrap();
        assert_eq!(groups.len(), 2);
        let Measurement::Nibp(n) = groups[0].1[0] else {
            panic!("{groups:?}")
        };
        assert_eq!(
            (n.systolic.get(), n.diastolic.get(), n.mean.get()),
            (Some(124.0), Some(80.0), Some(95.0))
        );
        let dup = parse_csv("time,vital,value\n60,nibp_sys,124\n60,nibp_sys,125\n").unwrap();
        assert!(group(&dup).unwrap_err().to_string().contains("line 3"));
        // Components of one time keep their own validities.
        let mixed = parse_csv(
            "time,vital,value,validity\n60,nibp_sys,124,\n60,nibp_dia,80,artifact\n60,nibp_mean,,invalid\n",
        )
        .unwrap();
        let groups = group(&mixed).unwrap();
        let Measurement::Nibp(n) = groups[0].1[0] else {
            panic!("{groups:?}")
        };
        assert_eq!(
            [n.systolic, n.diastolic, n.mean].map(|s| s.validity),
            [Validity::Valid, Validity::Artifact, Validity::Invalid]
        );
    }

    #[test]
    fn the_recording_holds_line_bytes_ticks_and_an_end() {
        let rows = parse_csv("time,vital,value\n0,hr,72\n1,hr,73\n30,hr,74\n").unwrap();
        let records = build(&rows, &ImportOptions::default()).unwrap();
        let bytes: Vec<String> = records
            .iter()
            .filter_map(|r| match &r.record {
                Record::Input(Input::Bytes { data, .. }) => {
                    Some(String::from_utf8(data.clone()).unwrap())
                }
                _ => None,
            })
            .collect();
        assert_eq!(bytes, ["vigil-line 1\nhr 72\n", "hr 73\n", "hr 74\n"]);
        // The 29 s gap passes the 10 s stale and silence deadlines: ticks in between.
        assert!(records
            .iter()
            .any(|r| matches!(r.record, Record::Input(Input::Tick))
                && r.at > Instant::from_secs(1)
                && r.at < Instant::from_secs(30)));
        assert!(matches!(records.last().unwrap().record, Record::End(_)));
        assert!(records.windows(2).all(|w| w[0].at <= w[1].at), "time order");
    }
}
