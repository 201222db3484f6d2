//! The live daemon under load: N simulated monitors on pseudo-terminals,
//! each sending HR and SpO2 at R Hz in vigil-line, into the release binary
//! (recording and MQTT publishing on, as in production).
//!
//! Reports the daemon's own arrival-to-event latency (from the moment a read
//! returns the reading's last byte to the emission of its events, HDR
//! histogram), and its CPU use and memory from /proc over the measured window.
//!
//! The last rows are floods: one monitor at 5,000 and at 25,000 Hz (10,000
//! and 50,000 readings/s), written 100 times a second in full buffers. The
//! `dropped` column is the daemon's own count of events a sink queue could
//! not take (its status line); it must stay 0.
//!
//! Run: `cargo bench --bench daemon` (about 100 s).

use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use serialport::TTYPort;

#[path = "util/vigil.rs"]
mod util;

fn main() {
    println!("| monitors x rate | readings/s | p50 | p99 | p99.9 | max | dropped | CPU (% of a core) | CPU per 1,000 readings/s | RSS (peak) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (monitors, hz, secs) in [
        (4usize, 1u32, 30u64),
        (32, 10, 30),
        (1, 5000, 20),
        (1, 25000, 20),
    ] {
        run(monitors, hz, Duration::from_secs(secs));
    }
}

/// Writes per second at most: above it each write carries several
/// readings (a flood arrives in full buffers, not one line per read).
const MAX_WRITES_HZ: u32 = 100;

fn run(monitors: usize, hz: u32, window: Duration) {
    let dir = std::env::temp_dir().join(format!("vigil-bench-{}-{monitors}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut masters = Vec::new();
    let mut config = String::new();
    for i in 0..monitors {
        let (master, slave) = TTYPort::pair().expect("pty pair");
        // SAFETY: fcntl on a descriptor we own; keeps the child from inheriting it.
        unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        let name = serialport::SerialPort::name(&slave).unwrap();
        drop(slave);
        config.push_str(&format!(
            "[[source]]\nname = \"m{i}\"\nprotocol = \"vigil-line\"\nserial = \"{name}\"\n\n"
        ));
        masters.push(master);
    }
    config.push_str(&format!(
        "[recording]\ndir = \"{}\"\n",
        dir.join("rec").display()
    ));
    let cfg_path = dir.join("vigil.toml");
    std::fs::write(&cfg_path, config).unwrap();

    let (mut child, rx) = util::start(&cfg_path, None);
    std::thread::sleep(Duration::from_millis(500));

    // Warm up 2 s, then measure CPU over the window.
    let writes_hz = hz.min(MAX_WRITES_HZ);
    let per_write = (hz / writes_hz) as u64;
    let period = Duration::from_secs(1) / writes_hz;
    let total = window + Duration::from_secs(2);
    let begin = Instant::now();
    let mut cpu_start = None;
    let mut tick = 0u64;
    while begin.elapsed() < total {
        if cpu_start.is_none() && begin.elapsed() >= Duration::from_secs(2) {
            cpu_start = Some((util::cpu_ticks(child.id()), Instant::now()));
        }
        for (i, m) in masters.iter_mut().enumerate() {
            let mut lines = String::new();
            for k in 0..per_write {
                let n = tick * per_write + k + i as u64;
                lines.push_str(&format!("hr {}\nspo2 {}\n", 70 + n % 20, 95 + n % 4));
            }
            let _ = m.write_all(lines.as_bytes());
        }
        tick += 1;
        let next = begin + period * tick as u32;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let (cpu0, t0) = cpu_start.unwrap();
    let cpu = Duration::from_millis((util::cpu_ticks(child.id()) - cpu0) * 10);
    let elapsed = t0.elapsed();
    let (rss, hwm) = memory(child.id());

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let mut status_line = String::new();
    let mut behind = false;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        let stopped = line.contains("vigil stopped");
        // The recorder's queue overflowed: system.input_overload.
        behind |= line.contains("fell behind the input");
        if line.contains("latency us") {
            status_line = line;
        }
        if stopped {
            break;
        }
    }
    let _ = child.wait();
    let lat = |key: &str| -> String {
        status_line
            .split(&format!("{key}="))
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .map(|v| format!("{v} µs"))
            .unwrap_or_else(|| "?".into())
    };
    let dropped = status_line
        .split("events dropped: ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap_or("?")
        .to_owned()
        + if behind {
            " (recording fell behind)"
        } else {
            ""
        };
    let readings = monitors as u32 * hz * 2;
    let cpu_pct = cpu.as_secs_f64() / elapsed.as_secs_f64() * 100.0;
    println!(
        "| {monitors} x {hz} Hz | {readings} | {} | {} | {} | {} | {dropped} | {cpu_pct:.2} % | {:.2} % | {:.1} MB ({:.1} MB) |",
        lat("p50"),
        lat("p99"),
        lat("p99.9"),
        lat("max"),
        cpu_pct / (readings as f64 / 1000.0),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// (VmRSS, VmHWM) in kB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let get = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}
