//! Where a user's daemon lives. The socket, lock and pid file go in the
//! runtime folder (`$OXIIDA_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/oxiida`,
//! else a private folder in the temp dir); the log and the database in the
//! data folder (`$OXIIDA_DATA_DIR`, else the XDG data folder). The overrides
//! let tests run daemons of their own beside a user's.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the daemon's folders cannot be found or made.
#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error("cannot find a data folder for the daemon: set HOME or OXIIDA_DATA_DIR")]
    NoDataFolder,
    #[error("cannot create {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot read {}: {source}", path.display())]
    Inspect { path: PathBuf, source: io::Error },
    #[error("{} belongs to another user; refusing to put the daemon's socket there", path.display())]
    NotOwned { path: PathBuf },
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
}

fn uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
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
            log: data.join("daemon.log"),
            database: data.join("workflows.sqlite3"),
            runtime,
            data,
        }
    }

    /// Creates both folders. The runtime folder must be the user's alone:
    /// whoever can reach the socket can run commands as this user.
    pub fn create(&self) -> Result<(), PathsError> {
        let runtime = || self.runtime.clone();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.runtime)
            .map_err(|source| PathsError::Create { path: runtime(), source })?;
        let meta = std::fs::metadata(&self.runtime).map_err(|source| PathsError::Inspect { path: runtime(), source })?;
        if meta.uid() != uid() {
            return Err(PathsError::NotOwned { path: runtime() });
        }
        if meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(&self.runtime, std::fs::Permissions::from_mode(0o700))
                .map_err(|source| PathsError::MakePrivate { path: runtime(), source })?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.data)
            .map_err(|source| PathsError::Create { path: self.data.clone(), source })
    }

    /// The daemon's pid as its pid file says (it may be stale).
    pub fn recorded_pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pid).ok()?.trim().parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_folder_is_made_private() {
        let base = std::env::temp_dir().join(format!("oxiida-paths-{}", std::process::id()));
        let paths = Paths::at(base.join("run"), base.join("data"));
        std::fs::create_dir_all(&paths.runtime).unwrap();
        std::fs::set_permissions(&paths.runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
        paths.create().unwrap();
        assert_eq!(std::fs::metadata(&paths.runtime).unwrap().mode() & 0o777, 0o700);
        assert!(paths.data.is_dir());
        let _ = std::fs::remove_dir_all(&base);
    }
}
