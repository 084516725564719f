print "never printed";
x = (1 + ;
y = "bad \q";
print y y;
if x > 1 { print x; }
