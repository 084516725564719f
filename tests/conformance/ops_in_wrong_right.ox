print 1 in 12;
