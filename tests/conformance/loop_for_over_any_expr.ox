for x in range(2, 4) { print x; }
for x in [1] + [2] { print x; }
for x in [] { print "never"; }
xs = [[1, 2], [3]];
for x in xs[0] { print x * 10; }
r = shell {"true"};
for k in r { print k; }
for c in "abc" { print c; }
