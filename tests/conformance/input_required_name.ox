print "ran";
require g;
