print "before";
print "a" < 1;
