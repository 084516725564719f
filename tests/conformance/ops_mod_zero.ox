print 3 % 2;
print 1.5 % 0;
