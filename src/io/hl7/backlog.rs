//! The live HL7 sink's backlog: the ORU messages not yet acknowledged by
//! the receiver, in order, kept in `hl7.journal` in the bed's state
//! directory (`mqtt.state_dir`/`{site}/{bed}`, as the outbox's) so that a restart while the receiver is unreachable
//! loses none of them.
//!
//! The file is the MQTT outbox's journal format ([`crate::mqtt::journal`]:
//! checksummed records, a torn tail cut off, damage skipped and reported,
//! compaction by an atomic rewrite), its records used as follows:
//!
//! - `message`: one HL7 message; `id` the backlog's own consecutive number,
//!   `stream_seq` the message's control number (the `<n>` of MSH-10
//!   `<session>.<n>`), `topic` the whole MSH-10, `payload` the message;
//!   class, stream and retain are unused (`session`, none, no);
//! - `delivered`: acknowledged (`AA`/`CA`) by the receiver;
//! - `evicted`: dropped, refused by the receiver (`AE`/`AR`) or the oldest
//!   one when the backlog was full;
//! - `counters`: written at each compaction, the next backlog id and the
//!   next control number (`next_stream[0]`), so a restarted sink numbers
//!   on above every message it ever queued.
//!
//! Each change is synced before the sender goes on: a message is on disk
//! before it is first sent, and an acknowledged one is marked before the
//! next is sent, so a clean restart sends nothing twice (a crash between
//! an ACK and its mark sends that one message again, with the same MSH-10
//! for the receiver to recognise).
//!
//! Without a usable state directory the backlog works in memory only (the
//! caller logs why). Blocking file IO: the sender thread only.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crate::mqtt::journal::{
    Class, Entry, Journal, JournalError, LoadReport, StoredMessage, Stream,
};

/// The backlog's file in the state directory.
pub const FILE: &str = "hl7.journal";
/// Compact when this many records beyond the live messages have piled up.
const COMPACT_AFTER: usize = 256;

/// Errors of the backlog file.
#[derive(Debug, thiserror::Error)]
pub enum BacklogError {
    /// The journal could not be opened, read or written.
    #[error("HL7 backlog: {0}")]
    Journal(JournalError),
    /// The file is not a journal.
    #[error("{0} is not a vigil HL7 backlog (wrong magic); move it away or point mqtt.state_dir elsewhere")]
    NotABacklog(PathBuf),
}

impl From<JournalError> for BacklogError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::NotAJournal(p) => BacklogError::NotABacklog(p),
            e => BacklogError::Journal(e),
        }
    }
}

/// One undelivered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The backlog's number.
    id: u64,
    /// The control number (MSH-10's `<n>`).
    pub number: u64,
    /// The message.
    pub message: String,
}

/// What opening the backlog found.
#[derive(Debug, Default)]
pub struct Opened {
    /// Messages left undelivered by the previous run.
    pub restored: usize,
    /// What the journal reader found (torn tail, damage).
    pub report: LoadReport,
}

/// The undelivered messages, oldest first, at most `max`.
pub struct Backlog {
    journal: Option<Journal>,
    held: VecDeque<Pending>,
    next_id: u64,
    next_number: u64,
    max: usize,
    /// Records written since the last compaction.
    written: usize,
}

impl Backlog {
    /// In memory only (no state directory).
    pub fn memory(max: usize) -> Backlog {
        Backlog {
            journal: None,
            held: VecDeque::new(),
            next_id: 1,
            next_number: 0,
            max: max.max(1),
            written: 0,
        }
    }

    /// Opens `hl7.journal` in `dir`, restores what it holds and compacts it.
    pub fn open(dir: &Path, max: usize) -> Result<(Backlog, Opened), BacklogError> {
        let (mut journal, entries, report) = Journal::open_named(dir, FILE)?;
        let mut b = Backlog::memory(max);
        b.restore(entries);
        while b.held.len() > b.max {
            b.held.pop_front();
        }
        journal.rewrite(&b.snapshot())?;
        b.journal = Some(journal);
        let restored = b.held.len();
        Ok((b, Opened { restored, report }))
    }

