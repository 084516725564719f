print "before";
print !"x";
