// -9223372036854775808 is the smallest Int; its magnitude alone is too large
print "never printed";
print -9223372036854775808;
print 9223372036854775808;
