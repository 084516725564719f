//! Finding and loading plugin libraries. A library is loaded and initialised
//! once per process and never unloaded (its code may still be running on a
//! cancelled call's thread), so loaded plugins live in a process-wide table.

use std::collections::HashMap;
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use oxiida_abi::{self as abi, ErrorBuf};
use parking_lot::Mutex;

use crate::plugin::PluginRef;
use crate::process::{self, Program};
use crate::routines::HOST;

/// Why a plugin could not be found or loaded; each names the plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no plugin named `{name}` was found (searched {}; set OXIIDA_PLUGIN_PATH or pass a path)", shown(.searched))]
    NotFound { name: String, searched: Vec<PathBuf> },
    #[error("cannot load plugin {}: {source}", .path.display())]
    Missing { path: PathBuf, source: std::io::Error },
    #[error("cannot load plugin {}: {source}", .path.display())]
    Open { path: PathBuf, source: libloading::Error },
    #[error("{} is not an oxiida plugin: it does not export `{}`", .path.display(), abi::PLUGIN_INIT_SYMBOL)]
    NotAPlugin { path: PathBuf },
    #[error("plugin {} failed to initialise: {reason}", .path.display())]
    Init { path: PathBuf, reason: String },
    #[error(
        "plugin {} was built for oxiida ABI version {version}, but this oxiida accepts versions {} to {}",
        .path.display(), abi::OXIIDA_ABI_MIN_COMPATIBLE, abi::OXIIDA_ABI_VERSION
    )]
    Version { path: PathBuf, version: u32 },
    #[error("plugin {} has a plugin table of {size} bytes, smaller than ABI version 1's", .path.display())]
    TableSize { path: PathBuf, size: u32 },
    #[error("plugin {} has no name", .path.display())]
    NoName { path: PathBuf },
    /// A process plugin's program or manifest is unusable.
    #[error("{0}")]
    Process(String),
}

fn shown(dirs: &[PathBuf]) -> String {
    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// For callers whose errors are text.
impl From<LoadError> for String {
    fn from(e: LoadError) -> String {
        e.to_string()
    }
}

/// What a plugin is: a library's table, or a program to start.
#[derive(Debug)]
pub enum Kind {
    Library(PluginRef),
    Process(Program),
}

/// A plugin library that passed every check, or a process plugin's program
/// (its `abi_version` is 0: it speaks the process protocol instead, and
/// says its name when started, unless a manifest gave one).
#[derive(Debug)]
pub struct LoadedPlugin {
    pub name: String,
    pub path: PathBuf,
    pub abi_version: u32,
    pub kind: Kind,
    /// Kept (never dropped) so the library stays mapped; held here so the
    /// allocation stays reachable for leak checkers. None when linked in.
    _library: Option<&'static libloading::Library>,
}

impl LoadedPlugin {
    /// Whether a library plugin declares `capability` (a process plugin's
    /// capabilities are in its session's hello).
    pub fn has(&self, capability: u32) -> bool {
        matches!(&self.kind, Kind::Library(table) if table.capabilities() & capability != 0)
    }

    pub fn is_process(&self) -> bool {
        matches!(self.kind, Kind::Process(_))
    }

    /// A process plugin given as `exec:PROGRAM`, whose name is the one it
    /// says when started (a manifest's plugin has its name already).
    pub fn kind_is_exec(&self) -> bool {
        matches!(&self.kind, Kind::Process(p) if p.name.is_none())
    }
}

/// Where plugins named without a path are looked for, in order:
/// `OXIIDA_PLUGIN_PATH` (colon-separated), then `plugins/` beside the
/// `oxiida` executable, then `../lib/oxiida/plugins` from it (an installed
/// tree, `scripts/install.sh`), then `~/.local/share/oxiida/plugins`.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("OXIIDA_PLUGIN_PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(exe_dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        dirs.push(exe_dir.join("plugins"));
        // An installed tree: PREFIX/bin/oxiida finds PREFIX/lib/oxiida/plugins.
        dirs.push(exe_dir.join("../lib/oxiida/plugins"));
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    if let Some(data) = data {
        dirs.push(data.join("oxiida/plugins"));
    }
    dirs
}

