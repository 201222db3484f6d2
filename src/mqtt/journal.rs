//! The outbox journal: an append-only file of checksummed records in the
//! state directory, so that alarm and session messages survive a crash or a
//! power cut between being raised and being acknowledged by the broker.
//!
//! # Format (`outbox.journal`)
//!
//! ```text
//! magic   8 bytes   "VGLOUT01"
//! record  len:u32le crc32:u32le body[len]      (repeated)
//! body    tag:u8 ...
//!   1 message    id:u64 class:u8 stream:u8 stream_seq:u64 retain:u8
//!                topic_len:u16 topic payload(rest)
//!   2 delivered  id:u64                 (PUBACK received)
//!   3 evicted    id:u64                 (dropped by the full-outbox policy)
//!   4 counters   next_id:u64 next_alarms:u64 next_session:u64
//! ```
//!
//! Integers are little-endian; the CRC-32 covers the body.
//!
//! # Torn tail or corruption
//!
//! A record that cannot be read (its length runs past the end of the file,
//! its checksum does not match, or its body makes no sense) is either:
//!
//! - a **torn tail**, when no readable record follows it: a crash in the
//!   middle of the last append, or a power cut that lost part of the
//!   appends not yet synced. It is reported and cut off; the records before
//!   it stand.
//! - **corruption**, when readable records follow it: something damaged
//!   bytes that had been synced (a flipped bit, a bad sector, a hand edit).
//!   Reading resynchronises on the next readable record, every readable
//!   record is kept, and [`LoadReport::damage`] says where and how much was
//!   lost, so the caller raises `system.journal_corrupt`, keeps a copy of
//!   the damaged file and numbers above anything the damage may have held.
//!
//! Compaction writes the counters (twice, so that one damaged record never
//! takes the stream numbers with it) and the undelivered messages to a new
//! file, syncs it, renames it over the old one and syncs the directory, so a
//! crash during compaction leaves either the old or the new journal, never a
//! mix.
//!
//! # Group commit
//!
//! Appends are plain writes: once `write` returns, the record is in the page
//! cache and survives the daemon's crash or SIGKILL, so the outbox publishes
//! a message as soon as it is appended. The fdatasync that makes it survive
//! a power cut runs off the publisher's thread ([`SyncJob`]), covering every
//! append made before it began.
//!
//! # The run file (`run`)
//!
//! Only a power cut or a system crash can lose appends not yet synced, and
//! both reboot the machine. The file `run` holds `running <boot id>` while a
//! daemon runs and `stopped <boot id>` after a clean stop (the kernel's
//! boot id, `/proc/sys/kernel/random/boot_id`). A start that finds
//! `running` with another boot id knows that the previous run may have lost
//! its last group-commit window ([`PreviousRun::may_have_lost`]).
//!
//! The sequence reservation (`seq` file) lives here too: see [`SeqFile`],
//! and the note a run leaves outside a read-only state directory when its
//! epoch can no longer be trusted: see [`EpochMarks`].
//!
//! The same format, under the name `hl7.journal` ([`Journal::open_named`]),
//! keeps the live HL7 sink's undelivered messages across restarts
//! (`crate::io::hl7`'s backlog).
//!
//! Blocking file IO: call it from the MQTT thread, never from the driver.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::record::crc32;

const MAGIC: &[u8; 8] = b"VGLOUT01";
const FILE: &str = "outbox.journal";
/// A record longer than this is damage, not data.
const MAX_RECORD: u32 = 1 << 20;
/// The smallest body of any record (tag and one u64).
const MIN_BODY: u32 = 9;
/// The smallest message record on disk (header, tag, fixed fields, empty
/// topic and payload): damaged bytes can have held at most
/// `bytes / MIN_MESSAGE_RECORD` messages (rounded up).
pub const MIN_MESSAGE_RECORD: u64 = 8 + 1 + 8 + 1 + 1 + 8 + 1 + 2;
/// Where a damaged copy of the journal is kept for analysis.
pub const DAMAGED_COPY: &str = "outbox.journal.damaged";
/// Where a journal that could not be read at start-up is set aside when the
/// state directory works again (never overwritten unread).
pub const UNREAD_COPY: &str = "outbox.journal.unread";

/// Errors of the journal and the sequence file.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file in the state directory could not be created, read or written.
    #[error("{what} {path} (check mqtt.state_dir: the directory must exist or be creatable, and be writable by vigil): {cause}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The file is not a vigil journal.
    #[error("{0} is not a vigil outbox journal (wrong magic); move it away or point mqtt.state_dir elsewhere")]
    NotAJournal(PathBuf),
    /// No random stream epoch can be made.
    #[error("cannot make a stream epoch: {0}")]
    Random(crate::random::RandomError),
}

// By hand, not `#[from]`: the message already says the cause, so it is not
// also a `source()` (a chain printed with `{:#}` would say it twice).
impl From<crate::random::RandomError> for JournalError {
    fn from(e: crate::random::RandomError) -> Self {
        JournalError::Random(e)
    }
}

/// Eviction rank of a message: lower ranks are evicted first when the
/// outbox is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// A low-priority alarm event.
    Low = 0,
    /// A medium-priority alarm event.
    Medium = 1,
    /// A session event.
    Session = 2,
    /// A high-priority alarm event: never evicted while anything else can be.
    High = 3,
    /// A command result (kept in memory only).
    Result = 4,
}

