//! Where a user's daemon lives. The socket, lock and pid file go in the
//! runtime folder (`$OXIIDA_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/oxiida`,
//! else a private folder in the temp dir); the log and the database in the
//! data folder (`$OXIIDA_DATA_DIR`, else the XDG data folder). The overrides
//! let tests run daemons of their own beside a user's.
//!
//! Whoever can reach the socket can run commands as this user, and whoever
//! owns the runtime folder can put a socket of their own there. So the
//! runtime folder is checked without following links (`lstat`) before the
//! daemon serves and before a client connects: it must be a folder, not a
//! symbolic link, owned by this user and closed to everyone else (mode
//! 0700). The data folder holds every workflow's source: it is made 0700,
//! and the files in it 0600, never through a symbolic link.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why the daemon's folders cannot be found, made or trusted.
#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error("cannot find a data folder for the daemon: set HOME or OXIIDA_DATA_DIR")]
    NoDataFolder,
    #[error("cannot create {}: {source}; check that you can write there (`ls -ld`, and `lsattr -d` for an immutable folder), or set OXIIDA_DATA_DIR or OXIIDA_RUNTIME_DIR to folders of your own", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot read {}: {source}", path.display())]
    Inspect { path: PathBuf, source: io::Error },
    #[error("the runtime folder {} is owned by uid {owner}, not you (uid {uid}): another user may have created it to intercept your workflows; remove it, or set XDG_RUNTIME_DIR or OXIIDA_RUNTIME_DIR to a folder of your own", path.display())]
    NotOwned { path: PathBuf, owner: u32, uid: u32 },
    #[error("the runtime folder {} is a symbolic link: another user may have planted it to intercept your workflows; remove it, or set XDG_RUNTIME_DIR or OXIIDA_RUNTIME_DIR to a folder of your own", path.display())]
    Symlink { path: PathBuf },
    #[error("the runtime folder {} is not a folder; remove it, or set XDG_RUNTIME_DIR or OXIIDA_RUNTIME_DIR to a folder of your own", path.display())]
    NotFolder { path: PathBuf },
    #[error("the runtime folder {} has mode {mode:04o}: other users can reach the daemon's socket there; make it private (chmod 700 {}) or remove it, or set XDG_RUNTIME_DIR or OXIIDA_RUNTIME_DIR to a folder of your own", path.display(), path.display())]
    NotPrivate { path: PathBuf, mode: u32 },
    #[error("{} is owned by uid {owner}, not you (uid {uid}); refusing to keep the daemon's records there: set OXIIDA_DATA_DIR to a folder of your own", path.display())]
    DataNotOwned { path: PathBuf, owner: u32, uid: u32 },
    #[error("cannot make {} private: {source}", path.display())]
    MakePrivate { path: PathBuf, source: io::Error },
}

#[derive(Clone, Debug)]
pub struct Paths {
    pub runtime: PathBuf,
    pub data: PathBuf,
    pub socket: PathBuf,
    pub lock: PathBuf,
    pub pid: PathBuf,
    pub log: PathBuf,
    pub database: PathBuf,
    /// The highest workflow id ever handed out, kept outside the database
    /// so that ids are never reused, even after the database is deleted.
    pub last_id: PathBuf,
}

/// This process's user.
pub fn uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

/// Opens `path` without following a final symbolic link (`ELOOP` if it is
/// one), for `fstat` and `fchmod`.
fn open_nofollow(path: &Path, directory: bool) -> io::Result<File> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let dir = if directory { libc::O_DIRECTORY } else { 0 };
    // SAFETY: a NUL-terminated path and plain flags; the descriptor returned
    // is new and owned by the File below.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | dir) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Sets the mode of an open file (never through a link: the descriptor is
