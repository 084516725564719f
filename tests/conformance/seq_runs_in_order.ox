seq { print 1; print 2; }
para { seq { print 3; print 4; } }
seq { seq { print 5; } print 6; }
