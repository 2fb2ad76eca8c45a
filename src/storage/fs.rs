//! The local filesystem backend (distribution's `filesystem` storage driver).

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{Backend, Entry, EntryKind, FileMeta, StorageError};

/// A folder on the local filesystem that holds distribution's `docker/registry/v2` content.
#[derive(Debug, Clone)]
pub struct LocalFs {
    base: PathBuf,
    /// `base` with symlinks resolved (when it exists): what "inside the storage" means.
    real_base: PathBuf,
}

impl LocalFs {
    /// `base` is the `docker/registry/v2` folder itself.
    pub fn new(base: PathBuf) -> Self {
        let real_base = fs::canonicalize(&base).unwrap_or_else(|_| base.clone());
        Self { base, real_base }
    }

    /// Whether `full` resolves to a place inside the storage. A symlink leading out of it (a
    /// repository folder linked in from elsewhere) is never descended into and nothing is
    /// deleted through it: gc must not touch what lies outside the root it was given.
    fn inside(&self, full: &Path) -> bool {
        match fs::canonicalize(full) {
            Ok(real) => real.starts_with(&self.real_base),
            // Gone: nothing to follow or delete.
            Err(_) => true,
        }
    }

    fn outside_error(&self, op: &'static str, full: &Path) -> StorageError {
        io_error(
            op,
            full,
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "it resolves to a place outside the storage root {}",
                    self.base.display()
                ),
            ),
        )
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    fn full(&self, path: &str) -> PathBuf {
        if path.is_empty() {
            self.base.clone()
        } else {
            self.base.join(path)
        }
    }
}

/// Large enough for every link file and most manifests.
const INITIAL_READ: usize = 16 * 1024;

