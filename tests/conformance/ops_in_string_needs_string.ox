// `in` a String looks for a String
print "1" in "123";
print 1 in "123";
