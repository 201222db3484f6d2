//! Where vigil sends and keeps things: `[recording]`, `[hl7]` and `[mqtt]`
//! (broker, topic prefix, client id, TLS files, delivery timings, state).

use std::path::PathBuf;

use super::super::raw::{self, Val};
use super::super::{parse_broker_url, Hl7Config, MqttConfig, RecordingConfig, StateDir};
use super::{quoted, Check, DAY, HOUR, MAX_PATH, MIN, MS, SEC};
use crate::mqtt::topics::{Topics, PREFIX_RULE};

impl Check {
    pub(super) fn hl7(&mut self, t: &raw::RawHl7) -> Option<Hl7Config> {
        let p = "hl7";
        self.missing(p, "to", t.to.is_some());
        let to = self.text(p, "to", &t.to, 255)?;
        let port_ok = to.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok {
            self.err(
                "hl7.to",
                format!("hl7.to: `{to}` is not \"host:port\" (e.g. \"ehr.clinic.example:2575\")"),
            );
            return None;
        }
        let mut h = Hl7Config::to(&to);
        if let Some(d) = self.dur_in(p, "interval", &t.interval, (SEC, DAY), "") {
            h.interval = d;
        }
        if let Some(d) = self.dur_in(p, "timeout", &t.timeout, (MS, 2 * MIN), "") {
            h.timeout = d;
        }
        if let Some(b) = self.val(p, "tls", &t.tls) {
            h.tls = b;
        }
        if let Some(f) = self.text(p, "ca_file", &t.ca_file, MAX_PATH) {
            h.ca_file = Some(PathBuf::from(f));
        }
        match (h.tls, &h.ca_file) {
            (true, None) => self.err(
                "hl7.ca_file",
                "hl7.ca_file: hl7.tls = true needs the CA certificate file (PEM) that signs the receiver's certificate".into(),
            ),
            (false, Some(_)) => self.err(
                "hl7.tls",
                "hl7.tls: hl7.ca_file is given but tls is off: set tls = true to send over TLS, or remove ca_file".into(),
            ),
            _ => {}
        }
        Some(h)
    }

    pub(super) fn recording(&mut self, t: &raw::RawRecording, r: &mut RecordingConfig) {
        let p = "recording";
        if let Some(b) = self.val(p, "enabled", &t.enabled) {
            r.enabled = b;
        }
        if let Some(d) = self.text(p, "dir", &t.dir, MAX_PATH) {
            r.dir = PathBuf::from(d);
        }
        if let Some(d) = self.dur_in(p, "retention", &t.retention, (DAY, 3650 * DAY), "") {
            r.retention = d;
        }
        if let Some(d) = self.dur_in(p, "sync_every", &t.sync_every, (MS, MIN), "") {
            r.sync_every = d;
        }
    }

    /// A file path, or `"off"`.
    fn optional_path(&mut self, key: &str, v: &Option<Val<String>>) -> Option<Option<PathBuf>> {
        match v {
            Some(Val(Ok(s))) if s == "off" => Some(None),
            _ => self
                .text("mqtt", key, v, MAX_PATH)
                .map(|s| Some(PathBuf::from(s))),
        }
    }

