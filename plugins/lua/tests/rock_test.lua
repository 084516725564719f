-- The rock built by `luarocks make` (plugins/lua/oxiida-*.rockspec), loaded
-- through `luarocks path` by stock interpreters: under Lua 5.4 it runs a
-- workflow; under any other Lua the loader refuses with the version needed,
-- before the dynamic linker can fail on the 5.4 C API.
if _VERSION ~= "Lua 5.4" then
  local ok, err = pcall(require, "oxiida")
  assert(not ok, "the oxiida module loaded under " .. _VERSION)
  local expected = "the oxiida module needs Lua 5.4 (this is " .. _VERSION .. ")"
  assert(tostring(err):find(expected, 1, true), "unexpected error: " .. tostring(err))
  assert(not tostring(err):find("undefined symbol", 1, true))
  print("ok: " .. _VERSION .. " refused: " .. expected)
  return
end

local oxiida = require("oxiida")
assert(package.searchpath("oxiida", package.path):find("share/lua/5.4/oxiida.lua", 1, true), "the rock's loader")
function square(x) return x * x end
local out = oxiida.run("require square;\npara { a = square(3); b = square(4); }\nc = a + b;\n")
assert(out.c == 25, "a workflow ran: " .. tostring(out.c))
print("ok: the rock's oxiida module runs workflows under " .. _VERSION)
