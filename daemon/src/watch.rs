//! Watches the daemon's environment: a Python daemon imports from its
//! site-packages, so after a package is installed or an editable package's
//! source is edited, what its workflows run is no longer what is on disk.
//! The first change is remembered and every reply warns about it until the
//! daemon restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use notify::event::{EventKind, MetadataKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};

/// Why the environment cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch the environment: {0}")]
    Start(#[source] notify::Error),
    #[error("cannot watch {}: {source}", folder.display())]
    Folder { folder: PathBuf, source: notify::Error },
}

/// How many changed files a warning names.
const NAMED: usize = 5;

#[derive(Default)]
struct Changes {
    first_ms: Option<i64>,
    files: Vec<PathBuf>,
    more: usize,
}

pub struct Watcher {
    folders: Vec<PathBuf>,
    changes: Arc<Mutex<Changes>>,
    restart_hint: String,
    // Watching stops when this is dropped.
    _inner: RecommendedWatcher,
}

/// Bytecode caches are written by imports themselves, and reads are not
/// changes: neither means the environment changed.
fn relevant(kind: &EventKind, path: &Path) -> bool {
    let changed = match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        EventKind::Modify(_) => true,
        _ => false,
    };
    changed && !path.components().any(|c| c.as_os_str() == "__pycache__") && path.extension().is_none_or(|e| e != "pyc")
}

impl Watcher {
    /// Starts watching `folders` (recursively); folders that do not exist are skipped.
    pub fn start(folders: &[PathBuf], restart_hint: String) -> Result<Watcher, WatchError> {
        let changes = Arc::new(Mutex::new(Changes::default()));
        let seen = changes.clone();
        let mut inner = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            let mut changes = seen.lock();
            for path in event.paths.iter().filter(|p| relevant(&event.kind, p)) {
                changes.first_ms.get_or_insert_with(oxiida_protocol::now_ms);
                if changes.files.contains(path) {
                    continue;
                }
                if changes.files.len() < NAMED {
                    changes.files.push(path.clone());
                } else {
                    changes.more += 1;
                }
            }
        })
        .map_err(WatchError::Start)?;
        let mut watched = Vec::new();
        for folder in folders.iter().filter(|f| f.is_dir()) {
            inner.watch(folder, RecursiveMode::Recursive).map_err(|source| WatchError::Folder { folder: folder.clone(), source })?;
            watched.push(folder.clone());
        }
        Ok(Watcher { folders: watched, changes, restart_hint, _inner: inner })
    }

    pub fn folders(&self) -> String {
        self.folders.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
    }

    /// The warning every reply starts with, once something changed.
    pub fn warning(&self) -> Option<String> {
        let changes = self.changes.lock();
        let first = changes.first_ms?;
        let mut files: Vec<String> = changes.files.iter().map(|f| f.display().to_string()).collect();
        if changes.more > 0 {
            files.push(format!("and {} more", changes.more));
        }
        Some(format!(
            "warning: the daemon's environment changed since it started (first at {}: {}); its workflows may not run what is \
             installed now. Restart it: {}",
            oxiida_protocol::utc(first),
            files.join(", "),
            self.restart_hint
        ))
    }
}
