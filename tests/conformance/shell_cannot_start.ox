print "before";
r = shell {"definitely-not-a-program-xyz"};
print "after";
