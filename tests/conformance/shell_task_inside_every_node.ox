// A task inside each kind of statement and expression: these run on the
// async walk, and must do exactly what the same code without tasks does.
three = shell {"echo", ["-n", "3"]}.stdout;
print three;
print -int(shell {"echo", ["-n", "3"]}.stdout) + 1;
print [1, shell {"true"}.status, 3][1];
print (shell {"true"}.status == 0) and (shell {"false"}.status == 1);
print (shell {"false"}.status == 0) or false;
print false and (shell {"false"}.status == 1);
print !(shell {"true"}.status == 0);
while (shell {"true"}.status == 1) { print "never"; }
for x in [shell {"echo", ["-n", "a"]}.stdout, "b"] { print x; }
if (shell {"true"}.status == 0) { print "yes"; } else { print "no"; }
print (y = shell {"echo", ["-n", "z"]}.stdout) + y;
print len(shell {"echo", ["-n", "abc"]}.stdout);
n = 0;
while (n < 5) {
    n = n + 1;
    if (n == 2) { continue; }
    r = shell {"echo", ["-n", str(n)]};
    if (n == 4) { break; }
    print r.stdout;
}
