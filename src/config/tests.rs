//! The configuration tests: parsing, every error at once, bounds, rendering.

use super::*;
use crate::engine::rules::{Limit, NibpConfirm};

fn errors(text: &str) -> Vec<String> {
    match parse(text, "test.toml") {
        Err(ConfigError::Invalid { errors, .. }) => errors.into_iter().map(|p| p.message).collect(),
        other => panic!("expected errors, got {other:?}"),
    }
}

#[test]
fn shipped_file_equals_the_built_in_defaults() {
    let cfg = parse(DEFAULT_TOML, "config/vigil.toml").unwrap();
    let mut expected = Config {
        sources: cfg.sources.clone(),
        ..Config::default()
    };
    expected.engine.source_names = cfg.engine.source_names.clone();
    assert_eq!(cfg, expected);
}

#[test]
fn shipped_file_is_not_ready_and_says_what_to_fill_in() {
    let cfg = parse(DEFAULT_TOML, "config/vigil.toml").unwrap();
    let r = readiness(&cfg);
    assert_eq!(r.missing.len(), 1, "{r:?}");
    assert!(r.missing[0].contains("[[source]]") && r.missing[0].contains("vigil setup"));
    assert!(r.warnings[0].contains("site.site"), "{r:?}");
    let ready = parse(
        &DEFAULT_TOML.replace("site = \"demo-clinic\"", "site = \"north\"").replace(
            "# [[source]]\n# name = \"monitor\"",
            "[[source]]\nname = \"monitor\"\nprotocol = \"ge-s5\"\nserial = \"/dev/ttyUSB0\"\n# name",
        ),
        "filled in",
    )
    .unwrap();
    assert_eq!(readiness(&ready), Readiness::default());
}

#[test]
fn demo_configuration_is_valid() {
    let cfg = parse(DEMO_TOML, "config/demo.toml").unwrap();
    assert!(matches!(cfg.sources[0].link, Link::Simulated { .. }));
}

#[test]
fn empty_file_gives_defaults() {
    assert_eq!(parse("", "x").unwrap(), Config::default());
}

#[test]
fn hl7_takes_a_receiver_and_says_what_is_wrong() {
    let cfg = parse("[hl7]\nto = \"127.0.0.1:2575\"\ninterval = \"1min\"\n", "x").unwrap();
    assert_eq!(
        cfg.hl7,
        Some(Hl7Config {
            interval: Duration::from_secs(60),
            ..Hl7Config::to("127.0.0.1:2575")
        })
    );
    assert_eq!(
        parse("[hl7]\nto = \"ehr:2575\"\n", "x")
            .unwrap()
            .hl7
            .unwrap()
            .interval,
        crate::record::chart::DEFAULT_INTERVAL
    );
    assert_eq!(parse("", "x").unwrap().hl7, None);
    for (text, needle) in [
        ("[hl7]\ninterval = \"5min\"\n", "hl7.to: missing"),
        ("[hl7]\nto = \"ehr\"\n", "is not \"host:port\""),
        ("[hl7]\nto = \"ehr:0\"\n", "is not \"host:port\""),
        (
            "[hl7]\nto = \"ehr:2575\"\ninterval = \"0s\"\n",
            "hl7.interval (0s) must be between 1s",
        ),
        ("[hl7]\nto = \"ehr:2575\"\nport = 1\n", "hl7.port"),
        (
            "[hl7]\nto = \"ehr:2575\"\ntls = true\n",
            "hl7.ca_file: hl7.tls = true needs the CA certificate file",
        ),
        (
            "[hl7]\nto = \"ehr:2575\"\nca_file = \"/etc/vigil/ehr-ca.pem\"\n",
            "hl7.tls: hl7.ca_file is given but tls is off",
        ),
        ("[hl7]\nto = \"ehr:2575\"\ntls = \"yes\"\n", "hl7.tls"),
    ] {
        let err = parse(text, "x").unwrap_err().to_string();
        assert!(err.contains(needle), "{needle} in {err}");
    }
}

