print 42;
print 4.0;
print 0.5;
print 1e3;
print 2.5e-3;
print 42 + 0;
print 4.0 + 0;
print 1e3 == 1000;
