-- The oxiida Lua module as a rock: `luarocks make` in plugins/lua builds the
-- native module with cargo (the `command` build type, so no other rock is
-- needed: not even a Rust build backend) and installs it as oxiida_native.so
-- beside the loader oxiida.lua, which checks the Lua version first.
rockspec_format = "3.0"
package = "oxiida"
version = "0.1.0-1"
source = {
   url = "git+file:///oxiida",  -- `luarocks make` builds the checkout it runs in
   dir = "plugins/lua",
}
description = {
   summary = "Run oxiida workflows from Lua 5.4",
   detailed = [[
The oxiida workflow language for Lua: oxiida.run(src) runs a workflow whose
foreign calls are Lua functions. Needs Lua 5.4 and, to build, cargo.]],
   license = "MIT",
}
dependencies = {
   "lua >= 5.1",
}
build = {
   type = "command",
   build_command = [[cargo build --release --quiet --manifest-path module/Cargo.toml --target-dir "${OXIIDA_ROCK_TARGET:-target-rock}"]],
   install_command = [[cp "${OXIIDA_ROCK_TARGET:-target-rock}/release/liboxiida_lua_module.so" oxiida_native.so]],
   install = {
      lua = { oxiida = "oxiida.lua" },
      lib = { oxiida_native = "oxiida_native.so" },
   },
}
