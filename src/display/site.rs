//! NO DATA per site: whether the station can see a site (a room or a
//! clinic with its own broker, bridged to the central one) and, once it
//! sees it again, for how long it was blind.
//!
//! A site is blind when the display's own broker link is down, when the
//! site's bridge reported itself lost (Mosquitto's bridge notification, its
//! Last Will `0` published by the central broker), or when no bed of the
//! site has sent a live message within the heartbeat timeout. Per-bed NO
//! DATA says a bed is blind; this says the whole site is, and why: one
//! broken bridge rather than every monitor of a room unplugged at once.
//!
//! A blind stretch runs from the last live message heard from the site to
//! the next one; [`SiteTrack`] keeps the last few, with their cause, so
//! the station can say afterwards "room-2 was blind 14 s (bridge lost)".
//! Retained messages are old news and never count as hearing from a site.
//!
//! Pure: `now` is an argument everywhere. Used by [`super::state::Board`].

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// Why a site went blind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The site's bridge to the central broker is down (its notification).
    BridgeLost,
    /// The display's own link to the broker went down.
    StationLink,
    /// Nothing from any bed of the site within the heartbeat timeout.
    Silent,
}

impl Cause {
    fn text(self) -> &'static str {
        match self {
            Cause::BridgeLost => "bridge to the central broker lost",
            Cause::StationLink => "station disconnected from the broker",
            Cause::Silent => "no data from any bed",
        }
    }
}

/// One blind stretch of a site that has ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outage {
    /// Last live message before it (display clock).
    pub from: SystemTime,
    /// First live message after it.
    pub to: SystemTime,
    /// The most specific cause seen during it.
    pub cause: Cause,
}

impl Outage {
    /// How long the site was blind.
    pub fn length(&self) -> Duration {
        self.to.duration_since(self.from).unwrap_or(Duration::ZERO)
    }
}

/// Outages kept per site.
const KEPT: usize = 16;

/// What the display knows about one site.
#[derive(Clone, Debug, Default)]
pub struct SiteTrack {
    /// Arrival of the last live message from any bed (or the bridge).
    last_heard: Option<SystemTime>,
    /// The bridge said it is down, at this time.
    bridge_down: Option<SystemTime>,
    /// The display's link dropped since the site was last heard.
    link_lost: bool,
    /// Ended outages, oldest first.
    outages: VecDeque<Outage>,
}

impl SiteTrack {
    /// A live message from the site at `now`; closes a blind stretch longer
    /// than `timeout`, or any during which the bridge or the link was lost.
    pub fn heard(&mut self, now: SystemTime, timeout: Duration) {
        if let Some(from) = self.last_heard {
            let gap = now.duration_since(from).unwrap_or(Duration::ZERO);
            let cause = self.cause().or((gap > timeout).then_some(Cause::Silent));
            if let Some(cause) = cause {
                self.outages.push_back(Outage {
                    from,
                    to: now,
                    cause,
                });
                while self.outages.len() > KEPT {
                    self.outages.pop_front();
                }
            }
        }
        self.last_heard = Some(now);
        self.bridge_down = None;
        self.link_lost = false;
    }

    /// The bridge's notification: `up` true (connected) or false (lost).
    /// A live "connected" counts as hearing from the site.
    pub fn bridge(&mut self, up: bool, retained: bool, now: SystemTime, timeout: Duration) {
        match (up, retained) {
            (true, false) => self.heard(now, timeout),
            (true, true) => {}
            (false, _) => {
                self.bridge_down.get_or_insert(now);
            }
        }
    }

    /// The display's link to the broker dropped.
    pub fn link_lost(&mut self) {
        self.link_lost = true;
    }

    fn cause(&self) -> Option<Cause> {
        if self.bridge_down.is_some() {
            Some(Cause::BridgeLost)
        } else if self.link_lost {
            Some(Cause::StationLink)
        } else {
            None
        }
    }

    /// Ended outages, oldest first.
    pub fn outages(&self) -> impl Iterator<Item = &Outage> {
        self.outages.iter()
    }

