x = 9223372036854775807;
print "before";
print x + 1;
print "after";
