//! A throw-away certificate authority for the TLS tests, made with the
//! openssl command line: a CA, server certificates for loopback and client
//! certificates with a chosen common name.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Runs openssl in `dir`; the TLS tests need it to make their certificates.
fn openssl(dir: &Path, args: &[&str]) {
    let ok = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    assert!(
        ok.is_ok_and(|s| s.success()),
        "openssl {args:?} failed (apt-get install openssl)"
    );
}

const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A CA in a directory; certificates are `NAME.pem` with key `NAME.key`.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// Makes the CA (`ca.pem`, `ca.key`) in `dir`.
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("create the certificate directory");
        let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=vigil-test-ca"];
        ca.extend(EC);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(dir, &ca);
        Pki {
            dir: dir.to_owned(),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self, name: &str) -> (PathBuf, PathBuf) {
        self.issue(
            name,
            "/CN=localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
    }

    /// A client certificate with common name `cn`.
    pub fn client(&self, name: &str, cn: &str) -> (PathBuf, PathBuf) {
        self.issue(name, &format!("/CN={cn}"), "extendedKeyUsage=clientAuth\n")
    }

    fn issue(&self, name: &str, subject: &str, ext: &str) -> (PathBuf, PathBuf) {
        let (key, csr, pem, extfile) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        std::fs::write(self.dir.join(&extfile), ext).expect("write the extension file");
        let mut req = vec!["req", "-subj", subject];
        req.extend(EC);
        req.extend(["-keyout", &key, "-out", &csr]);
        openssl(&self.dir, &req);
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &extfile,
                "-out",
                &pem,
            ],
        );
        (self.dir.join(pem), self.dir.join(key))
    }
}