impl Class {
    fn from_u8(b: u8) -> Option<Class> {
        Some(match b {
            0 => Class::Low,
            1 => Class::Medium,
            2 => Class::Session,
            3 => Class::High,
            4 => Class::Result,
            _ => return None,
        })
    }
}

/// The numbered message streams displays follow for gaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The `alarms` topic.
    Alarms = 0,
    /// The `session` topic.
    Session = 1,
    /// Not numbered (command results).
    None = 2,
}

impl Stream {
    fn from_u8(b: u8) -> Option<Stream> {
        Some(match b {
            0 => Stream::Alarms,
            1 => Stream::Session,
            2 => Stream::None,
            _ => return None,
        })
    }
}

/// One message as stored: everything needed to publish it again unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// Outbox id (internal, consecutive).
    pub id: u64,
    /// Eviction rank.
    pub class: Class,
    /// Which numbered stream.
    pub stream: Stream,
    /// Number within the stream (0 for [`Stream::None`]).
    pub stream_seq: u64,
    /// Publish with the retain flag.
    pub retain: bool,
    /// Full topic.
    pub topic: String,
    /// The JSON payload, rendered once.
    pub payload: Vec<u8>,
}

/// One journal record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A message to deliver.
    Message(StoredMessage),
    /// A message the broker acknowledged.
    Delivered(u64),
    /// A message dropped by the full-outbox policy.
    Evicted(u64),
    /// Counters carried over a compaction.
    Counters {
        /// The next outbox id.
        next_id: u64,
        /// The next stream numbers (alarms, session).
        next_stream: [u64; 2],
    },
}

impl Entry {
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        match self {
            Entry::Message(m) => {
                out.push(1);
                out.extend_from_slice(&m.id.to_le_bytes());
                out.push(m.class as u8);
                out.push(m.stream as u8);
                out.extend_from_slice(&m.stream_seq.to_le_bytes());
                out.push(u8::from(m.retain));
                let topic = m.topic.as_bytes();
                let tlen = topic.len().min(u16::MAX as usize);
                out.extend_from_slice(&(tlen as u16).to_le_bytes());
                out.extend_from_slice(&topic[..tlen]);
                out.extend_from_slice(&m.payload);
            }
            Entry::Delivered(id) => {
                out.push(2);
                out.extend_from_slice(&id.to_le_bytes());
            }
            Entry::Evicted(id) => {
                out.push(3);
                out.extend_from_slice(&id.to_le_bytes());
            }
            Entry::Counters {
                next_id,
                next_stream,
            } => {
                out.push(4);
                out.extend_from_slice(&next_id.to_le_bytes());
                out.extend_from_slice(&next_stream[0].to_le_bytes());
                out.extend_from_slice(&next_stream[1].to_le_bytes());
            }
        }
        let body_len = (out.len() - start - 8) as u32;
        let crc = crc32(&out[start + 8..]);
        out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(body: &[u8]) -> Option<Entry> {
        let (&tag, rest) = body.split_first()?;
        let u64_at = |b: &[u8], at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
        };
        match tag {
            1 => {
                let id = u64_at(rest, 0)?;
                let class = Class::from_u8(*rest.get(8)?)?;
                let stream = Stream::from_u8(*rest.get(9)?)?;
                let stream_seq = u64_at(rest, 10)?;
                let retain = *rest.get(18)? != 0;
                let tlen = u16::from_le_bytes(rest.get(19..21)?.try_into().ok()?) as usize;
                let topic = std::str::from_utf8(rest.get(21..21 + tlen)?)
                    .ok()?
                    .to_owned();
                let payload = rest.get(21 + tlen..)?.to_vec();
                Some(Entry::Message(StoredMessage {
                    id,
                    class,
                    stream,
                    stream_seq,
                    retain,
                    topic,
                    payload,
                }))
            }
            2 => Some(Entry::Delivered(u64_at(rest, 0)?)),
            3 => Some(Entry::Evicted(u64_at(rest, 0)?)),
            4 => Some(Entry::Counters {
                next_id: u64_at(rest, 0)?,
                next_stream: [u64_at(rest, 8)?, u64_at(rest, 16)?],
            }),
            _ => None,
        }
    }
}

/// What opening the journal found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Records read.
    pub records: usize,
    /// Bytes of a torn tail (nothing readable after them) that were cut off.
    pub torn_bytes: u64,
    /// Damaged stretches with readable records after them (corruption).
    pub damage: Vec<Damage>,
    /// Where the damaged journal was copied to (see [`DAMAGED_COPY`]).
    pub damaged_copy: Option<PathBuf>,
    /// The previous run may have lost its last group-commit window (a
    /// power cut or a system crash, see [`PreviousRun::may_have_lost`]).
    pub power_cut: bool,
}

impl LoadReport {
    /// Whether the journal was corrupt (not merely torn at the end).
    pub fn corrupt(&self) -> bool {
        !self.damage.is_empty()
    }

    /// Bytes lost to corruption in all.
    pub fn damaged_bytes(&self) -> u64 {
        self.damage.iter().map(|d| d.bytes).sum()
    }
}

/// One damaged stretch of the journal, followed by readable records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// Offset of the first unreadable byte in the file.
    pub offset: u64,
    /// Unreadable bytes skipped.
    pub bytes: u64,
    /// How many readable records came before it (its place among the
    /// entries returned by [`Journal::open`]).
    pub after_records: usize,
}

impl Damage {
    /// The most messages the damaged bytes can have held.
    pub fn max_messages(&self) -> u64 {
        self.bytes.div_ceil(MIN_MESSAGE_RECORD)
    }
}

