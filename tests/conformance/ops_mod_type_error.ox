print "a" % 2;
