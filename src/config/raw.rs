//! The file as written: typed raw structs that serde fills from the TOML
//! document, before any range or cross-field check.
//!
//! Deserialization must not stop at the first mistake (the validate step
//! reports every problem at once), so nothing here fails on a wrong type:
//! - a leaf is a [`Val`], which keeps either the typed value or the reason it
//!   is not one (`expected a string, found integer 10`);
//! - a table is a [`Node`], which is the typed table, the string `"off"`, or
//!   a note of what was found instead;
//!   (`[[source]]` is a node holding an array of them).
//!
//! Every field is optional: absent means the built-in default. Keys that
//! match no field are skipped by serde and collected with their paths by
//! `serde_ignored` (see [`read`]). [`fields_of`] lists a struct's keys for
//! the "expected one of" part of an unknown-key message.

use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;
use std::collections::BTreeMap;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::engine::Priority;

/// Parses `text` into the raw structs. Returns the document (for positions),
/// the raw configuration and the paths of unknown keys (`alarms.hr.hi`,
/// `source[1].colour`). Fails only on TOML syntax.
pub(super) fn read(text: &str) -> Result<(RawConfig, Vec<String>), toml::de::Error> {
    let de = toml::de::Deserializer::parse(text)?;
    let mut unknown = Vec::new();
    let raw = serde_ignored::deserialize(de, |path| unknown.push(path_key(&path)))?;
    Ok((raw, unknown))
}

/// A serde path as the configuration's key path: `source[0].name`.
fn path_key(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", path_key(parent)),
        P::Map { parent, key } => {
            let parent = path_key(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            path_key(parent)
        }
    }
}

/// The keys of the struct `T` deserializes from (its serde field names).
pub(super) fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    /// A deserializer that answers nothing but the field list it is asked for.
    struct Probe;
    #[derive(Debug)]
    struct Fields(&'static [&'static str]);
    impl fmt::Display for Fields {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("field probe")
        }
    }
    impl std::error::Error for Fields {}
    impl de::Error for Fields {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Fields(&[])
        }
    }
    impl<'de> Deserializer<'de> for Probe {
        type Error = Fields;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
            Err(Fields(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Fields> {
            Err(Fields(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    match T::deserialize(Probe) {
        Err(Fields(fields)) => fields,
        Ok(_) => &[],
    }
}

// ----- leaves and nodes ----------------------------------------------------------

/// A leaf value as written: the typed value, or why it is not one.
#[derive(Clone, Debug)]
pub(super) struct Val<T>(pub Result<T, String>);

/// A leaf type: converted from the TOML value, with a message naming what
/// was expected and what was found.
pub(super) trait Leaf: Sized {
    fn from_value(v: toml::Value) -> Result<Self, String>;
}

impl<'de, T: Leaf> Deserialize<'de> for Val<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        toml::Value::deserialize(d).map(|v| Val(T::from_value(v)))
    }
}

/// `found integer 10`, `found table`: what a wrong value is, for messages.
pub(super) fn found(v: &toml::Value) -> String {
    match v {
        toml::Value::Table(_) => "found a table".into(),
        toml::Value::Array(_) => format!("found {v}"),
        other => format!("found {} {other}", other.type_str()),
    }
}

impl Leaf for String {
    fn from_value(v: toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::String(s) => Ok(s),
            other => Err(format!("expected a string, {}", found(&other))),
        }
    }
}

impl Leaf for bool {
    fn from_value(v: toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::Boolean(b) => Ok(b),
            other => Err(format!("expected true or false, {}", found(&other))),
        }
    }
}

/// Any finite number (integer or float).
impl Leaf for f64 {
    fn from_value(v: toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::Integer(i) => Ok(i as f64),
            toml::Value::Float(f) if f.is_finite() => Ok(f),
            other => Err(format!("expected a number, {}", found(&other))),
        }
    }
}

/// A whole number.
impl Leaf for i64 {
    fn from_value(v: toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::Integer(i) => Ok(i),
            other => Err(format!("expected a whole number, {}", found(&other))),
        }
    }
}

impl Leaf for Duration {
    fn from_value(v: toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::String(s) => super::parse_duration(&s).ok_or_else(|| {
                format!(
                    "`{s}` is not a duration (write e.g. \"500ms\", \"10s\", \"5min\", \"2h\", \"30d\")"
                )
            }),
            other => Err(format!(
                "expected a string (a duration such as \"10s\" or \"5min\"), {}",
                found(&other)
            )),
        }
    }
}

/// A value, or the string `"off"` (`None`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct OrOff<T>(pub Option<T>);