    pub(super) fn mqtt(&mut self, t: &raw::RawMqtt, m: &mut MqttConfig) {
        let p = "mqtt";
        if let Some(b) = self.val(p, "enabled", &t.enabled) {
            m.enabled = b;
        }
        if let Some(b) = self.val(p, "embedded", &t.embedded) {
            m.embedded = b;
        }
        if let Some(v) = self.val(p, "listen", &t.listen) {
            match v.parse() {
                Ok(a) => m.listen = a,
                Err(_) => self.err(
                    "mqtt.listen",
                    format!("mqtt.listen: `{v}` is not an address:port (e.g. \"127.0.0.1:1883\")"),
                ),
            }
        }
        if let Some(v) = self.text(p, "broker", &t.broker, 300) {
            match parse_broker_url(&v) {
                Ok(_) => m.broker = v,
                Err(e) => self.err(
                    "mqtt.broker",
                    format!(
                        "mqtt.broker: `{v}` {e} (e.g. \"mqtt://127.0.0.1:1883\" or \"mqtts://broker.example:8883\")"
                    ),
                ),
            }
        }
        if let Some(v) = self.val(p, "prefix", &t.prefix) {
            // The displays' rule: a prefix they cannot read is refused here.
            match Topics::new(&v) {
                Ok(_) => m.prefix = v,
                Err(_) => self.err(
                    "mqtt.prefix",
                    format!("mqtt.prefix: {} must be {PREFIX_RULE}", quoted(&v)),
                ),
            }
        }
        if let Some(v) = self.val(p, "client_id", &t.client_id) {
            let plain = v.replace("{site}", "").replace("{bed}", "");
            if v.is_empty()
                || v.len() > 64
                || !plain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                self.err(
                    "mqtt.client_id",
                    format!(
                        "mqtt.client_id: {} must be 1-64 letters, digits, '-' or '_' (placeholders {{site}} and {{bed}} allowed)",
                        quoted(&v)
                    ),
                );
            } else {
                m.client_id = v;
            }
        }
        for (key, v, slot) in [
            (
                "credentials_file",
                &t.credentials_file,
                &mut m.credentials_file,
            ),
            ("ca_file", &t.ca_file, &mut m.ca_file),
            ("client_cert", &t.client_cert, &mut m.client_cert),
            ("client_key", &t.client_key, &mut m.client_key),
        ] {
            if let Some(path) = self.optional_path(key, v) {
                *slot = path;
            }
        }
        if let Some(v) = self.val(p, "protocol", &t.protocol) {
            match crate::mqtt::wire::Protocol::parse(&v) {
                Some(proto) => m.protocol = proto,
                None => self.err(
                    "mqtt.protocol",
                    format!(
                        "mqtt.protocol: {} must be \"5\" (MQTT 5, the default) or \"3.1.1\" (for a broker that does not speak MQTT 5)",
                        quoted(&v)
                    ),
                ),
            }
        }
        if let Some(d) = self.dur_in(p, "vitals_expiry", &t.vitals_expiry, (SEC, HOUR), "") {
            m.vitals_expiry = d;
        }
        if let Some(d) = self.dur_in(p, "heartbeat", &t.heartbeat, (100 * MS, MIN), "") {
            m.heartbeat = d;
        }
        if let Some(d) = self.dur_in(
            p,
            "unreachable_after",
            &t.unreachable_after,
            (SEC, HOUR),
            "",
        ) {
            m.unreachable_after = d;
        }
        if let Some(d) = self.dur_in(p, "command_max_age", &t.command_max_age, (SEC, HOUR), "") {
            m.command_max_age = d;
        }
        match &t.state_dir {
            Some(Val(Ok(s))) if s == "auto" => m.state_dir = StateDir::Auto,
            v => {
                if let Some(dir) = self.text(p, "state_dir", v, MAX_PATH) {
                    m.state_dir = StateDir::Path(PathBuf::from(dir));
                }
            }
        }
        if let Some(n) = self.int_in(p, "outbox_max", &t.outbox_max, (10, 1_000_000)) {
            m.outbox_max = n as u32;
        }
        let tls = parse_broker_url(&m.broker).is_ok_and(|u| u.tls);
        if tls && !m.embedded && m.ca_file.is_none() {
            self.err(
                "mqtt.broker",
                format!(
                    "mqtt.ca_file: `{}` uses TLS: give the CA certificate file that signs the broker's certificate",
                    m.broker
                ),
            );
        }
        if m.client_cert.is_some() != m.client_key.is_some() {
            let at = if m.client_cert.is_some() {
                "mqtt.client_cert"
            } else {
                "mqtt.client_key"
            };
            self.err(
                at,
                "mqtt.client_cert and mqtt.client_key: give both or neither".into(),
            );
        }
    }
}
