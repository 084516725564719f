x = 4294967296;
print x * 2;
print x * x;
