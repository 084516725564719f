// `xs = xs + [x]` grows an Array it alone holds in place; a copy keeps its value
xs = [];
for i in range(5) { xs = xs + [i]; }
ys = xs;
xs = xs + [5];
print xs;
print ys;
s = "a";
s = s + "b";
print s;
n = 1;
n = n + 0.5;
print n;
