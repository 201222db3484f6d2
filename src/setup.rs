//! `vigil setup`: a starting configuration for one site, bed and source.
//!
//! [`starting_config`] is pure: it takes the shipped example file
//! ([`config::DEFAULT_TOML`], every alarm default with its source), puts in
//! the clinic's site and bed and one real `[[source]]`, and checks that the
//! result parses back with exactly those values, so `vigil setup` can never
//! write a file that `vigil check-config` rejects.
//!
//! [`write_config`] puts the text where the service reads it without
//! changing who may read it: an existing file keeps its owner, group and
//! mode (the Debian package makes `/etc/vigil/vigil.toml` `root:vigil 0640`);
//! a new file gets mode 0640 and the group of its directory. It replaces a
//! file that already has a source only when told to (`--force`), and it
//! writes through a temporary file and a rename, so a crash leaves either
//! the old file or the new one.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::config::{self, ConfigError, Link, ProtocolKind};

/// Errors of `vigil setup`.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The answers do not make a valid configuration (a site name with a
    /// space, a TCP address without a port, ...).
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The shipped example changed so that setup no longer finds its place
    /// in it (a bug caught by the unit tests).
    #[error("the built-in example configuration lacks `{0}`")]
    Template(&'static str),
    /// The target already holds a configuration with a source.
    #[error(
        "{} already configures a source (or is not a valid configuration): \
         pass --force to replace it, or edit it by hand",
        path.display()
    )]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Reading or writing the file failed.
    #[error("writing {}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
}

/// Where the one source reads its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetupLink {
    /// A serial port (`/dev/ttyUSB0`).
    Serial(PathBuf),
    /// A serial device server, `host:port`.
    Tcp(String),
}

/// What `vigil setup` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answers {
    /// The clinic (`[site] site`).
    pub site: String,
    /// The bed or room (`[site] bed`).
    pub bed: String,
    /// The source's name, used in alarm ids.
    pub source_name: String,
    /// The monitor's protocol.
    pub protocol: ProtocolKind,
    /// Where its bytes come from.
    pub link: SetupLink,
}

const HEADER: &str = "# BEFORE FIRST USE: set [site] to this clinic and bed, and fill in the
# [[source]] below (the patient monitor). `vigil run` refuses to start
# without a source and `vigil check-config` says what is missing.
# `vigil setup` writes such a file for you, asking or from flags.
";
const SITE_LINE: &str = "site = \"demo-clinic\"\n";
const BED_LINE: &str = "bed = \"bed-1\"\n";
const FILL_IN: &str =
    "# FILL IN: remove the \"# \" of the first block and set protocol and serial.\n";

fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn replace_once(text: &str, what: &'static str, with: &str) -> Result<String, SetupError> {
    if !text.contains(what) {
        return Err(SetupError::Template(what.trim_end()));
    }
    Ok(text.replacen(what, with, 1))
}

/// The configuration file for `answers`: the shipped example with the site,
/// the bed and one source filled in, checked by parsing it back.
pub fn starting_config(answers: &Answers) -> Result<String, SetupError> {
    let a = answers;
    let header = format!(
        "# Written by `vigil setup` for site {}, bed {}. Check it with\n\
         #   sudo -u vigil vigil check-config /etc/vigil/vigil.toml\n",
        a.site, a.bed
    );
    let link = match &a.link {
        SetupLink::Serial(path) => format!(
            "serial = {}          # the vigil user must be in the dialout group",
            quoted(&path.to_string_lossy())
        ),
        SetupLink::Tcp(address) => format!("tcp = {}", quoted(address)),
    };
    let source = format!(
        "[[source]]\nname = {}\nprotocol = {}\n{link}\ntimeout = \"10s\"\n\n\
         # Further sources look like these:\n",
        quoted(&a.source_name),
        quoted(a.protocol.key()),
    );
    let mut text = replace_once(config::DEFAULT_TOML, HEADER, &header)?;
    text = replace_once(&text, SITE_LINE, &format!("site = {}\n", quoted(&a.site)))?;
    text = replace_once(&text, BED_LINE, &format!("bed = {}\n", quoted(&a.bed)))?;
    text = replace_once(&text, FILL_IN, &source)?;
    let cfg = config::parse(&text, "the configuration vigil setup writes")?;
    let source_ok = match (cfg.sources.as_slice(), &a.link) {
        ([s], SetupLink::Serial(path)) => {
            matches!(&s.link, Link::Serial { device, .. } if device == path)
        }
        ([s], SetupLink::Tcp(address)) => {
            matches!(&s.link, Link::Tcp { address: t } if t == address)
        }
        _ => false,
    };
    if !source_ok || cfg.site != a.site || cfg.bed != a.bed {
        return Err(SetupError::Template("[[source]]"));
    }
    Ok(text)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SetupError + '_ {
    move |source| SetupError::Io {
        path: path.to_owned(),
        cause: source,
    }
}

