//! The displays' state model, shared by the web board and the terminal view:
//! what the feed said per bed ([`Board::apply`]) plus the current time in,
//! what to show out ([`Board::view`]), including the NO DATA decision.
//!
//! A display is blind, and says so with NO DATA instead of numbers, when
//! its broker connection is down, when the bed's daemon is offline (Last
//! Will or shutdown), when no heartbeat arrived within the heartbeat
//! timeout, or when it has never heard from the bed. Heartbeat lateness is
//! measured on the display's own clock from the message's arrival (a
//! retained heartbeat counts from its own timestamp, so an old retained one
//! never looks fresh).
//!
//! One clock: every elapsed time the board shows (alarm "since", NIBP
//! age, time since dose, audio pause left) is measured on vigil's clock,
//! the clock of the messages' `time`, never the display's own: the latest
//! current message (heartbeat, vitals, snapshot, result) anchors it and its
//! rate is estimated, so an accelerated demo clock or a skewed machine
//! reads right ([`DaemonClock`]).
//!
//! Session hygiene: a new session clears the bed's feed lines, history and
//! result line; a bed whose vigil stopped cleanly reads "stopped" (not NO
//! DATA, not counted as blind) and can be removed ([`Board::remove`]); feed
//! lines stay in time order.
//!
//! Values: a value the monitor flags questionable is shown marked `?`
//! (NIBP: each component on its own), an alarm on one says so; an invalid
//! or unavailable value is never a number, and an NIBP without its mean
//! shows none. RR and EtCO2 get tiles only on beds whose monitor sends them.
//!
//! Limits and history: each vital carries the alarm limits in force (the
//! daemon's retained `limits`) for its sparkline, and each bed keeps this
//! session's alarms, one row per occurrence (onset, end, highest priority,
//! acknowledgements), in onset order on vigil's clock and bounded
//! ([`HISTORY_MAX`]).
//!
//! Pure: `now` is an argument everywhere. Depends on [`super::feed`] and
//! [`crate::engine`]'s alarm vocabulary.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::feed::{
    Alarm, BedKey, CommandResult, Envelope, LimitValue, Message, Session, Status, VitalLimits,
    VitalReading,
};
use super::site::{Outage, SiteTrack, SiteView};
use crate::alarm_text::{alarm_text, vital_name};
use crate::engine::{AlarmState, Priority};

/// Timeouts of the displays.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// No heartbeat for this long: NO DATA (three heartbeats of the daemon).
    pub heartbeat_timeout: Duration,
    /// A continuous vital (HR, SpO2) older than this is not shown.
    pub vital_stale_after: Duration,
    /// A command without a result after this long is reported unanswered.
    pub result_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            heartbeat_timeout: Duration::from_secs(15),
            vital_stale_after: Duration::from_secs(30),
            result_timeout: Duration::from_secs(10),
        }
    }
}

/// The display's link to the broker.
#[derive(Clone, Debug, PartialEq)]
enum Link {
    Connecting,
    Up,
    Down { since: SystemTime, why: String },
}

/// Why a bed shows NO DATA.
#[derive(Clone, Debug, PartialEq)]
pub enum NoData {
    /// The display cannot reach the broker.
    BrokerUnreachable {
        /// Since when (None while first connecting).
        since: Option<SystemTime>,
        /// The error.
        why: String,
    },
    /// Nothing heard from this bed yet.
    NeverHeard,
    /// The daemon is gone (Last Will `connection_lost`, or `shutdown`).
    Offline {
        /// The reason it gave.
        reason: String,
    },
    /// No heartbeat within the timeout.
    HeartbeatLate {
        /// Time since the last heartbeat.
        age: Duration,
    },
}

impl NoData {
    /// The banner text.
    pub fn text(&self, now: SystemTime) -> String {
        match self {
            NoData::BrokerUnreachable { since, why } => match since {
                Some(t) => format!("broker unreachable for {} ({why})", human(age(now, *t))),
                None => format!("connecting to the broker ({why})"),
            },
            NoData::NeverHeard => "nothing received from vigil for this bed yet".into(),
            NoData::Offline { reason } if reason == "shutdown" => {
                "vigil stopped on this bed (shutdown)".into()
            }
            NoData::Offline { reason } => format!("vigil offline on this bed ({reason})"),
            NoData::HeartbeatLate { age } => {
                format!("no heartbeat for {}", human(*age))
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Beat {
    online: bool,
    reason: String,
    /// When the heartbeat counts from (display clock).
    at: SystemTime,
    seq: u64,
    sources: Vec<(String, bool, String)>,
}

#[derive(Clone, Debug, Default)]
struct Track {
    latest: Option<VitalReading>,
    /// Valid values with their time, oldest first.
    history: VecDeque<(SystemTime, f64)>,
}

/// How far back a vital's values are kept: the sparkline's span.
const HISTORY: Duration = Duration::from_secs(45 * 60);
/// Points a sparkline holds at most (the history is thinned to this).
const SPARK_POINTS: usize = 90;

impl Track {
    fn push(&mut self, r: VitalReading, now: SystemTime) {
        let t = r.time.unwrap_or(now);
        if let (Some(v), true) = (r.value, r.validity == "valid") {
            if self.history.back().is_none_or(|(last, _)| *last < t) {
                self.history.push_back((t, v));
            }
        }
        while self.history.len() > 4096
            || self
                .history
                .front()
                .is_some_and(|(old, _)| age(t, *old) > HISTORY)
        {
            self.history.pop_front();
        }
        self.latest = Some(r);
    }
}

/// vigil's clock as seen through its messages: `theirs` is a message's
/// `time`, `ours` the display's clock when it arrived.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DaemonClock {
    anchor: (SystemTime, SystemTime),
    last: (SystemTime, SystemTime),
    /// The last sample jumped: the next one tells an offset from a pace.
    jumped: bool,
}

impl DaemonClock {
    /// A clock seen once.
    pub fn new(theirs: SystemTime, ours: SystemTime) -> DaemonClock {
        DaemonClock {
            anchor: (theirs, ours),
            last: (theirs, ours),
            jumped: false,
        }
    }

    /// Another current message. A clock that went back (a restarted or
    /// replaying vigil) starts the estimate again. One that is off the
    /// estimate is taken as a new offset (skew, a restart); off again at
    /// the next message, it runs at another pace (a demo's `--speed`),
    /// measured from the last message.
    pub fn sample(&mut self, theirs: SystemTime, ours: SystemTime) {
        if theirs + Duration::from_secs(1) < self.last.0 {
            *self = DaemonClock::new(theirs, ours);
            return;
        }
        if theirs < self.last.0 {
            return;
        }
        let predicted = self.now(ours);
        let off = age(theirs, predicted).max(age(predicted, theirs));
        let ours_step = age(ours, self.last.1).as_secs_f64();
        if off > Duration::from_secs(5) && ours_step > 0.0 {
            let step = age(theirs, self.last.0).as_secs_f64() / ours_step;
            let rate = self.rate();
            if step > 2.0 * rate || step < rate / 2.0 {
                if !self.jumped {
                    *self = DaemonClock::new(theirs, ours);
                    self.jumped = true;
                    return;
                }
                self.anchor = self.last;
            }
        }
        self.jumped = false;
        self.last = (theirs, ours);
    }

    /// vigil's rate against ours (1 unless clearly otherwise, e.g. a demo
    /// at `--speed 60`).
    pub fn rate(&self) -> f64 {
        let ours = age(self.last.1, self.anchor.1).as_secs_f64();
        if ours < 1.0 {
            return 1.0;
        }
        let rate = age(self.last.0, self.anchor.0).as_secs_f64() / ours;
        if (rate - 1.0).abs() < 0.05 {
            1.0
        } else {
            rate.clamp(0.01, 10_000.0)
        }
    }

    /// vigil's time now (`now` on the display's clock).
    pub fn now(&self, now: SystemTime) -> SystemTime {
        self.last.0 + age(now, self.last.1).mul_f64(self.rate())
    }
}

#[derive(Clone, Debug)]
struct Pending {
    id: String,
    what: String,
    sent: SystemTime,
}

#[derive(Clone, Debug, Default)]
struct Bed {
    beat: Option<Beat>,
    vitals: BTreeMap<String, Track>,
    vitals_seq: u64,
    alarms: BTreeMap<String, Alarm>,
    /// Highest `seq` seen on the `alarms` topic (de-duplicates events).
    events_seq: u64,
    /// `seq` of the latest `alarms/active` snapshot applied.
    active_seq: u64,
    /// Which alarm events (`stream_seq`) arrived, and which are missing.
    alarms_stream: StreamOrder,
    /// `seq` of the latest event applied to each alarm in `alarms`: an event
    /// that arrives late (reordered on the way) must not roll its alarm back.
    alarm_seq: BTreeMap<String, u64>,
    /// vigil's clock, from its current messages.
    daemon_clock: Option<DaemonClock>,
    audio_paused_until: Option<SystemTime>,
    session: Option<Session>,
    session_seq: u64,
    /// The daemon's stream epoch last seen; `seq` compares only within it.
    epoch: Option<String>,
    pending: Vec<Pending>,
    result: Option<ResultView>,
    /// The limits in force by vital key, and the `seq` they came with.
    limits: BTreeMap<String, VitalLimits>,
    limits_seq: u64,
    /// This session's alarms, one row per occurrence, in onset order.
    history: VecDeque<HistoryRow>,
}

/// Occurrences of alarms a bed's history keeps at most (the oldest go).
pub const HISTORY_MAX: usize = 100;
/// Acknowledgements kept per occurrence at most.
const ACKS_MAX: usize = 16;

impl Bed {
    /// Records an alarm event (or a snapshot's alarm, `snapshot`) in the
    /// history: its occurrence is named by id and onset.
    fn record(&mut self, a: &Alarm, when: SystemTime, snapshot: bool) {
        let onset = a.onset.unwrap_or(when);
        let key = (a.id.as_str(), ms(onset));
        let at = match self
            .history
            .iter()
            .position(|r| (r.id.as_str(), r.onset_ms) == key)
        {
            Some(i) => i,
            None => {
                let row = HistoryRow {
                    id: a.id.clone(),
                    label: alarm_label(a),
                    priority: a.priority.key(),
                    onset: clock(onset),
                    onset_ms: ms(onset),
                    ended: None,
                    ended_ms: None,
                    acks: Vec::new(),
                };
                let i = self.history.partition_point(|r| r.onset_ms <= row.onset_ms);
                self.history.insert(i, row);
                if self.history.len() > HISTORY_MAX {
                    self.history.pop_front();
                    if i == 0 {
                        return;
                    }
                    i - 1
                } else {
                    i
                }
            }
        };
        let row = &mut self.history[at];
        if rank(a.priority) > rank_key(row.priority) {
            row.priority = a.priority.key();
        }
        if let Some(k) = &a.ack {
            let t = k.at.unwrap_or(when);
            let ack = AckRow {
                by: k.by.clone(),
                at: clock(t),
                at_ms: ms(t),
            };
            // Every later event of the alarm repeats its acknowledgement.
            let known = row
                .acks
                .iter()
                .any(|x| x.by == ack.by && x.at_ms.abs_diff(ack.at_ms) < 1000);
            if !known && row.acks.len() < ACKS_MAX {
                let i = row.acks.partition_point(|x| x.at_ms <= ack.at_ms);
                row.acks.insert(i, ack);
            }
        }
        if !snapshot && a.state == AlarmState::Ended {
            row.ended = Some(clock(when));
            row.ended_ms = Some(ms(when));
        }
    }

    /// Forgets every per-topic `seq` high-water mark (a new epoch).
    fn restart_order(&mut self) {
        self.vitals_seq = 0;
        self.events_seq = 0;
        self.active_seq = 0;
        self.alarms_stream = StreamOrder::default();
        self.alarm_seq.clear();
        self.session_seq = 0;
        self.limits_seq = 0;
        if let Some(beat) = &mut self.beat {
            beat.seq = 0;
        }
    }

    /// vigil's time now: its clock when heard from, else ours.
    fn vigil_now(&self, now: SystemTime) -> SystemTime {
        self.daemon_clock.map_or(now, |c| c.now(now))
    }

    /// vigil on this bed stopped cleanly (shutdown, not a Last Will).
    fn stopped(&self) -> bool {
        self.beat
            .as_ref()
            .is_some_and(|b| !b.online && b.reason == "shutdown")
    }
}

/// One line of the alarm feed (oldest first, in time order).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FeedLine {
    /// `HH:MM:SS` UTC of the event.
    pub time: String,
    /// The event's time, ms since the Unix epoch (vigil's clock).
    pub at_ms: u64,
    /// What happened, for people: `SpO2 low 86 % (limit 90 %) started`.
    pub text: String,
    /// Bed `site/bed`.
    pub bed: String,
    /// Alarm id.
    pub id: String,
    /// Phase.
    pub phase: String,
    /// Priority.
    pub priority: &'static str,
    /// Who acknowledged, for acknowledge phases.
    pub by: Option<String>,
}

const FEED_MAX: usize = 200;

/// How long a gap in a bed's alarm stream may stay open before the feed
/// says events were lost: a bridge that reorders (Mosquitto draining its
/// queue after a reconnect) fills it within about a second.
pub const GAP_WAIT: Duration = Duration::from_secs(5);
/// An open gap is settled (a permanent feed line) after this long.
const GAP_SETTLE: Duration = Duration::from_secs(600);
/// Open gaps kept per bed at most; beyond, the oldest is settled.
const GAPS_MAX: usize = 64;

/// What [`StreamOrder::receive`] made of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arrival {
    /// Next in order, or ahead of a gap it opens.
    New,
    /// Late: it fills (part of) a gap.
    Late,
    /// Already received.
    Repeat,
}

/// Missing `stream_seq`s `from..=to`, noticed at `noticed` (our clock) on
/// an event of vigil's time `when`.
#[derive(Clone, Debug)]
struct Gap {
    from: u64,
    to: u64,
    noticed: SystemTime,
    when: SystemTime,
}

impl Gap {
    fn line(&self, bed: &BedKey) -> FeedLine {
        let lost = self.to - self.from + 1;
        let text = format!("{lost} alarm event(s) lost on the way from vigil");
        FeedLine {
            time: clock(self.when),
            // Just before the event that revealed it.
            at_ms: ms(self.when).saturating_sub(1),
            text: text.clone(),
            bed: bed.to_string(),
            id: text,
            phase: "gap".into(),
            priority: "medium",
            by: None,
        }
    }
}

/// Which events of one alarm stream (one epoch) arrived: the highest
/// `stream_seq` and the gaps below it.
#[derive(Clone, Debug, Default)]
struct StreamOrder {
    top: Option<u64>,
    gaps: Vec<Gap>,
}

impl StreamOrder {
    fn receive(&mut self, n: u64, now: SystemTime, when: SystemTime) -> Arrival {
        let Some(top) = self.top else {
            self.top = Some(n);
            return Arrival::New;
        };
        if n > top {
            if n > top + 1 {
                self.gaps.push(Gap {
                    from: top + 1,
                    to: n - 1,
                    noticed: now,
                    when,
                });
            }
            self.top = Some(n);
            return Arrival::New;
        }
        let Some(i) = self.gaps.iter().position(|g| g.from <= n && n <= g.to) else {
            return Arrival::Repeat;
        };
        let g = self.gaps[i].clone();
        match (n == g.from, n == g.to) {
            (true, true) => {
                self.gaps.remove(i);
            }
            (true, false) => self.gaps[i].from = n + 1,
            (false, true) => self.gaps[i].to = n - 1,
            (false, false) => {
                self.gaps[i].to = n - 1;
                self.gaps.insert(i + 1, Gap { from: n + 1, ..g });
            }
        }
        Arrival::Late
    }

