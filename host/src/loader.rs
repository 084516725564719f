//! Finding and loading plugin libraries. A library is loaded and initialised
//! once per process and never unloaded (its code may still be running on a
//! cancelled call's thread), so loaded plugins live in a process-wide table.

use std::collections::HashMap;
use std::ffi::{c_char, CStr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use oxiida_abi as abi;

use crate::routines::HOST;

/// A plugin library that passed every check.
#[derive(Debug)]
pub struct LoadedPlugin {
    pub name: String,
    pub path: PathBuf,
    pub abi_version: u32,
    pub table: &'static abi::Plugin,
    /// Kept (never dropped) so the library stays mapped; held here so the
    /// allocation stays reachable for leak checkers. None when linked in.
    _library: Option<&'static libloading::Library>,
}

impl LoadedPlugin {
    pub fn has(&self, capability: u32) -> bool {
        self.table.capabilities & capability != 0
    }
}

/// Where plugins named without a path are looked for, in order:
/// `OXIIDA_PLUGIN_PATH` (colon-separated), then `plugins/` beside the
/// `oxiida` executable, then `~/.local/share/oxiida/plugins`.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("OXIIDA_PLUGIN_PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(exe_dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        dirs.push(exe_dir.join("plugins"));
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

/// A path (anything with a `/` or ending in `.so`) or a name to search for.
pub fn locate(spec: &str) -> Result<PathBuf, String> {
    if spec.contains('/') || spec.ends_with(".so") {
        return Ok(PathBuf::from(spec));
    }
    let dirs = search_dirs();
    for dir in &dirs {
        for file in file_names(spec) {
            let candidate = dir.join(file);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(format!("no plugin named `{spec}` was found (searched {}; set OXIIDA_PLUGIN_PATH or pass a path)", searched.join(", ")))
}

fn loaded() -> &'static Mutex<HashMap<PathBuf, Arc<LoadedPlugin>>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<LoadedPlugin>>>> = OnceLock::new();
    LOADED.get_or_init(Default::default)
}

/// Loads (once) and checks the plugin at `path`.
pub fn load(path: &Path) -> Result<Arc<LoadedPlugin>, String> {
    let key = path.canonicalize().map_err(|e| format!("cannot load plugin {}: {e}", path.display()))?;
    let mut table = loaded().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = table.get(&key) {
        return Ok(p.clone());
    }
    let plugin = Arc::new(open(&key)?);
    table.insert(key, plugin.clone());
    Ok(plugin)
}

fn open(path: &Path) -> Result<LoadedPlugin, String> {
    let shown = path.display();
    // SAFETY: loading runs the library's initialisers; that is what loading
    // a plugin means, and the user asked for this one.
    // RTLD_GLOBAL: an interpreter a plugin embeds (libpython, liblua) must
    // export its symbols to the C extension modules it loads in turn.
    let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL;
    let library: libloading::Library =
        unsafe { libloading::os::unix::Library::open(Some(path), flags) }.map_err(|e| format!("cannot load plugin {shown}: {e}"))?.into();
    // Never unloaded: calls may outlive a workflow on cancelled threads.
    let library: &'static libloading::Library = Box::leak(Box::new(library));
    // SAFETY: the symbol's type is fixed by oxiida.h.
    let init: libloading::Symbol<abi::PluginInit> = unsafe { library.get(b"oxiida_plugin_init\0") }
        .map_err(|_| format!("{shown} is not an oxiida plugin: it does not export `{}`", abi::PLUGIN_INIT_SYMBOL))?;
    let mut error = [0 as c_char; 1024];
    // SAFETY: HOST lives forever; the buffer's size is passed along.
    let table = unsafe { init(&HOST, error.as_mut_ptr(), error.len()) };
    // SAFETY: a plugin that returns a table promises it is valid forever.
    let Some(table) = (unsafe { table.as_ref() }) else {
        *error.last_mut().expect("non-empty buffer") = 0;
        let reason = unsafe { CStr::from_ptr(error.as_ptr()) }.to_string_lossy().into_owned();
        let reason = if reason.is_empty() { "it gave no reason".to_owned() } else { reason };
        return Err(format!("plugin {shown} failed to initialise: {reason}"));
    };
    let (name, abi_version) = check(table, &shown.to_string())?;
    Ok(LoadedPlugin { name, path: path.to_path_buf(), abi_version, table, _library: Some(library) })
}

/// A plugin linked into this process, not loaded from a file: how the
/// Python package hands its own plugin table to the runtime it embeds.
pub fn in_process(table: &'static abi::Plugin) -> Result<Arc<LoadedPlugin>, String> {
    let (name, abi_version) = check(table, "linked-in plugin")?;
    Ok(Arc::new(LoadedPlugin { name, path: PathBuf::from("(linked in)"), abi_version, table, _library: None }))
}

/// The checks every plugin table passes: version range, size, name.
fn check(table: &abi::Plugin, shown: &str) -> Result<(String, u32), String> {
    let version = table.abi_version;
    if !(abi::OXIIDA_ABI_MIN_COMPATIBLE..=abi::OXIIDA_ABI_VERSION).contains(&version) {
        return Err(format!(
            "plugin {shown} was built for oxiida ABI version {version}, but this oxiida accepts versions {} to {}",
            abi::OXIIDA_ABI_MIN_COMPATIBLE,
            abi::OXIIDA_ABI_VERSION
        ));
    }
    if (table.struct_size as usize) < std::mem::size_of::<abi::Plugin>() {
        return Err(format!("plugin {shown} has a plugin table of {} bytes, smaller than ABI version 1's", table.struct_size));
    }
    if table.name.is_null() {
        return Err(format!("plugin {shown} has no name"));
    }
    // SAFETY: the header requires a static NUL-terminated name.
    let name = unsafe { CStr::from_ptr(table.name) }.to_string_lossy().into_owned();
    Ok((name, version))
}
