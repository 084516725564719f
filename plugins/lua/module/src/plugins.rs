//! The `plugins` option of `oxiida.run`: other plugins beside the caller's
//! Lua functions, served by [`oxiida_host::Beside`] (which says how names
//! are routed between them).

/// Without `plugins`, a `from NAME` other than `lua` says how to load it.
pub(crate) fn not_loaded(from: &str) -> String {
    format!(
        "no plugin named `{from}` is loaded: oxiida.run calls the environment's Lua functions (`from lua`); \
         pass the plugin to load it, e.g. `oxiida.run(source, env, {{ plugins = {{\"exec:node=tools.js\"}} }})`"
    )
}
