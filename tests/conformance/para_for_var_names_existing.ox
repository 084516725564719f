item = 0;
print "never printed";
para for item in range(2) { y = item; }