#[test]
fn rendered_configuration_parses_back_identically() {
    let cfg = parse(DEFAULT_TOML, "config/vigil.toml").unwrap();
    let text = render(&cfg);
    assert_eq!(parse(&text, "rendered").unwrap(), cfg, "{text}");
    let mut other = Config::default();
    other.engine.vitals[0].low = Some(Limit {
        value: 45.5,
        priority: Priority::High,
        delay: Some(Duration::from_millis(2500)),
    });
    other.engine.escalate_after = None;
    other.hl7 = Some(Hl7Config {
        interval: Duration::from_secs(900),
        tls: true,
        ca_file: Some("/etc/vigil/ehr-ca.pem".into()),
        ..Hl7Config::to("ehr.example:2575")
    });
    other.sources.push(SourceConfig {
        name: "cuff".into(),
        protocol: ProtocolKind::Ge,
        link: Link::Serial {
            device: "/dev/ttyUSB0".into(),
            settings: ProtocolKind::Ge.default_serial(),
        },
        timeout: Duration::from_secs(30),
        vitals: vec![Vital::NibpSystolic, Vital::NibpDiastolic, Vital::NibpMean],
    });
    other.sources.push(SourceConfig {
        name: "bridge".into(),
        protocol: ProtocolKind::Masimo,
        link: Link::Tcp {
            address: "10.0.0.7:4001".into(),
        },
        timeout: Duration::from_secs(10),
        vitals: Vital::ALL.to_vec(),
    });
    other.engine.source_names = vec!["cuff".into(), "bridge".into()];
    assert_eq!(parse(&render(&other), "rendered").unwrap(), other);
}

#[test]
fn errors_name_the_key_and_the_reason() {
    let errs = errors(
        r#"
        [alarms.spo2]
        low = { limit = 95, priority = "medium" }
        high = { limit = 90, priority = "low" }
        "#,
    );
    assert!(
        errs.contains(&"alarms.spo2.low (95) must be below alarms.spo2.high (90)".to_owned()),
        "{errs:?}"
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let errs = errors(
        r#"
        colour = "blue"
        [alarms]
        realert_after = "soon"
        [alarms.hr]
        hi = { limit = 120, priority = "medium" }
        low = { limit = 50, priority = "urgent" }
        delay = 10
        [alarms.nibp_sys]
        delay = "10s"
        "#,
    );
    let joined = errs.join("\n");
    for needle in [
        "colour: unknown key",
        "alarms.realert_after: `soon` is not a duration",
        "alarms.hr.hi: unknown key",
        "alarms.hr.low.priority: `urgent` is not a priority",
        "alarms.hr.delay: expected a string",
        "alarms.nibp_sys.delay: unknown key",
    ] {
        assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
    }
    assert!(errs.len() >= 6);
    let shown = parse("colour = 1", "clinic.toml").unwrap_err().to_string();
    assert!(shown.starts_with("clinic.toml: 1 error(s):"), "{shown}");
}

#[test]
fn syntax_errors_name_the_file() {
    let e = parse("[alarms\n", "clinic.toml").unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { .. }));
    assert!(e.to_string().starts_with("clinic.toml: not valid TOML"));
}

#[test]
fn nibp_confirmation_side_is_parsed_and_checked() {
    let cfg = parse("[alarms.nibp]\nconfirm = \"both\"\n", "x").unwrap();
    assert_eq!(cfg.engine.nibp.confirm, NibpConfirm::Both);
    let e = errors("[alarms.nibp]\nconfirm = \"low\"\n");
    assert!(e.iter().any(|m| m.contains("alarms.nibp.confirm")), "{e:?}");
}

#[test]
fn limits_can_be_switched_off_and_overridden() {
    let cfg = parse(
        r#"
        [alarms.hr]
        high = { limit = 130, priority = "high", delay = "5min" }
        critical_low = "off"
        rate = "off"
        "#,
        "x",
    )
    .unwrap();
    let hr = cfg.engine.rules(Vital::HeartRate);
    assert_eq!(
        hr.high,
        Some(Limit {
            value: 130.0,
            priority: Priority::High,
            delay: Some(Duration::from_secs(300))
        })
    );
    assert_eq!(hr.critical_low, None);
    assert_eq!(hr.rate, None);
    // Untouched keys keep their defaults.
    assert_eq!(hr.low, EngineConfig::default().rules(Vital::HeartRate).low);
}

