require my_tool;
my_tool = 3;
print "never printed";
