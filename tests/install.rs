//! The install path an IT person walks: the shipped configuration is
//! refused until a source is filled in (and says so), `vigil setup` writes a
//! file `check-config` accepts, and it never takes away the service user's
//! read access or overwrites a configured file unasked.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::util::daemon::temp_dir;
use crate::util::process::vigil;

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn setup(out: &Path, extra: &[&str]) -> Output {
    let out = out.to_str().unwrap();
    let mut args = vec![
        "setup",
        "--site",
        "north-clinic",
        "--bed",
        "room-2",
        "--protocol",
        "philips-intellivue",
        "--serial",
        "/dev/ttyUSB7",
        "-o",
        out,
    ];
    args.extend_from_slice(extra);
    vigil(&args)
}

#[test]
fn shipped_configuration_names_what_is_missing() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/vigil.toml");
    let out = vigil(&["check-config", shipped]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("not ready to run"), "{stderr}");
    assert!(stderr.contains("no [[source]] configured"), "{stderr}");
    assert!(stderr.contains("vigil setup"), "{stderr}");
    assert!(
        stderr.contains("site.site is still the example"),
        "{stderr}"
    );
    // The daemon refuses it with the same words instead of crash-looping
    // on something vaguer.
    let out = vigil(&["run", "--config", shipped]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no [[source]] configured"), "{stderr}");
}

/// Issue #15: check-config and `vigil run` share one check, so a file that
/// is valid but has no `[[source]]` is refused by both with the same words
/// (check-config used to call it valid). A mistake is shown at its line.
#[test]
fn check_config_refuses_what_run_refuses() {
    let dir = temp_dir("check-config-run");
    let file = dir.join("vigil.toml");
    std::fs::write(&file, "[site]\nsite = \"north-clinic\"\nbed = \"room-2\"\n").unwrap();
    let path = file.to_str().unwrap();
    let out = vigil(&["check-config", path]);
    let (stdout, checked) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{checked}");
    assert!(!stdout.contains("valid"), "{stdout}");
    let refusal = format!("{path}: not ready to run: 1 problem(s)");
    assert!(checked.contains(&refusal), "{checked}");
    assert!(checked.contains("no [[source]] configured"), "{checked}");
    let out = vigil(&["run", "--config", path]);
    let (_, ran) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{ran}");
    let reason = checked
        .lines()
        .find(|l| l.contains("no [[source]]"))
        .unwrap();
    assert!(
        ran.contains(&refusal) && ran.contains(reason.trim()),
        "{ran}"
    );

    std::fs::write(
        &file,
        "[site]\nsite = \"north-clinic\"\n\n[alarms.spo2]\nlow = { limit = 95, priority = \"hihg\" }\n",
    )
    .unwrap();
    let out = vigil(&["check-config", path]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{path}:5:21: alarms.spo2.low.priority: `hihg` is not a priority"
        )),
        "{stderr}"
    );

    // A valid file that names a CA file that is not there: start-up refuses
    // it, and so does check-config now (it used to say "valid").
    let missing = dir.join("no-such-ca.pem");
    std::fs::write(
        &file,
        format!(
            "[site]\nsite = \"north-clinic\"\nbed = \"room-2\"\n\n[[source]]\nname = \"monitor\"\n\
             protocol = \"vigil-line\"\nserial = \"/dev/ttyS0\"\n\n[mqtt]\nembedded = false\n\
             broker = \"mqtts://127.0.0.1:8883\"\nca_file = \"{}\"\n",
            missing.display()
        ),
    )
    .unwrap();
    let out = vigil(&["check-config", path]);
    let (stdout, checked) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{checked}");
    assert!(!stdout.contains("valid"), "{stdout}");
    assert!(checked.contains("not ready to run: 1 file(s)"), "{checked}");
    assert!(
        checked.contains("mqtt.ca_file") && checked.contains("no-such-ca.pem"),
        "{checked}"
    );
    let out = vigil(&["run", "--config", path]);
    let (_, ran) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{ran}");
    assert!(
        ran.contains("mqtt.ca_file") && ran.contains("no-such-ca.pem"),
        "{ran}"
    );
}

#[test]
fn setup_writes_a_file_check_config_accepts() {
    let dir = temp_dir("setup");
    let file = dir.join("vigil.toml");
    let out = setup(&file, &[]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Serial ports on this machine"), "{stderr}");
    assert!(stderr.contains("/dev/ttyUSB7 does not exist"), "{stderr}");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let out = vigil(&["check-config", file.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(stdout.contains("site = \"north-clinic\""), "{stdout}");
    assert!(
        stdout.contains("protocol = \"philips-intellivue\""),
        "{stdout}"
    );
    assert!(stdout.contains("serial = \"/dev/ttyUSB7\""), "{stdout}");
    // The commented alarm sources are still there for the clinic's review.
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.contains("Rheineck-Leyssius"));

    // Configured now: not replaced unasked, and a bad answer writes nothing.
    let out = setup(&file, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("--force"), "{}", text(&out).1);
    let out = vigil(&[
        "setup",
        "--site",
        "north clinic",
        "--bed",
        "b",
        "--protocol",
        "masimo",
        "--tcp",
        "192.0.2.1:4001",
        "-o",
        file.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("site.site"), "{}", text(&out).1);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn setup_replaces_the_example_and_keeps_its_mode() {
    let dir = temp_dir("setup-keep");
    let file = dir.join("vigil.toml");
    std::fs::write(&file, vigil::config::DEFAULT_TOML).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o604)).unwrap();
    let before = std::fs::metadata(&file).unwrap();
    let out = setup(&file, &[]);
    assert!(out.status.success(), "{}", text(&out).1);
    let after = std::fs::metadata(&file).unwrap();
    assert_eq!(after.mode() & 0o7777, 0o604);
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("bed = \"room-2\""));
    // No temporary file left beside it.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    // Without a terminal, a missing answer names its flag.
    let out = vigil(&["setup", "--bed", "b", "-o", "-"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("--site is required"),
        "{}",
        text(&out).1
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `vigil check-config FILE | head -1` (and the other printing commands):
/// a reader that has gone away is no failure and never a panic (exit 101).
/// The pipe's read end is closed before vigil starts, so every write to
/// standard output fails with a broken pipe.
#[test]
fn a_closed_standard_output_is_not_a_panic() {
    let dir = temp_dir("broken-pipe");
    let file = dir.join("vigil.toml");
    let out = setup(&file, &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    let recording = dir.join("r.vrec");
    let csv = dir.join("r.csv");
    std::fs::write(&csv, "time,vital,value\n0,spo2,97\n1,spo2,96\n").unwrap();
    let out = vigil(&[
        "record",
        "import",
        csv.to_str().unwrap(),
        "-o",
        recording.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let file = file.to_str().unwrap();
    let recording = recording.to_str().unwrap();
    for args in [
        vec!["check-config", file],
        vec!["record", "inspect", recording],
        vec!["replay", recording, "--events"],
        vec!["record", "export", recording],
    ] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run vigil");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}