/// the file itself).
fn fchmod(file: &File, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: fchmod on a descriptor `file` owns.
    if unsafe { libc::fchmod(file.as_raw_fd(), mode) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes an existing file `mode` (0600) if it is a regular file of ours
/// that others can read; a missing file is fine, and a symbolic link is
/// left alone (only the user can have put one in their private folder).
pub fn make_file_private(path: &Path) -> Result<(), PathsError> {
    let file = match open_nofollow(path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) => return Ok(()),
        Err(source) => return Err(PathsError::MakePrivate { path: path.to_owned(), source }),
    };
    let meta = file.metadata().map_err(|source| PathsError::Inspect { path: path.to_owned(), source })?;
    if meta.is_file() && meta.uid() == uid() && meta.mode() & 0o077 != 0 {
        fchmod(&file, 0o600).map_err(|source| PathsError::MakePrivate { path: path.to_owned(), source })?;
    }
    Ok(())
}

impl Paths {
    /// Reads the environment; creates nothing.
    pub fn from_env() -> Result<Self, PathsError> {
        let dirs = directories::ProjectDirs::from("", "", "oxiida");
        let runtime = match std::env::var_os("OXIIDA_RUNTIME_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => dirs
                .as_ref()
                .and_then(|d| d.runtime_dir().map(Path::to_path_buf))
                .unwrap_or_else(|| std::env::temp_dir().join(format!("oxiida-{}", uid()))),
        };
        let data = match std::env::var_os("OXIIDA_DATA_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => dirs.map(|d| d.data_dir().to_path_buf()).ok_or(PathsError::NoDataFolder)?,
        };
        Ok(Paths::at(runtime, data))
    }

    /// The files of a daemon whose folders are these.
    pub fn at(runtime: PathBuf, data: PathBuf) -> Self {
        let (runtime, data) = (absolute(runtime), absolute(data));
        Paths {
            socket: runtime.join("daemon.sock"),
            lock: runtime.join("daemon.lock"),
            pid: runtime.join("daemon.pid"),
            last_id: runtime.join("last-id"),
            log: data.join("daemon.log"),
            database: data.join("workflows.sqlite3"),
            runtime,
            data,
        }
    }

    /// Checks the runtime folder with `lstat`: a folder (not a symbolic
    /// link), owned by this user, mode 0700. `Ok(false)` when it does not
    /// exist (so no daemon can be listening there).
    pub fn check_runtime(&self) -> Result<bool, PathsError> {
        let path = || self.runtime.clone();
        let meta = match std::fs::symlink_metadata(&self.runtime) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(source) => return Err(PathsError::Inspect { path: path(), source }),
        };
        if meta.file_type().is_symlink() {
            return Err(PathsError::Symlink { path: path() });
        }
        if meta.uid() != uid() {
            return Err(PathsError::NotOwned { path: path(), owner: meta.uid(), uid: uid() });
        }
        if !meta.is_dir() {
            return Err(PathsError::NotFolder { path: path() });
        }
        if meta.mode() & 0o077 != 0 {
            return Err(PathsError::NotPrivate { path: path(), mode: meta.mode() & 0o7777 });
        }
        Ok(true)
    }

    /// Creates both folders (0700: a umask can only take bits away, and the
    /// process-wide umask is left alone, since clients such as Python's
    /// call this too), then checks the runtime folder (see
    /// [`Paths::check_runtime`]): one that another user owns, a symbolic
    /// link, or one open to others is refused, not fixed. An existing data
    /// folder of ours is made 0700 through its descriptor.
    pub fn create(&self) -> Result<(), PathsError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.runtime)
            .map_err(|source| PathsError::Create { path: self.runtime.clone(), source })?;
        self.check_runtime()?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.data)
            .map_err(|source| PathsError::Create { path: self.data.clone(), source })?;
        self.make_data_private()
    }

    /// Makes the data folder 0700. A symbolic link to it is followed only if
    /// this user owns the link (their own choice of disk, say); the folder
    /// itself must be theirs, and is changed through its descriptor.
    fn make_data_private(&self) -> Result<(), PathsError> {
        let path = || self.data.clone();
        let dir = match open_nofollow(&self.data, true) {
            Ok(d) => d,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                let link = std::fs::symlink_metadata(&self.data).map_err(|source| PathsError::Inspect { path: path(), source })?;
                if link.uid() != uid() {
                    return Err(PathsError::DataNotOwned { path: path(), owner: link.uid(), uid: uid() });
                }
                File::open(&self.data).map_err(|source| PathsError::Inspect { path: path(), source })?
            }
            Err(source) => return Err(PathsError::Inspect { path: path(), source }),
        };
        let meta = dir.metadata().map_err(|source| PathsError::Inspect { path: path(), source })?;
        if meta.uid() != uid() {
            return Err(PathsError::DataNotOwned { path: path(), owner: meta.uid(), uid: uid() });
        }
        if meta.mode() & 0o077 != 0 {
            fchmod(&dir, 0o700).map_err(|source| PathsError::MakePrivate { path: path(), source })?;
        }
        Ok(())
    }

    /// Opens the log for appending: created 0600, made 0600 if it was not,
    /// never through a symbolic link.
    pub fn open_log(&self) -> Result<File, PathsError> {
        let path = || self.log.clone();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.log)
            .map_err(|source| PathsError::Create { path: path(), source })?;
        let meta = file.metadata().map_err(|source| PathsError::Inspect { path: path(), source })?;
        if meta.mode() & 0o077 != 0 {
            fchmod(&file, 0o600).map_err(|source| PathsError::MakePrivate { path: path(), source })?;
        }
        Ok(file)
    }

    /// The daemon's pid as its pid file says (it may be stale).
    pub fn recorded_pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pid).ok()?.trim().parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn base(name: &str) -> PathBuf {
        let base = std::env::temp_dir().join(format!("oxiida-paths-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        base
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn new_folders_are_private_and_an_open_data_folder_is_closed() {
        let base = base("new");
        let paths = Paths::at(base.join("run"), base.join("data"));
        std::fs::create_dir_all(&paths.data).unwrap();
        std::fs::set_permissions(&paths.data, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(&paths.log, "").unwrap();
        std::fs::set_permissions(&paths.log, std::fs::Permissions::from_mode(0o644)).unwrap();
        paths.create().unwrap();
        assert!(paths.check_runtime().unwrap());
        assert_eq!(mode(&paths.runtime), 0o700);
        assert_eq!(mode(&paths.data), 0o700);
        drop(paths.open_log().unwrap());
        assert_eq!(mode(&paths.log), 0o600);
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn an_open_or_linked_runtime_folder_is_refused_and_left_alone() {
        let base = base("refused");
        let paths = Paths::at(base.join("run"), base.join("data"));
        std::fs::create_dir_all(&paths.runtime).unwrap();
        std::fs::set_permissions(&paths.runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = paths.create().unwrap_err();
        assert!(matches!(e, PathsError::NotPrivate { mode: 0o755, .. }), "{e}");
        assert!(e.to_string().contains("chmod 700"), "{e}");
        assert_eq!(mode(&paths.runtime), 0o755);

        std::fs::create_dir_all(base.join("target")).unwrap();
        std::fs::set_permissions(base.join("target"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let linked = Paths::at(base.join("link"), base.join("data"));
        std::os::unix::fs::symlink(base.join("target"), &linked.runtime).unwrap();
        let e = linked.create().unwrap_err();
        assert!(matches!(e, PathsError::Symlink { .. }), "{e}");
        assert!(matches!(linked.check_runtime(), Err(PathsError::Symlink { .. })));
        assert_eq!(mode(&base.join("target")), 0o755, "nothing is changed through the link");
        assert!(!Paths::at(base.join("none"), base.join("data")).check_runtime().unwrap());
        let _ = std::fs::remove_dir_all(&base);
    }
}