impl<T: Leaf> Leaf for OrOff<T> {
    fn from_value(v: toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::String(s) if s == "off" => Ok(OrOff(None)),
            other => T::from_value(other)
                .map(|t| OrOff(Some(t)))
                .map_err(|e| format!("{e}, or \"off\"")),
        }
    }
}

impl Leaf for Priority {
    fn from_value(v: toml::Value) -> Result<Self, String> {
        let s = String::from_value(v)?;
        Priority::parse(&s)
            .ok_or_else(|| format!("`{s}` is not a priority (expected low, medium or high)"))
    }
}

/// `[min, max]`.
impl Leaf for [f64; 2] {
    fn from_value(v: toml::Value) -> Result<Self, String> {
        let bad = |v: &toml::Value| format!("expected [min, max], {}", found(v));
        match &v {
            toml::Value::Array(a) if a.len() == 2 => {
                match (f64::from_value(a[0].clone()), f64::from_value(a[1].clone())) {
                    (Ok(min), Ok(max)) => Ok([min, max]),
                    _ => Err(bad(&v)),
                }
            }
            other => Err(bad(other)),
        }
    }
}

/// A list of strings (vital names).
impl Leaf for Vec<String> {
    fn from_value(v: toml::Value) -> Result<Self, String> {
        let bad = |v: &toml::Value| {
            format!(
                "expected a list of names such as [\"spo2\", \"pr\"], {}",
                found(v)
            )
        };
        match v {
            toml::Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned).ok_or_else(|| bad(item)))
                .collect(),
            other => Err(bad(&other)),
        }
    }
}

/// A table as written: the typed table, `"off"`, an array (of tables, for
/// `[[source]]`), or what was found instead.
#[derive(Clone, Debug)]
pub(super) enum Node<T> {
    Table(T),
    Off,
    Array(Vec<Node<T>>),
    Bad(String),
}

impl<T> Node<T> {
    /// `found ...` for a node that is not a table (`None` for a table).
    pub(super) fn not_a_table(&self) -> Option<String> {
        match self {
            Node::Table(_) => None,
            Node::Off => Some("found string \"off\"".into()),
            Node::Array(_) => Some("found an array".into()),
            Node::Bad(found) => Some(found.clone()),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Node<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor(PhantomData))
    }
}