/// Writes `text` to `path`, keeping an existing file's owner, group and
/// mode; a new file gets mode 0640 and its directory's group. A file that
/// already configures a source (or does not parse) is replaced only with
/// `force`: the example file without a source is replaced freely.
pub fn write_config(path: &Path, text: &str, force: bool) -> Result<(), SetupError> {
    let (uid, gid, mode) = match std::fs::metadata(path) {
        Ok(meta) => {
            let old = std::fs::read_to_string(path).map_err(io_error(path))?;
            let replaceable = config::parse(&old, "existing")
                .is_ok_and(|cfg| !config::readiness(&cfg).missing.is_empty());
            if !replaceable && !force {
                return Err(SetupError::Exists {
                    path: path.to_owned(),
                });
            }
            (Some(meta.uid()), meta.gid(), meta.mode() & 0o7777)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let meta = std::fs::metadata(dir).map_err(io_error(dir))?;
            (None, meta.gid(), 0o640)
        }
        Err(e) => return Err(io_error(path)(e)),
    };
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{file_name}.setup-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        let meta = f.metadata()?;
        if uid.is_some_and(|u| u != meta.uid()) || gid != meta.gid() {
            std::os::unix::fs::fchown(&f, uid, Some(gid))?;
        }
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers() -> Answers {
        Answers {
            site: "north-clinic".into(),
            bed: "room-2".into(),
            source_name: "monitor".into(),
            protocol: ProtocolKind::Ge,
            link: SetupLink::Serial("/dev/ttyUSB0".into()),
        }
    }

    #[test]
    fn starting_config_is_ready_and_keeps_every_default() {
        let text = starting_config(&answers()).unwrap();
        let cfg = config::parse(&text, "setup").unwrap();
        assert_eq!(config::readiness(&cfg), config::Readiness::default());
        assert_eq!(
            (cfg.site.as_str(), cfg.bed.as_str()),
            ("north-clinic", "room-2")
        );
        assert_eq!(cfg.sources[0].protocol, ProtocolKind::Ge);
        let shipped = config::parse(config::DEFAULT_TOML, "shipped").unwrap();
        assert_eq!(cfg.engine.vitals, shipped.engine.vitals);
        assert_eq!(cfg.mqtt.prefix, shipped.mqtt.prefix);
        assert!(!text.contains("BEFORE FIRST USE") && !text.contains("FILL IN"));
    }

    #[test]
    fn tcp_source_and_bad_answers() {
        let mut a = answers();
        a.link = SetupLink::Tcp("192.0.2.10:4001".into());
        a.protocol = ProtocolKind::Masimo;
        let cfg = config::parse(&starting_config(&a).unwrap(), "setup").unwrap();
        assert!(
            matches!(&cfg.sources[0].link, Link::Tcp { address } if address == "192.0.2.10:4001")
        );
        a.site = "north clinic".into();
        let err = starting_config(&a).unwrap_err().to_string();
        assert!(err.contains("site.site"), "{err}");
        // A quote in a value cannot break out of the TOML string.
        a.site = "x\"\nsite = \"y".into();
        assert!(starting_config(&a).is_err());
    }
}
