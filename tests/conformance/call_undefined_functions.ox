print "never printed";
x = no_such_function(1);
y = =no_such_worker=(1, 2);
