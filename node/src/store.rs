//! The node's disk store: signed manifests and content-addressed blobs.
//!
//! Layout under the data dir:
//! - `manifests/<publisher hex>/<name>.manifest`: the newest accepted signed manifest of each
//!   module, written with an atomic rename. Re-verified when loaded.
//! - `blobs/<blake3 hex>`: verified Wasm blobs. A published blob is written to `blobs/tmp/`,
//!   hashed while written, fsynced, and renamed into place only when its hash and size match; a
//!   fetched one is received in verified ranges under `blobs/partial/` ([`PartialBlob`]) and
//!   renamed into place once complete. Nothing unverified is ever at a `blobs/<hex>` path, so
//!   nothing unverified is ever served.
//! - `blobs/<blake3 hex>.obao`: the blob's outboard (its BLAKE3 tree's inner hashes, see
//!   [`blob_tree`](crate::blob_tree)), from which any range is served in verified form. Made
//!   when the blob is stored, or when first served if it is missing.
//! - `blobs/partial/`: fetches in progress, kept across attempts and restarts so that a fetch
//!   resumes from what it has; removed after [`PARTIAL_MAX_AGE`] untouched.
//! - `artifacts/`: the executor's compiled-module cache.
//!
//! The blob quota counts all three (`Store::stored_bytes`), and a blob no manifest uses is
//! removed with its partial data and its artifacts (`Store::remove_blob`).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bao_tree::io::outboard::PreOrderOutboard;
use wasmesh_protocol::{ContentHash, Manifest, SignedManifest};

use crate::blob_tree;
use crate::fs_util::{sync_dir, write_atomic};
use crate::partial_blob::{PartialBlob, PartialPaths};

/// A partial blob untouched for this long is removed when the store is opened.
pub const PARTIAL_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Why a blob could not be stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The bytes received do not hash to what was asked for.
    #[error("blob hashes to {actual}, expected {expected}")]
    HashMismatch {
        /// Expected hash.
        expected: ContentHash,
        /// Hash of what arrived.
        actual: ContentHash,
    },
    /// More or fewer bytes than the manifest states.
    #[error("blob has {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// Expected size.
        expected: u64,
        /// Size of what arrived.
        actual: u64,
    },
    /// The file system refused.
    #[error("store I/O: {0}")]
    Io(#[from] io::Error),
}

impl StoreError {
    /// Whether the disk (or the user's quota on it) is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Io(e) if is_disk_full(e))
    }
}

/// Whether an I/O error says the disk (or the user's quota on it) is full.
pub fn is_disk_full(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::StorageFull
        || error.kind() == io::ErrorKind::QuotaExceeded
        || error.raw_os_error() == Some(libc::ENOSPC)
}

/// The disk store of one node.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Bytes of the files directly in `dir` (0 if it cannot be read).
fn files_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

