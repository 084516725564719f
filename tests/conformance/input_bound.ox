// Inputs are variables bound before the first statement; they can be rebound.
print n * 2;
print el;
n = n + 1;
print [n, cfg];
