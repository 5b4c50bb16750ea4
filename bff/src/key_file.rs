//! A session key kept in a file: made once, read at every start after, so that a development
//! server's restarts keep everyone signed in ([`KeyRing::load_or_create`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::seal::{generate_key_spec, KeyError, KeyRing};

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file exists but cannot be read.
    #[error("cannot read the session key file {path}: {source} (fix its permissions or delete it)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file (or its directory) cannot be made.
    #[error("cannot keep the session key in {path}: {source} (choose a writable place)")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds something else than a key.
    #[error(
        "the session key file {path} does not hold a key ({problem}); delete it and a new one is \
         made at the next start (everyone is signed out)"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with its content.
        problem: KeyError,
    },
}

/// Whether [`KeyRing::load_or_create`] read the key or made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFile {
    /// Read from the file.
    Kept,
    /// Made now and written to the file.
    Made,
}

impl KeyRing {
    /// The key ring kept in `path`, made (and written with owner-only permissions) when the
    /// file does not exist: a development server's key that survives its restarts, so nobody is
    /// signed out by an edit. Production configures its keys instead ([`KeyRing::parse`]).
    ///
    /// Two processes starting at once agree on one key: the file appears whole or not at all
    /// (written aside, then hard-linked into place, which fails if another got there first).
    pub fn load_or_create(path: &Path) -> Result<(KeyRing, KeyFile), KeyFileError> {
        match std::fs::read_to_string(path) {
            Ok(spec) => Ok((parse(path, &spec)?, KeyFile::Kept)),
            // Missing, or a path through a plain file: making it says what is wrong.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
                create(path)
            }
            Err(source) => Err(KeyFileError::Read { path: path.to_path_buf(), source }),
        }
    }
}

fn parse(path: &Path, spec: &str) -> Result<KeyRing, KeyFileError> {
    KeyRing::parse(spec.trim()).map_err(|problem| KeyFileError::Invalid { path: path.to_path_buf(), problem })
}

fn create(path: &Path) -> Result<(KeyRing, KeyFile), KeyFileError> {
    let write_error = |source| KeyFileError::Write { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_error)?;
    }
    let spec = generate_key_spec(1);
    let aside = path.with_extension(format!("new-{}-{:016x}", std::process::id(), rand::random::<u64>()));
    let written = private_file(&aside).and_then(|mut f| {
        f.write_all(spec.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    });
    if let Err(source) = written {
        let _ = std::fs::remove_file(&aside);
        return Err(write_error(source));
    }
    let linked = std::fs::hard_link(&aside, path);
    let _ = std::fs::remove_file(&aside);
    match linked {
        Ok(()) => Ok((parse(path, &spec)?, KeyFile::Made)),
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let spec = std::fs::read_to_string(path)
                .map_err(|source| KeyFileError::Read { path: path.to_path_buf(), source })?;
            Ok((parse(path, &spec)?, KeyFile::Kept))
        }
        Err(source) => Err(write_error(source)),
    }
}

/// A new file only its owner can read.
#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/session-key");
        let (first, origin) = KeyRing::load_or_create(&path).unwrap();
        assert_eq!(origin, KeyFile::Made);
        let sealed = first.seal("c", b"hello");
        let (second, origin) = KeyRing::load_or_create(&path).unwrap();
        assert_eq!(origin, KeyFile::Kept);
        assert_eq!(second.open("c", &sealed).unwrap().plaintext, b"hello");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "nothing left aside");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "readable by its owner only: {mode:o}");
        }
    }

    #[test]
    fn a_damaged_file_is_named_with_the_fix_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session-key");
        for garbage in ["", "not a key", "1:c2hvcnQ="] {
            std::fs::write(&path, garbage).unwrap();
            let e = KeyRing::load_or_create(&path).unwrap_err().to_string();
            assert!(e.contains("session-key") && e.contains("delete it"), "{e}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), garbage, "never overwritten");
        }
    }

    #[test]
    fn an_unwritable_place_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let e = KeyRing::load_or_create(&file.join("session-key")).unwrap_err().to_string();
        assert!(e.contains("a-file") && e.contains("writable"), "{e}");
    }

    #[test]
    fn processes_starting_together_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session-key");
        let rings: Vec<KeyRing> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| KeyRing::load_or_create(&path).unwrap().0)).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let sealed = rings[0].seal("c", b"same");
        for ring in &rings {
            assert_eq!(ring.open("c", &sealed).unwrap().plaintext, b"same");
        }
    }
}