/// Reads the records of a journal file's bytes (magic checked by the
/// caller): the entries, what was found, and where the readable part ends.
fn parse(data: &[u8]) -> (Vec<Entry>, LoadReport, usize) {
    let mut entries = Vec::new();
    let mut report = LoadReport::default();
    let mut at = MAGIC.len();
    while at < data.len() {
        if let Some((entry, n)) = record_at(data, at) {
            entries.push(entry);
            at += n;
            continue;
        }
        // Unreadable: corruption if a readable record follows, else a torn
        // tail.
        let Some(next) = (at + 1..data.len()).find(|&p| record_at(data, p).is_some()) else {
            break;
        };
        report.damage.push(Damage {
            offset: at as u64,
            bytes: (next - at) as u64,
            after_records: entries.len(),
        });
        at = next;
    }
    report.records = entries.len();
    report.torn_bytes = (data.len() - at) as u64;
    (entries, report, at)
}

/// The record at `at`, if one is readable there: the entry and its size.
fn record_at(data: &[u8], at: usize) -> Option<(Entry, usize)> {
    let head = data.get(at..at.checked_add(8)?)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?);
    if !(MIN_BODY..=MAX_RECORD).contains(&len) {
        return None;
    }
    let crc = u32::from_le_bytes(head[4..].try_into().ok()?);
    let body = data.get(at + 8..at + 8 + len as usize)?;
    // Cheap test first: resynchronising tries every byte position.
    if !(1..=4).contains(&body[0]) || crc32(body) != crc {
        return None;
    }
    Some((Entry::decode(body)?, 8 + len as usize))
}

/// The open journal file.
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    /// Shared with a [`SyncJob`] running on another thread.
    file: Arc<File>,
    len: u64,
    buf: Vec<u8>,
}

/// An fdatasync of the journal, to run on a thread that may block (the
/// publisher never waits for the disk). It covers every append made before
/// [`SyncJob::run`] began.
pub struct SyncJob {
    file: Arc<File>,
    path: PathBuf,
    /// The caller's mark of what the sync covers.
    pub mark: u64,
}

impl SyncJob {
    /// Syncs (blocking); returns the mark and the result.
    pub fn run(self) -> (u64, Result<(), JournalError>) {
        let r = self
            .file
            .sync_data()
            .map_err(io("cannot sync journal", &self.path));
        (self.mark, r)
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        what,
        path: path.to_owned(),
        cause: source,
    }
}

impl Journal {
    /// Opens (or creates) the journal in `dir` and reads every intact record.
    pub fn open(dir: &Path) -> Result<(Journal, Vec<Entry>, LoadReport), JournalError> {
        Journal::open_named(dir, FILE)
    }

