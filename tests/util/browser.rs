//! A small Chrome DevTools Protocol driver for headless Debian Chromium:
//! start it on a page, evaluate JavaScript, wait for conditions, take
//! screenshots. Chromium is required: without it the test fails with the
//! install instruction.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Headless Chromium without a sandbox, GPU or any traffic of its own (no
/// QUIC, updates, sync or first-run pages): how every test runs it.
pub const HEADLESS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// A headless Chromium showing one page.
pub struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: PathBuf,
}

impl Browser {
    /// Starts Chromium on `url`.
    pub fn open(url: &str, profile: &Path) -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "Chromium is missing: install it with `apt-get install -y chromium` (scripts/test does)"
        );
        std::fs::create_dir_all(profile).unwrap();
        let child = Command::new(CHROMIUM)
            .args(HEADLESS)
            .args([
                "--disable-dev-shm-usage",
                "--window-size=1280,900",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        // Killed if anything below fails, so a failed test leaves no browser.
        let mut guard = Guard(Some(child));
        let port_file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port: u16 = loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
            {
                break p;
            }
            assert!(
                Instant::now() < deadline,
                "Chromium did not start (no DevToolsActivePort)"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // The page target's websocket.
        let ws_url = loop {
            let list = http_get(port, "/json/list");
            let page = serde_json::from_str::<Value>(&list).ok().and_then(|v| {
                v.as_array()?
                    .iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))
            });
            if let Some(u) = page {
                break u;
            }
            assert!(Instant::now() < deadline, "Chromium shows no page");
            std::thread::sleep(Duration::from_millis(50));
        };
        let (ws, _) = tungstenite::connect(&ws_url).expect("connect to the page's DevTools socket");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
        Browser {
            child: guard.0.take().expect("the browser process"),
            ws,
            next_id: 1,
            _profile: profile.to_owned(),
        }
    }

    /// Sends one CDP command and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(Message::text(msg.to_string()))
            .expect("send a CDP command");
        loop {
            let m = self.ws.read().expect("read from CDP");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    panic!("CDP {method} failed: {e}");
                }
                return v["result"].clone();
            }
        }
    }

    /// Evaluates a JavaScript expression (promises awaited) to a JSON value.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("JavaScript `{expr}` threw: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is truthy; returns how long it took.
    pub fn wait_for(&mut self, expr: &str, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let v = self.eval(expr);
            if v.as_bool() == Some(true) {
                return start.elapsed();
            }
            if start.elapsed() > within {
                let body = self.eval("document.body.innerText");
                panic!("`{expr}` not true within {within:?}; page text:\n{body}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Emulates a screen of `width` x `height` CSS pixels and waits until
    /// the page has taken it.
    pub fn set_viewport(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        self.wait_for(
            &format!("window.innerWidth === {width} && window.innerHeight === {height}"),
            Duration::from_secs(3),
        );
    }

    /// The browser's main process id (its renderers are its descendants).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Saves a PNG screenshot of the page.
    pub fn screenshot(&mut self, path: &Path) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let data = base64_decode(r["data"].as_str().expect("screenshot data"));
        std::fs::write(path, data).expect("write the screenshot");
    }
}

struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP GET on loopback; returns the body (empty on failure).
pub fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        // Stop at Content-Length when the server keeps the connection. In
        // bytes: a read may end inside a multi-byte character, which a lossy
        // text conversion would count as three bytes and so stop early.
        if let Some(at) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..at]);
            let len = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            });
            if len.is_some_and(|n| out.len() - (at + 4) >= n) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
