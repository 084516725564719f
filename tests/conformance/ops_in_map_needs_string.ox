// a Map's keys are Strings
m = {"1": "one"};
print 1 in m;
