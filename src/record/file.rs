//! Reading and writing recording files.
//!
//! The writer runs on a thread of its own (file IO must never stall the
//! driver loop): the driver offers inputs through a bounded queue without
//! waiting, and without waking the thread: the thread drains the queue on
//! its own timer ([`DRAIN_EVERY`]), or at once when the queue is half full
//! or the recording finishes, so recording an input costs the driver no
//! system call. It appends what it drained and flushes plus `fdatasync`s
//! at a fixed period, so at most that period of raw input is lost on power failure
//! (alarm events are never lost: they live in the MQTT outbox journal). A
//! write error (disk full, permission) is reported as a storage failure so
//! the engine raises a technical alarm; monitoring goes on, and the writer
//! keeps trying. It reports recovery only after a real sync worked and
//! nothing failed for [`RECOVERY_HOLD`](super::health::RECOVERY_HOLD) (see
//! [`super::health`]): a nearly full disk does not make the alarm flap.
//!
//! Recordings older than the retention period are deleted when the writer
//! starts and every hour.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::health::{Change, Health, RECOVERY_HOLD};
// Re-exported: the recording's file-level types are pure and live in the core.
use super::{encode_file, encode_header, encode_record, Record, Timed};
pub use super::{FileError, Loaded};
use crate::pipeline::Input;
use crate::time::Instant;
use crate::vitals::SourceId;

/// The file name extension of recordings.
pub const EXTENSION: &str = "vrec";

/// Reads a whole recording.
pub fn read(path: &Path) -> Result<Loaded, FileError> {
    Loaded::from_read(path, fs::read(path))
}

/// Writes a complete recording in one go (imports, tests).
pub fn write_all(path: &Path, records: &[Timed]) -> Result<(), FileError> {
    fs::write(path, encode_file(records)).map_err(|source| FileError::Io {
        path: path.to_owned(),
        cause: source,
    })
}

/// Inline bytes for the recorder queue (no allocation per chunk).
const INLINE: usize = 512;

/// How often the writer thread drains the queue when nobody wakes it (an
/// idle daemon wakes it five times a second; a flood wakes it at half a
/// queue). A daemon killed in between loses what its write buffer held
/// anyway (up to `recording.sync_every`, as before); alarm events never
/// depend on it (they live in the MQTT outbox journal).
pub const DRAIN_EVERY: Duration = Duration::from_millis(200);

// Inline on purpose: recording a chunk must not allocate on the driver's thread.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Bytes {
        at: Instant,
        source: SourceId,
        len: u16,
        bytes: [u8; INLINE],
    },
    Other(Timed),
    Stop(Vec<(String, String)>, Instant),
}

/// Reports storage trouble to whoever raises the technical alarm.
pub type StorageReport = Box<dyn Fn(bool) + Send>;

/// The running recorder.
pub struct Recorder {
    tx: SyncSender<Msg>,
    /// Messages queued and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    /// Queued messages that wake the writer (half the capacity, or never).
    wake_at: usize,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

/// Recorder settings.
#[derive(Clone, Debug)]
pub struct RecorderSettings {
    /// Directory of the recordings.
    pub dir: PathBuf,
    /// File name stem (e.g. `site-bed`).
    pub stem: String,
    /// Flush and fdatasync period.
    pub sync_every: Duration,
    /// Delete recordings older than this.
    pub retention: Duration,
    /// Queue length between the driver and the writer thread.
    pub queue: usize,
    /// Whether the driver wakes the writer once its queue is half full
    /// (the daemon always does; a test turns it off to model a writer that
    /// a slow disk holds up, so that a flood outruns it).
    pub wake_when_half_full: bool,
}

impl Recorder {
    /// Creates a new recording file and starts the writer thread. `first`
    /// holds the metadata and configuration records.
    pub fn start(
        settings: &RecorderSettings,
        started: SystemTime,
        first: Vec<Timed>,
        report: StorageReport,
    ) -> Result<Recorder, FileError> {
        Self::start_with(settings, started, first, report, Health::default())
    }

    /// Like [`Recorder::start`], after earlier attempts failed and the
    /// storage failure was raised: the writer reports recovery (`false`)
    /// once its syncs have worked for the recovery hold.
    pub fn start_after_failure(
        settings: &RecorderSettings,
        started: SystemTime,
        first: Vec<Timed>,
        report: StorageReport,
    ) -> Result<Recorder, FileError> {
        let mut health = Health::default();
        health.failed();
        Self::start_with(settings, started, first, report, health)
    }

