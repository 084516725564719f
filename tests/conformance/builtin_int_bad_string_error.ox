print "before";
print int("abc");
