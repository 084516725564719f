// a whole-line comment
print 1; // a trailing comment
print "not // a comment";
// print 2;
x =
    1 +
        2;
print
    x;
y=4;print y;     print    "a"   +"b"   ;
1 + 2;
"an expression statement is allowed";
iffy = 1; format = 2; android = 3; order = 4; nilly = 5; _under_1 = 6; trueish = 7;
print iffy + format + android + order + nilly + _under_1 + trueish;
