//! `vigil record export --format fhir`: a recording's chart as a FHIR R4
//! Bundle (type `collection`) of vital-signs Observations.
//!
//! One Observation per charted reading ([`super::chart`]), following the R4
//! vital-signs profiles:
//!
//! | vigil | LOINC | profile | unit (UCUM) |
//! |---|---|---|---|
//! | HR | 8867-4 Heart rate | `heartrate` | `/min` |
//! | PR (oximeter) | 8889-8 Heart rate by Pulse oximetry | `vitalsigns` | `/min` |
//! | SpO2 | 2708-6 and 59408-5 (US Core pulse oximetry) | `oxygensat` | `%` |
//! | NIBP | 85354-9 panel; components 8480-6 systolic, 8462-4 diastolic, 8478-0 mean | `bp` | `mm[Hg]` |
//!
//! Each code also carries the IEEE 11073-10101 (MDC) code of the value
//! (system `urn:iso:std:iso:11073:10101`, the same codes as [`super::hl7`]).
//! Category `vital-signs`; `effectiveDateTime` is the reading's wall-clock
//! time (RFC 3339 UTC). The subject is the pseudonymous session id as an
//! identifier (system [`SESSION_SYSTEM`]), never a name; the device is the
//! configured source (name, protocol, site and bed). The respiration rate
//! (9279-1) is not exported: vigil does not read it.
//!
//! Validity: a valid value is `valueQuantity`. A questionable one keeps its
//! value with an `interpretation` saying so; an off-scale one keeps its
//! value (when the device sent one) with interpretation `<` / `>` (v3
//! ObservationInterpretation, off scale low / high). Invalid, artifact,
//! sensor-off and unavailable values have no value but a
//! `dataAbsentReason` (`error`, `not-performed`, `unknown`) with the reason
//! in words.
//!
//! Keys are written in the order they are built, `resourceType` first in
//! every resource, as FHIR JSON is conventionally written (serde_json's
//! `preserve_order`).

use std::time::SystemTime;

use serde_json::{json, Map, Value as Json};

use crate::time::rfc3339;
use crate::vitals::{Sample, Validity, Vital};

use super::chart::{describe, quality, Chart, Point, Quality, Value};
use super::hl7::mdc;

/// The identifier system of the pseudonymous session id (the subject).
pub const SESSION_SYSTEM: &str = "urn:vigil:session";
/// The identifier system of an Observation (`session/vital/time`).
pub const OBSERVATION_SYSTEM: &str = "urn:vigil:observation";
const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const MDC: &str = "urn:iso:std:iso:11073:10101";
const PROFILE: &str = "http://hl7.org/fhir/StructureDefinition/";

/// LOINC code and display of a vital.
pub fn loinc(v: Vital) -> (&'static str, &'static str) {
    match v {
        Vital::HeartRate => ("8867-4", "Heart rate"),
        Vital::PulseRate => ("8889-8", "Heart rate by Pulse oximetry"),
        Vital::SpO2 => ("2708-6", "Oxygen saturation in Arterial blood"),
        Vital::NibpSystolic => ("8480-6", "Systolic blood pressure"),
        Vital::NibpDiastolic => ("8462-4", "Diastolic blood pressure"),
        Vital::NibpMean => ("8478-0", "Mean blood pressure"),
        // alarms.md, "Breathing": LOINC 9279-1 and 19889-5.
        Vital::RespRate => ("9279-1", "Respiratory rate"),
        Vital::EtCo2 => (
            "19889-5",
            "Carbon dioxide [Partial pressure] in Exhaled gas --at end expiration",
        ),
    }
}

fn coding(system: &str, code: &str, display: &str) -> Json {
    json!({"system": system, "code": code, "display": display})
}

