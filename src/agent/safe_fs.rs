//! The store agent's file operations, confined to the store root and never following a symbolic
//! link beneath it.
//!
//! A path a job names (relative to the store root; `..`, absolute paths, empty paths and NUL bytes
//! are refused) is resolved to a directory file descriptor with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`; where the kernel lacks `openat2` or a seccomp filter refuses it (ENOSYS,
//! EPERM, EINVAL) the same is done by walking the path one component at a time with
//! `openat(O_PATH | O_DIRECTORY | O_NOFOLLOW)`. Every later step is relative to that descriptor
//! and takes a single component, so a directory renamed or replaced by a link meanwhile cannot
//! redirect it. A symbolic link anywhere beneath the root is refused: as a directory on the way,
//! as the file itself, never followed. The store root itself is operator configuration and is
//! opened as configured (a link in that path is followed).
//!
//! - [`StoreRoot::write_file`] installs a file atomically: a temporary file `.NAME.<16 hex>.tmp`
//!   created with `O_CREAT | O_EXCL | O_NOFOLLOW` in the target's directory with the final mode,
//!   `fchmod` to that mode before the first byte (whatever the umask), write, fsync, the previous
//!   file kept as `NAME.bak` by a hard link (or, where hard links are not possible, by a rename;
//!   never by a copy), `renameat` over the target, fsync the directory. On an error the temporary
//!   file is unlinked. A target that is a symbolic link, a directory or another non-regular file
//!   is refused. Missing directories are created (mode [`DIR_MODE`], umask applied), one
//!   component at a time, beneath the root and without following links.
//! - [`StoreRoot::remove_file`] removes the file, its `NAME.bak` and the agent's leftover
//!   temporary files for that name, so that no key material stays behind. A file that is a
//!   symbolic link is refused like a write; a backup or temporary file that is a link is unlinked
//!   (the link itself, never what it points to): those names are the agent's own.
//! - [`StoreRoot::read_file`] reads a regular file, refusing links, directories, FIFOs and
//!   devices.
//!
//! Errors ([`Error`]) name the path relative to the store root and the cause. Linux only.
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Mode of the directories the agent creates, before the umask.
pub const DIR_MODE: u32 = 0o700;

/// Random temporary names tried before giving up (a taken name is never opened).
const TEMP_NAME_TRIES: usize = 16;
/// Bytes of the file name kept in a temporary name, so that it stays within NAME_MAX (255).
const TEMP_NAME_KEEP: usize = 200;
/// `openat2` resolution: beneath the directory descriptor, no symbolic links at all.
const RESOLVE: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;

/// Set once `openat2` turned out to be unavailable; later resolutions go straight to the walk.
static OPENAT2_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// What went wrong, for callers that act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file, or a directory on the way to it, is a symbolic link.
    Symlink,
    /// The file is a directory.
    Directory,
    /// The file is a FIFO, socket or device.
    NotRegular,
    /// Something on the way to the file is not a directory.
    NotADirectory,
    /// The path (`..`, absolute, empty, a NUL byte) or the mode is not acceptable.
    Invalid,
    /// The file is larger than the caller allows.
    TooLarge,
    /// A file or directory does not exist.
    NotFound,
    /// Any other failure of a system call.
    Io,
}

/// A failed or refused file operation: the action, the path (relative to the store root; for the
/// root itself, its configured path) and the cause, all in the message.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    action: &'static str,
    path: PathBuf,
    cause: Cause,
}

#[derive(Debug)]
enum Cause {
    Refused(String),
    Io(io::Error),
}

impl Error {
    fn refused(kind: ErrorKind, action: &'static str, path: &Path, why: impl Into<String>) -> Error {
        Error { kind, action, path: path.to_path_buf(), cause: Cause::Refused(why.into()) }
    }

    fn io(action: &'static str, path: &Path, e: io::Error) -> Error {
        let kind = if e.raw_os_error() == Some(libc::ENOENT) { ErrorKind::NotFound } else { ErrorKind::Io };
        Error { kind, action, path: path.to_path_buf(), cause: Cause::Io(e) }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Cause::Refused(why) => write!(f, "refusing to {} {}: {why}", self.action, self.path.display()),
            Cause::Io(e) => write!(f, "cannot {} {}: {e}", self.action, self.path.display()),
        }
    }
}

/// The cause is part of the message, so `source` is left empty (no doubled text in error chains).
impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// How [`StoreRoot::write_file`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// The file's permission bits (nothing else), set exactly, whatever the umask.
    pub mode: u32,
    /// Keep the previous file, if any, as `NAME.bak`.
    pub backup: bool,
    /// Create missing directories on the way (mode `dir_mode`, umask applied).
    pub create_dirs: bool,
    /// Their permission bits; the umask still applies (so at most this, 0700 by default).
    pub dir_mode: u32,
}

impl WriteOptions {
    /// `mode`, with a backup, creating missing directories with [`DIR_MODE`].
    pub fn new(mode: u32) -> WriteOptions {
        WriteOptions { mode, backup: true, create_dirs: true, dir_mode: DIR_MODE }
    }
}

/// What [`StoreRoot::remove_file`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// The file itself.
    pub file: bool,
    /// Its `NAME.bak`.
    pub backup: bool,
    /// Leftover temporary files of the agent for that name.
    pub temp_files: usize,
}

/// The name of `name`'s backup: `NAME.bak`, beside it.
pub fn backup_name(name: &OsStr) -> OsString {
    let mut b = name.to_os_string();
    b.push(".bak");
    b
}

/// How directories are resolved. The agent always uses `Auto`; tests force one of the two ways
/// so that both are exercised on any kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolver {
    /// `openat2`, falling back to the walk where the kernel does not offer it.
    Auto,
    /// `openat2` only.
    #[cfg(test)]
    Openat2,
    /// The component-by-component walk only.
    #[cfg(test)]
    Walk,
}

/// An open store root; every operation resolves its path beneath it.
#[derive(Debug)]
pub struct StoreRoot {
    fd: OwnedFd,
    resolver: Resolver,
    /// Back up by rename instead of by hard link (set by tests; the link's fallback in use).
    backup_by_rename: bool,
}

/// A path split into its directories and its file name, checked.
struct RelPath<'a> {
    dirs: Vec<&'a OsStr>,
    name: &'a OsStr,
    c_name: CString,
    /// The normalized path, for messages.
    shown: PathBuf,
}

impl RelPath<'_> {
    fn sibling(&self, name: &OsStr) -> PathBuf {
        self.shown.with_file_name(name)
    }
}

fn parse<'a>(rel: &'a Path, action: &'static str) -> Result<RelPath<'a>> {
    let refuse = |why: &str| Error::refused(ErrorKind::Invalid, action, rel, why);
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) if p.as_bytes().contains(&0) => return Err(refuse("the path contains a NUL byte")),
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse("`..` is not allowed")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse("an absolute path is not allowed (paths are relative to the store root)"));
            }
        }
    }
    let name = parts.pop().ok_or_else(|| refuse("the path names the store root itself"))?;
    let shown = parts.iter().chain(std::iter::once(&name)).collect();
    Ok(RelPath { dirs: parts, name, c_name: c_string(name.as_bytes().to_vec()), shown })
}

/// Names here come from checked components (no NUL byte) plus ASCII.
#[expect(clippy::expect_used, reason = "every caller passes checked components, which hold no NUL byte")]
fn c_string(bytes: Vec<u8>) -> CString {
    CString::new(bytes).expect("path components are checked for NUL bytes")
}

