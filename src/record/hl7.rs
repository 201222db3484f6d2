//! `vigil record export --format hl7`: a recording's chart as HL7 v2.6
//! ORU^R01 messages following IHE PCD-01 (Communicate PCD Data).
//!
//! One message per charting group ([`super::chart`]: an interval, or with
//! every reading the readings of one instant), segments ended by a carriage
//! return (`\r`, no line feed), messages back to back:
//!
//! - `MSH`: `^~\&`, sending application `vigil`, facility = site, message
//!   time, `ORU^R01^ORU_R01`, control id `<session>.<n>`, `P`, `2.6`,
//!   accept ack `AL`, application ack `NE`, `UNICODE UTF-8`, and MSH-21 the
//!   PCD-01 profile `IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO`.
//! - `PID`: PID-3 the pseudonymous session id (`<id>^^^<site>^ANON`,
//!   identifier type ANON, HL7 table 0203); PID-5 holds no name, only the
//!   name type `S` (coded pseudo-name, table 0200).
//! - `PV1`: class `I`, location `^^<bed>^<site>`.
//! - `OBR`: filler order `<session>.<n>^vigil`, universal service
//!   `182777000^monitoring of patient^SCT`, OBR-7/8 first and last reading.
//! - `OBX` per value: OBX-2 `NM` (empty without a value), OBX-3 the MDC
//!   code with the LOINC code as alternate (`150456^MDC_PULS_OXIM_SAT_O2^MDC^
//!   2708-6^Oxygen saturation in Arterial blood^LN`), OBX-4 the containment
//!   sub-id `<source>.<vmd>.1.<metric>`, OBX-5 the value, OBX-6 the MDC unit
//!   with UCUM as alternate, OBX-8 `<` / `>` when off scale or the IHE PCD
//!   null flavour (`NAV`, `NI`) when absent, OBX-11 `R` (device data, not
//!   verified by a clinician, as PCD-01 devices send) or `X` (no value),
//!   OBX-14 the reading's time, OBX-18 the source (`<name>^vigil`). A
//!   questionable or absent value is followed by an `NTE` saying why.
//!
//! [`super::mllp`] sends them to a receiver (`vigil record send`, and the
//! daemon's live `[hl7]` sink, [`crate::io::hl7`]).
//!
//! Times are `YYYYMMDDHHMMSS.SSS+0000`. Free text (site, bed, source names,
//! session ids, notes) is escaped (`\F\ \S\ \R\ \E\ \T\`; CR and LF as
//! `\X0D\` / `\X0A\`).
//!
//! MDC codes (IEEE 11073-10101), checked against independent
//! implementations that send or parse PCD-01: HAPI HL7v2's PCD-01 example
//! message (hapifhir/hapi-hl7v2, `MessageValidatorTest`: NIBP 150021 /
//! 150022 / 150023, unit 266016 MDC_DIM_MMHG), Mindray monitor output quoted
//! in open HL7 receivers (150456 MDC_PULS_OXIM_SAT_O2 in 262688
//! MDC_DIM_PERCENT, 149530 MDC_PULS_OXIM_PULS_RATE in 264864
//! MDC_DIM_BEAT_PER_MIN) and the GE B40 PCD-01 interface manual and the
//! HL7 Devices-on-FHIR mapping (147842 MDC_ECG_HEART_RATE).

use core::fmt::Write as _;
use std::time::SystemTime;

use crate::vitals::{Sample, Unit, Validity, Vital};

use super::chart::{describe, quality, Chart, Point, Quality, Value};

/// MSH-21: the IHE PCD-01 message profile.
pub const PCD01_PROFILE: &str = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO";

