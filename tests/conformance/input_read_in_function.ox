// A function sees only its parameters: an input is a top-level variable.
fn f() { return n; }
print f();