struct NodeVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for NodeVisitor<T> {
    type Value = Node<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table or \"off\"")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Node<T>, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Node::Table)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<T>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node<T>>()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Node<T>, E> {
        Ok(if s == "off" {
            Node::Off
        } else {
            Node::Bad(found(&toml::Value::String(s.to_owned())))
        })
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Node<T>, E> {
        Ok(Node::Bad(found(&toml::Value::Boolean(b))))
    }
    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Node<T>, E> {
        Ok(Node::Bad(found(&toml::Value::Integer(i))))
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Node<T>, E> {
        Ok(Node::Bad(found(&toml::Value::Float(f))))
    }
}

// ----- the schema ------------------------------------------------------------------

type Opt<T> = Option<Val<T>>;
type Sub<T> = Option<Node<T>>;

#[derive(serde::Deserialize)]
pub(super) struct RawConfig {
    pub site: Sub<RawSite>,
    pub source: Sub<RawSource>,
    pub alarms: Sub<RawAlarms>,
    pub session: Sub<RawSession>,
    pub recording: Sub<RawRecording>,
    pub mqtt: Sub<RawMqtt>,
    pub hl7: Sub<RawHl7>,
}

#[derive(serde::Deserialize)]
pub(super) struct RawSite {
    pub site: Opt<String>,
    pub bed: Opt<String>,
}

#[derive(serde::Deserialize)]
pub(super) struct RawSource {
    pub name: Opt<String>,
    pub protocol: Opt<String>,
    pub serial: Opt<String>,
    pub tcp: Opt<String>,
    pub simulated: Opt<String>,
    pub baud: Opt<i64>,
    pub parity: Opt<String>,
    pub stop_bits: Opt<i64>,
    pub rts_cts: Opt<bool>,
    pub speed: Opt<f64>,
    pub seed: Opt<i64>,
    pub timeout: Opt<Duration>,
    pub vitals: Opt<Vec<String>>,
}

#[derive(serde::Deserialize)]
pub(super) struct RawAlarms {
    pub realert_after: Opt<Duration>,
    pub escalate_after: Opt<OrOff<Duration>>,
    pub max_audio_pause: Opt<Duration>,
    pub technical_delay: Opt<Duration>,
    pub hr: Sub<RawVital>,
    pub pr: Sub<RawVital>,
    pub spo2: Sub<RawVital>,
    pub nibp_sys: Sub<RawVital>,
    pub nibp_dia: Sub<RawVital>,
    pub nibp_mean: Sub<RawVital>,
    pub rr: Sub<RawVital>,
    pub etco2: Sub<RawVital>,
    pub apnoea: Sub<RawApnoea>,
    pub nibp: Sub<RawNibp>,
    /// By name (see `technical_slots`): `stale = "medium"`, ...
    pub technical: Sub<BTreeMap<String, Val<Priority>>>,
    pub link: Sub<RawLink>,
}

/// One vital. `delay`, `stale_after` and `rate` exist for continuous vitals
/// only (the validate step refuses them on NIBP as unknown keys).
#[derive(serde::Deserialize)]
pub(super) struct RawVital {
    pub enabled: Opt<bool>,
    pub low: Sub<RawLimit>,
    pub high: Sub<RawLimit>,
    pub critical_low: Sub<RawLimit>,
    pub critical_high: Sub<RawLimit>,
    pub hysteresis: Opt<f64>,
    pub latching: Opt<bool>,
    pub plausible: Opt<[f64; 2]>,
    pub baseline: Sub<RawBaseline>,
    pub questionable: Opt<String>,
    pub discharge: Opt<bool>,
    pub delay: Opt<Duration>,
    pub stale_after: Opt<Duration>,
    pub rate: Sub<RawRate>,
}

/// The keys of a vital that only continuous vitals have.
pub(super) const CONTINUOUS_ONLY: [&str; 3] = ["delay", "stale_after", "rate"];

#[derive(serde::Deserialize)]
pub(super) struct RawLimit {
    pub limit: Opt<f64>,
    pub priority: Opt<Priority>,
    pub delay: Opt<Duration>,
}

#[derive(serde::Deserialize)]
pub(super) struct RawBaseline {
    pub rise_percent: Opt<f64>,
    pub rise: Opt<f64>,
    pub fall_percent: Opt<f64>,
    pub fall: Opt<f64>,
    pub priority: Opt<Priority>,
}

#[derive(serde::Deserialize)]
pub(super) struct RawRate {
    pub window: Opt<Duration>,
    pub rise: Opt<f64>,
    pub fall: Opt<f64>,
    pub priority: Opt<Priority>,
}

#[derive(serde::Deserialize)]
pub(super) struct RawApnoea {
    pub enabled: Opt<bool>,
    pub delay: Opt<Duration>,
    pub priority: Opt<Priority>,
}

#[derive(serde::Deserialize)]
pub(super) struct RawNibp {
    pub confirm: Opt<String>,
    pub confirm_window: Opt<OrOff<Duration>>,
    pub cycle: Opt<Duration>,
    pub grace: Opt<Duration>,
    pub watch_cycle: Opt<bool>,
    pub combined_high: Opt<bool>,
}

#[derive(serde::Deserialize)]
pub(super) struct RawLink {
    pub window: Opt<Duration>,
    pub max_error_rate: Opt<f64>,
    pub min_errors: Opt<i64>,
}

#[derive(serde::Deserialize)]
pub(super) struct RawSession {
    pub discharge: Sub<RawDischarge>,
    pub baseline: Sub<RawBaselineMin>,
}

#[derive(serde::Deserialize)]
pub(super) struct RawDischarge {
    pub within_percent: Opt<f64>,
    pub hold: Opt<Duration>,
}

#[derive(serde::Deserialize)]
pub(super) struct RawBaselineMin {
    pub min_nibp_readings: Opt<i64>,
    pub min_continuous: Opt<Duration>,
}

#[derive(serde::Deserialize)]
pub(super) struct RawRecording {
    pub enabled: Opt<bool>,
    pub dir: Opt<String>,
    pub retention: Opt<Duration>,
    pub sync_every: Opt<Duration>,
}

#[derive(serde::Deserialize)]
pub(super) struct RawHl7 {
    pub to: Opt<String>,
    pub interval: Opt<Duration>,
    pub timeout: Opt<Duration>,
    pub tls: Opt<bool>,
    pub ca_file: Opt<String>,
}

#[derive(serde::Deserialize)]
pub(super) struct RawMqtt {
    pub enabled: Opt<bool>,
    pub embedded: Opt<bool>,
    pub listen: Opt<String>,
    pub broker: Opt<String>,
    pub prefix: Opt<String>,
    pub client_id: Opt<String>,
    pub protocol: Opt<String>,
    pub vitals_expiry: Opt<Duration>,
    pub credentials_file: Opt<String>,
    pub ca_file: Opt<String>,
    pub client_cert: Opt<String>,
    pub client_key: Opt<String>,
    pub heartbeat: Opt<Duration>,
    pub unreachable_after: Opt<Duration>,
    pub command_max_age: Opt<Duration>,
    pub state_dir: Opt<String>,
    pub outbox_max: Opt<i64>,
}
