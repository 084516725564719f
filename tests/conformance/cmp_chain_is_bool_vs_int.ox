print "before";
print 1 < 2 < 3;
