//! Configuration files the tests and benches write out, as a user would.

use std::path::Path;

/// A daemon with one vigil-line source (`link`: `serial = "..."` or
/// `tcp = "..."`) and its MQTT sink on a Mosquitto at `port`; SpO2's low and
/// rate alarms off, so that `spo2 80` / `spo2 97` start and end exactly one
/// alarm (critical low). `extra` lines go into `[mqtt]` (or open sections of
/// their own).
pub fn line_daemon(
    link: &str,
    port: u16,
    state: &Path,
    site: &str,
    bed: &str,
    extra: &str,
) -> String {
    format!(
        r#"
[site]
site = "{site}"
bed = "{bed}"

[[source]]
name = "monitor"
protocol = "vigil-line"
{link}
timeout = "30s"

[alarms.spo2]
low = "off"
rate = "off"

[mqtt]
embedded = false
broker = "mqtt://127.0.0.1:{port}"
state_dir = "{}"
{extra}
"#,
        state.display()
    )
}
