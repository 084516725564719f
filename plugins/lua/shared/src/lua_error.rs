//! A Lua error as oxiida reports it: the message, and the traceback apart.
//! Shared by the plugin and the Lua module.

/// mlua appends the traceback to the message of a runtime error; split it off.
pub fn describe(err: &mlua::Error) -> (String, Option<String>) {
    let (text, traceback) = match err {
        mlua::Error::RuntimeError(text) => (text.clone(), None),
        mlua::Error::CallbackError { traceback, cause } => (cause.to_string(), Some(traceback.clone())),
        other => (other.to_string(), None),
    };
    match text.split_once("\nstack traceback:\n") {
        Some((message, tb)) => (message.to_owned(), Some(format!("stack traceback:\n{tb}"))),
        None => (text, traceback),
    }
}
