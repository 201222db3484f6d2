//! The durable outbox: every alarm and session message waits here, written
//! to the [`journal`](super::journal), until the broker's PUBACK says it
//! arrived AND a sync of the journal covers it. After a reconnect or a
//! restart every message still here is published again, in order,
//! unchanged (same sequence numbers, same timestamps); displays drop the
//! duplicates by `seq`.
//!
//! # Group commit
//!
//! [`Outbox::push`] appends with a plain write (the page cache: it survives
//! the daemon's crash or SIGKILL), so the message can be published at once.
//! [`Outbox::start_sync`] gives a [`SyncJob`] covering every message
//! appended so far, for the caller to run off its thread; while one runs,
//! new messages wait for the next one (a group commit).
//! [`Outbox::handle_synced`] takes its result. A PUBACK that comes before
//! its message's sync only marks the message acknowledged (it is not
//! published again); it leaves the outbox, with a delivered mark in the
//! journal, when the sync is in. At most [`UNSYNCED_MAX`] messages wait for
//! a sync: the next push syncs on the caller's thread first.
//!
//! A power cut (or a system crash) can lose what no sync covered: at most
//! [`UNSYNCED_MAX`] messages, some perhaps already published. A start that
//! finds the previous run ended that way ([`PreviousRun::may_have_lost`])
//! numbers both streams [`UNSYNCED_MAX`] above what the journal holds, so a
//! `stream_seq` is never used twice and displays see the gap.
//!
//! # When the outbox is full
//!
//! `mqtt.outbox_max` bounds the number of undelivered messages. When a new
//! message would exceed it, the OLDEST message of the LOWEST rank is evicted:
//! low-priority alarm events first, then medium, then session events. A
//! high-priority alarm event is never evicted while anything else can be;
//! only when the outbox holds twice `outbox_max` high-priority events is the
//! oldest of them evicted. Oldest first, because the retained
//! `alarms/active` snapshot republished on every connect already tells a
//! display what is present now. No eviction is silent: each is journaled,
//! logged, counted in the status heartbeat (`outbox.evicted`), leaves a gap
//! in `stream_seq` that displays can see, and raises the queue-overflow
//! technical alarm locally (the caller does that from [`Pushed::evicted`]).
//!
//! Without a journal (the state directory failed) the outbox keeps working
//! in memory and the caller raises `system.journal_failure`; once the
//! directory works again, [`Outbox::reattach`] writes everything held into a
//! new journal.
//!
//! Depends on [`super::journal`] only; blocking file IO.

use std::collections::BTreeMap;
use std::path::Path;

use super::journal::{
    boot_id, Class, Entry, Journal, JournalError, LoadReport, PreviousRun, StoredMessage, Stream,
    SyncJob, MIN_MESSAGE_RECORD,
};

/// Errors of the outbox are the journal's.
pub type OutboxError = JournalError;

/// Compact when the journal has grown this much beyond its live content.
const COMPACT_SLACK: u64 = 1 << 20;

/// Messages appended and not yet covered by a sync, at most: what a power
/// cut can lose, and how far a start after one numbers above the journal.
pub const UNSYNCED_MAX: u64 = 256;

struct Held {
    msg: StoredMessage,
    durable: bool,
    in_flight: bool,
    /// The message's append number (see [`Outbox::synced`]); 0 when it
    /// waits for no sync (not journaled).
    written: u64,
    /// The broker acknowledged it; it leaves when a sync covers it.
    acked: bool,
}

/// The result of [`Outbox::push`].
#[derive(Debug, Default)]
pub struct Pushed {
    /// The new message's id.
    pub id: u64,
    /// Messages evicted to make room (class, stream number).
    pub evicted: Vec<(Class, u64)>,
}

/// Undelivered messages, in order.
pub struct Outbox {
    journal: Option<Journal>,
    held: BTreeMap<u64, Held>,
    durable_count: usize,
    next_id: u64,
    next_stream: [u64; 2],
    max: usize,
    cursor: u64,
    evicted_total: u64,
    compacted_len: u64,
    /// Messages appended to the journal so far (this run).
    written: u64,
    /// Messages 1..=synced (by append number) are covered by a sync.
    synced: u64,
    /// A [`SyncJob`] is running (its mark: `written` when it began).
    sync_running: bool,
    /// Replacing or losing the journal file makes a running job's result
    /// meaningless: its mark is below this.
    sync_floor: u64,
    /// Acknowledged messages waiting for their sync: (written, id).
    acked: Vec<(u64, u64)>,
    /// This boot's id, for the `run` file.
    boot: String,
}

