for n in [1, 5, 20] {
    if (n > 10) print "big";
    else if (n < 2) print "small";
    else print "medium";
}
if (true) if (false) print "inner then"; else print "inner else";
if (false) if (true) print "a"; else print "b";
print "end";
