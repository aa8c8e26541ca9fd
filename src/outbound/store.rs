//! Keeping a login across restarts: the registered client and the refresh token, on disk,
//! so a restart needs no browser and no new registration (ToolHive's proxy keeps nothing,
//! ToolHive #6556, #3331).
//!
//! One JSON file per (authorization server, client, resource), in a 0700 directory, mode
//! 0600, written atomically (temporary file + rename). A file that cannot be read, does not
//! parse, or describes another server or resource is ignored with a warning: it is never
//! trusted and never fatal.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tracing::warn;

/// What is kept of a login.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Saved {
    /// The authorization server (issuer, or token endpoint when there is no issuer).
    pub(crate) server: String,
    pub(crate) resource: String,
    pub(crate) client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) client_secret: Option<String>,
    #[serde(default)]
    pub(crate) token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    pub(crate) refresh_token: Option<String>,
    #[serde(default)]
    pub(crate) scope: Option<String>,
    /// The redirect URI a registered client was registered with.
    #[serde(default)]
    pub(crate) redirect_uri: Option<String>,
    /// The login's DPoP private key (PKCS#8, base64), which its tokens are bound to
    /// (RFC 9449 §5): a refreshed token must be proven with the same key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dpop_key: Option<String>,
}

/// A directory of saved logins.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    dir: PathBuf,
}

impl Store {
    pub(crate) fn new(dir: PathBuf) -> Store {
        Store { dir }
    }