    /// The messages a backlog file in `dir` holds, without writing anything.
    pub fn read(dir: &Path) -> Result<Vec<Pending>, BacklogError> {
        let (entries, _) = Journal::read_named(dir, FILE)?;
        let mut b = Backlog::memory(usize::MAX);
        b.restore(entries);
        Ok(b.held.into())
    }

    fn restore(&mut self, entries: Vec<Entry>) {
        for e in entries {
            match e {
                Entry::Message(m) => {
                    self.next_id = self.next_id.max(m.id + 1);
                    self.next_number = self.next_number.max(m.stream_seq + 1);
                    self.held.push_back(Pending {
                        id: m.id,
                        number: m.stream_seq,
                        message: String::from_utf8_lossy(&m.payload).into_owned(),
                    });
                }
                Entry::Delivered(id) | Entry::Evicted(id) => self.held.retain(|p| p.id != id),
                Entry::Counters {
                    next_id,
                    next_stream,
                } => {
                    self.next_id = self.next_id.max(next_id);
                    self.next_number = self.next_number.max(next_stream[0]);
                }
            }
        }
    }

    /// The journal's whole content: counters, then the held messages.
    fn snapshot(&self) -> Vec<Entry> {
        let mut out = vec![Entry::Counters {
            next_id: self.next_id,
            next_stream: [self.next_number, 0],
        }];
        out.extend(self.held.iter().map(|p| Entry::Message(stored(p))));
        out
    }

    /// The first control number a new message may take: above every
    /// message this backlog ever held.
    pub fn next_number(&self) -> u64 {
        self.next_number
    }

    /// Undelivered messages.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether everything was delivered.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Whether the backlog is kept on disk.
    pub fn durable(&self) -> bool {
        self.journal.is_some()
    }

    /// The oldest undelivered message.
    pub fn front(&self) -> Option<&Pending> {
        self.held.front()
    }

    /// Queues a message numbered `number` (written and synced before this
    /// returns); when the backlog is full the oldest messages are dropped
    /// to make room, and their count is returned.
    pub fn push(&mut self, number: u64, message: String) -> Result<usize, BacklogError> {
        let mut dropped = Vec::new();
        while self.held.len() >= self.max {
            if let Some(p) = self.held.pop_front() {
                dropped.push(p.id);
            }
        }
        let p = Pending {
            id: self.next_id,
            number,
            message,
        };
        self.next_id += 1;
        self.next_number = self.next_number.max(number + 1);
        let mut entries: Vec<Entry> = dropped.iter().map(|&id| Entry::Evicted(id)).collect();
        entries.push(Entry::Message(stored(&p)));
        self.held.push_back(p);
        self.write(&entries)?;
        Ok(dropped.len())
    }

    /// The oldest message was acknowledged.
    pub fn delivered(&mut self) -> Result<(), BacklogError> {
        match self.held.pop_front() {
            Some(p) => self.write(&[Entry::Delivered(p.id)]),
            None => Ok(()),
        }
    }

    /// The oldest message is given up (refused by the receiver).
    pub fn drop_front(&mut self) -> Result<(), BacklogError> {
        match self.held.pop_front() {
            Some(p) => self.write(&[Entry::Evicted(p.id)]),
            None => Ok(()),
        }
    }

    /// Appends and syncs; compacts when the journal has grown. On an error
    /// the journal is dropped and the backlog goes on in memory.
    fn write(&mut self, entries: &[Entry]) -> Result<(), BacklogError> {
        if self.journal.is_none() {
            return Ok(());
        }
        self.written += entries.len();
        let compact = (self.written > self.held.len() + COMPACT_AFTER).then(|| self.snapshot());
        let Some(j) = &mut self.journal else {
            return Ok(());
        };
        let result = match compact {
            Some(all) => {
                self.written = 0;
                j.rewrite(&all)
            }
            None => j
                .append(&entries.iter().collect::<Vec<_>>())
                .and_then(|()| j.sync()),
        };
        result.map_err(|e| {
            self.journal = None;
            BacklogError::from(e)
        })
    }
}