impl StoreRoot {
    /// Opens an existing store root.
    pub fn open(path: &Path) -> Result<StoreRoot> {
        const ACTION: &str = "open the store root";
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Error::refused(ErrorKind::Invalid, ACTION, path, "the path contains a NUL byte"))?;
        let fd = retry(|| {
            // SAFETY: `c` is a valid NUL-terminated string; the result is checked.
            let fd = cvt(unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
            // SAFETY: a fresh descriptor that nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .map_err(|e| Error::io(ACTION, path, e))?;
        Ok(StoreRoot { fd, resolver: Resolver::Auto, backup_by_rename: false })
    }

    /// Opens the store root, creating it (and its missing parents, mode [`DIR_MODE`]) first.
    pub fn open_or_create(path: &Path) -> Result<StoreRoot> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(path)
            .map_err(|e| Error::io("create the store root", path, e))?;
        StoreRoot::open(path)
    }

    /// Writes `data` to `rel` atomically with exactly `opts.mode`; see the module documentation.
    pub fn write_file(&self, rel: &Path, data: &[u8], opts: WriteOptions) -> Result<()> {
        self.write_file_with(rel, data, opts, &mut random_u64)
    }

    fn write_file_with(
        &self,
        rel: &Path,
        data: &[u8],
        opts: WriteOptions,
        random: &mut dyn FnMut() -> io::Result<u64>,
    ) -> Result<()> {
        const ACTION: &str = "write";
        if opts.mode & !0o777 != 0 || opts.dir_mode & !0o777 != 0 {
            return Err(Error::refused(ErrorKind::Invalid, ACTION, rel, "a mode holds more than permission bits"));
        }
        let rel = parse(rel, ACTION)?;
        let dir = self.open_dir(&rel, opts.create_dirs.then_some(opts.dir_mode), ACTION)?;
        let dir = dir.as_fd();
        let previous = match lstat_at(dir, &rel.c_name) {
            Ok(st) => {
                refuse_unless_regular(&st, ACTION, &rel.shown)?;
                Some(st)
            }
            Err(e) if errno(&e) == libc::ENOENT => None,
            Err(e) => return Err(Error::io("inspect", &rel.shown, e)),
        };

        let (fd, temp_name) = create_temp(dir, rel.name, opts.mode, random)
            .map_err(|e| Error::io("create a temporary file for", &rel.shown, e))?;
        let mut temp = TempFile { dir, name: temp_name, armed: true };
        let temp_shown = rel.sibling(OsStr::from_bytes(temp.name.to_bytes()));
        let mut file = File::from(fd);
        // The mode is the final one before any byte is written, whatever the umask was.
        // SAFETY: a plain system call on a descriptor we own.
        cvt(unsafe { libc::fchmod(file.as_raw_fd(), opts.mode) })
            .map_err(|e| Error::io("set the mode of", &temp_shown, e))?;
        file.write_all(data).map_err(|e| Error::io("write", &temp_shown, e))?;
        file.sync_all().map_err(|e| Error::io("sync", &temp_shown, e))?;
        drop(file);

        let backup = match &previous {
            Some(st) if opts.backup => self.back_up(dir, &rel, st, opts.mode)?,
            _ => Backup::None,
        };
        if let Err(e) = renameat(dir, &temp.name, dir, &rel.c_name) {
            if backup == Backup::Moved {
                // Put the previous file back where it was.
                let _ = renameat(dir, &c_string(backup_name(rel.name).into_vec()), dir, &rel.c_name);
            }
            return Err(Error::io("replace", &rel.shown, e));
        }
        temp.armed = false;
        fsync_dir(dir).map_err(|e| Error::io("sync the directory of", &rel.shown, e))
    }

    /// Keeps the previous file as `NAME.bak`: a stale backup is unlinked (never followed), then
    /// the file is hard-linked (it keeps its inode, so its mode), or moved where links fail. A
    /// backup more permissive than the new file's mode is narrowed to it.
    fn back_up(&self, dir: BorrowedFd<'_>, rel: &RelPath<'_>, previous: &libc::stat, mode: u32) -> Result<Backup> {
        let bak_name = backup_name(rel.name);
        let bak = c_string(bak_name.clone().into_vec());
        let bak_shown = rel.sibling(&bak_name);
        let mut tries = 0;
        let mut done = Backup::Moved;
        loop {
            unlink_entry(dir, &bak, &bak_shown, "replace the backup")?;
            if self.backup_by_rename {
                break;
            }
            // Flags 0: a link at the old name is linked itself, never followed.
            // SAFETY: valid descriptors and NUL-terminated names; the result is checked.
            match retry(|| {
                cvt(unsafe { libc::linkat(dir.as_raw_fd(), rel.c_name.as_ptr(), dir.as_raw_fd(), bak.as_ptr(), 0) })
            }) {
                Ok(_) => {
                    done = Backup::Linked;
                    break;
                }
                Err(e) if errno(&e) == libc::ENOENT => return Ok(Backup::None),
                Err(e) if errno(&e) == libc::EEXIST && tries < 3 => tries += 1,
                // No hard link here (file system, link count, protected_hardlinks): move it instead.
                Err(e) if matches!(errno(&e), libc::EPERM | libc::EMLINK | libc::EOPNOTSUPP | libc::ENOSYS) => break,
                Err(e) => return Err(Error::io("back up the previous file as", &bak_shown, e)),
            }
        }
        if done == Backup::Moved {
            match renameat(dir, &rel.c_name, dir, &bak) {
                Ok(()) => {}
                Err(e) if errno(&e) == libc::ENOENT => return Ok(Backup::None),
                Err(e) => return Err(Error::io("move the previous file to", &bak_shown, e)),
            }
        }
        // The inode is now linked as the file and the backup, or (moved) as the backup only.
        let links = if done == Backup::Linked { 2 } else { 1 };
        narrow_mode(dir, &bak, previous, mode, links, &bak_shown)?;
        Ok(done)
    }

    /// Reads a regular file of at most `max_len` bytes; `None` when it (or a directory on the way)
    /// does not exist.
    pub fn read_file(&self, rel: &Path, max_len: u64) -> Result<Option<Vec<u8>>> {
        const ACTION: &str = "read";
        let rel = parse(rel, ACTION)?;
        let dir = match self.open_dir(&rel, None, ACTION) {
            Ok(dir) => dir,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        // O_NONBLOCK: a FIFO planted here must not hang the agent (it is refused below).
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
        let fd = match openat(dir.as_fd(), &rel.c_name, flags, 0) {
            Ok(fd) => fd,
            Err(e) if errno(&e) == libc::ENOENT => return Ok(None),
            Err(e) => {
                if let Ok(st) = lstat_at(dir.as_fd(), &rel.c_name) {
                    refuse_unless_regular(&st, ACTION, &rel.shown)?;
                }
                return Err(Error::io(ACTION, &rel.shown, e));
            }
        };
        refuse_unless_regular(&fstat(fd.as_fd()).map_err(|e| Error::io(ACTION, &rel.shown, e))?, ACTION, &rel.shown)?;
        let mut data = Vec::new();
        File::from(fd)
            .take(max_len.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| Error::io(ACTION, &rel.shown, e))?;
        if data.len() as u64 > max_len {
            return Err(Error::refused(
                ErrorKind::TooLarge,
                ACTION,
                &rel.shown,
                format!("it is larger than {max_len} bytes"),
            ));
        }
        Ok(Some(data))
    }

    /// Removes `rel`, its `NAME.bak` and the agent's leftover temporary files for it (also the
    /// fixed `.NAME.tmp` of earlier agents). A missing file or directory is not an error. A file
    /// that is a symbolic link, a directory or another non-regular file is refused before anything
    /// is removed; a backup or temporary name holding a link has the link itself unlinked.
    pub fn remove_file(&self, rel: &Path) -> Result<Removed> {
        const ACTION: &str = "remove";
        let rel = parse(rel, ACTION)?;
        let dir = match self.open_dir(&rel, None, ACTION) {
            Ok(dir) => dir,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(Removed::default()),
            Err(e) => return Err(e),
        };
        let dir = dir.as_fd();
        let present = match lstat_at(dir, &rel.c_name) {
            Ok(st) => {
                refuse_unless_regular(&st, ACTION, &rel.shown)?;
                true
            }
            Err(e) if errno(&e) == libc::ENOENT => false,
            Err(e) => return Err(Error::io("inspect", &rel.shown, e)),
        };
        let mut removed = Removed::default();
        let listed = match rel.shown.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let entries = list_dir(dir).map_err(|e| Error::io("list", listed, e))?;
        for entry in entries.into_iter().filter(|e| is_temp_name(e, rel.name)) {
            let shown = rel.sibling(OsStr::from_bytes(&entry));
            if unlink_entry(dir, &c_string(entry), &shown, ACTION)? {
                removed.temp_files += 1;
            }
        }
        let bak_name = backup_name(rel.name);
        removed.backup = unlink_entry(dir, &c_string(bak_name.clone().into_vec()), &rel.sibling(&bak_name), ACTION)?;
        if present {
            // SAFETY: valid descriptor and NUL-terminated name; the result is checked.
            match retry(|| cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), rel.c_name.as_ptr(), 0) })) {
                Ok(_) => removed.file = true,
                Err(e) if errno(&e) == libc::ENOENT => {}
                Err(e) => return Err(Error::io(ACTION, &rel.shown, e)),
            }
        }
        if removed != Removed::default() {
            fsync_dir(dir).map_err(|e| Error::io("sync the directory of", &rel.shown, e))?;
        }
        Ok(removed)
    }

    /// Opens the directory `rel` is in, beneath the root, following no link; creates missing
    /// directories with mode `create` when given.
    fn open_dir(&self, rel: &RelPath<'_>, create: Option<u32>, action: &'static str) -> Result<OwnedFd> {
        if rel.dirs.is_empty() {
            return self.fd.try_clone().map_err(|e| Error::io(action, &rel.shown, e));
        }
        let use_openat2 = match self.resolver {
            Resolver::Auto => !OPENAT2_UNSUPPORTED.load(Ordering::Relaxed),
            #[cfg(test)]
            Resolver::Openat2 => true,
            #[cfg(test)]
            Resolver::Walk => false,
        };
        if !use_openat2 {
            return self.walk(rel, create, action, false);
        }
        let joined = c_string(rel.dirs.iter().map(|d| d.as_bytes()).collect::<Vec<_>>().join(&b'/'));
        match openat2(self.fd.as_fd(), &joined, libc::O_PATH | libc::O_DIRECTORY, RESOLVE) {
            Ok(fd) => Ok(fd),
            Err(e) if self.resolver == Resolver::Auto && openat2_unsupported(&e) => {
                OPENAT2_UNSUPPORTED.store(true, Ordering::Relaxed);
                self.walk(rel, create, action, false)
            }
            // Create the missing directories one at a time, each still beneath and link-free.
            Err(e) if errno(&e) == libc::ENOENT && create.is_some() => self.walk(rel, create, action, true),
            Err(e) => {
                if self.resolver == Resolver::Auto {
                    // The walk refuses the same things and names the component; should it pass
                    // (the tree changed meanwhile), openat2's own error is reported below.
                    self.walk(rel, None, action, false)?;
                }
                let dirs_shown = rel.shown.parent().unwrap_or(Path::new(""));
                Err(match errno(&e) {
                    libc::ELOOP => Error::refused(
                        ErrorKind::Symlink,
                        action,
                        &rel.shown,
                        "a directory on the way is a symbolic link",
                    ),
                    libc::ENOTDIR => Error::refused(
                        ErrorKind::NotADirectory,
                        action,
                        &rel.shown,
                        "something on the way is not a directory",
                    ),
                    libc::EXDEV => {
                        Error::refused(ErrorKind::Invalid, action, &rel.shown, "the path leaves the store root")
                    }
                    _ => Error::io("open the directory", dirs_shown, e),
                })
            }
        }
    }

    /// The component-by-component resolution: each step opens one name relative to the previous
    /// directory with `O_NOFOLLOW` (or `openat2` beneath it), refusing links and non-directories.
    fn walk(
        &self,
        rel: &RelPath<'_>,
        create: Option<u32>,
        action: &'static str,
        step_openat2: bool,
    ) -> Result<OwnedFd> {
        let mut cur = self.fd.try_clone().map_err(|e| Error::io(action, &rel.shown, e))?;
        let mut so_far = PathBuf::new();
        for comp in &rel.dirs {
            so_far.push(comp);
            let c = c_string(comp.as_bytes().to_vec());
            let mut next = open_dir_step(cur.as_fd(), &c, step_openat2);
            if let (Err(e), Some(mode)) = (&next, create)
                && errno(e) == libc::ENOENT
            {
                // mkdirat does not follow a link at the name (EEXIST); the open below refuses it.
                // SAFETY: valid descriptor and NUL-terminated name; the result is checked.
                match retry(|| cvt(unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), mode) })) {
                    Ok(_) => {
                        let _ = fsync_dir(cur.as_fd());
                    }
                    Err(e) if errno(&e) == libc::EEXIST => {}
                    Err(e) => return Err(Error::io("create the directory", &so_far, e)),
                }
                next = open_dir_step(cur.as_fd(), &c, step_openat2);
            }
            cur = next.map_err(|e| component_error(cur.as_fd(), &c, e, action, &rel.shown, &so_far))?;
        }
        Ok(cur)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backup {
    None,
    Linked,
    Moved,
}

