//! The Unix-directory resolver's shared half: the replicas are the Unix
//! sockets in one directory (a process that serves creates its socket
//! there; one that stops removes it).
//!
//! The directory is polled, every [`UNIXDIR_POLL`], rather than watched
//! with inotify: a readdir five times a second costs nothing next to a
//! client's work, it behaves the same on every Unix (kqueue and inotify
//! differ, and a `notify` watcher needs a thread of its own), and it
//! notices a change well within a second. The drivers only sleep between
//! [`UnixDir::scan`]s.

use crate::resolver::ResolveError;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use weft_proto::EndpointsVersion;

/// How often the directory is read while a client waits for a change.
pub const UNIXDIR_POLL: Duration = Duration::from_millis(200);

/// The sockets in a directory, versioned: each scan that finds a different
/// set is a new version.
#[derive(Debug)]
pub struct UnixDir {
    dir: PathBuf,
    last: Mutex<(Vec<PathBuf>, EndpointsVersion)>,
}

impl UnixDir {
    /// The resolver of `dir`'s sockets.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        UnixDir {
            dir: dir.into(),
            last: Mutex::new((Vec::new(), EndpointsVersion(0))),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the directory: its sockets in name order and the version of
    /// that set. Files that are not sockets are ignored; a directory that
    /// cannot be read is an error naming it.
    pub fn scan(&self) -> Result<(Vec<PathBuf>, EndpointsVersion), ResolveError> {
        let err = |e: std::io::Error| ResolveError(format!("unixdir {}: {e}", self.dir.display()));
        let mut sockets = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(err)? {
            let entry = entry.map_err(err)?;
            // A socket removed between readdir and stat is just gone.
            if entry.file_type().is_ok_and(|t| t.is_socket()) {
                sockets.push(entry.path());
            }
        }
        sockets.sort();
        let mut last = self.last.lock().expect("unixdir state poisoned");
        if last.1 == EndpointsVersion(0) || last.0 != sockets {
            last.0 = sockets;
            last.1 = EndpointsVersion(last.1.0 + 1);
        }
        Ok(last.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn versions_follow_the_set_of_sockets() {
        let dir = std::env::temp_dir().join(format!("weft-unixdir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = UnixDir::new(&dir);
        let (set, v1) = r.scan().unwrap();
        assert!(set.is_empty());
        let _a = UnixListener::bind(dir.join("a.sock")).unwrap();
        std::fs::write(dir.join("notes.txt"), "not a socket").unwrap();
        let (set, v2) = r.scan().unwrap();
        assert_eq!(set, [dir.join("a.sock")]);
        assert!(v2.0 > v1.0);
        // Nothing changed: the same version.
        assert_eq!(r.scan().unwrap().1, v2);
        std::fs::remove_file(dir.join("a.sock")).unwrap();
        let (set, v3) = r.scan().unwrap();
        assert!(set.is_empty() && v3.0 > v2.0);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(r.scan().unwrap_err().0.contains("weft-unixdir"));
    }
}
