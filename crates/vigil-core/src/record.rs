//! Session recordings: the pipeline's INPUTS with their arrival times, so a
//! replay recomputes the outputs through the same decoders and engine.
//!
//! # Format (version 1)
//!
//! ```text
//! file   = magic "VIGILREC" | u16 version | u16 reserved | record*
//! record = u32 length | u32 crc32(payload) | payload        (little-endian)
//! payload = u8 kind | u64 at (ns since the run's origin) | body
//! ```
//!
//! | kind | body |
//! |---|---|
//! | 1 meta | `key=value` lines: vigil version, site, bed, start time, speed |
//! | 2 config | the configuration in force, as TOML (`config::render`) |
//! | 3 bytes | u16 source, raw bytes as read from the port |
//! | 4 link | u16 source, u8 up |
//! | 5 command | an encoded [`Command`] |
//! | 6 system | u8 condition, u8 present |
//! | 7 tick | (none): the driver ran the timers |
//! | 8 end | `key=value` lines: clean stop time |
//!
//! Each record carries a CRC-32 of its payload. A reader stops at the first
//! record that is truncated, too long or fails its checksum (a torn tail
//! after a crash or power loss) and reports where; everything before it is
//! read normally.
//!
//! This module is pure (bytes in, bytes out); `vigil::record::file` does
//! the file IO and the export tools live beside it in `vigil::record`.

use core::time::Duration;
use std::path::{Path, PathBuf};

use crate::engine::{AlarmId, Command, Condition, DoseAmount, DoseUnit, Subject, SystemCondition};
use crate::pipeline::Input;
use crate::time::Instant;
use crate::vitals::{ShortText, SourceId, Vital};

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"VIGILREC";
/// The format version this code writes.
pub const VERSION: u16 = 1;
/// Largest payload accepted (anything longer is corruption).
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Length of the file header.
pub const HEADER_LEN: usize = 12;

/// Errors decoding a recording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not a recording.
    #[error("not a vigil recording (bad magic)")]
    BadMagic,
    /// A version this build cannot read.
    #[error("recording format version {0} is not supported (this vigil reads version {VERSION})")]
    Version(u16),
    /// The data ends inside a record.
    #[error("truncated record")]
    Truncated,
    /// A record's checksum does not match.
    #[error("checksum mismatch")]
    Checksum,
    /// A record's length is out of bounds.
    #[error("record length {0} out of bounds")]
    Length(usize),
    /// A record that checks out but does not parse.
    #[error("malformed record: {0}")]
    Malformed(&'static str),
}

/// One record of a recording.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// Metadata (`key=value` lines).
    Meta(Vec<(String, String)>),
    /// The configuration in force, as TOML.
    Config(String),
    /// A pipeline input.
    Input(Input),
    /// Clean end of the run.
    End(Vec<(String, String)>),
}

/// A record with its time.
#[derive(Clone, Debug, PartialEq)]
pub struct Timed {
    /// When (core time of the run).
    pub at: Instant,
    /// What.
    pub record: Record,
}

/// The file header.
pub fn encode_header(out: &mut Vec<u8>) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
}

/// Checks the file header; returns the header length.
pub fn decode_header(data: &[u8]) -> Result<usize, RecordError> {
    if data.len() < HEADER_LEN {
        return Err(if MAGIC.starts_with(&data[..data.len().min(8)]) {
            RecordError::Truncated
        } else {
            RecordError::BadMagic
        });
    }
    if &data[..8] != MAGIC {
        return Err(RecordError::BadMagic);
    }
    let version = u16::from_le_bytes([data[8], data[9]]);
    if version != VERSION {
        return Err(RecordError::Version(version));
    }
    Ok(HEADER_LEN)
}

const KIND_META: u8 = 1;
const KIND_CONFIG: u8 = 2;
const KIND_BYTES: u8 = 3;
const KIND_LINK: u8 = 4;
const KIND_COMMAND: u8 = 5;
const KIND_SYSTEM: u8 = 6;
const KIND_TICK: u8 = 7;
const KIND_END: u8 = 8;

