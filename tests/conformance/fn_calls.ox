// functions: recursion, defaults evaluated per call, keywords, early return
fn fib(n) { if (n < 2) { return n; } return fib(n - 1) + fib(n - 2); }
fn tag(x, prefix = "#", seen = []) { seen = seen + [x]; return prefix + str(x) + str(len(seen)); }
fn find(xs, want) { for i in range(len(xs)) { if (xs[i] == want) { return i; } } return -1; }
fn nothing() { }
print fib(15);
print tag(1);
print tag(2, seen = [0]);
print tag(prefix = "@", x = 3);
print find(["a", "b"], "b");
print find(["a"], "z");
print nothing();
print later(2);
fn later(n) { return n * 10; }
