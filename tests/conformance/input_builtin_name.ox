print "ran";
