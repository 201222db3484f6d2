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
//! caller logs why) and [`Backlog::reattach`] writes it out once the
//! directory works again. Blocking file IO: the sender thread only.

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
    /// Whether the file's content is already in `held` (it was read at
    /// start-up, or written since): else reattaching must read it first.
    file_read: bool,
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
            file_read: false,
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
        b.file_read = true;
        let restored = b.held.len();
        Ok((b, Opened { restored, report }))
    }

    /// Makes a backlog that runs in memory durable again in `dir` (the
    /// state directory works again): the messages the file holds and this
    /// backlog never read come first (they are older), then the ones held
    /// here, all written out and synced. Returns how many came from the
    /// file.
    pub fn reattach(&mut self, dir: &Path) -> Result<usize, BacklogError> {
        let (mut journal, entries, _) = Journal::open_named(dir, FILE)?;
        let mut from_file = 0;
        if !self.file_read {
            let mut older = Backlog::memory(usize::MAX);
            older.restore(entries);
            from_file = older.held.len();
            self.next_id = self.next_id.max(older.next_id);
            self.next_number = self.next_number.max(older.next_number);
            // Ids are the backlog's own: renumber the ones held here above
            // the file's so that none collide.
            for p in &mut self.held {
                p.id = self.next_id;
                self.next_id += 1;
            }
            let mine = std::mem::take(&mut self.held);
            self.held = older.held;
            // Beyond `max` now: the next push drops the oldest and says so.
            self.held.extend(mine);
        }
        journal.rewrite(&self.snapshot())?;
        self.journal = Some(journal);
        self.file_read = true;
        self.written = 0;
        Ok(from_file)
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

    #[test]
    fn reattaching_puts_what_the_file_held_first_and_keeps_everything() {
        let d = dir("reattach");
        // A previous run left two messages in the file.
        let (mut old, _) = Backlog::open(&d, 10).unwrap();
        old.push(1, msg(1)).unwrap();
        old.push(2, msg(2)).unwrap();
        drop(old);
        // This run could not open it: two more in memory.
        let mut b = Backlog::memory(10);
        b.push(3, msg(3)).unwrap();
        b.push(4, msg(4)).unwrap();
        assert!(!b.durable());
        assert_eq!(b.reattach(&d).unwrap(), 2);
        assert!(b.durable());
        assert_eq!(numbers(&b), [1, 2, 3, 4]);
        b.delivered().unwrap();
        drop(b);
        // On disk as held, and the ids did not collide (one delivery
        // removed exactly one message).
        let left: Vec<u64> = Backlog::read(&d)
            .unwrap()
            .iter()
            .map(|p| p.number)
            .collect();
        assert_eq!(left, [2, 3, 4]);
        // A backlog that read its file (it failed later) writes only what
        // it holds: the file's stale content is not brought back.
        let (mut c, _) = Backlog::open(&d, 10).unwrap();
        c.delivered().unwrap();
        c.journal = None;
        assert_eq!(c.reattach(&d).unwrap(), 0);
        assert_eq!(numbers(&c), [3, 4]);
    }
}
