//! `vigil record inspect`: what a recording holds, by replaying it. The
//! figures are computed here from a loaded [`Session`]; [`Summary::write_to`]
//! prints them as the command shows them.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use crate::engine::{EventKind, Phase, Priority};
use crate::pipeline::Input;
use crate::replay::{self, clock_offset, Session, Step};
use crate::time::Instant;
use crate::vitals::{Measurement, Vital};

/// Gaps listed per source (the count covers all).
const GAPS_LISTED: usize = 10;

/// One source of a recording.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceSummary {
    /// Its configured name.
    pub name: String,
    /// Its protocol's key.
    pub protocol: &'static str,
    /// Its configured timeout.
    pub timeout: Duration,
    /// Bytes it delivered.
    pub bytes: u64,
    /// Silences longer than its timeout: since the session start, length.
    pub gaps: Vec<(Duration, Duration)>,
}

/// What a recording holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The metadata shown (version, site, bed, start, stop, speed), in order.
    pub meta: Vec<(&'static str, String)>,
    /// From the first record to the last.
    pub duration: Duration,
    /// Bytes on disk.
    pub size: u64,
    /// Every configured source.
    pub sources: Vec<SourceSummary>,
    /// Readings per vital (`Vital::index`), and how many were not valid.
    pub readings: [(u64, u64); Vital::COUNT],
    /// Alarm starts per (kind, priority).
    pub alarm_starts: BTreeMap<(&'static str, Priority), u32>,
    /// Commands given.
    pub commands: u64,
    /// A corrupt or torn tail: where, and why.
    pub corrupt_tail: Option<(u64, String)>,
}

/// Summarises a loaded recording (its inputs replayed through the pipeline).
pub fn summarise(session: &Session) -> Summary {
    let meta = [
        "vigil_version",
        "site",
        "bed",
        "started",
        "stopped",
        "speed",
    ]
    .into_iter()
    .filter_map(|k| session.meta(k).map(|v| (k, v.to_owned())))
    .collect();
    let since_start =
        |t: Instant| Duration::from_nanos(t.as_nanos().saturating_sub(session.start.as_nanos()));
    let mut sources: Vec<SourceSummary> = session
        .config
        .sources
        .iter()
        .map(|s| SourceSummary {
            name: s.name.clone(),
            protocol: s.protocol.key(),
            timeout: s.timeout,
            bytes: 0,
            gaps: Vec::new(),
        })
        .collect();
    let mut last_seen: Vec<Option<Instant>> = vec![None; sources.len()];
    let mut commands = 0;
    for (at, step) in &session.steps {
        match step {
            Step::Input(Input::Bytes { source, data }) if source.index() < sources.len() => {
                let s = &mut sources[source.index()];
                s.bytes += data.len() as u64;
                if let Some(prev) = last_seen[source.index()] {
                    let gap = *at - prev;
                    if gap > s.timeout {
                        s.gaps.push((since_start(prev), gap));
                    }
                }
                last_seen[source.index()] = Some(*at);
            }
            Step::Input(Input::Command(_)) => commands += 1,
            _ => {}
        }
    }
    let mut readings = [(0u64, 0u64); Vital::COUNT];
    let mut alarm_starts = BTreeMap::new();
    replay::run(
        session,
        None,
        |ev| match ev.kind {
            EventKind::Reading(r) => {
                let mut count = |v: Vital, valid: bool| {
                    readings[v.index()].0 += 1;
                    readings[v.index()].1 += u64::from(!valid);
                };
                match r.measurement {
                    Measurement::Nibp(b) => {
                        count(Vital::NibpSystolic, b.systolic.validity.is_valid());
                        count(Vital::NibpDiastolic, b.diastolic.validity.is_valid());
                        count(Vital::NibpMean, b.mean.validity.is_valid());
                    }
                    m => {
                        if let Some((v, s)) = m.continuous() {
                            count(v, s.validity.is_valid());
                        }
                    }
                }
            }
            EventKind::Alarm(a) if a.phase == Phase::Start => {
                *alarm_starts.entry((a.kind.key(), a.priority)).or_insert(0) += 1;
            }
            _ => {}
        },
        |_| {},
    );
    Summary {
        meta,
        duration: session.last() - session.start,
        size: session.size,
        sources,
        readings,
        alarm_starts,
        commands,
        corrupt_tail: session
            .corrupt_tail
            .as_ref()
            .map(|(at, why)| (*at, why.to_string())),
    }
}

impl Summary {
    /// Writes the summary as `vigil record inspect` shows it, `name` being
    /// the recording's file name.
    pub fn write_to(&self, name: &str, out: &mut impl Write) -> io::Result<()> {
        let offset = |d: Duration| clock_offset(Instant::from_nanos(d.as_nanos() as u64));
        writeln!(out, "recording   {name}")?;
        for (key, v) in &self.meta {
            writeln!(out, "{key:<11} {v}")?;
        }
        writeln!(
            out,
            "duration    {} ({} bytes on disk)",
            offset(self.duration),
            self.size
        )?;
        writeln!(out, "sources")?;
        for s in &self.sources {
            writeln!(
                out,
                "  {:<12} {:<20} {} bytes, {} gap(s) longer than its {} timeout",
                s.name,
                s.protocol,
                s.bytes,
                s.gaps.len(),
                crate::config::format_duration(s.timeout)
            )?;
            for (from, len) in s.gaps.iter().take(GAPS_LISTED) {
                writeln!(
                    out,
                    "      gap at {} for {:.1} s",
                    offset(*from),
                    len.as_secs_f64()
                )?;
            }
        }
        writeln!(out, "readings per vital (not valid)")?;
        for v in Vital::ALL {
            let (n, invalid) = self.readings[v.index()];
            writeln!(out, "  {:<10} {n:>8} ({invalid})", v.key())?;
        }
        writeln!(out, "alarms started")?;
        if self.alarm_starts.is_empty() {
            writeln!(out, "  none")?;
        }
        for ((kind, p), count) in self.alarm_starts.iter().rev() {
            writeln!(out, "  {kind:<14} {p:<6} {count}")?;
        }
        writeln!(out, "commands    {}", self.commands)?;
        match &self.corrupt_tail {
            None => writeln!(out, "corrupt     none"),
            Some((at, why)) => writeln!(out, "corrupt     tail from byte {at} ignored ({why})"),
        }
    }
}
