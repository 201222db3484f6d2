//! `vigil display` as a child process: started on a free loopback port
//! against a broker, stopped on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `vigil display`.
pub struct Board {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
    pub port: u16,
    stderr: mpsc::Receiver<String>,
}

impl Board {
    /// `vigil display --broker ADDR --listen 127.0.0.1:0 --bed BED` plus `extra`.
    pub fn start(broker: &str, bed: &str, extra: &[&str]) -> Board {
        Board::station(broker, &[&["--bed", bed][..], extra].concat())
    }

    /// `vigil display --broker ADDR --listen 127.0.0.1:0` plus `extra`: with
    /// no `--bed`, a station of every bed the broker carries.
    pub fn station(broker: &str, extra: &[&str]) -> Board {
        let args = ["display", "--broker", broker, "--listen", "127.0.0.1:0"];
        Board::start_args(&[&args[..], extra].concat()).expect("vigil display started")
    }

    /// Runs `vigil ARGS`; `Err(stderr)` when it exits instead of listening.
    pub fn start_args(args: &[&str]) -> Result<Board, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vigil display");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (etx, erx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = etx.send(line);
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => {
                let url = line
                    .split_whitespace()
                    .find(|w| w.starts_with("http"))
                    .expect("a URL in the listening line")
                    .to_owned();
                let port = url
                    .trim_end_matches('/')
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                Ok(Board {
                    child: Some(child),
                    url,
                    port,
                    stderr: erx,
                })
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // The process has exited, but its stderr may still be in
                // the reader thread's hands: read until the pipe closes.
                let mut lines = Vec::new();
                while let Ok(line) = erx.recv_timeout(Duration::from_secs(5)) {
                    lines.push(line);
                }
                Err(lines.join("\n"))
            }
        }
    }

    /// The process id (for CPU and memory measurements).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }

    /// Kills the server (the page loses its connection).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        self.kill();
    }
}
