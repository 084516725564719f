-- The oxiida Lua module under the stock interpreter:
--   LUA_CPATH="DIR/?.so;;" lua5.4 module_test.lua   (DIR holds oxiida.so)
local oxiida = require("oxiida")

local passed, failed = 0, 0
local function test(name, body)
  local ok, err = pcall(body)
  if ok then
    passed = passed + 1
  else
    failed = failed + 1
    io.stderr:write("FAIL ", name, ": ", tostring(err), "\n")
  end
end

local function contains(text, part)
  assert(type(text) == "string", "expected a string, got " .. type(text))
  assert(text:find(part, 1, true), ("%q lacks %q"):format(text, part))
end

-- Globals: the default environment.
calls = {}
function square(x)
  calls[#calls + 1] = x
  return x * x
end
function shape(v) return { kind = math.type(v) or type(v), items = { 1, 2.5, "s", true }, empty = {} } end
function fail(x) error("no good: " .. x) end
function give_function() return print end

test("callbacks run and variables come back", function()
  local out = oxiida.run([[
    require square;
    a = square(3);
    b = square(a) + 1;
    s = "x" + str(b);
  ]])
  assert(out.a == 9 and out.b == 82 and out.s == "x82", "got " .. tostring(out.a) .. " " .. tostring(out.b))
  assert(math.type(out.a) == "integer")
  assert(#calls == 2 and calls[2] == 9)
end)

test("values cross both ways", function()
  local out = oxiida.run("require shape; r = shape(2.0); i = shape(2); xs = [1, [2, 3]];")
  assert(out.r.kind == "float" and out.i.kind == "integer")
  assert(#out.r.items == 4 and out.r.items[2] == 2.5 and out.r.items[3] == "s" and out.r.items[4] == true)
  assert(next(out.r.empty) == nil)
  assert(out.xs[2][2] == 3)
end)

test("an explicit environment and dotted names", function()
  local env = { tools = { twice = function(s) return s .. s end }, upper = string.upper }
  local out = oxiida.run('require tools.twice, upper; r = upper(twice("ab"));', env)
  assert(out.r == "ABAB", tostring(out.r))
  local ok, err = pcall(oxiida.run, "require square; x = square(2);", env)
  assert(not ok)
  contains(err, "`square` is not defined in the environment")
end)

test("calls in para run on this thread, one after another", function()
  local seen = {}
  local env = {
    mark = function(i)
      seen[#seen + 1] = coroutine.running()
      return i
    end,
  }
  local out = oxiida.run("require mark; para for i in range(4) { x = mark(i); } para { a = mark(10); b = mark(20); }", env)
  assert(out.a == 10 and out.b == 20)
  assert(#seen == 6)
end)

test("a Lua error is a Lua error with the workflow's location", function()
  local ok, err = pcall(oxiida.run, 'require fail;\ny = 0;\nx = fail("x");\n', nil, "wf.ox")
  assert(not ok)
  contains(err, "`fail` raised an error")
  contains(err, "no good: x")
  contains(err, "wf.ox:3:5")
  contains(err, "in function 'fail'")
end)

test("oxiida errors become Lua errors", function()
  local ok, err = pcall(oxiida.run, "x = 1 / 0;")
  assert(not ok)
  contains(err, "division by zero")
  ok, err = pcall(oxiida.run, "require nowhere; print nope;")
  assert(not ok)
  contains(err, "`nowhere` is not defined")
  contains(err, "`nope` is not defined")
  ok, err = pcall(oxiida.run, "require give_function; f = give_function();")
  assert(not ok)
  contains(err, "a Lua function cannot cross")
  ok, err = pcall(oxiida.run, "require square; x = =square=(2);")
  assert(not ok)
  contains(err, "call it as `f(...)`")
end)

test("print goes through io.write", function()
  local lines = {}
  local write = io.write
  io.write = function(...) lines[#lines + 1] = table.concat({ ... }) end
  local ok, err = pcall(oxiida.run, 'print "hello"; print [1, 2];')
  io.write = write
  assert(ok, err)
  assert(lines[1] == "hello\n" and lines[2] == "[1, 2]\n", table.concat(lines))
end)

test("an error in io.write stops the workflow and is raised", function()
  local write = io.write
  local count = 0
  io.write = function() error("disk full") end
  local env = { count = function() count = count + 1 end }
  local ok, err = pcall(oxiida.run, 'require count; print "x"; count(); print "y";', env)
  io.write = write
  assert(not ok)
  contains(err, "`print` in the workflow failed")
  contains(err, "disk full")
  assert(count == 0, "the workflow went on after print failed")
end)

test("oxiida.run inside a callback is refused, not a crash", function()
  local env = { inner = function() return oxiida.run("x = 1;").x end }
  local ok, err = pcall(oxiida.run, "require inner; y = inner();", env)
  assert(not ok)
  contains(err, "cannot be called from a function that a workflow is calling")
end)

test("keyword arguments arrive as one extra final table", function()
  local got = {}
  local env = {
    greet = function(name, opts)
      opts = opts or {}
      return (opts.greeting or "hello") .. ", " .. name .. (opts.mark or "")
    end,
    count = function(...)
      got[#got + 1] = select("#", ...)
      return select("#", ...)
    end,
  }
  local out = oxiida.run([[
    require greet, count;
    a = greet("you");
    b = greet("you", greeting = "Hi", mark = "!");
    n = count(1, 2);
    k = count(1, 2, steps = 100, tags = ["x"]);
    para { p = greet("p", mark = "?"); q = greet("q"); }
  ]], env)
  assert(out.a == "hello, you" and out.b == "Hi, you!", tostring(out.a) .. " " .. tostring(out.b))
  assert(out.n == 2 and out.k == 3 and out.p == "hello, p?" and out.q == "hello, q", ("%s %s %s %s"):format(out.n, out.k, out.p, out.q))
  local seen
  env.peek = function(opts)
    seen = opts
    return true
  end
  oxiida.run('require peek; x = peek(steps = 100, tags = ["x"]);', env)
  assert(seen.steps == 100 and seen.tags[1] == "x")
  local ok, err = pcall(oxiida.run, 'require greet;\nx = greet("you", greeting = [1]);\n', env, "kw.ox")
  assert(not ok)
  contains(err, "`greet` raised an error")
  contains(err, "kw.ox:2:5")
end)

print(("%d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)