fn stored(p: &Pending) -> StoredMessage {
    StoredMessage {
        id: p.id,
        class: Class::Session,
        stream: Stream::None,
        stream_seq: p.number,
        retain: false,
        topic: crate::record::mllp::control_id(&p.message)
            .unwrap_or("")
            .to_owned(),
        payload: p.message.as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("vigil-hl7-backlog-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn msg(n: u64) -> String {
        format!(
            "MSH|^~\\&|vigil|north|||20260301093000||ORU^R01^ORU_R01|KT-1.{n}|P|2.6\rPID|||KT-1\r"
        )
    }

    fn numbers(b: &Backlog) -> Vec<u64> {
        b.held.iter().map(|p| p.number).collect()
    }

    #[test]
    fn undelivered_messages_survive_a_reopen_in_order_and_delivered_ones_do_not() {
        let d = dir("reopen");
        let (mut b, opened) = Backlog::open(&d, 10).unwrap();
        assert_eq!(opened.restored, 0);
        for n in 100..105 {
            assert_eq!(b.push(n, msg(n)).unwrap(), 0);
        }
        b.delivered().unwrap();
        b.drop_front().unwrap();
        drop(b);

        let (mut b, opened) = Backlog::open(&d, 10).unwrap();
        assert_eq!(opened.restored, 3);
        assert_eq!(numbers(&b), [102, 103, 104]);
        assert_eq!(b.front().unwrap().message, msg(102));
        assert_eq!(b.next_number(), 105);
        b.delivered().unwrap();
        drop(b);
        let held: Vec<u64> = Backlog::read(&d)
            .unwrap()
            .iter()
            .map(|p| p.number)
            .collect();
        assert_eq!(held, [103, 104]);
        // The outbox's journal is not touched.
        assert!(!d.join("outbox.journal").exists());
    }

    #[test]
    fn a_full_backlog_drops_the_oldest_and_says_how_many() {
        let d = dir("full");
        let (mut b, _) = Backlog::open(&d, 3).unwrap();
        for n in 1..=3 {
            assert_eq!(b.push(n, msg(n)).unwrap(), 0);
        }
        assert_eq!(b.push(4, msg(4)).unwrap(), 1);
        assert_eq!(numbers(&b), [2, 3, 4]);
        drop(b);
        let (b, opened) = Backlog::open(&d, 3).unwrap();
        assert_eq!(opened.restored, 3);
        assert_eq!(numbers(&b), [2, 3, 4]);
    }

    #[test]
    fn the_control_numbers_carry_over_compaction_even_when_everything_was_delivered() {
        let d = dir("compact");
        let (mut b, _) = Backlog::open(&d, 10).unwrap();
        // Enough records to compact several times on the way.
        for n in 0..(3 * COMPACT_AFTER as u64) {
            b.push(n, msg(n)).unwrap();
            b.delivered().unwrap();
        }
        assert!(b.is_empty());
        assert!(b.durable());
        drop(b);
        let (b, opened) = Backlog::open(&d, 10).unwrap();
        assert_eq!(opened.restored, 0);
        assert_eq!(b.next_number(), 3 * COMPACT_AFTER as u64);
        assert!(!d.join("hl7.journal.tmp").exists());
    }

    #[test]
    fn a_file_that_is_not_a_journal_is_named() {
        let d = dir("foreign");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(FILE), b"not a journal at all").unwrap();
        let e = Backlog::open(&d, 10).err().unwrap().to_string();
        assert!(e.contains("hl7.journal is not a vigil HL7 backlog"), "{e}");
        assert!(e.contains("mqtt.state_dir"), "{e}");
    }
}
