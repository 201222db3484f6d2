//! `[[source]]`: name, protocol, exactly one link (serial with its line
//! settings, TCP, simulated), timeout and vitals.

use core::time::Duration;
use std::path::PathBuf;

use super::super::raw;
use super::super::{Link, Parity, ProtocolKind, SourceConfig};
use super::{Check, HOUR, MAX_PATH, SEC};
use crate::vitals::Vital;

impl Check {
    pub(super) fn source(&mut self, path: &str, t: &raw::RawSource) -> Option<SourceConfig> {
        self.missing(path, "name", t.name.is_some());
        let name = self.name(path, "name", &t.name, "");
        self.missing(path, "protocol", t.protocol.is_some());
        let protocol = self.val(path, "protocol", &t.protocol).and_then(|p| {
            let found = ProtocolKind::ALL.into_iter().find(|k| k.key() == p);
            if found.is_none() {
                let names: Vec<_> = ProtocolKind::ALL.iter().map(|k| k.key()).collect();
                self.err(
                    &format!("{path}.protocol"),
                    format!(
                        "{path}.protocol: unknown protocol `{p}` (expected one of: {})",
                        names.join(", ")
                    ),
                );
            }
            found
        });
        let links: Vec<&str> = [
            ("serial", t.serial.is_some()),
            ("tcp", t.tcp.is_some()),
            ("simulated", t.simulated.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect();
        if links.len() != 1 {
            self.err(
                path,
                format!(
                    "{path}: give exactly one of serial = \"/dev/...\", tcp = \"host:port\" or simulated = \"scenario\" (found {})",
                    if links.is_empty() { "none".to_owned() } else { links.join(" and ") }
                ),
            );
        }
        let timeout = self
            .dur_in(path, "timeout", &t.timeout, (SEC, HOUR), "")
            .unwrap_or(Duration::from_secs(10));
        let vitals = match self.val(path, "vitals", &t.vitals) {
            None => Vital::ALL.to_vec(),
            Some(names) => {
                let key = format!("{path}.vitals");
                let mut out = Vec::new();
                for n in names {
                    match n.parse::<Vital>() {
                        Ok(v) if !out.contains(&v) => out.push(v),
                        Ok(v) => self.err(&key, format!("{key}: `{v}` listed twice")),
                        Err(e) => self.err(&key, format!("{key}: {e}")),
                    }
                }
                if out.is_empty() {
                    self.err(&key, format!("{key}: list at least one vital"));
                }
                out
            }
        };
        let link = match links.first().copied() {
            Some("serial") if links.len() == 1 => {
                let device = self.text(path, "serial", &t.serial, MAX_PATH);
                let mut settings = protocol.unwrap_or(ProtocolKind::Line).default_serial();
                if let Some(b) = self.int_in(path, "baud", &t.baud, (50, 4_000_000)) {
                    settings.baud = b as u32;
                }
                if let Some(p) = self.val(path, "parity", &t.parity) {
                    match p.as_str() {
                        "none" => settings.parity = Parity::None,
                        "even" => settings.parity = Parity::Even,
                        "odd" => settings.parity = Parity::Odd,
                        _ => self.err(
                            &format!("{path}.parity"),
                            format!("{path}.parity: `{p}` (expected none, even or odd)"),
                        ),
                    }
                }
                if let Some(s) = self.int_in(path, "stop_bits", &t.stop_bits, (1, 2)) {
                    settings.stop_bits = s as u8;
                }
                if let Some(f) = self.val(path, "rts_cts", &t.rts_cts) {
                    settings.rts_cts = f;
                }
                device.map(|d| Link::Serial {
                    device: PathBuf::from(d),
                    settings,
                })
            }
            Some("tcp") if links.len() == 1 => {
                self.text(path, "tcp", &t.tcp, 260).and_then(|a| {
                    let ok = a.rsplit_once(':').is_some_and(|(h, p)| {
                        !h.is_empty() && h.len() <= 253 && p.parse::<u16>().is_ok()
                    });
                    if !ok {
                        self.err(
                            &format!("{path}.tcp"),
                            format!("{path}.tcp: `{a}` is not host:port with a port up to 65535 (e.g. \"10.1.2.3:4001\")"),
                        );
                    }
                    ok.then_some(Link::Tcp { address: a })
                })
            }
            Some("simulated") if links.len() == 1 => {
                let scenario = self.text(path, "simulated", &t.simulated, MAX_PATH);
                let speed = self.val(path, "speed", &t.speed).unwrap_or(1.0);
                let speed_ok = speed > 0.0 && speed <= 10_000.0;
                self.bound(&format!("{path}.speed"), speed_ok, speed, "above 0 and at most 10000");
                let seed = self.int_in(path, "seed", &t.seed, (0, i64::MAX)).unwrap_or(1);
                scenario.filter(|_| speed_ok).map(|scenario| Link::Simulated {
                    scenario,
                    speed,
                    seed: seed as u64,
                })
            }
            _ => None,
        };
        if links != ["serial"] {
            for (k, present) in [
                ("baud", t.baud.is_some()),
                ("parity", t.parity.is_some()),
                ("stop_bits", t.stop_bits.is_some()),
                ("rts_cts", t.rts_cts.is_some()),
            ] {
                if present {
                    let key = format!("{path}.{k}");
                    self.err(&key, format!("{key}: only applies to serial sources"));
                }
            }
        }
        if links != ["simulated"] {
            for (k, present) in [("speed", t.speed.is_some()), ("seed", t.seed.is_some())] {
                if present {
                    let key = format!("{path}.{k}");
                    self.err(&key, format!("{key}: only applies to simulated sources"));
                }
            }
        }
        Some(SourceConfig {
            name: name?,
            protocol: protocol?,
            link: link?,
            timeout,
            vitals,
        })
    }
}