    /// Removes and returns the gaps that are lost for good: open for
    /// [`GAP_SETTLE`], or the oldest beyond [`GAPS_MAX`].
    fn settle(&mut self, now: SystemTime) -> Vec<Gap> {
        let mut out = Vec::new();
        while self.gaps.len() > GAPS_MAX {
            out.push(self.gaps.remove(0));
        }
        self.gaps.retain(|g| {
            let keep = age(now, g.noticed) < GAP_SETTLE;
            if !keep {
                out.push(g.clone());
            }
            keep
        });
        out
    }

    /// Gaps open for at least [`GAP_WAIT`].
    fn open_gaps(&self, now: SystemTime) -> impl Iterator<Item = &Gap> {
        self.gaps
            .iter()
            .filter(move |g| age(now, g.noticed) >= GAP_WAIT)
    }
}

/// Everything the displays know.
#[derive(Clone, Debug)]
pub struct Board {
    settings: Settings,
    link: Link,
    beds: BTreeMap<BedKey, Bed>,
    feed: VecDeque<FeedLine>,
    /// Beds removed from the board: their retained messages stay away.
    removed: std::collections::BTreeSet<BedKey>,
    /// Per site: last heard, bridge state, blind stretches.
    sites: BTreeMap<String, SiteTrack>,
}

impl Board {
    /// A board showing `beds` (more are added as the feed names them).
    pub fn new(settings: Settings, beds: &[BedKey]) -> Board {
        Board {
            settings,
            link: Link::Connecting,
            beds: beds.iter().map(|b| (b.clone(), Bed::default())).collect(),
            feed: VecDeque::new(),
            removed: Default::default(),
            sites: beds
                .iter()
                .map(|b| (b.site.clone(), SiteTrack::default()))
                .collect(),
        }
    }

    /// The broker connection is up.
    pub fn link_up(&mut self) {
        self.link = Link::Up;
    }

    /// The broker connection failed or is lost (`why` names the error).
    pub fn link_down(&mut self, now: SystemTime, why: &str) {
        let since = match &self.link {
            Link::Down { since, .. } => *since,
            _ => now,
        };
        self.link = Link::Down {
            since,
            why: why.to_owned(),
        };
        self.sites.values_mut().for_each(SiteTrack::link_lost);
    }

    /// Whether the broker connection is up.
    pub fn is_link_up(&self) -> bool {
        self.link == Link::Up
    }

    /// The beds known.
    pub fn beds(&self) -> impl Iterator<Item = &BedKey> {
        self.beds.keys()
    }

    /// Removes a bed whose vigil stopped cleanly from the board (its
    /// stored messages no longer bring it back; a live message does).
    /// A bed in NO DATA for any other reason cannot be removed: that would
    /// hide a bed nobody watches.
    pub fn remove(&mut self, bed: &BedKey) -> Result<(), &'static str> {
        let Some(b) = self.beds.get(bed) else {
            return Err("this bed is not on the board");
        };
        if !b.stopped() {
            return Err("only a bed whose vigil was stopped can be removed");
        }
        self.beds.remove(bed);
        self.feed.retain(|l| l.bed != bed.to_string());
        self.removed.insert(bed.clone());
        Ok(())
    }

    fn push_feed(&mut self, line: FeedLine) {
        // Journaled events replayed after a reconnect may be older than
        // lines already shown: keep the feed in time order.
        let at = self.feed.partition_point(|l| l.at_ms <= line.at_ms);
        self.feed.insert(at, line);
        while self.feed.len() > FEED_MAX {
            self.feed.pop_front();
        }
    }

    /// Records a command sent (for its result).
    pub fn command_sent(&mut self, bed: &BedKey, id: &str, what: &str, now: SystemTime) {
        let b = self.beds.entry(bed.clone()).or_default();
        b.pending
            .retain(|p| age(now, p.sent) < Duration::from_secs(300));
        b.pending.push(Pending {
            id: id.to_owned(),
            what: what.to_owned(),
            sent: now,
        });
        b.result = Some(ResultView {
            id: id.to_owned(),
            text: format!("{what}: sent, waiting for vigil"),
            outcome: "pending",
        });
    }

    /// Applies one feed message about `bed`, received at `now`. `retained`
    /// is the MQTT retain flag (a stored message, not a live one).
    pub fn apply(
        &mut self,
        bed: &BedKey,
        env: &Envelope,
        msg: Message,
        retained: bool,
        now: SystemTime,
    ) {
        let site = self.sites.entry(bed.site.clone()).or_default();
        if !retained {
            site.heard(now, self.settings.heartbeat_timeout);
        }
        if self.removed.contains(bed) {
            if retained {
                return;
            }
            self.removed.remove(bed);
        }
        let b = self.beds.entry(bed.clone()).or_default();
        if let Some(epoch) = &env.epoch {
            if b.epoch.as_ref() != Some(epoch) {
                if b.epoch.is_some() {
                    // A new stream (a new or replaced state directory): its
                    // seq starts again, so the old order means nothing.
                    b.restart_order();
                }
                b.epoch = Some(epoch.clone());
            }
        }
        // Messages that carry vigil's current time (events may be replays).
        let current = matches!(
            msg,
            Message::Status(Status::Online { .. })
                | Message::Vitals(_)
                | Message::Active { .. }
                | Message::Result(_)
        );
        if let (Some(t), false, true) = (env.time, retained, current) {
            match &mut b.daemon_clock {
                Some(c) => c.sample(t, now),
                None => b.daemon_clock = Some(DaemonClock::new(t, now)),
            }
        }
        match msg {
            Message::Status(Status::Offline { reason }) => {
                // The Last Will carries the seq of when it was set: never drop it.
                b.beat = Some(Beat {
                    online: false,
                    reason,
                    at: now,
                    seq: b.beat.as_ref().map_or(0, |x| x.seq),
                    sources: Vec::new(),
                });
            }
            Message::Status(Status::Online { sources, .. }) => {
                let last = b.beat.as_ref().filter(|x| x.online).map_or(0, |x| x.seq);
                if env.seq < last {
                    return;
                }
                let at = if retained {
                    // Its age on vigil's clock when known, else on ours.
                    let vnow = b.vigil_now(now);
                    env.time.map_or(SystemTime::UNIX_EPOCH, |t| {
                        now.checked_sub(age(vnow, t))
                            .unwrap_or(SystemTime::UNIX_EPOCH)
                    })
                } else {
                    now
                };
                b.beat = Some(Beat {
                    online: true,
                    reason: String::new(),
                    at,
                    seq: env.seq,
                    sources: sources
                        .into_iter()
                        .map(|s| (s.name, s.up, s.status))
                        .collect(),
                });
            }
            Message::Vitals(v) => {
                if env.seq < b.vitals_seq {
                    return;
                }
                b.vitals_seq = env.seq;
                for (k, r) in v {
                    b.vitals.entry(k).or_default().push(r, now);
                }
            }
            Message::Alarm(a) => {
                // vigil delivers at least once, and a bridge may reorder
                // (Mosquitto's queue after a reconnect): an event is named
                // by its `stream_seq`, a repeat is dropped, a late one is
                // still shown in its place. The snapshot travels a faster
                // path than journaled events, so it may already include an
                // event that arrives after it: such an event still belongs
                // in the feed, but must not change the list it set.
                let when = env.time.unwrap_or_else(|| b.vigil_now(now));
                match env.stream_seq {
                    Some(n) => {
                        if b.alarms_stream.receive(n, now, when) == Arrival::Repeat {
                            return;
                        }
                    }
                    None => {
                        if env.seq <= b.events_seq && b.events_seq != 0 {
                            return;
                        }
                    }
                }
                b.events_seq = b.events_seq.max(env.seq);
                let newer = env.seq > b.active_seq
                    && b.alarm_seq.get(&a.id).is_none_or(|&last| env.seq > last);
                let line = FeedLine {
                    time: clock(when),
                    at_ms: ms(when),
                    text: feed_text(&a),
                    bed: bed.to_string(),
                    id: a.id.clone(),
                    phase: a.phase.clone(),
                    priority: a.priority.key(),
                    by: a.ack.as_ref().map(|k| k.by.clone()),
                };
                b.record(&a, when, false);
                if newer {
                    b.alarm_seq.insert(a.id.clone(), env.seq);
                    if a.state == AlarmState::Ended {
                        b.alarms.remove(&a.id);
                    } else {
                        b.alarms.insert(a.id.clone(), a);
                    }
                }
                // Gaps that stayed open long enough are lost for good: they
                // become feed lines of their own.
                let settled = b.alarms_stream.settle(now);
                self.push_feed(line);
                for g in settled {
                    self.push_feed(g.line(bed));
                }
            }
            Message::Active {
                alarms,
                audio_paused_until,
            } => {
                // A snapshot older than an event already applied would roll
                // the list back; vigil sends a newer one after every change.
                if env.seq < b.active_seq || env.seq < b.events_seq {
                    return;
                }
                b.active_seq = env.seq;
                b.alarm_seq.retain(|_, seq| *seq > env.seq);
                // Alarms present before this board heard their start.
                let when = env.time.unwrap_or_else(|| b.vigil_now(now));
                for a in alarms.iter().filter(|a| a.state != AlarmState::Ended) {
                    b.record(a, when, true);
                }
                b.alarms = alarms
                    .into_iter()
                    .filter(|a| a.state != AlarmState::Ended)
                    .map(|a| (a.id.clone(), a))
                    .collect();
                b.audio_paused_until = audio_paused_until;
            }
            Message::Limits(l) => {
                // Not below: a reload with no event since repeats the seq.
                if env.seq < b.limits_seq {
                    return;
                }
                b.limits_seq = env.seq;
                b.limits = l;
            }
            Message::Session(s) => {
                if env.seq < b.session_seq {
                    return;
                }
                b.session_seq = env.seq;
                let new_session = b
                    .session
                    .as_ref()
                    .is_some_and(|old| old.session != s.session && !s.session.is_empty());
                b.session = Some(s);
                if new_session {
                    // The previous session's lines and result are history.
                    b.result = None;
                    b.pending.clear();
                    b.history.clear();
                    let key = bed.to_string();
                    self.feed.retain(|l| l.bed != key);
                }
            }
            Message::Result(r) => apply_result(b, r),
            Message::Command => {}
        }
    }

    /// A site's bridge notification (Mosquitto's `notification_topic`):
    /// payload `1` connected, `0` lost; anything else is ignored.
    pub fn bridge_notice(&mut self, site: &str, payload: &[u8], retained: bool, now: SystemTime) {
        let up = match payload.trim_ascii() {
            b"1" => true,
            b"0" => false,
            _ => return,
        };
        self.sites.entry(site.to_owned()).or_default().bridge(
            up,
            retained,
            now,
            self.settings.heartbeat_timeout,
        );
    }

    /// Every site known, with its NO DATA (see [`super::site`]).
    pub fn sites(&self, now: SystemTime) -> Vec<SiteView> {
        self.sites
            .iter()
            .map(|(name, track)| {
                let mine = self.beds.keys().filter(|k| k.site == *name);
                let (beds, live) = mine.fold((0, 0), |(n, live), k| {
                    (n + 1, live + usize::from(self.no_data(k, now).is_none()))
                });
                track.view(name, now, self.is_link_up(), live, beds)
            })
            .collect()
    }

    /// The blind stretches of `site` that have ended, oldest first.
    pub fn site_outages(&self, site: &str) -> Vec<Outage> {
        self.sites
            .get(site)
            .map(|t| t.outages().cloned().collect())
            .unwrap_or_default()
    }

    /// NO DATA for every bed: the broker link is not up.
    fn link_no_data(&self) -> Option<NoData> {
        match &self.link {
            Link::Connecting => Some(NoData::BrokerUnreachable {
                since: None,
                why: "not connected yet".into(),
            }),
            Link::Down { since, why } => Some(NoData::BrokerUnreachable {
                since: Some(*since),
                why: why.clone(),
            }),
            Link::Up => None,
        }
    }

