require nobody_provides_this;
require first_missing, some.module.fancy_fn as ff from lua;
print "never printed";
