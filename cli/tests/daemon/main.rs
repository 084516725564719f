//! Daemon mode through the `oxiida` CLI. Every test has its own runtime and
//! data folders (OXIIDA_RUNTIME_DIR, OXIIDA_DATA_DIR), so none touches a
//! user's daemon, and a guard that kills its daemon however the test ends.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod basics;
mod durable;
mod faults;
mod fingerprint;
mod frames;
mod inputs;
mod limits;
mod process;
