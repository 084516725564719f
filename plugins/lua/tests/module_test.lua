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
function give_bytes() return "\xff" end

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
  ok, err = pcall(oxiida.run, 'require give_bytes; s = give_bytes();')
  assert(not ok)
  contains(err, "cannot return a string from `give_bytes`: a string that is not valid UTF-8 cannot cross")
  assert(not err:find("bad arguments", 1, true), err)
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
  -- A closed io.output, as a user met it: the error is at the `print`
  -- that failed, with the workflow's line and column.
  local saved = io.output()
  io.output(io.tmpfile())
  io.output():close()
  ok, err = pcall(oxiida.run, 'x = 1;\ny = 2; print x;\n', nil, "closed.ox")
  io.output(saved)
  assert(not ok)
  contains(err, "`print` in the workflow failed")
  contains(err, "closed.ox:2:8")
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

test("functions, userdata and tables that cannot cross come back as the same value", function()
  local counter = 0
  local mixed = { 1, x = 2 }
  local cycle = {}
  cycle[1] = cycle
  local env = {
    make = function() return function() counter = counter + 1; return counter end end,
    tick = function(f) return f() end,
    same = function(a, b) return rawequal(a, b) end,
    mixed = function() return mixed end,
    cycle = function() return cycle end,
    file = function() return io.stdout end,
    echo = function(...) return ... end,
  }
  local lines = {}
  local write = io.write
  io.write = function(...) lines[#lines + 1] = table.concat({ ... }) end
  local ok, out = pcall(oxiida.run, [[
    require make, tick, same, mixed, cycle, file, echo;
    f = make();
    a = tick(f);
    b = tick(f);
    print f;
    print [mixed(), file()];
    s = same(f, echo(f));
    m = mixed();
    c = cycle();
    keep = {"f": f, "m": [m]};
  ]], env)
  io.write = write
  assert(ok, out)
  assert(out.a == 1 and out.b == 2 and out.s == true, ("%s %s %s"):format(out.a, out.b, out.s))
  assert(lines[1] == "<lua function>\n", lines[1])
  assert(lines[2] == "[<lua table>, <lua userdata>]\n", lines[2])
  -- The variables hold the very Lua values.
  assert(rawequal(out.m, mixed) and rawequal(out.c, cycle), "tables come back as themselves")
  assert(rawequal(out.keep.m[1], mixed) and out.keep.f() == 3)
  local ok2, err = pcall(oxiida.run, "require make; f = make(); x = f + 1;", env)
  assert(not ok2)
  contains(err, "lua function")
end)

test("argument errors are strings that name run", function()
  local ok, err = pcall(oxiida.run)
  assert(not ok and type(err) == "string", type(err))
  contains(err, "oxiida.run: expected source string as argument 1, got no value")
  ok, err = pcall(oxiida.run, 5.5)
  contains(err, "oxiida.run: expected source string as argument 1, got a number")
  ok, err = pcall(oxiida.run, "x = 1;", 7)
  assert(type(err) == "string")
  contains(err, "oxiida.run: expected an environment table (or nil) as argument 2, got an integer")
  ok, err = pcall(oxiida.run, "x = 1;", nil, true)
  contains(err, "oxiida.run: expected a workflow name string or an options table (or nil) as argument 3, got a boolean")
end)

test("the default workflow name is <workflow>", function()
  local ok, err = pcall(oxiida.run, "x = 1 / 0;")
  assert(not ok)
  contains(err, "<workflow>:1:")
  assert(not err:find("oxiida.run:1:", 1, true), err)
end)

test("tables with __call are functions", function()
  local greeter = setmetatable({ greeting = "hi" }, { __call = function(self, name) return self.greeting .. " " .. name end })
  local out = oxiida.run('require greeter; g = greeter("you");', { greeter = greeter })
  assert(out.g == "hi you", tostring(out.g))
  local ok, err = pcall(oxiida.run, "require n;", { n = 5 })
  assert(not ok)
  contains(err, "`n` is an integer, not a function")
end)

-- Whether a `sleep 37.3` (the shell task below) is running anywhere.
local function sleeping()
  local p = io.popen([[grep -al 'sleep.37\.3' /proc/[0-9]*/cmdline 2>/dev/null]])
  local found = p:read("a")
  p:close()
  return found ~= ""
end

local function wait_until(what, seconds, ready)
  for _ = 1, seconds * 20 do
    if ready() then return end
    os.execute("sleep 0.05")
  end
  error("timed out waiting for " .. what)
end

-- Starts `lua5.4 script` in the background; its pid.
local function spawn(script, out)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(script)
  f:close()
  local pidfile = os.tmpname()
  os.execute(("lua5.4 %s > %s 2>&1 & echo $! > %s"):format(path, out, pidfile))
  local pf = assert(io.open(pidfile))
  local pid = pf:read("l")
  pf:close()
  return pid
end

-- Running (a zombie that nobody reaped counts as ended).
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("a")
  f:close()
  return stat:match("^%d+ %b() (%a)") ~= "Z"
end

test("Ctrl-C stops a workflow waiting on a shell task, and two end the process with its tasks", function()
  assert(not sleeping(), "a `sleep 37.3` is already running")
  local child = [[
local ok, err = pcall(require("oxiida").run, 'x = shell {"sleep", ["37.3"]};')
io.write(ok and "finished" or "stopped: " .. tostring(err))
io.stdout:flush()
local t = os.clock() + 5
while os.clock() < t do end
]]
  -- One Ctrl-C: the workflow stops at once (no Lua runs while it waits on
  -- the task, so lua.c's own hook alone would not stop it) and the task dies.
  local out = os.tmpname()
  local pid = spawn(child, out)
  wait_until("the shell task", 10, sleeping)
  os.execute("kill -INT " .. pid)
  wait_until("the shell task to end", 3, function() return not sleeping() end)
  wait_until("run to return", 3, function()
    local f = io.open(out)
    local text = f and f:read("a") or ""
    if f then f:close() end
    return text:find("stopped", 1, true) ~= nil
  end)
  os.execute("kill -KILL " .. pid .. " 2>/dev/null")
  -- Two: the process ends, and its task with it (not re-parented to init).
  pid = spawn(child, os.tmpname())
  wait_until("the shell task", 10, sleeping)
  -- Apart, as a user's are: two at once may merge into one pending signal.
  os.execute("kill -INT " .. pid .. "; sleep 0.2; kill -INT " .. pid)
  wait_until("the process to end", 3, function() return not alive(pid) end)
  wait_until("the shell task to end", 3, function() return not sleeping() end)
  -- A callback blocked in C holds the workflow's thread, so the first Ctrl-C
  -- cannot stop it; the second ends the process and kills the task.
  pid = spawn([[
local env = { block = function() return io.popen("exec sleep 20"):read("a") end }
require("oxiida").run('require block; para { x = shell {"sleep", ["37.3"]}; y = block(); }', env)
]], os.tmpname())
  wait_until("the shell task", 10, sleeping)
  os.execute("sleep 0.2; kill -INT " .. pid .. "; sleep 0.2")
  assert(alive(pid) and sleeping(), "the first Ctrl-C cannot stop a callback blocked in C")
  os.execute("kill -INT " .. pid)
  wait_until("the process to end", 3, function() return not alive(pid) end)
  wait_until("the shell task to end", 3, function() return not sleeping() end)
end)

-- Process plugins beside Lua functions (the `plugins` option): the stdlib
-- Python plugin, started by the test venv's python (scripts/test.sh sets
-- OXIIDA_TEST_PYTHON; it has msgpack).
local root = (arg and arg[0] or ""):match("^(.*)plugins/lua/tests/[^/]*$") or ""
local pytools = "exec:" .. (os.getenv("OXIIDA_TEST_PYTHON") or "python3") .. "=" .. root .. "tests/plugins/python_process.py"

test("a value goes from Lua to a process plugin and back", function()
  local seen = {}
  local env = {
    double = function(x) return x * 2 end,
    record = function(s) seen[#seen + 1] = s; return #s end,
  }
  local out = oxiida.run([[
    require double, record;
    require divide, shout from pytools;
    a = double(21);
    b = divide(a, 4);
    n = record(shout("hey"));
  ]], env, { name = "mixed.ox", plugins = { pytools } })
  assert(out.a == 42 and out.b == 10.5 and out.n == 3, ("got %s %s %s"):format(out.a, out.b, out.n))
  assert(seen[1] == "HEY", "the plugin's result did not reach Lua: " .. tostring(seen[1]))
  -- Without `from`: the environment first, then the plugin.
  out = oxiida.run('require double, describe; x = describe(double(2), unit = "s");', env, { plugins = pytools })
  assert(out.x.value == 4 and out.x.unit == "s" and out.x.type == "int", "describe came back wrong")
end)

test("a process plugin's crash is an error and Lua lives on", function()
  local ok, err = pcall(oxiida.run, "require exit_now from pytools;\nexit_now(7);\n", nil, { plugins = { pytools } })
  assert(not ok)
  contains(err, "process plugin `pytools` exited with status 7 during the call")
  local out = oxiida.run("require divide from pytools; x = divide(9, 3);", nil, { plugins = { pytools } })
  assert(out.x == 3.0, "a new workflow starts a new session")
end)

test("plugin errors name the plugin and what to do", function()
  local ok, err = pcall(oxiida.run, "x = 1;", nil, { plugins = { "no_such_plugin" } })
  assert(not ok)
  contains(err, "plugin `no_such_plugin`: no plugin named `no_such_plugin` was found")
  contains(err, "OXIIDA_PLUGIN_PATH")
  ok, err = pcall(oxiida.run, "require fib from tools; x = fib(3);")
  assert(not ok)
  contains(err, "no plugin named `tools` is loaded")
  contains(err, "plugins =")
  ok, err = pcall(oxiida.run, "x = 1;", nil, { plugin = { pytools } })
  assert(not ok)
  contains(err, "unknown option `plugin`")
  ok, err = pcall(oxiida.run, "x = 1;", nil, { plugins = { 3 } })
  assert(not ok)
  contains(err, "`plugins` holds strings")
end)

-- The Node kit's example beside Lua and the Python plugin, when node and
-- the kit's npm packages are there (scripts/test.sh runs `npm ci` first).
local node_ready = os.execute("command -v node >/dev/null 2>&1")
  and io.open(root .. "plugins/node/node_modules/@msgpack/msgpack/package.json") ~= nil
if node_ready then
  test("the Node example beside Lua and the Python plugin", function()
    local env = { double = function(n) return 2 * n end }
    local out = oxiida.run([[
      require double;
      require fib from tools;
      require divide from pytools;
      f = fib(double(5));
      q = divide(f, 5);
    ]], env, { plugins = { "exec:node=" .. root .. "plugins/node/examples/tools.js", pytools } })
    assert(out.f == 55 and out.q == 11.0, ("got %s %s"):format(out.f, out.q))
  end)
else
  io.stderr:write("note: node or plugins/node/node_modules is missing; the Node plugin test was skipped\n")
end

print(("%d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)
