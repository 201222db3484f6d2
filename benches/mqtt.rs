//! MQTT delivery: end-to-end latency from a reading's arrival to its alarm
//! event reaching a subscriber through a local Mosquitto, and the sustained
//! alarm event rate the publisher holds with the durable outbox (journal
//! fsync before publish) enabled.
//!
//! Run: `cargo bench --bench mqtt` (release build; needs Mosquitto:
//! `apt-get install mosquitto`). Optional arguments: the number of latency
//! samples, then the paced rates to hold for 3 s each (defaults 5000, and
//! 500 1000 2000 4000 events/s).
//!
//! The bench plays a serial device server (vigil's `tcp` source) speaking
//! vigil-line: `spo2 80` raises `spo2.critical_low` (no condition delay),
//! `spo2 97` ends it, so every line is one alarm event. Latency is measured
//! from just before the line is written to the socket until the subscriber
//! has the alarm message: it includes the TCP hop in, decoding, the engine,
//! the MQTT thread's journal append + fdatasync, the publish, Mosquitto and
//! the subscriber's decode.
//!
//! `cargo bench --bench mqtt -- floor [lines] [period-ms] [strace] [steady] [mqtt3]`
//! (defaults 2000 lines, 100 ms) measures vigil beside the floor instead:
//! two release daemons (`vigil run`, recording on; outbox journal and
//! recording on disk for one, on tmpfs (`/dev/shm`) for the other) and a
//! minimal forwarder (raw `read` of its pty, one QoS 1 PUBLISH `write` per
//! line: no engine, no journal), each reading its own pty, all publishing
//! to one local Mosquitto. Every period each system gets one alarm line in
//! turn (the order rotates), and the latency runs from just before the line
//! is written to the pty until the subscriber has the message. With
//! `strace`, the daemons run under `strace -f -c` and the bench prints
//! their system calls per line (latencies under strace are not the
//! figures to quote). `steady`: every line is a steady reading (SpO2 96-98,
//! no alarm) and the latency runs to the daemons' `vitals` message.
//! `mqtt3`: the daemons speak MQTT 3.1.1 (`mqtt.protocol`) instead of 5.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::sync::mpsc;

#[path = "../tests/util/config.rs"]
mod config;
#[path = "util/vigil.rs"]
mod util;

fn main() {
    let words: Vec<String> = std::env::args().skip(1).collect();
    if words.iter().any(|w| w == "floor") {
        let n: Vec<u64> = words.iter().filter_map(|a| a.parse().ok()).collect();
        let has = |w: &str| words.iter().any(|a| a == w);
        floor::run(
            n.first().copied().unwrap_or(2000) as usize,
            Duration::from_millis(n.get(1).copied().unwrap_or(100)),
            floor::Options {
                strace: has("strace"),
                steady: has("steady"),
                mqtt3: has("mqtt3"),
            },
        );
        return;
    }
    let args: Vec<usize> = words.iter().filter_map(|a| a.parse().ok()).collect();
    let samples = args.first().copied().unwrap_or(5000);
    let rates: Vec<usize> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        vec![500, 1000, 2000, 4000]
    };
    let base = std::env::temp_dir().join(format!("vigil-bench-mqtt-{}", std::process::id()));
    println!(
        "MQTT delivery: reading arrival -> alarm at a subscriber through Mosquitto (loopback)"
    );
    run("journal on disk", &base, samples, &rates);
    // The same with the journal on tmpfs: what the pipeline costs without
    // the disk's fdatasync (a RAM-backed journal does NOT survive power loss).
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        run(
            "journal on tmpfs",
            &shm.join(format!("vigil-bench-mqtt-{}", std::process::id())),
            samples,
            &rates,
        );
    }
}

