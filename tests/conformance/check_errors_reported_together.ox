print "never printed";
print undeclared_one;
a = 1;
para { a = 2; b = 3; }
print undeclared_two;
