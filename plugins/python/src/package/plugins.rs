//! `plugins=` of `oxiida.run` (and `check`, `run_async`): other plugins
//! beside the caller's Python scope, served by [`oxiida_host::Beside`]
//! (which says how names are routed between them).

/// Without `plugins=`, a `from NAME` other than `python` says how to load it.
pub(crate) fn not_loaded(from: &str) -> String {
    format!(
        "no plugin named `{from}` is loaded: the oxiida package calls the caller's Python functions (`from python`); \
         pass the plugin to load it, e.g. `oxiida.run(source, plugins=[\"exec:node=tools.js\"])` or a registered name"
    )
}
