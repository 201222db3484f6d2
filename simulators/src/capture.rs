//! A monitor emulator from captures: the monitor side of a GE S/5 or a
//! Philips IntelliVue, replaying bytes a real monitor sent, behaving as the
//! device does. Sans-IO, like [`vigil::sim::SimDevice`]: the runners of this
//! crate move the bytes and pass the time in.
//!
//! # Captures
//!
//! - **Raw bytes** (`.raw`, or any file that is not a vigil recording): what
//!   a monitor sent, as recorded on its data cable (e.g. the GE captures in
//!   `tests/fixtures/real/ge-s5/`). No timestamps: the protocol is given by
//!   the caller.
//! - **A vigil recording** (`.vrec`): the bytes one source delivered, with
//!   the time each chunk arrived; the protocol comes from the recorded
//!   configuration. The source is chosen by name, or is the recording's
//!   only GE or Philips source.
//!
//! The bytes are cut into frames (GE: between `0x7E` flags; Philips: `0xC0`
//! to `0xC1`). Only whole frames with a good checksum are kept, as they
//! were recorded (stuffing and all); a capture that starts or ends mid-frame
//! loses that part ([`Capture::skipped`] counts the bytes).
//!
//! # GE S/5
//!
//! Nothing is sent until the host's request record for displayed values
//! arrives (a real S/5 stays silent until asked). Then the capture plays
//! one *record group* at a time: a physiological (displayed values) record
//! with the waveform and other records that followed it in the capture.
//! The first group goes out at once; the next ones at the capture's own
//! pace when it has timestamps (a recording), else at the requested
//! interval (at least 5 s, as the monitor enforces). A request with
//! interval `-1` sends one group; `0` stops. A new request while sending
//! changes the pace and continues where the capture is.
//!
//! # Philips IntelliVue
//!
//! Nothing is sent until an association request arrives; it is answered
//! with the capture's association accept and MDS Create event report (or,
//! when the capture has none, vigil's own: see [`Capture::synthesized`]).
//! Each poll request is answered with the capture's next result for the
//! polled object type (numerics, alert monitor, ...): every frame of it (a
//! linked result's parts and its closing result) with the invoke id and
//! poll number rewritten to the host's, so a host that matches results to
//! its own invoke ids takes them. Results the capture's host asked for
//! with other requests (GET, SET, waves) are not replayed unless polled.
//! A release request is answered; an abort ends the association; without
//! a poll for [`PHILIPS_KEEPALIVE`] the emulator aborts the association as
//! a monitor does.
//!
//! # End of capture and reconnections
//!
//! At the end of the capture the emulator falls silent (a monitor whose
//! data stopped), or with [`CaptureDevice::looping`] starts again from the
//! beginning. Each new connection (the runners make a device per TCP
//! client) starts from the beginning and waits for the request or the
//! association again; on a pty, a new request or association request
//! restarts the session where the capture is.

use core::time::Duration;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use vigil::config::ProtocolKind;
use vigil::pipeline::Input;
use vigil::protocol::philips::{self, MdsInfo, Message};
use vigil::protocol::{ge, NoteText};
use vigil::record::{file as recfile, Record};
use vigil::sim::device::{parse_ge_request, parse_philips_frame, PHILIPS_KEEPALIVE};
use vigil::sim::Device;
use vigil::time::Instant;

