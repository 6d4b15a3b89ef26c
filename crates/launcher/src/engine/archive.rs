//! Tar archives of files with explicit mode and ownership, the only way the
//! launcher copies files into containers (Docker's archive upload).
//!
//! The predecessor copied files with `docker cp`, which keeps the host
//! file's mode and uid: a 0600 file owned by the operator became unreadable
//! for the sidecar's non-root user and the daemon crashed or, worse, a
//! reload silently kept the old table (seed 002). Here every entry states
//! its mode, uid and gid; nothing is inherited from the host.
//!
//! Also: splitting an archive by the writable mounts of a container whose
//! root file system is read-only ([`reroot`]: Docker accepts uploads only
//! into a volume there), reading one file back out of Docker's archive
//! ([`single_file`]), and streaming a whole directory in for the copy
//! workspace mode ([`stream_directory`]).

use std::io::Read as _;
use std::path::{Component as PathComponent, Path, PathBuf};

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
    /// A file is on no writable mount of a container with a read-only
    /// root file system.
    #[error(
        "cannot copy {path:?} into the container: its root file system is read-only and the path is on none of its writable mounts ({roots})"
    )]
    NotWritable {
        /// The file.
        path: String,
        /// The writable mount points.
        roots: String,
    },
    /// Docker's archive could not be read.
    #[error("reading the archive Docker returned for {path:?}: {source}")]
    Read {
        /// The path asked for.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A file read back is larger than allowed.
    #[error("{path:?} in the container is larger than {limit} bytes")]
    TooLarge {
        /// The path.
        path: String,
        /// The limit.
        limit: u64,
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

/// Splits `tar` (entries relative to `/`, as [`build`] makes them) into
/// one archive per writable mount point in `roots` (absolute container
/// paths): each entry goes to the deepest root that contains it, with its
/// path made relative to that root, headers otherwise unchanged. Returns
/// `(root, archive)` pairs in first-use order.
pub fn reroot(tar: &[u8], roots: &[String]) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
    let read = |source| ArchiveError::Read {
        path: "/".into(),
        source,
    };
    let mut out: Vec<(String, tar::Builder<Vec<u8>>)> = Vec::new();
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(read)? {
        let mut entry = entry.map_err(read)?;
        let rel = entry.path().map_err(read)?.into_owned();
        let abs = Path::new("/").join(&rel);
        let root = roots
            .iter()
            .filter(|r| abs.starts_with(r.as_str()) && abs != Path::new(r.as_str()))
            .max_by_key(|r| r.len())
            .ok_or_else(|| ArchiveError::NotWritable {
                path: abs.display().to_string(),
                roots: roots.join(", "),
            })?;
        let inner = abs
            .strip_prefix(root.as_str())
            .map(Path::to_owned)
            .unwrap_or_default();
        let mut header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(read)?;
        let write = |source| ArchiveError::Write {
            path: abs.display().to_string(),
            source,
        };
        let i = match out.iter().position(|(r, _)| r == root) {
            Some(i) => i,
            None => {
                out.push((root.clone(), tar::Builder::new(Vec::new())));
                out.len() - 1
            }
        };
        out[i]
            .1
            .append_data(&mut header, &inner, data.as_slice())
            .map_err(write)?;
    }
    out.into_iter()
        .map(|(root, b)| {
            b.into_inner()
                .map(|t| (root, t))
                .map_err(|source| ArchiveError::Write {
                    path: "<end of archive>".into(),
                    source,
                })
        })
        .collect()
}

/// One file as Docker's archive returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// A regular file's contents.
    File(Vec<u8>),
    /// A symbolic link, with its target.
    Symlink(String),
    /// Anything else (a directory, a device).
    Other,
}

