require alpha.same_name;
require beta.same_name;
print "never printed";