/// The agent's temporary file, unlinked when dropped unless renamed into place.
struct TempFile<'a> {
    dir: BorrowedFd<'a>,
    name: CString,
    armed: bool,
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if self.armed {
            // SAFETY: valid descriptor and NUL-terminated name.
            unsafe { libc::unlinkat(self.dir.as_raw_fd(), self.name.as_ptr(), 0) };
        }
    }
}

fn temp_prefix(name: &OsStr) -> Vec<u8> {
    let b = name.as_bytes();
    [b".", &b[..b.len().min(TEMP_NAME_KEEP)], b"."].concat()
}

fn temp_name(name: &OsStr, random: u64) -> Vec<u8> {
    [temp_prefix(name), format!("{random:016x}.tmp").into_bytes()].concat()
}

/// `.NAME.<16 hex>.tmp` (this agent) or `.NAME.tmp` (earlier agents).
fn is_temp_name(entry: &[u8], name: &OsStr) -> bool {
    if entry == [b".", name.as_bytes(), b".tmp"].concat() {
        return true;
    }
    let prefix = temp_prefix(name);
    entry.len() == prefix.len() + 16 + 4
        && entry.starts_with(&prefix)
        && entry.ends_with(b".tmp")
        && entry[prefix.len()..prefix.len() + 16].iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Creates a new temporary file beside `name`: a random name, `O_EXCL | O_NOFOLLOW` (a planted
/// file or link at a name makes that name be skipped, never opened), the final mode.
fn create_temp(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    mode: u32,
    random: &mut dyn FnMut() -> io::Result<u64>,
) -> io::Result<(OwnedFd, CString)> {
    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY | libc::O_NOCTTY;
    for _ in 0..TEMP_NAME_TRIES {
        let temp = c_string(temp_name(name, random()?));
        match openat(dir, &temp, flags, mode) {
            Ok(fd) => return Ok((fd, temp)),
            Err(e) if errno(&e) == libc::EEXIST => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, "every temporary name tried was taken"))
}

/// Unlinks an entry of the agent's own (a backup, a temporary file) without following it; refuses
/// a directory. `Ok(false)` when there was nothing.
fn unlink_entry(dir: BorrowedFd<'_>, name: &CStr, shown: &Path, action: &'static str) -> Result<bool> {
    match lstat_at(dir, name) {
        Err(e) if errno(&e) == libc::ENOENT => return Ok(false),
        Err(e) => return Err(Error::io("inspect", shown, e)),
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
            return Err(Error::refused(ErrorKind::Directory, action, shown, "it is a directory"));
        }
        Ok(_) => {}
    }
    // SAFETY: valid descriptor and NUL-terminated name; the result is checked.
    match retry(|| cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })) {
        Ok(_) => Ok(true),
        Err(e) if errno(&e) == libc::ENOENT => Ok(false),
        Err(e) => Err(Error::io(action, shown, e)),
    }
}

