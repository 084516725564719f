// since 0.3, `b = 1` inside a call's parentheses is a keyword argument, not an assignment
fn f(a, b = 0) { return a + b; }
x = f(1, b = 1);
print b;