#[test]
fn breathing_sections_are_parsed_and_bounded() {
    let cfg = parse(
        r#"
        [alarms.rr]
        low = { limit = 6, priority = "high" }
        discharge = true
        [alarms.etco2]
        high = { limit = 55, priority = "medium" }
        [alarms.apnoea]
        delay = "10s"
        priority = "medium"
        "#,
        "x",
    )
    .unwrap();
    let rr = cfg.engine.rules(Vital::RespRate);
    assert_eq!(rr.low, Some(Limit::new(6.0, Priority::High)));
    assert!(rr.discharge);
    assert_eq!(
        cfg.engine.rules(Vital::EtCo2).high,
        Some(Limit::new(55.0, Priority::Medium))
    );
    assert_eq!(cfg.engine.apnoea.delay, Duration::from_secs(10));
    assert_eq!(cfg.engine.apnoea.priority, Priority::Medium);
    // The bound itself is accepted; defaults are the shipped ones.
    let cfg = parse("[alarms.apnoea]\ndelay = \"40s\"\n", "x").unwrap();
    assert_eq!(cfg.engine.apnoea.delay, Duration::from_secs(40));
    let d = EngineConfig::default();
    assert_eq!(d.apnoea.delay, Duration::from_secs(20));
    assert_eq!(d.apnoea.priority, Priority::High);
    assert!(!d.rules(Vital::RespRate).discharge && d.rules(Vital::HeartRate).discharge);
    let e = errors("[alarms.apnoea]\nwait = \"20s\"\n");
    assert!(e.iter().any(|m| m.contains("alarms.apnoea.wait")), "{e:?}");
}

#[test]
fn sources_are_validated() {
    let errs = errors(
        r#"
        [[source]]
        name = "mon itor"
        protocol = "acme"
        serial = "/dev/ttyS0"
        tcp = "x:1"
        [[source]]
        name = "ox"
        protocol = "masimo"
        tcp = "nohost"
        baud = 9600
        "#,
    );
    let joined = errs.join("\n");
    for needle in [
        "source[0].name: `mon itor`",
        "source[0].protocol: unknown protocol `acme`",
        "source[0]: give exactly one of",
        "source[1].tcp: `nohost` is not host:port",
        "source[1].baud: only applies to serial sources",
    ] {
        assert!(joined.contains(needle), "missing {needle:?} in\n{joined}");
    }
    let cfg = parse(
        r#"
        [[source]]
        name = "monitor"
        protocol = "ge-s5"
        serial = "/dev/ttyUSB0"
        "#,
        "x",
    )
    .unwrap();
    assert_eq!(
        cfg.sources[0].link,
        Link::Serial {
            device: "/dev/ttyUSB0".into(),
            settings: SerialSettings {
                baud: 19_200,
                parity: Parity::Even,
                stop_bits: 1,
                rts_cts: true
            }
        }
    );
    assert_eq!(cfg.engine.source_names, vec!["monitor".to_owned()]);
}

#[test]
fn the_mqtt_section_is_validated_key_by_key() {
    let errs = errors(
        r#"
        [mqtt]
        broker = "http://example.org"
        listen = "localhost"
        prefix = "vigil/#/"
        client_id = "has space"
        heartbeat = "10ms"
        outbox_max = 3
        client_cert = "cert.pem"
        state_dir = ""
        colour = "blue"
        "#,
    );
    for key in [
        "mqtt.broker",
        "mqtt.listen",
        "mqtt.prefix",
        "mqtt.client_id",
        "mqtt.heartbeat",
        "mqtt.outbox_max",
        "mqtt.client_cert and mqtt.client_key",
        "mqtt.state_dir",
        "mqtt.colour: unknown key",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(key)),
            "{key} not reported in {errs:#?}"
        );
    }
    let errs = errors("[mqtt]\nembedded = false\nbroker = \"mqtts://broker.example\"");
    assert!(errs[0].starts_with("mqtt.ca_file"), "{errs:?}");

    let cfg = parse(
        r#"
        [mqtt]
        embedded = false
        broker = "mqtts://broker.example"
        ca_file = "/etc/vigil/ca.pem"
        credentials_file = "/etc/vigil/mqtt"
        state_dir = "/var/lib/vigil-test"
        "#,
        "t",
    )
    .unwrap();
    assert_eq!(
        parse_broker_url(&cfg.mqtt.broker).unwrap(),
        BrokerUrl {
            tls: true,
            host: "broker.example".into(),
            port: 8883
        }
    );
    assert_eq!(parse(&render(&cfg), "rendered").unwrap(), cfg);
    assert_eq!(
        parse_broker_url("mqtt://[::1]:1884").unwrap().host,
        "::1".to_owned()
    );
    assert!(parse_broker_url("mqtt://host:0").is_err());
}

