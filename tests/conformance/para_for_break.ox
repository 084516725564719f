print "never printed";
para for i in range(3) { break; }
