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

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::sync::mpsc;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
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
    let mut broker = Command::new(mosquitto)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }

    let device = TcpListener::bind("127.0.0.1:0").unwrap();
    let config_text = format!(
        r#"
[site]
site = "bench"
bed = "bed-1"

[[source]]
name = "monitor"
protocol = "vigil-line"
tcp = "{}"
timeout = "30s"

[alarms.spo2]
low = "off"
rate = "off"

[mqtt]
embedded = false
broker = "mqtt://127.0.0.1:{port}"
state_dir = "{}"
outbox_max = 100000
"#,
        device.local_addr().unwrap(),
        dir.join("state").display()
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
        let mut arrivals = subscribe(port, "vigil/v1/bench/bed-1/alarms").await;
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
                .unwrap();
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
                            Ok(Some(t)) => {
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

async fn daemon(
    config: vigil::config::Config,
    mut stop: tokio::sync::watch::Receiver<bool>,
    live: std::sync::mpsc::Sender<tokio::sync::watch::Receiver<vigil::io::driver::LiveState>>,
) {
    use vigil::io::sink::{SinkHandle, SinkMsg};
    // A sink that only drains, standing in for the log sink's queue.
    let (tx, mut rx) = mpsc::channel::<SinkMsg>(8192);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let options = vigil::daemon::Options {
        status_every: Duration::from_secs(3600),
        log: false,
        sinks: vec![SinkHandle::new("drain", tx, 8192, drain)],
        recording: vigil::daemon::Recording::Off,
        sink_queue: 8192,
        ..vigil::daemon::Options::default()
    };
    let daemon = vigil::daemon::start(config, options).expect("start the daemon");
    let _ = live.send(daemon.live.clone());
    let _ = stop.wait_for(|s| *s).await;
    let _ = daemon.stop().await;
}

/// Arrival instants of messages on `topic`.
async fn subscribe(port: u16, topic: &str) -> mpsc::UnboundedReceiver<Instant> {
    let mut opts = MqttOptions::new("bench-display", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let mut net = eventloop.network_options();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready = Some(ready_tx);
    tokio::spawn(async move {
        let _keep = client;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::Publish(_))) => {
                    if tx.send(Instant::now()).is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
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
