//! The `oxiida` command-line tool as a library: src/main.rs, the binary's
//! own source, compiled again as a module, so that the Python package's
//! `oxiida` console command runs the very same command ([`main_with`]).

#[path = "main.rs"]
// The binary's `main` is not the library's.
#[allow(dead_code)]
mod command;

pub use command::main_with;
