print -2 ^ 2;
print (-2) ^ 2;
print 2 ^ 3 ^ 2;
print (2 ^ 3) ^ 2;
print 2 * 3 ^ 2;
print -2 ^ -2;
print 2 ^ -2 ^ 2;
x = 3;
print -x ^ 2;