impl Outbox {
    /// Opens the journal in `dir` (or runs in memory when `dir` is `None`)
    /// and loads every undelivered message.
    pub fn open(dir: Option<&Path>, max: usize) -> Result<(Outbox, LoadReport), OutboxError> {
        Outbox::open_at_boot(dir, max, &boot_id())
    }

    /// [`Outbox::open`] in the boot `boot` (tests play reboots).
    fn open_at_boot(
        dir: Option<&Path>,
        max: usize,
        boot: &str,
    ) -> Result<(Outbox, LoadReport), OutboxError> {
        let mut ob = Outbox::memory(max);
        ob.boot = boot.to_owned();
        let Some(dir) = dir else {
            return Ok((ob, LoadReport::default()));
        };
        let (mut journal, entries, mut report) = Journal::open(dir)?;
        // What the previous run appended may still be only in the page
        // cache (it was killed): durable before anything counts on it.
        journal.sync()?;
        report.power_cut = PreviousRun::read(dir)?.may_have_lost(boot);
        ob.load(entries, &report);
        ob.compacted_len = journal.len();
        ob.journal = Some(journal);
        if report.corrupt() || report.power_cut {
            // A clean journal again, with the raised counters.
            ob.compact()?;
        }
        PreviousRun::mark_running(dir, boot)?;
        Ok((ob, report))
    }

    /// The topic of the held message `id`, if it is held.
    pub fn topic_of(&self, id: u64) -> Option<String> {
        self.held.get(&id).map(|h| h.msg.topic.clone())
    }

    /// An empty outbox without a journal.
    pub fn memory(max: usize) -> Outbox {
        Outbox {
            journal: None,
            held: BTreeMap::new(),
            durable_count: 0,
            next_id: 1,
            next_stream: [1, 1],
            max: max.max(1),
            cursor: 0,
            evicted_total: 0,
            compacted_len: 0,
            written: 0,
            synced: 0,
            sync_running: false,
            sync_floor: 0,
            acked: Vec::new(),
            boot: boot_id(),
        }
    }

    /// Loads the journal in `dir` without writing (the state directory is
    /// read-only or full at start-up): the outbox runs in memory with every
    /// undelivered message; [`Outbox::reattach`] writes it out later.
    pub fn open_read_only(dir: &Path, max: usize) -> Result<(Outbox, LoadReport), OutboxError> {
        let mut ob = Outbox::memory(max);
        let (entries, mut report) = Journal::read(dir)?;
        report.power_cut = PreviousRun::read(dir)
            .map(|p| p.may_have_lost(&ob.boot))
            .unwrap_or(true);
        ob.load(entries, &report);
        Ok((ob, report))
    }

    /// Takes the journal's records into the outbox.
    fn load(&mut self, entries: Vec<Entry>, report: &LoadReport) {
        let ob = self;
        // Per stream: how many records were read when its last message was.
        let mut last_message = [None::<usize>; 2];
        for (i, e) in entries.into_iter().enumerate() {
            if let Entry::Message(m) = &e {
                if let Some(s) = stream_index(m.stream) {
                    last_message[s] = Some(i + 1);
                }
            }
            match e {
                Entry::Message(m) => {
                    ob.next_id = ob.next_id.max(m.id + 1);
                    if let Some(i) = stream_index(m.stream) {
                        ob.next_stream[i] = ob.next_stream[i].max(m.stream_seq + 1);
                    }
                    ob.insert(m, true);
                }
                Entry::Delivered(id) | Entry::Evicted(id) => {
                    ob.remove(id);
                }
                Entry::Counters {
                    next_id,
                    next_stream,
                } => {
                    ob.next_id = ob.next_id.max(next_id);
                    ob.next_stream[0] = ob.next_stream[0].max(next_stream[0]);
                    ob.next_stream[1] = ob.next_stream[1].max(next_stream[1]);
                }
            }
        }
        // Damage after a stream's last readable message may have held newer
        // messages of that stream (or the counters): number above anything
        // it can have held, so no `stream_seq` is ever used twice.
        for (s, last) in last_message.iter().enumerate() {
            let skip: u64 = report
                .damage
                .iter()
                .filter(|d| last.is_none_or(|n| d.after_records >= n))
                .map(|d| d.max_messages())
                .sum();
            // A torn tail may be damage to the last record too (the two
            // look alike), and a crash mid-write lost what it was writing:
            // skip its numbers as well, a gap where something was lost.
            ob.next_stream[s] += skip + report.torn_bytes.div_ceil(MIN_MESSAGE_RECORD);
            // A power cut may have taken the last group-commit window with
            // it, published or not: number above anything it can have held.
            if report.power_cut {
                ob.next_stream[s] += UNSYNCED_MAX;
            }
        }
    }

