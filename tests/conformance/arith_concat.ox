print "con" + "cat";
print "a" + "b" + "c";
print [1] + [2, 3];
print [] + [];
print "" + "";
xs = [1];
ys = xs + ["two"];
print xs;
print ys;
