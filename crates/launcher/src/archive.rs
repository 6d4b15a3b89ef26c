//! Tar archives of files with explicit mode and ownership, the only way the
//! launcher copies files into containers (Docker's archive upload).
//!
//! The predecessor copied files with `docker cp`, which keeps the host
//! file's mode and uid: a 0600 file owned by the operator became unreadable
//! for the sidecar's non-root user and the daemon crashed or, worse, a
//! reload silently kept the old table (seed 002). Here every entry states
//! its mode, uid and gid; nothing is inherited from the host.

use std::path::{Component as PathComponent, Path};

/// One file to place inside a container.
#[derive(Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Absolute path inside the container.
    pub path: String,
    /// Permission bits, e.g. `0o644`.
    pub mode: u32,
    /// Owner uid inside the container.
    pub uid: u64,
    /// Owner gid inside the container.
    pub gid: u64,
    /// Contents.
    pub contents: Vec<u8>,
}

impl std::fmt::Debug for FileEntry {
    /// Contents are never printed (a CA key travels this way).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileEntry")
            .field("path", &self.path)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("bytes", &self.contents.len())
            .finish()
    }
}

/// Why an archive could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The path is not absolute and clean.
    #[error(
        "cannot copy {path:?} into a container: expected an absolute path without '..', '.' or empty segments"
    )]
    BadPath {
        /// The offending path.
        path: String,
    },
    /// The mode has bits outside 0o7777.
    #[error(
        "cannot copy {path:?} into a container: mode {mode:o} is not a permission mode (expected at most 7777)"
    )]
    BadMode {
        /// The file.
        path: String,
        /// The offending mode.
        mode: u32,
    },
    /// Writing the tar stream failed.
    #[error("building the archive for {path:?}: {source}")]
    Write {
        /// The file being written.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Builds an uncompressed tar whose entries are relative to `/`, to upload
/// with the destination path `/`. Parent directories are created by Docker
/// as root 0755 when missing; callers put files in directories the image
/// already has or that are world-traversable.
pub fn build(files: &[FileEntry]) -> Result<Vec<u8>, ArchiveError> {
    let mut builder = tar::Builder::new(Vec::new());
    for f in files {
        let rel = relative(&f.path).ok_or_else(|| ArchiveError::BadPath {
            path: f.path.clone(),
        })?;
        if f.mode > 0o7777 {
            return Err(ArchiveError::BadMode {
                path: f.path.clone(),
                mode: f.mode,
            });
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(f.contents.len() as u64);
        header.set_mode(f.mode);
        header.set_uid(f.uid);
        header.set_gid(f.gid);
        header.set_mtime(0);
        builder
            .append_data(&mut header, rel, f.contents.as_slice())
            .map_err(|source| ArchiveError::Write {
                path: f.path.clone(),
                source,
            })?;
    }
    builder.into_inner().map_err(|source| ArchiveError::Write {
        path: "<end of archive>".into(),
        source,
    })
}

/// `/etc/x/y` → `etc/x/y`, refusing anything but clean absolute paths.
fn relative(path: &str) -> Option<&str> {
    let rel = path.strip_prefix('/')?;
    if rel.is_empty() || rel.ends_with('/') || rel.contains("//") {
        return None;
    }
    let clean = Path::new(rel)
        .components()
        .all(|c| matches!(c, PathComponent::Normal(_)));
    (clean && !rel.split('/').any(|s| s == "." || s == "..")).then_some(rel)
}

#[cfg(test)]
mod tests;
