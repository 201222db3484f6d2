//! `vigil record export --format fhir|hl7`: the chart exports of the
//! scripted 40-minute session of `record_tools` (session KT-0042 from 0.5 s
//! to 2390.5 s, NIBP every 5 minutes, SpO2 sensor off 1500-1529 s),
//! validated against the published FHIR R4 JSON schema and parsed back
//! with an independent HL7 v2 parser.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use vigil::record::chart::{Chart, Device, Point, Sampling, Value as ChartValue};
use vigil::record::export::{export_chart, parse_rfc3339, ChartFormat};
use vigil::record::import::ImportOptions;
use vigil::record::{hl7, mllp};
use vigil::vitals::{Sample, Validity, Vital};

use crate::record_tools::{scenario_recording_with, START};
use crate::util::daemon::temp_dir;

const SESSION: &str = "KT-0042";

fn generated() -> SystemTime {
    parse_rfc3339("2026-03-01T10:15:00Z").unwrap()
}

fn recording(dir: &Path, site: &str, bed: &str) -> PathBuf {
    let mut options = ImportOptions {
        start: parse_rfc3339(START).unwrap(),
        ..ImportOptions::default()
    };
    options.config.site = site.to_owned();
    options.config.bed = bed.to_owned();
    scenario_recording_with(dir, &options)
}

fn export(path: &Path, format: ChartFormat, sampling: Sampling) -> (usize, String) {
    let mut out = Vec::new();
    let n = export_chart(path, format, sampling, generated(), &mut out).unwrap();
    (n, String::from_utf8(out).unwrap())
}

// ---------------------------------------------------------------- FHIR

/// The FHIR R4 schema subset in tests/fixtures/fhir (see its README).
fn fhir_schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fhir/fhir-r4-bundle-observation.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the FHIR schema compiles")
}

fn schema_errors(v: &jsonschema::Validator, value: &Value) -> Vec<String> {
    v.iter_errors(value).map(|e| e.to_string()).collect()
}

/// Every object key anywhere in the document.
fn keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                keys(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
        _ => {}
    }
}

