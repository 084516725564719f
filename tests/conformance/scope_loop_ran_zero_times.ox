for v in [] { seen = v; }
print "start";
print seen;