/// Narrows the backup's permission bits to `mode` when the previous file was more permissive (a
/// key that had been 0644 does not stay readable as `.bak`). Checks it is still that inode, and
/// leaves an inode with more than our `links` alone: that one is also some other file's, which
/// the agent has no business changing (a hard link planted in the store).
fn narrow_mode(
    dir: BorrowedFd<'_>,
    bak: &CStr,
    previous: &libc::stat,
    mode: u32,
    links: u64,
    shown: &Path,
) -> Result<()> {
    const ACTION: &str = "restrict the mode of";
    let perm = previous.st_mode & 0o7777;
    if perm & !mode == 0 {
        return Ok(());
    }
    let fd = openat(dir, bak, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY, 0)
        .map_err(|e| Error::io(ACTION, shown, e))?;
    let st = fstat(fd.as_fd()).map_err(|e| Error::io(ACTION, shown, e))?;
    if (st.st_dev, st.st_ino) != (previous.st_dev, previous.st_ino) {
        return Err(Error::refused(ErrorKind::Io, ACTION, shown, "it was replaced while being made"));
    }
    if st.st_nlink as u64 > links {
        return Ok(());
    }
    // SAFETY: a plain system call on a descriptor we own.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), perm & mode) }).map_err(|e| Error::io(ACTION, shown, e))?;
    Ok(())
}

fn refuse_unless_regular(st: &libc::stat, action: &'static str, shown: &Path) -> Result<()> {
    let (kind, why) = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => return Ok(()),
        libc::S_IFLNK => (ErrorKind::Symlink, "it is a symbolic link"),
        libc::S_IFDIR => (ErrorKind::Directory, "it is a directory"),
        _ => (ErrorKind::NotRegular, "it is not a regular file"),
    };
    Err(Error::refused(kind, action, shown, why))
}

fn component_error(
    dir: BorrowedFd<'_>,
    c: &CStr,
    e: io::Error,
    action: &'static str,
    shown: &Path,
    so_far: &Path,
) -> Error {
    if matches!(errno(&e), libc::ELOOP | libc::ENOTDIR) {
        match lstat_at(dir, c).map(|st| st.st_mode & libc::S_IFMT) {
            Ok(libc::S_IFLNK) => {
                return Error::refused(
                    ErrorKind::Symlink,
                    action,
                    shown,
                    format!("{} is a symbolic link", so_far.display()),
                );
            }
            Ok(t) if t != libc::S_IFDIR => {
                return Error::refused(
                    ErrorKind::NotADirectory,
                    action,
                    shown,
                    format!("{} is not a directory", so_far.display()),
                );
            }
            _ => {}
        }
    }
    Error::io("open the directory", so_far, e)
}

fn openat2_unsupported(e: &io::Error) -> bool {
    // ENOSYS: kernel before 5.6; EPERM: a seccomp filter; EINVAL: flags this kernel does not know.
    matches!(errno(e), libc::ENOSYS | libc::EPERM | libc::EINVAL)
}

/// One step of the walk: `c` relative to `dir`, a directory and not a link.
fn open_dir_step(dir: BorrowedFd<'_>, c: &CStr, use_openat2: bool) -> io::Result<OwnedFd> {
    let fd = if use_openat2 {
        openat2(dir, c, libc::O_PATH | libc::O_DIRECTORY, RESOLVE)?
    } else {
        openat(dir, c, libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)?
    };
    if fstat(fd.as_fd())?.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    Ok(fd)
}

// ---- system calls ----

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

fn openat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    retry(|| {
        // SAFETY: valid descriptor and NUL-terminated name; the result is checked.
        let fd = cvt(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
        // SAFETY: a fresh descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
}

fn openat2(dir: BorrowedFd<'_>, path: &CStr, flags: libc::c_int, resolve: u64) -> io::Result<OwnedFd> {
    // SAFETY: `open_how` is plain integers; all zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u32 as u64;
    how.resolve = resolve;
    let mut again = 0;
    loop {
        // SAFETY: valid descriptor, NUL-terminated path, `how` outlives the call and its size is passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if r >= 0 {
            // SAFETY: a fresh descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(r as libc::c_int) });
        }
        let e = io::Error::last_os_error();
        match errno(&e) {
            libc::EINTR => {}
            // A concurrent rename made the kernel unsure of the result: it asks to try again.
            libc::EAGAIN if again < 8 => again += 1,
            _ => return Err(e),
        }
    }
}

fn lstat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid descriptor, NUL-terminated name, `st` is written on success.
    retry(|| {
        cvt(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
    })?;
    // SAFETY: fstatat succeeded, so `st` is initialized.
    Ok(unsafe { st.assume_init() })
}

fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid descriptor; `st` is written on success.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so `st` is initialized.
    Ok(unsafe { st.assume_init() })
}

fn renameat(from_dir: BorrowedFd<'_>, from: &CStr, to_dir: BorrowedFd<'_>, to: &CStr) -> io::Result<()> {
    // SAFETY: valid descriptors and NUL-terminated names; the result is checked.
    retry(|| cvt(unsafe { libc::renameat(from_dir.as_raw_fd(), from.as_ptr(), to_dir.as_raw_fd(), to.as_ptr()) }))
        .map(drop)
}

fn fsync_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    // The resolved descriptors are O_PATH, which fsync does not take: open the directory itself.
    let fd = openat(dir, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    // SAFETY: a plain system call on a descriptor we own.
    retry(|| cvt(unsafe { libc::fsync(fd.as_raw_fd()) })).map(drop)
}

/// The names in a directory, without `.` and `..`.
fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let raw = openat(dir, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?.into_raw_fd();
    // SAFETY: `raw` is an open directory descriptor; on success the stream owns it.
    let stream = unsafe { libc::fdopendir(raw) };
    if stream.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `raw` is still ours to close.
        unsafe { libc::close(raw) };
        return Err(e);
    }
    let mut names = Vec::new();
    let result = loop {
        // SAFETY: errno is thread-local; readdir reports its errors only through it.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `stream` is a valid open stream.
        let entry = unsafe { libc::readdir(stream) };
        if entry.is_null() {
            let e = io::Error::last_os_error();
            break if errno(&e) == 0 { Ok(()) } else { Err(e) };
        }
        // SAFETY: readdir returned an entry whose d_name is NUL-terminated and valid until the next call.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    };
    // SAFETY: closes the stream and its descriptor, once.
    unsafe { libc::closedir(stream) };
    result.map(|()| names)
}

