//! The words people read for vitals and alarms: `spo2.low` is "SpO2 low",
//! `nibp_dia.baseline_rise` is "NIBP diastolic above baseline",
//! `source.bedside.disconnected` is "monitor bedside disconnected".
//!
//! One mapping for every place a nurse reads an alarm: the web board and
//! `vigil watch` (through [`crate::display::state`]) and the session report
//! ([`crate::report`]). Pure text; depends on nothing.

/// The people's name and unit of a vital key.
pub fn vital_name(key: &str) -> (&'static str, &'static str) {
    match key {
        "hr" => ("HR", "/min"),
        "pr" => ("Pulse", "/min"),
        "spo2" => ("SpO2", "%"),
        "nibp_sys" => ("NIBP systolic", "mmHg"),
        "nibp_dia" => ("NIBP diastolic", "mmHg"),
        "nibp_mean" => ("NIBP mean", "mmHg"),
        "nibp" => ("NIBP", "mmHg"),
        "rr" | "resp" | "resp_rate" => ("Resp. rate", "/min"),
        "etco2" => ("EtCO2", "mmHg"),
        "temp" => ("Temp.", "°C"),
        _ => ("", ""),
    }
}

/// An alarm id in words, without its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmName {
    /// `SpO2 low`, `vigil chart not reaching the EHR (HL7)`.
    pub text: String,
    /// The unit its value and limit are in (`%`, `%/min`, empty for none);
    /// `None` for a condition this mapping does not know, whose values are
    /// not shown.
    pub unit: Option<String>,
}

/// An alarm id in words: `spo2.low` is "SpO2 low", `hr.rate_rise` is
/// "HR rising fast" in "/min per min", `system.storage_failure` is "vigil
/// cannot store alarms on disk". An unknown condition reads as its id with
/// spaces (`hr.new_rule` is "HR new rule").
pub fn alarm_name(id: &str) -> AlarmName {
    let (head, cond) = id.rsplit_once('.').unwrap_or(("", id));
    let (name, unit) = vital_name(head);
    let subject = if !name.is_empty() {
        name.to_owned()
    } else if head == "system" {
        "vigil".to_owned()
    } else if let Some(src) = head.strip_prefix("source.") {
        format!("monitor {src}")
    } else {
        head.replace('_', " ")
    };
    let (cond, unit) = match cond {
        "low" => ("low", unit.to_owned()),
        "high" => ("high", unit.to_owned()),
        "critical_low" => ("critically low", unit.to_owned()),
        "critical_high" => ("critically high", unit.to_owned()),
        "baseline_rise" => ("above baseline", unit.to_owned()),
        "baseline_fall" => ("below baseline", unit.to_owned()),
        "rate_rise" => ("rising fast", rate_unit(unit)),
        "rate_fall" => ("falling fast", rate_unit(unit)),
        "stale" => ("no recent reading", String::new()),
        "sensor_off" => ("sensor off", String::new()),
        "invalid" => ("value invalid", String::new()),
        "artifact" => ("artefact", String::new()),
        "cycle_overdue" => ("measurement overdue", String::new()),
        "disconnected" => ("disconnected", String::new()),
        "link_errors" => ("garbled data", String::new()),
        "not_associated" => ("not connected to vigil (no association)", String::new()),
        "no_valid_data" => ("sends no valid data", String::new()),
        "monitor_restarted" => ("restarted: check its settings", String::new()),
        "low_battery" => ("battery low", String::new()),
        "queue_overflow" => ("alarm queue overflowed", String::new()),
        "broker_unreachable" => ("cannot reach the displays", String::new()),
        "storage_failure" => ("cannot store alarms on disk", String::new()),
        "hl7_undelivered" => ("chart not reaching the EHR (HL7)", String::new()),
        "hl7_backlog_failure" => ("cannot keep the unsent chart on disk (HL7)", String::new()),
        "broker_refused" => ("the broker refuses alarms for the displays", String::new()),
        other => {
            return AlarmName {
                text: format!("{subject} {}", other.replace('_', " "))
                    .trim_start()
                    .to_owned(),
                unit: None,
            }
        }
    };
    AlarmName {
        text: format!("{subject} {cond}").trim_start().to_owned(),
        unit: Some(unit),
    }
}

/// An alarm for people, with units: `SpO2 low 86 % (limit 90 %)`,
/// `SpO2 falling fast 5 %/min (limit 4 %/min)`, `monitor bedside disconnected`.
pub fn alarm_text(id: &str, value: Option<f64>, limit: Option<f64>) -> String {
    let AlarmName { text, unit } = alarm_name(id);
    let Some(unit) = unit else {
        return text;
    };
    let with_unit = |v: f64| {
        if unit.is_empty() {
            format!("{v:.0}")
        } else {
            format!("{v:.0} {unit}")
        }
    };
    let mut s = text;
    if let Some(v) = value {
        s.push_str(&format!(" {}", with_unit(v)));
    }
    if let Some(l) = limit {
        s.push_str(&format!(" (limit {})", with_unit(l)));
    }
    s
}

fn rate_unit(unit: &str) -> String {
    if unit.is_empty() {
        "/min".into()
    } else if unit == "/min" {
        "/min per min".into()
    } else {
        format!("{unit}/min")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_as_words() {
        for (id, text) in [
            ("spo2.low", "SpO2 low"),
            ("nibp_dia.baseline_rise", "NIBP diastolic above baseline"),
            ("nibp_sys.baseline_fall", "NIBP systolic below baseline"),
            ("nibp.high", "NIBP high"),
            ("spo2.critical_low", "SpO2 critically low"),
            ("pr.sensor_off", "Pulse sensor off"),
            (
                "system.hl7_undelivered",
                "vigil chart not reaching the EHR (HL7)",
            ),
            (
                "source.bedside.disconnected",
                "monitor bedside disconnected",
            ),
            ("hr.new_rule", "HR new rule"),
            ("odd_thing", "odd thing"),
        ] {
            assert_eq!(alarm_name(id).text, text, "{id}");
        }
    }

    #[test]
    fn values_carry_the_unit_of_the_vital_or_of_its_rate() {
        assert_eq!(
            alarm_text("spo2.low", Some(86.0), Some(90.0)),
            "SpO2 low 86 % (limit 90 %)"
        );
        assert_eq!(
            alarm_text("spo2.rate_fall", Some(5.0), Some(4.0)),
            "SpO2 falling fast 5 %/min (limit 4 %/min)"
        );
        assert_eq!(
            alarm_text("hr.rate_rise", Some(30.0), None),
            "HR rising fast 30 /min per min"
        );
        assert_eq!(
            alarm_text("source.bedside.disconnected", Some(1.0), None),
            "monitor bedside disconnected 1"
        );
        // An unknown condition shows no values: their unit is unknown.
        assert_eq!(
            alarm_text("hr.new_rule", Some(3.0), Some(2.0)),
            "HR new rule"
        );
    }
}