fn run(label: &str, dir: &std::path::Path, samples: usize, rates: &[usize]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let (mut broker, port) = start_broker(dir);

    let device = TcpListener::bind("127.0.0.1:0").unwrap();
    let config_text = config::line_daemon(
        &format!("tcp = \"{}\"", device.local_addr().unwrap()),
        port,
        &dir.join("state"),
        "bench",
        "bed-1",
        "outbox_max = 100000",
    );
    let config = vigil::config::parse(&config_text, "bench").expect("bench configuration");

    // The daemon on a thread of its own, as `vigil run` does.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (live_tx, live_rx) = std::sync::mpsc::channel();
    let daemon_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(daemon(config, stop, live_tx));
    });
    let live = live_rx.recv().expect("the daemon started");
    let (mut line, _) = device.accept().expect("the daemon connects to the device");
    line.set_nodelay(true).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut arrivals = subscribe(port, &["vigil/v1/bench/bed-1/alarms"]).await;
        tokio::time::sleep(Duration::from_millis(500)).await;

        // Warm up, then one event in flight at a time.
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        let mut low = true;
        for i in 0..samples + 200 {
            let t0 = Instant::now();
            line.write_all(if low { b"spo2 80\n" } else { b"spo2 97\n" })
                .unwrap();
            low = !low;
            let t1 = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
                .await
                .expect("alarm within 10 s")
                .unwrap()
                .1;
            if i >= 200 {
                h.record(t1.duration_since(t0).as_micros().max(1) as u64)
                    .unwrap();
            }
        }
        println!(
            "[{label}] latency over {} events: p50 {} us, p99 {} us, p99.9 {} us, max {} us",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );

        // Sustained rates: lines paced at a fixed rate for a few seconds;
        // every alarm must arrive, nothing may be dropped before the sink.
        for &rate in rates {
            let total = rate * 3;
            let dropped_before = live.borrow().events_dropped;
            let mut sent = Vec::with_capacity(total);
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let per_ms = (rate / 1000).max(1);
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 * per_ms as u64 / rate as u64));
            let start = Instant::now();
            let mut got = 0;
            while got < total {
                tokio::select! {
                    _ = tick.tick(), if sent.len() < total => {
                        for _ in 0..per_ms.min(total - sent.len()) {
                            sent.push(Instant::now());
                            line.write_all(if low { b"spo2 80\n" } else { b"spo2 97\n" }).unwrap();
                            low = !low;
                        }
                    }
                    t = tokio::time::timeout(Duration::from_secs(5), arrivals.recv()) => {
                        match t {
                            Ok(Some((_, t))) => {
                                if let Some(s) = sent.get(got) {
                                    h.record(t.duration_since(*s).as_micros().max(1) as u64).unwrap();
                                }
                                got += 1;
                            }
                            _ => break,
                        }
                    }
                }
            }
            let took = start.elapsed();
            let dropped = live.borrow().events_dropped - dropped_before;
            println!(
                "[{label}] sustained {rate}/s: {got} of {total} alarm events delivered in {:.2} s ({:.0}/s), events dropped before the sink: {dropped}, latency p50 {} us p99 {} us p99.9 {} us max {} us",
                took.as_secs_f64(),
                got as f64 / took.as_secs_f64(),
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let _ = stop_tx.send(true);
    let _ = daemon_thread.join();
    let _ = broker.kill();
    let _ = broker.wait();
    let _ = std::fs::remove_dir_all(dir);
}

/// Starts a local Mosquitto (loopback, no persistence, TCP_NODELAY) with
/// its configuration in `dir`; returns it and its port once it listens.
fn start_broker(dir: &std::path::Path) -> (std::process::Child, u16) {
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\nlog_dest none\nset_tcp_nodelay true\nmax_queued_messages 1000000\nmax_inflight_messages 1000\n"
        ),
    )
    .unwrap();
    let mosquitto = ["/usr/sbin/mosquitto", "mosquitto"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("-h")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .expect("mosquitto is not installed: apt-get install mosquitto");
    let broker = Command::new(mosquitto)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }

    (broker, port)
}

async fn daemon(
    config: vigil::config::Config,
    mut stop: tokio::sync::watch::Receiver<bool>,
    live: std::sync::mpsc::Sender<tokio::sync::watch::Receiver<vigil::io::driver::LiveState>>,
) {
    use vigil::io::sink::SinkHandle;
    // A sink that only drains, standing in for the log sink's queue.
    let (tx, mut rx) = vigil::io::sink::queue(8192);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let options = vigil::daemon::Options {
        status_every: Duration::from_secs(3600),
        log: false,
        sinks: vec![SinkHandle::new("drain", tx, drain)],
        recording: vigil::daemon::Recording::Off,
        sink_queue: 8192,
        ..vigil::daemon::Options::default()
    };
    let daemon = vigil::daemon::start(config, options).expect("start the daemon");
    let _ = live.send(daemon.live.clone());
    let _ = stop.wait_for(|s| *s).await;
    let _ = daemon.stop().await;
}

