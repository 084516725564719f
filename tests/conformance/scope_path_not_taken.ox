print "start";
if (1 > 2) { maybe = 1; }
print maybe;
