//! Key files: one ed25519 secret key per file, readable by its owner only.
//!
//! Format: one line, `wasmesh-secret-key-v1 <64 hex characters of the seed>`. Files are created
//! with mode 0600 and never overwritten; a key file that group or others can read is refused on
//! load, since anyone who reads it can sign as its owner.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use wasmesh_protocol::Keypair;

const HEADER: &str = "wasmesh-secret-key-v1";

/// Why a key file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// `gen` never replaces a key: losing a key loses an identity.
    #[error("{path} already exists; refusing to overwrite a key (choose another path)")]
    Exists {
        /// The path.
        path: PathBuf,
    },
    /// The file is readable by group or others.
    #[error("{path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen {
        /// The path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The content is not a wasmesh key.
    #[error("{path} is not a wasmesh key file ({reason})")]
    Malformed {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// The operating system refused. The message carries the cause, so it is not also given as
    /// a `source` (an error chain would print it twice).
    #[error("{path}: {cause}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        cause: io::Error,
    },
    /// No secure randomness was available.
    #[error("no secure random source: {0}")]
    Random(String),
}

impl KeyFileError {
    fn io(path: &Path, source: io::Error) -> Self {
        KeyFileError::Io {
            path: path.to_owned(),
            cause: source,
        }
    }
}

/// A new key pair from the operating system's secure random source.
pub fn generate() -> Result<Keypair, KeyFileError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyFileError::Random(e.to_string()))?;
    Ok(Keypair::from_seed(seed))
}

/// Writes `keys` to a new file at `path` with mode 0600. Fails if `path` exists.
pub fn save_new(path: &Path, keys: &Keypair) -> Result<(), KeyFileError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => KeyFileError::Exists {
                path: path.to_owned(),
            },
            _ => KeyFileError::io(path, source),
        })?;
    let line = format!("{HEADER} {}\n", hex::encode(keys.seed()));
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| KeyFileError::io(path, e))
}

/// Generates a key and saves it at `path` (which must not exist).
pub fn generate_file(path: &Path) -> Result<Keypair, KeyFileError> {
    let keys = generate()?;
    save_new(path, &keys)?;
    Ok(keys)
}

/// Reads a key file, refusing it when group or others may read it.
pub fn load(path: &Path) -> Result<Keypair, KeyFileError> {
    let metadata = fs::metadata(path).map_err(|e| KeyFileError::io(path, e))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    if metadata.len() > 1024 {
        return Err(malformed(path, "too large"));
    }
    let text = fs::read_to_string(path).map_err(|e| KeyFileError::io(path, e))?;
    let hex_seed = text
        .trim_end()
        .strip_prefix(HEADER)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| malformed(path, "missing header"))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(hex_seed, &mut seed).map_err(|_| malformed(path, "bad key digits"))?;
    Ok(Keypair::from_seed(seed))
}

/// Loads the key at `path`, or creates one there (mode 0600) if nothing exists yet.
/// Returns the key and whether it was created.
pub fn load_or_generate(path: &Path) -> Result<(Keypair, bool), KeyFileError> {
    match generate_file(path) {
        Ok(keys) => Ok((keys, true)),
        Err(KeyFileError::Exists { .. }) => Ok((load(path)?, false)),
        Err(e) => Err(e),
    }
}

fn malformed(path: &Path, reason: &'static str) -> KeyFileError {
    KeyFileError::Malformed {
        path: path.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let keys = generate_file(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(&path).unwrap().public(), keys.public());
    }

    #[test]
    fn never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let first = generate_file(&path).unwrap();
        let before = fs::read(&path).unwrap();
        assert!(matches!(
            generate_file(&path),
            Err(KeyFileError::Exists { .. })
        ));
        assert_eq!(fs::read(&path).unwrap(), before);
        let (again, created) = load_or_generate(&path).unwrap();
        assert!(!created);
        assert_eq!(again.public(), first.public());
    }

    #[test]
    fn refuses_readable_files_and_says_how_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        generate_file(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::TooOpen { mode: 0o644, .. }));
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        fs::write(&path, "hello").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(load(&path), Err(KeyFileError::Malformed { .. })));
    }
}
