print "before";
print 0 or true;