    /// After a storage failure: writes everything the outbox holds into a
    /// new journal in `dir` (synced) and journals again from now on.
    /// `unread`: the journal there was never read (it is set aside, not
    /// replaced).
    pub fn reattach(&mut self, dir: &Path, unread: bool) -> Result<(), OutboxError> {
        let journal = Journal::create(dir, &self.live_entries(), unread)?;
        PreviousRun::mark_running(dir, &self.boot)?;
        self.compacted_len = journal.len();
        self.journal = Some(journal);
        self.all_synced()
    }

    /// The counters (twice: one damaged record must not take the numbers
    /// with it) and every undelivered durable message.
    fn live_entries(&self) -> Vec<Entry> {
        let counters = Entry::Counters {
            next_id: self.next_id,
            next_stream: self.next_stream,
        };
        let mut entries = vec![counters.clone(), counters];
        entries.extend(
            self.held
                .values()
                .filter(|h| h.durable)
                .map(|h| Entry::Message(h.msg.clone())),
        );
        entries
    }

    fn insert(&mut self, msg: StoredMessage, durable: bool) {
        if durable {
            self.durable_count += 1;
        }
        self.held.insert(
            msg.id,
            Held {
                msg,
                durable,
                in_flight: false,
                written: 0,
                acked: false,
            },
        );
    }

    fn remove(&mut self, id: u64) -> Option<Held> {
        let h = self.held.remove(&id)?;
        if h.durable {
            self.durable_count -= 1;
        }
        Some(h)
    }

    /// The first number above every payload `seq` held (0 when empty): a
    /// new numbering must start at or above it so replays stay in order.
    pub fn seq_floor(&self) -> u64 {
        self.held
            .values()
            .filter_map(|h| payload_field(&h.msg.payload, "seq")?.as_u64())
            .max()
            .map_or(0, |n| n + 1)
    }

    /// Rewrites the `epoch` of every held message (a new epoch: replays of
    /// old messages must not switch displays back to the old stream) and
    /// persists the change with a compaction.
    pub fn restamp(&mut self, epoch: &str) -> Result<(), OutboxError> {
        for h in self.held.values_mut() {
            if let Ok(serde_json::Value::Object(mut m)) =
                serde_json::from_slice::<serde_json::Value>(&h.msg.payload)
            {
                m.insert("epoch".into(), serde_json::Value::from(epoch));
                h.msg.payload = serde_json::to_vec(&m).unwrap_or_default();
            }
        }
        self.compact()
    }

    /// Whether a journal backs the outbox.
    pub fn is_durable(&self) -> bool {
        self.journal.is_some()
    }

    /// Drops the journal after a storage failure: the outbox goes on in
    /// memory (acknowledged messages waiting for a sync leave it).
    pub fn lose_journal(&mut self) {
        self.journal = None;
        let _ = self.all_synced();
    }

    /// Adds a message. `render` receives the message's stream number and
    /// returns the payload. Durable messages are appended to the journal
    /// (written, not synced) and may be published at once; see
    /// [`Outbox::start_sync`].
    pub fn push(
        &mut self,
        class: Class,
        stream: Stream,
        retain: bool,
        topic: String,
        render: impl FnOnce(u64) -> Vec<u8>,
    ) -> Result<Pushed, OutboxError> {
        let stream_seq = match stream_index(stream) {
            Some(i) => {
                let n = self.next_stream[i];
                self.next_stream[i] += 1;
                n
            }
            None => 0,
        };
        let id = self.next_id;
        self.next_id += 1;
        let durable = class != Class::Result;
        let msg = StoredMessage {
            id,
            class,
            stream,
            stream_seq,
            retain,
            topic,
            payload: render(stream_seq),
        };
        let mut result = Ok(());
        let mut written = 0;
        if durable && self.journal.is_some() {
            if self.written - self.synced >= UNSYNCED_MAX {
                // The disk is far behind: bound what a power cut can take.
                result = self.sync();
            }
            if let Some(j) = &mut self.journal {
                let entry = Entry::Message(msg.clone());
                let r = j.append(&[&entry]);
                if result.is_ok() {
                    result = r;
                }
                self.written += 1;
                written = self.written;
            }
        }
        self.insert(msg, durable);
        if let Some(h) = self.held.get_mut(&id) {
            h.written = written;
        }
        let mut pushed = Pushed {
            id,
            evicted: Vec::new(),
        };
        while let Some(victim) = self.victim() {
            if let Some(h) = self.remove(victim) {
                self.evicted_total += 1;
                pushed.evicted.push((h.msg.class, h.msg.stream_seq));
                if let Some(j) = &mut self.journal {
                    let r = j.append(&[&Entry::Evicted(victim)]);
                    if result.is_ok() {
                        result = r;
                    }
                }
            }
        }
        result.map(|_| pushed)
    }