    /// Why `bed` shows NO DATA at `now`, or `None` when it is live.
    pub fn no_data(&self, bed: &BedKey, now: SystemTime) -> Option<NoData> {
        if let Some(nd) = self.link_no_data() {
            return Some(nd);
        }
        let Some(beat) = self.beds.get(bed).and_then(|b| b.beat.as_ref()) else {
            return Some(NoData::NeverHeard);
        };
        if !beat.online {
            return Some(NoData::Offline {
                reason: beat.reason.clone(),
            });
        }
        let late = age(now, beat.at);
        (late > self.settings.heartbeat_timeout).then_some(NoData::HeartbeatLate { age: late })
    }

    /// What to show at `now`.
    pub fn view(&self, now: SystemTime) -> BoardView {
        let mut beds: Vec<BedView> = self
            .beds
            .iter()
            .map(|(k, b)| self.bed_view(k, b, now))
            .collect();
        // Worst first; within a rank in key order, so tiles move only when
        // a bed's state changes, never with time.
        beds.sort_by(|x, y| y.urgency.cmp(&x.urgency).then_with(|| x.key.cmp(&y.key)));
        // A cleanly stopped bed is not blind: nobody expects data from it.
        let blind = beds.iter().filter(|b| !b.live && !b.stopped).count();
        BoardView {
            now_ms: now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            link_up: self.is_link_up(),
            blind,
            banner: match (self.link_no_data(), blind) {
                (Some(nd), _) => Some(nd.text(now)),
                (None, _) if beds.is_empty() => {
                    Some("no bed has reported on the broker yet".into())
                }
                (None, 0) => None,
                (None, 1) if beds.len() == 1 => beds[0].no_data.clone(),
                (None, 1) => beds
                    .iter()
                    .find(|b| !b.live && !b.stopped)
                    .map(|b| format!("{}: {}", b.key, b.no_data.as_deref().unwrap_or(""))),
                (None, n) => Some(format!("{n} of {} beds without data", beds.len())),
            },
            beds,
            feed: self.feed_view(now),
            sites: self.sites(now),
        }
    }

    /// The feed, with a line for each gap in a bed's alarm stream that has
    /// stayed open for [`GAP_WAIT`] (a shorter one may still be filled by
    /// events arriving late, and a line would be a false alarm).
    fn feed_view(&self, now: SystemTime) -> Vec<FeedLine> {
        let mut feed: Vec<FeedLine> = self.feed.iter().cloned().collect();
        for (key, b) in &self.beds {
            for g in b.alarms_stream.open_gaps(now) {
                let line = g.line(key);
                let at = feed.partition_point(|l| l.at_ms <= line.at_ms);
                feed.insert(at, line);
            }
        }
        feed
    }