    /// Like [`Journal::open`], for a journal of the same format under
    /// another file name in `dir` (the HL7 backlog's `hl7.journal`); a
    /// damaged one is copied to `<name>.damaged`.
    pub fn open_named(
        dir: &Path,
        name: &str,
    ) -> Result<(Journal, Vec<Entry>, LoadReport), JournalError> {
        std::fs::create_dir_all(dir).map_err(io("cannot create state directory", dir))?;
        let path = dir.join(name);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("cannot open journal", &path))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(io("cannot read journal", &path))?;
        let mut report = LoadReport::default();
        let mut entries = Vec::new();
        let valid_len = if data.is_empty() {
            file.write_all(MAGIC)
                .and_then(|_| file.sync_all())
                .map_err(io("cannot write journal", &path))?;
            sync_dir(dir);
            MAGIC.len()
        } else if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
            if MAGIC.starts_with(&data[..data.len().min(MAGIC.len())]) {
                // A crash while the magic itself was being written.
                file.set_len(0)
                    .and_then(|_| file.write_all(MAGIC))
                    .and_then(|_| file.sync_all())
                    .map_err(io("cannot write journal", &path))?;
                report.torn_bytes = data.len() as u64;
                MAGIC.len()
            } else {
                return Err(JournalError::NotAJournal(path));
            }
        } else {
            let at;
            (entries, report, at) = parse(&data);
            if report.corrupt() {
                // Kept for analysis before anything rewrites the journal
                // (best effort: a full disk must not stop the start).
                let copy = dir.join(format!("{name}.damaged"));
                report.damaged_copy = std::fs::write(&copy, &data).is_ok().then_some(copy);
            }
            if report.torn_bytes > 0 {
                file.set_len(at as u64)
                    .and_then(|_| file.sync_all())
                    .map_err(io("cannot cut the torn tail of journal", &path))?;
            }
            at
        };
        use std::io::Seek as _;
        file.seek(std::io::SeekFrom::Start(valid_len as u64))
            .map_err(io("cannot seek journal", &path))?;
        Ok((
            Journal {
                dir: dir.to_owned(),
                path,
                file: Arc::new(file),
                len: valid_len as u64,
                buf: Vec::with_capacity(4096),
            },
            entries,
            report,
        ))
    }

    /// Reads the journal in `dir` without writing anything (a read-only or
    /// full state directory at start-up): its records and what was found.
    /// A missing journal reads as empty.
    pub fn read(dir: &Path) -> Result<(Vec<Entry>, LoadReport), JournalError> {
        Journal::read_named(dir, FILE)
    }

    /// Like [`Journal::read`], for a journal named `name` in `dir`.
    pub fn read_named(dir: &Path, name: &str) -> Result<(Vec<Entry>, LoadReport), JournalError> {
        let path = dir.join(name);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io("cannot read journal", &path)(e)),
        };
        if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
            if MAGIC.starts_with(&data[..data.len().min(MAGIC.len())]) {
                let report = LoadReport {
                    torn_bytes: data.len() as u64,
                    ..LoadReport::default()
                };
                return Ok((Vec::new(), report));
            }
            return Err(JournalError::NotAJournal(path));
        }
        let (entries, report, _) = parse(&data);
        Ok((entries, report))
    }

    /// Creates the journal in `dir` holding exactly `entries` (written to a
    /// temporary file, synced, renamed over any old journal: after the
    /// state directory failed, what the outbox holds in memory is written
    /// out). `set_aside`: an old journal that could not be read is kept as
    /// [`UNREAD_COPY`] instead of being replaced.
    pub fn create(dir: &Path, entries: &[Entry], set_aside: bool) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(dir).map_err(io("cannot create state directory", dir))?;
        let path = dir.join(FILE);
        if set_aside && path.exists() {
            let aside = dir.join(UNREAD_COPY);
            std::fs::rename(&path, &aside).map_err(io("cannot set aside journal", &path))?;
        }
        let (file, len) = replace(dir, &path, entries)?;
        Ok(Journal {
            dir: dir.to_owned(),
            path,
            file: Arc::new(file),
            len,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Appends records (written, not yet synced).
    pub fn append(&mut self, entries: &[&Entry]) -> Result<(), JournalError> {
        self.buf.clear();
        for e in entries {
            e.encode(&mut self.buf);
        }
        (&*self.file)
            .write_all(&self.buf)
            .map_err(io("cannot append to journal", &self.path))?;
        self.len += self.buf.len() as u64;
        Ok(())
    }

    /// Makes everything appended so far durable (fdatasync), on this thread.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file
            .sync_data()
            .map_err(io("cannot sync journal", &self.path))
    }

    /// A sync of everything appended so far, to run on another thread;
    /// `mark` is returned with its result.
    pub fn sync_job(&self, mark: u64) -> SyncJob {
        SyncJob {
            file: Arc::clone(&self.file),
            path: self.path.clone(),
            mark,
        }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the journal holds nothing but its magic.
    pub fn is_empty(&self) -> bool {
        self.len <= MAGIC.len() as u64
    }

    /// Replaces the journal by `entries` atomically (compaction).
    pub fn rewrite(&mut self, entries: &[Entry]) -> Result<(), JournalError> {
        let (file, len) = replace(&self.dir, &self.path, entries)?;
        self.file = Arc::new(file);
        self.len = len;
        Ok(())
    }
}

/// Writes a journal of `entries` to a temporary file, syncs it, renames it
/// to `path` and syncs the directory; returns it opened for appending, and
/// its length.
fn replace(dir: &Path, path: &Path, entries: &[Entry]) -> Result<(File, u64), JournalError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut data = MAGIC.to_vec();
    for e in entries {
        e.encode(&mut data);
    }
    let mut f = File::create(&tmp).map_err(io("cannot create", &tmp))?;
    f.write_all(&data)
        .and_then(|_| f.sync_all())
        .map_err(io("cannot write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("cannot replace journal", path))?;
    sync_dir(dir);
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io("cannot reopen journal", path))?;
    Ok((file, data.len() as u64))
}

fn sync_dir(dir: &Path) {
    // Makes a create or rename durable; best effort (not every filesystem
    // lets a directory be opened for sync).
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// What the `run` file says about the previous run (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreviousRun {
    /// No `run` file: a new state directory, or one written by a vigil that
    /// synced before publishing.
    Unknown,
    /// The previous run stopped cleanly, after a last sync.
    Stopped,
    /// The previous run did not stop cleanly; it ran in this boot (`None`:
    /// the file could not be read as vigil writes it).
    Running(Option<String>),
}

const RUN_FILE: &str = "run";

impl PreviousRun {
    /// Reads the `run` file in `dir`.
    pub fn read(dir: &Path) -> Result<PreviousRun, JournalError> {
        let path = dir.join(RUN_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PreviousRun::Unknown),
            Err(e) => return Err(io("cannot read", &path)(e)),
        };
        Ok(match text.split_whitespace().collect::<Vec<_>>()[..] {
            ["stopped", _] => PreviousRun::Stopped,
            ["running", boot] => PreviousRun::Running(Some(boot.to_owned())),
            _ => PreviousRun::Running(None),
        })
    }

    /// Whether appends the previous run had not synced may be lost: it did
    /// not stop cleanly and the machine rebooted since (a power cut or a
    /// system crash; a daemon crash or SIGKILL leaves the page cache, and
    /// so every append, intact). `boot`: this boot's id.
    pub fn may_have_lost(&self, boot: &str) -> bool {
        match self {
            PreviousRun::Unknown | PreviousRun::Stopped => false,
            PreviousRun::Running(b) => b.as_deref() != Some(boot) || boot.is_empty(),
        }
    }

    /// Writes `running <boot>` (this run has started) into `dir`.
    pub fn mark_running(dir: &Path, boot: &str) -> Result<(), JournalError> {
        write_synced(
            &dir.join(RUN_FILE),
            &format!("running {}\n", or_unknown(boot)),
        )
    }

    /// Writes `stopped <boot>` (call after the last sync of a clean stop).
    pub fn mark_stopped(dir: &Path, boot: &str) -> Result<(), JournalError> {
        write_synced(
            &dir.join(RUN_FILE),
            &format!("stopped {}\n", or_unknown(boot)),
        )
    }
}