/// Errors loading a capture.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file could not be read.
    #[error("{path}: {cause}")]
    Io {
        /// The capture file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// A vigil recording that does not read.
    #[error(transparent)]
    Recording(#[from] recfile::FileError),
    /// Only the talking protocols are emulated from captures.
    #[error("{0}: captures can be replayed for ge-s5 and philips-intellivue only (stream the other protocols' bytes with `vigil replay` or the scenario simulator)")]
    Protocol(&'static str),
    /// A raw capture without a protocol.
    #[error("{path}: a raw capture does not say which monitor sent it: give --protocol ge-s5 or --protocol philips-intellivue")]
    NoProtocol {
        /// The capture file.
        path: PathBuf,
    },
    /// The recording's configuration does not parse.
    #[error("{path}: the recorded configuration does not read: {reason}")]
    Config {
        /// The recording.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No (or no unique) source to replay in a recording.
    #[error("{path}: {reason}")]
    Source {
        /// The recording.
        path: PathBuf,
        /// What is wrong, with the source names to choose from.
        reason: String,
    },
    /// No whole frame of the protocol in the capture.
    #[error("{path}: no whole {protocol} frame in the capture (is it the right protocol, and the monitor's side of the cable?)")]
    Empty {
        /// The capture file.
        path: PathBuf,
        /// The protocol looked for.
        protocol: &'static str,
    },
}

/// What one captured frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// GE: a physiological record (main type 0: displayed values, trends).
    GePhysiological,
    /// GE: any other record (waveforms, alarms, ...).
    GeOther,
    /// Philips: association accept.
    PhilipsAccept,
    /// Philips: the MDS Create event report.
    PhilipsMdsCreate,
    /// Philips: a poll result or one part of a linked one.
    PhilipsPollResult {
        /// The capture's invoke id.
        invoke_id: u16,
        /// The polled object type.
        object: u16,
        /// Whether a linked part (more follows).
        linked: bool,
    },
    /// Philips: anything else the monitor sent (other results, session).
    PhilipsOther,
}

/// One whole frame of a capture, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// When it arrived, for recordings (from the recording's origin).
    pub at: Option<Instant>,
    /// The bytes on the wire, delimiters included.
    pub bytes: Vec<u8>,
    /// What it is.
    pub kind: FrameKind,
}

/// A loaded capture.
#[derive(Clone, Debug)]
pub struct Capture {
    kind: ProtocolKind,
    frames: Vec<Frame>,
    skipped: u64,
}

/// Cuts a byte stream into frames: `start`, content with `0x7D` escapes,
/// `end` (GE uses one flag for both; a flag may close one frame and open
/// the next).
#[derive(Debug)]
pub struct Deframer {
    start: u8,
    end: u8,
    raw: Vec<u8>,
    content: Vec<u8>,
    in_frame: bool,
    escaped: bool,
    /// Bytes not in any whole frame so far.
    pub skipped: u64,
}

/// Escape byte of both protocols' framing.
const ESC: u8 = 0x7D;
/// Largest frame accepted (either protocol).
const MAX_FRAME: usize = 8192;

impl Deframer {
    /// A deframer for `kind`'s monitor or host frames.
    pub fn new(kind: ProtocolKind) -> Self {
        let (start, end) = match kind {
            ProtocolKind::Philips => (philips::BOF, philips::EOF),
            _ => (ge::FLAG, ge::FLAG),
        };
        Deframer {
            start,
            end,
            raw: Vec::new(),
            content: Vec::new(),
            in_frame: false,
            escaped: false,
            skipped: 0,
        }
    }

    /// Feeds one byte; returns a completed frame as `(raw, unescaped)`.
    pub fn push(&mut self, b: u8) -> Option<(Vec<u8>, Vec<u8>)> {
        let mut done = None;
        if b == self.end && self.in_frame && !self.escaped && !self.content.is_empty() {
            self.raw.push(b);
            done = Some((
                core::mem::take(&mut self.raw),
                core::mem::take(&mut self.content),
            ));
            self.in_frame = false;
            if self.start != self.end {
                return done;
            }
        }
        if b == self.start {
            // An unfinished frame is lost; a repeated flag is not counted.
            if !self.content.is_empty() {
                self.skipped += self.raw.len() as u64;
            }
            self.raw.clear();
            self.content.clear();
            self.raw.push(b);
            self.in_frame = true;
            self.escaped = false;
            return done;
        }
        if !self.in_frame {
            self.skipped += 1;
            return done;
        }
        self.raw.push(b);
        if self.raw.len() > MAX_FRAME {
            self.skipped += self.raw.len() as u64;
            self.raw.clear();
            self.content.clear();
            self.in_frame = false;
        } else if b == ESC {
            self.escaped = true;
        } else {
            self.content.push(if self.escaped { b ^ 0x20 } else { b });
            self.escaped = false;
        }
        done
    }

    /// Bytes of an unfinished frame at the end of the stream.
    pub fn pending(&self) -> u64 {
        self.raw.len() as u64
    }
}

/// What a GE frame (unstuffed record + checksum) is, if it is whole.
fn classify_ge(content: &[u8]) -> Option<FrameKind> {
    let (&checksum, record) = content.split_last()?;
    if record.iter().fold(0u8, |a, &b| a.wrapping_add(b)) != checksum {
        return None;
    }
    let len = i16::from_le_bytes(record.get(0..2)?.try_into().ok()?);
    if usize::try_from(len).ok()? != record.len() || record.len() < ge::HEADER_LEN {
        return None;
    }
    let maintype = i16::from_le_bytes(record.get(14..16)?.try_into().ok()?);
    Some(if maintype == 0 {
        FrameKind::GePhysiological
    } else {
        FrameKind::GeOther
    })
}

/// What a Philips frame (unescaped header + data + FCS) is, if it is whole.
fn classify_philips(content: &[u8]) -> Option<FrameKind> {
    Some(match parse_philips_frame(content)? {
        Message::AssociationAccept => FrameKind::PhilipsAccept,
        Message::MdsCreate { .. } => FrameKind::PhilipsMdsCreate,
        Message::PollResult {
            invoke_id,
            object,
            linked,
            ..
        } => FrameKind::PhilipsPollResult {
            invoke_id,
            object,
            linked: linked.is_some(),
        },
        _ => FrameKind::PhilipsOther,
    })
}

impl Capture {
    /// Cuts `chunks` (bytes with their arrival time, if known) into the
    /// whole frames of `kind`.
    pub fn from_chunks<'a>(
        kind: ProtocolKind,
        chunks: impl IntoIterator<Item = (Option<Instant>, &'a [u8])>,
    ) -> Result<Capture, CaptureError> {
        let classify: fn(&[u8]) -> Option<FrameKind> = match kind {
            ProtocolKind::Ge => classify_ge,
            ProtocolKind::Philips => classify_philips,
            other => return Err(CaptureError::Protocol(other.key())),
        };
        let mut deframer = Deframer::new(kind);
        let mut frames = Vec::new();
        let mut skipped = 0u64;
        for (at, chunk) in chunks {
            for &b in chunk {
                if let Some((raw, content)) = deframer.push(b) {
                    match classify(&content) {
                        Some(k) => frames.push(Frame {
                            at,
                            bytes: raw,
                            kind: k,
                        }),
                        None => skipped += raw.len() as u64,
                    }
                }
            }
        }
        skipped += deframer.skipped + deframer.pending();
        Ok(Capture {
            kind,
            frames,
            skipped,
        })
    }

    /// Raw bytes a `kind` monitor sent.
    pub fn from_raw(kind: ProtocolKind, bytes: &[u8]) -> Result<Capture, CaptureError> {
        Self::from_chunks(kind, [(None, bytes)])
    }

    /// Loads a capture file: a vigil recording (its `source`, or its only
    /// GE or Philips source) or raw bytes of protocol `kind`.
    pub fn load(
        path: &Path,
        kind: Option<ProtocolKind>,
        source: Option<&str>,
    ) -> Result<Capture, CaptureError> {
        let data = std::fs::read(path).map_err(|source| CaptureError::Io {
            path: path.to_owned(),
            cause: source,
        })?;
        let capture = if data.starts_with(vigil::record::MAGIC) {
            Self::from_recording(path, kind, source)?
        } else {
            let kind = kind.ok_or_else(|| CaptureError::NoProtocol {
                path: path.to_owned(),
            })?;
            Self::from_raw(kind, &data)?
        };
        if capture.frames.is_empty() {
            return Err(CaptureError::Empty {
                path: path.to_owned(),
                protocol: capture.kind.key(),
            });
        }
        Ok(capture)
    }

    fn from_recording(
        path: &Path,
        kind: Option<ProtocolKind>,
        source: Option<&str>,
    ) -> Result<Capture, CaptureError> {
        let loaded = recfile::read(path)?;
        if let Some((at, why)) = &loaded.corrupt_tail {
            tracing::warn!(path = %path.display(), offset = at, "the recording ends early ({why}): replaying what precedes");
        }
        let config = loaded
            .records
            .iter()
            .find_map(|t| match &t.record {
                Record::Config(text) => Some(text),
                _ => None,
            })
            .ok_or_else(|| CaptureError::Config {
                path: path.to_owned(),
                reason: "the recording has no configuration record".into(),
            })?;
        let config =
            vigil::config::parse(config, "recording").map_err(|e| CaptureError::Config {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        let names = || {
            config
                .sources
                .iter()
                .map(|s| format!("{} ({})", s.name, s.protocol.key()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let talking = |k: ProtocolKind| matches!(k, ProtocolKind::Ge | ProtocolKind::Philips);
        let chosen: Vec<usize> = config
            .sources
            .iter()
            .enumerate()
            .filter(|(_, s)| match source {
                Some(name) => s.name == name,
                None => talking(s.protocol) && kind.is_none_or(|k| k == s.protocol),
            })
            .map(|(i, _)| i)
            .collect();
        let index = match chosen.as_slice() {
            [i] => *i,
            [] => {
                return Err(CaptureError::Source {
                    path: path.to_owned(),
                    reason: match source {
                        Some(name) => format!("no source `{name}` in the recording (it has: {})", names()),
                        None => format!("no GE or Philips source in the recording (it has: {})", names()),
                    },
                })
            }
            _ => {
                return Err(CaptureError::Source {
                    path: path.to_owned(),
                    reason: format!(
                        "several sources could be replayed: choose one with --source (the recording has: {})",
                        names()
                    ),
                })
            }
        };
        let protocol = config.sources[index].protocol;
        if let Some(k) = kind.filter(|&k| k != protocol) {
            return Err(CaptureError::Source {
                path: path.to_owned(),
                reason: format!(
                    "source `{}` speaks {}, not {}",
                    config.sources[index].name,
                    protocol.key(),
                    k.key()
                ),
            });
        }
        let chunks = loaded.records.iter().filter_map(|t| match &t.record {
            Record::Input(Input::Bytes { source, data }) if source.index() == index => {
                Some((Some(t.at), data.as_slice()))
            }
            _ => None,
        });
        Self::from_chunks(protocol, chunks)
    }

    /// The protocol.
    pub fn kind(&self) -> ProtocolKind {
        self.kind
    }

    /// The whole frames, in capture order.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// Bytes that were not part of a whole frame with a good checksum.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Whether the frames carry arrival times (a recording).
    pub fn timed(&self) -> bool {
        self.frames.first().is_some_and(|f| f.at.is_some())
    }

    /// Philips: which of the association accept and the MDS Create the
    /// emulator makes itself because the capture has none (it was recorded
    /// after the association began).
    pub fn synthesized(&self) -> (bool, bool) {
        let has = |k: FrameKind| self.frames.iter().any(|f| f.kind == k);
        (
            !has(FrameKind::PhilipsAccept),
            !has(FrameKind::PhilipsMdsCreate),
        )
    }

    /// GE record groups: each physiological record with the records that
    /// follow it (records before the first one join the first group).
    fn ge_groups(&self) -> Vec<(usize, usize)> {
        let mut starts: Vec<usize> = self
            .frames
            .iter()
            .enumerate()
            .filter(|(_, f)| f.kind == FrameKind::GePhysiological)
            .map(|(i, _)| i)
            .collect();
        if starts.first() != Some(&0) {
            if starts.is_empty() {
                starts.push(0);
            } else {
                starts[0] = 0;
            }
        }
        let mut groups: Vec<(usize, usize)> = starts.windows(2).map(|w| (w[0], w[1])).collect();
        if let Some(&last) = starts.last() {
            groups.push((last, self.frames.len()));
        }
        groups
    }

    /// Philips poll results: each a run of frames of one invoke id, ended
    /// by a frame that is not a linked part.
    fn philips_results(&self) -> Vec<PhilipsResult> {
        let mut results: Vec<PhilipsResult> = Vec::new();
        let mut open: Option<usize> = None;
        for (i, f) in self.frames.iter().enumerate() {
            let FrameKind::PhilipsPollResult {
                invoke_id,
                object,
                linked,
            } = f.kind
            else {
                continue;
            };
            let continues = open
                .and_then(|r| results.get(r))
                .is_some_and(|r| r.invoke_id == invoke_id);
            if continues {
                if let Some(r) = open.and_then(|r| results.get_mut(r)) {
                    r.frames.push(i);
                }
            } else {
                results.push(PhilipsResult {
                    invoke_id,
                    object,
                    frames: vec![i],
                });
                open = Some(results.len() - 1);
            }
            if !linked {
                open = None;
            }
        }
        results
    }
}

#[derive(Clone, Debug)]
struct PhilipsResult {
    invoke_id: u16,
    object: u16,
    frames: Vec<usize>,
}

/// Where in a Philips poll result frame (unescaped, header included) the
/// invoke id and the poll number are: header 4, SPpdu 4, ROapdus 4, then
/// the result (a linked one starts with its state and count).
fn philips_id_offsets(linked: bool) -> (usize, usize) {
    let base = 12 + if linked { 2 } else { 0 };
    // invoke id, command, length, managed object (6), action, length.
    (base, base + 2 + 2 + 2 + 6 + 2 + 2)
}

/// Rewrites a captured poll result frame for the host's invoke id and poll
/// number; `None` if the frame does not read back as that result.
fn rewrite_poll_result(raw: &[u8], invoke_id: u16, poll_number: u16) -> Option<Vec<u8>> {
    let mut d = Deframer::new(ProtocolKind::Philips);
    let (_, content) = raw.iter().find_map(|&b| d.push(b))?;
    let mut content = content.get(..content.len().checked_sub(2)?)?.to_vec();
    let linked = matches!(
        parse_philips_frame(
            &[content.as_slice(), &philips::fcs16(&content).to_le_bytes()].concat()
        )?,
        Message::PollResult {
            linked: Some(_),
            ..
        }
    );
    let (at_id, at_poll) = philips_id_offsets(linked);
    content
        .get_mut(at_id..at_id + 2)?
        .copy_from_slice(&invoke_id.to_be_bytes());
    content
        .get_mut(at_poll..at_poll + 2)?
        .copy_from_slice(&poll_number.to_be_bytes());
    let mut check = content.clone();
    check.extend_from_slice(&philips::fcs16(&content).to_le_bytes());
    match parse_philips_frame(&check)? {
        Message::PollResult {
            invoke_id: i,
            poll_number: p,
            ..
        } if i == invoke_id && p == poll_number => {
            let mut out = Vec::with_capacity(raw.len() + 4);
            philips::frame_raw(&content, &mut out);
            Some(out)
        }
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PhilipsState {
    Idle,
    Associated { last_poll: Instant },
}

/// Counters of what an emulator did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Host messages understood (GE requests, Philips association, polls).
    pub host_messages: u64,
    /// Frames sent.
    pub frames: u64,
    /// GE record groups sent.
    pub groups: u64,
    /// Philips polls answered with a captured result.
    pub answered: u64,
    /// Philips polls the capture had no (more) result for.
    pub unanswered: u64,
    /// Times the capture started again from the beginning.
    pub loops: u64,
}

/// The monitor side replaying a [`Capture`]. See the module documentation.
#[derive(Debug)]
pub struct CaptureDevice {
    capture: Capture,
    looping: bool,
    rx: Deframer,
    tx: VecDeque<Vec<u8>>,
    stats: CaptureStats,
    // GE
    groups: Vec<(usize, usize)>,
    group: usize,
    interval: Option<Duration>,
    next: Option<Instant>,
    // Philips
    results: Vec<PhilipsResult>,
    cursor: Vec<(u16, usize)>,
    philips: PhilipsState,
}

/// Pause between the end of a timed capture and its start again.
const LOOP_GAP: Duration = Duration::from_secs(1);

impl CaptureDevice {
    /// An emulator replaying `capture` from its beginning.
    pub fn new(capture: Capture) -> Self {
        let groups = if capture.kind == ProtocolKind::Ge {
            capture.ge_groups()
        } else {
            Vec::new()
        };
        let results = if capture.kind == ProtocolKind::Philips {
            capture.philips_results()
        } else {
            Vec::new()
        };
        CaptureDevice {
            rx: Deframer::new(capture.kind),
            capture,
            looping: false,
            tx: VecDeque::new(),
            stats: CaptureStats::default(),
            groups,
            group: 0,
            interval: None,
            next: None,
            results,
            cursor: Vec::new(),
            philips: PhilipsState::Idle,
        }
    }

    /// Starts the capture again after its end instead of falling silent.
    pub fn looping(mut self, on: bool) -> Self {
        self.looping = on;
        self
    }

    /// What the emulator did so far.
    pub fn stats(&self) -> CaptureStats {
        self.stats
    }

    /// The capture replayed.
    pub fn capture(&self) -> &Capture {
        &self.capture
    }

    fn send(&mut self, frame: Vec<u8>) {
        self.stats.frames += 1;
        self.tx.push_back(frame);
    }

    // ----- GE --------------------------------------------------------------

    fn ge_request(&mut self, now: Instant, req: ge::PhdbRequest) {
        if req.record_type != ge::PhdbRecordType::Displayed {
            return;
        }
        self.stats.host_messages += 1;
        match req.tx_interval {
            0 => {
                self.interval = None;
                self.next = None;
            }
            i if i < 0 => {
                self.interval = None;
                self.next = Some(now);
            }
            i => {
                let secs = (i as u16).max(ge::MIN_DISPLAYED_INTERVAL_S);
                self.interval = Some(Duration::from_secs(u64::from(secs)));
                self.next = Some(now);
            }
        }
    }

    /// Sends the current group (due at `t`) and schedules the next one.
    fn ge_send_group(&mut self, t: Instant) {
        let Some(&(from, to)) = self.groups.get(self.group) else {
            self.next = None;
            return;
        };
        for i in from..to {
            let bytes = self.capture.frames[i].bytes.clone();
            self.send(bytes);
        }
        self.stats.groups += 1;
        let at = |g: usize| self.capture.frames[self.groups[g].0].at;
        let mut gap = match (
            at(self.group),
            self.groups
                .get(self.group + 1)
                .and_then(|_| at(self.group + 1)),
        ) {
            (Some(a), Some(b)) => Some(Duration::from_nanos(
                b.as_nanos().saturating_sub(a.as_nanos()),
            )),
            _ => self.interval,
        };
        self.group += 1;
        if self.group >= self.groups.len() {
            if !self.looping {
                self.next = None;
                return;
            }
            self.group = 0;
            self.stats.loops += 1;
            if self.capture.timed() {
                gap = Some(LOOP_GAP);
            }
        }
        self.next = match self.interval {
            // Asked once: one group.
            None => None,
            Some(_) => gap.map(|g| t + g),
        };
    }

    // ----- Philips ---------------------------------------------------------

    fn philips_message(&mut self, now: Instant, m: Message) {
        match m {
            Message::AssociationRequest => {
                self.stats.host_messages += 1;
                let accept = self.first(FrameKind::PhilipsAccept).unwrap_or_else(|| {
                    let mut out = Vec::new();
                    philips::encode_association_response(&mut out);
                    out
                });
                let create = self.first(FrameKind::PhilipsMdsCreate).unwrap_or_else(|| {
                    let mut out = Vec::new();
                    let info = MdsInfo {
                        model: NoteText::new(b"capture"),
                        ..MdsInfo::default()
                    };
                    philips::encode_mds_create_event(1, &info, &mut out);
                    out
                });
                self.send(accept);
                self.send(create);
                self.philips = PhilipsState::Associated { last_poll: now };
            }
            Message::PollRequest {
                invoke_id,
                poll_number,
                object,
            } if matches!(self.philips, PhilipsState::Associated { .. }) => {
                self.stats.host_messages += 1;
                self.philips = PhilipsState::Associated { last_poll: now };
                match self.next_result(object) {
                    Some(r) => {
                        self.stats.answered += 1;
                        for i in r.frames {
                            let raw = &self.capture.frames[i].bytes;
                            if let Some(f) = rewrite_poll_result(raw, invoke_id, poll_number) {
                                self.send(f);
                            }
                        }
                    }
                    None => self.stats.unanswered += 1,
                }
            }
            Message::EventResult { .. } => self.stats.host_messages += 1,
            Message::ReleaseRequest => {
                self.stats.host_messages += 1;
                let mut out = Vec::new();
                philips::encode_release_response(&mut out);
                self.send(out);
                self.philips = PhilipsState::Idle;
            }
            Message::Abort => {
                self.stats.host_messages += 1;
                self.philips = PhilipsState::Idle;
            }
            _ => {}
        }
    }

    fn first(&self, kind: FrameKind) -> Option<Vec<u8>> {
        self.capture
            .frames
            .iter()
            .find(|f| f.kind == kind)
            .map(|f| f.bytes.clone())
    }

    /// The capture's next result for `object`, from where the last poll
    /// for it left off.
    fn next_result(&mut self, object: u16) -> Option<PhilipsResult> {
        let pos = match self.cursor.iter().position(|(o, _)| *o == object) {
            Some(p) => p,
            None => {
                self.cursor.push((object, 0));
                self.cursor.len() - 1
            }
        };
        let from = self.cursor[pos].1;
        let found = self.results[from.min(self.results.len())..]
            .iter()
            .position(|r| r.object == object)
            .map(|k| from + k)
            .or_else(|| {
                if !self.looping {
                    return None;
                }
                let k = self.results.iter().position(|r| r.object == object)?;
                self.stats.loops += 1;
                Some(k)
            })?;
        self.cursor[pos].1 = found + 1;
        Some(self.results[found].clone())
    }
}

impl Device for CaptureDevice {
    /// Time passed: sends what is due by `now`.
    fn handle_timeout(&mut self, now: Instant) {
        match self.capture.kind {
            ProtocolKind::Ge => {
                while let Some(t) = self.next.filter(|&t| t <= now) {
                    self.ge_send_group(t);
                }
            }
            _ => {
                if let PhilipsState::Associated { last_poll } = self.philips {
                    if now >= last_poll + PHILIPS_KEEPALIVE {
                        self.philips = PhilipsState::Idle;
                        let mut out = Vec::new();
                        philips::encode_abort(&mut out);
                        self.send(out);
                    }
                }
            }
        }
    }

    /// Bytes from the host arrived at `now`.
    fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.handle_timeout(now);
        for &b in bytes {
            let Some((_, content)) = self.rx.push(b) else {
                continue;
            };
            match self.capture.kind {
                ProtocolKind::Ge => {
                    if let Some(req) = parse_ge_request(&content) {
                        self.ge_request(now, req);
                    }
                }
                _ => {
                    if let Some(m) = parse_philips_frame(&content) {
                        self.philips_message(now, m);
                    }
                }
            }
        }
        self.handle_timeout(now);
    }

    /// Appends the next frame to send to `out`; false when there is none.
    fn poll_transmit(&mut self, out: &mut Vec<u8>) -> bool {
        match self.tx.pop_front() {
            Some(f) => {
                out.extend_from_slice(&f);
                true
            }
            None => false,
        }
    }

    /// When to call `handle_timeout` next; `None` while
    /// waiting for the host (or at the end of the capture).
    fn poll_timeout(&self) -> Option<Instant> {
        match self.philips {
            PhilipsState::Associated { last_poll } => Some(last_poll + PHILIPS_KEEPALIVE),
            PhilipsState::Idle => self.next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil::pipeline::open_protocol;
    use vigil::protocol::{Output, Protocol};
    use vigil::sim::{Scenario, SimDevice};
    use vigil::vitals::{Measurement, SourceId};

    fn ge_fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../tests/fixtures/real/ge-s5/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn converse(
        device: &mut dyn crate::Device,
        host: &mut dyn Protocol,
        end: Instant,
        step: Duration,
    ) -> Vec<(Instant, Output)> {
        crate::converse(device, host, end, step).outputs
    }

    fn heart_rates(outputs: &[(Instant, Output)]) -> Vec<(Instant, f32)> {
        outputs
            .iter()
            .filter_map(|(t, o)| match o {
                Output::Reading(r) => match r.measurement {
                    Measurement::HeartRate(s) if s.validity.is_valid() => Some((*t, s.value)),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ge_raw_capture_is_cut_into_whole_records() {
        let c = Capture::from_raw(ProtocolKind::Ge, &ge_fixture("db02.raw")).unwrap();
        let phys = c
            .frames()
            .iter()
            .filter(|f| f.kind == FrameKind::GePhysiological)
            .count();
        // The fixture README: 107 physiological records, waveform records
        // interleaved, the last frame cut off by the end of the capture.
        assert_eq!(phys, 107);
        assert!(c.frames().iter().any(|f| f.kind == FrameKind::GeOther));
        assert!(c.skipped() > 0, "the torn last frame is not replayed");
        assert!(!c.timed());
        assert_eq!(c.ge_groups().len(), 107);
        // Every frame is sent as recorded: the whole capture minus the torn tail.
        let sent: usize = c.frames().iter().map(|f| f.bytes.len()).sum();
        assert_eq!(
            sent as u64 + c.skipped(),
            ge_fixture("db02.raw").len() as u64
        );
    }

    #[test]
    fn ge_emulator_is_silent_until_asked_then_paces_at_the_requested_interval() {
        let capture = Capture::from_raw(ProtocolKind::Ge, &ge_fixture("raw.raw")).unwrap();
        let mut dev = CaptureDevice::new(capture.clone());
        // Time passes, nobody asks: nothing.
        dev.handle_timeout(Instant::from_secs(60));
        let mut buf = Vec::new();
        assert!(!dev.poll_transmit(&mut buf));
        assert_eq!(dev.poll_timeout(), None);

        let mut dev = CaptureDevice::new(capture);
        let mut host = open_protocol(ProtocolKind::Ge, SourceId(0));
        let outputs = converse(
            &mut dev,
            host.as_mut(),
            Instant::from_secs(120),
            Duration::from_millis(500),
        );
        let hr = heart_rates(&outputs);
        // raw.raw: 11 physiological records, all with a valid HR.
        assert_eq!(hr.len(), 11, "{hr:?}");
        assert_eq!(
            hr[0].0,
            Instant::ZERO,
            "the first record answers the request at once"
        );
        for w in hr.windows(2) {
            assert_eq!(
                w[1].0 - w[0].0,
                Duration::from_secs(5),
                "vigil asks every 5 s"
            );
        }
        assert_eq!(host.stats().dropped_total(), 0, "{:?}", host.stats());
        assert_eq!(dev.stats().groups, 11);
        assert_eq!(dev.stats().loops, 0);
    }

    #[test]
    fn ge_emulator_loops_and_stops_when_told() {
        let capture = Capture::from_raw(ProtocolKind::Ge, &ge_fixture("raw.raw")).unwrap();
        let mut dev = CaptureDevice::new(capture).looping(true);
        let mut req = Vec::new();
        ge::PhdbRequest::displayed_every(5)
            .unwrap()
            .encode(&mut req);
        dev.handle_bytes(Instant::ZERO, &req);
        dev.handle_timeout(Instant::from_secs(5 * 30));
        assert_eq!(dev.stats().groups, 31);
        assert_eq!(dev.stats().loops, 2);
        let mut stop = Vec::new();
        ge::PhdbRequest::stop_displayed().encode(&mut stop);
        dev.handle_bytes(Instant::from_secs(151), &stop);
        assert_eq!(dev.poll_timeout(), None);
        dev.handle_timeout(Instant::from_secs(600));
        assert_eq!(dev.stats().groups, 31);
        // Asked once: one record group.
        let mut once = Vec::new();
        ge::PhdbRequest::displayed_once().encode(&mut once);
        dev.handle_bytes(Instant::from_secs(601), &once);
        dev.handle_timeout(Instant::from_secs(900));
        assert_eq!(dev.stats().groups, 32);
    }

    /// The bytes a simulated Philips monitor sends a real host for `secs`:
    /// a capture of the monitor's side of the cable.
    fn philips_session(secs: u64) -> (Vec<u8>, Vec<(Instant, Output)>) {
        let s = Scenario::builtin("typical").unwrap().unwrap();
        let mut dev = SimDevice::new(&s, ProtocolKind::Philips, 3);
        let mut host = open_protocol(ProtocolKind::Philips, SourceId(0));
        let c = crate::converse(
            &mut dev,
            host.as_mut(),
            Instant::from_secs(secs),
            Duration::from_millis(100),
        );
        (c.monitor_bytes(), c.outputs)
    }

    #[test]
    fn philips_emulator_associates_and_answers_polls_with_the_capture() {
        let (raw, original) = philips_session(60);
        let capture = Capture::from_raw(ProtocolKind::Philips, &raw).unwrap();
        assert_eq!(capture.synthesized(), (false, false));
        let mut dev = CaptureDevice::new(capture);
        // Silent until associated.
        dev.handle_timeout(Instant::from_secs(30));
        assert!(!dev.poll_transmit(&mut Vec::new()));

        let mut host = open_protocol(ProtocolKind::Philips, SourceId(0));
        let replayed = converse(
            &mut dev,
            host.as_mut(),
            Instant::from_secs(30),
            Duration::from_millis(100),
        );
        let (want, got) = (heart_rates(&original), heart_rates(&replayed));
        assert!(got.len() >= 10, "{got:?}");
        // The same numbers, in the same order, as the monitor sent.
        let want: Vec<f32> = want.iter().map(|w| w.1).take(got.len()).collect();
        let got_values: Vec<f32> = got.iter().map(|g| g.1).collect();
        assert_eq!(got_values, want);
        assert!(
            got[0].0 < Instant::from_secs(2),
            "first reading at {:?}",
            got[0].0
        );
        assert_eq!(host.stats().dropped_total(), 0, "{:?}", host.stats());
        assert_eq!(dev.stats().unanswered, 0);
    }

    #[test]
    fn philips_results_are_rewritten_for_the_host_s_invoke_id() {
        let (raw, _) = philips_session(20);
        let capture = Capture::from_raw(ProtocolKind::Philips, &raw).unwrap();
        let results = capture.philips_results();
        let numerics = results
            .iter()
            .find(|r| r.object == philips::NOM_MOC_VMO_METRIC_NU && r.frames.len() > 1)
            .expect("a linked numerics result");
        for &i in &numerics.frames {
            let f = rewrite_poll_result(&capture.frames()[i].bytes, 0x4242, 77).unwrap();
            let mut d = Deframer::new(ProtocolKind::Philips);
            let (_, content) = f.iter().find_map(|&b| d.push(b)).unwrap();
            match parse_philips_frame(&content).unwrap() {
                Message::PollResult {
                    invoke_id,
                    poll_number,
                    ..
                } => assert_eq!((invoke_id, poll_number), (0x4242, 77)),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn philips_capture_without_association_gets_vigil_s_own() {
        let (raw, _) = philips_session(20);
        let capture = Capture::from_raw(ProtocolKind::Philips, &raw).unwrap();
        // Cut the capture after its association: only poll results left.
        let first_result = capture
            .frames()
            .iter()
            .position(|f| matches!(f.kind, FrameKind::PhilipsPollResult { .. }))
            .unwrap();
        let tail: Vec<u8> = capture.frames()[first_result..]
            .iter()
            .flat_map(|f| f.bytes.clone())
            .collect();
        let capture = Capture::from_raw(ProtocolKind::Philips, &tail).unwrap();
        assert_eq!(capture.synthesized(), (true, true));
        let mut dev = CaptureDevice::new(capture);
        let mut host = open_protocol(ProtocolKind::Philips, SourceId(0));
        let outputs = converse(
            &mut dev,
            host.as_mut(),
            Instant::from_secs(10),
            Duration::from_millis(100),
        );
        assert!(!heart_rates(&outputs).is_empty());
    }

    #[test]
    fn a_recording_replays_at_its_own_pace() {
        use vigil::record::Timed;
        // Two GE records from the real capture, recorded 2.5 s apart in
        // odd chunks, as the daemon's recorder stores source bytes.
        let c = Capture::from_raw(ProtocolKind::Ge, &ge_fixture("raw.raw")).unwrap();
        let records: Vec<Vec<u8>> = c
            .frames()
            .iter()
            .filter(|f| f.kind == FrameKind::GePhysiological)
            .take(3)
            .map(|f| f.bytes.clone())
            .collect();
        let config = "[[source]]\nname = \"ge\"\nprotocol = \"ge-s5\"\ntcp = \"127.0.0.1:1\"\n\n[[source]]\nname = \"ox\"\nprotocol = \"masimo\"\ntcp = \"127.0.0.1:2\"\n";
        let mut timed = vec![Timed {
            at: Instant::ZERO,
            record: Record::Config(config.into()),
        }];
        for (k, r) in records.iter().enumerate() {
            let t = Instant::from_millis(1_000 + 2_500 * k as u64);
            let (a, b) = r.split_at(r.len() / 3);
            for (j, part) in [a, b].into_iter().enumerate() {
                timed.push(Timed {
                    at: t + Duration::from_millis(j as u64),
                    record: Record::Input(Input::Bytes {
                        source: vigil::vitals::SourceId(0),
                        data: part.to_vec(),
                    }),
                });
            }
        }
        let dir = std::env::temp_dir().join(format!("vigil-sim-capture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("session.vrec");
        recfile::write_all(&path, &timed).unwrap();

        let capture = Capture::load(&path, None, None).unwrap();
        assert_eq!(capture.kind(), ProtocolKind::Ge);
        assert!(capture.timed());
        assert_eq!(capture.frames().len(), 3);
        let mut dev = CaptureDevice::new(capture);
        let mut host = open_protocol(ProtocolKind::Ge, SourceId(0));
        let outputs = converse(
            &mut dev,
            host.as_mut(),
            Instant::from_secs(30),
            Duration::from_millis(100),
        );
        let hr = heart_rates(&outputs);
        let times: Vec<Instant> = hr.iter().map(|h| h.0).collect();
        assert_eq!(
            times,
            [0, 2_500, 5_000].map(Instant::from_millis),
            "the recorded gaps, from the request on"
        );

        // Asking for the wrong source says which there are.
        let err = Capture::load(&path, None, Some("nibp"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ge (ge-s5), ox (masimo)"), "{err}");
        let err = Capture::load(&path, Some(ProtocolKind::Philips), Some("ge"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("speaks ge-s5"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_raw_capture_needs_its_protocol() {
        let dir = std::env::temp_dir().join(format!("vigil-sim-raw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("monitor.raw");
        std::fs::write(&path, ge_fixture("raw.raw")).unwrap();
        let err = Capture::load(&path, None, None).unwrap_err().to_string();
        assert!(err.contains("--protocol ge-s5"), "{err}");
        let err = Capture::load(&path, Some(ProtocolKind::Philips), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no whole philips-intellivue frame"), "{err}");
        assert!(Capture::load(&path, Some(ProtocolKind::Ge), None).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
