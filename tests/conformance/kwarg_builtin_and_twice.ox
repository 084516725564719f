// builtins take no keyword arguments; a keyword is given once
print "never printed";
n = len([1, 2], of = 1);
m = range(3, step = 1, step = 2);
