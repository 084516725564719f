//! `oxiida plugin add|list|remove`: the user's registry of plugins
//! (`oxiida_host::registry`), as `nu plugin add` keeps one. Adding a plugin
//! starts it once, to check it and to record what it says about itself.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use oxiida_host::{self as plugin, process, registry, Kind};

#[derive(Subcommand)]
pub enum PluginAction {
    /// Register a plugin: a library, a manifest NAME.oxiida-plugin.toml, or exec:PROGRAM[=ARGUMENTS]
    Add {
        /// What to register (e.g. ./libfoo.so, tools.oxiida-plugin.toml, exec:node=tools.js)
        path: String,
        /// The name `--plugin NAME` finds it by [default: the name the plugin gives]
        #[arg(long)]
        name: Option<String>,
    },
    /// List the registered plugins with their kind, version and functions
    List,
    /// Forget a registered plugin
    Remove {
        /// Its name, as `oxiida plugin list` shows it
        name: String,
    },
}

pub fn plugin(action: PluginAction) -> u8 {
    let done = match action {
        PluginAction::Add { path, name } => add(&path, name.as_deref()),
        PluginAction::List => list(),
        PluginAction::Remove { name } => remove(&name),
    };
    match done {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("oxiida: {e}");
            1
        }
    }
}

/// Arguments that name existing files, made absolute, so the plugin
/// starts the same from any folder.
fn absolute_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .map(|a| {
            let path = Path::new(&a);
            if !a.starts_with('-') && path.exists() {
                std::path::absolute(path).map(|p| p.display().to_string()).unwrap_or(a)
            } else {
                a
            }
        })
        .collect()
}

fn valid_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` cannot name a plugin: use letters, digits, `_` and `-`"))
    }
}

fn add(spec: &str, name: Option<&str>) -> Result<(), String> {
    let (what, config) = if spec.starts_with(plugin::EXEC) { spec.split_once('=').unwrap_or((spec, "")) } else { (spec, "") };
    let path = plugin::locate(what).map_err(|e| e.to_string())?;
    let loaded = plugin::load(&path).map_err(|e| e.to_string())?;
    let entry = match &loaded.kind {
        Kind::Library(_) => {
            let name = name.unwrap_or(&loaded.name).to_owned();
            valid_name(&name)?;
            let path = path.canonicalize().map_err(|e| format!("cannot register {}: {e}", path.display()))?;
            registry::Entry {
                name,
                path,
                kind: "library".into(),
                version: format!("ABI {}", loaded.abi_version),
                functions: None,
                description: String::new(),
            }
        }
        Kind::Process(program) => {
            let session = process::Session::start(program, config)?;
            let hello = session.hello().clone();
            drop(session);
            let name = name.map(str::to_owned).unwrap_or_else(|| hello.name.clone());
            valid_name(&name)?;
            let args = absolute_args(program.args.iter().cloned().chain(config.split_whitespace().map(str::to_owned)));
            let program = process::Program { args, name: Some(name.clone()), ..program.clone() };
            let manifest = registry::write_manifest(&name, &program)?;
            registry::Entry {
                name,
                path: manifest,
                kind: "process".into(),
                version: hello.version,
                functions: hello.functions,
                description: program.description.unwrap_or_default(),
            }
        }
    };
    registry::add(&entry)?;
    println!("registered plugin `{}` ({}, {}) in {}", entry.name, entry.kind, entry.path.display(), registry::file()?.display());
    Ok(())
}

fn functions(entry: &registry::Entry) -> String {
    match &entry.functions {
        Some(names) if names.is_empty() => "(none)".into(),
        Some(names) => names.join(", "),
        None => "(asked for by name)".into(),
    }
}

fn list() -> Result<(), String> {
    let entries = registry::list()?;
    if entries.is_empty() {
        eprintln!("oxiida: no plugins are registered in {} (add one with `oxiida plugin add PATH`)", registry::file()?.display());
        return Ok(());
    }
    println!("NAME\tKIND\tVERSION\tFUNCTIONS\tPATH");
    for e in &entries {
        let version = if e.version.is_empty() { "-" } else { &e.version };
        println!("{}\t{}\t{version}\t{}\t{}", e.name, e.kind, functions(e), e.path.display());
    }
    Ok(())
}

fn remove(name: &str) -> Result<(), String> {
    if registry::remove(name)? {
        println!("removed plugin `{name}`");
        Ok(())
    } else {
        Err(format!("no plugin named `{name}` is registered (see `oxiida plugin list`)"))
    }
}

/// For `oxiida plugins`: the manifests in the plugin folders, then the
/// registered plugins. Returns how many it printed.
pub fn list_more(dirs: &[PathBuf]) -> usize {
    let mut found = 0;
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut paths: Vec<PathBuf> =
            entries.filter_map(|e| Some(e.ok()?.path())).filter(|p| p.to_string_lossy().ends_with(process::MANIFEST_SUFFIX)).collect();
        paths.sort();
        for path in paths {
            found += 1;
            match process::Program::manifest(&path) {
                Ok(p) => println!("{}\tprocess\t{}", p.name.unwrap_or_default(), path.display()),
                Err(e) => println!("(unusable)\t-\t{e}"),
            }
        }
    }
    match registry::list() {
        Ok(entries) => {
            for e in entries {
                found += 1;
                println!("{}\tregistered {}\t{}", e.name, e.kind, e.path.display());
            }
        }
        Err(e) => eprintln!("oxiida: {e}"),
    }
    found
}
