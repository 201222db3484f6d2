//! The topic tree of the feed, for the daemon that publishes it and the
//! displays that read it: one layout (a prefix template with `{site}` and
//! `{bed}`, `vigil/v1/{site}/{bed}/` by default) and the topics of a bed
//! under it (table in [`crate::mqtt`]). [`Topics::new`] is the one rule for
//! a prefix: the daemon's configuration (`mqtt.prefix`) and the displays
//! (`--prefix`) both refuse what it refuses, so vigil never publishes where
//! no display can read.
//!
//! Pure. Depends on nothing else in vigil.

use std::fmt;

/// The bed segment of a site's bridge notification topic (no bed is named so).
pub const BRIDGE_SEGMENT: &str = "_bridge";

/// The daemon's default topic prefix.
pub const DEFAULT_PREFIX: &str = "vigil/v1/{site}/{bed}/";

/// What a prefix template must be (the displays find the site and the bed
/// of a topic at the levels of `{site}` and `{bed}`).
pub const PREFIX_RULE: &str = "a topic path of at most 200 printable characters ending in '/', with {site} and {bed} each once as a level of its own (e.g. vigil/v1/{site}/{bed}/), without '+', '#', empty levels or other placeholders";

/// A layout or a bed that is not one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TopicsError {
    /// The prefix template is not one the displays can read.
    #[error("prefix {0:?} must be {PREFIX_RULE}")]
    Prefix(String),
    /// A `site/bed` argument that is not one.
    #[error(
        "bed {0:?} must be written SITE/BED with letters, digits, '-' or '_' (e.g. clinic-a/bed-2)"
    )]
    Bed(String),
}

/// One bed: site and bed name as in the topic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BedKey {
    /// Site.
    pub site: String,
    /// Bed.
    pub bed: String,
}

impl BedKey {
    /// A key from its parts.
    pub fn new(site: &str, bed: &str) -> BedKey {
        BedKey {
            site: site.to_owned(),
            bed: bed.to_owned(),
        }
    }

    /// Parses `SITE/BED`.
    pub fn parse(s: &str) -> Result<BedKey, TopicsError> {
        let ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 64
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        match s.split_once('/') {
            Some((site, bed)) if ok(site) && ok(bed) => Ok(BedKey::new(site, bed)),
            _ => Err(TopicsError::Bed(s.to_owned())),
        }
    }
}

impl fmt::Display for BedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.site, self.bed)
    }
}

/// Which topic of a bed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicKind {
    /// `vitals`.
    Vitals,
    /// `alarms`.
    Alarms,
    /// `alarms/active`.
    Active,
    /// `limits`: the alarm limits in force.
    Limits,
    /// `session`.
    Session,
    /// `status`.
    Status,
    /// `cmd` (commands, also those of other displays).
    Cmd,
    /// `cmd/result`.
    CmdResult,
}

impl TopicKind {
    /// Every topic of a bed, with its name under the bed's prefix.
    pub const ALL: [(TopicKind, &'static str); 8] = [
        (TopicKind::Vitals, "vitals"),
        (TopicKind::Alarms, "alarms"),
        (TopicKind::Active, "alarms/active"),
        (TopicKind::Limits, "limits"),
        (TopicKind::Session, "session"),
        (TopicKind::Status, "status"),
        (TopicKind::Cmd, "cmd"),
        (TopicKind::CmdResult, "cmd/result"),
    ];

    /// The topic's name under the bed's prefix (`alarms/active`).
    pub fn name(self) -> &'static str {
        TopicKind::ALL[self as usize].1
    }
}

// `name` indexes `ALL` by the variant: keep them in one order.
const _: () = {
    let mut i = 0;
    while i < TopicKind::ALL.len() {
        assert!(TopicKind::ALL[i].0 as usize == i);
        i += 1;
    }
};