/// The CodeableConcept of a vital: LOINC (and 59408-5 for SpO2) then MDC.
fn code(v: Vital) -> Json {
    let (lc, ld) = loinc(v);
    let mut codings = vec![coding(LOINC, lc, ld)];
    if v == Vital::SpO2 {
        codings.push(coding(
            LOINC,
            "59408-5",
            "Oxygen saturation in Arterial blood by Pulse oximetry",
        ));
    }
    let (m, name) = mdc(v);
    codings.push(coding(MDC, &m.to_string(), name));
    json!({"coding": codings, "text": ld})
}

fn quantity(v: Vital, value: f32) -> Json {
    let unit = v.unit().symbol();
    let human = match v.unit() {
        crate::vitals::Unit::PerMinute if v == Vital::RespRate => "breaths/minute",
        crate::vitals::Unit::PerMinute => "beats/minute",
        crate::vitals::Unit::Percent => "%",
        crate::vitals::Unit::MmHg => "mmHg",
    };
    json!({"value": number(value), "unit": human, "system": UCUM, "code": unit})
}

/// An f32 as the shortest decimal that reads back as it (`72`, `97.5`).
fn number(v: f32) -> Json {
    serde_json::from_str::<Json>(&v.to_string()).unwrap_or(Json::Null)
}

fn absent_reason(v: Validity) -> Json {
    let (code, display) = match v {
        Validity::SensorOff => ("not-performed", "Not Performed"),
        Validity::Unavailable => ("unknown", "Unknown"),
        _ => ("error", "Error"),
    };
    json!({
        "coding": [coding(
            "http://terminology.hl7.org/CodeSystem/data-absent-reason",
            code,
            display,
        )],
        "text": describe(v),
    })
}

fn interpretation(q: Quality) -> Option<Json> {
    let sys = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
    match q {
        Quality::BelowRange(_) => Some(json!([{
            "coding": [coding(sys, "<", "Off scale low")],
            "text": describe(Validity::UnderRange),
        }])),
        Quality::AboveRange(_) => Some(json!([{
            "coding": [coding(sys, ">", "Off scale high")],
            "text": describe(Validity::OverRange),
        }])),
        Quality::Questionable(_) => Some(json!([{"text": describe(Validity::Questionable)}])),
        Quality::Valid(_) | Quality::Absent(_) => None,
    }
}

/// The value, data-absent reason and interpretation of a sample, added to
/// an Observation or a component.
fn add_sample(o: &mut Map<String, Json>, v: Vital, s: Sample) {
    let q = quality(s);
    match q.value() {
        Some(x) => {
            o.insert("valueQuantity".into(), quantity(v, x));
        }
        None => {
            let reason = match q {
                Quality::Absent(validity) => validity,
                Quality::BelowRange(_) => Validity::UnderRange,
                _ => Validity::OverRange,
            };
            o.insert("dataAbsentReason".into(), absent_reason(reason));
        }
    }
    if let Some(i) = interpretation(q) {
        o.insert("interpretation".into(), i);
    }
}

fn vital_key(p: &Point) -> &'static str {
    match p.value {
        Value::Continuous(v, _) => v.key(),
        Value::Nibp(_) => "nibp",
    }
}

