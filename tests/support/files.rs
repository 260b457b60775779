//! Files the tests make: throwaway certificates (openssl) and small text files.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Puts a FIFO that nobody writes to in the place of `path`: a reader blocks on it, as on a
/// stuck NFS or CSI mount.
pub fn replace_with_fifo(path: &Path) {
    std::fs::remove_file(path).expect("remove the file");
    let made = Command::new("mkfifo").arg(path).status().expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// Writes `contents` to a new file in `dir`.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write file");
    path
}

/// A CA, a server certificate for `redis.test` and 127.0.0.1, a client certificate, and an
/// unrelated ("rogue") CA, all in a temp dir.
pub struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    pub fn make() -> Self {
        let certs = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        certs.sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca 2>/dev/null
            openssl req -x509 -newkey rsa:2048 -nodes -keyout rogue.key -out rogue.pem -days 2 -subj /CN=rogue-ca 2>/dev/null
            printf 'subjectAltName=DNS:redis.test,IP:127.0.0.1\\n' > server.ext
            openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=redis.test 2>/dev/null
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext 2>/dev/null
            printf 'extendedKeyUsage=clientAuth\\n' > client.ext
            openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=redis-healthd 2>/dev/null
            openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 -extfile client.ext 2>/dev/null");
        certs
    }

    /// Runs a shell script in the certificates' directory (to make more of them).
    pub fn sh(&self, script: &str) {
        let out = Command::new("sh")
            .arg("-ec")
            .arg(script)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A certificate's notAfter as Unix time, read by openssl.
    pub fn not_after(&self, name: &str) -> f64 {
        let out = Command::new("sh")
            .arg("-ec")
            .arg(format!(
                "date -u -d \"$(openssl x509 -noout -enddate -in {name} | cut -d= -f2)\" +%s"
            ))
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn arg(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }
}