    fn bed_view(&self, key: &BedKey, b: &Bed, now: SystemTime) -> BedView {
        let no_data = self.no_data(key, now);
        let live = no_data.is_none();
        let stopped = self.is_link_up() && b.stopped();
        let vnow = b.vigil_now(now);
        let mut alarms: Vec<AlarmView> = b
            .alarms
            .values()
            .map(|a| alarm_view(a, live, vnow))
            .collect();
        alarms.sort_by(|x, y| {
            (y.rank, x.acknowledged, x.since_s)
                .partial_cmp(&(x.rank, y.acknowledged, y.since_s))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let last_dose = b
            .session
            .as_ref()
            .and_then(|s| s.doses.iter().filter_map(|d| d.time).max());
        let result = b.result.clone().map(|mut r| {
            let unanswered = r.outcome == "pending"
                && b.pending
                    .iter()
                    .any(|p| p.id == r.id && age(now, p.sent) > self.settings.result_timeout);
            if unanswered {
                r.outcome = "unanswered";
                r.text = r.text.replace(
                    "sent, waiting for vigil",
                    "no answer from vigil: check the bed",
                );
            }
            r
        });
        let worst = alarms
            .iter()
            .filter(|a| !a.acknowledged)
            .max_by_key(|a| a.rank)
            .map(|a| a.priority);
        BedView {
            key: key.to_string(),
            site: key.site.clone(),
            urgency: urgency(live, stopped, &alarms),
            worst,
            live,
            stopped,
            no_data: no_data.map(|n| n.text(now)),
            vitals: [
                self.continuous(b, "hr", "HR", "/min", Some("pr"), 5.0, live, vnow),
                self.continuous(b, "spo2", "SpO2", "%", None, 2.0, live, vnow),
                nibp(b, live, vnow),
            ]
            .into_iter()
            .chain(
                BREATHING
                    .iter()
                    .filter(|(key, ..)| breathing_seen(b, key))
                    .map(|&(key, label, unit, step)| {
                        self.continuous(b, key, label, unit, None, step, live, vnow)
                    }),
            )
            .map(|mut v| {
                if live {
                    v.alarm = vital_alarm(&alarms, v.key);
                    let track = match v.key {
                        "nibp" => "nibp_sys",
                        "hr" if b.vitals.get("hr").is_none_or(|t| t.latest.is_none()) => "pr",
                        k => k,
                    };
                    if let Some(t) = b.vitals.get(track) {
                        v.spark = spark(&t.history, vnow);
                    }
                }
                // The limits hold whatever the bed's state: the tile says
                // what would alarm (NIBP: the systolic's, as its sparkline).
                let track = match v.key {
                    "nibp" => "nibp_sys",
                    "hr" if b.vitals.get("hr").is_none_or(|t| t.latest.is_none())
                        && b.vitals.contains_key("pr") =>
                    {
                        "pr"
                    }
                    k => k,
                };
                if let Some(l) = b.limits.get(track) {
                    v.limits = limit_views(l);
                    v.limits_text = limits_text(l, v.unit);
                    if v.key == "nibp" {
                        let dia = b.limits.get("nibp_dia").and_then(|d| limits_text(d, ""));
                        v.limits_text = match (limits_text(l, ""), dia) {
                            (Some(s), Some(d)) => Some(format!("sys {s}, dia {d} mmHg")),
                            (Some(s), None) => Some(format!("sys {s} mmHg")),
                            (None, Some(d)) => Some(format!("dia {d} mmHg")),
                            (None, None) => None,
                        };
                    }
                }
                v
            })
            .collect(),
            history: b.history.iter().cloned().collect(),
            phase: b
                .session
                .as_ref()
                .map(|s| s.phase.clone())
                .filter(|p| !p.is_empty()),
            session: b
                .session
                .as_ref()
                .map(|s| s.session.clone())
                .filter(|p| !p.is_empty()),
            since_dose: last_dose.map(|t| human_clock(age(vnow, t))),
            baselines: b
                .session
                .as_ref()
                .map(|s| {
                    s.baselines
                        .iter()
                        .map(|(k, v)| {
                            let (name, unit) = vital_name(k);
                            let name = if name.is_empty() { k.as_str() } else { name };
                            format!("{name} {v:.0} {unit}").trim_end().to_owned()
                        })
                        .collect()
                })
                .unwrap_or_default(),
            discharge_ready: b.session.as_ref().is_some_and(|s| s.discharge_ready),
            audio_paused: b.audio_paused_until.is_some_and(|t| t > vnow),
            audio_pause_left_s: b
                .audio_paused_until
                .filter(|t| *t > vnow)
                .map(|t| age(t, vnow).as_secs_f64()),
            vigil_time_ms: b.daemon_clock.map(|c| ms(c.now(now))),
            // A stale heartbeat's source states would look live: only when live.
            sources: b
                .beat
                .as_ref()
                .filter(|_| live)
                .map(|x| {
                    x.sources
                        .iter()
                        .map(|(n, up, status)| SourceView {
                            name: n.clone(),
                            up: *up,
                            status: status.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            heartbeat_age_s: b.beat.as_ref().map(|x| age(now, x.at).as_secs_f64()),
            alarms,
            result,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn continuous(
        &self,
        b: &Bed,
        key: &'static str,
        label: &'static str,
        unit: &'static str,
        fallback: Option<&str>,
        step: f64,
        live: bool,
        now: SystemTime,
    ) -> VitalView {
        let track = b
            .vitals
            .get(key)
            .filter(|t| t.latest.is_some())
            .or_else(|| fallback.and_then(|f| b.vitals.get(f)));
        let mut v = VitalView::empty(key, label, unit);
        let Some(t) = track else {
            return v;
        };
        let Some(r) = &t.latest else { return v };
        if !live {
            v.state = "nodata";
            return v;
        }
        let when = r.time.unwrap_or(now);
        if age(now, when) > self.settings.vital_stale_after {
            v.state = "stale";
            v.note = Some(format!("no reading for {}", human(age(now, when))));
            return v;
        }
        match (r.value, r.validity.as_str()) {
            (Some(x), "valid") => {
                v.set_parts(vec![PartView::new(key, Some(x), false)]);
                v.state = "ok";
                v.trend = trend(&t.history, step);
            }
            (Some(x), "old") => {
                // Measured long before it was sent: the number, marked old.
                v.set_parts(vec![PartView::new(key, Some(x), false)]);
                v.state = "old";
                v.note = Some(OLD_NOTE.to_owned());
            }
            // Shown, marked: a value read through a poor signal may still
            // be a real change. Its number when vigil sends one, else the
            // mark alone; never in the trend or the sparkline.
            (x, "questionable") => {
                v.set_parts(vec![PartView::new(key, x, true)]);
                v.state = "questionable";
                v.note = Some(questionable_note(""));
            }
            (_, validity) => {
                v.state = "invalid";
                v.note = Some(validity.replace('_', " "));
            }
        }
        v
    }
}

fn apply_result(b: &mut Bed, r: CommandResult) {
    let Some(id) = r.id else { return };
    let Some(p) = b.pending.iter().find(|p| p.id == id) else {
        // Another display's command.
        return;
    };
    let text = if r.accepted {
        format!("{}: accepted", p.what)
    } else {
        format!(
            "{}: rejected: {}",
            p.what,
            r.reason.unwrap_or_else(|| "no reason given".into())
        )
    };
    b.result = Some(ResultView {
        id,
        text,
        outcome: if r.accepted { "accepted" } else { "rejected" },
    });
}

/// The note of a value the device measured long before it sent it.
const OLD_NOTE: &str = "old measurement";

/// Why a value is marked `?` (the note under it, the board's tooltip).
pub const QUESTIONABLE_WHY: &str = "the monitor flagged the signal quality";

/// The note of a value marked `?`; `what`: its questionable NIBP components.
fn questionable_note(what: &str) -> String {
    format!("? {what}questionable: {QUESTIONABLE_WHY}")
}

fn nibp(b: &Bed, live: bool, now: SystemTime) -> VitalView {
    let mut v = VitalView::empty("nibp", "NIBP", "mmHg");
    let get = |k: &str| b.vitals.get(k).and_then(|t| t.latest.as_ref());
    let Some(sys) = get("nibp_sys") else { return v };
    if !live {
        v.state = "nodata";
        return v;
    }
    let when = sys.time.unwrap_or(now);
    v.age = Some(format!("{} ago", human(age(now, when))));
    v.age_s = Some(age(now, when).as_secs_f64());
    if let ("old", Some(x)) = (sys.validity.as_str(), sys.value) {
        // The monitor's last result, taken long ago: shown as such. Its age
        // is unknown here (the time is when vigil got it), so none is shown.
        let dia = get("nibp_dia")
            .filter(|r| r.validity == "old")
            .and_then(|r| r.value);
        let mut parts = vec![PartView::new("sys", Some(x), false)];
        parts.push(match dia {
            Some(d) => PartView::new("dia", Some(d), false),
            None => PartView::absent("dia"),
        });
        v.set_parts(parts);
        v.state = "old";
        v.note = Some(OLD_NOTE.to_owned());
        v.age = None;
        v.age_s = None;
        return v;
    }
    // Each component on its own: a number, a number (or the mark alone)
    // flagged questionable, or none.
    let part = |key: &'static str, r: Option<&VitalReading>| match r {
        Some(r) if r.validity == "valid" && r.value.is_some() => {
            Some(PartView::new(key, r.value, false))
        }
        Some(r) if r.validity == "questionable" => Some(PartView::new(key, r.value, true)),
        _ => None,
    };
    let dia = get("nibp_dia");
    let (Some(s), Some(d)) = (part("sys", Some(sys)), part("dia", dia)) else {
        // Without a systolic and a diastolic there is no pressure to show
        // (vigil takes such a measurement for an artefact as a whole).
        v.state = "invalid";
        let why: Vec<String> = [("systolic", Some(sys)), ("diastolic", dia)]
            .into_iter()
            .filter(|(_, r)| part("", *r).is_none())
            .map(|(name, r)| {
                let validity = r.map_or("missing", |r| r.validity.as_str());
                format!("{name} {}", validity.replace('_', " "))
            })
            .collect();
        v.note = Some(why.join(", "));
        return v;
    };
    // The mean of this measurement only (the monitor may not give one: then
    // none is shown, never one from an earlier measurement).
    let mean = part("mean", get("nibp_mean").filter(|m| m.time == sys.time));
    let doubt: Vec<&str> = [Some(&s), Some(&d), mean.as_ref()]
        .into_iter()
        .flatten()
        .filter(|p| p.questionable)
        .map(|p| match p.key {
            "sys" => "systolic",
            "dia" => "diastolic",
            _ => "mean",
        })
        .collect();
    v.set_parts([Some(s), Some(d), mean].into_iter().flatten().collect());
    if doubt.is_empty() {
        v.state = "ok";
    } else {
        v.state = "questionable";
        v.note = Some(questionable_note(&format!("{} ", doubt.join(", "))));
    }
    // NIBP is intermittent: compare with the previous measurement.
    let h = &b.vitals["nibp_sys"].history;
    if h.len() >= 2 && sys.validity == "valid" {
        let d = h[h.len() - 1].1 - h[h.len() - 2].1;
        v.trend = arrow(d, 10.0);
    }
    v
}

/// The breathing vitals: key, label, unit, the change a trend arrow needs.
const BREATHING: [(&str, &str, &str, f64); 2] =
    [("rr", "RR", "/min", 3.0), ("etco2", "EtCO2", "mmHg", 3.0)];

/// Whether a bed has a breathing vital to show: its monitor sent one, or an
/// alarm about it is present. A bed without capnography gets no empty
/// tiles; once seen, a tile stays (a value that stops is shown as stale or
/// invalid, never silently dropped).
fn breathing_seen(b: &Bed, key: &str) -> bool {
    b.vitals.get(key).is_some_and(|t| t.latest.is_some())
        || b.alarms
            .keys()
            .any(|id| id.rsplit_once('.').is_some_and(|(s, _)| s == key))
}

/// How urgently a bed needs a look, for the station's order (worst first):
/// 7 an unacknowledged high alarm, 6 NO DATA (a blind bed may hide one),
/// 5 unacknowledged medium, 3 unacknowledged low, 2 only acknowledged
/// alarms, 1 calm, 0 stopped.
fn urgency(live: bool, stopped: bool, alarms: &[AlarmView]) -> u8 {
    if stopped {
        return 0;
    }
    let open = alarms
        .iter()
        .filter(|a| !a.acknowledged)
        .map(|a| 2 * a.rank + 1)
        .max()
        .unwrap_or(0);
    let blind = if live { 0 } else { 6 };
    let acked = if alarms.is_empty() { 1 } else { 2 };
    open.max(blind).max(acked)
}

/// The highest priority among the physiological alarms about a vital shown
/// in one tile (HR's tile also shows the pulse rate; NIBP's all three).
fn vital_alarm(alarms: &[AlarmView], key: &str) -> Option<&'static str> {
    let subjects: &[&str] = match key {
        "hr" => &["hr", "pr"],
        "nibp" => &["nibp", "nibp_sys", "nibp_dia", "nibp_mean"],
        _ => &[],
    };
    alarms
        .iter()
        .filter(|a| a.kind == "physiological")
        .filter(|a| {
            let subject = a.id.rsplit_once('.').map_or("", |(s, _)| s);
            subject == key || subjects.contains(&subject)
        })
        .max_by_key(|a| a.rank)
        .map(|a| a.priority)
}

fn rank(p: Priority) -> u8 {
    match p {
        Priority::High => 3,
        Priority::Medium => 2,
        Priority::Low => 1,
    }
}

fn rank_key(p: &str) -> u8 {
    Priority::parse(p).map_or(0, rank)
}

/// The limits of a vital for its sparkline, lowest first.
fn limit_views(l: &VitalLimits) -> Vec<LimitView> {
    if !l.enabled {
        return Vec::new();
    }
    let mut out: Vec<LimitView> = [
        ("critical_low", l.critical_low),
        ("low", l.low),
        ("high", l.high),
        ("critical_high", l.critical_high),
    ]
    .into_iter()
    .filter_map(|(kind, v): (&'static str, Option<LimitValue>)| {
        v.map(|v| LimitView {
            kind,
            value: v.value,
            priority: v.priority.key(),
        })
    })
    .collect();
    out.sort_by(|a, b| a.value.total_cmp(&b.value));
    out
}

/// The limits for people: `50-120 /min`, `low 90 %`, `high 180 mmHg`,
/// `alarms off`; the low/high pair, else the critical ones.
fn limits_text(l: &VitalLimits, unit: &str) -> Option<String> {
    if !l.enabled {
        return Some("alarms off".to_owned());
    }
    let lo = l.low.or(l.critical_low).map(|v| v.value);
    let hi = l.high.or(l.critical_high).map(|v| v.value);
    let text = match (lo, hi) {
        (Some(lo), Some(hi)) => format!("{lo:.0}-{hi:.0} {unit}"),
        (Some(lo), None) => format!("low {lo:.0} {unit}"),
        (None, Some(hi)) => format!("high {hi:.0} {unit}"),
        (None, None) => return None,
    };
    Some(text.trim_end().to_owned())
}

/// A vital's history as sparkline points: the last [`HISTORY`], thinned to
/// [`SPARK_POINTS`] by taking every n-th value (and always the newest).
fn spark(h: &VecDeque<(SystemTime, f64)>, now: SystemTime) -> Vec<[f64; 2]> {
    let recent: Vec<&(SystemTime, f64)> =
        h.iter().filter(|(t, _)| age(now, *t) <= HISTORY).collect();
    if recent.len() < 2 {
        return Vec::new();
    }
    let step = recent.len().div_ceil(SPARK_POINTS);
    let mut out: Vec<[f64; 2]> = recent
        .iter()
        .step_by(step)
        .map(|(t, v)| [-age(now, *t).as_secs_f64(), *v])
        .collect();
    let last = recent[recent.len() - 1];
    if out
        .last()
        .is_some_and(|p| p[1] != last.1 || p[0] != -age(now, last.0).as_secs_f64())
    {
        out.push([-age(now, last.0).as_secs_f64(), last.1]);
    }
    out
}

/// Trend of a continuous vital: the latest value against the one about a
/// minute earlier (at least 30 s of history).
fn trend(h: &VecDeque<(SystemTime, f64)>, step: f64) -> &'static str {
    let Some(&(t, x)) = h.back() else { return "" };
    let earlier = h
        .iter()
        .rev()
        .find(|(u, _)| age(t, *u) >= Duration::from_secs(60))
        .or_else(|| {
            h.front()
                .filter(|(u, _)| age(t, *u) >= Duration::from_secs(30))
        });
    match earlier {
        Some(&(_, y)) => arrow(x - y, step),
        None => "",
    }
}

fn arrow(d: f64, step: f64) -> &'static str {
    if d >= step {
        "up"
    } else if d <= -step {
        "down"
    } else {
        "steady"
    }
}

fn alarm_view(a: &Alarm, live: bool, now: SystemTime) -> AlarmView {
    let acknowledged = a.state == AlarmState::Acknowledged || a.ack.is_some();
    let since = a.determined.or(a.onset).unwrap_or(now);
    AlarmView {
        id: a.id.clone(),
        label: alarm_label(a),
        priority: a.priority.key(),
        rank: match a.priority {
            Priority::High => 3,
            Priority::Medium => 2,
            Priority::Low => 1,
        },
        kind: if a.kind == "physiological" {
            "physiological"
        } else {
            "technical"
        },
        questionable: questionable(a),
        state: a.state.key(),
        acknowledged,
        ack_by: a.ack.as_ref().map(|k| k.by.clone()),
        flash: match (live, acknowledged, a.priority) {
            (false, _, _) | (_, true, _) => "none",
            (_, _, Priority::High) => "fast",
            (_, _, Priority::Medium) => "slow",
            (_, _, Priority::Low) => "none",
        },
        since: human(age(now, since)),
        since_s: age(now, since).as_secs_f64(),
        onset: a.onset.map(|t| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        }),
    }
}

/// An alarm for people, with units: `SpO2 low 86 % (limit 90 %)`,
/// `SpO2 falling fast 5 %/min (limit 4 %/min)`, `monitor bedside disconnected`.
fn alarm_label(a: &Alarm) -> String {
    let text = alarm_text(&a.id, a.value, a.limit);
    if questionable(a) {
        format!("{text} ? questionable signal")
    } else {
        text
    }
}

/// A physiological alarm on a value the monitor flagged questionable.
fn questionable(a: &Alarm) -> bool {
    a.kind == "physiological" && a.validity.as_deref() == Some("questionable")
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A feed line for people: `SpO2 low 86 % (limit 90 %) started`.
fn feed_text(a: &Alarm) -> String {
    let what = match a.phase.as_str() {
        "start" => "started".to_owned(),
        "update" => "changed".to_owned(),
        "escalate" => format!("escalated to {}", a.priority.key()),
        "acknowledge" => match &a.ack {
            Some(k) => format!("acknowledged by {}", k.by),
            None => "acknowledged".to_owned(),
        },
        "re_alert" => "alarming again".to_owned(),
        "end" => "ended".to_owned(),
        other => other.replace('_', " "),
    };
    format!("{} {what}", alarm_label(a))
}

fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or(Duration::ZERO)
}

/// `45 s`, `3 min`, `2 h 05 min`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=89 => format!("{s} s"),
        90..=5399 => format!("{} min", (s + 30) / 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

/// `0:42`, `1:05:00`: elapsed time since a dose.
fn human_clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

fn clock(t: SystemTime) -> String {
    let s = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
}

/// The whole board at one instant (serialised to the page as JSON).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BoardView {
    /// The instant, ms since the Unix epoch.
    pub now_ms: u64,
    /// Whether the broker connection is up.
    pub link_up: bool,
    /// Beds showing NO DATA.
    pub blind: usize,
    /// The full-width NO DATA banner text, when any bed is blind.
    pub banner: Option<String>,
    /// Beds, worst first ([`BedView::urgency`]), then in key order.
    pub beds: Vec<BedView>,
    /// Recent alarm events, newest last.
    pub feed: Vec<FeedLine>,
    /// Every site known, with its NO DATA (for the station's site filter).
    pub sites: Vec<SiteView>,
}

impl BoardView {
    /// Keeps only the beds (and feed lines) of `sites`; empty keeps all.
    /// The banner and the site list stay those of the whole board, so a
    /// filtered station still hears of a blind bed elsewhere.
    pub fn only_sites(&mut self, sites: &[String]) {
        if sites.is_empty() {
            return;
        }
        let keep = |bed: &str| {
            bed.split_once('/')
                .is_some_and(|(site, _)| sites.iter().any(|s| s == site))
        };
        self.beds.retain(|b| keep(&b.key));
        self.feed.retain(|l| keep(&l.bed));
    }
}

/// One bed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BedView {
    /// `site/bed`.
    pub key: String,
    /// The site (the first part of the key).
    pub site: String,
    /// How urgently the bed needs a look: 7 an unacknowledged high alarm,
    /// 6 NO DATA, 5 unacknowledged medium, 3 unacknowledged low, 2 only
    /// acknowledged alarms, 1 calm, 0 stopped. The station sorts by it.
    pub urgency: u8,
    /// The priority of the highest unacknowledged alarm, if any.
    pub worst: Option<&'static str>,
    /// False when NO DATA: values are hidden, alarms are the last known.
    pub live: bool,
    /// vigil on this bed was stopped cleanly: shown as "stopped", not
    /// counted as blind, removable.
    pub stopped: bool,
    /// Why NO DATA.
    pub no_data: Option<String>,
    /// HR (or pulse rate), SpO2, NIBP; then RR and EtCO2 when the bed's
    /// monitor sends them (a bed without capnography has no empty tiles).
    pub vitals: Vec<VitalView>,
    /// Session phase.
    pub phase: Option<String>,
    /// Pseudonymous session code.
    pub session: Option<String>,
    /// Time since the last dose, `m:ss` or `h:mm:ss`.
    pub since_dose: Option<String>,
    /// The session's baselines, for people: `HR 70/min`, `NIBP sys 122 mmHg`.
    pub baselines: Vec<String>,
    /// vigil says every vital with a baseline is back near it (recovery).
    pub discharge_ready: bool,
    /// Audio paused at the bed.
    pub audio_paused: bool,
    /// Seconds of the audio pause left (vigil's clock).
    pub audio_pause_left_s: Option<f64>,
    /// vigil's clock now, ms since the Unix epoch (None before it spoke).
    pub vigil_time_ms: Option<u64>,
    /// Sources from the heartbeat.
    pub sources: Vec<SourceView>,
    /// Seconds since the last heartbeat.
    pub heartbeat_age_s: Option<f64>,
    /// Present alarms, highest priority first, unacknowledged before
    /// acknowledged, then newest first.
    pub alarms: Vec<AlarmView>,
    /// The result of this display's last command.
    pub result: Option<ResultView>,
    /// This session's alarms, one row per occurrence, oldest onset first.
    pub history: Vec<HistoryRow>,
}

/// One alarm occurrence of the session, for the bed's history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryRow {
    /// Alarm id.
    pub id: String,
    /// Human text at its first event: `SpO2 low 86 % (limit 90 %)`.
    pub label: String,
    /// The highest priority it reached.
    pub priority: &'static str,
    /// `HH:MM:SS` UTC of its onset (vigil's clock).
    pub onset: String,
    /// The same, ms since the Unix epoch.
    pub onset_ms: u64,
    /// `HH:MM:SS` UTC of its end, if it ended.
    pub ended: Option<String>,
    /// The same, ms since the Unix epoch.
    pub ended_ms: Option<u64>,
    /// Who acknowledged it and when, in time order.
    pub acks: Vec<AckRow>,
}

/// One acknowledgement in the history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AckRow {
    /// Name or initials.
    pub by: String,
    /// `HH:MM:SS` UTC (vigil's clock).
    pub at: String,
    /// The same, ms since the Unix epoch.
    pub at_ms: u64,
}

/// One limit in force, for a sparkline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LimitView {
    /// `critical_low`, `low`, `high`, `critical_high`.
    pub kind: &'static str,
    /// The limit, in the vital's unit.
    pub value: f64,
    /// The priority of its alarm.
    pub priority: &'static str,
}

/// A source's state.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourceView {
    /// Name.
    pub name: String,
    /// Up: valid readings arrive.
    pub up: bool,
    /// What it delivers, for people (`up`, `NOT ASSOCIATED`, ...).
    pub status: String,
}

