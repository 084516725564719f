//! What the Lua plugin (`plugins/lua`) and the Lua module
//! (`plugins/lua/module`) share. It names no `oxiida` (language) type, only
//! `oxiida_abi` ones, so the plugin links no language runtime; and it links
//! no Lua of its own: each final crate picks mlua's `vendored` or `module`.

pub mod convert;
pub mod lua_error;