    /// The message to evict, if the outbox is over its limit.
    fn victim(&self) -> Option<u64> {
        if self.durable_count <= self.max {
            return None;
        }
        let lowest = self
            .held
            .iter()
            .filter(|(_, h)| h.durable && !h.acked && h.msg.class != Class::High)
            .min_by_key(|(id, h)| (h.msg.class, **id))
            .map(|(id, _)| *id);
        if lowest.is_some() {
            return lowest;
        }
        if self.durable_count > 2 * self.max {
            return self
                .held
                .iter()
                .find(|(_, h)| h.durable && !h.acked)
                .map(|(id, _)| *id);
        }
        None
    }

    /// Makes every journaled message durable on this thread (shutdown, and
    /// a disk far behind). Cheap when nothing waits for a sync.
    pub fn sync(&mut self) -> Result<(), OutboxError> {
        if self.synced == self.written {
            return Ok(());
        }
        if let Some(j) = &mut self.journal {
            j.sync()?;
        }
        self.all_synced()
    }

    /// A sync covering every message appended so far, to run off the
    /// caller's thread and hand to [`Outbox::handle_synced`]; `None` when
    /// nothing waits for one or one is running already (its result comes
    /// first; the next covers what was appended meanwhile).
    pub fn start_sync(&mut self) -> Option<SyncJob> {
        if self.sync_running || self.synced == self.written {
            return None;
        }
        let job = self.journal.as_ref()?.sync_job(self.written);
        self.sync_running = true;
        Some(job)
    }

    /// The result of a [`SyncJob`]: the messages it covers are durable, and
    /// those of them already acknowledged leave the outbox.
    pub fn handle_synced(
        &mut self,
        (mark, result): (u64, Result<(), OutboxError>),
    ) -> Result<(), OutboxError> {
        self.sync_running = false;
        if mark < self.sync_floor {
            // The file it synced was replaced or lost meanwhile.
            return Ok(());
        }
        result?;
        self.synced = self.synced.max(mark);
        self.settle()
    }

    /// Messages 1..=synced (in append order) are durable.
    pub fn synced(&self) -> u64 {
        self.synced
    }

    /// Messages appended and not yet covered by a sync.
    pub fn unsynced(&self) -> u64 {
        self.written - self.synced
    }

    /// Everything appended is durable (synced, rewritten or no longer
    /// journaled): a running job's result changes nothing.
    fn all_synced(&mut self) -> Result<(), OutboxError> {
        self.synced = self.written;
        self.sync_floor = self.written + 1;
        self.settle()
    }

    /// Removes the acknowledged messages a sync now covers, with one
    /// append of their delivered marks.
    fn settle(&mut self) -> Result<(), OutboxError> {
        let synced = self.synced;
        let mut done = Vec::new();
        self.acked.retain(|&(written, id)| {
            let covered = written <= synced;
            if covered {
                done.push(id);
            }
            !covered
        });
        let mut marks = Vec::with_capacity(done.len());
        for id in done {
            if self.remove(id).is_some_and(|h| h.durable) {
                marks.push(Entry::Delivered(id));
            }
        }
        if marks.is_empty() {
            return Ok(());
        }
        let Some(j) = &mut self.journal else {
            return Ok(());
        };
        j.append(&marks.iter().collect::<Vec<_>>())?;
        let everything_delivered = self.durable_count == 0 && j.len() > 64 * 1024;
        if everything_delivered || j.len() > self.compacted_len * 2 + COMPACT_SLACK {
            self.compact()?;
        }
        Ok(())
    }

    /// The next message to publish, in order; it is marked in flight.
    pub fn next_unsent(&mut self) -> Option<&StoredMessage> {
        let (&id, held) = self
            .held
            .range_mut(self.cursor..)
            .find(|(_, h)| !h.in_flight && !h.acked)?;
        held.in_flight = true;
        self.cursor = id + 1;
        Some(&held.msg)
    }

    /// Whether a message waits to be published.
    pub fn has_unsent(&self) -> bool {
        self.held
            .range(self.cursor..)
            .any(|(_, h)| !h.in_flight && !h.acked)
    }