#[test]
fn durations_parse_and_format() {
    assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("1h30min"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_duration("10"), None);
    assert_eq!(parse_duration("s"), None);
    assert_eq!(parse_duration("5 weeks"), None);
    for d in [0u64, 1, 999, 1000, 60_000, 5_400_000, 3_600_000] {
        let d = Duration::from_millis(d);
        assert_eq!(parse_duration(&format_duration(d)), Some(d));
    }
}

/// The whole message of an invalid configuration, as `vigil check-config` prints it.
fn shown(text: &str) -> String {
    parse(text, "clinic.toml").unwrap_err().to_string()
}

#[test]
fn unknown_keys_are_reported_with_their_path_and_place() {
    let text = "[site]\nsite = \"north\"\n\n[[source]]\nname = \"m\"\nprotocol = \"ge-s5\"\nserial = \"/dev/ttyUSB0\"\ncolour = 1\n\n[alarms.hr]\nhi = { limit = 120, priority = \"medium\" }\nlow = { limit = 50, priority = \"medium\", dealy = \"5s\" }\n[alarms.technical]\nstorage = \"high\"\n";
    let shown = shown(text);
    for needle in [
        "clinic.toml:8:1: source[0].colour: unknown key (expected one of: name, protocol,",
        "clinic.toml:11:1: alarms.hr.hi: unknown key (expected one of: enabled, low,",
        "clinic.toml:12:42: alarms.hr.low.dealy: unknown key (expected one of: limit, priority, delay)",
        "clinic.toml:14:1: alarms.technical.storage: unknown key (expected one of: stale,",
    ] {
        assert!(shown.contains(needle), "missing {needle:?} in\n{shown}");
    }
    assert!(shown.starts_with("clinic.toml: 4 error(s):"), "{shown}");
}

#[test]
fn type_errors_name_the_key_line_and_column() {
    let shown = shown("[alarms]\nrealert_after = 120\n\n[alarms.spo2]\nlatching = \"yes\"\nlow = 90\n[mqtt]\noutbox_max = 1.5\n");
    for needle in [
        "clinic.toml:2:1: alarms.realert_after: expected a string (a duration such as \"10s\" or \"5min\"), found integer 120",
        "clinic.toml:5:1: alarms.spo2.latching: expected true or false, found string \"yes\"",
        "clinic.toml:6:1: alarms.spo2.low: expected { limit = ..., priority = \"...\" } or \"off\", found integer 90",
        "clinic.toml:8:1: mqtt.outbox_max: expected a whole number, found float 1.5",
    ] {
        assert!(shown.contains(needle), "missing {needle:?} in\n{shown}");
    }
    // A table where a value belongs, and a value where a table belongs.
    let shown = self::shown("alarms = 5\n[site]\nsite = { name = \"north\" }\n");
    assert!(
        shown.contains("clinic.toml:1:1: alarms: expected a table, found integer 5"),
        "{shown}"
    );
    assert!(
        shown.contains("clinic.toml:3:1: site.site: expected a string, found a table"),
        "{shown}"
    );
    let errs = errors("source = 5\n");
    assert_eq!(
        errs,
        ["source: expected [[source]] tables, found integer 5"]
    );
    let errs = errors("source = [\"monitor\"]\n");
    assert_eq!(
        errs,
        ["source[0]: expected a table ([[source]]), found string \"monitor\""]
    );
}

