print "never printed";
x = 1;
y = "runs off the end;
