//! Shared by the benches that run the release daemon: start `vigil run` on
//! a configuration and wait until it runs; read a process's CPU time.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// Starts the release `vigil run -c cfg` (JSON log on stderr, the driver's
/// info lines included), under `strace -f -c -o FILE` when `strace` names
/// the file; returns it with its log lines once it logs "vigil running".
/// `VIGIL_BENCH_BIN` names another binary to run instead (an earlier
/// build, to measure before and after side by side on the same machine).
pub fn start(cfg: &Path, strace: Option<&Path>) -> (Child, Receiver<String>) {
    let bin =
        std::env::var_os("VIGIL_BENCH_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_vigil").into());
    let mut cmd = match strace {
        Some(out) => {
            let mut c = Command::new("strace");
            c.args(["-f", "-c", "-o"]).arg(out).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    let mut child = cmd
        .args([
            "--log-format",
            "json",
            "--log",
            "warn,vigil::io::driver=info",
            "run",
            "-c",
        ])
        .arg(cfg)
        .args(["--status-every", "1h"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vigil (release)");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    while !rx
        .recv_timeout(Duration::from_secs(10))
        .is_ok_and(|l| l.contains("vigil running"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "vigil did not start ({})",
            cfg.display()
        );
    }
    (child, rx)
}

/// utime + stime of a process, in clock ticks (1/100 s).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}