fn random_u64() -> io::Result<u64> {
    let mut b = [0u8; 8];
    let mut filled = 0;
    while filled < b.len() {
        // SAFETY: the pointer and length describe the unfilled rest of `b`.
        let r = unsafe { libc::getrandom(b[filled..].as_mut_ptr().cast(), b.len() - filled, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            match errno(&e) {
                libc::EINTR => continue,
                libc::ENOSYS | libc::EPERM => {
                    File::open("/dev/urandom")?.read_exact(&mut b)?;
                    break;
                }
                _ => return Err(e),
            }
        }
        filled += r as usize;
    }
    Ok(u64::from_ne_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
    use std::sync::atomic::AtomicUsize;
    use std::sync::{RwLock, RwLockReadGuard};

    /// The umask is per process: the test that changes it runs alone.
    static UMASK: RwLock<()> = RwLock::new(());

    fn shared() -> RwLockReadGuard<'static, ()> {
        UMASK.read().unwrap_or_else(|e| e.into_inner())
    }

    /// `base/root` (the store root) and `base/outside` (what an attacker points links at).
    struct Scratch {
        base: PathBuf,
    }

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            static N: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
            let base = std::env::temp_dir().join(format!(
                "agentfs-{tag}-{}-{nanos}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir(&base).unwrap();
            fs::create_dir(base.join("root")).unwrap();
            fs::create_dir(base.join("outside")).unwrap();
            Scratch { base }
        }

        fn root(&self) -> PathBuf {
            self.base.join("root")
        }

        fn outside(&self) -> PathBuf {
            self.base.join("outside")
        }

        fn store(&self, resolver: Resolver) -> StoreRoot {
            let mut s = StoreRoot::open(&self.root()).unwrap();
            s.resolver = resolver;
            s
        }

        /// A file outside the root that must never change.
        fn victim(&self) -> PathBuf {
            let v = self.outside().join("victim");
            fs::write(&v, b"VICTIM").unwrap();
            fs::set_permissions(&v, fs::Permissions::from_mode(0o644)).unwrap();
            v
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.base);
        }
    }

    fn assert_victim_intact(v: &Path) {
        assert_eq!(fs::read(v).unwrap(), b"VICTIM");
        assert_eq!(mode_of(v), 0o644);
    }

    fn mode_of(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    fn is_symlink(p: &Path) -> bool {
        fs::symlink_metadata(p).map(|m| m.file_type().is_symlink()).unwrap_or(false)
    }

    fn key() -> WriteOptions {
        WriteOptions::new(0o600)
    }

    fn openat2_available() -> bool {
        let root = StoreRoot::open(Path::new("/")).unwrap();
        match openat2(root.fd.as_fd(), c"tmp", libc::O_PATH | libc::O_DIRECTORY, RESOLVE) {
            Ok(_) => true,
            Err(e) if openat2_unsupported(&e) => false,
            Err(e) => panic!("openat2 probe: {e}"),
        }
    }

    /// Every way of resolving: the automatic one, openat2 alone (when the kernel has it), the walk.
    fn resolvers() -> Vec<Resolver> {
        if openat2_available() {
            vec![Resolver::Auto, Resolver::Openat2, Resolver::Walk]
        } else {
            eprintln!("openat2 is not available here: testing the automatic way and the walk only");
            vec![Resolver::Auto, Resolver::Walk]
        }
    }

    struct UmaskGuard(libc::mode_t);

    impl Drop for UmaskGuard {
        fn drop(&mut self) {
            // SAFETY: umask cannot fail.
            unsafe { libc::umask(self.0) };
        }
    }

    #[test]
    fn mode_is_exact_whatever_the_umask_and_the_previous_file() {
        let _alone = UMASK.write().unwrap_or_else(|e| e.into_inner());
        let s = Scratch::new("umask");
        let store = s.store(Resolver::Auto);
        // SAFETY: umask cannot fail.
        let _restore = UmaskGuard(unsafe { libc::umask(0) });

        store.write_file(Path::new("tls/site.key"), b"KEY1", key()).unwrap();
        assert_eq!(mode_of(&s.root().join("tls/site.key")), 0o600);
        assert_eq!(mode_of(&s.root().join("tls")), DIR_MODE, "a created directory has DIR_MODE");
        assert!(fs::symlink_metadata(s.root().join("tls")).unwrap().is_dir());

        // A key that was 0644 before is replaced by a 0600 one (not chmod-ed in place: a new inode).
        let old = s.root().join("old.key");
        fs::write(&old, b"OLD").unwrap();
        fs::set_permissions(&old, fs::Permissions::from_mode(0o644)).unwrap();
        let old_ino = fs::metadata(&old).unwrap().ino();
        store.write_file(Path::new("old.key"), b"NEW", key()).unwrap();
        assert_eq!(mode_of(&old), 0o600);
        assert_ne!(fs::metadata(&old).unwrap().ino(), old_ino);
        assert_eq!(fs::read(&old).unwrap(), b"NEW");

        // SAFETY: umask cannot fail.
        unsafe { libc::umask(0o777) };
        store.write_file(Path::new("tls/site.key"), b"KEY2", key()).unwrap();
        assert_eq!(mode_of(&s.root().join("tls/site.key")), 0o600);
        assert_eq!(fs::read(s.root().join("tls/site.key")).unwrap(), b"KEY2");
        store.write_file(Path::new("tls/site.crt"), b"CRT", WriteOptions::new(0o644)).unwrap();
        assert_eq!(mode_of(&s.root().join("tls/site.crt")), 0o644);

        // SAFETY: umask cannot fail.
        unsafe { libc::umask(0o077) };
        store.write_file(Path::new("tls/site.crt"), b"CRT2", WriteOptions::new(0o644)).unwrap();
        assert_eq!(mode_of(&s.root().join("tls/site.crt")), 0o644);
    }

    #[test]
    fn backup_is_a_hard_link_of_the_previous_file_and_keeps_0600() {
        let _g = shared();
        let s = Scratch::new("backup");
        let store = s.store(Resolver::Auto);
        let target = s.root().join("site.key");
        store.write_file(Path::new("site.key"), b"OLD", key()).unwrap();
        assert!(!s.root().join("site.key.bak").exists(), "no backup without a previous file");
        let old_ino = fs::metadata(&target).unwrap().ino();

        store.write_file(Path::new("site.key"), b"NEW", key()).unwrap();
        let bak = fs::symlink_metadata(s.root().join("site.key.bak")).unwrap();
        assert!(bak.file_type().is_file());
        assert_eq!(bak.ino(), old_ino, "the backup is the previous inode, linked, not a copy");
        assert_eq!(bak.nlink(), 1);
        assert_eq!(bak.mode() & 0o7777, 0o600);
        assert_eq!(fs::read(s.root().join("site.key.bak")).unwrap(), b"OLD");
        assert_eq!(fs::read(&target).unwrap(), b"NEW");
        assert_ne!(fs::metadata(&target).unwrap().ino(), old_ino);

        // The next write replaces the stale backup.
        let new_ino = fs::metadata(&target).unwrap().ino();
        store.write_file(Path::new("site.key"), b"NEWER", key()).unwrap();
        assert_eq!(fs::metadata(s.root().join("site.key.bak")).unwrap().ino(), new_ino);
        assert_eq!(fs::read(s.root().join("site.key.bak")).unwrap(), b"NEW");
        assert_eq!(names_in(&s.root()), ["site.key", "site.key.bak"]);

        // Without a backup wanted, none is touched.
        store.write_file(Path::new("site.key"), b"LAST", WriteOptions { backup: false, ..key() }).unwrap();
        assert_eq!(fs::read(s.root().join("site.key.bak")).unwrap(), b"NEW");
    }

    #[test]
    fn backup_of_a_0644_key_is_narrowed_to_0600() {
        let _g = shared();
        let s = Scratch::new("narrow");
        let target = s.root().join("site.key");
        fs::write(&target, b"OLD").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        let old_ino = fs::metadata(&target).unwrap().ino();
        s.store(Resolver::Auto).write_file(Path::new("site.key"), b"NEW", key()).unwrap();
        let bak = fs::symlink_metadata(s.root().join("site.key.bak")).unwrap();
        assert_eq!(bak.ino(), old_ino);
        assert_eq!(bak.mode() & 0o7777, 0o600);
        // A certificate's 0600 backup stays 0600 (narrowed only, never widened).
        let crt = s.root().join("site.crt");
        fs::write(&crt, b"OLD").unwrap();
        fs::set_permissions(&crt, fs::Permissions::from_mode(0o600)).unwrap();
        s.store(Resolver::Auto).write_file(Path::new("site.crt"), b"NEW", WriteOptions::new(0o644)).unwrap();
        assert_eq!(mode_of(&s.root().join("site.crt.bak")), 0o600);
        assert_eq!(mode_of(&crt), 0o644);
    }

    #[test]
    fn a_backup_shared_with_a_file_elsewhere_keeps_its_mode() {
        let _g = shared();
        let s = Scratch::new("shared");
        let v = s.victim();
        // A hard link planted in the store to a 0644 file elsewhere (same file system).
        fs::hard_link(&v, s.root().join("site.key")).unwrap();
        s.store(Resolver::Auto).write_file(Path::new("site.key"), b"NEW", key()).unwrap();
        assert_victim_intact(&v);
        assert_eq!(fs::metadata(s.root().join("site.key.bak")).unwrap().ino(), fs::metadata(&v).unwrap().ino());
        assert_eq!(fs::read(s.root().join("site.key")).unwrap(), b"NEW");
        assert_eq!(mode_of(&s.root().join("site.key")), 0o600);
    }

    #[test]
    fn backup_by_rename_when_links_are_not_possible() {
        let _g = shared();
        let s = Scratch::new("bakrename");
        let mut store = s.store(Resolver::Auto);
        store.backup_by_rename = true;
        let target = s.root().join("site.key");
        fs::write(&target, b"OLD").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        let old_ino = fs::metadata(&target).unwrap().ino();
        let v = s.victim();
        symlink(&v, s.root().join("site.key.bak")).unwrap();
        store.write_file(Path::new("site.key"), b"NEW", key()).unwrap();
        let bak = fs::symlink_metadata(s.root().join("site.key.bak")).unwrap();
        assert_eq!(bak.ino(), old_ino);
        assert_eq!(bak.mode() & 0o7777, 0o600);
        assert_eq!(fs::read(&target).unwrap(), b"NEW");
        assert_eq!(mode_of(&target), 0o600);
        assert_victim_intact(&v);
        assert_eq!(names_in(&s.root()), ["site.key", "site.key.bak"]);
    }

    #[test]
    fn a_symlinked_backup_is_unlinked_not_followed() {
        let _g = shared();
        let s = Scratch::new("baklink");
        let store = s.store(Resolver::Auto);
        store.write_file(Path::new("site.key"), b"OLD", key()).unwrap();
        let v = s.victim();
        symlink(&v, s.root().join("site.key.bak")).unwrap();
        store.write_file(Path::new("site.key"), b"NEW", key()).unwrap();
        assert!(!is_symlink(&s.root().join("site.key.bak")));
        assert_eq!(fs::read(s.root().join("site.key.bak")).unwrap(), b"OLD");
        assert_victim_intact(&v);
    }

    #[test]
    fn a_symlink_at_the_old_temp_name_receives_nothing() {
        let _g = shared();
        let s = Scratch::new("oldtmp");
        let store = s.store(Resolver::Auto);
        fs::create_dir(s.root().join("tls")).unwrap();
        // The attack on the earlier agent: `.NAME.tmp` pointing at a file the attacker can read.
        let v = s.victim();
        symlink(&v, s.root().join("tls/.site.key.tmp")).unwrap();
        // And a dangling one, which O_CREAT without O_EXCL would have created.
        symlink(s.outside().join("created"), s.root().join("tls/.site.crt.tmp")).unwrap();
        store.write_file(Path::new("tls/site.key"), b"SECRET KEY", key()).unwrap();
        store.write_file(Path::new("tls/site.crt"), b"CRT", WriteOptions::new(0o644)).unwrap();
        assert_victim_intact(&v);
        assert!(!s.outside().join("created").exists());
        assert_eq!(names_in(&s.outside()), ["victim"]);
        assert!(is_symlink(&s.root().join("tls/.site.key.tmp")));
        assert_eq!(fs::read(s.root().join("tls/site.key")).unwrap(), b"SECRET KEY");
        assert_eq!(mode_of(&s.root().join("tls/site.key")), 0o600);
    }

    #[test]
    fn a_symlink_at_a_guessed_temp_name_receives_nothing() {
        let _g = shared();
        let s = Scratch::new("guess");
        let store = s.store(Resolver::Auto);
        let v = s.victim();
        // The attacker guessed the first two names: a link to an existing file, a dangling link.
        symlink(&v, s.root().join(".site.key.0000000000001111.tmp")).unwrap();
        symlink(s.outside().join("created"), s.root().join(".site.key.0000000000002222.tmp")).unwrap();
        let guesses = [0x1111u64, 0x2222, 0x3333];
        let mut i = 0;
        let mut random = || {
            i += 1;
            Ok(guesses[i - 1])
        };
        store.write_file_with(Path::new("site.key"), b"SECRET KEY", key(), &mut random).unwrap();
        assert_eq!(i, 3, "taken names are skipped");
        assert_victim_intact(&v);
        assert!(!s.outside().join("created").exists());
        assert_eq!(fs::read(s.root().join("site.key")).unwrap(), b"SECRET KEY");
        assert_eq!(
            names_in(&s.root()),
            [".site.key.0000000000001111.tmp", ".site.key.0000000000002222.tmp", "site.key"],
            "the links are left alone and the temp file used is renamed away"
        );

        // Every name taken: an error, still nothing written anywhere.
        let mut always = || Ok(0x1111u64);
        let e = store.write_file_with(Path::new("site.key"), b"OTHER KEY", key(), &mut always).unwrap_err();
        assert_eq!(e.to_string(), "cannot create a temporary file for site.key: every temporary name tried was taken");
        assert_victim_intact(&v);
        assert_eq!(fs::read(s.root().join("site.key")).unwrap(), b"SECRET KEY");
    }

    #[test]
    fn temp_names_are_random_and_recognized() {
        let a = temp_name(OsStr::new("site.key"), random_u64().unwrap());
        let b = temp_name(OsStr::new("site.key"), random_u64().unwrap());
        assert_ne!(a, b);
        assert!(is_temp_name(&a, OsStr::new("site.key")));
        assert!(is_temp_name(b".site.key.tmp", OsStr::new("site.key")));
        assert!(!is_temp_name(b".site.key.0123456789abcdef.tmp", OsStr::new("site")));
        assert!(!is_temp_name(b".site.key.0123.tmp", OsStr::new("site.key")));
        assert!(!is_temp_name(b".site.key.0123456789ABCDEF.tmp", OsStr::new("site.key")));
        assert!(!is_temp_name(b"site.key.0123456789abcdef.tmp", OsStr::new("site.key")));
        let long = OsString::from("n".repeat(255));
        let t = temp_name(&long, 7);
        assert!(t.len() <= 255, "a temporary name stays within NAME_MAX");
        assert!(is_temp_name(&t, &long));
    }

    #[test]
    fn a_symlinked_target_is_refused() {
        let _g = shared();
        let s = Scratch::new("linktarget");
        fs::create_dir(s.root().join("tls")).unwrap();
        let v = s.victim();
        symlink(&v, s.root().join("tls/site.key")).unwrap();
        symlink(s.outside().join("created"), s.root().join("tls/dangling.key")).unwrap();
        for r in resolvers() {
            let store = s.store(r);
            let e = store.write_file(Path::new("tls/site.key"), b"SECRET", key()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Symlink);
            assert_eq!(e.to_string(), "refusing to write tls/site.key: it is a symbolic link");
            assert_eq!(e.path, Path::new("tls/site.key"));
            let e = store.write_file(Path::new("tls/dangling.key"), b"SECRET", key()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Symlink);
            let e = store.read_file(Path::new("tls/site.key"), 1024).unwrap_err();
            assert_eq!(e.to_string(), "refusing to read tls/site.key: it is a symbolic link");
            assert_victim_intact(&v);
            assert!(!s.outside().join("created").exists());
            assert_eq!(names_in(&s.root().join("tls")), ["dangling.key", "site.key"], "no temp file left");
        }
    }

    #[test]
    fn a_directory_or_fifo_target_is_refused() {
        let _g = shared();
        let s = Scratch::new("dirtarget");
        fs::create_dir_all(s.root().join("tls/site.key")).unwrap();
        let fifo = CString::new(s.root().join("tls/pipe.key").into_os_string().into_vec()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let store = s.store(Resolver::Auto);
        let e = store.write_file(Path::new("tls/site.key"), b"SECRET", key()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Directory);
        assert_eq!(e.to_string(), "refusing to write tls/site.key: it is a directory");
        let e = store.write_file(Path::new("tls/pipe.key"), b"SECRET", key()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotRegular);
        // Reading a FIFO neither blocks nor succeeds.
        assert_eq!(store.read_file(Path::new("tls/pipe.key"), 1024).unwrap_err().kind(), ErrorKind::NotRegular);
        assert_eq!(store.read_file(Path::new("tls/site.key"), 1024).unwrap_err().kind(), ErrorKind::Directory);
        let e = store.remove_file(Path::new("tls/site.key")).unwrap_err();
        assert_eq!(e.to_string(), "refusing to remove tls/site.key: it is a directory");
        assert_eq!(names_in(&s.root().join("tls")), ["pipe.key", "site.key"]);
        assert!(names_in(&s.root().join("tls/site.key")).is_empty());
    }

    #[test]
    fn a_symlinked_directory_on_the_way_is_refused() {
        let _g = shared();
        let s = Scratch::new("linkdir");
        fs::create_dir(s.outside().join("dir")).unwrap();
        fs::write(s.outside().join("dir/site.key"), b"VICTIM").unwrap();
        fs::set_permissions(s.outside().join("dir/site.key"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::create_dir(s.root().join("a")).unwrap();
        symlink(s.outside().join("dir"), s.root().join("web")).unwrap();
        symlink(s.outside().join("dir"), s.root().join("a/b")).unwrap();
        // Dangling: creating missing directories must not create its target either.
        symlink(s.outside().join("notyet"), s.root().join("later")).unwrap();
        // Relative, pointing back inside the root: still refused.
        fs::create_dir(s.root().join("real")).unwrap();
        symlink("real", s.root().join("alias")).unwrap();
        for r in resolvers() {
            let store = s.store(r);
            for (path, link) in [
                ("web/site.key", "web"),
                ("web/sub/site.key", "web"),
                ("a/b/site.key", "a/b"),
                ("a/b/c/d/site.key", "a/b"),
                ("later/x/site.key", "later"),
                ("alias/site.key", "alias"),
            ] {
                for create_dirs in [true, false] {
                    let e = store
                        .write_file(Path::new(path), b"SECRET", WriteOptions { create_dirs, ..key() })
                        .unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::Symlink, "{r:?} {path}: {e}");
                    if r != Resolver::Openat2 {
                        assert_eq!(e.to_string(), format!("refusing to write {path}: {link} is a symbolic link"));
                    } else {
                        assert_eq!(
                            e.to_string(),
                            format!("refusing to write {path}: a directory on the way is a symbolic link")
                        );
                    }
                }
                assert_eq!(store.read_file(Path::new(path), 1024).unwrap_err().kind(), ErrorKind::Symlink);
                assert_eq!(store.remove_file(Path::new(path)).unwrap_err().kind(), ErrorKind::Symlink);
            }
            assert_eq!(names_in(&s.outside()), ["dir"]);
            assert_eq!(names_in(&s.outside().join("dir")), ["site.key"]);
            assert_victim_intact(&s.outside().join("dir/site.key"));
            assert!(names_in(&s.root().join("real")).is_empty());
        }
    }

    #[test]
    fn a_file_on_the_way_is_not_a_directory() {
        let _g = shared();
        let s = Scratch::new("filedir");
        fs::write(s.root().join("plain"), b"x").unwrap();
        for r in resolvers() {
            let e = s.store(r).write_file(Path::new("plain/site.key"), b"SECRET", key()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotADirectory, "{r:?}: {e}");
        }
        let e = s.store(Resolver::Auto).write_file(Path::new("plain/x/site.key"), b"S", key()).unwrap_err();
        assert_eq!(e.to_string(), "refusing to write plain/x/site.key: plain is not a directory");
    }

    #[test]
    fn parent_and_absolute_paths_are_refused() {
        let _g = shared();
        let s = Scratch::new("dotdot");
        let store = s.store(Resolver::Auto);
        for (path, why) in [
            ("../outside/x.key", "`..` is not allowed"),
            ("a/../../outside/x.key", "`..` is not allowed"),
            ("a/../x.key", "`..` is not allowed"),
            ("..", "`..` is not allowed"),
            ("/etc/x.key", "an absolute path is not allowed (paths are relative to the store root)"),
            ("", "the path names the store root itself"),
            (".", "the path names the store root itself"),
        ] {
            let e = store.write_file(Path::new(path), b"SECRET", key()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Invalid, "{path}");
            assert_eq!(e.to_string(), format!("refusing to write {path}: {why}"));
            assert_eq!(store.remove_file(Path::new(path)).unwrap_err().kind(), ErrorKind::Invalid);
            assert_eq!(store.read_file(Path::new(path), 10).unwrap_err().kind(), ErrorKind::Invalid);
        }
        let nul = Path::new(OsStr::from_bytes(b"a\0b/x.key"));
        assert_eq!(store.write_file(nul, b"S", key()).unwrap_err().kind(), ErrorKind::Invalid);
        let e = store.write_file(Path::new("x.key"), b"S", WriteOptions::new(0o4755)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(names_in(&s.root()).is_empty());
        assert!(names_in(&s.outside()).is_empty());
        // `.` components and doubled slashes are harmless and normalized.
        store.write_file(Path::new("./a//b/./x.key"), b"S", key()).unwrap();
        assert_eq!(fs::read(s.root().join("a/b/x.key")).unwrap(), b"S");
    }

    #[test]
    fn missing_directories_are_created_beneath_the_root() {
        let _g = shared();
        let s = Scratch::new("mkdir");
        for r in resolvers() {
            let store = s.store(r);
            let dir = format!("{r:?}/deep/er");
            let path = format!("{dir}/site.key");
            let e = store.write_file(Path::new(&path), b"K", WriteOptions { create_dirs: false, ..key() }).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound, "{r:?}: {e}");
            store.write_file(Path::new(&path), b"K", key()).unwrap();
            assert_eq!(fs::read(s.root().join(&path)).unwrap(), b"K");
            let m = fs::symlink_metadata(s.root().join(&dir)).unwrap();
            assert!(m.is_dir());
            assert_eq!(m.mode() & 0o7777 & !0o700, 0, "created directories are at most 0700");
        }
        assert_eq!(names_in(&s.outside()), Vec::<String>::new());
    }

    #[test]
    fn the_temp_file_is_removed_when_the_write_fails() {
        let _g = shared();
        let s = Scratch::new("cleanup");
        let store = s.store(Resolver::Auto);
        store.write_file(Path::new("site.key"), b"OLD", key()).unwrap();
        // A directory where the backup goes: the write fails after the temp file was written.
        fs::create_dir(s.root().join("site.key.bak")).unwrap();
        fs::write(s.root().join("site.key.bak/keep"), b"x").unwrap();
        let e = store.write_file(Path::new("site.key"), b"NEW", key()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Directory);
        assert_eq!(e.to_string(), "refusing to replace the backup site.key.bak: it is a directory");
        assert_eq!(names_in(&s.root()), ["site.key", "site.key.bak"]);
        assert_eq!(fs::read(s.root().join("site.key")).unwrap(), b"OLD");
    }

    #[test]
    fn remove_leaves_no_key_material_behind() {
        let _g = shared();
        let s = Scratch::new("remove");
        let store = s.store(Resolver::Auto);
        store.write_file(Path::new("tls/site.key"), b"OLD", key()).unwrap();
        store.write_file(Path::new("tls/site.key"), b"NEW", key()).unwrap();
        let tls = s.root().join("tls");
        assert!(tls.join("site.key.bak").exists());
        // Leftovers of crashed writes, this agent's and an earlier one's (here a planted link).
        fs::write(tls.join(".site.key.0123456789abcdef.tmp"), b"HALF A KEY").unwrap();
        let v = s.victim();
        symlink(&v, tls.join(".site.key.tmp")).unwrap();
        // Not ours: left alone.
        for other in [".other.key.0123456789abcdef.tmp", "site.key.backup", ".site.key.0123.tmp", "site.crt"] {
            fs::write(tls.join(other), b"x").unwrap();
        }
        let removed = store.remove_file(Path::new("tls/site.key")).unwrap();
        assert_eq!(removed, Removed { file: true, backup: true, temp_files: 2 });
        assert_eq!(
            names_in(&tls),
            [".other.key.0123456789abcdef.tmp", ".site.key.0123.tmp", "site.crt", "site.key.backup"]
        );
        assert_victim_intact(&v);
        // Again: nothing left to remove, not an error; nor is a missing directory.
        assert_eq!(store.remove_file(Path::new("tls/site.key")).unwrap(), Removed::default());
        assert_eq!(store.remove_file(Path::new("gone/away/site.key")).unwrap(), Removed::default());
        // A backup left without its file is removed too.
        fs::write(tls.join("orphan.key.bak"), b"OLD KEY").unwrap();
        assert_eq!(
            store.remove_file(Path::new("tls/orphan.key")).unwrap(),
            Removed { file: false, backup: true, temp_files: 0 }
        );
        assert!(!tls.join("orphan.key.bak").exists());
    }

    #[test]
    fn remove_refuses_a_symlink_and_touches_nothing() {
        let _g = shared();
        let s = Scratch::new("rmlink");
        let v = s.victim();
        symlink(&v, s.root().join("site.key")).unwrap();
        fs::write(s.root().join("site.key.bak"), b"OLD").unwrap();
        for r in resolvers() {
            let e = s.store(r).remove_file(Path::new("site.key")).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Symlink);
            assert_eq!(e.to_string(), "refusing to remove site.key: it is a symbolic link");
        }
        assert!(is_symlink(&s.root().join("site.key")));
        assert!(s.root().join("site.key.bak").exists());
        assert_victim_intact(&v);
        // A backup that is a link is the agent's name: the link itself goes, its target stays.
        fs::remove_file(s.root().join("site.key")).unwrap();
        fs::remove_file(s.root().join("site.key.bak")).unwrap();
        symlink(&v, s.root().join("site.key.bak")).unwrap();
        let removed = s.store(Resolver::Auto).remove_file(Path::new("site.key")).unwrap();
        assert_eq!(removed, Removed { file: false, backup: true, temp_files: 0 });
        assert!(names_in(&s.root()).is_empty());
        assert_victim_intact(&v);
    }

    #[test]
    fn read_file_reads_regular_files_only() {
        let _g = shared();
        let s = Scratch::new("read");
        let store = s.store(Resolver::Auto);
        assert_eq!(store.read_file(Path::new("tls/site.crt"), 100).unwrap(), None);
        store.write_file(Path::new("tls/site.crt"), b"CRT", WriteOptions::new(0o644)).unwrap();
        assert_eq!(store.read_file(Path::new("tls/site.crt"), 100).unwrap().as_deref(), Some(&b"CRT"[..]));
        assert_eq!(store.read_file(Path::new("tls/other.crt"), 100).unwrap(), None);
        assert_eq!(store.read_file(Path::new("tls/site.crt"), 3).unwrap().as_deref(), Some(&b"CRT"[..]));
        let e = store.read_file(Path::new("tls/site.crt"), 2).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        assert_eq!(e.to_string(), "refusing to read tls/site.crt: it is larger than 2 bytes");
    }

    #[test]
    fn the_store_root_is_opened_or_created() {
        let _g = shared();
        let s = Scratch::new("rootdir");
        let missing = s.base.join("new/root");
        let e = StoreRoot::open(&missing).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().starts_with(&format!("cannot open the store root {}: ", missing.display())));
        let store = StoreRoot::open_or_create(&missing).unwrap();
        assert_eq!(mode_of(&missing) & !0o700, 0);
        store.write_file(Path::new("p12/store.p12"), b"P12", key()).unwrap();
        assert_eq!(fs::read(missing.join("p12/store.p12")).unwrap(), b"P12");
        // A file directly in the root.
        store.write_file(Path::new("top.jks"), b"JKS", key()).unwrap();
        assert_eq!(
            store.remove_file(Path::new("top.jks")).unwrap(),
            Removed { file: true, backup: false, temp_files: 0 }
        );
    }

    /// Installs, on the calling thread only, a seccomp filter making `openat2` fail with `errno`.
    fn deny_openat2_on_this_thread(errno: i32) -> bool {
        let op = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter { code: code as u16, jt, jf, k };
        let mut filter = [
            op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0), // seccomp_data.nr
            op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, libc::SYS_openat2 as u32, 0, 1),
            op(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | errno as u32, 0, 0),
            op(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW, 0, 0),
        ];
        let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_mut_ptr() };
        // SAFETY: prctl with valid arguments; `prog` and `filter` outlive the call.
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) == 0
                && libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &prog as *const libc::sock_fprog as libc::c_ulong,
                ) == 0
        }
    }

    #[test]
    fn openat2_refused_by_the_kernel_falls_back_to_the_walk() {
        // Alone: the fallback is remembered process-wide, and reset afterwards.
        let _alone = UMASK.write().unwrap_or_else(|e| e.into_inner());
        for errno in [libc::ENOSYS, libc::EPERM] {
            let s = Scratch::new("seccomp");
            fs::create_dir(s.outside().join("dir")).unwrap();
            symlink(s.outside().join("dir"), s.root().join("web")).unwrap();
            let root = s.root();
            let run = std::thread::spawn(move || {
                if !deny_openat2_on_this_thread(errno) {
                    return false;
                }
                let store = StoreRoot::open(&root).unwrap();
                let probe = openat2(store.fd.as_fd(), c".", libc::O_PATH | libc::O_DIRECTORY, RESOLVE).unwrap_err();
                assert_eq!(probe.raw_os_error(), Some(errno), "the filter is in place");
                store.write_file(Path::new("new/dir/site.key"), b"K", key()).unwrap();
                assert!(OPENAT2_UNSUPPORTED.load(Ordering::Relaxed), "the fallback was taken");
                assert_eq!(store.read_file(Path::new("new/dir/site.key"), 10).unwrap().as_deref(), Some(&b"K"[..]));
                let e = store.write_file(Path::new("web/site.key"), b"SECRET", key()).unwrap_err();
                assert_eq!(e.to_string(), "refusing to write web/site.key: web is a symbolic link");
                assert!(store.remove_file(Path::new("new/dir/site.key")).unwrap().file);
                true
            })
            .join();
            OPENAT2_UNSUPPORTED.store(false, Ordering::Relaxed);
            if !run.unwrap() {
                eprintln!("no seccomp filter could be installed here: the automatic fallback is untested");
                return;
            }
            assert!(names_in(&s.outside().join("dir")).is_empty());
            assert!(s.root().join("new/dir").is_dir());
        }
    }

    #[test]
    fn the_walk_and_openat2_agree_on_plain_paths() {
        let _g = shared();
        let s = Scratch::new("agree");
        fs::create_dir_all(s.root().join("a/b/c")).unwrap();
        for r in resolvers() {
            let store = s.store(r);
            let name = format!("{r:?}.key");
            let path = PathBuf::from("a/b/c").join(&name);
            store.write_file(&path, b"K", key()).unwrap();
            assert_eq!(store.read_file(&path, 10).unwrap().as_deref(), Some(&b"K"[..]));
            store.write_file(&path, b"K2", key()).unwrap();
            assert_eq!(store.remove_file(&path).unwrap(), Removed { file: true, backup: true, temp_files: 0 });
        }
        assert!(names_in(&s.root().join("a/b/c")).is_empty());
    }
}