/// One vital.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VitalView {
    /// `hr`, `spo2`, `nibp`, `rr`, `etco2`.
    pub key: &'static str,
    /// `HR`, `SpO2`, `NIBP`, `RR`, `EtCO2`.
    pub label: &'static str,
    /// The value to show (`72`, `120/80 (93)`, `82?`, `120/?`); empty when
    /// none may be shown.
    pub text: String,
    /// Unit.
    pub unit: &'static str,
    /// `up`, `down`, `steady`, or empty.
    pub trend: &'static str,
    /// `ok`, `old` (an old measurement: `text` shows it, never as current),
    /// `questionable` (shown, each questionable part marked `?`),
    /// `invalid`, `stale`, `nodata`, `none`.
    pub state: &'static str,
    /// The value's parts (NIBP: `sys`, `dia` and `mean` when measured),
    /// each marked when questionable; empty when no value is shown.
    pub parts: Vec<PartView>,
    /// Validity or staleness note.
    pub note: Option<String>,
    /// NIBP: age of the reading (`4 min ago`).
    pub age: Option<String>,
    /// NIBP: age in seconds.
    pub age_s: Option<f64>,
    /// The priority of the highest physiological alarm about this vital
    /// (`high`, `medium`, `low`): the value is shown in its colour.
    pub alarm: Option<&'static str>,
    /// The trend of the last 45 min: `[seconds before now, value]`, oldest
    /// first, about 90 points (for NIBP, the systolic values).
    pub spark: Vec<[f64; 2]>,
    /// The alarm limits in force for the sparkline's vital, lowest first
    /// (empty before the daemon published them, or with alarms off).
    pub limits: Vec<LimitView>,
    /// The limits for people: `50-120 /min`, `sys 90-180, dia 50-110 mmHg`.
    pub limits_text: Option<String>,
}

impl VitalView {
    fn empty(key: &'static str, label: &'static str, unit: &'static str) -> VitalView {
        VitalView {
            key,
            label,
            text: String::new(),
            unit,
            trend: "",
            state: "none",
            parts: Vec::new(),
            note: None,
            age: None,
            age_s: None,
            alarm: None,
            spark: Vec::new(),
            limits: Vec::new(),
            limits_text: None,
        }
    }

    /// Sets the parts and the text they make: `120/80 (93)`, `82?`.
    fn set_parts(&mut self, parts: Vec<PartView>) {
        let text = |p: &PartView| format!("{}{}", p.text, if p.questionable { "?" } else { "" });
        self.text = match parts.as_slice() {
            [sys, dia, rest @ ..] if self.key == "nibp" => {
                let mut t = format!("{}/{}", text(sys), text(dia));
                if let Some(mean) = rest.first() {
                    t.push_str(&format!(" ({})", text(mean)));
                }
                t
            }
            _ => parts.iter().map(text).collect(),
        };
        self.parts = parts;
    }

    /// The arrow for the trend.
    pub fn arrow(&self) -> &'static str {
        match self.trend {
            "up" => "↑",
            "down" => "↓",
            "steady" => "→",
            _ => "",
        }
    }
}

/// One part of a shown value: the number of a vital, or one NIBP component.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PartView {
    /// `sys`, `dia`, `mean`, or the vital's key.
    pub key: &'static str,
    /// The number; empty for a questionable value vigil sent without one,
    /// `-` for a component an old measurement lacks.
    pub text: String,
    /// The monitor flagged it questionable: shown with a `?`.
    pub questionable: bool,
}

impl PartView {
    fn new(key: &'static str, value: Option<f64>, questionable: bool) -> PartView {
        PartView {
            key,
            text: value.map_or_else(String::new, |x| format!("{x:.0}")),
            questionable,
        }
    }

    fn absent(key: &'static str) -> PartView {
        PartView {
            key,
            text: "-".into(),
            questionable: false,
        }
    }
}

/// One alarm.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlarmView {
    /// Alarm id (sent back in acknowledgements).
    pub id: String,
    /// Human text.
    pub label: String,
    /// `high`, `medium`, `low`.
    pub priority: &'static str,
    /// 3, 2, 1 for sorting.
    pub rank: u8,
    /// `physiological` or `technical`.
    pub kind: &'static str,
    /// Its value was flagged questionable by the monitor (the label says so).
    pub questionable: bool,
    /// `active`, `acknowledged`, `latched`.
    pub state: &'static str,
    /// Acknowledged (signal silenced by a person).
    pub acknowledged: bool,
    /// By whom.
    pub ack_by: Option<String>,
    /// `fast` (high), `slow` (medium), `none` (low, acknowledged, or NO DATA).
    pub flash: &'static str,
    /// Time since it was determined.
    pub since: String,
    /// The same in seconds.
    pub since_s: f64,
    /// Onset, ms since the Unix epoch.
    pub onset: Option<u64>,
}

/// The result of a command this display sent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResultView {
    /// Request id.
    pub id: String,
    /// Human text.
    pub text: String,
    /// `pending`, `accepted`, `rejected`, `unanswered`.
    pub outcome: &'static str,
}

