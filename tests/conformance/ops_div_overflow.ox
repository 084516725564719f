// the one floor division whose quotient does not fit
print "before";
print div(-9223372036854775808, -1);