/// Appends one record (length, checksum, payload) to `out`.
pub fn encode_record(at: Instant, record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    let payload_start = out.len();
    let kind = match record {
        Record::Meta(_) => KIND_META,
        Record::Config(_) => KIND_CONFIG,
        Record::End(_) => KIND_END,
        Record::Input(i) => match i {
            Input::Bytes { .. } => KIND_BYTES,
            Input::Link { .. } => KIND_LINK,
            Input::Command(_) => KIND_COMMAND,
            Input::System { .. } => KIND_SYSTEM,
            Input::Tick => KIND_TICK,
        },
    };
    out.push(kind);
    out.extend_from_slice(&at.as_nanos().to_le_bytes());
    match record {
        Record::Meta(kv) | Record::End(kv) => {
            for (k, v) in kv {
                out.extend_from_slice(k.as_bytes());
                out.push(b'=');
                out.extend_from_slice(v.replace('\n', " ").as_bytes());
                out.push(b'\n');
            }
        }
        Record::Config(text) => out.extend_from_slice(text.as_bytes()),
        Record::Input(i) => match i {
            Input::Bytes { source, data } => {
                out.extend_from_slice(&source.0.to_le_bytes());
                out.extend_from_slice(data);
            }
            Input::Link { source, up } => {
                out.extend_from_slice(&source.0.to_le_bytes());
                out.push(u8::from(*up));
            }
            Input::Command(c) => encode_command(c, out),
            Input::System { condition, present } => {
                out.push(match condition {
                    SystemCondition::QueueOverflow => 0,
                    SystemCondition::BrokerUnreachable => 1,
                    SystemCondition::StorageFailure => 2,
                    SystemCondition::JournalFailure => 3,
                    SystemCondition::JournalCorrupt => 4,
                    SystemCondition::LinkUnstable => 5,
                    SystemCondition::InputOverload => 6,
                    SystemCondition::Hl7Undelivered => 7,
                    SystemCondition::Hl7BacklogFailure => 8,
                    SystemCondition::BrokerRefused => 9,
                });
                out.push(u8::from(*present));
            }
            Input::Tick => {}
        },
    }
    let len = (out.len() - payload_start) as u32;
    let crc = crc32(&out[payload_start..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the record at the start of `data`; returns it and its length.
pub fn decode_record(data: &[u8]) -> Result<(Timed, usize), RecordError> {
    if data.len() < 8 {
        return Err(RecordError::Truncated);
    }
    let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let crc = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    if !(9..=MAX_PAYLOAD).contains(&len) {
        return Err(RecordError::Length(len));
    }
    let Some(payload) = data.get(8..8 + len) else {
        return Err(RecordError::Truncated);
    };
    if crc32(payload) != crc {
        return Err(RecordError::Checksum);
    }
    let kind = payload[0];
    let at = Instant::from_nanos(u64::from_le_bytes(
        payload[1..9]
            .try_into()
            .map_err(|_| RecordError::Truncated)?,
    ));
    let body = &payload[9..];
    let source = |b: &[u8]| -> Result<SourceId, RecordError> {
        b.get(..2)
            .map(|s| SourceId(u16::from_le_bytes([s[0], s[1]])))
            .ok_or(RecordError::Malformed("missing source"))
    };
    let record = match kind {
        KIND_META => Record::Meta(decode_kv(body)?),
        KIND_END => Record::End(decode_kv(body)?),
        KIND_CONFIG => Record::Config(
            String::from_utf8(body.to_vec())
                .map_err(|_| RecordError::Malformed("config not UTF-8"))?,
        ),
        KIND_BYTES => Record::Input(Input::Bytes {
            source: source(body)?,
            data: body[2..].to_vec(),
        }),
        KIND_LINK => Record::Input(Input::Link {
            source: source(body)?,
            up: *body.get(2).ok_or(RecordError::Malformed("link state"))? != 0,
        }),
        KIND_COMMAND => Record::Input(Input::Command(decode_command(body)?)),
        KIND_SYSTEM => {
            let (c, p) = match body {
                [c, p] => (*c, *p),
                _ => return Err(RecordError::Malformed("system record")),
            };
            let condition = match c {
                0 => SystemCondition::QueueOverflow,
                1 => SystemCondition::BrokerUnreachable,
                2 => SystemCondition::StorageFailure,
                3 => SystemCondition::JournalFailure,
                4 => SystemCondition::JournalCorrupt,
                5 => SystemCondition::LinkUnstable,
                6 => SystemCondition::InputOverload,
                7 => SystemCondition::Hl7Undelivered,
                8 => SystemCondition::Hl7BacklogFailure,
                9 => SystemCondition::BrokerRefused,
                _ => return Err(RecordError::Malformed("system condition")),
            };
            Record::Input(Input::System {
                condition,
                present: p != 0,
            })
        }
        KIND_TICK => Record::Input(Input::Tick),
        _ => return Err(RecordError::Malformed("unknown record kind")),
    };
    Ok((Timed { at, record }, 8 + len))
}

fn decode_kv(body: &[u8]) -> Result<Vec<(String, String)>, RecordError> {
    let text =
        std::str::from_utf8(body).map_err(|_| RecordError::Malformed("metadata not UTF-8"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(255)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn take_text<'a>(b: &mut &'a [u8]) -> Result<&'a str, RecordError> {
    let (&n, rest) = b
        .split_first()
        .ok_or(RecordError::Malformed("text length"))?;
    let n = n as usize;
    let text = rest.get(..n).ok_or(RecordError::Malformed("text"))?;
    *b = &rest[n..];
    std::str::from_utf8(text).map_err(|_| RecordError::Malformed("text not UTF-8"))
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], RecordError> {
    let v = b.get(..n).ok_or(RecordError::Malformed("short field"))?;
    *b = &b[n..];
    Ok(v)
}

fn encode_command(c: &Command, out: &mut Vec<u8>) {
    match c {
        Command::Acknowledge { alarm, by } => {
            out.push(1);
            let (tag, index) = match alarm.subject {
                Subject::Vital(v) => (0u8, v.index() as u16),
                Subject::Nibp => (1, 0),
                Subject::Source(s) => (2, s.0),
                Subject::System => (3, 0),
            };
            out.push(tag);
            out.extend_from_slice(&index.to_le_bytes());
            out.push(alarm.condition.index() as u8);
            put_text(out, by.as_str());
        }
        Command::PauseAudio { duration } => {
            out.push(2);
            out.extend_from_slice(&(duration.as_nanos() as u64).to_le_bytes());
        }
        Command::ResumeAudio => out.push(3),
        Command::StartSession { session } => {
            out.push(4);
            put_text(out, session.as_str());
        }
        // Kind 5 (route, note) is what recordings made before dose amounts
        // hold; a dose with an amount is kind 10 (route, note, value f32,
        // unit code).
        Command::Dose {
            route,
            amount: None,
            note,
        } => {
            out.push(5);
            put_text(out, route.as_str());
            put_text(out, note.as_str());
        }
        Command::Dose {
            route,
            amount: Some(amount),
            note,
        } => {
            out.push(10);
            put_text(out, route.as_str());
            put_text(out, note.as_str());
            out.extend_from_slice(&amount.value.to_le_bytes());
            out.push(amount.unit as u8);
        }
        Command::SetBaseline { vital, value } => {
            out.push(6);
            out.push(vital.index() as u8);
            out.extend_from_slice(&value.to_le_bytes());
        }
        Command::StartRecovery => out.push(7),
        Command::EndSession => out.push(8),
        Command::AcknowledgeAll { by } => {
            out.push(9);
            put_text(out, by.as_str());
        }
    }
}

fn decode_command(mut b: &[u8]) -> Result<Command, RecordError> {
    let b = &mut b;
    let kind = take(b, 1)?[0];
    Ok(match kind {
        1 => {
            let tag = take(b, 1)?[0];
            let index =
                u16::from_le_bytes(take(b, 2)?.try_into().map_err(|_| RecordError::Truncated)?);
            let cond = take(b, 1)?[0] as usize;
            let subject = match tag {
                0 => Subject::Vital(
                    *Vital::ALL
                        .get(index as usize)
                        .ok_or(RecordError::Malformed("vital"))?,
                ),
                1 => Subject::Nibp,
                2 => Subject::Source(SourceId(index)),
                3 => Subject::System,
                _ => return Err(RecordError::Malformed("alarm subject")),
            };
            let condition = *Condition::ALL
                .get(cond)
                .ok_or(RecordError::Malformed("alarm condition"))?;
            Command::Acknowledge {
                alarm: AlarmId { subject, condition },
                by: ShortText::new(take_text(b)?),
            }
        }
        2 => Command::PauseAudio {
            duration: Duration::from_nanos(u64::from_le_bytes(
                take(b, 8)?.try_into().map_err(|_| RecordError::Truncated)?,
            )),
        },
        3 => Command::ResumeAudio,
        4 => Command::StartSession {
            session: ShortText::new(take_text(b)?),
        },
        5 => {
            let route = ShortText::new(take_text(b)?);
            let note = ShortText::new(take_text(b)?);
            Command::Dose {
                route,
                amount: None,
                note,
            }
        }
        10 => {
            let route = ShortText::new(take_text(b)?);
            let note = ShortText::new(take_text(b)?);
            let value =
                f32::from_le_bytes(take(b, 4)?.try_into().map_err(|_| RecordError::Truncated)?);
            let unit = *DoseUnit::ALL
                .get(take(b, 1)?[0] as usize)
                .ok_or(RecordError::Malformed("dose unit"))?;
            Command::Dose {
                route,
                amount: Some(DoseAmount { value, unit }),
                note,
            }
        }
        6 => {
            let vital = *Vital::ALL
                .get(take(b, 1)?[0] as usize)
                .ok_or(RecordError::Malformed("vital"))?;
            let value =
                f32::from_le_bytes(take(b, 4)?.try_into().map_err(|_| RecordError::Truncated)?);
            Command::SetBaseline { vital, value }
        }
        7 => Command::StartRecovery,
        8 => Command::EndSession,
        9 => Command::AcknowledgeAll {
            by: ShortText::new(take_text(b)?),
        },
        _ => return Err(RecordError::Malformed("unknown command")),
    })
}

/// Errors reading or starting a recording file (the IO itself is the
/// caller's: `vigil::record::file`).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// IO on a path.
    #[error("{path}: {cause}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The file is not a readable recording.
    #[error("{path}: {cause}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: RecordError,
    },
}

/// A recording read from disk.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every record before the end or the first corrupt one.
    pub records: Vec<Timed>,
    /// Where reading stopped early, and why (a torn or corrupt tail).
    pub corrupt_tail: Option<(u64, RecordError)>,
    /// The file's size.
    pub size: u64,
}

impl Loaded {
    /// The recording at `path`, given what reading the file gave
    /// (`std::fs::read(path)`): the caller does the IO, this decodes.
    pub fn from_read(path: &Path, read: std::io::Result<Vec<u8>>) -> Result<Loaded, FileError> {
        let data = read.map_err(|source| FileError::Io {
            path: path.to_owned(),
            cause: source,
        })?;
        Loaded::decode(&data).map_err(|source| FileError::Format {
            path: path.to_owned(),
            cause: source,
        })
    }

    /// Decodes a whole file: the header, then every record up to the end
    /// or the first corrupt one (reported in `corrupt_tail`).
    pub fn decode(data: &[u8]) -> Result<Loaded, RecordError> {
        let mut pos = decode_header(data)?;
        let mut loaded = Loaded {
            size: data.len() as u64,
            ..Loaded::default()
        };
        while pos < data.len() {
            match decode_record(&data[pos..]) {
                Ok((record, n)) => {
                    loaded.records.push(record);
                    pos += n;
                }
                Err(e) => {
                    loaded.corrupt_tail = Some((pos as u64, e));
                    break;
                }
            }
        }
        Ok(loaded)
    }
}

/// A complete recording file's bytes: the header and every record.
pub fn encode_file(records: &[Timed]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_header(&mut out);
    for r in records {
        encode_record(r.at, &r.record, &mut out);
    }
    out
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), table-driven.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Timed> {
        let t = Instant::from_millis;
        vec![
            Timed {
                at: t(0),
                record: Record::Meta(vec![("site".into(), "demo".into())]),
            },
            Timed {
                at: t(0),
                record: Record::Config("[site]\nsite = \"x\"\n".into()),
            },
            Timed {
                at: t(5),
                record: Record::Input(Input::Link {
                    source: SourceId(1),
                    up: true,
                }),
            },
            Timed {
                at: t(10),
                record: Record::Input(Input::Bytes {
                    source: SourceId(1),
                    data: b"spo2 97\n".to_vec(),
                }),
            },
            Timed {
                at: t(20),
                record: Record::Input(Input::Command(Command::Acknowledge {
                    alarm: AlarmId::vital(Vital::SpO2, Condition::CriticalLow),
                    by: ShortText::new("RN-JD"),
                })),
            },
            Timed {
                at: t(21),
                record: Record::Input(Input::Command(Command::Dose {
                    route: ShortText::new("im"),
                    amount: None,
                    note: ShortText::new("0.75 mg/kg"),
                })),
            },
            Timed {
                at: t(21),
                record: Record::Input(Input::Command(Command::Dose {
                    route: ShortText::new("sl"),
                    amount: DoseAmount::new(0.5, DoseUnit::MgPerKg),
                    note: ShortText::new("racemic"),
                })),
            },
            Timed {
                at: t(22),
                record: Record::Input(Input::Command(Command::SetBaseline {
                    vital: Vital::NibpSystolic,
                    value: 121.5,
                })),
            },
            Timed {
                at: t(22),
                record: Record::Input(Input::Command(Command::AcknowledgeAll {
                    by: ShortText::new("RN-JD"),
                })),
            },
            Timed {
                at: t(23),
                record: Record::Input(Input::Command(Command::PauseAudio {
                    duration: Duration::from_secs(90),
                })),
            },
            Timed {
                at: t(30),
                record: Record::Input(Input::System {
                    condition: SystemCondition::StorageFailure,
                    present: true,
                }),
            },
            Timed {
                at: t(40),
                record: Record::Input(Input::Tick),
            },
            Timed {
                at: t(50),
                record: Record::End(vec![("stopped".into(), "now".into())]),
            },
        ]
    }

    fn encode_all(records: &[Timed]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_header(&mut out);
        for r in records {
            encode_record(r.at, &r.record, &mut out);
        }
        out
    }

    fn decode_all(data: &[u8]) -> (Vec<Timed>, Option<(usize, RecordError)>) {
        let mut pos = decode_header(data).unwrap();
        let mut out = Vec::new();
        while pos < data.len() {
            match decode_record(&data[pos..]) {
                Ok((r, n)) => {
                    out.push(r);
                    pos += n;
                }
                Err(e) => return (out, Some((pos, e))),
            }
        }
        (out, None)
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn every_record_kind_round_trips() {
        let records = samples();
        let (back, err) = decode_all(&encode_all(&records));
        assert_eq!(err, None);
        assert_eq!(back, records);
    }

    #[test]
    fn a_torn_tail_is_detected_and_everything_before_it_reads() {
        let records = samples();
        let data = encode_all(&records);
        let mut boundaries = vec![HEADER_LEN];
        for r in &records {
            let mut one = Vec::new();
            encode_record(r.at, &r.record, &mut one);
            boundaries.push(boundaries.last().unwrap() + one.len());
        }
        for cut in HEADER_LEN..data.len() {
            let (back, err) = decode_all(&data[..cut]);
            assert_eq!(&records[..back.len()], &back[..]);
            // A cut between records is a shorter, valid file; a cut inside
            // one is a torn tail, reported at the start of that record.
            match boundaries.iter().position(|&b| b == cut) {
                Some(n) => assert_eq!((back.len(), err), (n, None), "cut at {cut}"),
                None => {
                    let (at, _) = err.expect("torn tail reported");
                    assert_eq!(at, boundaries[back.len()], "cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let records = samples();
        let mut data = encode_all(&records);
        let n = data.len();
        data[n - 3] ^= 0x10;
        let (back, err) = decode_all(&data);
        assert_eq!(back.len(), records.len() - 1);
        assert!(matches!(err, Some((_, RecordError::Checksum))));
    }

    #[test]
    fn headers_are_checked() {
        assert_eq!(
            decode_header(b"NOTAREC!\x01\x00\x00\x00"),
            Err(RecordError::BadMagic)
        );
        assert_eq!(
            decode_header(b"VIGILREC\x09\x00\x00\x00"),
            Err(RecordError::Version(9))
        );
        assert_eq!(decode_header(b"VIGIL"), Err(RecordError::Truncated));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_record(&data);
        }

        #[test]
        fn byte_records_round_trip(source in any::<u16>(), at in any::<u64>(),
                                   data in prop::collection::vec(any::<u8>(), 0..600)) {
            let r = Record::Input(Input::Bytes { source: SourceId(source), data });
            let mut out = Vec::new();
            encode_record(Instant::from_nanos(at), &r, &mut out);
            let (back, n) = decode_record(&out).unwrap();
            prop_assert_eq!(n, out.len());
            prop_assert_eq!(back.record, r);
            prop_assert_eq!(back.at, Instant::from_nanos(at));
        }
    }
}