#[cfg(test)]
mod tests {
    use super::super::feed::{self, TopicKind};
    use super::*;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000 + s)
    }

    fn bed() -> BedKey {
        BedKey::new("s", "b")
    }

    fn feed(board: &mut Board, kind: TopicKind, json: &str, retained: bool, now: SystemTime) {
        feed_to(board, &bed(), kind, json, retained, now);
    }

    /// [`feed`] for the bed `key`.
    fn feed_to(
        board: &mut Board,
        key: &BedKey,
        kind: TopicKind,
        json: &str,
        retained: bool,
        now: SystemTime,
    ) {
        let (env, msg) = feed::parse("t", kind, json.as_bytes()).unwrap();
        board.apply(key, &env, msg, retained, now);
    }

    /// A `session` payload: phase baseline, session `code`, no doses.
    fn session(seq: u64, code: &str) -> String {
        format!(
            r#"{{"schema_version":1,"seq":{seq},"time":"{}","state":{{"phase":"baseline","session":"{code}","doses":[]}}}}"#,
            crate::time::rfc3339(t(seq))
        )
    }

    /// A live (not retained) `alarms` event.
    fn push_alarm(board: &mut Board, json: &str, now: SystemTime) {
        feed(board, TopicKind::Alarms, json, false, now);
    }

    fn heartbeat(board: &mut Board, seq: u64, now: SystemTime) {
        let json = format!(
            r#"{{"schema_version":1,"seq":{seq},"time":"{}","state":"online","beat":1,"sources":[{{"name":"monitor","up":true}}]}}"#,
            crate::time::rfc3339(now)
        );
        feed(board, TopicKind::Status, &json, false, now);
    }

    fn alarm(id: &str, priority: &str, state: &str, seq: u64, at: SystemTime) -> String {
        let ack = if state == "acknowledged" {
            format!(r#"{{"by":"JD","at":"{}"}}"#, crate::time::rfc3339(at))
        } else {
            "null".into()
        };
        format!(
            r#"{{"schema_version":1,"seq":{seq},"time":"{0}","alarm":{{"id":"{id}","kind":"physiological","priority":"{priority}","phase":"start","state":"{state}","value":86,"limit":90,"onset":"{0}","determined":"{0}","ack":{ack}}}}}"#,
            crate::time::rfc3339(at)
        )
    }

    fn live_board() -> Board {
        let mut b = Board::new(Settings::default(), &[bed()]);
        b.link_up();
        heartbeat(&mut b, 1, t(0));
        b
    }

    #[test]
    fn a_board_without_beds_is_never_silent() {
        let mut b = Board::new(Settings::default(), &[]);
        let v = b.view(t(0));
        assert_eq!(
            v.banner.as_deref(),
            Some("connecting to the broker (not connected yet)")
        );
        b.link_up();
        assert_eq!(
            b.view(t(0)).banner.as_deref(),
            Some("no bed has reported on the broker yet")
        );
    }

    #[test]
    fn heartbeat_late_means_no_data() {
        let mut b = live_board();
        assert_eq!(b.no_data(&bed(), t(15)), None);
        assert_eq!(
            b.no_data(&bed(), t(16)),
            Some(NoData::HeartbeatLate {
                age: Duration::from_secs(16)
            })
        );
        let v = b.view(t(16));
        assert!(!v.beds[0].live);
        assert_eq!(v.banner.as_deref(), Some("no heartbeat for 16 s"));
        heartbeat(&mut b, 2, t(17));
        assert_eq!(b.no_data(&bed(), t(17)), None);
    }

    #[test]
    fn an_old_retained_heartbeat_does_not_look_fresh() {
        let mut b = Board::new(Settings::default(), &[bed()]);
        b.link_up();
        assert_eq!(b.no_data(&bed(), t(0)), Some(NoData::NeverHeard));
        let json = format!(
            r#"{{"schema_version":1,"seq":5,"time":"{}","state":"online"}}"#,
            crate::time::rfc3339(t(0))
        );
        feed(&mut b, TopicKind::Status, &json, true, t(100));
        assert!(matches!(
            b.no_data(&bed(), t(100)),
            Some(NoData::HeartbeatLate { .. })
        ));
    }

    #[test]
    fn last_will_means_no_data_even_with_an_older_seq() {
        let mut b = live_board();
        heartbeat(&mut b, 50, t(1));
        // The Last Will was set at connect time with seq 0.
        feed(
            &mut b,
            TopicKind::Status,
            r#"{"schema_version":1,"seq":0,"time":"2026-11-23T19:00:00.000Z","state":"offline","reason":"connection_lost"}"#,
            false,
            t(2),
        );
        let nd = b.no_data(&bed(), t(2)).unwrap();
        assert_eq!(nd.text(t(2)), "vigil offline on this bed (connection_lost)");
        // Coming back online clears it.
        heartbeat(&mut b, 51, t(3));
        assert_eq!(b.no_data(&bed(), t(3)), None);
    }

    #[test]
    fn a_new_epoch_restarts_the_order_instead_of_freezing_the_bed() {
        let mut b = live_board();
        let vitals = |epoch: &str, seq: u64, spo2: u32| {
            format!(
                r#"{{"schema_version":1,"epoch":"{epoch}","seq":{seq},"vitals":{{"spo2":{{"value":{spo2},"validity":"valid","unit":"%"}}}}}}"#
            )
        };
        let active = |epoch: &str, seq: u64, alarms: &str| {
            format!(r#"{{"schema_version":1,"epoch":"{epoch}","seq":{seq},"alarms":[{alarms}]}}"#)
        };
        feed(
            &mut b,
            TopicKind::Vitals,
            &vitals("aaaa", 5_000_100, 80),
            false,
            t(1),
        );
        let low = r#"{"id":"spo2.low","priority":"high","state":"active"}"#;
        feed(
            &mut b,
            TopicKind::Active,
            &active("aaaa", 5_000_100, low),
            false,
            t(1),
        );
        assert_eq!(b.view(t(1)).beds[0].alarms.len(), 1);
        // Same epoch, lower seq: an old duplicate, dropped.
        feed(
            &mut b,
            TopicKind::Vitals,
            &vitals("aaaa", 7, 97),
            false,
            t(2),
        );
        assert!(b.view(t(2)).beds[0].vitals.iter().any(|v| v.text == "80"));
        // A new state directory: seq starts again under a new epoch.
        feed(
            &mut b,
            TopicKind::Vitals,
            &vitals("bbbb", 7, 97),
            false,
            t(3),
        );
        feed(
            &mut b,
            TopicKind::Active,
            &active("bbbb", 7, ""),
            false,
            t(3),
        );
        let v = b.view(t(3));
        assert!(
            v.beds[0].vitals.iter().any(|v| v.text == "97"),
            "{:?}",
            v.beds[0].vitals
        );
        assert!(v.beds[0].alarms.is_empty());
    }

    #[test]
    fn broker_lost_means_no_data_and_hides_values() {
        let mut b = live_board();
        feed(
            &mut b,
            TopicKind::Vitals,
            r#"{"schema_version":1,"seq":2,"vitals":{"hr":{"value":72,"validity":"valid","unit":"/min"}}}"#,
            false,
            t(1),
        );
        assert_eq!(b.view(t(1)).beds[0].vitals[0].text, "72");
        b.link_down(t(2), "connection refused");
        b.link_down(t(5), "connection refused");
        let v = b.view(t(5));
        assert!(!v.link_up);
        assert_eq!(
            v.banner.as_deref(),
            Some("broker unreachable for 3 s (connection refused)")
        );
        assert_eq!(v.beds[0].vitals[0].text, "");
        assert_eq!(v.beds[0].vitals[0].state, "nodata");
        b.link_up();
        assert!(b.view(t(6)).beds[0].live);
    }

    #[test]
    fn alarms_sort_by_priority_and_show_acknowledgement() {
        let mut b = live_board();
        push_alarm(&mut b, &alarm("hr.high", "medium", "active", 2, t(1)), t(1));
        push_alarm(
            &mut b,
            &alarm("nibp.cycle_overdue", "low", "active", 3, t(2)),
            t(2),
        );
        push_alarm(&mut b, &alarm("spo2.low", "high", "active", 4, t(3)), t(3));
        push_alarm(
            &mut b,
            &alarm("spo2.critical_low", "high", "acknowledged", 5, t(4)),
            t(4),
        );
        let v = b.view(t(5));
        let ids: Vec<&str> = v.beds[0].alarms.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "spo2.low",
                "spo2.critical_low",
                "hr.high",
                "nibp.cycle_overdue"
            ]
        );
        let flashes: Vec<&str> = v.beds[0].alarms.iter().map(|a| a.flash).collect();
        assert_eq!(flashes, ["fast", "none", "slow", "none"]);
        let acked = &v.beds[0].alarms[1];
        assert!(acked.acknowledged);
        assert_eq!(acked.ack_by.as_deref(), Some("JD"));
        assert_eq!(v.beds[0].alarms[0].label, "SpO2 low 86 % (limit 90 %)");
        assert!(v
            .feed
            .iter()
            .any(|l| l.text == "SpO2 low 86 % (limit 90 %) started"));
        assert_eq!(v.feed.len(), 4);

        // A duplicate (same seq) is dropped; an end removes the alarm.
        push_alarm(&mut b, &alarm("hr.high", "medium", "ended", 5, t(6)), t(6));
        assert_eq!(b.view(t(6)).beds[0].alarms.len(), 4);
        push_alarm(&mut b, &alarm("hr.high", "medium", "ended", 6, t(6)), t(6));
        assert_eq!(b.view(t(6)).beds[0].alarms.len(), 3);

        // The retained snapshot replaces the list.
        feed(
            &mut b,
            TopicKind::Active,
            r#"{"schema_version":1,"seq":7,"alarms":[{"id":"spo2.low","priority":"high","state":"latched"}]}"#,
            true,
            t(7),
        );
        let v = b.view(t(7));
        assert_eq!(v.beds[0].alarms.len(), 1);
        assert_eq!(v.beds[0].alarms[0].state, "latched");
        assert_eq!(v.beds[0].alarms[0].flash, "fast");
        // No flashing while blind.
        b.link_down(t(8), "x");
        assert_eq!(b.view(t(8)).beds[0].alarms[0].flash, "none");
    }

    #[test]
    fn a_snapshot_ahead_of_journaled_events_neither_drops_nor_undoes_them() {
        // Regression: alarm events travel through the fsynced outbox while
        // the alarms/active snapshot does not, so a snapshot that already
        // includes an event can arrive before it. The event belongs in the
        // feed (no false "lost" line) but must not change the snapshot's list.
        let mut b = live_board();
        let with_stream = |id: &str, state: &str, seq: u64, stream: u64| {
            alarm(id, "medium", state, seq, t(1)).replacen(
                "\"time\"",
                &format!("\"stream_seq\":{stream},\"time\""),
                1,
            )
        };
        push_alarm(&mut b, &with_stream("hr.high", "active", 8, 4), t(1));
        // Snapshot seq 10: hr.high has already ended, spo2.low is present.
        feed(
            &mut b,
            TopicKind::Active,
            r#"{"schema_version":1,"seq":10,"alarms":[{"id":"spo2.low","priority":"medium","state":"active"}]}"#,
            true,
            t(1),
        );
        // The events behind the snapshot arrive: spo2.low starts (9), hr.high ends (10).
        push_alarm(&mut b, &with_stream("spo2.low", "active", 9, 5), t(1));
        push_alarm(&mut b, &with_stream("hr.high", "ended", 10, 6), t(1));
        let v = b.view(t(1));
        assert!(v.feed.iter().all(|f| f.phase != "gap"), "{:?}", v.feed);
        assert_eq!(v.feed.len(), 3, "every event is in the feed");
        let present: Vec<_> = v.beds[0].alarms.iter().map(|a| a.id.clone()).collect();
        assert_eq!(present, vec!["spo2.low".to_owned()]);
        // A duplicate (at-least-once delivery) is dropped.
        push_alarm(&mut b, &with_stream("hr.high", "ended", 10, 6), t(1));
        assert_eq!(b.view(t(1)).feed.len(), 3);
        // An older snapshot than the events applied is ignored.
        feed(
            &mut b,
            TopicKind::Active,
            r#"{"schema_version":1,"seq":9,"alarms":[{"id":"hr.high","priority":"medium","state":"active"}]}"#,
            true,
            t(1),
        );
        assert_eq!(b.view(t(1)).beds[0].alarms.len(), 1);
        assert_eq!(b.view(t(1)).beds[0].alarms[0].id, "spo2.low");
    }

    #[test]
    fn time_since_dose_runs_on_the_daemons_clock() {
        // The daemon's clock is an hour ahead of ours (skew, or a demo's
        // accelerated session clock): the dose 10 minutes before its latest
        // message is 10 minutes ago, not "0:00".
        let mut b = live_board();
        let ahead = Duration::from_secs(3600);
        feed(
            &mut b,
            TopicKind::Session,
            &format!(
                r#"{{"schema_version":1,"seq":90,"time":"{}","state":{{"phase":"dosing","session":"S-1","doses":[{{"number":1,"route":"im","time":"{}"}}]}}}}"#,
                crate::time::rfc3339(t(1) + ahead),
                crate::time::rfc3339(t(1) + ahead - Duration::from_secs(600)),
            ),
            false,
            t(1),
        );
        // The heartbeat carries vigil's clock too.
        beat_at(&mut b, 91, t(1) + ahead, t(1));
        let v = b.view(t(31));
        assert_eq!(v.beds[0].since_dose.as_deref(), Some("10:30"));
    }

    fn beat_at(board: &mut Board, seq: u64, theirs: SystemTime, ours: SystemTime) {
        let json = format!(
            r#"{{"schema_version":1,"seq":{seq},"time":"{}","state":"online","beat":1,"uptime_s":1,"sources":[]}}"#,
            crate::time::rfc3339(theirs)
        );
        feed(board, TopicKind::Status, &json, false, ours);
    }

    #[test]
    fn an_accelerated_vigil_clock_is_followed_between_messages() {
        // A demo at 60x: vigil's clock runs a minute per second of ours.
        let mut b = live_board();
        let start = t(1_000);
        for i in 0..=4u64 {
            beat_at(
                &mut b,
                10 + i,
                start + Duration::from_secs(60 * i),
                t(1 + i),
            );
        }
        let onset = start + Duration::from_secs(60);
        let json = alarm("spo2.low", "high", "active", 20, onset);
        push_alarm(&mut b, &json, t(5));
        // One more second of ours: vigil is at start + 5 min, the alarm
        // began 4 min earlier on its clock.
        let v = b.view(t(6));
        assert_eq!(v.beds[0].alarms[0].since, "4 min");
        assert!(
            (v.beds[0].alarms[0].since_s - 240.0).abs() < 1.0,
            "{}",
            v.beds[0].alarms[0].since_s
        );
        assert_eq!(
            v.beds[0].vigil_time_ms,
            Some(ms(start + Duration::from_secs(300)))
        );
        // vigil restarted with a fresh clock: the estimate starts over.
        beat_at(&mut b, 30, t(10), t(10));
        assert_eq!(b.view(t(12)).beds[0].vigil_time_ms, Some(ms(t(12))));
    }

    #[test]
    fn old_values_are_shown_as_old_measurements() {
        let mut b = live_board();
        let json = format!(
            r#"{{"schema_version":1,"seq":5,"vitals":{{"hr":{{"value":64,"validity":"old","time":"{0}"}},"nibp_sys":{{"value":182,"validity":"old","time":"{0}"}},"nibp_dia":{{"value":95,"validity":"old","time":"{0}"}}}}}}"#,
            crate::time::rfc3339(t(2)),
        );
        feed(&mut b, TopicKind::Vitals, &json, false, t(2));
        let view = b.view(t(2));
        let hr = &view.beds[0].vitals[0];
        assert_eq!((hr.state, hr.text.as_str()), ("old", "64"));
        assert_eq!(hr.note.as_deref(), Some("old measurement"));
        let nibp = &view.beds[0].vitals[2];
        assert_eq!((nibp.state, nibp.text.as_str()), ("old", "182/95"));
        assert_eq!(nibp.note.as_deref(), Some("old measurement"));
        assert_eq!(nibp.age, None, "vigil does not know how old it is");
    }

    #[test]
    fn nibp_age_is_measured_on_vigils_clock() {
        let mut b = live_board();
        let ahead = Duration::from_secs(7200);
        let json = format!(
            r#"{{"schema_version":1,"seq":5,"time":"{0}","vitals":{{"nibp_sys":{{"value":120,"validity":"valid","time":"{1}"}},"nibp_dia":{{"value":80,"validity":"valid","time":"{1}"}}}}}}"#,
            crate::time::rfc3339(t(2) + ahead),
            crate::time::rfc3339(t(2) + ahead - Duration::from_secs(180)),
        );
        feed(&mut b, TopicKind::Vitals, &json, false, t(2));
        let nibp = &b.view(t(2)).beds[0].vitals[2];
        assert_eq!(nibp.text, "120/80");
        assert_eq!(nibp.age.as_deref(), Some("3 min ago"));
    }

    #[test]
    fn a_cleanly_stopped_bed_reads_stopped_and_can_be_removed() {
        let other = BedKey::new("s", "c");
        let mut b = Board::new(Settings::default(), &[bed(), other.clone()]);
        b.link_up();
        heartbeat(&mut b, 1, t(0));
        let stop = r#"{"schema_version":1,"seq":9,"time":"1970-01-01T00:00:01Z","state":"offline","reason":"shutdown"}"#;
        feed_to(&mut b, &other, TopicKind::Status, stop, true, t(1));
        let v = b.view(t(2));
        assert!(v.beds[1].stopped && !v.beds[1].live);
        assert_eq!(v.blind, 0, "a stopped bed is not blind");
        assert_eq!(v.banner, None);
        // A bed still in NO DATA for another reason cannot be removed.
        assert!(b.remove(&bed()).is_err());
        b.remove(&other).unwrap();
        assert_eq!(b.view(t(2)).beds.len(), 1);
        // Its retained status (after a reconnect) does not bring it back…
        feed_to(&mut b, &other, TopicKind::Status, stop, true, t(3));
        assert_eq!(b.view(t(3)).beds.len(), 1);
        // …a live message does.
        let json = format!(
            r#"{{"schema_version":1,"seq":10,"time":"{}","state":"online","beat":1,"uptime_s":1,"sources":[]}}"#,
            crate::time::rfc3339(t(4))
        );
        feed_to(&mut b, &other, TopicKind::Status, &json, false, t(4));
        assert_eq!(b.view(t(4)).beds.len(), 2);
        // A crashed vigil (Last Will) stays NO DATA.
        let will = stop
            .replace("shutdown", "connection_lost")
            .replace("\"seq\":9", "\"seq\":11");
        feed_to(&mut b, &other, TopicKind::Status, &will, false, t(5));
        let v = b.view(t(5));
        assert!(!v.beds[1].stopped);
        assert_eq!(v.blind, 1);
        assert!(b.remove(&other).is_err());
    }

    #[test]
    fn a_new_session_clears_the_previous_ones_lines_and_result() {
        let mut b = live_board();
        feed(&mut b, TopicKind::Session, &session(2, "S-1"), false, t(2));
        push_alarm(&mut b, &alarm("hr.high", "medium", "active", 3, t(3)), t(3));
        b.command_sent(&bed(), "d-1", "acknowledge hr.high by JD", t(3));
        assert_eq!(b.view(t(3)).feed.len(), 1);
        feed(&mut b, TopicKind::Session, &session(4, "S-2"), false, t(4));
        let v = b.view(t(4));
        assert!(v.feed.is_empty(), "{:?}", v.feed);
        assert!(v.beds[0].result.is_none());
    }

    /// One `alarms` event with its own onset, event time and acknowledgement.
    #[allow(clippy::too_many_arguments)]
    fn event(
        id: &str,
        priority: &str,
        phase: &str,
        state: &str,
        seq: u64,
        onset: SystemTime,
        at: SystemTime,
        ack: Option<(&str, SystemTime)>,
    ) -> String {
        let rfc = crate::time::rfc3339;
        let ack = ack.map_or("null".into(), |(by, t)| {
            format!(r#"{{"by":"{by}","at":"{}"}}"#, rfc(t))
        });
        format!(
            r#"{{"schema_version":1,"seq":{seq},"stream_seq":{seq},"time":"{}","alarm":{{"id":"{id}","kind":"physiological","priority":"{priority}","phase":"{phase}","state":"{state}","value":86,"limit":90,"onset":"{}","determined":"{}","ack":{ack}}}}}"#,
            rfc(at),
            rfc(onset),
            rfc(onset)
        )
    }

    #[test]
    fn the_history_lists_the_sessions_alarms_in_order_and_a_new_session_clears_it() {
        let mut b = live_board();
        feed(&mut b, TopicKind::Session, &session(2, "S-1"), false, t(2));
        // id, priority, phase, state, seq, onset, time, ack (by, at), received
        #[rustfmt::skip]
        let events = [
            ("spo2.low", "medium", "start", "active", 1, 10, 10, None, 10),
            ("hr.high", "medium", "start", "active", 2, 20, 20, None, 20),
            ("spo2.low", "high", "escalate", "active", 3, 10, 30, None, 30),
            ("spo2.low", "high", "acknowledge", "acknowledged", 4, 10, 40, Some(("JD", 40)), 40),
            ("spo2.low", "high", "end", "ended", 6, 10, 60, Some(("JD", 40)), 60),
            // Reordered on the way: the hr.high acknowledgement comes last.
            ("hr.high", "medium", "acknowledge", "acknowledged", 5, 20, 50, Some(("AB", 50)), 61),
            // A repeat changes nothing.
            ("hr.high", "medium", "start", "active", 2, 20, 20, None, 62),
            // The same alarm again later is a new occurrence.
            ("spo2.low", "medium", "start", "active", 7, 70, 70, None, 70),
        ];
        for (id, priority, phase, state, seq, onset, at, ack, now) in events {
            let ack = ack.map(|(by, s)| (by, t(s)));
            let json = event(id, priority, phase, state, seq, t(onset), t(at), ack);
            push_alarm(&mut b, &json, t(now));
        }
        let h = &b.view(t(71)).beds[0].history;
        type Row<'a> = (&'a str, &'a str, u64, Option<u64>, Vec<(&'a str, u64)>);
        let rows: Vec<Row<'_>> = h
            .iter()
            .map(|r| {
                (
                    r.id.as_str(),
                    r.priority,
                    r.onset_ms,
                    r.ended_ms,
                    r.acks.iter().map(|a| (a.by.as_str(), a.at_ms)).collect(),
                )
            })
            .collect();
        let ms = |s| super::ms(t(s));
        assert_eq!(
            rows,
            vec![
                (
                    "spo2.low",
                    "high",
                    ms(10),
                    Some(ms(60)),
                    vec![("JD", ms(40))]
                ),
                ("hr.high", "medium", ms(20), None, vec![("AB", ms(50))]),
                ("spo2.low", "medium", ms(70), None, vec![]),
            ]
        );
        assert_eq!(h[0].label, "SpO2 low 86 % (limit 90 %)");
        assert_eq!(h[0].onset, super::clock(t(10)));

        // A new session starts a new history.
        feed(&mut b, TopicKind::Session, &session(8, "S-2"), false, t(80));
        assert!(b.view(t(80)).beds[0].history.is_empty());
        // Bounded: the oldest occurrences go.
        for i in 0..(HISTORY_MAX as u64 + 20) {
            let n = 100 + i;
            push_alarm(
                &mut b,
                &event("hr.high", "medium", "start", "active", n, t(n), t(n), None),
                t(n),
            );
        }
        let h = &b.view(t(300)).beds[0].history;
        assert_eq!(h.len(), HISTORY_MAX);
        assert_eq!(h[0].onset_ms, super::ms(t(120)));
        assert!(h.windows(2).all(|w| w[0].onset_ms < w[1].onset_ms));
    }

    #[test]
    fn the_limits_in_force_go_with_their_vitals() {
        use crate::engine::{EngineConfig, Limit};
        use crate::mqtt::payload::{limits, Ctx};
        use crate::vitals::Vital;
        let mut b = live_board();
        let ctx = Ctx {
            site: "s",
            bed: "b",
            names: &[],
            epoch: "0123456789abcdef",
        };
        let mut rules = EngineConfig::default().vitals;
        let body = |seq, rules: &[crate::engine::VitalRules; Vital::COUNT]| {
            String::from_utf8(limits(&ctx, seq, t(5), rules)).unwrap()
        };
        feed(&mut b, TopicKind::Limits, &body(5, &rules), true, t(5));
        let v = b.view(t(5));
        let by = |key: &str| {
            v.beds[0]
                .vitals
                .iter()
                .find(|x| x.key == key)
                .unwrap()
                .clone()
        };
        let spo2 = by("spo2");
        let kinds: Vec<(&str, f64, &str)> = spo2
            .limits
            .iter()
            .map(|l| (l.kind, l.value, l.priority))
            .collect();
        assert_eq!(
            kinds,
            vec![("critical_low", 85.0, "high"), ("low", 90.0, "medium")]
        );
        assert_eq!(spo2.limits_text.as_deref(), Some("low 90 %"));
        assert_eq!(by("hr").limits_text.as_deref(), Some("50-120 /min"));
        assert_eq!(by("hr").limits.len(), 4);
        let nibp = by("nibp");
        assert_eq!(
            nibp.limits_text.as_deref(),
            Some("sys 90-180, dia 50-110 mmHg")
        );
        assert_eq!(
            nibp.limits[1].value, 180.0,
            "the systolic's, as its sparkline"
        );

        // A reload: the same seq (no event since) is taken, an older one not.
        rules[Vital::SpO2.index()].low = Some(Limit::new(93.0, crate::engine::Priority::High));
        feed(&mut b, TopicKind::Limits, &body(5, &rules), false, t(6));
        let spo2 = b.view(t(6)).beds[0].vitals[1].clone();
        assert_eq!(spo2.limits[1].value, 93.0);
        assert_eq!(spo2.limits[1].priority, "high");
        rules[Vital::SpO2.index()].enabled = false;
        feed(&mut b, TopicKind::Limits, &body(4, &rules), false, t(7));
        assert_eq!(
            b.view(t(7)).beds[0].vitals[1].limits.len(),
            2,
            "older: dropped"
        );
        feed(&mut b, TopicKind::Limits, &body(9, &rules), false, t(8));
        let spo2 = b.view(t(8)).beds[0].vitals[1].clone();
        assert!(spo2.limits.is_empty());
        assert_eq!(spo2.limits_text.as_deref(), Some("alarms off"));
    }

    use super::super::feed::tests::{daemon_vitals as payload, nibp_of};
    use crate::vitals::{Measurement, Sample, Validity};

    /// The daemon's own `vitals` payload, as text.
    fn daemon_vitals(
        latest: &mut crate::mqtt::payload::Latest,
        seq: u64,
        at: SystemTime,
        readings: &[Measurement],
    ) -> String {
        String::from_utf8(payload(latest, seq, at, readings)).unwrap()
    }

    #[test]
    fn breathing_tiles_only_on_beds_whose_monitor_sends_breathing() {
        use crate::engine::{EngineConfig, Limit};
        use crate::mqtt::payload::{limits, Ctx, Latest};
        use crate::vitals::Vital;
        let mut b = live_board();
        // Limits for every vital arrive whatever the monitor measures.
        let mut rules = EngineConfig::default().vitals;
        rules[Vital::RespRate.index()].low = Some(Limit::new(8.0, Priority::Medium));
        rules[Vital::RespRate.index()].high = Some(Limit::new(30.0, Priority::Medium));
        rules[Vital::EtCo2.index()].low = Some(Limit::new(20.0, Priority::Medium));
        rules[Vital::EtCo2.index()].high = Some(Limit::new(55.0, Priority::Medium));
        let ctx = Ctx {
            site: "s",
            bed: "b",
            names: &[],
            epoch: "0123456789abcdef",
        };
        let body = String::from_utf8(limits(&ctx, 2, t(0), &rules)).unwrap();
        feed(&mut b, TopicKind::Limits, &body, true, t(0));
        let mut latest = Latest::default();
        let hr = Measurement::HeartRate(Sample::valid(72.0));
        let body = daemon_vitals(&mut latest, 3, t(1), &[hr]);
        feed(&mut b, TopicKind::Vitals, &body, false, t(1));
        let keys = |b: &Board, at| -> Vec<&'static str> {
            b.view(at).beds[0].vitals.iter().map(|v| v.key).collect()
        };
        assert_eq!(keys(&b, t(1)), ["hr", "spo2", "nibp"], "no capnography");

        // Capnography: RR and EtCO2 tiles with their units, trend and limits.
        for i in 0..4 {
            let body = daemon_vitals(
                &mut latest,
                4 + i,
                t(2 + 20 * i),
                &[
                    Measurement::RespRate(Sample::valid(14.0 - i as f32)),
                    Measurement::EtCo2(Sample::valid(38.0 + 2.0 * i as f32)),
                ],
            );
            feed(&mut b, TopicKind::Vitals, &body, false, t(2 + 20 * i));
        }
        heartbeat(&mut b, 9, t(62));
        let v = b.view(t(62));
        let bed = &v.beds[0];
        assert_eq!(
            bed.vitals.iter().map(|v| v.key).collect::<Vec<_>>(),
            ["hr", "spo2", "nibp", "rr", "etco2"]
        );
        let (rr, co2) = (&bed.vitals[3], &bed.vitals[4]);
        assert_eq!((rr.label, rr.text.as_str(), rr.unit), ("RR", "11", "/min"));
        assert_eq!(
            (co2.label, co2.text.as_str(), co2.unit),
            ("EtCO2", "44", "mmHg")
        );
        assert_eq!((rr.state, rr.trend, co2.trend), ("ok", "down", "up"));
        assert_eq!(rr.spark.len(), 4);
        assert_eq!(rr.limits_text.as_deref(), Some("8-30 /min"));
        assert_eq!(co2.limits_text.as_deref(), Some("20-55 mmHg"));
        assert_eq!(
            rr.limits.iter().map(|l| l.value).collect::<Vec<_>>(),
            [8.0, 30.0]
        );

        // Apnoea: a high alarm like any other, the RR tile in its colour.
        let apnoea = format!(
            r#"{{"schema_version":1,"seq":10,"time":"{0}","alarm":{{"id":"rr.apnoea","kind":"physiological","priority":"high","phase":"start","state":"active","value":0,"limit":null,"validity":null,"onset":"{0}","determined":"{0}","ack":null}}}}"#,
            crate::time::rfc3339(t(63))
        );
        push_alarm(&mut b, &apnoea, t(63));
        let v = b.view(t(63));
        assert_eq!(v.beds[0].urgency, 7);
        assert_eq!(v.beds[0].vitals[3].alarm, Some("high"));
        assert_eq!(v.beds[0].alarms[0].flash, "fast");
        assert_eq!(v.beds[0].vitals[4].alarm, None);

        // The capnograph stops sending: the tiles stay, without numbers.
        heartbeat(&mut b, 11, t(120));
        let v = b.view(t(120));
        assert_eq!(v.beds[0].vitals[3].state, "stale");
        assert_eq!(v.beds[0].vitals[3].text, "");
        assert_eq!(v.beds[0].vitals.len(), 5);
    }

    #[test]
    fn questionable_values_are_marked_and_invalid_ones_are_never_numbers() {
        let mut b = live_board();
        let json = |seq: u64, spo2: &str| {
            format!(r#"{{"schema_version":1,"seq":{seq},"vitals":{{"spo2":{spo2}}}}}"#)
        };
        let at = crate::time::rfc3339(t(1));
        // What vigil sends today: the validity, no number.
        let q = format!(r#"{{"value":null,"validity":"questionable","unit":"%","time":"{at}"}}"#);
        feed(&mut b, TopicKind::Vitals, &json(2, &q), false, t(1));
        let spo2 = b.view(t(1)).beds[0].vitals[1].clone();
        assert_eq!((spo2.state, spo2.text.as_str()), ("questionable", "?"));
        assert_eq!(
            spo2.note.as_deref(),
            Some("? questionable: the monitor flagged the signal quality")
        );
        assert!(spo2.parts[0].questionable);
        // With its number (a publisher that sends it): the number, marked.
        let q = format!(r#"{{"value":82,"validity":"questionable","unit":"%","time":"{at}"}}"#);
        feed(&mut b, TopicKind::Vitals, &json(3, &q), false, t(1));
        let spo2 = b.view(t(1)).beds[0].vitals[1].clone();
        assert_eq!((spo2.state, spo2.text.as_str()), ("questionable", "82?"));
        assert!(spo2.spark.is_empty(), "not a trusted value for the trend");
        assert_eq!(spo2.trend, "");
        // Invalid or unavailable: never a number, even when one is sent.
        for validity in ["invalid", "unavailable", "artifact", "sensor_off"] {
            let bad = format!(r#"{{"value":50,"validity":"{validity}","unit":"%","time":"{at}"}}"#);
            feed(&mut b, TopicKind::Vitals, &json(4, &bad), false, t(1));
            let spo2 = b.view(t(1)).beds[0].vitals[1].clone();
            assert_eq!(spo2.state, "invalid", "{validity}");
            assert!(spo2.text.is_empty() && spo2.parts.is_empty(), "{validity}");
            b.beds.get_mut(&bed()).unwrap().vitals_seq = 0;
        }

        // An alarm on a questionable value says so, in the list and the feed.
        let alarm = format!(
            r#"{{"schema_version":1,"seq":5,"time":"{at}","alarm":{{"id":"spo2.critical_low","kind":"physiological","priority":"high","phase":"start","state":"active","value":82,"limit":85,"validity":"questionable","onset":"{at}","determined":"{at}","ack":null}}}}"#
        );
        push_alarm(&mut b, &alarm, t(1));
        let v = b.view(t(2));
        let a = &v.beds[0].alarms[0];
        assert!(a.questionable);
        assert_eq!(
            a.label,
            "SpO2 critically low 82 % (limit 85 %) ? questionable signal"
        );
        assert_eq!(
            v.feed[0].text,
            "SpO2 critically low 82 % (limit 85 %) ? questionable signal started"
        );
        assert_eq!(v.beds[0].history[0].label, a.label);
        // The technical alarm that says why carries no such mark.
        let why = alarm
            .replace("seq\":5", "seq\":6")
            .replace("spo2.critical_low", "spo2.questionable")
            .replace("\"physiological\"", "\"technical\"")
            .replace("\"value\":82,\"limit\":85", "\"value\":null,\"limit\":null");
        push_alarm(&mut b, &why, t(1));
        let v = b.view(t(2));
        let tech = v.beds[0]
            .alarms
            .iter()
            .find(|a| a.kind == "technical")
            .unwrap();
        assert!(!tech.questionable);
        assert!(!tech.label.contains('?'), "{}", tech.label);
    }

    #[test]
    fn nibp_shows_its_components_as_measured() {
        use crate::mqtt::payload::Latest;
        let mut b = live_board();
        let mut latest = Latest::default();
        let mut seq = 1;
        let mut show = |b: &mut Board, m: Measurement| {
            seq += 1;
            let body = daemon_vitals(&mut latest, seq, t(seq), &[m]);
            feed(b, TopicKind::Vitals, &body, false, t(seq));
            b.view(t(seq)).beds[0].vitals[2].clone()
        };
        let ok = Sample::valid;
        let v = show(&mut b, nibp_of(ok(120.0), ok(80.0), ok(93.0)));
        assert_eq!((v.state, v.text.as_str()), ("ok", "120/80 (93)"));
        assert_eq!(
            v.parts.iter().map(|p| p.key).collect::<Vec<_>>(),
            ["sys", "dia", "mean"]
        );
        // The mean missing: no mean, and not the previous one.
        let none = Sample::missing(Validity::Unavailable);
        let v = show(&mut b, nibp_of(ok(122.0), ok(81.0), none));
        assert_eq!((v.state, v.text.as_str()), ("ok", "122/81"));
        assert_eq!(v.parts.len(), 2);
        assert_eq!(v.note, None);
        // One component questionable: that one marked, the others not.
        let q = Sample::new(79.0, Validity::Questionable);
        let v = show(&mut b, nibp_of(ok(118.0), q, ok(92.0)));
        assert_eq!((v.state, v.text.as_str()), ("questionable", "118/79? (92)"));
        let marks: Vec<(&str, bool)> = v.parts.iter().map(|p| (p.key, p.questionable)).collect();
        assert_eq!(marks, [("sys", false), ("dia", true), ("mean", false)]);
        assert_eq!(
            v.note.as_deref(),
            Some("? diastolic questionable: the monitor flagged the signal quality")
        );
        // A questionable mean alone.
        let v = show(&mut b, nibp_of(ok(118.0), ok(78.0), q));
        assert_eq!(v.text, "118/78 (79?)");
        // An implausible component: no pressure at all, the reason named.
        let v = show(
            &mut b,
            nibp_of(ok(40.0), Sample::missing(Validity::Artifact), none),
        );
        assert_eq!((v.state, v.text.as_str()), ("invalid", ""));
        assert!(v.parts.is_empty());
        assert_eq!(v.note.as_deref(), Some("diastolic artifact"));
    }

    #[test]
    fn feed_lines_stay_in_time_order() {
        let mut b = live_board();
        push_alarm(
            &mut b,
            &alarm("hr.high", "medium", "active", 5, t(50)),
            t(60),
        );
        // A journaled event replayed after a reconnect: older, later seq.
        push_alarm(
            &mut b,
            &alarm("spo2.low", "high", "active", 6, t(20)),
            t(61),
        );
        let ids: Vec<String> = b.view(t(61)).feed.iter().map(|l| l.id.clone()).collect();
        assert_eq!(ids, ["spo2.low", "hr.high"]);
    }

    #[test]
    fn a_gap_in_the_alarm_stream_is_reported() {
        let mut b = live_board();
        let with_stream = |seq: u64, stream: u64| {
            alarm("hr.high", "medium", "active", seq, t(1)).replacen(
                "\"time\"",
                &format!("\"stream_seq\":{stream},\"time\""),
                1,
            )
        };
        push_alarm(&mut b, &with_stream(2, 7), t(1));
        push_alarm(&mut b, &with_stream(3, 8), t(1));
        assert_eq!(b.view(t(1)).feed.len(), 2);
        push_alarm(&mut b, &with_stream(6, 11), t(1));
        // Not at once: the missing events may only be late.
        assert_eq!(b.view(t(2)).feed.len(), 3);
        let f = b.view(t(1) + GAP_WAIT).feed;
        assert_eq!(f.len(), 4);
        let gaps: Vec<&FeedLine> = f.iter().filter(|l| l.phase == "gap").collect();
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].id, "2 alarm event(s) lost on the way from vigil");
        // One of them turns up after all: one is still missing.
        push_alarm(&mut b, &with_stream(4, 9), t(7));
        let f = b.view(t(7)).feed;
        assert_eq!(f.len(), 5);
        assert_eq!(f.iter().filter(|l| l.phase == "gap").count(), 1);
        assert!(f
            .iter()
            .any(|l| l.id == "1 alarm event(s) lost on the way from vigil"));
        // After ten minutes the gap is settled into the feed for good.
        push_alarm(&mut b, &with_stream(7, 12), t(700));
        let f = b.view(t(700)).feed;
        assert_eq!(f.iter().filter(|l| l.phase == "gap").count(), 1);
        push_alarm(&mut b, &with_stream(5, 10), t(701));
        assert_eq!(
            b.view(t(701)).feed.len(),
            6,
            "a settled gap is not reopened by a straggler"
        );
    }

    #[test]
    fn events_reordered_on_the_way_are_shown_once_in_order_without_a_gap() {
        let mut b = live_board();
        let ev = |id: &str, state: &str, seq: u64, stream: u64, at: u64| {
            alarm(id, "medium", state, seq, t(at)).replacen(
                "\"time\"",
                &format!("\"stream_seq\":{stream},\"time\""),
                1,
            )
        };
        // As a bridge delivered them after a reconnect: 3 overtook 1 and 2,
        // then a repeat of 1.
        let arrivals = [
            ("hr.high", "active", 10, 0, 1, 1),
            ("spo2.low", "active", 13, 3, 4, 5),
            ("hr.high", "ended", 11, 1, 2, 5),
            ("spo2.low", "ended", 12, 2, 3, 5),
            ("hr.high", "ended", 11, 1, 2, 5),
        ];
        for (id, state, seq, stream, at, received) in arrivals {
            let json = ev(id, state, seq, stream, at);
            push_alarm(&mut b, &json, t(received));
        }
        let v = b.view(t(60));
        let phases: Vec<(String, String)> = v
            .feed
            .iter()
            .map(|l| (l.id.clone(), l.phase.clone()))
            .collect();
        assert_eq!(phases.len(), 4, "{phases:?}");
        assert!(v.feed.iter().all(|l| l.phase != "gap"), "{phases:?}");
        assert!(v.feed.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        // The late "spo2.low ended" (seq 12) must not end the alarm that
        // its newer event (seq 13) started.
        let bed = &v.beds[0];
        let ids: Vec<&str> = bed.alarms.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["spo2.low"]);
    }

    #[test]
    fn the_station_shows_the_worst_bed_first_and_filters_by_site() {
        let keys = [
            BedKey::new("north", "b1"),
            BedKey::new("north", "b2"),
            BedKey::new("south", "b1"),
            BedKey::new("south", "b2"),
            BedKey::new("south", "b3"),
        ];
        let mut b = Board::new(Settings::default(), &keys);
        b.link_up();
        let on = |b: &mut Board, k: &BedKey, kind: TopicKind, json: &str| {
            feed_to(b, k, kind, json, false, t(1));
        };
        let beat = format!(
            r#"{{"schema_version":1,"seq":1,"time":"{}","state":"online","beat":1}}"#,
            crate::time::rfc3339(t(1))
        );
        // south/b3 never heard of (NO DATA); the others beat.
        for k in &keys[..4] {
            on(&mut b, k, TopicKind::Status, &beat);
        }
        on(
            &mut b,
            &keys[1],
            TopicKind::Alarms,
            &alarm("spo2.low", "medium", "active", 2, t(1)),
        );
        on(
            &mut b,
            &keys[3],
            TopicKind::Alarms,
            &alarm("spo2.low", "high", "active", 2, t(1)),
        );
        on(
            &mut b,
            &keys[0],
            TopicKind::Alarms,
            &alarm("hr.high", "high", "acknowledged", 2, t(1)),
        );
        let v = b.view(t(2));
        let order: Vec<(&str, u8, Option<&str>)> = v
            .beds
            .iter()
            .map(|x| (x.key.as_str(), x.urgency, x.worst))
            .collect();
        assert_eq!(
            order,
            [
                ("south/b2", 7, Some("high")),
                ("south/b3", 6, None),
                ("north/b2", 5, Some("medium")),
                ("north/b1", 2, None),
                ("south/b1", 1, None),
            ]
        );
        let sites: Vec<(&str, usize, usize)> = v
            .sites
            .iter()
            .map(|s| (s.site.as_str(), s.beds, s.live_beds))
            .collect();
        assert_eq!(sites, [("north", 2, 2), ("south", 3, 2)]);
        let mut north = v.clone();
        north.only_sites(&["north".to_owned()]);
        let keys: Vec<&str> = north.beds.iter().map(|x| x.key.as_str()).collect();
        assert_eq!(keys, ["north/b2", "north/b1"]);
        assert!(north.feed.iter().all(|l| l.bed.starts_with("north/")));
        assert_eq!(north.feed.len(), 2);
        // The banner still tells of the blind bed at the other site.
        assert_eq!(north.banner, v.banner);
        assert!(north.banner.unwrap().contains("south/b3"));
        let mut all = v.clone();
        all.only_sites(&[]);
        assert_eq!(all, v);
    }

    #[test]
    fn several_beds_share_one_banner() {
        let mut b = Board::new(Settings::default(), &[bed(), BedKey::new("s", "c")]);
        b.link_up();
        heartbeat(&mut b, 1, t(0));
        let v = b.view(t(1));
        assert_eq!(v.blind, 1);
        assert_eq!(
            v.banner.as_deref(),
            Some("s/c: nothing received from vigil for this bed yet")
        );
        // The blind bed first (worst first).
        assert!(v.beds[1].live);
        assert_eq!(
            v.beds[0].no_data.as_deref(),
            Some("nothing received from vigil for this bed yet")
        );
    }

    #[test]
    fn command_results_are_matched_and_timed_out() {
        let mut b = live_board();
        b.command_sent(&bed(), "d-1", "acknowledge spo2.low by JD", t(1));
        assert_eq!(
            b.view(t(2)).beds[0].result.as_ref().unwrap().outcome,
            "pending"
        );
        assert_eq!(
            b.view(t(12)).beds[0].result.as_ref().unwrap().outcome,
            "unanswered"
        );
        feed(
            &mut b,
            TopicKind::CmdResult,
            r#"{"schema_version":1,"seq":3,"id":"d-1","command":"acknowledge","result":"rejected","reason":"unknown alarm id `x`"}"#,
            false,
            t(3),
        );
        let r = b.view(t(3)).beds[0].result.clone().unwrap();
        assert_eq!(r.outcome, "rejected");
        assert_eq!(
            r.text,
            "acknowledge spo2.low by JD: rejected: unknown alarm id `x`"
        );
        // Another display's result does not replace ours.
        feed(
            &mut b,
            TopicKind::CmdResult,
            r#"{"schema_version":1,"seq":4,"id":"other","result":"accepted"}"#,
            false,
            t(4),
        );
        assert_eq!(b.view(t(4)).beds[0].result.clone().unwrap().id, "d-1");
    }

    #[test]
    fn sparklines_span_45_minutes_thinned_and_values_in_alarm_are_marked() {
        let mut b = live_board();
        // One HR a second for an hour: the sparkline keeps the last 45 min.
        for i in 0..3600u64 {
            if i % 10 == 0 {
                heartbeat(&mut b, 10_000 + i, t(i));
            }
            let json = format!(
                r#"{{"schema_version":1,"seq":{},"vitals":{{"hr":{{"value":{},"validity":"valid","time":"{}"}}}}}}"#,
                20_000 + i,
                60 + (i / 60) % 40,
                crate::time::rfc3339(t(i)),
            );
            feed(&mut b, TopicKind::Vitals, &json, false, t(i));
        }
        let v = b.view(t(3600));
        let spark = &v.beds[0].vitals[0].spark;
        assert!((80..=91).contains(&spark.len()), "{}", spark.len());
        assert!(
            spark.first().unwrap()[0] >= -45.0 * 60.0,
            "{:?}",
            spark.first()
        );
        assert_eq!(spark.last().unwrap(), &[-1.0, (60 + 59 % 40) as f64]);
        assert!(spark.windows(2).all(|w| w[0][0] < w[1][0]), "oldest first");
        assert_eq!(v.beds[0].vitals[0].alarm, None);
        // An HR alarm colours the HR tile; a technical one does not.
        push_alarm(
            &mut b,
            &alarm("hr.high", "high", "active", 40_000, t(3600)),
            t(3600),
        );
        push_alarm(
            &mut b,
            &alarm("spo2.sensor_off", "medium", "active", 40_001, t(3600))
                .replace("physiological", "technical"),
            t(3600),
        );
        let v = b.view(t(3600));
        assert_eq!(v.beds[0].vitals[0].alarm, Some("high"));
        assert_eq!(v.beds[0].vitals[1].alarm, None);
    }

    #[test]
    fn vitals_trends_staleness_nibp_age_and_dose_time() {
        let mut b = live_board();
        for (i, hr) in [(0u64, 70), (30, 72), (60, 80)] {
            heartbeat(&mut b, 10 + i, t(i));
            let json = format!(
                r#"{{"schema_version":1,"seq":{},"vitals":{{"hr":{{"value":{hr},"validity":"valid","time":"{}"}},
                "spo2":{{"value":null,"validity":"sensor_off","time":"{1}"}},
                "nibp_sys":{{"value":150,"validity":"valid","time":"{2}"}},
                "nibp_dia":{{"value":95,"validity":"valid","time":"{2}"}}}}}}"#,
                20 + i,
                crate::time::rfc3339(t(i)),
                crate::time::rfc3339(t(0)),
            );
            feed(&mut b, TopicKind::Vitals, &json, false, t(i));
        }
        feed(
            &mut b,
            TopicKind::Session,
            &format!(
                r#"{{"schema_version":1,"seq":90,"state":{{"phase":"dosing","session":"S-1","baselines":{{"hr":70,"nibp_sys":122}},"discharge_ready":true,"doses":[{{"number":1,"route":"im","time":"{}"}}]}}}}"#,
                crate::time::rfc3339(t(0))
            ),
            false,
            t(60),
        );
        let v = b.view(t(65));
        let bed = &v.beds[0];
        assert_eq!(bed.baselines, ["HR 70 /min", "NIBP systolic 122 mmHg"]);
        assert!(bed.discharge_ready);
        assert_eq!(bed.vitals[0].text, "80");
        assert_eq!(bed.vitals[0].trend, "up");
        assert_eq!(bed.vitals[1].state, "invalid");
        assert_eq!(bed.vitals[1].note.as_deref(), Some("sensor off"));
        assert_eq!(bed.vitals[2].text, "150/95");
        assert_eq!(bed.vitals[2].age.as_deref(), Some("65 s ago"));
        assert_eq!(bed.phase.as_deref(), Some("dosing"));
        assert_eq!(bed.since_dose.as_deref(), Some("1:05"));
        // HR 35 s old: hidden as stale, not shown as live.
        heartbeat(&mut b, 100, t(95));
        let v = b.view(t(95));
        assert_eq!(v.beds[0].vitals[0].state, "stale");
        assert_eq!(v.beds[0].vitals[0].text, "");
    }
}