    /// The site's view at `now`. `link_up`: the display's broker link;
    /// `live_beds`/`beds`: beds of the site without NO DATA, and in all.
    pub fn view(
        &self,
        site: &str,
        now: SystemTime,
        link_up: bool,
        live_beds: usize,
        beds: usize,
    ) -> SiteView {
        let cause = if !link_up {
            Some(Cause::StationLink)
        } else if self.bridge_down.is_some() {
            Some(Cause::BridgeLost)
        } else if live_beds == 0 {
            Some(Cause::Silent)
        } else {
            None
        };
        let since = self
            .last_heard
            .map(|t| now.duration_since(t).unwrap_or_default());
        let no_data = cause.map(|c| match since {
            Some(d) => format!("{} (blind for {})", c.text(), super::state::human(d)),
            None => format!("{} (never heard)", c.text()),
        });
        SiteView {
            site: site.to_owned(),
            beds,
            live_beds,
            cause,
            no_data,
            blind_for_ms: cause.and(since).map(|d| d.as_millis() as u64),
            last_outage: self.outages.back().map(|o| OutageView {
                from_ms: ms(o.from),
                to_ms: ms(o.to),
                length_ms: o.length().as_millis() as u64,
                cause: o.cause,
                text: format!(
                    "blind for {} ({})",
                    super::state::human(o.length()),
                    o.cause.text()
                ),
            }),
        }
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One site at one instant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SiteView {
    /// Site name, as in the topics.
    pub site: String,
    /// Beds of the site the display knows.
    pub beds: usize,
    /// Of which live (no NO DATA).
    pub live_beds: usize,
    /// Why the site is blind now, if it is.
    pub cause: Option<Cause>,
    /// The banner text when blind.
    pub no_data: Option<String>,
    /// Blind since the last live message this long ago (ms), when blind.
    pub blind_for_ms: Option<u64>,
    /// The latest blind stretch that ended.
    pub last_outage: Option<OutageView>,
}

/// An ended outage as shown.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutageView {
    /// Start, ms since the Unix epoch (display clock).
    pub from_ms: u64,
    /// End, ms since the Unix epoch.
    pub to_ms: u64,
    /// Length in ms.
    pub length_ms: u64,
    /// Cause.
    pub cause: Cause,
    /// `blind for 14 s (bridge to the central broker lost)`.
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(15);

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn a_steady_site_has_no_outage_and_is_live() {
        let mut s = SiteTrack::default();
        for i in 0..30 {
            s.heard(at(i), T);
        }
        assert_eq!(s.outages().count(), 0);
        let v = s.view("room-1", at(30), true, 2, 2);
        assert_eq!(v.no_data, None);
        assert_eq!(v.blind_for_ms, None);
    }

    #[test]
    fn a_lost_bridge_makes_the_site_blind_at_once_and_is_recorded_with_its_length() {
        let mut s = SiteTrack::default();
        s.heard(at(10), T);
        s.bridge(false, false, at(11), T);
        // Beds still look live (heartbeats not yet late): the bridge says otherwise.
        let v = s.view("room-1", at(12), true, 2, 2);
        assert_eq!(v.cause, Some(Cause::BridgeLost));
        assert_eq!(v.blind_for_ms, Some(2000));
        assert!(
            v.no_data.unwrap().contains("bridge"),
            "banner names the bridge"
        );
        s.bridge(true, false, at(15), T);
        let o: Vec<_> = s.outages().cloned().collect();
        assert_eq!(o.len(), 1);
        assert_eq!(
            (o[0].from, o[0].to, o[0].cause),
            (at(10), at(15), Cause::BridgeLost)
        );
        let v = s.view("room-1", at(16), true, 2, 2);
        assert_eq!(v.no_data, None);
        assert_eq!(v.last_outage.unwrap().length_ms, 5000);
    }

    #[test]
    fn silence_longer_than_the_timeout_is_an_outage_shorter_is_not() {
        let mut s = SiteTrack::default();
        s.heard(at(0), T);
        s.heard(at(14), T);
        assert_eq!(s.outages().count(), 0);
        s.heard(at(40), T);
        let o = s.outages().next().unwrap();
        assert_eq!(
            (o.length(), o.cause),
            (Duration::from_secs(26), Cause::Silent)
        );
    }

    #[test]
    fn a_station_link_drop_is_an_outage_of_every_site_however_short() {
        let mut s = SiteTrack::default();
        s.heard(at(0), T);
        s.link_lost();
        assert_eq!(
            s.view("room-1", at(2), false, 0, 1).cause,
            Some(Cause::StationLink)
        );
        s.heard(at(3), T);
        assert_eq!(s.outages().next().unwrap().cause, Cause::StationLink);
    }

    #[test]
    fn retained_notices_do_not_count_as_hearing_from_the_site() {
        let mut s = SiteTrack::default();
        s.heard(at(0), T);
        s.bridge(true, true, at(100), T);
        assert_eq!(s.outages().count(), 0);
        let v = s.view("room-1", at(100), true, 0, 1);
        assert_eq!(v.cause, Some(Cause::Silent));
        assert_eq!(v.blind_for_ms, Some(100_000));
        // A retained "lost" is the broker's current knowledge: blind.
        s.bridge(false, true, at(101), T);
        assert_eq!(
            s.view("room-1", at(101), true, 1, 1).cause,
            Some(Cause::BridgeLost)
        );
    }
}