/// Issue #15: a limit with a misspelt priority still takes part in the
/// cross-field checks with the number written, not the default; every
/// cross-field problem of every vital is reported in one go.
#[test]
fn cross_field_errors_are_all_reported_with_the_values_as_written() {
    let text = r#"
[alarms.spo2]
low = { limit = 95, priority = "hihg" }
high = { limit = 90, priority = "low" }

[alarms.hr]
low = { limit = 130, priority = "medium" }
critical_high = { limit = 125, priority = "high", delay = "5s" }

[alarms.nibp_dia]
plausible = [120, 60]
"#;
    let errs = errors(text);
    for needle in [
        "alarms.spo2.low.priority: `hihg` is not a priority (expected low, medium or high)",
        "alarms.spo2.low (95) must be below alarms.spo2.high (90)",
        // The default critical_low (85) is below the written 95: no complaint.
        "alarms.hr.low (130) must be below alarms.hr.high (120)",
        "alarms.hr.low (130) must be below alarms.hr.critical_high (125)",
        "alarms.hr.critical_high.delay: the critical tier never has a delay",
        "alarms.nibp_dia.plausible: min (120) must be below max (60)",
    ] {
        assert!(
            errs.iter().any(|e| e == needle),
            "missing {needle:?} in {errs:#?}"
        );
    }
    assert!(
        !errs
            .iter()
            .any(|e| e.contains("(90) must be below alarms.spo2.high (90)")),
        "a default stood in for the written value: {errs:#?}"
    );
    // The written value of a limit decides where the problem is shown.
    let shown = shown(text);
    assert!(
        shown.contains("clinic.toml:3:1: alarms.spo2.low (95) must be below alarms.spo2.high (90)"),
        "{shown}"
    );
    assert!(
        shown.contains("clinic.toml:7:1: alarms.hr.low (130) must be below alarms.hr.high (120)"),
        "{shown}"
    );
}

