print "a\tb";
print "x\\y";
print "say \"hi\"";
print "l1\nl2";
print len("\r");
print len("\0");
print len("\\\"\n\t");
print "a\0b" == "a" + "\0" + "b";
print "héllo wörld";