/// The topic layout: a prefix template with `{site}` and `{bed}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Checks the template (`vigil/v1/{site}/{bed}/` by default) against
    /// [`PREFIX_RULE`].
    pub fn new(prefix: &str) -> Result<Topics, TopicsError> {
        let levels: Vec<&str> = match prefix.strip_suffix('/') {
            Some(p) => p.split('/').collect(),
            None => Vec::new(),
        };
        let once = |p: &str| levels.iter().filter(|l| **l == p).count() == 1;
        let placeholder = |l: &str| l == "{site}" || l == "{bed}";
        let plain =
            |l: &&str| placeholder(l) || !(l.is_empty() || l.contains(['+', '#', '{', '}']));
        if prefix.len() > 200
            || prefix.chars().any(char::is_control)
            || !once("{site}")
            || !once("{bed}")
            || !levels.iter().all(plain)
        {
            return Err(TopicsError::Prefix(prefix.to_owned()));
        }
        Ok(Topics {
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix of one bed.
    pub fn bed_prefix(&self, bed: &BedKey) -> String {
        expand(&self.prefix, &bed.site, &bed.bed)
    }

    /// Every topic of one bed.
    pub fn of_bed(&self, bed: &BedKey) -> BedTopics {
        BedTopics::new(&self.prefix, &bed.site, &bed.bed)
    }

    /// The subscription filter for the displays: every topic of one bed, or
    /// of every bed when `bed` is `None`.
    pub fn filter(&self, bed: Option<&BedKey>) -> String {
        match bed {
            Some(b) => format!("{}#", self.bed_prefix(b)),
            None => format!(
                "{}#",
                self.prefix.replace("{site}", "+").replace("{bed}", "+")
            ),
        }
    }

    /// The command topic of a bed.
    pub fn cmd(&self, bed: &BedKey) -> String {
        format!("{}{}", self.bed_prefix(bed), TopicKind::Cmd.name())
    }

    /// The MQTT 5 response topic a display names in its commands to a
    /// bed: `cmd/result/<client id>` under the bed's prefix (the daemon
    /// answers only below its own `cmd/result`; see docs/mqtt.md).
    pub fn reply(&self, bed: &BedKey, client_id: &str) -> String {
        let id: String = client_id
            .chars()
            .map(|c| {
                if matches!(c, '/' | '+' | '#') || c.is_control() {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        format!(
            "{}{}/{id}",
            self.bed_prefix(bed),
            TopicKind::CmdResult.name()
        )
    }

    /// The site whose bridge notification this is: the layout with the bed
    /// segment `_bridge` and nothing after it (`vigil/v1/{site}/_bridge`, as
    /// `notification_topic` in config/mosquitto/room-broker.conf).
    pub fn bridge_site(&self, topic: &str) -> Option<String> {
        let tmpl: Vec<&str> = self.prefix.trim_end_matches('/').split('/').collect();
        let parts: Vec<&str> = topic.split('/').collect();
        if parts.len() != tmpl.len() {
            return None;
        }
        let mut site = None;
        for (t, p) in tmpl.iter().zip(&parts) {
            match *t {
                "{site}" => site = Some(*p),
                "{bed}" if *p == BRIDGE_SEGMENT => {}
                lit if lit == *p => {}
                _ => return None,
            }
        }
        site.map(str::to_owned)
    }

    /// Which bed and which topic, or `None` for a topic outside the layout.
    pub fn parse(&self, topic: &str) -> Option<(BedKey, TopicKind)> {
        let tmpl: Vec<&str> = self.prefix.trim_end_matches('/').split('/').collect();
        let mut parts = topic.splitn(tmpl.len() + 1, '/');
        let (mut site, mut bed) = (None, None);
        for t in &tmpl {
            let p = parts.next()?;
            match *t {
                "{site}" => site = Some(p),
                "{bed}" => bed = Some(p),
                lit if lit == p => {}
                _ => return None,
            }
        }
        let rest = parts.next()?;
        // A result on a display's MQTT 5 response topic (`cmd/result/ID`).
        if rest
            .strip_prefix(TopicKind::CmdResult.name())
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|id| !id.is_empty())
        {
            return Some((BedKey::new(site?, bed?), TopicKind::CmdResult));
        }
        let kind = TopicKind::ALL
            .iter()
            .find(|(_, s)| *s == rest)
            .map(|(k, _)| *k)?;
        Some((BedKey::new(site?, bed?), kind))
    }
}

/// Every topic of one bed, spelled out (the daemon publishes on them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BedTopics {
    /// The bed's prefix, ending in '/': every topic of the bed is below it.
    pub prefix: String,
    /// `vitals`.
    pub vitals: String,
    /// `alarms`.
    pub alarms: String,
    /// `alarms/active`.
    pub active: String,
    /// `limits`: the alarm limits in force.
    pub limits: String,
    /// `session`.
    pub session: String,
    /// `status`.
    pub status: String,
    /// `cmd`.
    pub cmd: String,
    /// `cmd/result`.
    pub cmd_result: String,
}

impl BedTopics {
    /// The topics of one bed under `prefix` (`mqtt.prefix`, checked by
    /// [`Topics::new`]), with `{site}` and `{bed}` replaced.
    pub fn new(prefix: &str, site: &str, bed: &str) -> BedTopics {
        let p = expand(prefix, site, bed);
        let t = |kind: TopicKind| format!("{p}{}", kind.name());
        BedTopics {
            vitals: t(TopicKind::Vitals),
            alarms: t(TopicKind::Alarms),
            active: t(TopicKind::Active),
            limits: t(TopicKind::Limits),
            session: t(TopicKind::Session),
            status: t(TopicKind::Status),
            cmd: t(TopicKind::Cmd),
            cmd_result: t(TopicKind::CmdResult),
            prefix: p,
        }
    }
}

/// Replaces `{site}` and `{bed}`.
pub fn expand(template: &str, site: &str, bed: &str) -> String {
    template.replace("{site}", site).replace("{bed}", bed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_expand_the_prefix() {
        let t = BedTopics::new("vigil/v1/{site}/{bed}/", "clinic-a", "bed-2");
        assert_eq!(t.alarms, "vigil/v1/clinic-a/bed-2/alarms");
        assert_eq!(t.active, "vigil/v1/clinic-a/bed-2/alarms/active");
        assert_eq!(t.cmd_result, "vigil/v1/clinic-a/bed-2/cmd/result");
    }

    #[test]
    fn the_daemons_topics_are_the_ones_the_displays_read() {
        let layout = Topics::new(DEFAULT_PREFIX).unwrap();
        let bed = BedKey::new("clinic-a", "bed-2");
        let t = layout.of_bed(&bed);
        let published = [
            &t.vitals,
            &t.alarms,
            &t.active,
            &t.limits,
            &t.session,
            &t.status,
            &t.cmd,
            &t.cmd_result,
        ];
        for ((kind, _), topic) in TopicKind::ALL.iter().zip(published) {
            assert_eq!(layout.parse(topic), Some((bed.clone(), *kind)), "{topic}");
        }
        assert_eq!(layout.cmd(&bed), t.cmd);
    }

    #[test]
    fn topics_round_trip_and_reject_others() {
        let t = Topics::new(DEFAULT_PREFIX).unwrap();
        let bed = BedKey::new("clinic-a", "bed-2");
        assert_eq!(t.filter(Some(&bed)), "vigil/v1/clinic-a/bed-2/#");
        assert_eq!(t.filter(None), "vigil/v1/+/+/#");
        assert_eq!(t.cmd(&bed), "vigil/v1/clinic-a/bed-2/cmd");
        assert_eq!(
            t.reply(&bed, "station/1+#"),
            "vigil/v1/clinic-a/bed-2/cmd/result/station_1__"
        );
        assert_eq!(
            t.parse("vigil/v1/clinic-a/bed-2/cmd/result/station-1"),
            Some((bed.clone(), TopicKind::CmdResult))
        );
        assert_eq!(t.parse("vigil/v1/clinic-a/bed-2/cmd/result/"), None);
        assert_eq!(
            t.parse("vigil/v1/clinic-a/bed-2/alarms/active"),
            Some((bed.clone(), TopicKind::Active))
        );
        assert_eq!(
            t.parse("vigil/v1/clinic-a/bed-2/cmd/result"),
            Some((bed, TopicKind::CmdResult))
        );
        assert_eq!(t.parse("vigil/v2/clinic-a/bed-2/alarms"), None);
        assert_eq!(t.parse("vigil/v1/clinic-a/bed-2/other"), None);
        assert_eq!(
            t.bridge_site("vigil/v1/room-1/_bridge").as_deref(),
            Some("room-1")
        );
        assert_eq!(t.bridge_site("vigil/v1/room-1/bed-1"), None);
        assert_eq!(t.bridge_site("vigil/v1/room-1/_bridge/x"), None);
        assert_eq!(t.parse("vigil/v1/room-1/_bridge"), None);
        assert!(Topics::new("vigil/{site}/").is_err());
        assert!(Topics::new("vigil/{site}/{bed}").is_err());
        assert!(BedKey::parse("a/b c").is_err());
        assert_eq!(t.of_bed(&BedKey::new("a", "b")).prefix, "vigil/v1/a/b/");
        assert_eq!(BedKey::parse("a/b").unwrap().to_string(), "a/b");
    }

    #[test]
    fn a_prefix_is_one_the_displays_can_read() {
        for good in [
            DEFAULT_PREFIX,
            "{site}/{bed}/",
            "ward-3/vigil/{bed}/{site}/",
            "clinic é/{site}/{bed}/",
        ] {
            let t = Topics::new(good).unwrap();
            let bed = BedKey::new("clinic-a", "bed-2");
            let topics = t.of_bed(&bed);
            assert_eq!(t.parse(&topics.alarms), Some((bed, TopicKind::Alarms)));
        }
        let long = format!("{}/{{site}}/{{bed}}/", "x".repeat(200));
        for bad in [
            "vigil/",
            "vigil/v1/bed-1/",
            "vigil/{site}/",
            "vigil/{bed}/",
            "vigil/{site}/{bed}",
            "vigil/{site}/{site}/{bed}/",
            "vigil/x{site}/{bed}/",
            "vigil/{site}/{bed}/{room}/",
            "/vigil/{site}/{bed}/",
            "vigil//{site}/{bed}/",
            "vigil/+/{site}/{bed}/",
            "vigil/#/{site}/{bed}/",
            "vigil/\u{7}/{site}/{bed}/",
            "",
            "/",
            &long,
        ] {
            let e = Topics::new(bad).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("prefix {bad:?} must be {PREFIX_RULE}"),
                "{bad}"
            );
        }
    }
}