#[test]
fn settings_are_bounded_and_the_message_names_the_range() {
    let source = "[[source]]\nname = \"m\"\nprotocol = \"vigil-line\"\n";
    for (text, needle) in [
        (format!("{source}tcp = \"h:1\"\ntimeout = \"0s\""), "source[0].timeout (0s) must be between 1s and 1h"),
        (format!("{source}tcp = \"h:1\"\ntimeout = \"8760000h\""), "source[0].timeout (365000d) must be between 1s and 1h"),
        (format!("{source}tcp = \"h:99999\""), "source[0].tcp: `h:99999` is not host:port with a port up to 65535"),
        (format!("{source}serial = \"/dev/tty\\u001b[2J\""), "source[0].serial: `/dev/tty\\u{1b}[2J` contains the control character U+001B"),
        (format!("{source}serial = \"\""), "source[0].serial: must be 1 to 1024 characters, found 0"),
        (format!("{source}simulated = \"demo\"\nspeed = 0"), "source[0].speed (0) must be above 0 and at most 10000"),
        (format!("{source}serial = \"/dev/ttyS0\"\nbaud = 10"), "source[0].baud (10) must be a whole number from 50 to 4000000"),
        ("[alarms]\ntechnical_delay = \"1h\"".into(), "alarms.technical_delay (1h) must be at most 1min"),
        ("[alarms]\nrealert_after = \"0s\"".into(), "alarms.realert_after (0s) must be between 1s and 1h"),
        ("[alarms]\nescalate_after = \"2d\"".into(), "alarms.escalate_after (2d) must be between 1s and 1h (or \"off\")"),
        ("[alarms]\nmax_audio_pause = \"3min\"".into(), "alarms.max_audio_pause (3min) must be between 1s and 2min (IEC 60601-1-8"),
        ("[alarms.hr]\nplausible = [0, 1000]".into(), "alarms.hr.plausible ([0, 1000]) must be within [0, 350], the range of any hr reading"),
        ("[alarms.spo2]\nlow = { limit = 120, priority = \"low\" }".into(), "alarms.spo2.low (120) lies outside the plausible range [30, 100]"),
        ("[alarms.spo2]\nhysteresis = 80".into(), "alarms.spo2.hysteresis (80) must be between 0 and 50"),
        ("[alarms.hr]\nhigh = { limit = 130, priority = \"low\", delay = \"1h\" }".into(), "alarms.hr.high.delay (1h) must be at most 10min"),
        ("[alarms.hr]\nbaseline = { rise_percent = 500, priority = \"low\" }".into(), "alarms.hr.baseline.rise_percent (500) must be greater than zero and at most 100"),
        ("[alarms.spo2]\nrate = { window = \"60s\", fall = 200, priority = \"low\" }".into(), "alarms.spo2.rate.fall (200) must be greater than zero and at most 70"),
        ("[alarms.nibp]\ncycle = \"1d\"".into(), "alarms.nibp.cycle (1d) must be between 1min and 2h"),
        ("[alarms.apnoea]\ndelay = \"5s\"".into(), "alarms.apnoea.delay (5s) must be between 10s and 40s (the monitors' apnoea delay range)"),
        ("[alarms.apnoea]\ndelay = \"41s\"".into(), "alarms.apnoea.delay (41s) must be between 10s and 40s"),
        ("[alarms.apnoea]\npriority = \"urgent\"".into(), "alarms.apnoea.priority"),
        ("[alarms.rr]\nplausible = [0, 300]".into(), "alarms.rr.plausible ([0, 300]) must be within [0, 200], the range of any rr reading"),
        ("[alarms.etco2]\nhigh = { limit = 180, priority = \"low\" }".into(), "alarms.etco2.high (180) lies outside the plausible range [0, 150]"),
        ("[alarms.nibp]\nconfirm_window = \"10s\"".into(), "alarms.nibp.confirm_window (10s) must be between 1min and 2h (or \"off\")"),
        ("[alarms.link]\nmin_errors = 0".into(), "alarms.link.min_errors (0) must be a whole number from 1 to 10000"),
        ("[session.discharge]\nhold = \"1d\"".into(), "session.discharge.hold (1d) must be between 1min and 4h"),
        ("[session.baseline]\nmin_continuous = \"2h\"".into(), "session.baseline.min_continuous (2h) must be between 1s and 1h"),
        ("[recording]\nretention = \"100000d\"".into(), "recording.retention (100000d) must be between 1d and 3650d"),
        ("[mqtt]\nheartbeat = \"1h\"".into(), "mqtt.heartbeat (1h) must be between 100ms and 1min"),
        ("[mqtt]\ncommand_max_age = \"30d\"".into(), "mqtt.command_max_age (30d) must be between 1s and 1h"),
        ("[mqtt]\nvitals_expiry = \"2h\"".into(), "mqtt.vitals_expiry (2h) must be between 1s and 1h"),
        ("[mqtt]\nprotocol = \"4\"".into(), "mqtt.protocol: `4` must be \"5\" (MQTT 5, the default) or \"3.1.1\""),
        ("[mqtt]\nprefix = \"vigil/\\u0007/\"".into(), "mqtt.prefix: `vigil/\\u{7}/` must be a topic path"),
        // The displays find the bed at {site} and {bed}: without them no display reads it.
        ("[mqtt]\nprefix = \"vigil/v1/bed-1/\"".into(), "mqtt.prefix: `vigil/v1/bed-1/` must be a topic path of at most 200 printable characters ending in '/', with {site} and {bed} each once as a level of its own (e.g. vigil/v1/{site}/{bed}/)"),
        ("[mqtt]\nprefix = \"vigil/{site}-{bed}/\"".into(), "mqtt.prefix: `vigil/{site}-{bed}/` must be a topic path"),
        ("[mqtt]\nstate_dir = \"state\\n\"".into(), "mqtt.state_dir: `state\\n` contains the control character U+000A"),
        ("[site]\nbed = \"bed/1\"".into(), "site.bed: `bed/1` must be 1-64 letters, digits, '-' or '_' (it is part of MQTT topics)"),
    ] {
        let errs = errors(&text);
        assert!(
            errs.iter().any(|e| e.starts_with(needle)),
            "{needle:?} not in {errs:#?} for\n{text}"
        );
    }
    // The bounds themselves are accepted.
    parse(
        "[alarms]\ntechnical_delay = \"1min\"\nrealert_after = \"1h\"\n[mqtt]\nheartbeat = \"100ms\"\n[recording]\nretention = \"3650d\"\n",
        "x",
    )
    .unwrap();
}

