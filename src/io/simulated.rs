//! The in-process simulated monitor source.
//!
//! [`open`] starts a [`SimDevice`] for a `simulated = "scenario"` source in
//! a tokio task and returns the host's end of an in-memory byte pipe: the
//! source task reads it exactly like a serial port (bytes, not shortcuts),
//! and what the decoder sends back (GE requests, Philips polls) reaches the
//! device the same way. The device runs on the daemon's [`Clock`], so
//! `speed = 60` plays an hour of session per real minute, and its instants
//! are the daemon's: the scenario starts when the daemon does. A reopened
//! source (after a hang-up) gets a fresh device that continues the same
//! session from the clock's current time.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

use super::clock::Clock;
use crate::config::{Link, SourceConfig};
use crate::sim::{ScenarioError, SimDevice};

/// Capacity of the in-memory pipe, each way.
const PIPE_CAPACITY: usize = 64 * 1024;

/// Why a simulated monitor could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimulatedError {
    /// The source's link is not `simulated`.
    #[error("source {0}: not a simulated source")]
    NotSimulated(String),
    /// The scenario is neither built in nor a readable, valid file.
    #[error("source {name}: {error}")]
    Scenario {
        /// The source.
        name: String,
        /// What is wrong with its scenario.
        error: ScenarioError,
    },
}

/// Starts a simulated monitor for the source and returns the host's end of
/// its byte stream. Must be called within a tokio runtime.
pub fn open(cfg: &SourceConfig, clock: Clock) -> Result<DuplexStream, SimulatedError> {
    let Link::Simulated { scenario, seed, .. } = &cfg.link else {
        return Err(SimulatedError::NotSimulated(cfg.name.clone()));
    };
    let scenario =
        crate::sim::find_scenario(scenario).map_err(|error| SimulatedError::Scenario {
            name: cfg.name.clone(),
            error,
        })?;
    let device = SimDevice::new(&scenario, cfg.protocol, *seed);
    let (host, monitor) = tokio::io::duplex(PIPE_CAPACITY);
    let name = cfg.name.clone();
    tokio::spawn(async move {
        if let Err(e) = drive(device, monitor, clock).await {
            tracing::debug!(source = %name, "simulated monitor stopped: {e}");
        }
    });
    Ok(host)
}

/// Runs `device` against `stream` on `clock` until the other end goes away
/// (end of file or a failed write): sleeps until the device's next
/// deadline, writes what it sends, and hands it what the host writes.
pub async fn drive<S>(mut device: SimDevice, stream: S, clock: Clock) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite,
{
    let (mut rx, mut tx) = tokio::io::split(stream);
    let mut out = Vec::with_capacity(1024);
    let mut buf = [0u8; 512];
    loop {
        device.handle_timeout(clock.now());
        while device.poll_transmit(&mut out) {
            tx.write_all(&out).await?;
            out.clear();
        }
        tx.flush().await?;
        let wake = device
            .poll_timeout()
            .map(|t| tokio::time::Instant::from_std(clock.real_at(t)));
        tokio::select! {
            r = rx.read(&mut buf) => match r? {
                0 => return Ok(()),
                n => device.handle_bytes(clock.now(), &buf[..n]),
            },
            _ = sleep_until(wake) => {}
        }
    }
}