    /// The file for a login. The key covers the server, the resource and the configured
    /// client (`None` for a dynamically registered one), so credentials are never reused
    /// with another authorization server (MCP 2026-07-28 §Authorization Server Binding).
    fn path(&self, server: &str, resource: &str, configured_client: Option<&str>) -> PathBuf {
        let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for part in [server, resource, configured_client.unwrap_or("(registered)")] {
            h.update(part.as_bytes());
            h.update(&[0]);
        }
        let digest = h.finish();
        let name: String = digest.as_ref().iter().take(16).map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("login-{name}.json"))
    }

    /// The saved login, if there is a usable one.
    pub(crate) fn load(&self, server: &str, resource: &str, configured_client: Option<&str>) -> Option<Saved> {
        let path = self.path(server, resource, configured_client);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "ignoring an unreadable token store file");
                return None;
            }
        };
        let saved: Saved = match serde_json::from_str(&text) {
            Ok(s) => s,
            Err(_) => {
                warn!(path = %path.display(), "ignoring a corrupt token store file");
                return None;
            }
        };
        if saved.server != server
            || saved.resource != resource
            || configured_client.is_some_and(|c| c != saved.client_id)
        {
            warn!(path = %path.display(), "ignoring a token store file written for another server or client");
            return None;
        }
        Some(saved)
    }

    /// Saves `login`; failures are logged, not fatal (the proxy works without a store).
    pub(crate) fn save(&self, login: &Saved, configured_client: Option<&str>) {
        if let Err(e) = self.write(login, configured_client) {
            warn!(dir = %self.dir.display(), error = %e, "could not save the login; the next start will ask again");
        }
    }

    fn write(&self, login: &Saved, configured_client: Option<&str>) -> std::io::Result<()> {
        self.ensure_dir()?;
        let path = self.path(&login.server, &login.resource, configured_client);
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        file.write_all(serde_json::to_string(login).map_err(std::io::Error::other)?.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, &path)
    }

    /// The directory (for messages).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn ensure_dir(&self) -> std::io::Result<()> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
    }

    /// Takes the lock of one login, so that two processes started at once (desktop
    /// clients start every bridge together) run one login and the other resumes it from
    /// the store (mcp-remote's lock file, #245). `Ok(None)`: another live process holds
    /// it. A lock is stale, and taken over, when its process is gone or it is older than
    /// `stale_after` (no login of the holder can still be running then).
    ///
    /// A file created exclusively, holding the PID, rather than `flock`: `File::lock` is
    /// newer than the crate's minimum Rust, and the crate has no unsafe code for `flock`.
    pub(crate) fn try_lock(
        &self,
        server: &str,
        resource: &str,
        configured_client: Option<&str>,
        stale_after: Duration,
    ) -> std::io::Result<Option<LoginLock>> {
        self.ensure_dir()?;
        let path = self.path(server, resource, configured_client).with_extension("lock");
        // Two rounds: the second after removing a stale lock.
        for _ in 0..2 {
            match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
                Ok(mut file) => {
                    let pid = std::process::id();
                    file.write_all(pid.to_string().as_bytes())?;
                    return Ok(Some(LoginLock { path, pid }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            if !lock_is_stale(&path, stale_after) {
                return Ok(None);
            }
            warn!(path = %path.display(), "taking over a stale login lock");
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// A login lock held by this process; the file is removed when dropped.
#[derive(Debug)]
pub(crate) struct LoginLock {
    path: PathBuf,
    pid: u32,
}

impl Drop for LoginLock {
    fn drop(&mut self) {
        // Only our own lock: a stale one taken over by another process is theirs now.
        if fs::read_to_string(&self.path).is_ok_and(|held| held.trim() == self.pid.to_string()) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Whether a lock file's holder is gone (its PID has no /proc entry, where there is a
/// /proc) or the lock is older than `stale_after`. A lock being written (no PID yet) is
/// judged by age alone.
fn lock_is_stale(path: &Path, stale_after: Duration) -> bool {
    let old = fs::metadata(path).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
    if old.is_some_and(|age| age > stale_after) {
        return true;
    }
    let pid = fs::read_to_string(path).ok().and_then(|s| s.trim().parse::<u32>().ok());
    match pid {
        Some(pid) if Path::new("/proc/self").exists() => !Path::new(&format!("/proc/{pid}")).exists(),
        _ => false,
    }
}

/// Converts a secret for storage.
pub(crate) fn expose(secret: &Option<SecretString>) -> Option<String> {
    secret.as_ref().map(|s| s.expose_secret().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_permissions_and_foreign_files() {
        let dir = std::env::temp_dir().join(format!("thv-store-test-{}", std::process::id()));
        let store = Store::new(dir.join("nested"));
        let login = Saved {
            server: "https://as.example".into(),
            resource: "https://mcp.example/mcp".into(),
            client_id: "c1".into(),
            client_secret: None,
            token_endpoint_auth_method: Some("none".into()),
            refresh_token: Some("rt".into()),
            scope: Some("a b".into()),
            redirect_uri: None,
            dpop_key: Some("k".into()),
        };
        store.save(&login, None);
        let back = store.load("https://as.example", "https://mcp.example/mcp", None).unwrap();
        assert_eq!(back.refresh_token.as_deref(), Some("rt"));
        assert_eq!(back.dpop_key.as_deref(), Some("k"), "the DPoP key is kept with the login, in the 0600 file");
        let path = store.path("https://as.example", "https://mcp.example/mcp", None);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(store.load("https://other.example", "https://mcp.example/mcp", None).is_none());
        fs::write(&path, "{not json").unwrap();
        assert!(
            store.load("https://as.example", "https://mcp.example/mcp", None).is_none(),
            "corrupt files are ignored"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_login_lock_at_a_time_and_stale_ones_are_taken_over() {
        let dir = std::env::temp_dir().join(format!("thv-store-lock-test-{}", std::process::id()));
        let store = Store::new(dir.clone());
        let long = Duration::from_secs(60);
        let first = store.try_lock("as", "res", None, long).unwrap().expect("free");
        let path = store.path("as", "res", None).with_extension("lock");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(store.try_lock("as", "res", None, long).unwrap().is_none(), "held by a live process");
        assert!(store.try_lock("as", "other", None, long).unwrap().is_some(), "another login has its own lock");
        drop(first);
        assert!(!path.exists(), "released on drop");
        // A holder that is gone (no such PID), and one that is too old.
        fs::write(&path, "4294967295").unwrap();
        assert!(store.try_lock("as", "res", None, long).unwrap().is_some(), "a dead holder's lock is taken over");
        fs::write(&path, std::process::id().to_string()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(store.try_lock("as", "res", None, Duration::from_millis(1)).unwrap().is_some(), "an old lock");
        fs::remove_dir_all(&dir).unwrap();
    }
}