    /// A message that was handed to the client could not be queued: it is
    /// unsent again.
    pub fn unsend(&mut self, id: u64) {
        if let Some(h) = self.held.get_mut(&id) {
            h.in_flight = false;
            self.cursor = self.cursor.min(id);
        }
    }

    /// The connection dropped: everything not acknowledged goes out again,
    /// from the oldest (acknowledged messages waiting for their sync do not).
    pub fn rewind(&mut self) {
        for h in self.held.values_mut() {
            h.in_flight = false;
        }
        self.cursor = 0;
    }

    /// The broker acknowledged message `id`: it leaves the outbox now if a
    /// sync covers it, else when one does (it is not published again).
    pub fn delivered(&mut self, id: u64) -> Result<(), OutboxError> {
        let Some(h) = self.held.get_mut(&id) else {
            return Ok(());
        };
        if h.acked {
            return Ok(());
        }
        h.acked = true;
        h.in_flight = false;
        self.acked.push((h.written, id));
        self.settle()
    }

    /// Rewrites the journal with only the undelivered messages.
    pub fn compact(&mut self) -> Result<(), OutboxError> {
        if self.journal.is_none() {
            return Ok(());
        }
        let entries = self.live_entries();
        let Some(j) = &mut self.journal else {
            return Ok(());
        };
        j.rewrite(&entries)?;
        self.compacted_len = j.len();
        self.all_synced()
    }

    /// A clean stop: syncs, and notes in the `run` file that nothing
    /// appended was left unsynced.
    pub fn close(&mut self) -> Result<(), OutboxError> {
        self.sync()?;
        match &self.journal {
            Some(j) => PreviousRun::mark_stopped(j.dir(), &self.boot),
            None => Ok(()),
        }
    }

    /// Undelivered durable messages.
    pub fn pending(&self) -> usize {
        self.durable_count
    }

    /// Messages evicted since start.
    pub fn evicted_total(&self) -> u64 {
        self.evicted_total
    }

    /// The journal's size in bytes (0 in memory).
    pub fn journal_len(&self) -> u64 {
        self.journal.as_ref().map_or(0, Journal::len)
    }
}

fn stream_index(s: Stream) -> Option<usize> {
    match s {
        Stream::Alarms => Some(0),
        Stream::Session => Some(1),
        Stream::None => None,
    }
}