/// MDC code and reference id of a vital (IEEE 11073-10101).
pub const fn mdc(v: Vital) -> (u32, &'static str) {
    match v {
        Vital::HeartRate => (147_842, "MDC_ECG_HEART_RATE"),
        Vital::PulseRate => (149_530, "MDC_PULS_OXIM_PULS_RATE"),
        Vital::SpO2 => (150_456, "MDC_PULS_OXIM_SAT_O2"),
        Vital::NibpSystolic => (150_021, "MDC_PRESS_BLD_NONINV_SYS"),
        Vital::NibpDiastolic => (150_022, "MDC_PRESS_BLD_NONINV_DIA"),
        Vital::NibpMean => (150_023, "MDC_PRESS_BLD_NONINV_MEAN"),
        // alarms.md, "Breathing": MDC_RESP_RATE 151562, MDC_AWAY_CO2_ET 151708.
        Vital::RespRate => (151_562, "MDC_RESP_RATE"),
        Vital::EtCo2 => (151_708, "MDC_AWAY_CO2_ET"),
    }
}

/// MDC unit code and reference id of a vital's unit: breaths, not beats,
/// per minute for the respiration rate (MDC_DIM_RESP_PER_MIN).
pub const fn mdc_vital_unit(v: Vital) -> (u32, &'static str) {
    match v {
        Vital::RespRate => (264_928, "MDC_DIM_RESP_PER_MIN"),
        _ => mdc_unit(v.unit()),
    }
}

/// MDC unit code and reference id of a unit.
pub const fn mdc_unit(u: Unit) -> (u32, &'static str) {
    match u {
        Unit::PerMinute => (264_864, "MDC_DIM_BEAT_PER_MIN"),
        Unit::Percent => (262_688, "MDC_DIM_PERCENT"),
        Unit::MmHg => (266_016, "MDC_DIM_MMHG"),
    }
}

/// LOINC code and display of a vital (as in the FHIR export).
pub fn loinc(v: Vital) -> (&'static str, &'static str) {
    super::fhir::loinc(v)
}

/// Escapes HL7 delimiters and line breaks in free text (HL7 v2 2.7 escape
/// sequences, encoding characters `|^~\&`).
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => o.push_str("\\F\\"),
            '^' => o.push_str("\\S\\"),
            '~' => o.push_str("\\R\\"),
            '\\' => o.push_str("\\E\\"),
            '&' => o.push_str("\\T\\"),
            '\r' => o.push_str("\\X0D\\"),
            '\n' => o.push_str("\\X0A\\"),
            c => o.push(c),
        }
    }
    o
}

/// An HL7 DTM in UTC with milliseconds: `20260301093000.000+0000`.
pub fn timestamp(t: SystemTime) -> String {
    let r = crate::time::rfc3339(t);
    // 2026-03-01T09:30:00.000Z
    format!(
        "{}{}{}{}{}{}.{}+0000",
        &r[0..4],
        &r[5..7],
        &r[8..10],
        &r[11..13],
        &r[14..16],
        &r[17..19],
        &r[20..23]
    )
}

/// The VMD (device part) number of a vital in OBX-4: ECG 1, pulse
/// oximeter 2, NIBP 3; and the metric number within it.
const fn containment(v: Vital) -> (u8, u8) {
    match v {
        Vital::HeartRate => (1, 1),
        Vital::SpO2 => (2, 1),
        Vital::PulseRate => (2, 2),
        Vital::NibpSystolic => (3, 1),
        Vital::NibpDiastolic => (3, 2),
        Vital::NibpMean => (3, 3),
        Vital::RespRate => (4, 1),
        Vital::EtCo2 => (4, 2),
    }
}

struct Message<'a> {
    out: String,
    chart: &'a Chart,
    obx: u32,
}