/// Sleeps until `t`, or forever.
async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProtocolKind;
    use crate::protocol::Output;
    use crate::sim::Scenario;
    use crate::time::Instant;
    use crate::vitals::{Measurement, SourceId};
    use std::time::Duration;

    fn source(protocol: ProtocolKind, scenario: &str) -> SourceConfig {
        SourceConfig {
            name: "sim".into(),
            protocol,
            link: Link::Simulated {
                scenario: scenario.into(),
                speed: 600.0,
                seed: 1,
            },
            timeout: Duration::from_secs(10),
            vitals: crate::vitals::Vital::ALL.to_vec(),
        }
    }

    /// Reads the pipe for `real` time, decoding with the host side of the
    /// protocol and writing its requests back; returns the decoded outputs.
    async fn read_for(
        mut pipe: DuplexStream,
        kind: ProtocolKind,
        clock: Clock,
        real: Duration,
    ) -> Vec<Output> {
        let mut host = crate::pipeline::open_protocol(kind, SourceId(0));
        let mut outputs = Vec::new();
        let mut buf = [0u8; 512];
        let mut req = Vec::new();
        let deadline = tokio::time::Instant::now() + real;
        loop {
            host.handle_timeout(clock.now());
            while host.poll_transmit(&mut req) {
                pipe.write_all(&req).await.unwrap();
                req.clear();
            }
            let tick = tokio::time::sleep(Duration::from_millis(5));
            tokio::select! {
                r = pipe.read(&mut buf) => {
                    let n = r.unwrap();
                    assert!(n > 0, "the simulated monitor hung up");
                    host.handle_bytes(clock.now(), &buf[..n]);
                }
                _ = tick => {}
            }
            outputs.extend(std::iter::from_fn(|| host.poll_output()));
            if tokio::time::Instant::now() >= deadline {
                return outputs;
            }
        }
    }

    fn spo2_values(outputs: &[Output]) -> Vec<f32> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Reading(r) => match r.measurement {
                    Measurement::SpO2(s) => s.get(),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn simulated_source_delivers_bytes_that_decode_in_accelerated_time() {
        // 600 x: 0.4 s of real time is 4 minutes of session.
        let clock = Clock::start(600.0);
        let pipe = open(&source(ProtocolKind::Masimo, "typical"), clock).unwrap();
        let outputs = read_for(
            pipe,
            ProtocolKind::Masimo,
            clock,
            Duration::from_millis(400),
        )
        .await;
        let spo2 = spo2_values(&outputs);
        // One line per simulated second: about 240 lines; allow for a slow
        // machine, but far more than real time could give.
        assert!(spo2.len() >= 60, "{} SpO2 readings", spo2.len());
        assert!(spo2.iter().all(|v| (94.0..=100.0).contains(v)), "{spo2:?}");
        let drops = outputs
            .iter()
            .filter(|o| matches!(o, Output::Dropped(_)))
            .count();
        assert_eq!(drops, 0);
        assert!(clock.now() >= Instant::from_secs(200));
    }

    #[tokio::test]
    async fn a_talking_protocol_answers_the_host_through_the_pipe() {
        // GE sends nothing until the decoder's request reaches it.
        let clock = Clock::start(600.0);
        let pipe = open(&source(ProtocolKind::Ge, "typical"), clock).unwrap();
        let outputs = read_for(pipe, ProtocolKind::Ge, clock, Duration::from_millis(300)).await;
        let spo2 = spo2_values(&outputs);
        assert!(spo2.len() >= 10, "{} SpO2 readings", spo2.len());
        let nibp = outputs.iter().any(
            |o| matches!(o, Output::Reading(r) if matches!(r.measurement, Measurement::Nibp(_))),
        );
        assert!(nibp, "the first NIBP completes at 1 min");
    }

    #[tokio::test]
    async fn unknown_scenario_is_named_with_the_builtins() {
        let clock = Clock::start(1.0);
        let err = open(&source(ProtocolKind::Line, "no-such-scenario"), clock).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("source sim"), "{msg}");
        assert!(msg.contains("no-such-scenario"), "{msg}");
        for name in Scenario::builtin_names() {
            assert!(msg.contains(name), "{msg}");
        }
    }

    #[tokio::test]
    async fn the_device_stops_when_the_host_end_is_dropped() {
        let clock = Clock::start(60.0);
        let (host, monitor) = tokio::io::duplex(1024);
        let scenario = Scenario::builtin("typical").unwrap().unwrap();
        let device = SimDevice::new(&scenario, ProtocolKind::Line, 1);
        let task = tokio::spawn(drive(device, monitor, clock));
        drop(host);
        let done = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(done.is_ok(), "drive returned");
    }
}