thread_local! {
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> StorageError {
    StorageError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

/// Missing paths are normal in this layout (optional folders, concurrent deletes). `NotADirectory`
/// means a file sits where a folder was expected, which is just as absent for a reader.
fn is_absent(err: &io::Error) -> bool {
    matches!(err.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

fn meta_of(meta: &fs::Metadata) -> FileMeta {
    FileMeta {
        size: meta.len(),
        // Every filesystem a registry runs on records modification times; the epoch fallback
        // only makes such an entry look old, which the callers treat with the grace period rule.
        modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
    }
}

impl Backend for LocalFs {
    fn location(&self) -> String {
        self.base.display().to_string()
    }

    fn list(&self, path: &str) -> Result<Option<Vec<Entry>>, StorageError> {
        let full = self.full(path);
        let reader = match fs::read_dir(&full) {
            Ok(reader) => reader,
            Err(err) if is_absent(&err) => return Ok(None),
            Err(err) => return Err(io_error("list", &full, err)),
        };
        let mut entries = Vec::new();
        for entry in reader {
            let entry = entry.map_err(|err| io_error("list", &full, err))?;
            // `file_type` comes from the directory entry itself on Linux (no extra stat); only
            // symlinks are resolved, as distribution's driver (os.Stat) follows them.
            let kind = match entry.file_type() {
                Ok(t) if t.is_dir() => EntryKind::Dir,
                Ok(t) if t.is_file() => EntryKind::File,
                Ok(t) if t.is_symlink() && !self.inside(&entry.path()) => EntryKind::Other,
                Ok(t) if t.is_symlink() => match fs::metadata(entry.path()) {
                    Ok(m) if m.is_dir() => EntryKind::Dir,
                    Ok(m) if m.is_file() => EntryKind::File,
                    _ => EntryKind::Other,
                },
                _ => EntryKind::Other,
            };
            let (name, kind) = match entry.file_name().into_string() {
                Ok(name) => (name, kind),
                Err(raw) => (raw.to_string_lossy().into_owned(), EntryKind::Other),
            };
            entries.push(Entry { name, kind });
        }
        Ok(Some(entries))
    }

    fn stat(&self, path: &str) -> Result<Option<FileMeta>, StorageError> {
        let full = self.full(path);
        match fs::metadata(&full) {
            Ok(meta) => Ok(Some(meta_of(&meta))),
            Err(err) if is_absent(&err) => Ok(None),
            Err(err) => Err(io_error("stat", &full, err)),
        }
    }

    fn read(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let full = self.full(path);
        let mut file = match File::open(&full) {
            Ok(file) => file,
            Err(err) if is_absent(&err) => return Ok(None),
            Err(err) => return Err(io_error("open", &full, err)),
        };
        // Link files and manifests are small: one `read` into a buffer larger than the file is
        // the whole content, because a read from a regular file returns less than asked only at
        // its end. That saves the `fstat` and the empty second `read` of `read_to_end` on every
        // file. Whatever is read is verified afterwards (a link must parse as a digest, a
        // manifest must hash to its digest), so a short read can only cause a reported error.
        // The buffer is per thread, so it is zeroed once, not for every file.
        READ_BUFFER.with_borrow_mut(|buf| {
            let cap = (limit as usize).saturating_add(1);
            if buf.len() < INITIAL_READ.min(cap) {
                buf.resize(INITIAL_READ.min(cap), 0);
            }
            let mut len = 0;
            loop {
                let window = buf.len().min(cap);
                let n = match file.read(&mut buf[len..window]) {
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    // Reading a folder: EISDIR.
                    Err(err) => return Err(io_error("read", &full, err)),
                };
                len += n;
                if n == 0 || len < window {
                    break;
                }
                if len as u64 > limit {
                    return Err(StorageError::TooLarge {
                        path: full.display().to_string(),
                        size: len as u64,
                        limit,
                    });
                }
                if len == buf.len() {
                    let grown = (buf.len() * 4).min(cap);
                    buf.resize(grown, 0);
                }
            }
            let content = buf[..len].to_vec();
            // Do not keep a huge buffer alive after an unusually large manifest.
            if buf.len() > INITIAL_READ {
                buf.truncate(INITIAL_READ);
                buf.shrink_to_fit();
            }
            Ok(Some(content))
        })
    }

    fn delete(&self, path: &str) -> Result<bool, StorageError> {
        let full = self.full(path);
        // The folder holding what goes must itself be inside the root (a path through a
        // symlinked folder is not), and so must a folder deleted with its content.
        let parent_inside = full.parent().is_none_or(|p| self.inside(p));
        if !parent_inside || !self.inside(&full) && full.is_dir() {
            return Err(self.outside_error("delete", &full));
        }
        let meta = match fs::symlink_metadata(&full) {
            Ok(meta) => meta,
            Err(err) if is_absent(&err) => return Ok(false),
            Err(err) => return Err(io_error("stat", &full, err)),
        };
        let result = if meta.is_dir() {
            fs::remove_dir_all(&full)
        } else {
            fs::remove_file(&full)
        };
        match result {
            Ok(()) => Ok(true),
            Err(err) if is_absent(&err) => Ok(false),
            Err(err) => Err(io_error("delete", &full, err)),
        }
    }

    fn write(&self, path: &str, content: &[u8]) -> Result<(), StorageError> {
        let full = self.full(path);
        let parent = full.parent().unwrap_or(&full).to_owned();
        fs::create_dir_all(&parent).map_err(|e| io_error("create folder", &parent, e))?;
        if !self.inside(&parent) {
            return Err(self.outside_error("write", &full));
        }
        // A temporary file next to it, renamed over it: the registry never reads half a link.
        let tmp = parent.join(format!(
            ".regsweep-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        fs::write(&tmp, content).map_err(|e| io_error("write", &tmp, e))?;
        fs::rename(&tmp, &full).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_error("write", &full, e)
        })
    }

    fn remove_empty_dir(&self, path: &str) -> Result<bool, StorageError> {
        let full = self.full(path);
        if !self.inside(&full) {
            return Err(self.outside_error("remove folder", &full));
        }
        match fs::remove_dir(&full) {
            Ok(()) => Ok(true),
            Err(err) if is_absent(&err) || err.kind() == io::ErrorKind::DirectoryNotEmpty => Ok(false),
            Err(err) => Err(io_error("remove folder", &full, err)),
        }
    }
}
