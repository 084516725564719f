//! The plugins a user registered with `oxiida plugin add`, as `nu plugin add`
//! keeps them: one TOML file, `$XDG_CONFIG_HOME/oxiida/plugins.toml`
//! (`~/.config/oxiida/plugins.toml` without it). Each entry names a plugin
//! and where it is (a library or a manifest), with what was learned when it
//! was added (kind, version, functions), so listing starts nothing.
//! A process plugin added as `exec:PROGRAM[=ARGS]` gets a manifest of its
//! own beside the file, in `plugins/`.

use std::path::{Path, PathBuf};

use toml_edit::{value, Array, DocumentMut, Item, Table};

/// One registered plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// A library, or a manifest `NAME.oxiida-plugin.toml`.
    pub path: PathBuf,
    /// `library` or `process`.
    pub kind: String,
    pub version: String,
    /// What it provides; `None` when it says on request only.
    pub functions: Option<Vec<String>>,
    pub description: String,
}

/// The folder of oxiida's user configuration.
pub fn config_dir() -> Result<PathBuf, String> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".config")))
        .ok_or("neither XDG_CONFIG_HOME nor HOME is set, so there is no folder for the plugin registry")?;
    Ok(base.join("oxiida"))
}

/// The registry file.
pub fn file() -> Result<PathBuf, String> {
    Ok(config_dir()?.join("plugins.toml"))
}

fn read(path: &Path) -> Result<DocumentMut, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.parse().map_err(|e| format!("the plugin registry {} is not valid TOML: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DocumentMut::new()),
        Err(e) => Err(format!("cannot read the plugin registry {}: {e}", path.display())),
    }
}

fn write(path: &Path, doc: &DocumentMut) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // Written aside, then renamed: a reader never sees half a file.
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, doc.to_string()).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn entry(name: &str, table: &Table) -> Entry {
    let text = |key: &str| table.get(key).and_then(Item::as_str).unwrap_or_default().to_owned();
    let functions =
        table.get("functions").and_then(Item::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect());
    Entry {
        name: name.to_owned(),
        path: PathBuf::from(text("path")),
        kind: text("kind"),
        version: text("version"),
        functions,
        description: text("description"),
    }
}

/// Every registered plugin, in name order.
pub fn list() -> Result<Vec<Entry>, String> {
    let doc = read(&file()?)?;
    let Some(plugins) = doc.get("plugins").and_then(Item::as_table) else { return Ok(Vec::new()) };
    let mut entries: Vec<Entry> = plugins.iter().filter_map(|(name, item)| item.as_table().map(|t| entry(name, t))).collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// The registered plugin called `name`.
pub fn lookup(name: &str) -> Result<Option<Entry>, String> {
    Ok(list()?.into_iter().find(|e| e.name == name))
}

/// Registers `entry`, replacing one of the same name.
pub fn add(entry: &Entry) -> Result<(), String> {
    let path = file()?;
    let mut doc = read(&path)?;
    if doc.get("plugins").is_none() {
        doc.insert("plugins", Item::Table(Table::new()));
    }
    let plugins = doc["plugins"].as_table_mut().ok_or_else(|| format!("in {}, `plugins` is not a table", path.display()))?;
    let mut table = Table::new();
    table.insert("path", value(entry.path.display().to_string()));
    table.insert("kind", value(&entry.kind));
    table.insert("version", value(&entry.version));
    if let Some(functions) = &entry.functions {
        table.insert("functions", value(functions.iter().collect::<Array>()));
    }
    if !entry.description.is_empty() {
        table.insert("description", value(&entry.description));
    }
    plugins.insert(&entry.name, Item::Table(table));
    write(&path, &doc)
}

/// Unregisters `name`; `false` when it was not registered. A manifest that
/// `add` wrote for it goes too.
pub fn remove(name: &str) -> Result<bool, String> {
    let path = file()?;
    let mut doc = read(&path)?;
    let Some(plugins) = doc.get_mut("plugins").and_then(Item::as_table_mut) else { return Ok(false) };
    let Some(item) = plugins.remove(name) else { return Ok(false) };
    if let Some(table) = item.as_table() {
        let manifest = entry(name, table).path;
        if manifest.parent() == Some(&manifests_dir()?) {
            let _ = std::fs::remove_file(&manifest);
        }
    }
    write(&path, &doc)?;
    Ok(true)
}

/// Where `add` writes the manifests of `exec:` plugins.
pub fn manifests_dir() -> Result<PathBuf, String> {
    Ok(config_dir()?.join("plugins"))
}

/// A TOML string literal of `s`.
fn quoted(s: &str) -> String {
    toml_edit::Value::from(s).to_string().trim().to_owned()
}

/// Writes the manifest `NAME.oxiida-plugin.toml` that starts `program`, in
/// [`manifests_dir`], and returns its path.
pub fn write_manifest(name: &str, program: &crate::process::Program) -> Result<PathBuf, String> {
    let dir = manifests_dir()?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(format!("{name}{}", crate::process::MANIFEST_SUFFIX));
    let args: Vec<String> = program.args.iter().map(|a| quoted(a)).collect();
    let mut text = format!(
        "# Written by `oxiida plugin add`; `oxiida plugin remove {name}` deletes it.\ncommand = {}\nargs = [{}]\n",
        quoted(&program.command.display().to_string()),
        args.join(", ")
    );
    for (key, value) in [("language", &program.language), ("description", &program.description)] {
        if let Some(value) = value {
            text.push_str(&format!("{key} = {}\n", quoted(value)));
        }
    }
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}