/// The first entry of Docker's archive of `path`, reading at most `limit`
/// bytes of it.
pub fn single_file(tar: &[u8], path: &str, limit: u64) -> Result<Fetched, ArchiveError> {
    let read = |source| ArchiveError::Read {
        path: path.to_owned(),
        source,
    };
    let mut archive = tar::Archive::new(tar);
    let Some(entry) = archive.entries().map_err(read)?.next() else {
        return Ok(Fetched::Other);
    };
    let entry = entry.map_err(read)?;
    let kind = entry.header().entry_type();
    if kind.is_symlink() {
        let target = entry
            .link_name()
            .map_err(read)?
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        return Ok(Fetched::Symlink(target));
    }
    if !kind.is_file() {
        return Ok(Fetched::Other);
    }
    if entry.size() > limit {
        return Err(ArchiveError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    let mut data = Vec::new();
    entry.take(limit).read_to_end(&mut data).map_err(read)?;
    Ok(Fetched::File(data))
}

/// What [`stream_directory`] copied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symbolic links (copied as links, never followed).
    pub symlinks: u64,
    /// Bytes of file contents.
    pub bytes: u64,
    /// Sockets, pipes and devices left out.
    pub skipped: u64,
}

/// Streams a tar of the directory `src` as `dest` (a relative path, e.g.
/// `workspace`, for an upload at `/`): every directory, regular file and
/// symbolic link (never followed), owned by `uid:gid`, with the host's
/// permission bits minus setuid/setgid, and its modification time.
/// Sockets, pipes and devices are left out. The tar is written on a
/// blocking thread into the returned stream; the handle reports what was
/// copied, or the first error (which also ends the stream with an error).
pub fn stream_directory(
    src: PathBuf,
    dest: PathBuf,
    uid: u64,
    gid: u64,
) -> (
    impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    tokio::task::JoinHandle<Result<CopyStats, std::io::Error>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
    let handle = tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = write_tree(writer, &src, &dest, uid, gid);
        if let Err(e) = &result {
            let _ = tx.blocking_send(Err(std::io::Error::new(e.kind(), e.to_string())));
        }
        result
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (stream, handle)
}

const CHUNK: usize = 256 * 1024;

/// A `Write` that sends full chunks into a channel (blocking).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload stopped"))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

fn write_tree(
    writer: ChannelWriter,
    src: &Path,
    dest: &Path,
    uid: u64,
    gid: u64,
) -> Result<CopyStats, std::io::Error> {
    use std::io::Write as _;
    use std::os::unix::fs::MetadataExt as _;
    let mut builder = tar::Builder::new(writer);
    builder.follow_symlinks(false);
    let mut stats = CopyStats::default();
    // Depth-first; symbolic links are never followed, so this ends.
    let mut stack: Vec<(PathBuf, PathBuf)> = vec![(src.to_owned(), dest.to_owned())];
    while let Some((from, to)) = stack.pop() {
        let meta = std::fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.mode() & 0o1777);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        if ft.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, &to, std::io::empty())?;
            stats.dirs += 1;
            let mut children: Vec<_> = std::fs::read_dir(&from)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?;
            children.sort();
            for name in children.into_iter().rev() {
                stack.push((from.join(&name), to.join(&name)));
            }
        } else if ft.is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            let target = std::fs::read_link(&from)?;
            builder.append_link(&mut header, &to, &target)?;
            stats.symlinks += 1;
        } else if ft.is_file() {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(meta.len());
            let file = std::fs::File::open(&from)?;
            let reader = ExactReader {
                inner: file.take(meta.len()),
                remaining: meta.len(),
                path: from.clone(),
            };
            builder.append_data(&mut header, &to, reader)?;
            stats.files += 1;
            stats.bytes += meta.len();
        } else {
            stats.skipped += 1;
        }
    }
    let mut writer = builder.into_inner()?;
    writer.flush()?;
    Ok(stats)
}

/// Reads exactly `remaining` bytes or fails: a file that shrank while it
/// was copied must not leave a short entry in the archive.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
    path: PathBuf,
}

impl<R: std::io::Read> std::io::Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was copied", self.path.display()),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
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
