// keyword arguments come after every positional one
print "never printed";
x = len(a = 1, [1, 2]);
