print "never printed";
total = 1;
para {
    seq { total = total + 1; }
    seq { other = 2; }
}
