print "before";
print true and 1;
