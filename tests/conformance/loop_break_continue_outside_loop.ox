print "never printed";
break;
if (true) { continue; }