#[test]
fn runnable_refuses_what_start_up_refuses() {
    let cfg = parse("[site]\nsite = \"north\"\n", "north.toml").unwrap();
    let e = runnable(cfg, "north.toml").unwrap_err();
    let ConfigError::NotReady {
        missing, warnings, ..
    } = &e
    else {
        panic!("{e:?}");
    };
    assert!(
        missing[0].starts_with("no [[source]] configured"),
        "{missing:?}"
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(
        e.to_string()
            .starts_with("north.toml: not ready to run: 1 problem(s)"),
        "{e}"
    );
    let with_source = "[site]\nsite = \"north\"\n[[source]]\nname = \"m\"\nprotocol = \"masimo\"\ntcp = \"10.0.0.7:4001\"\n";
    let cfg = parse(with_source, "north.toml").unwrap();
    assert_eq!(runnable(cfg.clone(), "north.toml").unwrap(), cfg);
}

fn with_strings(device: &str, scenario: &str, dir: &str, state: &str, creds: &str) -> Config {
    let mut cfg = Config::default();
    cfg.sources.push(SourceConfig {
        name: "monitor".into(),
        protocol: ProtocolKind::Philips,
        link: Link::Serial {
            device: device.into(),
            settings: ProtocolKind::Philips.default_serial(),
        },
        timeout: Duration::from_millis(2500),
        vitals: vec![Vital::SpO2, Vital::PulseRate],
    });
    cfg.sources.push(SourceConfig {
        name: "sim".into(),
        protocol: ProtocolKind::Line,
        link: Link::Simulated {
            scenario: scenario.into(),
            speed: 12.5,
            seed: u64::from(u32::MAX) * 3,
        },
        timeout: Duration::from_secs(30),
        vitals: Vital::ALL.to_vec(),
    });
    cfg.engine.source_names = vec!["monitor".into(), "sim".into()];
    cfg.engine.link.max_error_rate = 0.2;
    cfg.recording.dir = dir.into();
    cfg.mqtt.state_dir = StateDir::Path(state.into());
    cfg.mqtt.credentials_file = Some(creds.into());
    cfg
}

#[test]
fn rendering_escapes_quotes_unicode_and_control_characters() {
    let cfg = with_strings(
        "/dev/serial/by-id/usb-\"Prolific\"_\\x_ünïcødé_串口",
        "a 'scenario' with \"quotes\" and a \\ backslash",
        "récordings/☃",
        "C:\\state",
        "/etc/vigil/mqtt\u{200b}",
    );
    let text = render(&cfg);
    assert_eq!(parse(&text, "rendered").unwrap(), cfg, "{text}");
    // Control characters come out as TOML escapes (not Rust's `\u{1b}`): the
    // text is valid TOML holding the exact string, and the validate step
    // names the key that may not hold it.
    let cfg = with_strings("/dev/tty\u{1b}[31m\u{7f}", "demo", "rec\tordings", "s", "c");
    let text = render(&cfg);
    assert!(!text.contains("\\u{"), "{text}");
    let table: toml::Table = text.parse().expect("valid TOML");
    assert_eq!(
        table["source"][0]["serial"].as_str(),
        Some("/dev/tty\u{1b}[31m\u{7f}")
    );
    assert_eq!(table["recording"]["dir"].as_str(), Some("rec\tordings"));
    let errs = errors(&text);
    assert!(
        errs[0].starts_with(
            "source[0].serial: `/dev/tty\\u{1b}[31m\\u{7f}` contains the control character U+001B"
        ),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("recording.dir: `rec\\tordings` contains the control character U+0009"),
        "{errs:?}"
    );
}

proptest::proptest! {
    /// Any printable string (quotes, backslashes, any script) in any string
    /// setting renders to TOML that parses back to the same configuration.
    #[test]
    fn render_round_trips_any_printable_string(
        device in "\\PC{1,40}",
        scenario in "\\PC{1,40}",
        dir in "\\PC{1,40}",
        state in "\\PC{1,40}",
        creds in "\\PC{1,40}",
        limit in 31.0f32..99.0,
    ) {
        proptest::prop_assume!(state != "auto" && creds != "off");
        let mut cfg = with_strings(&device, &scenario, &dir, &state, &creds);
        cfg.engine.vitals[Vital::SpO2.index()].critical_low = None;
        cfg.engine.vitals[Vital::SpO2.index()].low = Some(Limit::new(limit, Priority::Low));
        let text = render(&cfg);
        proptest::prop_assert_eq!(parse(&text, "rendered").unwrap(), cfg, "{}", text);
    }
}
