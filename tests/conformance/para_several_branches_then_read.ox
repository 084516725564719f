print "never printed";
para {
    seq { dup = 1; }
    if (true) { dup = 2; }
}
print dup;
