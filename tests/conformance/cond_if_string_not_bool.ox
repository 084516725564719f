print "before";
if ("yes") { print "no truthiness"; }