/// The Observation of a charted reading.
pub fn observation(chart: &Chart, p: &Point, index: usize) -> Json {
    let when = rfc3339(p.wall);
    let device = chart.sources.get(p.source);
    let device_name = device.map_or("unknown source", |d| d.name.as_str());
    let protocol = device.map_or("", |d| d.protocol);
    let (profile, codes) = match p.value {
        Value::Continuous(Vital::HeartRate, _) => (vec!["heartrate"], code(Vital::HeartRate)),
        Value::Continuous(Vital::SpO2, _) => (vec!["oxygensat"], code(Vital::SpO2)),
        Value::Continuous(v, _) => (vec!["vitalsigns"], code(v)),
        Value::Nibp(_) => (
            vec!["bp"],
            json!({
                "coding": [coding(LOINC, "85354-9", "Blood pressure panel with all children optional")],
                "text": "Blood pressure",
            }),
        ),
    };
    let mut profiles: Vec<String> = profile.iter().map(|p| format!("{PROFILE}{p}")).collect();
    if matches!(p.value, Value::Continuous(Vital::SpO2, _)) {
        profiles
            .push("http://hl7.org/fhir/us/core/StructureDefinition/us-core-pulse-oximetry".into());
    }
    let millis = p
        .wall
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut o = Map::new();
    o.insert("resourceType".into(), json!("Observation"));
    o.insert("id".into(), json!(format!("vigil-{index}")));
    o.insert("meta".into(), json!({"profile": profiles}));
    o.insert(
        "identifier".into(),
        json!([{
            "system": OBSERVATION_SYSTEM,
            "value": format!("{}/{}/{millis}", p.session, vital_key(p)),
        }]),
    );
    o.insert("status".into(), json!("final"));
    o.insert(
        "category".into(),
        json!([{
            "coding": [coding(
                "http://terminology.hl7.org/CodeSystem/observation-category",
                "vital-signs",
                "Vital Signs",
            )],
            "text": "Vital Signs",
        }]),
    );
    o.insert("code".into(), codes);
    o.insert(
        "subject".into(),
        json!({
            "identifier": {"system": SESSION_SYSTEM, "value": p.session},
            "display": format!("session {}", p.session),
        }),
    );
    o.insert("effectiveDateTime".into(), json!(when));
    o.insert(
        "device".into(),
        json!({
            "identifier": {
                "system": "urn:vigil:source",
                "value": format!("{}/{}/{device_name}", chart.site, chart.bed),
            },
            "display": format!("{device_name} ({protocol}), site {}, bed {}", chart.site, chart.bed),
        }),
    );
    match p.value {
        Value::Continuous(v, s) => add_sample(&mut o, v, s),
        Value::Nibp(n) => {
            let components: Vec<Json> = [
                (Vital::NibpSystolic, n.systolic),
                (Vital::NibpDiastolic, n.diastolic),
                (Vital::NibpMean, n.mean),
            ]
            .into_iter()
            // The mean is optional in the profile: left out when the
            // device gave none.
            .filter(|(v, s)| *v != Vital::NibpMean || s.value.is_finite())
            .map(|(v, s)| {
                let mut c = Map::new();
                c.insert("code".into(), code(v));
                add_sample(&mut c, v, s);
                Json::Object(c)
            })
            .collect();
            o.insert("component".into(), json!(components));
        }
    }
    Json::Object(o)
}

/// The whole chart as a Bundle of type `collection`, stamped `generated`.
pub fn bundle(chart: &Chart, generated: SystemTime) -> Json {
    let entries: Vec<Json> = chart
        .points
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"resource": observation(chart, p, i + 1)}))
        .collect();
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": rfc3339(generated),
        "entry": entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_stay_short_and_exact() {
        assert_eq!(number(72.0).to_string(), "72");
        assert_eq!(number(97.5).to_string(), "97.5");
        assert_eq!(number(36.6).to_string(), "36.6");
    }

    #[test]
    fn spo2_carries_both_loinc_codes_and_mdc() {
        let c = code(Vital::SpO2);
        let codes: Vec<&str> = c["coding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["2708-6", "59408-5", "150456"]);
    }

    #[test]
    fn absent_values_have_a_reason_and_no_value() {
        let mut o = Map::new();
        add_sample(&mut o, Vital::SpO2, Sample::missing(Validity::SensorOff));
        assert!(!o.contains_key("valueQuantity"));
        assert_eq!(o["dataAbsentReason"]["coding"][0]["code"], "not-performed");
        let mut o = Map::new();
        add_sample(&mut o, Vital::SpO2, Sample::new(50.0, Validity::UnderRange));
        assert_eq!(o["valueQuantity"]["value"], 50);
        assert_eq!(o["interpretation"][0]["coding"][0]["code"], "<");
        assert!(!o.contains_key("dataAbsentReason"));
    }
}
