print "before";
r = shell {"echo", [1]};
