// every mistake in defining functions is found before running, together
print "never printed";
fn f(a, b = 1, c) { return a; }
fn f() { }
fn g(x, x) { return x; }
fn len(xs) { return 0; }
require f;
