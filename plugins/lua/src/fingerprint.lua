-- What identifies a Lua function's code for `oxiida run --cache` (hashed
-- by the plugin): its bytecode without debug information
-- (`string.dump(f, true)`, line numbers removed by `normalize`, which also
-- lists its string constants), the values of its upvalues (plain data by
-- value, functions by their own fingerprint, tables by their contents),
-- and the values of the globals named by its string constants, likewise.
local f, normalize = ...
local dump, getupvalue, format = string.dump, debug.getupvalue, string.format
local G = _G
local out, seen = {}, {}
local function put(tag, s)
  out[#out + 1] = tag .. ":" .. #s .. ":" .. s
end
local value
local function fn(g)
  if seen[g] then
    put("again", seen[g])
    return
  end
  seen[g] = tostring(#out)
  local ok, stripped = pcall(dump, g, true)
  if not ok then
    put("cfunction", "")
    return
  end
  local code, constants = normalize(stripped)
  put("code", code)
  local env = false
  local i = 1
  while true do
    local name, v = getupvalue(g, i)
    if name == nil then break end
    if v == G then
      env = true
      put("env", "")
    else
      put("up", "")
      value(v)
    end
    i = i + 1
  end
  if env then
    local names = {}
    for k in pairs(constants) do
      if G[k] ~= nil then names[#names + 1] = k end
    end
    table.sort(names)
    for _, k in ipairs(names) do
      put("global", k)
      value(G[k])
    end
  end
end
value = function(v)
  local t = type(v)
  if t == "number" then
    put(math.type(v), format("%q", v))
  elseif t == "string" or t == "boolean" or t == "nil" then
    put(t, tostring(v))
  elseif t == "function" then
    fn(v)
  elseif t == "table" then
    if v == G or seen[v] then
      put("again", seen[v] or "G")
      return
    end
    seen[v] = tostring(#out)
    local keys = {}
    for k in pairs(v) do
      local kt = type(k)
      if kt == "string" or kt == "number" or kt == "boolean" then keys[#keys + 1] = k end
    end
    table.sort(keys, function(a, b)
      return type(a) .. tostring(a) < type(b) .. tostring(b)
    end)
    put("table", tostring(#keys))
    for _, k in ipairs(keys) do
      value(k)
      value(v[k])
    end
  else
    put(t, "")
  end
end
fn(f)
return table.concat(out, "\0")
