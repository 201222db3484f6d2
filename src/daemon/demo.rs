//! `vigil demo`: the embedded demo configuration with a simulated monitor,
//! and the session commands a nurse would give, on the scenario's timeline.

use std::time::Duration;

use crate::config::{self, Config, Link, ProtocolKind};
use crate::engine::Command;
use crate::vitals::ShortText;

/// Why the demo cannot start. Each names the flag to change.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The embedded demo configuration does not parse (a build defect).
    #[error("the embedded demo configuration: {0}")]
    Config(#[from] config::ConfigError),
    /// No such scenario, or its file does not load.
    #[error("scenario `{name}` (built in: {builtin}): {source}")]
    Scenario {
        /// What was asked for.
        name: String,
        /// The built-in names.
        builtin: String,
        /// Why it cannot be used.
        source: crate::sim::ScenarioError,
    },
    /// The embedded demo configuration has no source (a build defect).
    #[error("the embedded demo configuration has no [[source]]")]
    NoSource,
    /// No such protocol.
    #[error("unknown protocol `{name}` (expected one of: {expected})")]
    Protocol {
        /// What was asked for.
        name: String,
        /// The protocol keys.
        expected: String,
    },
    /// The speed is out of range.
    #[error("--speed must be between 0 and 10000 (got {0})")]
    Speed(f64),
}

/// A demo ready to run.
#[derive(Debug)]
pub struct Demo {
    /// The configuration, its one source simulated.
    pub config: Config,
    /// The nurse's commands at their session times.
    pub script: Vec<(Duration, Command)>,
    /// How much session time to run (the scenario plus a minute).
    pub run_for: Duration,
    /// One line telling what is about to happen.
    pub banner: String,
}

/// The demo of `scenario` (a built-in name or a file) spoken in `protocol`
/// (default: the demo configuration's), at `speed` times real time.
pub fn prepare(
    scenario: &str,
    protocol: Option<&str>,
    speed: f64,
    seed: u64,
) -> Result<Demo, DemoError> {
    let mut cfg = config::parse(config::DEMO_TOML, "<embedded demo>")?;
    let script = crate::sim::find_scenario(scenario).map_err(|source| DemoError::Scenario {
        name: scenario.to_owned(),
        builtin: crate::sim::Scenario::builtin_names()
            .collect::<Vec<_>>()
            .join(", "),
        source,
    })?;
    if !(speed > 0.0 && speed <= 10_000.0) {
        return Err(DemoError::Speed(speed));
    }
    let Some(source) = cfg.sources.first_mut() else {
        return Err(DemoError::NoSource);
    };
    if let Some(p) = protocol {
        source.protocol = ProtocolKind::ALL
            .into_iter()
            .find(|k| k.key() == p)
            .ok_or_else(|| DemoError::Protocol {
                name: p.to_owned(),
                expected: ProtocolKind::ALL
                    .iter()
                    .map(|k| k.key())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
    }
    source.link = Link::Simulated {
        scenario: scenario.to_owned(),
        speed,
        seed,
    };
    let mut commands = vec![(
        Duration::ZERO,
        Command::StartSession {
            session: ShortText::new("DEMO-0001"),
        },
    )];
    if let Some(dose) = script.dose {
        commands.push((
            dose.at,
            Command::Dose {
                route: ShortText::new("im"),
                amount: crate::engine::DoseAmount::new(0.5, crate::engine::DoseUnit::MgPerKg),
                note: ShortText::new("ketamine (simulated)"),
            },
        ));
        let recovery =
            dose.at + dose.peak_after + (dose.settle_by.saturating_sub(dose.peak_after)) / 2;
        if recovery < script.duration {
            commands.push((recovery, Command::StartRecovery));
        }
    }
    commands.push((script.duration, Command::EndSession));
    let banner = format!(
        "vigil demo: scenario `{}` ({}), {} at {speed}x: {} of session in {:.0} s. Ctrl-C stops.",
        script.name,
        script.description,
        cfg.sources[0].protocol.key(),
        crate::replay::clock_offset(crate::time::Instant::from_nanos(
            script.duration.as_nanos() as u64
        )),
        script.duration.as_secs_f64() / speed
    );
    Ok(Demo {
        config: cfg,
        script: commands,
        run_for: script.duration + Duration::from_secs(60),
        banner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_starts_a_session_doses_and_ends_it() {
        let demo = prepare("demo", None, 60.0, 1).unwrap();
        assert!(matches!(
            demo.config.sources[0].link,
            Link::Simulated { speed, .. } if speed == 60.0
        ));
        let keys: Vec<&str> = demo.script.iter().map(|(_, c)| c.key()).collect();
        assert_eq!(keys.first(), Some(&"start_session"), "{keys:?}");
        assert_eq!(keys.last(), Some(&"end_session"), "{keys:?}");
        assert!(keys.contains(&"dose"), "{keys:?}");
        let times: Vec<Duration> = demo.script.iter().map(|(t, _)| *t).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        assert!(demo.run_for > *times.last().unwrap());
    }

    #[test]
    fn bad_flags_name_what_to_change() {
        let e = prepare("no-such-scenario", None, 60.0, 1).unwrap_err();
        assert!(e.to_string().contains("built in: "), "{e}");
        let e = prepare("demo", Some("morse"), 60.0, 1).unwrap_err();
        assert!(e.to_string().contains("vigil-line"), "{e}");
        let e = prepare("demo", None, 0.0, 1).unwrap_err();
        assert!(e.to_string().contains("--speed"), "{e}");
    }
}