impl Message<'_> {
    fn obx(&mut self, p: &Point, v: Vital, s: Sample) {
        let q = quality(s);
        self.obx += 1;
        let (code, name) = mdc(v);
        let (lc, ld) = loinc(v);
        let (uc, un) = mdc_vital_unit(v);
        let ucum = v.unit().symbol();
        let (vmd, metric) = containment(v);
        let value = q.value().map(|x| x.to_string()).unwrap_or_default();
        let flag = match q {
            Quality::BelowRange(_) => "<",
            Quality::AboveRange(_) => ">",
            Quality::Absent(Validity::SensorOff | Validity::Unavailable) => "NAV",
            Quality::Absent(_) => "NI",
            Quality::Valid(_) | Quality::Questionable(_) => "",
        };
        let status = if q.value().is_some() { "R" } else { "X" };
        let source = self
            .chart
            .sources
            .get(p.source)
            .map_or("unknown", |d| d.name.as_str());
        let _ = write!(
            self.out,
            "OBX|{n}|{ty}|{code}^{name}^MDC^{lc}^{ld}^LN|{mds}.{vmd}.1.{metric}|{value}|{uc}^{un}^MDC^{ucum}^{ucum}^UCUM||{flag}|||{status}|||{time}||||{source}^vigil\r",
            n = self.obx,
            ty = if value.is_empty() { "" } else { "NM" },
            mds = p.source + 1,
            ld = escape(ld),
            ucum = escape(ucum),
            time = timestamp(p.wall),
            source = escape(source),
        );
        let note = match q {
            Quality::Questionable(_) => Some(Validity::Questionable),
            Quality::Absent(v) => Some(v),
            _ => None,
        };
        if let Some(n) = note {
            let _ = write!(self.out, "NTE|1|L|{}\r", escape(describe(n)));
        }
    }
}

/// The messages of a chart, each a string of CR-ended segments, stamped
/// `generated` (MSH-7), numbered from 1.
pub fn messages(chart: &Chart, generated: SystemTime) -> Vec<String> {
    messages_from(chart, generated, 1)
}

/// [`messages`] numbered from `first` (MSH-10 `<session>.<n>`, OBR-3): the
/// live sink numbers on across its batches.
pub fn messages_from(chart: &Chart, generated: SystemTime, number: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < chart.points.len() {
        let first = &chart.points[i];
        let end = chart.points[i..]
            .iter()
            .position(|p| p.group != first.group || p.session != first.session)
            .map_or(chart.points.len(), |k| i + k);
        let group = &chart.points[i..end];
        let n = number + out.len() as u64;
        let id = escape(&first.session);
        let site = escape(&chart.site);
        let mut m = Message {
            out: String::new(),
            chart,
            obx: 0,
        };
        let _ = write!(
            m.out,
            "MSH|^~\\&|vigil|{site}|||{now}||ORU^R01^ORU_R01|{id}.{n}|P|2.6|||AL|NE||UNICODE UTF-8|||{PCD01_PROFILE}\r",
            now = timestamp(generated),
        );
        let _ = write!(m.out, "PID|||{id}^^^{site}^ANON||^^^^^^S\r");
        let _ = write!(m.out, "PV1||I|^^{}^{site}\r", escape(&chart.bed));
        let last = group.last().unwrap_or(first);
        let _ = write!(
            m.out,
            "OBR|1||{id}.{n}^vigil|182777000^monitoring of patient^SCT|||{}|{}\r",
            timestamp(first.wall),
            timestamp(last.wall)
        );
        for p in group {
            match p.value {
                Value::Continuous(v, s) => m.obx(p, v, s),
                Value::Nibp(nibp) => {
                    m.obx(p, Vital::NibpSystolic, nibp.systolic);
                    m.obx(p, Vital::NibpDiastolic, nibp.diastolic);
                    if nibp.mean.value.is_finite() {
                        m.obx(p, Vital::NibpMean, nibp.mean);
                    }
                }
            }
        }
        out.push(m.out);
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn escapes_every_delimiter_and_line_break() {
        assert_eq!(escape("a|b^c~d\\e&f"), "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f");
        assert_eq!(escape("x\r\ny"), "x\\X0D\\\\X0A\\y");
        assert_eq!(escape("plain text"), "plain text");
    }

    #[test]
    fn timestamps_are_hl7_dtm_in_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_772_357_400_250);
        assert_eq!(timestamp(t), "20260301093000.250+0000");
    }
}