impl Store {
    /// Opens (creating if needed) the store under `data_dir`, and clears unfinished temp files.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let store = Self {
            root: data_dir.to_owned(),
        };
        fs::create_dir_all(store.root.join("manifests"))?;
        let tmp = store.tmp_dir();
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        let partial = store.partial_dir();
        fs::create_dir_all(&partial)?;
        for entry in fs::read_dir(&partial)?.filter_map(Result::ok) {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > PARTIAL_MAX_AGE);
            if stale {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(store)
    }

    /// The executor's artifact folder.
    pub fn artifact_dir(&self) -> PathBuf {
        self.root.join("artifacts")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("blobs").join("tmp")
    }

    fn partial_dir(&self) -> PathBuf {
        self.root.join("blobs").join("partial")
    }

    fn blob_path(&self, hash: &ContentHash) -> PathBuf {
        self.root.join("blobs").join(hash.to_string())
    }

    fn outboard_path(&self, hash: &ContentHash) -> PathBuf {
        self.root.join("blobs").join(format!("{hash}.obao"))
    }

    fn partial_paths(&self, hash: &ContentHash) -> PartialPaths {
        PartialPaths {
            data: self.partial_dir().join(hash.to_string()),
            pairs: self.partial_dir().join(format!("{hash}.obao")),
            blob: self.blob_path(hash),
            outboard: self.outboard_path(hash),
        }
    }

    fn manifest_path(&self, manifest: &Manifest) -> PathBuf {
        self.root
            .join("manifests")
            .join(manifest.publisher.to_string())
            .join(format!("{}.manifest", manifest.name))
    }

    /// Whether a verified blob with this hash is stored.
    pub fn has_blob(&self, hash: &ContentHash) -> bool {
        self.blob_path(hash).is_file()
    }

    /// Reads a stored blob.
    pub fn read_blob(&self, hash: &ContentHash) -> io::Result<Vec<u8>> {
        fs::read(self.blob_path(hash))
    }

    /// Opens a stored blob for streaming, with its size.
    pub fn open_blob(&self, hash: &ContentHash) -> io::Result<(File, u64)> {
        let file = File::open(self.blob_path(hash))?;
        let size = file.metadata()?.len();
        Ok((file, size))
    }

    /// Opens a stored blob with its outboard, for serving ranges of it. Makes the outboard
    /// first if it is missing or the wrong size. Blocking.
    pub fn open_blob_tree(&self, hash: &ContentHash) -> io::Result<(File, PreOrderOutboard<File>)> {
        let (file, size) = self.open_blob(hash)?;
        let tree = blob_tree::tree(size);
        let path = self.outboard_path(hash);
        let fits = |f: &File| f.metadata().is_ok_and(|m| m.len() == tree.outboard_size());
        let outboard = match File::open(&path) {
            Ok(outboard) if fits(&outboard) => outboard,
            _ => {
                self.write_outboard(hash, &fs::read(self.blob_path(hash))?)?;
                File::open(&path)?
            }
        };
        let outboard = PreOrderOutboard {
            root: blob_tree::root(hash),
            tree,
            data: outboard,
        };
        Ok((file, outboard))
    }

    fn write_outboard(&self, hash: &ContentHash, blob: &[u8]) -> io::Result<()> {
        write_atomic(
            &self.outboard_path(hash),
            &blob_tree::outboard_of(blob).data,
        )
    }

    /// Opens the partial blob `hash` of `size` bytes, to fetch (the rest of) it. Blocking.
    pub fn partial_blob(&self, hash: ContentHash, size: u64) -> io::Result<PartialBlob> {
        PartialBlob::open(self.partial_paths(&hash), hash, size)
    }

    /// Starts writing a blob expected to hash to `hash` and have `size` bytes.
    pub fn blob_writer(&self, hash: ContentHash, size: u64) -> io::Result<BlobWriter> {
        let temp = tempfile::Builder::new()
            .prefix(&format!("{}-", hash.short()))
            .tempfile_in(self.tmp_dir())?;
        Ok(BlobWriter {
            temp,
            hasher: blake3::Hasher::new(),
            written: 0,
            expected_hash: hash,
            expected_size: size,
            final_path: self.blob_path(&hash),
        })
    }

    /// Stores a complete blob held in memory (after the same checks as [`BlobWriter`]).
    pub fn put_blob(&self, hash: ContentHash, bytes: &[u8]) -> Result<(), StoreError> {
        if self.has_blob(&hash) {
            return Ok(());
        }
        let mut writer = self.blob_writer(hash, bytes.len() as u64)?;
        writer.write(bytes)?;
        writer.finish()?;
        Ok(self.write_outboard(&hash, bytes)?)
    }

    /// Bytes free for this user on the store's file system.
    pub fn free_bytes(&self) -> io::Result<u64> {
        let path = std::ffi::CString::new(self.root.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the data dir"))?;
        // SAFETY: `statvfs` only writes the struct it is given, and `path` is NUL-terminated.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Bytes the blob quota counts: stored blobs with their outboards, fetches in progress
    /// and compiled artifacts.
    pub fn stored_bytes(&self) -> u64 {
        [
            self.root.join("blobs"),
            self.partial_dir(),
            self.artifact_dir(),
        ]
        .iter()
        .map(|dir| files_bytes(dir))
        .sum()
    }

    /// Deletes a blob (when no manifest uses it any more), with what was fetched of it and its
    /// compiled artifacts.
    pub fn remove_blob(&self, hash: &ContentHash) -> io::Result<()> {
        let partial = self.partial_paths(hash);
        let mut paths = vec![partial.blob, partial.outboard, partial.data, partial.pairs];
        let prefix = format!("{hash}-");
        if let Ok(entries) = fs::read_dir(self.artifact_dir()) {
            paths.extend(
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|e| e.path()),
            );
        }
        for path in paths {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Saves the newest signed manifest of its module, replacing an older one.
    pub fn put_manifest(&self, signed: &SignedManifest) -> io::Result<()> {
        let path = self.manifest_path(&signed.manifest);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        write_atomic(&path, &signed.encode())
    }

    /// Every stored manifest that decodes, with the paths of those that do not.
    pub fn load_manifests(&self) -> io::Result<(Vec<SignedManifest>, Vec<PathBuf>)> {
        let mut manifests = Vec::new();
        let mut broken = Vec::new();
        for publisher in fs::read_dir(self.root.join("manifests"))? {
            let publisher = publisher?.path();
            if !publisher.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&publisher)? {
                let path = entry?.path();
                if path.extension().is_none_or(|ext| ext != "manifest") {
                    continue;
                }
                match fs::read(&path).map(|bytes| SignedManifest::decode(&bytes)) {
                    Ok(Ok(signed)) => manifests.push(signed),
                    _ => broken.push(path),
                }
            }
        }
        Ok((manifests, broken))
    }
}

/// A blob being received: hashed as written, placed in the store only by [`BlobWriter::finish`].
/// Dropped unfinished, it leaves nothing behind.
#[derive(Debug)]
pub struct BlobWriter {
    temp: tempfile::NamedTempFile,
    hasher: blake3::Hasher,
    written: u64,
    expected_hash: ContentHash,
    expected_size: u64,
    final_path: PathBuf,
}

impl BlobWriter {
    /// Appends bytes. Fails as soon as more than the expected size arrives.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let total = self.written + bytes.len() as u64;
        if total > self.expected_size {
            return Err(StoreError::SizeMismatch {
                expected: self.expected_size,
                actual: total,
            });
        }
        self.hasher.update(bytes);
        self.temp.write_all(bytes)?;
        self.written = total;
        Ok(())
    }

    /// Checks size and hash, fsyncs, and moves the blob into the store.
    pub fn finish(self) -> Result<(), StoreError> {
        if self.written != self.expected_size {
            return Err(StoreError::SizeMismatch {
                expected: self.expected_size,
                actual: self.written,
            });
        }
        let actual = ContentHash::from_hasher(&self.hasher);
        if actual != self.expected_hash {
            return Err(StoreError::HashMismatch {
                expected: self.expected_hash,
                actual,
            });
        }
        self.temp.as_file().sync_all()?;
        self.temp
            .persist(&self.final_path)
            .map_err(|e| StoreError::Io(e.error))?;
        if let Some(dir) = self.final_path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_verified_blobs_reach_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = b"\0asm good";
        let hash = ContentHash::of(good);

        let mut liar = store.blob_writer(hash, good.len() as u64).unwrap();
        liar.write(b"\0asm evil").unwrap();
        assert!(matches!(
            liar.finish(),
            Err(StoreError::HashMismatch { .. })
        ));
        assert!(!store.has_blob(&hash));

        let mut long = store.blob_writer(hash, good.len() as u64).unwrap();
        assert!(matches!(
            long.write(b"\0asm good and more"),
            Err(StoreError::SizeMismatch { .. })
        ));
        drop(long);

        store.put_blob(hash, good).unwrap();
        assert_eq!(store.read_blob(&hash).unwrap(), good);
        assert_eq!(
            fs::read_dir(store.tmp_dir()).unwrap().count(),
            0,
            "no temp files left"
        );
    }

    /// The quota counts compiled artifacts and fetches in progress, not only stored blobs, and
    /// a blob goes with its artifacts.
    #[test]
    fn artifacts_and_partial_blobs_count_and_go_with_their_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blob = vec![7u8; 10_000];
        let hash = ContentHash::of(&blob);
        store.put_blob(hash, &blob).unwrap();
        let stored = store.stored_bytes();
        assert!(stored >= 10_000);
        fs::create_dir_all(store.artifact_dir()).unwrap();
        let artifact = store.artifact_dir().join(format!("{hash}-fingerprint.bin"));
        fs::write(&artifact, vec![0u8; 50_000]).unwrap();
        let other = ContentHash::of(b"another blob");
        let partial = store.partial_paths(&other).data;
        fs::write(&partial, vec![0u8; 30_000]).unwrap();
        assert_eq!(store.stored_bytes(), stored + 80_000);
        store.remove_blob(&hash).unwrap();
        assert!(!artifact.exists(), "the artifact stayed after its blob");
        assert!(!store.has_blob(&hash));
        store.remove_blob(&other).unwrap();
        assert_eq!(store.stored_bytes(), 0);
    }
}