fn or_unknown(boot: &str) -> &str {
    if boot.is_empty() {
        "unknown"
    } else {
        boot
    }
}

/// This boot's id (empty when the system does not say: every unclean stop
/// then counts as one that may have lost appends).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The published sequence numbers' offset, kept monotonic across restarts.
///
/// The engine numbers its events from 1 at every start. vigil publishes
/// `seq = base + engine seq`, where `base` is the limit reserved by the
/// previous run: the file `seq` holds the first number no run has used yet.
/// A run reserves numbers in blocks ([`SeqFile::BLOCK`]) and writes the new
/// limit (synced) before publishing any number beyond the old one, so
/// published numbers never repeat or go backwards, even after a crash; a
/// restart skips at most one block.
///
/// The numbers are ordered only within one **epoch**, a random id kept in
/// the file `epoch` beside `seq` and carried by every payload. A new state
/// directory gets a new epoch; so does a start where `seq` cannot be
/// trusted (missing while `epoch` exists, or not a number): vigil never
/// silently starts again at 0 under the old epoch, which displays would
/// take for old duplicates and drop.
pub struct SeqFile {
    path: PathBuf,
    base: u64,
    reserved: u64,
    epoch: String,
    /// Where this stream's epoch is noted when it must not be continued.
    marks: EpochMarks,
}

/// How this run's numbering started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeqStart {
    /// A new state directory: a new epoch.
    Fresh,
    /// The previous run's numbers continue under its epoch.
    Continued,
    /// `seq` could not be trusted (the reason): a new epoch.
    Untrusted(String),
}

impl SeqFile {
    /// Numbers reserved at a time.
    pub const BLOCK: u64 = 1_000_000;

    /// Reads the previous limit and epoch and reserves the first block of
    /// this run. `floor`: the first number above every `seq` still held in
    /// the outbox journal (the base never goes below it).
    /// An epoch that `marks` distrusts (an earlier run in this boot numbered
    /// messages in memory while the directory was read-only) is not
    /// continued either.
    pub fn open(
        dir: &Path,
        floor: u64,
        marks: &EpochMarks,
    ) -> Result<(SeqFile, SeqStart), JournalError> {
        std::fs::create_dir_all(dir).map_err(io("cannot create state directory", dir))?;
        let path = dir.join("seq");
        let epoch_path = dir.join("epoch");
        let read = |p: &Path| match std::fs::read_to_string(p) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("cannot read", p)(e)),
        };
        let old_epoch = read(&epoch_path)?
            .map(|s| s.trim().to_owned())
            .filter(|s| valid_epoch(s));
        let distrusted = old_epoch.as_deref().and_then(|e| marks.distrusted(e));
        let (base, start) = match (read(&path)?, &old_epoch) {
            (Some(text), _) => match text.trim().parse::<u64>() {
                Ok(n) if distrusted.is_some() => (
                    n,
                    SeqStart::Untrusted(format!(
                        "an earlier run numbered messages it could not journal while {} was read-only (noted in {})",
                        dir.display(),
                        distrusted.as_ref().map_or(String::new(), |p| p.display().to_string())
                    )),
                ),
                Ok(n) if old_epoch.is_some() => (n, SeqStart::Continued),
                Ok(n) => (
                    n,
                    SeqStart::Untrusted(format!("{} is missing or damaged", epoch_path.display())),
                ),
                Err(_) => (
                    0,
                    SeqStart::Untrusted(format!(
                        "{} does not hold a number ({:?})",
                        path.display(),
                        text.chars().take(40).collect::<String>()
                    )),
                ),
            },
            (None, Some(_)) => (
                0,
                SeqStart::Untrusted(format!("{} is missing", path.display())),
            ),
            (None, None) => (0, SeqStart::Fresh),
        };
        let epoch = match (&start, old_epoch) {
            (SeqStart::Continued, Some(e)) => e,
            (_, old) => {
                let e = crate::random::hex(8)?;
                write_synced(&epoch_path, &format!("{e}\n"))?;
                if let Some(old) = old {
                    marks.clear(&old);
                }
                e
            }
        };
        let base = base.max(floor);
        let mut f = SeqFile {
            path,
            base,
            reserved: base,
            epoch,
            marks: marks.clone(),
        };
        f.reserve(base + Self::BLOCK)?;
        Ok((f, start))
    }

    /// A base for memory-only operation (the state directory cannot be
    /// written): a new epoch, numbers from `floor` (see [`SeqFile::open`]).
    /// [`SeqFile::attach`] makes it durable once the directory works again.
    pub fn memory(floor: u64, marks: &EpochMarks) -> SeqFile {
        SeqFile {
            path: PathBuf::new(),
            base: floor,
            reserved: u64::MAX,
            marks: marks.clone(),
            epoch: crate::random::hex(8).unwrap_or_else(|e| {
                tracing::warn!("{e}: this run's stream epoch is taken from the clock");
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                format!("{t:016x}")
            }),
        }
    }

    /// Whether no `seq` file backs the numbers (see [`SeqFile::memory`]).
    pub fn is_memory(&self) -> bool {
        self.path.as_os_str().is_empty()
    }

    /// Writes a reservation above `next` (the first number not yet
    /// published) and this run's epoch into `dir`, so the next run continues
    /// this stream: after a memory-only start, or after the epoch file was
    /// removed because the journal failed.
    pub fn attach(&mut self, dir: &Path, next: u64) -> Result<(), JournalError> {
        let path = dir.join("seq");
        let mut limit = next.max(self.base) + Self::BLOCK;
        if !self.is_memory() {
            limit = limit.max(self.reserved);
        }
        write_synced(&path, &format!("{limit}\n"))?;
        write_synced(&dir.join("epoch"), &format!("{}\n", self.epoch))?;
        self.path = path;
        self.reserved = limit;
        Ok(())
    }

    /// This stream's epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Notes that this stream's epoch must not be continued (its `epoch`
    /// file cannot be removed); returns where (see [`EpochMarks`]).
    pub fn distrust(&self) -> std::io::Result<PathBuf> {
        self.marks.distrust(&self.epoch)
    }

    /// Withdraws that note: the stream is journaled again.
    pub fn trust(&self) {
        self.marks.clear(&self.epoch);
    }

    fn reserve(&mut self, limit: u64) -> Result<(), JournalError> {
        write_synced(&self.path, &format!("{limit}\n"))?;
        self.reserved = limit;
        Ok(())
    }

    /// This run's offset.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The published number of engine sequence number `seq`, reserving a
    /// new block first when needed.
    pub fn publish(&mut self, seq: u64) -> Result<u64, JournalError> {
        let n = self.base + seq;
        if n >= self.reserved {
            self.reserve(n + Self::BLOCK)?;
        }
        Ok(n)
    }
}

