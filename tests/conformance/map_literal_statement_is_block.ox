// `{` starting a statement is a block; elsewhere a map literal
{ x = {"k": [1, {"n": nil}]}; }
print x;
print x.k[1];
print len({});
