// calls of workflow functions are checked before running
print "never printed";
fn f(a, b = 2) { return a + b; }
x = f(1, 2, 3);
x = f(b = 1);
x = f(1, c = 3);
x = f(1, a = 2);
x = =f=(1);
y = f;
f = 3;