/// One top-level field of a JSON payload.
fn payload_field(payload: &[u8], field: &str) -> Option<serde_json::Value> {
    match serde_json::from_slice::<serde_json::Value>(payload).ok()? {
        serde_json::Value::Object(mut m) => m.remove(field),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("vigil-outbox-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn push(ob: &mut Outbox, class: Class) -> Pushed {
        ob.push(class, Stream::Alarms, false, "t".into(), |n| {
            format!("{n}").into_bytes()
        })
        .unwrap()
    }

    #[test]
    fn undelivered_messages_survive_a_restart_in_order() {
        let dir = temp("restart");
        {
            let (mut ob, _) = Outbox::open(Some(&dir), 100).unwrap();
            for _ in 0..5 {
                push(&mut ob, Class::High);
            }
            ob.sync().unwrap();
            let first = ob.next_unsent().unwrap().id;
            ob.delivered(first).unwrap();
        }
        let (mut ob, _) = Outbox::open(Some(&dir), 100).unwrap();
        let ids: Vec<u64> = std::iter::from_fn(|| ob.next_unsent().map(|m| m.stream_seq)).collect();
        assert_eq!(ids, vec![2, 3, 4, 5]);
        // Numbering continues after the restart.
        assert_eq!(push(&mut ob, Class::Low).id, 6);
    }

    #[test]
    fn rewind_sends_everything_unacknowledged_again() {
        let (mut ob, _) = Outbox::open(None, 100).unwrap();
        for _ in 0..3 {
            push(&mut ob, Class::Medium);
        }
        assert_eq!(ob.next_unsent().unwrap().id, 1);
        assert_eq!(ob.next_unsent().unwrap().id, 2);
        ob.delivered(2).unwrap();
        ob.rewind();
        let ids: Vec<u64> = std::iter::from_fn(|| ob.next_unsent().map(|m| m.id)).collect();
        assert_eq!(ids, vec![1, 3]);
    }

    #[test]
    fn a_full_outbox_evicts_low_before_high_and_says_so() {
        let (mut ob, _) = Outbox::open(None, 3).unwrap();
        push(&mut ob, Class::High);
        push(&mut ob, Class::Low);
        push(&mut ob, Class::Medium);
        let p = push(&mut ob, Class::High);
        assert_eq!(p.evicted, vec![(Class::Low, 2)]);
        let p = push(&mut ob, Class::High);
        assert_eq!(p.evicted, vec![(Class::Medium, 3)]);
        // Only high-priority events left: they may take up to twice the room.
        for _ in 0..3 {
            assert!(push(&mut ob, Class::High).evicted.is_empty());
        }
        let p = push(&mut ob, Class::High);
        assert_eq!(p.evicted, vec![(Class::High, 1)]);
        assert_eq!(ob.pending(), 6);
        assert_eq!(ob.evicted_total(), 3);
    }

    /// Flips one byte inside the `n`th record (0-based) of the journal in `dir`.
    fn flip_record(dir: &Path, n: usize) {
        let path = dir.join("outbox.journal");
        let mut data = std::fs::read(&path).unwrap();
        let mut at = 8;
        for _ in 0..n {
            at += 8 + u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        }
        data[at + 12] ^= 0x08;
        std::fs::write(&path, &data).unwrap();
    }

    fn stream_seqs(ob: &mut Outbox) -> Vec<u64> {
        std::iter::from_fn(|| ob.next_unsent().map(|m| m.stream_seq)).collect()
    }

    fn next_stream_seq(ob: &mut Outbox) -> u64 {
        let id = push(ob, Class::High).id;
        ob.held[&id].msg.stream_seq
    }

    #[test]
    fn corruption_keeps_what_follows_and_never_reuses_a_stream_number() {
        let dir = temp("corrupt");
        {
            let (mut ob, _) = Outbox::open(Some(&dir), 100).unwrap();
            for _ in 0..7 {
                push(&mut ob, Class::High);
            }
            ob.sync().unwrap();
            ob.next_unsent();
            ob.delivered(1).unwrap();
        }
        // Records: seven messages, then the delivered mark. The last
        // message damaged: only the mark after it shows it is not a tail.
        flip_record(&dir, 6);
        let (mut ob, report) = Outbox::open(Some(&dir), 100).unwrap();
        assert!(report.corrupt());
        assert_eq!(
            stream_seqs(&mut ob),
            vec![2, 3, 4, 5, 6],
            "everything readable stands"
        );
        let seq = next_stream_seq(&mut ob);
        assert!(
            seq > 7,
            "stream_seq {seq} may have been used by the damaged record"
        );
        drop(ob);
        // The journal was rewritten clean, with the raised counters.
        let (mut ob, report) = Outbox::open(Some(&dir), 100).unwrap();
        assert!(!report.corrupt(), "{report:?}");
        assert_eq!(ob.pending(), 6);
        assert!(next_stream_seq(&mut ob) > seq);
    }

    #[test]
    fn a_torn_tail_never_gives_its_stream_number_again() {
        let dir = temp("torn");
        {
            let (mut ob, _) = Outbox::open(Some(&dir), 100).unwrap();
            for _ in 0..5 {
                push(&mut ob, Class::High);
            }
            ob.sync().unwrap();
        }
        // Damage in the last record cannot be told from a crash mid-write.
        flip_record(&dir, 4);
        let (mut ob, report) = Outbox::open(Some(&dir), 100).unwrap();
        assert!(!report.corrupt());
        assert!(report.torn_bytes > 0);
        assert_eq!(stream_seqs(&mut ob), vec![1, 2, 3, 4]);
        assert!(next_stream_seq(&mut ob) > 5);
    }

    #[test]
    fn one_damaged_counters_record_keeps_the_numbers() {
        let dir = temp("counters");
        {
            let (mut ob, _) = Outbox::open(Some(&dir), 100).unwrap();
            for id in 1..=4 {
                push(&mut ob, Class::High);
                ob.next_unsent();
                ob.delivered(id).unwrap();
            }
            ob.compact().unwrap();
            push(&mut ob, Class::High);
        }
        flip_record(&dir, 0);
        let (mut ob, report) = Outbox::open(Some(&dir), 100).unwrap();
        assert!(report.corrupt());
        assert_eq!(ob.next_unsent().unwrap().stream_seq, 5);
        assert!(next_stream_seq(&mut ob) > 5);
        assert!(
            ob.next_stream[1] > 1,
            "the session stream skips what the damage may have held"
        );
    }

    #[test]
    fn a_lost_journal_is_written_out_again_with_everything_held() {
        let dir = temp("reattach");
        let (mut ob, _) = Outbox::open(Some(&dir), 100).unwrap();
        push(&mut ob, Class::High);
        ob.sync().unwrap();
        // The disk fails: the outbox goes on in memory.
        ob.lose_journal();
        push(&mut ob, Class::Medium);
        push(&mut ob, Class::High);
        ob.next_unsent();
        ob.delivered(1).unwrap();
        assert!(!ob.is_durable());
        ob.reattach(&dir, false).unwrap();
        assert!(ob.is_durable());
        push(&mut ob, Class::Low);
        ob.sync().unwrap();
        drop(ob);
        let (mut ob, report) = Outbox::open(Some(&dir), 100).unwrap();
        assert_eq!(report.torn_bytes, 0);
        assert!(!report.corrupt());
        assert_eq!(stream_seqs(&mut ob), vec![2, 3, 4]);
    }

    #[test]
    fn a_read_only_start_loads_the_journal_and_sets_an_unread_one_aside() {
        let dir = temp("read-only");
        {
            let (mut ob, _) = Outbox::open(Some(&dir), 100).unwrap();
            push(&mut ob, Class::High);
            push(&mut ob, Class::High);
            ob.sync().unwrap();
        }
        let (mut ob, _) = Outbox::open_read_only(&dir, 100).unwrap();
        assert!(!ob.is_durable());
        assert_eq!(stream_seqs(&mut ob), vec![1, 2]);
        assert_eq!(next_stream_seq(&mut ob), 3);
        // A journal never read is kept aside, not overwritten.
        let old = std::fs::read(dir.join("outbox.journal")).unwrap();
        let mut fresh = Outbox::memory(100);
        fresh.reattach(&dir, true).unwrap();
        assert_eq!(
            std::fs::read(dir.join(super::super::journal::UNREAD_COPY)).unwrap(),
            old
        );
        // An empty state directory reads as an empty outbox.
        let (ob, report) = Outbox::open_read_only(&temp("read-only-none"), 100).unwrap();
        assert_eq!((ob.pending(), report.records), (0, 0));
    }

    #[test]
    fn compaction_keeps_undelivered_and_the_counters() {
        let dir = temp("compact");
        {
            let (mut ob, _) = Outbox::open(Some(&dir), 100).unwrap();
            for _ in 0..4 {
                push(&mut ob, Class::High);
            }
            for id in 1..=3 {
                ob.next_unsent();
                ob.delivered(id).unwrap();
            }
            ob.compact().unwrap();
        }
        let (mut ob, _) = Outbox::open(Some(&dir), 100).unwrap();
        assert_eq!(ob.pending(), 1);
        assert_eq!(ob.next_unsent().unwrap().stream_seq, 4);
        assert_eq!(push(&mut ob, Class::High).id, 5);
    }

    /// Runs a sync job as the publisher's blocking thread would.
    fn run_sync(ob: &mut Outbox) {
        let job = ob.start_sync().expect("something waits for a sync");
        ob.handle_synced(job.run()).unwrap();
    }

    #[test]
    fn a_puback_before_its_sync_keeps_the_message_until_the_sync() {
        let dir = temp("puback-first");
        let (mut ob, _) = Outbox::open(Some(&dir), 100).unwrap();
        let id = push(&mut ob, Class::High).id;
        // Published at once, before any sync.
        assert_eq!(ob.next_unsent().unwrap().id, id);
        let job = ob.start_sync().unwrap();
        assert!(ob.start_sync().is_none(), "one sync at a time");
        ob.delivered(id).unwrap();
        assert_eq!(ob.pending(), 1, "acknowledged, not yet synced: still held");
        // Acknowledged: not published again after a reconnect.
        ob.rewind();
        assert!(ob.next_unsent().is_none());
        assert!(!ob.has_unsent());
        ob.handle_synced(job.run()).unwrap();
        assert_eq!(ob.pending(), 0, "PUBACK and sync both in: delivered");
        drop(ob);
        let (ob, _) = Outbox::open(Some(&dir), 100).unwrap();
        assert_eq!(ob.pending(), 0, "the delivered mark was journaled");
    }

    #[test]
    fn a_crash_between_the_puback_and_the_sync_delivers_the_message_again() {
        let dir = temp("puback-crash");
        {
            let (mut ob, _) = Outbox::open(Some(&dir), 100).unwrap();
            let id = push(&mut ob, Class::High).id;
            ob.next_unsent();
            ob.delivered(id).unwrap();
            // SIGKILL here: no sync, no delivered mark.
        }
        let (mut ob, report) = Outbox::open(Some(&dir), 100).unwrap();
        assert!(!report.power_cut, "a crash in this boot loses nothing");
        assert_eq!(stream_seqs(&mut ob), vec![1], "at least once");
        assert_eq!(next_stream_seq(&mut ob), 2, "no gap after a crash");
    }

    #[test]
    fn a_sync_covers_only_what_was_appended_before_it_began() {
        let (mut ob, _) = Outbox::open(Some(&temp("sync-cover")), 100).unwrap();
        let a = push(&mut ob, Class::High).id;
        let job = ob.start_sync().unwrap();
        let b = push(&mut ob, Class::High).id;
        ob.next_unsent();
        ob.next_unsent();
        ob.delivered(b).unwrap();
        ob.delivered(a).unwrap();
        ob.handle_synced(job.run()).unwrap();
        assert_eq!(ob.pending(), 1, "the second message waits for its sync");
        assert_eq!(ob.unsynced(), 1);
        run_sync(&mut ob);
        assert_eq!((ob.pending(), ob.unsynced()), (0, 0));
        assert!(ob.start_sync().is_none(), "nothing left to sync");
    }

    #[test]
    fn a_sync_of_a_replaced_journal_covers_nothing_new() {
        let (mut ob, _) = Outbox::open(Some(&temp("sync-stale")), 100).unwrap();
        push(&mut ob, Class::High);
        let job = ob.start_sync().unwrap();
        // Compaction rewrites and syncs the file: the first message is durable.
        ob.compact().unwrap();
        assert_eq!(ob.unsynced(), 0);
        let b = push(&mut ob, Class::High).id;
        ob.next_unsent();
        ob.next_unsent();
        ob.delivered(b).unwrap();
        ob.handle_synced(job.run()).unwrap();
        assert_eq!(
            ob.unsynced(),
            1,
            "the old file's sync says nothing of the new one"
        );
        assert!(ob.held.contains_key(&b));
        run_sync(&mut ob);
        assert!(!ob.held.contains_key(&b));
    }

    #[test]
    fn a_failed_sync_delivers_nothing() {
        let (mut ob, _) = Outbox::open(Some(&temp("sync-fail")), 100).unwrap();
        let id = push(&mut ob, Class::High).id;
        ob.next_unsent();
        ob.delivered(id).unwrap();
        let job = ob.start_sync().unwrap();
        let (mark, _) = job.run();
        let failed = JournalError::Io {
            what: "cannot sync journal",
            path: "outbox.journal".into(),
            cause: std::io::Error::other("EIO"),
        };
        assert!(ob.handle_synced((mark, Err(failed))).is_err());
        assert_eq!(ob.pending(), 1, "not delivered on a failed sync");
        // The caller then runs in memory: nothing is left to wait for.
        ob.lose_journal();
        assert_eq!(ob.pending(), 0);
    }

    #[test]
    fn no_more_than_unsynced_max_messages_wait_for_a_sync() {
        let (mut ob, _) = Outbox::open(Some(&temp("sync-bound")), 10_000).unwrap();
        for _ in 0..UNSYNCED_MAX * 2 + 3 {
            push(&mut ob, Class::High);
            assert!(ob.unsynced() <= UNSYNCED_MAX);
        }
        assert!(
            ob.synced() >= UNSYNCED_MAX * 2,
            "synced on the caller's thread"
        );
    }

    #[test]
    fn a_power_cut_skips_a_window_of_stream_numbers_and_a_clean_stop_does_not() {
        let dir = temp("power-cut");
        {
            let (mut ob, _) = Outbox::open_at_boot(Some(&dir), 100, "boot-1").unwrap();
            push(&mut ob, Class::High);
            push(&mut ob, Class::High);
            // Lost power: no clean stop.
        }
        let (mut ob, report) = Outbox::open_at_boot(Some(&dir), 100, "boot-2").unwrap();
        assert!(report.power_cut);
        assert_eq!(stream_seqs(&mut ob), vec![1, 2]);
        let after_cut = next_stream_seq(&mut ob);
        assert_eq!(
            after_cut,
            3 + UNSYNCED_MAX,
            "numbers the window may have held are skipped"
        );
        assert!(ob.next_stream[1] > UNSYNCED_MAX, "the session stream too");
        ob.close().unwrap();
        drop(ob);
        // A clean stop, then a reboot: nothing skipped.
        let (mut ob, report) = Outbox::open_at_boot(Some(&dir), 100, "boot-3").unwrap();
        assert!(!report.power_cut);
        assert_eq!(next_stream_seq(&mut ob), after_cut + 1);
    }
}
