print "before";
print len(5);