    fn start_with(
        settings: &RecorderSettings,
        started: SystemTime,
        first: Vec<Timed>,
        report: StorageReport,
        mut health: Health,
    ) -> Result<Recorder, FileError> {
        fs::create_dir_all(&settings.dir).map_err(|source| FileError::Io {
            path: settings.dir.clone(),
            cause: source,
        })?;
        prune(&settings.dir, settings.retention, started);
        let stamp = crate::time::rfc3339(started)
            .replace([':', '-'], "")
            .replace('.', "-");
        let path = settings
            .dir
            .join(format!("{}-{stamp}.{EXTENSION}", settings.stem));
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(|source| FileError::Io {
                path: path.clone(),
                cause: source,
            })?;
        let mut w = BufWriter::with_capacity(64 * 1024, file);
        let mut buf = Vec::with_capacity(1024);
        encode_header(&mut buf);
        for r in &first {
            encode_record(r.at, &r.record, &mut buf);
        }
        w.write_all(&buf)
            .and_then(|_| w.flush())
            .and_then(|_| w.get_ref().sync_data())
            .map_err(|source| FileError::Io {
                path: path.clone(),
                cause: source,
            })?;
        // A real sync: the recovery hold of a restarted recording begins.
        health.synced(std::time::Instant::now());
        let capacity = settings.queue.max(16);
        let (tx, rx) = mpsc::sync_channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        let s = settings.clone();
        let thread_path = path.clone();
        let taken = queued.clone();
        let thread = std::thread::Builder::new()
            .name("vigil-recorder".into())
            .spawn(move || writer(w, rx, taken, s, thread_path, report, health))
            .map_err(|source| FileError::Io {
                path: path.clone(),
                cause: source,
            })?;
        Ok(Recorder {
            tx,
            queued,
            wake_at: if settings.wake_when_half_full {
                capacity / 2
            } else {
                usize::MAX
            },
            dropped,
            thread: Some(thread),
            path,
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Inputs that could not be queued (the writer fell behind).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Offers bytes from a source (split if longer than the inline buffer).
    pub fn bytes(&self, at: Instant, source: SourceId, data: &[u8]) -> bool {
        let mut ok = true;
        for part in data.chunks(INLINE) {
            let mut bytes = [0u8; INLINE];
            bytes[..part.len()].copy_from_slice(part);
            ok &= self.offer(Msg::Bytes {
                at,
                source,
                len: part.len() as u16,
                bytes,
            });
        }
        ok
    }

    /// Offers any other record.
    pub fn record(&self, at: Instant, record: Record) -> bool {
        self.offer(Msg::Other(Timed { at, record }))
    }

    /// Offers a pipeline input.
    pub fn input(&self, at: Instant, input: &Input) -> bool {
        match input {
            Input::Bytes { source, data } => self.bytes(at, *source, data),
            other => self.record(at, Record::Input(other.clone())),
        }
    }

    fn offer(&self, msg: Msg) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => {
                // The writer sleeps on its timer; wake it only when the
                // queue is filling faster than it drains.
                if self.queued.fetch_add(1, Ordering::Relaxed).wrapping_add(1) == self.wake_at {
                    self.wake();
                }
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    fn wake(&self) {
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }

    /// Writes the end record, syncs and stops the thread.
    pub fn finish(mut self, at: Instant, end: Vec<(String, String)>) {
        // A full queue: let the writer make room for the end record.
        self.wake();
        let _ = self.tx.send(Msg::Stop(end, at));
        self.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn writer(
    mut w: BufWriter<File>,
    rx: mpsc::Receiver<Msg>,
    queued: Arc<AtomicUsize>,
    s: RecorderSettings,
    path: PathBuf,
    report: StorageReport,
    mut health: Health,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut dirty = false;
    let mut next_sync = std::time::Instant::now() + s.sync_every;
    let mut next_prune = std::time::Instant::now() + Duration::from_secs(3600);
    let tell = |change: Option<Change>, what: &str, error: Option<&io::Error>| match change {
        Some(Change::Failed) => {
            tracing::error!(
                path = %path.display(),
                "recording: {what} failed ({}): check the free space and permissions of recording.dir; monitoring goes on, the recording misses inputs until it works again: raising system.storage_failure",
                error.map_or_else(String::new, ToString::to_string)
            );
            report(true);
        }
        Some(Change::Recovered) => {
            tracing::info!(
                path = %path.display(),
                "recording: writing and syncing worked for {RECOVERY_HOLD:?}: system.storage_failure ends"
            );
            report(false);
        }
        None => {}
    };
    let mut next_drain = std::time::Instant::now();
    loop {
        // Sleep until the drain period, the sync or the health check is
        // due, or the driver wakes the thread (queue half full, finish).
        let until = health
            .poll_at()
            .map_or(next_sync, |t| t.min(next_sync))
            .min(next_drain);
        let wait = until.saturating_duration_since(std::time::Instant::now());
        if !wait.is_zero() {
            std::thread::park_timeout(wait);
        }
        if std::time::Instant::now() >= next_drain {
            next_drain = std::time::Instant::now() + DRAIN_EVERY;
        }
        // Take everything queued, encoded into one buffer.
        buf.clear();
        let mut stop = None;
        let mut gone = false;
        loop {
            let msg = match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    gone = true;
                    break;
                }
            };
            queued.fetch_sub(1, Ordering::Relaxed);
            match msg {
                Msg::Bytes {
                    at,
                    source,
                    len,
                    bytes,
                } => encode_record(
                    at,
                    &Record::Input(Input::Bytes {
                        source,
                        data: bytes[..len as usize].to_vec(),
                    }),
                    &mut buf,
                ),
                Msg::Other(t) => encode_record(t.at, &t.record, &mut buf),
                Msg::Stop(end, at) => {
                    stop = Some((end, at));
                    break;
                }
            }
        }
        if let Some((end, at)) = stop {
            encode_record(at, &Record::End(end), &mut buf);
            if let Err(e) = w
                .write_all(&buf)
                .and_then(|_| w.flush())
                .and_then(|_| w.get_ref().sync_data())
            {
                tell(health.failed(), "the final write", Some(&e));
            }
            return;
        }
        if !buf.is_empty() {
            if let Err(e) = w.write_all(&buf) {
                tell(health.failed(), "a write", Some(&e));
            }
            dirty = true;
        }
        if gone {
            break;
        }
        let now = std::time::Instant::now();
        if now >= next_sync {
            if dirty {
                match w.flush().and_then(|_| w.get_ref().sync_data()) {
                    Ok(()) => {
                        dirty = false;
                        tell(health.synced(now), "", None);
                    }
                    // Still dirty: tried again at the next period.
                    Err(e) => tell(health.failed(), "a sync", Some(&e)),
                }
            }
            next_sync = now + s.sync_every;
        }
        tell(health.poll(now), "", None);
        if now >= next_prune {
            prune(&s.dir, s.retention, SystemTime::now());
            next_prune = now + Duration::from_secs(3600);
        }
    }
    let _ = w.flush().and_then(|_| w.get_ref().sync_data());
}

/// Deletes recordings whose last change is older than `retention`.
pub fn prune(dir: &Path, retention: Duration, now: SystemTime) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some(EXTENSION) {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > retention);
        if old && fs::remove_file(&p).is_ok() {
            tracing::info!(path = %p.display(), "recording older than the retention period removed");
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vigil-rec-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn the_writer_drains_on_its_timer_and_a_filling_queue_wakes_it() {
        let d = dir("drain");
        let settings = RecorderSettings {
            dir: d.clone(),
            stem: "site-bed".into(),
            sync_every: Duration::from_secs(3600),
            retention: Duration::from_secs(3600),
            queue: 256,
            wake_when_half_full: true,
        };
        let rec =
            Recorder::start(&settings, SystemTime::now(), Vec::new(), Box::new(|_| {})).unwrap();
        // Four queues' worth offered in bursts: the writer sleeps on its
        // timer, and only waking it at half full keeps every input.
        for i in 0..1024u64 {
            assert!(
                rec.input(Instant::from_millis(i), &Input::Tick),
                "input {i} dropped"
            );
            if i % 100 == 99 {
                // Time for the woken writer to drain; all ten pauses are
                // half a DRAIN_EVERY, in which 1,024 inputs came.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        assert_eq!(rec.dropped(), 0);
        let path = rec.path().to_owned();
        rec.finish(Instant::from_millis(2000), Vec::new());
        let loaded = read(&path).unwrap();
        let ticks = loaded
            .records
            .iter()
            .filter(|r| matches!(r.record, Record::Input(Input::Tick)))
            .count();
        assert_eq!(ticks, 1024);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn recorder_writes_a_readable_file() {
        let d = dir("write");
        let settings = RecorderSettings {
            dir: d.clone(),
            stem: "site-bed".into(),
            sync_every: Duration::from_millis(10),
            retention: Duration::from_secs(3600),
            queue: 64,
            wake_when_half_full: true,
        };
        let failed = Arc::new(AtomicBool::new(false));
        let f = failed.clone();
        let rec = Recorder::start(
            &settings,
            SystemTime::now(),
            vec![Timed {
                at: Instant::ZERO,
                record: Record::Config("x = 1".into()),
            }],
            Box::new(move |b| f.store(b, Ordering::Relaxed)),
        )
        .unwrap();
        let big = vec![b'a'; 1300];
        assert!(rec.bytes(Instant::from_millis(1), SourceId(0), &big));
        assert!(rec.input(Instant::from_millis(2), &Input::Tick));
        let path = rec.path().to_owned();
        rec.finish(
            Instant::from_millis(3),
            vec![("stopped".into(), "x".into())],
        );
        let loaded = read(&path).unwrap();
        assert!(loaded.corrupt_tail.is_none());
        // Config, three byte chunks (512 + 512 + 276), tick, end.
        assert_eq!(loaded.records.len(), 6);
        let total: usize = loaded
            .records
            .iter()
            .map(|r| match &r.record {
                Record::Input(Input::Bytes { data, .. }) => data.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(total, 1300);
        assert!(!failed.load(Ordering::Relaxed));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn retention_removes_only_old_recordings() {
        let d = dir("prune");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("a.vrec"), b"x").unwrap();
        fs::write(d.join("keep.txt"), b"x").unwrap();
        let later = SystemTime::now() + Duration::from_secs(10 * 86_400);
        assert_eq!(prune(&d, Duration::from_secs(86_400), SystemTime::now()), 0);
        assert_eq!(prune(&d, Duration::from_secs(86_400), later), 1);
        assert!(d.join("keep.txt").exists());
        let _ = fs::remove_dir_all(&d);
    }
}