fn codes(concept: &Value) -> Vec<(String, String)> {
    concept["coding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["system"].as_str().unwrap().to_owned(),
                c["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn observations(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect()
}

fn first_code(o: &Value) -> &str {
    o["code"]["coding"][0]["code"].as_str().unwrap()
}

#[test]
fn fhir_bundle_is_valid_r4_with_vital_signs_codes_units_and_no_names() {
    let dir = temp_dir("chart-fhir");
    let path = recording(&dir, "north-clinic", "bed-3");
    let (n, text) = export(&path, ChartFormat::Fhir, Sampling::default());
    let bundle: Value = serde_json::from_str(&text).unwrap();
    let schema = fhir_schema();
    let errors = schema_errors(&schema, &bundle);
    assert!(
        errors.is_empty(),
        "schema violations:\n{}",
        errors.join("\n")
    );
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    assert_eq!(bundle["timestamp"], "2026-03-01T10:15:00.000Z");
    let obs = observations(&bundle);
    assert_eq!(obs.len(), n);

    // Default interval 5 min over 0.5-2390.5 s: intervals 0..=7 for each
    // continuous vital; NIBP at 300, 600, ..., 2100 s (the one at 0 s is
    // before the session started).
    let count = |code: &str| obs.iter().filter(|o| first_code(o) == code).count();
    assert_eq!(count("8867-4"), 8, "heart rate");
    assert_eq!(count("8889-8"), 8, "pulse rate");
    assert_eq!(count("2708-6"), 8, "SpO2");
    assert_eq!(count("85354-9"), 7, "blood pressure panels");
    assert_eq!(obs.len(), 31);

    let start = parse_rfc3339(START).unwrap();
    let loinc = "http://loinc.org".to_owned();
    let mdc = "urn:iso:std:iso:11073:10101".to_owned();
    let mut last = start;
    for o in &obs {
        assert_eq!(o["resourceType"], "Observation");
        assert_eq!(o["status"], "final");
        assert_eq!(
            codes(&o["category"][0]),
            [(
                "http://terminology.hl7.org/CodeSystem/observation-category".to_owned(),
                "vital-signs".to_owned()
            )]
        );
        assert_eq!(o["subject"]["identifier"]["value"], SESSION);
        assert_eq!(o["subject"]["identifier"]["system"], "urn:vigil:session");
        let device = o["device"]["display"].as_str().unwrap();
        assert!(
            device.contains("north-clinic") && device.contains("bed-3"),
            "{device}"
        );
        let when = parse_rfc3339(o["effectiveDateTime"].as_str().unwrap()).unwrap();
        assert!(when >= last, "time order");
        assert!(when > start && when < start + Duration::from_secs(2391));
        last = when;
        let code = codes(&o["code"]);
        let profile = o["meta"]["profile"][0].as_str().unwrap();
        let quantity = &o["valueQuantity"];
        match first_code(o) {
            "8867-4" => {
                assert_eq!(
                    code,
                    [
                        (loinc.clone(), "8867-4".into()),
                        (mdc.clone(), "147842".into())
                    ]
                );
                assert!(profile.ends_with("/heartrate"));
                assert_eq!(quantity["code"], "/min");
                assert_eq!(quantity["system"], "http://unitsofmeasure.org");
            }
            "8889-8" => {
                assert_eq!(
                    code,
                    [
                        (loinc.clone(), "8889-8".into()),
                        (mdc.clone(), "149530".into())
                    ]
                );
                assert_eq!(quantity["code"], "/min");
            }
            "2708-6" => {
                assert_eq!(
                    code,
                    [
                        (loinc.clone(), "2708-6".into()),
                        (loinc.clone(), "59408-5".into()),
                        (mdc.clone(), "150456".into())
                    ]
                );
                assert!(profile.ends_with("/oxygensat"));
                assert_eq!(quantity["code"], "%");
            }
            "85354-9" => {
                assert!(profile.ends_with("/bp"));
                assert!(o.get("valueQuantity").is_none());
                let comps = o["component"].as_array().unwrap();
                let got: Vec<Vec<(String, String)>> =
                    comps.iter().map(|c| codes(&c["code"])).collect();
                assert_eq!(
                    got,
                    [
                        vec![
                            (loinc.clone(), "8480-6".into()),
                            (mdc.clone(), "150021".into())
                        ],
                        vec![
                            (loinc.clone(), "8462-4".into()),
                            (mdc.clone(), "150022".into())
                        ],
                        vec![
                            (loinc.clone(), "8478-0".into()),
                            (mdc.clone(), "150023".into())
                        ],
                    ]
                );
                for c in comps {
                    assert_eq!(c["valueQuantity"]["code"], "mm[Hg]");
                }
            }
            other => panic!("unexpected code {other}"),
        }
    }
    // The values are the scenario's: the desaturation interval (600-699 s
    // at 88 %) opens with 88; the high NIBP at 1200 s.
    let at = |o: &Value| {
        parse_rfc3339(o["effectiveDateTime"].as_str().unwrap())
            .unwrap()
            .duration_since(start)
            .unwrap()
            .as_secs()
    };
    let spo2: Vec<(u64, f64)> = obs
        .iter()
        .filter(|o| first_code(o) == "2708-6")
        .map(|o| (at(o), o["valueQuantity"]["value"].as_f64().unwrap()))
        .collect();
    assert_eq!(spo2[0], (1, 97.0), "first reading after the session start");
    assert_eq!(spo2[2], (600, 88.0));
    let bp1200 = obs
        .iter()
        .find(|o| first_code(o) == "85354-9" && at(o) == 1200)
        .unwrap();
    assert_eq!(bp1200["component"][0]["valueQuantity"]["value"], 186);
    assert_eq!(bp1200["component"][1]["valueQuantity"]["value"], 112);

    // No name anywhere: the session id is the only identifier.
    let mut all = Vec::new();
    keys(&bundle, &mut all);
    for forbidden in ["name", "patient", "given", "family", "birthDate"] {
        assert!(
            !all.iter().any(|k| k == forbidden),
            "key `{forbidden}` in the bundle"
        );
    }

    // The schema is not vacuous: a broken observation fails it.
    let mut broken = bundle.clone();
    broken["entry"][0]["resource"]["valueQuantity"]["value"] = Value::from("seventy");
    assert!(!schema.is_valid(&broken), "a value as text");
    let mut broken = bundle.clone();
    broken["entry"][1]["resource"]["effectiveDateTime"] = Value::from("1 March 2026");
    assert!(!schema.is_valid(&broken), "a time that is not a dateTime");
    let mut broken = bundle.clone();
    broken["entry"][2]["resource"]["subject"]["surname"] = Value::from("x");
    assert!(!schema.is_valid(&broken), "an unknown element");
}

#[test]
fn fhir_every_reading_maps_sensor_off_to_a_data_absent_reason() {
    let dir = temp_dir("chart-fhir-every");
    let path = recording(&dir, "north-clinic", "bed-3");
    let (_, text) = export(&path, ChartFormat::Fhir, Sampling::EveryReading);
    let bundle: Value = serde_json::from_str(&text).unwrap();
    let errors = schema_errors(&fhir_schema(), &bundle);
    assert!(
        errors.is_empty(),
        "schema violations:\n{}",
        errors.join("\n")
    );
    let obs = observations(&bundle);
    // Readings every second from 1 s to 2390 s, three continuous vitals,
    // plus 7 NIBP measurements.
    assert_eq!(obs.len(), 2390 * 3 + 7);
    let absent: Vec<&&Value> = obs
        .iter()
        .filter(|o| o.get("dataAbsentReason").is_some())
        .collect();
    assert_eq!(absent.len(), 30, "SpO2 sensor off 1500-1529 s");
    for o in absent {
        assert_eq!(first_code(o), "2708-6");
        assert!(o.get("valueQuantity").is_none());
        assert_eq!(
            codes(&o["dataAbsentReason"]),
            [(
                "http://terminology.hl7.org/CodeSystem/data-absent-reason".to_owned(),
                "not-performed".to_owned()
            )]
        );
    }
}

// ---------------------------------------------------------------- HL7

/// A small HL7 v2 parser, independent of the exporter: segments split on
/// CR, fields on `|` (MSH-1 is the separator itself, so MSH fields are
/// numbered from 1 with `|` at 1), components on `^`, escapes undone.
mod v2 {
    /// One segment: its fields, index = HL7 field number.
    pub struct Segment(pub Vec<String>);

    impl Segment {
        pub fn id(&self) -> &str {
            &self.0[0]
        }
        /// Field `n` (raw, still escaped; empty when absent).
        pub fn field(&self, n: usize) -> &str {
            self.0.get(n).map_or("", |s| s.as_str())
        }
        /// Component `c` (1-based) of field `n`, unescaped.
        pub fn comp(&self, n: usize, c: usize) -> String {
            unescape(self.field(n).split('^').nth(c - 1).unwrap_or(""))
        }
    }

    pub fn unescape(s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('\\') {
            out.push_str(&rest[..i]);
            let tail = &rest[i + 1..];
            let j = tail.find('\\').expect("escape sequence closed");
            match &tail[..j] {
                "F" => out.push('|'),
                "S" => out.push('^'),
                "R" => out.push('~'),
                "E" => out.push('\\'),
                "T" => out.push('&'),
                x if x.starts_with('X') => {
                    let bytes: Vec<u8> = (1..x.len())
                        .step_by(2)
                        .map(|k| u8::from_str_radix(&x[k..k + 2], 16).unwrap())
                        .collect();
                    out.push_str(std::str::from_utf8(&bytes).unwrap());
                }
                other => panic!("unknown escape \\{other}\\"),
            }
            rest = &tail[j + 1..];
        }
        out.push_str(rest);
        out
    }

    /// Messages: each starts with an MSH segment.
    pub fn parse(text: &str) -> Vec<Vec<Segment>> {
        assert!(!text.contains('\n'), "segments are separated by CR only");
        assert!(text.ends_with('\r'), "the last segment is ended by CR");
        let mut messages: Vec<Vec<Segment>> = Vec::new();
        for line in text.split('\r').filter(|l| !l.is_empty()) {
            let seg = if let Some(rest) = line.strip_prefix("MSH|") {
                let mut f = vec!["MSH".to_owned(), "|".to_owned()];
                f.extend(rest.split('|').map(str::to_owned));
                messages.push(Vec::new());
                Segment(f)
            } else {
                Segment(line.split('|').map(str::to_owned).collect())
            };
            messages
                .last_mut()
                .expect("a message starts with MSH")
                .push(seg);
        }
        messages
    }
}

/// PCD-01 numeric observation rows (OBX-2 `NM`) as the IHE PCD Technical
/// Framework's examples give them: OBX-3 and OBX-6 identifier and text, in
/// the coding system `MDC`: the blood pressure example reproduced in HAPI
/// HL7v2's `MessageValidatorTest` (150021/150022/150023 in 266016
/// MDC_DIM_MMHG) and the pulse oximeter rows of Mindray PCD-01 output
/// (150456 in 262688 MDC_DIM_PERCENT, 149530 in 264864
/// MDC_DIM_BEAT_PER_MIN), and the heart rate row of the GE B40 PCD-01
/// interface manual (147842 in 264864).
const PCD_REFERENCE: [(&str, &str, &str, &str); 6] = [
    (
        "147842",
        "MDC_ECG_HEART_RATE",
        "264864",
        "MDC_DIM_BEAT_PER_MIN",
    ),
    (
        "149530",
        "MDC_PULS_OXIM_PULS_RATE",
        "264864",
        "MDC_DIM_BEAT_PER_MIN",
    ),
    (
        "150456",
        "MDC_PULS_OXIM_SAT_O2",
        "262688",
        "MDC_DIM_PERCENT",
    ),
    (
        "150021",
        "MDC_PRESS_BLD_NONINV_SYS",
        "266016",
        "MDC_DIM_MMHG",
    ),
    (
        "150022",
        "MDC_PRESS_BLD_NONINV_DIA",
        "266016",
        "MDC_DIM_MMHG",
    ),
    (
        "150023",
        "MDC_PRESS_BLD_NONINV_MEAN",
        "266016",
        "MDC_DIM_MMHG",
    ),
];

/// The LOINC alternate code and UCUM unit vigil adds to each reference row.
const ALTERNATES: [(&str, &str); 6] = [
    ("8867-4", "/min"),
    ("8889-8", "/min"),
    ("2708-6", "%"),
    ("8480-6", "mm[Hg]"),
    ("8462-4", "mm[Hg]"),
    ("8478-0", "mm[Hg]"),
];

#[test]
fn hl7_messages_are_pcd01_oru_with_mdc_loinc_and_ucum() {
    let dir = temp_dir("chart-hl7");
    let site = "north-clinic";
    let bed = "bed-3";
    let path = recording(&dir, site, bed);
    let (n, text) = export(&path, ChartFormat::Hl7, Sampling::default());
    let messages = v2::parse(&text);
    assert_eq!(messages.len(), n);
    assert_eq!(n, 8, "one message per 5-minute interval of the session");
    let mut obx_total = 0;
    for (k, m) in messages.iter().enumerate() {
        let ids: Vec<&str> = m.iter().map(|s| s.id()).collect();
        assert_eq!(&ids[..4], ["MSH", "PID", "PV1", "OBR"]);
        assert!(ids[4..].iter().all(|s| *s == "OBX" || *s == "NTE"));
        let msh = &m[0];
        assert_eq!(msh.field(1), "|");
        assert_eq!(msh.field(2), "^~\\&");
        assert_eq!(msh.comp(3, 1), "vigil");
        assert_eq!(msh.comp(4, 1), site);
        assert_eq!(msh.field(7), "20260301101500.000+0000");
        assert_eq!(msh.field(9), "ORU^R01^ORU_R01");
        assert_eq!(msh.comp(10, 1), format!("{SESSION}.{}", k + 1));
        assert_eq!(msh.field(11), "P");
        assert_eq!(msh.field(12), "2.6");
        assert_eq!(msh.field(15), "AL");
        assert_eq!(msh.field(16), "NE");
        assert_eq!(msh.field(18), "UNICODE UTF-8");
        assert_eq!(
            msh.field(21),
            "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
        );
        let pid = &m[1];
        assert_eq!(pid.comp(3, 1), SESSION);
        assert_eq!(pid.comp(3, 4), site);
        assert_eq!(pid.comp(3, 5), "ANON");
        // PID-5: no name, only the pseudonym name type.
        let name: Vec<&str> = pid.field(5).split('^').collect();
        assert!(name[..6].iter().all(|c| c.is_empty()), "{name:?}");
        assert_eq!(name[6], "S");
        assert!(pid.0.len() <= 6, "nothing after PID-5");
        assert_eq!(m[2].comp(3, 3), bed, "PV1-3 bed");
        let obr = &m[3];
        assert_eq!(obr.field(4), "182777000^monitoring of patient^SCT");
        let t7 = obr.field(7);
        let t8 = obr.field(8);
        assert!(t7 <= t8 && t7.starts_with("20260301"), "{t7} {t8}");
        for (j, obx) in m.iter().filter(|s| s.id() == "OBX").enumerate() {
            obx_total += 1;
            assert_eq!(obx.field(1), (j + 1).to_string(), "OBX-1 set id");
            let code = obx.comp(3, 1);
            let r = PCD_REFERENCE
                .iter()
                .position(|(c, ..)| *c == code)
                .unwrap_or_else(|| panic!("OBX-3 {code} is not a reference code"));
            let (id, text, unit, unit_text) = PCD_REFERENCE[r];
            let (lc, ucum) = ALTERNATES[r];
            assert_eq!(obx.field(2), "NM");
            assert_eq!(
                [obx.comp(3, 1), obx.comp(3, 2), obx.comp(3, 3)],
                [id, text, "MDC"],
                "OBX-3"
            );
            assert_eq!(
                [obx.comp(6, 1), obx.comp(6, 2), obx.comp(6, 3)],
                [unit, unit_text, "MDC"],
                "OBX-6"
            );
            assert_eq!(obx.comp(3, 4), lc);
            assert_eq!(obx.comp(3, 6), "LN");
            assert_eq!(obx.comp(6, 4), ucum);
            assert_eq!(obx.comp(6, 6), "UCUM");
            let sub: Vec<u32> = obx
                .field(4)
                .split('.')
                .map(|x| x.parse().unwrap())
                .collect();
            assert_eq!(sub.len(), 4, "OBX-4 MDS.VMD.CHAN.METRIC");
            let value: f64 = obx.field(5).parse().unwrap();
            assert!(value > 0.0);
            assert_eq!(obx.field(8), "");
            assert_eq!(obx.field(11), "R", "device data, not verified");
            let t = obx.field(14);
            assert!(t >= t7 && t <= t8, "OBX-14 {t} within OBR-7/8");
            assert_eq!(obx.comp(18, 1), "import");
        }
    }
    // 8 intervals x 3 continuous vitals + 7 NIBP x 3 components.
    assert_eq!(obx_total, 8 * 3 + 7 * 3);
    // The first message: the first readings after the session start.
    let first = &messages[0];
    let hr = first
        .iter()
        .find(|s| s.id() == "OBX" && s.comp(3, 1) == "147842")
        .unwrap();
    assert_eq!(hr.field(5), "72");
    assert_eq!(hr.field(14), "20260301093001.000+0000");
}

#[test]
fn hl7_escapes_delimiters_in_free_text() {
    // The configuration refuses delimiters in site, bed and source names,
    // but a chart is escaped whatever it holds.
    let chart = Chart {
        site: "North|Wing^2 & Co".into(),
        bed: "3~A\\B".into(),
        sources: vec![Device {
            name: "mon|1".into(),
            protocol: "ge-s5",
        }],
        points: vec![Point {
            time: Duration::from_secs(1),
            wall: parse_rfc3339(START).unwrap() + Duration::from_secs(1),
            source: 0,
            session: "S^1|x".into(),
            group: 0,
            value: ChartValue::Continuous(Vital::SpO2, Sample::missing(Validity::Artifact)),
        }],
    };
    let messages = hl7::messages(&chart, generated());
    let m = v2::parse(&messages.concat());
    assert_eq!(m.len(), 1);
    let m = &m[0];
    assert_eq!(m[0].comp(4, 1), chart.site);
    assert_eq!(m[0].comp(10, 1), "S^1|x.1");
    assert_eq!(m[1].comp(3, 1), "S^1|x");
    assert_eq!(m[1].comp(3, 4), chart.site);
    assert_eq!(m[2].comp(3, 3), chart.bed);
    assert_eq!(m[4].comp(18, 1), "mon|1");
    assert_eq!(m[4].field(8), "NI");
    assert_eq!(m[4].field(11), "X");
    assert_eq!(m[5].id(), "NTE");
    assert!(m[5].comp(3, 1).starts_with("artifact"));
    assert_eq!(m.len(), 6, "MSH PID PV1 OBR OBX NTE");
}

#[test]
fn hl7_absent_values_are_status_x_with_a_null_flavour_and_a_note() {
    let dir = temp_dir("chart-hl7-every");
    let path = recording(&dir, "north-clinic", "bed-3");
    let (n, text) = export(&path, ChartFormat::Hl7, Sampling::EveryReading);
    let messages = v2::parse(&text);
    assert_eq!(n, messages.len());
    assert_eq!(n, 2390, "one message per reading instant");
    let mut absent = 0;
    for m in &messages {
        for (i, s) in m.iter().enumerate() {
            if s.id() != "OBX" || s.field(11) != "X" {
                continue;
            }
            absent += 1;
            assert_eq!(s.comp(3, 1), "150456");
            assert_eq!(s.field(2), "", "no value type without a value");
            assert_eq!(s.field(5), "");
            assert_eq!(s.field(8), "NAV");
            let note = &m[i + 1];
            assert_eq!(note.id(), "NTE");
            assert!(
                note.comp(3, 1).contains("sensor is off"),
                "{}",
                note.field(3)
            );
        }
    }
    assert_eq!(absent, 30, "SpO2 sensor off 1500-1529 s");
}

#[test]
fn the_cli_exports_fhir_and_hl7_and_says_what_is_missing() {
    let dir = temp_dir("chart-cli");
    let vigil = env!("CARGO_BIN_EXE_vigil");
    let path = recording(&dir, "north-clinic", "bed-3");
    let run = |args: &[&str]| {
        std::process::Command::new(vigil)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let p = path.display().to_string();
    let export = |args: &[&str]| run(&[&["record", "export", &p][..], args].concat());
    let out = export(&["--format", "fhir", "--interval", "10min"]);
    assert!(out.status.success(), "{out:?}");
    let bundle: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hr = observations(&bundle)
        .iter()
        .filter(|o| first_code(o) == "8867-4")
        .count();
    assert_eq!(hr, 4, "10-minute intervals over 40 minutes");
    // Every resource starts with its resourceType, as FHIR JSON is written
    // (and as readers that sniff the type from the first key expect).
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(lines[..2], ["{", "\"resourceType\": \"Bundle\","]);
    let resources: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i] == "\"resource\": {")
        .collect();
    assert_eq!(resources.len(), observations(&bundle).len());
    for i in resources {
        assert_eq!(
            lines[i + 1],
            "\"resourceType\": \"Observation\",",
            "line {}",
            i + 2
        );
    }
    let keys: Vec<&str> = observations(&bundle)[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .take(4)
        .collect();
    assert_eq!(keys, ["resourceType", "id", "meta", "identifier"]);
    let hl7 = dir.join("s.hl7");
    let out = export(&[
        "--format",
        "hl7",
        "--every-reading",
        "-o",
        &hl7.display().to_string(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("2390 message(s) written"));
    assert_eq!(
        v2::parse(&std::fs::read_to_string(&hl7).unwrap()).len(),
        2390
    );
    let out = export(&["--format", "fhir", "--interval", "0s"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an interval"));

    // A recording without a session: nothing links it to a patient.
    let csv = dir.join("nosession.csv");
    std::fs::write(&csv, "time,vital,value\n0,hr,72\n1,spo2,97\n").unwrap();
    let vrec = dir.join("nosession.vrec");
    let out = run(&[
        "record",
        "import",
        &csv.display().to_string(),
        "-o",
        &vrec.display().to_string(),
        "--start",
        START,
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = run(&[
        "record",
        "export",
        &vrec.display().to_string(),
        "--format",
        "hl7",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds no session"), "{err}");
    assert!(out.stdout.is_empty());
}

// ---------------------------------------------------------------- MLLP

/// A local MLLP receiver: answers each message with MSA-1 `code` (and
/// MSA-3 `text`), except that it drops the first `drop_first` connections
/// after reading one message, without acknowledging. Returns its address
/// and the control ids it received, in order, once `connections` are done.
fn receiver(
    code: &'static str,
    text: &'static str,
    drop_first: usize,
    connections: usize,
) -> (String, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let mut got = Vec::new();
        for n in 0..connections {
            let (mut s, _) = listener.accept().unwrap();
            let mut de = mllp::Deframer::default();
            let mut buf = [0u8; 8192];
            'conn: loop {
                let k = match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => k,
                };
                de.push(&buf[..k]);
                while let Some(f) = de.next_frame() {
                    let text_in = String::from_utf8(f).unwrap();
                    let id = mllp::control_id(&text_in).unwrap().to_owned();
                    got.push(id.clone());
                    if n < drop_first {
                        break 'conn;
                    }
                    let ack = format!(
                        "MSH|^~\\&|EHR|||||ACK^R01^ACK|A{}|P|2.6\rMSA|{code}|{id}|{text}\r",
                        got.len()
                    );
                    s.write_all(&mllp::frame(&ack)).unwrap();
                }
            }
        }
        got
    });
    (addr, handle)
}

fn quick() -> mllp::SendOptions {
    mllp::SendOptions {
        timeout: Duration::from_secs(5),
        attempts: 2,
        retry_after: Duration::from_millis(20),
    }
}

#[test]
fn mllp_sends_each_message_until_acknowledged_and_resends_after_a_lost_ack() {
    let dir = temp_dir("chart-mllp");
    let path = recording(&dir, "north-clinic", "bed-3");
    let messages =
        vigil::record::export::hl7_messages(&path, Sampling::default(), generated()).unwrap();
    assert_eq!(messages.len(), 8);
    let (addr, rx) = receiver("AA", "", 1, 2);
    assert_eq!(mllp::send_all(&addr, &messages, quick()).unwrap(), 8);
    let got = rx.join().unwrap();
    let mut expected = vec![format!("{SESSION}.1")];
    expected.extend((1..=8).map(|k| format!("{SESSION}.{k}")));
    assert_eq!(
        got, expected,
        "the first message again after its ACK was lost"
    );

    // A refusal stops with the receiver's reason.
    let (addr, rx) = receiver("AR", "unknown patient", 0, 1);
    let err = mllp::send_all(&addr, &messages, quick()).unwrap_err();
    assert!(
        matches!(&err, mllp::MllpError::Refused { code, text, .. } if code == "AR" && text == "unknown patient"),
        "{err}"
    );
    assert_eq!(rx.join().unwrap(), [format!("{SESSION}.1")]);

    // Nobody listening: the error says so after the attempts.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = mllp::send_all(&format!("127.0.0.1:{port}"), &messages, quick()).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, mllp::MllpError::Unreachable { attempts: 2, .. }),
        "{text}"
    );
    assert!(text.contains("check the host and port"), "{text}");

    // The CLI.
    let (addr, rx) = receiver("AA", "", 0, 1);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["record", "send", &path.display().to_string(), "--to", &addr])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("8 message(s) sent"));
    assert_eq!(rx.join().unwrap().len(), 8);
}