/// Epochs that must not be continued, noted outside the state directory.
///
/// When the outbox journal fails, the messages numbered from then on exist
/// in memory only, so the next run must not continue the epoch: it would
/// number over them and displays would drop its messages as old. vigil
/// removes the `epoch` file to say so, which works on a full disk but not
/// on a read-only one. Then it notes the epoch here instead, in a directory
/// on another file system that stays writable: systemd's runtime directory
/// (`RuntimeDirectory=vigil`, `$RUNTIME_DIRECTORY`), else
/// `$XDG_RUNTIME_DIR`, else `/dev/shm`. These are memory file systems,
/// emptied at boot; a reboot instead counts as a possible power cut (see
/// the run file), whose skip covers the unsynced appends but not a long
/// read-only stretch: see docs/mqtt.md.
#[derive(Clone, Debug)]
pub struct EpochMarks {
    dir: Option<PathBuf>,
}

impl EpochMarks {
    /// The runtime directory of this process's environment.
    pub fn from_env() -> EpochMarks {
        let dir = ["RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"]
            .iter()
            .filter_map(std::env::var_os)
            // systemd may list several directories, separated by colons.
            .filter_map(|v| {
                v.to_str()
                    .and_then(|v| v.split(':').next())
                    .map(PathBuf::from)
            })
            .find(|p| p.is_absolute() && p.is_dir())
            .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()));
        EpochMarks { dir }
    }

    /// Marks kept in `dir` (tests).
    pub fn at(dir: &Path) -> EpochMarks {
        EpochMarks {
            dir: Some(dir.to_owned()),
        }
    }

    fn path(&self, epoch: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        valid_epoch(epoch).then(|| dir.join(format!("vigil-epoch-{epoch}.untrusted")))
    }

    /// Notes that `epoch` must not be continued; returns where.
    pub fn distrust(&self, epoch: &str) -> std::io::Result<PathBuf> {
        let path = self.path(epoch).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no runtime directory (set RuntimeDirectory=vigil in the service unit)",
            )
        })?;
        std::fs::write(&path, format!("{epoch}\n"))?;
        Ok(path)
    }

    /// Where `epoch` is noted as not to be continued, if it is.
    pub fn distrusted(&self, epoch: &str) -> Option<PathBuf> {
        self.path(epoch).filter(|p| p.exists())
    }

    /// Forgets the note on `epoch` (its journal is back, or it was left).
    pub fn clear(&self, epoch: &str) {
        if let Some(p) = self.path(epoch) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// An epoch as vigil writes it: 16 lowercase hex digits.
fn valid_epoch(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Replaces `path` with `text` atomically and durably (temp file, sync,
/// rename, directory sync).
fn write_synced(path: &Path, text: &str) -> Result<(), JournalError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io("cannot create", &tmp))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(io("cannot write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("cannot replace", path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vigil-journal-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Marks in a directory of their own (empty).
    fn no_marks() -> EpochMarks {
        EpochMarks { dir: None }
    }

    fn msg(id: u64) -> Entry {
        Entry::Message(StoredMessage {
            id,
            class: Class::High,
            stream: Stream::Alarms,
            stream_seq: id,
            retain: false,
            topic: "vigil/v1/c/b/alarms".into(),
            payload: format!("{{\"n\":{id}}}").into_bytes(),
        })
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_cut() {
        let dir = temp("torn");
        {
            let (mut j, entries, _) = Journal::open(&dir).unwrap();
            assert!(entries.is_empty());
            j.append(&[&msg(1), &msg(2), &Entry::Delivered(1)]).unwrap();
            j.sync().unwrap();
        }
        // A crash mid-write: half a record at the end.
        let path = dir.join(FILE);
        let mut extra = Vec::new();
        msg(3).encode(&mut extra);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&extra[..extra.len() / 2]).unwrap();
        drop(f);
        let (mut j, entries, report) = Journal::open(&dir).unwrap();
        assert_eq!(entries, vec![msg(1), msg(2), Entry::Delivered(1)]);
        assert_eq!(report.torn_bytes, (extra.len() / 2) as u64);
        // Appends after the cut are read back.
        j.append(&[&msg(4)]).unwrap();
        drop(j);
        let (_, entries, report) = Journal::open(&dir).unwrap();
        assert_eq!(entries.len(), 4);
        assert_eq!(report.torn_bytes, 0);
    }

    #[test]
    fn a_flipped_bit_ends_the_readable_part() {
        let dir = temp("flip");
        {
            let (mut j, _, _) = Journal::open(&dir).unwrap();
            j.append(&[&msg(1), &msg(2)]).unwrap();
        }
        let path = dir.join(FILE);
        let mut data = std::fs::read(&path).unwrap();
        let last = data.len() - 2;
        data[last] ^= 0x40;
        std::fs::write(&path, &data).unwrap();
        let (_, entries, report) = Journal::open(&dir).unwrap();
        assert_eq!(entries, vec![msg(1)]);
        assert!(report.torn_bytes > 0);
    }

    /// The offset of record `n` (0-based) in a journal file.
    fn record_offset(data: &[u8], n: usize) -> usize {
        let mut at = MAGIC.len();
        for _ in 0..n {
            at += 8 + u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        }
        at
    }

    #[test]
    fn a_flipped_byte_in_the_middle_is_corruption_and_the_records_after_it_stand() {
        let dir = temp("corrupt");
        {
            let (mut j, _, _) = Journal::open(&dir).unwrap();
            let all: Vec<Entry> = (1..=6).map(msg).collect();
            j.append(&all.iter().collect::<Vec<_>>()).unwrap();
            j.sync().unwrap();
        }
        let path = dir.join(FILE);
        let original = std::fs::read(&path).unwrap();
        for (what, byte) in [("payload", 30), ("length", 1), ("checksum", 5)] {
            let mut data = original.clone();
            let third = record_offset(&data, 2);
            data[third + byte] ^= 0x10;
            std::fs::write(&path, &data).unwrap();
            let (_, entries, report) = Journal::open(&dir).unwrap();
            assert_eq!(
                entries,
                vec![msg(1), msg(2), msg(4), msg(5), msg(6)],
                "flipped in the {what}"
            );
            assert_eq!(report.torn_bytes, 0, "{what}");
            assert_eq!(
                report.damage,
                vec![Damage {
                    offset: third as u64,
                    bytes: (record_offset(&original, 3) - third) as u64,
                    after_records: 2,
                }],
                "{what}"
            );
            assert!(report.damage[0].max_messages() >= 1);
            let copy = report.damaged_copy.as_ref().expect("a copy is kept");
            assert_eq!(std::fs::read(copy).unwrap(), data, "{what}");
        }
    }

    #[test]
    fn damage_and_then_a_torn_tail_are_both_told() {
        let dir = temp("corrupt-torn");
        {
            let (mut j, _, _) = Journal::open(&dir).unwrap();
            j.append(&[&msg(1), &msg(2), &msg(3)]).unwrap();
        }
        let path = dir.join(FILE);
        let mut data = std::fs::read(&path).unwrap();
        let first = record_offset(&data, 0);
        data[first + 40] ^= 1;
        let mut half = Vec::new();
        msg(4).encode(&mut half);
        data.extend_from_slice(&half[..half.len() - 3]);
        std::fs::write(&path, &data).unwrap();
        let (_, entries, report) = Journal::open(&dir).unwrap();
        assert_eq!(entries, vec![msg(2), msg(3)]);
        assert_eq!(report.damage.len(), 1);
        assert_eq!(report.damage[0].after_records, 0);
        assert_eq!(report.torn_bytes, (half.len() - 3) as u64);
        // The torn tail is cut, the damage is not (the outbox compacts).
        let (_, _, again) = Journal::open(&dir).unwrap();
        assert_eq!(again.torn_bytes, 0);
        assert!(again.corrupt());
    }

    #[test]
    fn zeros_at_the_end_are_a_torn_tail_not_corruption() {
        let dir = temp("zeros");
        {
            let (mut j, _, _) = Journal::open(&dir).unwrap();
            j.append(&[&msg(1)]).unwrap();
        }
        let path = dir.join(FILE);
        let mut data = std::fs::read(&path).unwrap();
        data.extend_from_slice(&[0; 4096]);
        std::fs::write(&path, &data).unwrap();
        let (_, entries, report) = Journal::open(&dir).unwrap();
        assert_eq!(entries, vec![msg(1)]);
        assert_eq!(report.torn_bytes, 4096);
        assert!(!report.corrupt());
        assert!(!dir.join(DAMAGED_COPY).exists());
    }

    #[test]
    fn compaction_keeps_what_is_given() {
        let dir = temp("compact");
        let (mut j, _, _) = Journal::open(&dir).unwrap();
        j.append(&[&msg(1), &msg(2), &Entry::Delivered(1)]).unwrap();
        let counters = Entry::Counters {
            next_id: 3,
            next_stream: [3, 1],
        };
        j.rewrite(&[counters.clone(), msg(2)]).unwrap();
        j.append(&[&Entry::Delivered(2)]).unwrap();
        drop(j);
        let (_, entries, _) = Journal::open(&dir).unwrap();
        assert_eq!(entries, vec![counters, msg(2), Entry::Delivered(2)]);
    }

    #[test]
    fn only_an_unclean_stop_in_an_earlier_boot_may_have_lost_appends() {
        let dir = temp("run");
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(PreviousRun::read(&dir).unwrap(), PreviousRun::Unknown);
        assert!(!PreviousRun::read(&dir).unwrap().may_have_lost("b1"));
        PreviousRun::mark_running(&dir, "b1").unwrap();
        let prev = PreviousRun::read(&dir).unwrap();
        assert!(!prev.may_have_lost("b1"), "a crash or SIGKILL in this boot");
        assert!(prev.may_have_lost("b2"), "a power cut or a system crash");
        PreviousRun::mark_stopped(&dir, "b1").unwrap();
        assert!(!PreviousRun::read(&dir).unwrap().may_have_lost("b2"));
        // A boot id the system does not give, or a damaged file.
        PreviousRun::mark_running(&dir, "").unwrap();
        assert!(PreviousRun::read(&dir).unwrap().may_have_lost(""));
        std::fs::write(dir.join(RUN_FILE), "runn").unwrap();
        assert!(PreviousRun::read(&dir).unwrap().may_have_lost("b1"));
    }

    #[test]
    fn a_sync_job_covers_what_was_appended_before_it() {
        let dir = temp("sync-job");
        let (mut j, _, _) = Journal::open(&dir).unwrap();
        j.append(&[&msg(1)]).unwrap();
        let job = j.sync_job(7);
        let (mark, r) = std::thread::spawn(move || job.run()).join().unwrap();
        assert_eq!(mark, 7);
        r.unwrap();
        drop(j);
        assert_eq!(Journal::open(&dir).unwrap().1, vec![msg(1)]);
    }

    #[test]
    fn foreign_files_are_refused() {
        let dir = temp("foreign");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(FILE), b"hello world, not a journal").unwrap();
        assert!(matches!(
            Journal::open(&dir),
            Err(JournalError::NotAJournal(_))
        ));
    }

    #[test]
    fn sequence_numbers_never_go_back_across_restarts() {
        let dir = temp("seq");
        let (mut a, start) = SeqFile::open(&dir, 0, &no_marks()).unwrap();
        assert_eq!(start, SeqStart::Fresh);
        assert_eq!(a.publish(1).unwrap(), 1);
        let big = a.publish(SeqFile::BLOCK + 5).unwrap();
        let epoch = a.epoch().to_owned();
        drop(a);
        let (mut b, start) = SeqFile::open(&dir, 0, &no_marks()).unwrap();
        assert_eq!(start, SeqStart::Continued);
        assert_eq!(b.epoch(), epoch, "the same stream goes on");
        assert!(b.publish(1).unwrap() > big);
    }

    #[test]
    fn an_untrustworthy_seq_file_starts_a_new_epoch_never_a_silent_zero() {
        let dir = temp("seq-bad");
        let (a, _) = SeqFile::open(&dir, 0, &no_marks()).unwrap();
        let first = a.epoch().to_owned();
        drop(a);
        // A byte flip in the seq file.
        std::fs::write(dir.join("seq"), "2O00000\n").unwrap();
        let (b, start) = SeqFile::open(&dir, 0, &no_marks()).unwrap();
        assert!(
            matches!(&start, SeqStart::Untrusted(why) if why.contains("does not hold a number")),
            "{start:?}"
        );
        assert_ne!(b.epoch(), first);
        let second = b.epoch().to_owned();
        drop(b);
        // The seq file deleted, the epoch kept.
        std::fs::remove_file(dir.join("seq")).unwrap();
        let (c, start) = SeqFile::open(&dir, 7, &no_marks()).unwrap();
        assert!(
            matches!(&start, SeqStart::Untrusted(why) if why.contains("missing")),
            "{start:?}"
        );
        assert_ne!(c.epoch(), second);
        assert_eq!(c.base(), 7, "never below what the journal still holds");
        // A new directory altogether.
        let (d, start) = SeqFile::open(&temp("seq-new"), 0, &no_marks()).unwrap();
        assert_eq!(start, SeqStart::Fresh);
        assert_ne!(d.epoch(), c.epoch());
    }

    #[test]
    fn an_epoch_noted_as_untrusted_is_not_continued() {
        let dir = temp("seq-marked");
        let marks_dir = temp("seq-marks");
        std::fs::create_dir_all(&marks_dir).unwrap();
        let marks = EpochMarks::at(&marks_dir);
        let (a, _) = SeqFile::open(&dir, 0, &marks).unwrap();
        let first = a.epoch().to_owned();
        drop(a);
        // Another epoch's note changes nothing.
        marks.distrust("0123456789abcdef").unwrap();
        let (b, start) = SeqFile::open(&dir, 0, &marks).unwrap();
        assert_eq!((start, b.epoch()), (SeqStart::Continued, first.as_str()));
        drop(b);
        // The run's epoch noted (its journal failed on a read-only disk).
        let note = marks.distrust(&first).unwrap();
        let (c, start) = SeqFile::open(&dir, 0, &marks).unwrap();
        assert!(
            matches!(&start, SeqStart::Untrusted(why) if why.contains("read-only")),
            "{start:?}"
        );
        assert_ne!(c.epoch(), first);
        assert!(!note.exists(), "the note is spent once the epoch is left");
        let second = c.epoch().to_owned();
        drop(c);
        let (d, start) = SeqFile::open(&dir, 0, &marks).unwrap();
        assert_eq!((start, d.epoch()), (SeqStart::Continued, second.as_str()));
        // Only what vigil writes names a note.
        assert!(marks.distrust("../../etc/x").is_err());
    }
}
