// `%` and div floor as in Python; `in` looks in Arrays, Maps and Strings
print -7 % 2;
print 7 % -2;
print 7.5 % 2;
print -7.5 % 2;
print div(-7, 2);
print div(7, -2);
print div(7.5, 2);
print div(-9223372036854775808, 1);
print -9223372036854775808 % -1;
print 1.0 in [1, 2];
print [2] in [[1], [2]];
print "k" in {"k": nil};
print "K" in {"k": nil};
print "" in "abc";