/// Arrival instants of messages on `topics` (exact names), with the index
/// of the topic.
async fn subscribe(port: u16, topics: &[&str]) -> mpsc::UnboundedReceiver<(usize, Instant)> {
    let mut opts = MqttOptions::new("bench-display", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let mut net = eventloop.network_options();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    for t in &topics {
        client.subscribe(t, QoS::AtLeastOnce).await.unwrap();
    }
    let mut acks = topics.len();
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready = Some(ready_tx);
    tokio::spawn(async move {
        let _keep = client;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    let at = Instant::now();
                    let Some(i) = topics.iter().position(|t| *t == p.topic) else {
                        continue;
                    };
                    if tx.send((i, at)).is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    acks -= 1;
                    if acks == 0 {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("bench subscriber: {e}"),
            }
        }
    });
    let _ = ready_rx.await;
    rx
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// vigil beside the floor: the same pty -> Mosquitto -> subscriber path
/// taken by the release daemon (journal on disk, and on tmpfs) and by a
/// minimal forwarder, interleaved in one run.
mod floor {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::path::{Path, PathBuf};
    use std::process::Child;
    use std::time::{Duration, Instant};

    use hdrhistogram::Histogram;
    use serialport::TTYPort;

    /// What to run.
    pub struct Options {
        /// The daemons under `strace -f -c`.
        pub strace: bool,
        /// Steady readings (vitals only) instead of alarm lines.
        pub steady: bool,
        /// The daemons speak MQTT 3.1.1.
        pub mqtt3: bool,
    }

    /// Where the systems' messages appear (the subscriber's topic order).
    const TOPICS: [&str; 3] = [
        "vigil/v1/bench/disk/alarms",
        "vigil/v1/bench/tmpfs/alarms",
        "bench/floor",
    ];
    const STEADY_TOPICS: [&str; 3] = [
        "vigil/v1/bench/disk/vitals",
        "vigil/v1/bench/tmpfs/vitals",
        "bench/floor",
    ];
    const LABELS: [&str; 3] = ["vigil, journal on disk", "vigil, journal on tmpfs", "floor"];
    const WARM_UP: usize = 50;

    /// `rounds` rounds, one every `period`; each writes one line to each
    /// system in turn (the order rotates) and waits for its message.
    /// `strace`: the daemons run under `strace -f -c` and their system
    /// calls per line are printed instead of latencies worth quoting.
    pub fn run(rounds: usize, period: Duration, opts: Options) {
        let Options {
            strace,
            steady,
            mqtt3,
        } = opts;
        let topics = if steady { STEADY_TOPICS } else { TOPICS };
        let base = std::env::temp_dir().join(format!("vigil-bench-floor-{}", std::process::id()));
        let shm = Path::new("/dev/shm").join(format!("vigil-bench-floor-{}", std::process::id()));
        for d in [&base, &shm] {
            let _ = std::fs::remove_dir_all(d);
            std::fs::create_dir_all(d).unwrap();
        }
        let (mut broker, port) = super::start_broker(&base);
        let mut daemons: Vec<Daemon> = [("disk", &base), ("tmpfs", &shm)]
            .into_iter()
            .map(|(bed, dir)| Daemon::start(bed, dir, port, strace, mqtt3))
            .collect();
        let (mut floor_line, floor_name) = pty();
        let forwarder = std::thread::spawn(move || forward(&floor_name, port));

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let hist = rt.block_on(async {
            let mut arrivals = super::subscribe(port, &topics).await;
            let mut hist: Vec<Histogram<u64>> = (0..3)
                .map(|_| Histogram::new_with_bounds(1, 60_000_000, 3).unwrap())
                .collect();
            let mut lost = [0u64; 3];
            let mut tick = tokio::time::interval(period);
            let cpu0: Vec<u64> = daemons.iter().map(Daemon::cpu_ticks).collect();
            for round in 0..rounds + WARM_UP {
                tick.tick().await;
                // SpO2 80 starts spo2.critical_low, 97 ends it: every line
                // is one alarm event (and one vitals message).
                let line: &[u8] = match (steady, round % 3) {
                    (true, 0) => b"spo2 96\n",
                    (true, 1) => b"spo2 97\n",
                    (true, _) => b"spo2 98\n",
                    (false, _) if round % 2 == 0 => b"spo2 80\n",
                    (false, _) => b"spo2 97\n",
                };
                for k in 0..3 {
                    let system = (round + k) % 3;
                    while arrivals.try_recv().is_ok() {}
                    let t0 = Instant::now();
                    match system {
                        2 => floor_line.write_all(line).unwrap(),
                        d => daemons[d].line.write_all(line).unwrap(),
                    }
                    let wait = if round < WARM_UP { 30 } else { 5 };
                    let got = loop {
                        match tokio::time::timeout(Duration::from_secs(wait), arrivals.recv()).await
                        {
                            Ok(Some((i, t1))) if i == system => break Some(t1),
                            Ok(Some(_)) => continue,
                            _ => break None,
                        }
                    };
                    match (got, round >= WARM_UP) {
                        (Some(t1), true) => hist[system]
                            .record(t1.duration_since(t0).as_micros().max(1) as u64)
                            .unwrap(),
                        (None, true) => lost[system] += 1,
                        (None, false) => panic!("{}: no message within {wait} s", LABELS[system]),
                        (Some(_), false) => {}
                    }
                }
            }
            for (d, c0) in daemons.iter_mut().zip(cpu0) {
                d.cpu_used = d.cpu_ticks() - c0;
            }
            for (i, n) in lost.iter().enumerate() {
                if *n > 0 {
                    println!("{}: {n} line(s) without a message within 5 s", LABELS[i]);
                }
            }
            hist
        });
        let lines = rounds as u64;
        let calls: Vec<Option<String>> = daemons.iter_mut().map(|d| d.stop()).collect();
        let _ = broker.kill();
        let _ = broker.wait();
        drop(forwarder);

        println!(
            "\npty -> Mosquitto (loopback) -> subscriber, {rounds} {} lines per system, one every {period:?} per system, interleaved, daemons on MQTT {}\n",
            if steady { "steady (vitals)" } else { "alarm" },
            if mqtt3 { "3.1.1" } else { "5" },
        );
        println!("| system | p50 | p99 | p99.9 | max | p50 / floor | p99 / floor | p99.9 / floor | CPU per 1,000 lines |");
        println!("|---|---|---|---|---|---|---|---|---|");
        let q = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64;
        for (i, h) in hist.iter().enumerate() {
            let cpu = daemons
                .get(i)
                .map(|d| format!("{} ms", d.cpu_used * 10 * 1000 / lines.max(1)))
                .unwrap_or_else(|| "-".into());
            println!(
                "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {cpu} |",
                LABELS[i],
                us(q(h, 0.5)),
                us(q(h, 0.99)),
                us(q(h, 0.999)),
                us(h.max() as f64),
                q(h, 0.5) / q(&hist[2], 0.5),
                q(h, 0.99) / q(&hist[2], 0.99),
                q(h, 0.999) / q(&hist[2], 0.999),
            );
        }
        for (i, c) in calls.iter().enumerate() {
            if let Some(summary) = c {
                println!(
                    "\n{}: strace -f -c over the whole run ({lines} lines)\n",
                    LABELS[i]
                );
                print_calls(summary, lines);
            }
        }
        for d in [&base, &shm] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    fn us(v: f64) -> String {
        if v >= 1000.0 {
            format!("{:.2} ms", v / 1000.0)
        } else {
            format!("{v:.0} us")
        }
    }

    /// The total and the busiest calls of an `strace -c` summary, per line.
    fn print_calls(summary: &str, lines: u64) {
        let rows: Vec<(u64, String)> = summary
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // % time, seconds, usecs/call, calls, [errors,] syscall
                let calls = f.get(3)?.parse::<u64>().ok()?;
                Some((calls, f.last()?.to_string()))
            })
            .collect();
        let Some((total, _)) = rows.iter().find(|(_, n)| n == "total") else {
            println!("(no strace summary)");
            return;
        };
        println!(
            "{:.1} system calls per line in all; the busiest:",
            *total as f64 / lines as f64
        );
        let mut calls: Vec<_> = rows.iter().filter(|(_, n)| n != "total").collect();
        calls.sort_by_key(|c| std::cmp::Reverse(c.0));
        for (n, name) in calls.iter().take(10) {
            println!("  {name}: {:.2} per line", *n as f64 / lines as f64);
        }
    }

    /// A pty pair: the master (the bench writes the monitor's lines) and
    /// the slave's path.
    fn pty() -> (TTYPort, String) {
        let (master, slave) = TTYPort::pair().expect("pty pair");
        // SAFETY: fcntl on a descriptor we own; keeps children from inheriting it.
        unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        let name = serialport::SerialPort::name(&slave).unwrap();
        // The slave stays open (and raw) until the reader has opened it.
        std::mem::forget(slave);
        (master, name)
    }

    /// The floor: read the pty, publish each line (QoS 1, one write per
    /// line, PUBACKs drained by a second thread). No engine, no journal.
    fn forward(tty: &str, port: u16) {
        let mut input = std::fs::File::open(tty).expect("open the floor's pty");
        let mut out = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        out.set_nodelay(true).unwrap();
        // CONNECT, MQTT 3.1.1, clean session, no keep-alive, id "bench-floor".
        let id = b"bench-floor";
        let mut connect = vec![0x10, (10 + 2 + id.len()) as u8, 0, 4];
        connect.extend_from_slice(b"MQTT");
        connect.extend_from_slice(&[4, 0x02, 0, 0, 0, id.len() as u8]);
        connect.extend_from_slice(id);
        out.write_all(&connect).unwrap();
        let mut connack = [0u8; 4];
        out.read_exact(&mut connack).unwrap();
        assert_eq!(connack[3], 0, "the broker refused the floor's CONNECT");
        let mut acks = out.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut sink = [0u8; 4096];
            while matches!(acks.read(&mut sink), Ok(n) if n > 0) {}
        });
        let topic = b"bench/floor";
        let mut buf = [0u8; 4096];
        let mut pending = Vec::new();
        let mut packet = Vec::with_capacity(256);
        let mut pkid: u16 = 0;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                pkid = pkid.wrapping_add(1).max(1);
                packet.clear();
                packet.push(0x32);
                packet.push((2 + topic.len() + 2 + end) as u8);
                packet.extend_from_slice(&(topic.len() as u16).to_be_bytes());
                packet.extend_from_slice(topic);
                packet.extend_from_slice(&pkid.to_be_bytes());
                packet.extend_from_slice(&pending[..end]);
                if out.write_all(&packet).is_err() {
                    return;
                }
                pending.drain(..=end);
            }
        }
    }

    /// One release daemon reading a pty.
    struct Daemon {
        child: Child,
        /// The daemon's own pid (strace's child when traced).
        pid: u32,
        line: TTYPort,
        strace_out: Option<PathBuf>,
        cpu_used: u64,
    }

    impl Daemon {
        fn start(bed: &str, dir: &Path, port: u16, strace: bool, mqtt3: bool) -> Daemon {
            let (line, tty) = pty();
            let cfg = dir.join("vigil.toml");
            std::fs::write(
                &cfg,
                format!(
                    r#"[site]
site = "bench"
bed = "{bed}"

[[source]]
name = "monitor"
protocol = "vigil-line"
serial = "{tty}"

[alarms.spo2]
low = "off"
rate = "off"

[recording]
dir = "{rec}"

[mqtt]
embedded = false
broker = "mqtt://127.0.0.1:{port}"
state_dir = "{state}"
protocol = "{protocol}"
"#,
                    protocol = if mqtt3 { "3.1.1" } else { "5" },
                    rec = dir.join("rec").display(),
                    state = dir.join("state").display(),
                ),
            )
            .unwrap();
            let strace_out = strace.then(|| dir.join("strace.txt"));
            let (child, _log) = super::util::start(&cfg, strace_out.as_deref());
            let pid = if strace_out.is_some() {
                traced_child(child.id())
            } else {
                child.id()
            };
            Daemon {
                child,
                pid,
                line,
                strace_out,
                cpu_used: 0,
            }
        }

        fn cpu_ticks(&self) -> u64 {
            super::util::cpu_ticks(self.pid)
        }

        /// Stops the daemon (SIGTERM); the strace summary, when traced.
        fn stop(&mut self) -> Option<String> {
            // SAFETY: kill(2) on the pid of a process this bench started.
            unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
            let _ = self.child.wait();
            self.strace_out
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok())
        }
    }

    /// The pid of the process strace started (its only child).
    fn traced_child(strace: u32) -> u32 {
        let children = std::fs::read_to_string(format!("/proc/{strace}/task/{strace}/children"))
            .unwrap_or_default();
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("strace's child")
    }
}
