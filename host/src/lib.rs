#![deny(clippy::undocumented_unsafe_blocks)]
//! Language plugins behind the C ABI (`include/oxiida.h`): loading them, the
//! host's routine table they call back into, and [`PluginHost`], the
//! [`oxiida::foreign::Host`] that sends a workflow's calls to them.

pub use oxiida::codec;
mod beside;
mod host;
mod loader;
pub mod outbound;
mod plugin;
pub mod process;
pub mod registry;
pub mod routines;
mod spawn;

pub use beside::Beside;
pub use host::{Canceller, PluginHost, SessionError};
pub use loader::{in_process, load, locate, search_dirs, Kind, LoadError, LoadedPlugin, EXEC};
pub use plugin::{CallFailure, PluginRef, PluginSession};
pub use spawn::spawn_tied;