/// The file names a plugin called `name` may have.
fn file_names(name: &str) -> [String; 3] {
    [format!("liboxiida_{name}.so"), format!("lib{name}.so"), format!("{name}.so")]
}

/// The prefix of a process plugin given by its program: `exec:node`.
pub const EXEC: &str = "exec:";

/// A path (anything with a `/` or ending in `.so`), `exec:PROGRAM` (found
/// on PATH; the result is `exec:` and its absolute path), or a name to
/// search for: a library or a manifest `NAME.oxiida-plugin.toml` in the
/// search folders, then the plugins registered with `oxiida plugin add`.
pub fn locate(spec: &str) -> Result<PathBuf, LoadError> {
    if let Some(program) = spec.strip_prefix(EXEC) {
        let program = Program::exec(program).map_err(LoadError::Process)?;
        return Ok(PathBuf::from(format!("{EXEC}{}", program.command.display())));
    }
    if spec.contains('/') || spec.ends_with(".so") || spec.ends_with(process::MANIFEST_SUFFIX) {
        return Ok(PathBuf::from(spec));
    }
    let dirs = search_dirs();
    for dir in &dirs {
        for file in file_names(spec).into_iter().chain([format!("{spec}{}", process::MANIFEST_SUFFIX)]) {
            let candidate = dir.join(file);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    if let Ok(Some(entry)) = crate::registry::lookup(spec) {
        return Ok(entry.path);
    }
    Err(LoadError::NotFound { name: spec.to_owned(), searched: dirs })
}

fn loaded() -> &'static Mutex<HashMap<PathBuf, Arc<LoadedPlugin>>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<LoadedPlugin>>>> = OnceLock::new();
    LOADED.get_or_init(Default::default)
}

/// Loads (once) and checks the plugin at `path`; for a process plugin
/// (`exec:PROGRAM` or a manifest), reads what is needed to start it.
pub fn load(path: &Path) -> Result<Arc<LoadedPlugin>, LoadError> {
    let text = path.to_string_lossy();
    if let Some(program) = text.strip_prefix(EXEC) {
        let program = Program::exec(program).map_err(LoadError::Process)?;
        let name = program.command.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok(Arc::new(LoadedPlugin { name, path: path.to_path_buf(), abi_version: 0, kind: Kind::Process(program), _library: None }));
    }
    if text.ends_with(process::MANIFEST_SUFFIX) {
        let program = Program::manifest(path).map_err(LoadError::Process)?;
        let name = program.name.clone().unwrap_or_default();
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        return Ok(Arc::new(LoadedPlugin { name, path, abi_version: 0, kind: Kind::Process(program), _library: None }));
    }
    let key = path.canonicalize().map_err(|source| LoadError::Missing { path: path.to_path_buf(), source })?;
    let mut table = loaded().lock();
    if let Some(p) = table.get(&key) {
        return Ok(p.clone());
    }
    let plugin = Arc::new(open(&key)?);
    table.insert(key, plugin.clone());
    Ok(plugin)
}

fn open(path: &Path) -> Result<LoadedPlugin, LoadError> {
    let at = || path.to_path_buf();
    // RTLD_GLOBAL: an interpreter a plugin embeds (libpython, liblua) must
    // export its symbols to the C extension modules it loads in turn.
    let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL;
    // SAFETY: loading runs the library's initialisers; that is what loading
    // a plugin means, and the user asked for this one.
    let library = unsafe { libloading::os::unix::Library::open(Some(path), flags) };
    let library: libloading::Library = library.map_err(|source| LoadError::Open { path: at(), source })?.into();
    // Never unloaded: calls may outlive a workflow on cancelled threads.
    let library: &'static libloading::Library = Box::leak(Box::new(library));
    // SAFETY: the symbol's type is fixed by oxiida.h.
    let init: libloading::Symbol<abi::PluginInit> =
        unsafe { library.get(b"oxiida_plugin_init\0") }.map_err(|_| LoadError::NotAPlugin { path: at() })?;
    let mut error = ErrorBuf::new();
    // SAFETY: HOST lives forever; the buffer's size is passed along.
    let table = unsafe { init(&HOST, error.as_mut_ptr(), error.cap()) };
    if table.is_null() {
        return Err(LoadError::Init { path: at(), reason: error.message_or(|| "it gave no reason".into()) });
    }
    // SAFETY: not NULL; a plugin that returns a table promises it is valid
    // forever and as long as its `struct_size`.
    let (name, abi_version, table) = unsafe { check(table, path) }?;
    Ok(LoadedPlugin { name, path: at(), abi_version, kind: Kind::Library(table), _library: Some(library) })
}

/// A plugin linked into this process, not loaded from a file: how the
/// Python package hands its own plugin table to the runtime it embeds.
/// Its errors are text, as that package expects; see [`LoadError`].
pub fn in_process(table: &'static abi::Plugin) -> Result<Arc<LoadedPlugin>, String> {
    let path = PathBuf::from("(linked in)");
    // SAFETY: a reference to a whole table, valid forever.
    let (name, abi_version, table) = unsafe { check(table, &path) }?;
    Ok(Arc::new(LoadedPlugin { name, path, abi_version, kind: Kind::Library(table), _library: None }))
}

/// The checks every plugin table passes: version range, size, name. The
/// table is copied into one of this version's size: a plugin of an older
/// version has a shorter one (no `handle_release`, no `session_cancel`,
/// no `fingerprint`), read only as far as it goes.
///
/// # Safety
/// `ptr` points to a plugin table valid forever, readable for its
/// `struct_size` bytes (at least its first two fields).
unsafe fn check(ptr: *const abi::Plugin, path: &Path) -> Result<(String, u32, PluginRef), LoadError> {
    let path = || path.to_path_buf();
    // SAFETY: every table starts with these two fields (the caller's promise).
    let (version, size) = unsafe { ((*ptr).abi_version, (*ptr).struct_size) };
    if !(abi::OXIIDA_ABI_MIN_COMPATIBLE..=abi::OXIIDA_ABI_VERSION).contains(&version) {
        return Err(LoadError::Version { path: path(), version });
    }
    if (size as usize) < abi::PLUGIN_V1_SIZE {
        return Err(LoadError::TableSize { path: path(), size });
    }
    let covers = |end: usize| version >= abi::HANDLES_SINCE && size as usize >= end;
    let has_v4 = covers(std::mem::offset_of!(abi::Plugin, session_cancel) + std::mem::size_of::<Option<abi::SessionCancel>>());
    let has_fingerprint = covers(std::mem::size_of::<abi::Plugin>());
    // SAFETY: the table is at least PLUGIN_V1_SIZE bytes (checked above), so
    // every field before `handle_release` is readable; that one is read only
    // when the table is long enough to hold it.
    let table: &'static abi::Plugin = unsafe {
        Box::leak(Box::new(abi::Plugin {
            abi_version: version,
            struct_size: size,
            name: (*ptr).name,
            capabilities: (*ptr).capabilities,
            session_new: (*ptr).session_new,
            session_free: (*ptr).session_free,
            resolve: (*ptr).resolve,
            call: (*ptr).call,
            reply_free: (*ptr).reply_free,
            handle_release: if has_v4 { (*ptr).handle_release } else { None },
            session_cancel: if has_v4 { (*ptr).session_cancel } else { None },
            fingerprint: if has_fingerprint { (*ptr).fingerprint } else { None },
        }))
    };
    if table.name.is_null() {
        return Err(LoadError::NoName { path: path() });
    }
    // SAFETY: the header requires a static NUL-terminated name.
    let name = unsafe { CStr::from_ptr(table.name) }.to_string_lossy().into_owned();
    // SAFETY: a table the plugin returned from init (or linked in), valid
    // forever, and checked just above.
    Ok((name, version, unsafe { PluginRef::new(table) }))
}
