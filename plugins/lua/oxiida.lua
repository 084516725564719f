-- oxiida for Lua: the module's entry point, installed by the rock as
-- `oxiida.lua`. The native part (oxiida_native.so, the Rust module built by
-- plugins/lua/module) needs the Lua 5.4 C API; loaded by another Lua it would
-- fail with the dynamic linker's "undefined symbol". So check first, and say
-- what is needed.
if _VERSION ~= "Lua 5.4" then
  error(("the oxiida module needs Lua 5.4 (this is %s)"):format(_VERSION), 2)
end

local path = package.searchpath("oxiida_native", package.cpath)
if not path then
  error("the oxiida module's native part, oxiida_native.so, is in no folder of package.cpath ("
    .. package.cpath .. "); install the rock again, or set LUA_CPATH (`luarocks path` prints it)", 2)
end
-- The native library's entry point keeps the module's own name.
local open, why = package.loadlib(path, "luaopen_oxiida")
if not open then
  error("cannot load the oxiida module's native part " .. path .. ": " .. tostring(why), 2)
end
return open("oxiida")
