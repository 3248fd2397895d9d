//! A certificate authority of a test's own and a server certificate it signs for
//! 127.0.0.1 and localhost, made with the `openssl` command (Debian's, on every machine
//! of this kind), in a temporary directory removed on drop. The tests of TLS on the wire
//! use it: nothing trusts it but what the test points at it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

pub struct TestCertificates {
    dir: PathBuf,
    /// The CA's certificate: what a client is told to trust.
    pub ca: PathBuf,
    /// The server's certificate (for 127.0.0.1 and localhost) and its private key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCertificates {
    pub fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("water-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let path = |name: &str| dir.join(name);
        let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let ca_key = path("ca-key.pem");
        let ca = path("ca.pem");
        let mut args = vec!["req", "-x509"];
        args.extend(curve);
        args.extend(["-days", "2", "-subj", "/CN=water-rental test CA"]);
        openssl(&args, &[("-keyout", &ca_key), ("-out", &ca)])?;
        let key = path("server-key.pem");
        let request = path("server.csr");
        let mut args = vec!["req"];
        args.extend(curve);
        args.extend(["-subj", "/CN=localhost"]);
        openssl(&args, &[("-keyout", &key), ("-out", &request)])?;
        let extensions = path("server.ext");
        std::fs::write(
            &extensions,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )?;
        let cert = path("server.pem");
        openssl(
            &["x509", "-req", "-days", "2", "-CAcreateserial"],
            &[("-in", &request), ("-CA", &ca), ("-CAkey", &ca_key), ("-extfile", &extensions), ("-out", &cert)],
        )?;
        Ok(Self { dir, ca, cert, key })
    }
}

impl Drop for TestCertificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(args: &[&str], files: &[(&str, &Path)]) -> anyhow::Result<()> {
    let mut command = Command::new("openssl");
    command.args(args);
    for (flag, file) in files {
        command.arg(flag).arg(file);
    }
    let output = command.output().context("running openssl (Debian's package openssl)")?;
    if !output.status.success() {
        bail!("openssl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}
