print "never printed";
x = 1
print x;
