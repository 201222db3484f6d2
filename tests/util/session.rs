//! A session on an engine, as the tests and the engine bench drive it: one
//! monitor, a session started at zero, a dose when the baselines are in.

use vigil::engine::{Command, Engine, EngineConfig};
use vigil::time::Instant;
use vigil::vitals::ShortText;

/// The default engine settings for one source named `monitor`.
pub fn one_monitor() -> EngineConfig {
    EngineConfig {
        source_names: vec!["monitor".into()],
        ..EngineConfig::default()
    }
}

/// Starts the session `code` at time zero.
pub fn start(e: &mut Engine, code: &str) {
    e.handle_command(
        Instant::ZERO,
        Command::StartSession {
            session: ShortText::new(code),
        },
    )
    .expect("a session starts on an idle engine");
}

/// Gives the first dose (intramuscular, no amount or note) at `at`.
pub fn dose(e: &mut Engine, at: Instant) {
    e.handle_command(
        at,
        Command::Dose {
            route: ShortText::new("im"),
            amount: None,
            note: ShortText::empty(),
        },
    )
    .expect("a dose is accepted in a started session");
}
